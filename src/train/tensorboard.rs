//! TensorBoard event files, so `tensorboard --logdir` shows a study the way the seed study
//! looked at it. No maintained Rust crate writes them; the format is small: TFRecord
//! framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) around
//! `Event` protobufs holding `Summary` scalars.

use std::io::{self, Write};
use std::path::Path;

use super::metrics::{EpochMetrics, Timing};

/// TensorBoard finds files by this name pattern; the fixed suffix keeps outputs stable.
pub const FILE_NAME: &str = "events.out.tfevents.0.pipe";

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(((field << 3) | wire) as u64, out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

/// `Summary { value = 1: Value { tag = 1, simple_value = 2 (float) } }`.
fn scalars(values: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in values {
        let mut value = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut value);
        key(2, 5, &mut value);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(1, &value, &mut summary);
    }
    summary
}

fn record(data: &[u8], out: &mut impl Write) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// Writes one event file with every epoch's scalars under `dir`. Wall times are
/// `start + cumulative epoch seconds`, so the file is the same however often the run was
/// resumed.
/// Where a train output keeps its events: the times of day inside make them volatile.
pub const DIR: &str = "volatile/tensorboard";

pub fn write(dir: &Path, metrics: &[EpochMetrics], timing: &Timing) -> io::Result<()> {
    let start_unix = timing.started_unix;
    std::fs::create_dir_all(dir)?;
    let mut out = io::BufWriter::new(std::fs::File::create(dir.join(FILE_NAME))?);
    record(
        &event(start_unix, 0, |e| bytes_field(3, b"brain.Event:2", e)),
        &mut out,
    )?;
    let mut t = start_unix;
    for (i, m) in metrics.iter().enumerate() {
        t += timing.epoch_seconds.get(i).copied().unwrap_or(0.0);
        let mut values = vec![("epoch_learning_rate", m.lr as f32)];
        if m.train_loss.is_finite() {
            values.push(("train/epoch_loss", m.train_loss as f32));
        }
        values.push(("train/epoch_accuracy", m.train_acc as f32));
        if let (Some(l), Some(a)) = (m.val_loss, m.val_acc) {
            values.push(("validation/epoch_loss", l as f32));
            values.push(("validation/epoch_accuracy", a as f32));
        }
        let body = scalars(&values);
        record(
            &event(t, m.epoch as i64, |e| bytes_field(5, &body, e)),
            &mut out,
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }
}
