//! TensorBoard's event-file format, written by hand: no maintained Rust crate writes it,
//! and it is small. TFRecord framing (length, masked CRC-32C of the length, data, masked
//! CRC-32C of the data) around `Event` protobufs, encoded with [`Msg`]. Training writes its
//! scalars with it ([`crate::train::tensorboard`]), reports the HParams plugin's data
//! ([`crate::report::hparams`]).

use std::io::{self, Write};
use std::path::Path;

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A protobuf message being encoded, fields in the order they are added.
#[derive(Default)]
pub struct Msg(Vec<u8>);

impl Msg {
    pub fn new() -> Msg {
        Msg::default()
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.raw_varint(((field << 3) | wire) as u64);
    }

    pub fn varint(mut self, field: u32, v: u64) -> Msg {
        self.key(field, 0);
        self.raw_varint(v);
        self
    }

    pub fn double(mut self, field: u32, v: f64) -> Msg {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Msg {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, data: &[u8]) -> Msg {
        self.key(field, 2);
        self.raw_varint(data.len() as u64);
        self.0.extend_from_slice(data);
        self
    }

    pub fn str(self, field: u32, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: Msg) -> Msg {
        self.bytes(field, &m.0)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
pub fn event(wall_time: f64, step: i64) -> Msg {
    Msg::new().double(1, wall_time).varint(2, step as u64)
}

/// The event every file starts with: version 2 makes TensorBoard drop data only on an
/// explicit restart, never for steps that go back.
pub fn file_version(wall_time: f64) -> Msg {
    event(wall_time, 0).str(3, "brain.Event:2")
}

/// `Summary.Value { tag = 1, simple_value = 2 }`.
pub fn scalar(tag: &str, v: f32) -> Msg {
    Msg::new().str(1, tag).float(2, v)
}

/// Writes `events`, in order, to a new event file at `path`.
pub fn write_file(path: &Path, events: impl IntoIterator<Item = Msg>) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        let data = e.into_bytes();
        let len = (data.len() as u64).to_le_bytes();
        out.write_all(&len)?;
        out.write_all(&masked_crc(&len).to_le_bytes())?;
        out.write_all(&data)?;
        out.write_all(&masked_crc(&data).to_le_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::Msg;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn fields_encode_as_protobuf_does() {
        // From the protobuf encoding guide: field 1 = 150 → 08 96 01; field 2 = "testing".
        assert_eq!(Msg::new().varint(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(
            Msg::new().str(2, "testing").into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
    }
}
