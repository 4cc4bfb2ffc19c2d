//! The training loop: epochs of shuffled mini-batches, per-epoch metrics, a checkpoint
//! after every epoch, resume, and divergence.
//!
//! Resuming is exact: every source of randomness is derived from (seed, epoch) — the
//! backend generator (dropout) is reseeded and the shuffle drawn at the start of each epoch
//! — and the checkpoint holds the weights and the optimizer state at full precision. So a
//! run killed after epoch k and resumed produces the same bits as one that never stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, BurnRecord, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

use super::config::{OptimizerKind, TrainConfig};
use super::cpu::sgd::Sgd;
use super::data::Batcher;
use super::layers::{parameter_count, penalty};
use super::models::{generator, init, Model};
use crate::dataset::{Dataset, Split};
use crate::rng::SplitMix64;
use crate::stage::{replace_file, write_file};

use super::metrics::failed_to_learn;
pub use super::metrics::{EpochMetrics, Timing};

/// `summary.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Summary {
    pub family: String,
    pub parameters: usize,
    pub backend: String,
    pub epochs_run: usize,
    /// The epoch whose loss became NaN or infinite; training stopped there.
    pub diverged_at_epoch: Option<usize>,
    /// Why a run that did not diverge still failed to learn (see
    /// [`super::metrics::failed_to_learn`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_to_learn: Option<String>,
    pub best_epoch: Option<usize>,
    pub best_val_acc: Option<f64>,
    pub seed: u64,
    /// Split name → images, as the normalize stage made them.
    #[serde(default)]
    pub data_sizes: Vec<(String, usize)>,
    #[serde(default)]
    pub scaling: String,
    /// Written apart, to `volatile/timing.json`: not part of what dependents key on.
    #[serde(skip)]
    pub timing: Timing,
}

/// What a checkpoint records besides the weights and optimizer state.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct State {
    /// When the first epoch started (seconds since the epoch): TensorBoard's time axis.
    started_unix: f64,
    epochs_done: usize,
    metrics: Vec<EpochMetrics>,
    best_epoch: Option<usize>,
    best_val_acc: Option<f64>,
    train_seconds: f64,
    train_images: usize,
    /// Wall time of each epoch (kept out of `metrics`, whose bytes must not depend on it).
    #[serde(default)]
    epoch_seconds: Vec<f64>,
}

/// Events for the progress display.
pub trait Report {
    fn epoch(&mut self, m: &EpochMetrics, seconds: f64, epochs: usize);
    fn note(&mut self, line: String);
}

type Rec = BinFileRecorder<FullPrecisionSettings>;

/// The per-epoch seed: distinct streams for init (epoch 0) and each epoch.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut r = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    r.next_u64()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    replace_file(path, serde_json::to_vec_pretty(value)?)
}

/// Writes `record` to `stem`.bin, byte for byte what burn's `BinFileRecorder` writes (the
/// same metadata, the same bincode), but through our own write: burn's drops its
/// `BufWriter` without looking at the flush (a full disk would leave a short file that
/// looks written), reports I/O failures as Debug text, and writes in place (a kill
/// mid-write would leave half a checkpoint).
fn save_record<B: Backend, R: Record<B>>(record: R, stem: &Path) -> anyhow::Result<()> {
    let item = BurnRecord::<_, B>::new::<Rec>(record.into_item::<FullPrecisionSettings>());
    let bytes = bincode::serde::encode_to_vec(&item, bincode::config::standard())
        .map_err(|e| anyhow::anyhow!("cannot encode {}: {e}", stem.display()))?;
    replace_file(&stem.with_extension("bin"), bytes)
}

/// Loss (sum over the batch, on the inner backend) and correct predictions of `logits`.
fn batch_stats<B: Backend>(
    logits: Tensor<B, 2>,
    y: Tensor<B, 1, burn::tensor::Int>,
) -> (Tensor<B, 1>, Tensor<B, 1, burn::tensor::Int>) {
    let n = y.dims()[0];
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), y.clone())
        .mul_scalar(n as f64);
    let correct = logits.argmax(1).reshape([n]).equal(y).int().sum();
    (loss, correct)
}

/// Mean loss and accuracy of `model` on `split` (no gradients).
pub fn measure<B: Backend>(
    model: &Model<B>,
    split: &Split,
    batcher: &Batcher,
    device: &B::Device,
) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0i64;
    let idx: Vec<usize> = (0..split.len()).collect();
    for chunk in idx.chunks(500) {
        let (x, y) = batcher.batch::<B>(split, chunk, device);
        let (l, c) = batch_stats(model.forward(x), y);
        loss += l.into_scalar().elem::<f64>();
        correct += c.into_scalar().elem::<i64>();
    }
    let n = split.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

pub struct Dirs<'a> {
    /// Survives interruption: checkpoints.
    pub scratch: &'a Path,
    /// The stage output.
    pub out: &'a Path,
}

