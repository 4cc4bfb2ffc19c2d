//! `train`: one model of one family, trained on the normalized dataset (its one input).
//! The config is [`TrainConfig`]; the work is [`crate::train::fit`].

use anyhow::bail;
use burn::tensor::backend::AutodiffBackend;

use crate::dataset::Dataset;
use crate::stage::{FieldError, Input, KeyCtx, Kind, Resources, RunCtx, StageConfig};
use crate::train::config::TrainConfig;
use crate::train::device::{self, Backend, CpuTrain, GpuTrain, GpuUnfusedTrain};
use crate::train::fit::{fit, recover_checkpoint, Dirs, EpochMetrics, Report, Summary};
use crate::train::{isolation, threads};

pub static TRAIN: Kind<TrainConfig> = Kind::new("train", 8);

/// The one input of `kind` among a stage's inputs.
pub fn input_of<'a>(inputs: &'a [Input], kind: &str, stage: &str) -> anyhow::Result<&'a Input> {
    let found: Vec<&Input> = inputs.iter().filter(|i| i.kind == kind).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("a {stage} stage needs a `{kind}` stage among its inputs"),
        _ => bail!(
            "a {stage} stage takes one `{kind}` input, got {}",
            found.len()
        ),
    }
}

/// [`fit`] on the CPU.
fn fit_cpu(
    cfg: &TrainConfig,
    data: &Dataset,
    backend: &str,
    _gpu: usize,
    dirs: &Dirs,
    report: &mut dyn Report,
) -> anyhow::Result<Summary> {
    fit::<CpuTrain>(cfg, data, &Default::default(), backend, dirs, report)
}

/// [`fit`] on CUDA device `gpu`: one function type for both CUDA backends.
fn fit_cuda<B: AutodiffBackend<Device = burn::backend::cuda::CudaDevice>>(
    cfg: &TrainConfig,
    data: &Dataset,
    backend: &str,
    gpu: usize,
    dirs: &Dirs,
    report: &mut dyn Report,
) -> anyhow::Result<Summary> {
    fit::<B>(cfg, data, &device::cuda_device(gpu), backend, dirs, report)
}

struct Progress<'a, 'b>(&'a mut RunCtx<'b>);

impl Report for Progress<'_, '_> {
    fn epoch(&mut self, m: &EpochMetrics, seconds: f64, epochs: usize) {
        let val = m
            .val_acc
            .map(|a| format!(", val acc {a:.4}"))
            .unwrap_or_default();
        let line = format!(
            "epoch {}/{epochs}: loss {:.4}, acc {:.4}{val}, {:.1}s",
            m.epoch, m.train_loss, m.train_acc, seconds
        );
        self.0.progress(m.epoch as u64, epochs as u64, &line);
        let every = epochs.div_ceil(10).max(1);
        if m.epoch == 1
            || m.epoch == epochs
            || m.epoch.is_multiple_of(every)
            || !m.train_loss.is_finite()
        {
            self.0.log(line);
        }
    }
    fn note(&mut self, line: String) {
        self.0.log(line);
    }
}

impl StageConfig for TrainConfig {
    /// burn aborts the process when an allocation fails, and CUDA faults end it.
    fn own_process(&self) -> bool {
        match device::planned(self.device) {
            Ok(Backend::Cpu) => {
                self.model.draws_while_training()
                    || !isolation::in_build_process(self.model.size(), self.batch_size)
            }
            _ => true,
        }
    }
    fn validate(&self) -> Result<(), FieldError> {
        self.check()
    }

    fn resources(&self) -> Resources {
        match device::planned(self.device) {
            Ok(b) if b.is_gpu() => Resources {
                cpus: 1,
                gpus: 1,
                more_cpus: 0,
            },
            // Packed side by side, a core each, unless told; more when cores would idle.
            _ => match threads::fixed(self) {
                Some(n) => Resources {
                    cpus: n,
                    gpus: 0,
                    more_cpus: 0,
                },
                None => Resources {
                    cpus: 1,
                    gpus: 0,
                    more_cpus: threads::most(self) - 1,
                },
            },
        }
    }

    fn environment() -> Option<String> {
        Some(device::environment())
    }

    fn external_key(&self, _: &KeyCtx) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(Some(
            serde_json::json!({ "backend": device::planned(self.device)?.name() }),
        ))
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let input = input_of(ctx.inputs(), "normalize", "train")?;
        let data = Dataset::shared(&input.dir, &input.key)?;
        let (scratch, out) = (ctx.scratch_dir().to_path_buf(), ctx.out_dir().to_path_buf());
        recover_checkpoint(&scratch);
        let backend = device::resolve(self.device)?;
        let dirs = Dirs {
            scratch: &scratch,
            out: &out,
        };
        let gpu = ctx.gpus().first().copied().unwrap_or(0);
        if backend != Backend::Cpu {
            ctx.log(format!("on CUDA device {gpu}"));
        } else {
            let n = ctx.threads();
            ctx.log(format!(
                "on {n} CPU thread{}",
                if n == 1 { "" } else { "s" }
            ));
        }
        let mut report = Progress(ctx);
        let fit_here = match backend {
            Backend::Cpu => fit_cpu,
            Backend::Cuda => fit_cuda::<GpuTrain>,
            Backend::CudaUnfused => fit_cuda::<GpuUnfusedTrain>,
        };
        let summary = fit_here(self, &data, backend.name(), gpu, &dirs, &mut report)?;
        ctx.log(format!(
            "{} ({} parameters) on {}: {} epochs, {:.0} images/s{}",
            summary.family,
            summary.parameters,
            summary.backend,
            summary.epochs_run,
            summary.timing.train_images_per_second,
            summary
                .diverged_at_epoch
                .map(|e| format!(", DIVERGED at epoch {e}"))
                .unwrap_or_default()
        ));
        Ok(())
    }
}
