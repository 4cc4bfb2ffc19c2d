//! The normalized dataset as the normalize stage writes it and training reads it.
//!
//! Pixels stay `u8` in `.npy` files (N × 3 × 32 × 32, the CIFAR record layout): a quarter of
//! the size of `f32`, byte-identical for the same input, and readable by numpy. Every
//! scaling the pipeline offers (`x / 256`, `x / 255`, per-channel standardization) is affine
//! per channel, so `meta.json` records `scale[c]` and `shift[c]` and the loader computes
//! `x * scale[c] + shift[c]`: the exact same floats as scaling ahead of time.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const CLASSES: usize = 10;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";
pub const META_FILE: &str = "batches.meta.txt";
pub const DEFAULT_CLASS_NAMES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// One split in memory: images in record layout, labels 0..9.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }
    pub fn push(&mut self, image: &[u8], label: u8) {
        self.images.extend_from_slice(image);
        self.labels.push(label);
    }
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut c = [0; CLASSES];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// `meta.json` of a normalized dataset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Meta {
    pub classes: Vec<String>,
    /// Split name → number of images, in the order train, validation, test.
    pub sizes: Vec<(String, usize)>,
    pub class_counts: Vec<(String, Vec<usize>)>,
    /// How pixels become network inputs: `x * scale[c] + shift[c]` for channel c.
    pub scaling: String,
    pub scale: [f32; 3],
    pub shift: [f32; 3],
}

pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// The file names of a split: (images, labels).
pub fn split_files(split: &str) -> (String, String) {
    (format!("{split}_x.npy"), format!("{split}_y.npy"))
}

/// Writes a `u8` array as `.npy` (format 1.0).
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> io::Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape matches data"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    f.flush()
}

/// Reads a `u8` `.npy` written by [`write_npy_u8`]: (shape, data).
pub fn read_npy_u8(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<u8>)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre)
        .with_context(|| format!("{}: not a .npy file", path.display()))?;
    if &pre[..6] != b"\x93NUMPY" || pre[6] != 1 {
        bail!("{}: not a version 1 .npy file", path.display());
    }
    let len = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut header = vec![0u8; len];
    f.read_exact(&mut header)?;
    let header = String::from_utf8_lossy(&header);
    if !header.contains("'descr': '|u1'") || !header.contains("'fortran_order': False") {
        bail!(
            "{}: expected a C-order uint8 array, header {header}",
            path.display()
        );
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .with_context(|| format!("{}: no shape in header", path.display()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: bad shape {shape_text}", path.display()))?;
    let mut data = Vec::with_capacity(shape.iter().product());
    f.read_to_end(&mut data)?;
    if data.len() != shape.iter().product::<usize>() {
        bail!(
            "{}: {} bytes of data for shape {shape:?}",
            path.display(),
            data.len()
        );
    }
    Ok((shape, data))
}

/// A normalized dataset folder, loaded.
pub struct Dataset {
    pub meta: Meta,
    pub train: Split,
    pub validation: Split,
    pub test: Split,
}

impl Dataset {
    pub fn load(dir: &Path) -> anyhow::Result<Dataset> {
        let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
        let load = |split: &str| -> anyhow::Result<Split> {
            let (x, y) = split_files(split);
            let (xs, images) = read_npy_u8(&dir.join(x))?;
            let (ys, labels) = read_npy_u8(&dir.join(y))?;
            if xs.first() != ys.first() || xs[1..] != [3, 32, 32] {
                bail!("{split}: image shape {xs:?} does not match label shape {ys:?}");
            }
            Ok(Split { images, labels })
        };
        Ok(Dataset {
            train: load("train")?,
            validation: load("validation")?,
            test: load("test")?,
            meta,
        })
    }

    /// [`Dataset::load`], once per process for each `key` (the normalize stage's cache key,
    /// which fixes the bytes): trainings and evaluations that run in the build's process
    /// share one copy instead of reading the files again for each stage. The last few are
    /// kept; a study reads one.
    pub fn shared(dir: &Path, key: &str) -> anyhow::Result<Arc<Dataset>> {
        const KEEP: usize = 2;
        static LOADED: Mutex<Vec<(String, Arc<Dataset>)>> = Mutex::new(Vec::new());
        {
            let mut loaded = LOADED.lock().unwrap();
            if let Some(i) = loaded.iter().position(|(k, _)| k == key) {
                let hit = loaded.remove(i);
                let data = hit.1.clone();
                loaded.push(hit);
                return Ok(data);
            }
        }
        let data = Arc::new(Dataset::load(dir)?);
        let mut loaded = LOADED.lock().unwrap();
        if !loaded.iter().any(|(k, _)| k == key) {
            if loaded.len() >= KEEP {
                loaded.remove(0);
            }
            loaded.push((key.to_string(), data.clone()));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_is_64_byte_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<u8> = (0..2 * 3 * 32 * 32).map(|i| (i % 251) as u8).collect();
        write_npy_u8(&p, &[2, 3, 32, 32], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - data.len()) % 64, 0);
        assert_eq!(read_npy_u8(&p).unwrap(), (vec![2, 3, 32, 32], data));
        write_npy_u8(&p, &[3], &[1, 2, 3]).unwrap();
        assert_eq!(read_npy_u8(&p).unwrap(), (vec![3], vec![1, 2, 3]));
    }
}