/// Trains `cfg` on `data`, resuming from a checkpoint in `dirs.scratch` if there is one,
/// and writes `config.json`, `metrics.jsonl`, `model.bin`, `best.bin`, `summary.json`.
pub fn fit<B: AutodiffBackend>(
    cfg: &TrainConfig,
    data: &Dataset,
    device: &B::Device,
    backend: &str,
    dirs: &Dirs,
    report: &mut dyn Report,
) -> anyhow::Result<Summary> {
    let o = &cfg.optimizer;
    match o.kind {
        OptimizerKind::Sgd => {
            let optim = Sgd::new(o.momentum, o.nesterov).init::<B, Model<B>>();
            run(cfg, data, device, backend, dirs, report, optim)
        }
        OptimizerKind::Adam => {
            let optim = AdamConfig::new()
                .with_beta_1(o.beta1 as f32)
                .with_beta_2(o.beta2 as f32)
                .with_epsilon(o.epsilon as f32)
                .init::<B, Model<B>>();
            run(cfg, data, device, backend, dirs, report, optim)
        }
    }
}

fn ckpt_dir(scratch: &Path) -> PathBuf {
    scratch.join("checkpoint")
}

#[allow(clippy::too_many_arguments)]
fn run<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    cfg: &TrainConfig,
    data: &Dataset,
    device: &B::Device,
    backend: &str,
    dirs: &Dirs,
    report: &mut dyn Report,
    mut optim: O,
) -> anyhow::Result<Summary> {
    let rec = Rec::new();
    let mut model: Model<B> = {
        let _draws = generator();
        B::seed(device, epoch_seed(cfg.seed, 0));
        init(&cfg.model, &cfg.initializer, &cfg.bias_initializer, device)
    };
    let parameters = parameter_count(&model);
    let ckpt = ckpt_dir(dirs.scratch);
    let mut state = State::default();
    let mut resumed_from = None;
    state.started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if ckpt.join("state.json").is_file() {
        // Only a checkpoint as it was sealed is resumed: a damaged one would go on from
        // other weights and be cached as this config's result.
        if let Err(why) = crate::sealed::check(&ckpt) {
            report.note(format!(
                "checkpoint discarded, training from the start: {why} ({})",
                ckpt.display()
            ));
            std::fs::remove_dir_all(&ckpt)
                .with_context(|| format!("cannot remove {}", ckpt.display()))?;
        }
    }
    if ckpt.join("state.json").is_file() {
        state = serde_json::from_slice(&std::fs::read(ckpt.join("state.json"))?)
            .context("reading the checkpoint")?;
        model = model.load_record(
            rec.load(ckpt.join("model"), device)
                .context("loading the checkpointed model")?,
        );
        optim = optim.load_record(
            rec.load(ckpt.join("optim"), device)
                .context("loading the optimizer state")?,
        );
        resumed_from = Some(state.epochs_done);
        report.note(format!("resumed after epoch {}", state.epochs_done));
    }
    let batcher = Batcher::new(&data.meta);
    let train = &data.train;
    let has_val = !data.validation.is_empty();
    let mut last_good = model.clone();
    let mut diverged = None;
    for epoch in state.epochs_done..cfg.epochs {
        let clock = Instant::now();
        let lr = cfg.schedule.lr(cfg.optimizer.lr, epoch, cfg.epochs);
        {
            let _draws = generator();
            B::seed(device, epoch_seed(cfg.seed, epoch + 1));
        }
        let mut order: Vec<usize> = (0..train.len()).collect();
        if cfg.shuffle {
            SplitMix64::new(epoch_seed(cfg.seed, epoch + 1)).shuffle(&mut order);
        }
        let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
        let mut correct_sum: Option<Tensor<B::InnerBackend, 1, burn::tensor::Int>> = None;
        let mut penalty_sum: Option<Tensor<B::InnerBackend, 1>> = None;
        for chunk in order.chunks(cfg.batch_size) {
            let (x, y) = batcher.batch::<B>(train, chunk, device);
            let logits = model.forward(x);
            let n = chunk.len();
            let ce = CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits.clone(), y.clone());
            let loss = match penalty(&model, &cfg.regularizer) {
                Some(p) => {
                    let weighted = p.clone().inner().mul_scalar(n as f64);
                    penalty_sum = Some(match penalty_sum {
                        Some(s) => s + weighted,
                        None => weighted,
                    });
                    ce + p
                }
                None => ce,
            };
            let correct = logits
                .inner()
                .argmax(1)
                .reshape([n])
                .equal(y.inner())
                .int()
                .sum();
            let batch_loss = loss.clone().inner().mul_scalar(n as f64);
            loss_sum = Some(match loss_sum {
                Some(s) => s + batch_loss,
                None => batch_loss,
            });
            correct_sum = Some(match correct_sum {
                Some(s) => s + correct,
                None => correct,
            });
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let n = train.len() as f64;
        let train_loss = loss_sum
            .map(|t| t.into_scalar().elem::<f64>())
            .unwrap_or(0.0)
            / n;
        let train_acc = correct_sum
            .map(|t| t.into_scalar().elem::<i64>())
            .unwrap_or(0) as f64
            / n;
        let train_penalty = penalty_sum.map(|t| t.into_scalar().elem::<f64>() / n);
        let train_seconds = clock.elapsed().as_secs_f64();
        let (val_loss, val_acc, val_penalty) = if has_val && train_loss.is_finite() {
            let valid = model.valid();
            let (l, a) = measure(&valid, &data.validation, &batcher, device);
            let extra = penalty(&valid, &cfg.regularizer).map(|p| p.into_scalar().elem::<f64>());
            (Some(l + extra.unwrap_or(0.0)), Some(a), extra)
        } else {
            (None, None, None)
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            lr,
            train_penalty,
            val_penalty,
            seconds: None,
        };
        let seconds = clock.elapsed().as_secs_f64();
        report.epoch(&m, seconds, cfg.epochs);
        state.metrics.push(m);
        state.epoch_seconds.push(seconds);
        if !train_loss.is_finite() {
            diverged = Some(epoch + 1);
            report.note(format!(
                "diverged at epoch {} (loss {train_loss})",
                epoch + 1
            ));
            break;
        }
        state.epochs_done = epoch + 1;
        state.train_seconds += train_seconds;
        state.train_images += train.len();
        let improved = match (val_acc, state.best_val_acc) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => !has_val,
        };
        if improved {
            state.best_val_acc = val_acc;
            state.best_epoch = Some(epoch + 1);
            save_model(&model, &dirs.scratch.join("best"))?;
        }
        save_checkpoint(&model, &optim, &state, &ckpt)?;
        last_good = model.clone();
    }

    // Outputs.
    replace_file(
        &dirs.out.join("config.json"),
        crate::stage::as_keyed(|| serde_json::to_vec_pretty(cfg))?,
    )?;
    let mut lines = String::new();
    for m in &state.metrics {
        lines.push_str(&serde_json::to_string(m)?);
        lines.push('\n');
    }
    write_file(&dirs.out.join("metrics.jsonl"), lines)?;
    let timing = Timing {
        started_unix: state.started_unix,
        epoch_seconds: state.epoch_seconds.clone(),
        train_images_per_second: if state.train_seconds > 0.0 {
            state.train_images as f64 / state.train_seconds
        } else {
            0.0
        },
        resumed_from_epoch: resumed_from,
    };
    std::fs::create_dir_all(dirs.out.join("volatile"))?;
    write_json(&dirs.out.join(Timing::FILE), &timing)?;
    let events = dirs.out.join(super::tensorboard::DIR);
    super::tensorboard::write(&events, &state.metrics, &timing)
        .with_context(|| format!("cannot write {}", events.display()))?;
    save_record::<B, _>(last_good.clone().into_record(), &dirs.out.join("model"))?;
    let best = dirs.scratch.join("best.bin");
    if best.is_file() {
        let to = dirs.out.join("best.bin");
        std::fs::copy(&best, &to)
            .with_context(|| format!("cannot copy {} to {}", best.display(), to.display()))?;
    } else {
        save_record::<B, _>(last_good.into_record(), &dirs.out.join("best"))?;
    }
    let summary = Summary {
        family: cfg.model.family().to_string(),
        parameters,
        backend: backend.to_string(),
        epochs_run: state.metrics.len(),
        diverged_at_epoch: diverged,
        failed_to_learn: diverged
            .is_none()
            .then(|| failed_to_learn(&state.metrics, data.meta.classes.len()))
            .flatten(),
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        seed: cfg.seed,
        data_sizes: data.meta.sizes.clone(),
        scaling: data.meta.scaling.clone(),
        timing,
    };
    write_json(&dirs.out.join("summary.json"), &summary)?;
    Ok(summary)
}

