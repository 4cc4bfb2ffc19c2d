//! `normalize`: CIFAR-10 binary batches → validated train / validation / test splits.
//!
//! Every input file is checked (expected names, size a multiple of 3073, labels 0..9) with
//! an error naming the file and record. The validation split is a seeded draw from the
//! training files — never the test set, which stays untouched — and an optional training
//! subset is drawn per class, so quick studies keep the class balance. The scaling is
//! recorded as a per-channel affine map (see [`crate::dataset`]), with standardization
//! statistics from the training split only. Same config and input, byte-identical output.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::dataset::{
    split_files, write_npy_u8, Meta, Split, CLASSES, DEFAULT_CLASS_NAMES, IMAGE_BYTES, META_FILE,
    RECORD_BYTES, SPLITS, TEST_FILE, TRAIN_FILES,
};
use crate::rng::SplitMix64;
use crate::stage::{FieldError, Kind, RunCtx, StageConfig};

pub static NORMALIZE: Kind<NormalizeConfig> = Kind::new("normalize", 1);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scaling {
    /// `x / 256`, as the seed notebook did.
    #[default]
    Div256,
    /// `x / 255`: inputs in [0, 1].
    Div255,
    /// Per channel `(x - mean) / std`, statistics from the training split.
    Standardize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Images drawn (seeded) from the training files into a validation split; 0 for none.
    #[serde(default = "default_validation")]
    pub validation: usize,
    #[serde(default)]
    pub scaling: Scaling,
    /// Keep only this many training images, drawn per class in proportion (seeded).
    #[serde(default)]
    pub train_subset: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Allows a validation split larger than what is left to train on (otherwise refused:
    /// the full studies' 5000 on a 5170-image sample would train on 170 images).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_small_train: bool,
}

fn default_validation() -> usize {
    5000
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            validation: default_validation(),
            scaling: Scaling::default(),
            train_subset: None,
            seed: 0,
            allow_small_train: false,
        }
    }
}

impl StageConfig for NormalizeConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.train_subset == Some(0) {
            return Err(FieldError::new(
                "train_subset",
                "a training subset of 0 images leaves nothing to train on",
            )
            .hint("leave it out (None) to keep every training image"));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let [input] = ctx.inputs() else {
            bail!(
                "normalize takes one input (the download stage), got {}",
                ctx.inputs().len()
            );
        };
        let meta = normalize(&input.dir.clone(), ctx.out_dir(), self)?;
        for (split, n) in &meta.sizes {
            ctx.log(format!("{split}: {n} images"));
        }
        Ok(())
    }
}

/// Reads and validates one batch file, appending its records to `into`.
fn read_batch(path: &Path, into: &mut Split) -> anyhow::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() % RECORD_BYTES != 0 {
        bail!(
            "{name}: size {} is not a multiple of {RECORD_BYTES} (a record is 1 label byte + {IMAGE_BYTES} pixel bytes); \
             the file is truncated or not the CIFAR-10 binary version",
            bytes.len()
        );
    }
    if bytes.is_empty() {
        bail!("{name}: the file is empty");
    }
    into.images
        .reserve(bytes.len() / RECORD_BYTES * IMAGE_BYTES);
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[0] as usize >= CLASSES {
            bail!(
                "{name}: record {i} (byte offset {}) has label {}; labels are 0..9",
                i * RECORD_BYTES,
                rec[0]
            );
        }
        into.push(&rec[1..], rec[0]);
    }
    Ok(())
}

fn class_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join(META_FILE);
    if !path.exists() {
        return Ok(DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {META_FILE}"))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CLASSES {
        bail!(
            "{META_FILE}: {} class names, expected {CLASSES}",
            names.len()
        );
    }
    Ok(names)
}

fn select(from: &Split, mut idx: Vec<usize>) -> Split {
    idx.sort_unstable();
    let mut out = Split {
        images: Vec::with_capacity(idx.len() * IMAGE_BYTES),
        labels: Vec::with_capacity(idx.len()),
    };
    for i in idx {
        out.push(from.image(i), from.labels[i]);
    }
    out
}

/// `k` indices of `split`, per class in proportion to the class sizes (largest remainders
/// get the leftover), each class's picks drawn at random.
fn stratified(split: &Split, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let n = split.len();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); CLASSES];
    for (i, &l) in split.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut quota: Vec<usize> = by_class.iter().map(|c| c.len() * k / n).collect();
    let mut order: Vec<usize> = (0..CLASSES).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(by_class[c].len() * k % n), c));
    let mut left = k - quota.iter().sum::<usize>();
    for c in order {
        if left == 0 {
            break;
        }
        if quota[c] < by_class[c].len() {
            quota[c] += 1;
            left -= 1;
        }
    }
    let mut out = Vec::with_capacity(k);
    for (c, members) in by_class.iter_mut().enumerate() {
        rng.shuffle(members);
        out.extend_from_slice(&members[..quota[c]]);
    }
    out
}