fn save_model<B: Backend, M: Module<B>>(model: &M, stem: &Path) -> anyhow::Result<()> {
    save_record::<B, _>(model.clone().into_record(), stem)
}

/// Writes the checkpoint to a fresh folder and swaps it in, so a kill at any moment leaves
/// either the previous checkpoint or this one, whole.
fn save_checkpoint<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    model: &Model<B>,
    optim: &O,
    state: &State,
    ckpt: &Path,
) -> anyhow::Result<()> {
    let tmp = ckpt.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    save_record::<B, _>(model.clone().into_record(), &tmp.join("model"))?;
    save_record::<B, _>(optim.to_record(), &tmp.join("optim"))?;
    write_json(&tmp.join("state.json"), state)?;
    crate::sealed::seal(&tmp)?;
    let old = ckpt.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if ckpt.exists() {
        std::fs::rename(ckpt, &old)
            .with_context(|| format!("cannot move {} aside", ckpt.display()))?;
    }
    std::fs::rename(&tmp, ckpt)
        .with_context(|| format!("cannot put {} in place", ckpt.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// A checkpoint interrupted mid-swap leaves `checkpoint.old`: put it back.
pub fn recover_checkpoint(scratch: &Path) {
    let ckpt = ckpt_dir(scratch);
    let old = ckpt.with_extension("old");
    if !ckpt.exists() && old.exists() {
        let _ = std::fs::rename(old, ckpt);
    }
}