/// Per-channel (scale, shift) such that `pixel * scale + shift` is the scaled input.
fn affine(scaling: Scaling, train: &Split) -> ([f32; 3], [f32; 3]) {
    match scaling {
        Scaling::Div256 => ([1.0 / 256.0; 3], [0.0; 3]),
        Scaling::Div255 => ([1.0 / 255.0; 3], [0.0; 3]),
        Scaling::Standardize => {
            let mut sum = [0u64; 3];
            let mut sq = [0u64; 3];
            for img in train.images.chunks_exact(IMAGE_BYTES) {
                for (c, plane) in img.chunks_exact(IMAGE_BYTES / 3).enumerate() {
                    for &p in plane {
                        sum[c] += p as u64;
                        sq[c] += (p as u64) * (p as u64);
                    }
                }
            }
            let count = (train.len() * IMAGE_BYTES / 3) as f64;
            let mut scale = [0f32; 3];
            let mut shift = [0f32; 3];
            for c in 0..3 {
                let mean = sum[c] as f64 / count;
                let std = (sq[c] as f64 / count - mean * mean).max(1e-12).sqrt();
                scale[c] = (1.0 / std) as f32;
                shift[c] = (-mean / std) as f32;
            }
            (scale, shift)
        }
    }
}

/// The whole stage on plain folders: `input` in the `cifar-10-batches-bin` layout, `out`
/// receives `{train,validation,test}_{x,y}.npy` and `meta.json`.
pub fn normalize(input: &Path, out: &Path, cfg: &NormalizeConfig) -> anyhow::Result<Meta> {
    let expected: Vec<&str> = TRAIN_FILES.iter().copied().chain([TEST_FILE]).collect();
    let missing: Vec<&&str> = expected
        .iter()
        .filter(|f| !input.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the input lacks {}; expected the CIFAR-10 binary files {}",
            missing
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            expected.join(", ")
        );
    }
    let classes = class_names(input)?;
    let mut pool = Split::default();
    for f in TRAIN_FILES {
        read_batch(&input.join(f), &mut pool)?;
    }
    let mut test = Split::default();
    read_batch(&input.join(TEST_FILE), &mut test)?;

    if cfg.validation >= pool.len() {
        bail!(
            "validation: {} images requested but the training files hold {}; leave some to train on",
            cfg.validation,
            pool.len()
        );
    }
    let left = pool.len() - cfg.validation;
    if left < cfg.validation && !cfg.allow_small_train {
        bail!(
            "validation: {} images leave {left} of the training files' {} to train on, fewer \
             than validate; lower `validation`, or set `allow_small_train: true` if that is meant",
            cfg.validation,
            pool.len()
        );
    }
    let mut rng = SplitMix64::new(cfg.seed);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    rng.shuffle(&mut order);
    let validation = select(&pool, order[..cfg.validation].to_vec());
    let mut train = select(&pool, order[cfg.validation..].to_vec());
    drop(pool);
    if let Some(k) = cfg.train_subset {
        if k > train.len() {
            bail!(
                "train_subset: {k} images requested but the training split holds {}",
                train.len()
            );
        }
        let picked = stratified(&train, k, &mut rng);
        train = select(&train, picked);
    }

    let (scale, shift) = affine(cfg.scaling, &train);
    let splits = [&train, &validation, &test];
    for (name, split) in SPLITS.iter().zip(splits) {
        let (x, y) = split_files(name);
        write_npy_u8(&out.join(x), &[split.len(), 3, 32, 32], &split.images)?;
        write_npy_u8(&out.join(y), &[split.len()], &split.labels)?;
    }
    let meta = Meta {
        classes,
        sizes: SPLITS
            .iter()
            .zip(splits)
            .map(|(n, s)| (n.to_string(), s.len()))
            .collect(),
        class_counts: SPLITS
            .iter()
            .zip(splits)
            .map(|(n, s)| (n.to_string(), s.class_counts().to_vec()))
            .collect(),
        scaling: format!("{:?}", cfg.scaling),
        scale,
        shift,
    };
    crate::stage::write_file(&out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_subset_keeps_class_proportions() {
        let mut s = Split::default();
        let img = vec![0u8; IMAGE_BYTES];
        for i in 0..1000 {
            s.push(
                &img,
                if i < 600 {
                    0
                } else if i < 900 {
                    1
                } else {
                    2
                },
            );
        }
        let picked = stratified(&s, 100, &mut SplitMix64::new(7));
        let sub = select(&s, picked);
        assert_eq!(&sub.class_counts()[..3], &[60, 30, 10]);
        let again = select(&s, stratified(&s, 100, &mut SplitMix64::new(7)));
        assert_eq!(sub, again, "seeded");
    }

    #[test]
    fn standardization_uses_channel_statistics() {
        let mut s = Split::default();
        let mut img = vec![0u8; IMAGE_BYTES];
        img[..1024].fill(10); // red 10, green 0, blue 0
        s.push(&img, 0);
        img[..1024].fill(30); // red 30
        img[1024..2048].fill(4);
        s.push(&img, 1);
        let (scale, shift) = affine(Scaling::Standardize, &s);
        // red: mean 20, std 10 → (x - 20) / 10
        assert!(
            (scale[0] - 0.1).abs() < 1e-6 && (shift[0] + 2.0).abs() < 1e-6,
            "{scale:?} {shift:?}"
        );
        // green: mean 2, std 2
        assert!((scale[1] - 0.5).abs() < 1e-6 && (shift[1] + 1.0).abs() < 1e-6);
    }
}
