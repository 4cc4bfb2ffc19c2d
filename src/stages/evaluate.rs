//! `evaluate`: test-set scores of a trained model (inputs: a `train` stage and the
//! `normalize` stage), written as `evaluation.json`, next to the run's metrics, summary,
//! config and TensorBoard events: everything a report needs about one variant.

use serde::{Deserialize, Serialize};

use super::train::input_of;
use crate::dataset::Dataset;
use crate::stage::{KeyCtx, Kind, RunCtx, StageConfig};
use crate::train::config::DeviceChoice;
use crate::train::device::{self, Backend, CpuBackend, GpuBackend, GpuUnfusedBackend};
use crate::train::evaluate::evaluate;

pub static EVALUATE: Kind<EvaluateConfig> = Kind::new("evaluate", 4);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    #[serde(default, skip_serializing)]
    pub device: DeviceChoice,
}

impl StageConfig for EvaluateConfig {
    fn environment() -> Option<String> {
        Some(device::environment())
    }

    fn external_key(&self, _: &KeyCtx) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(Some(
            serde_json::json!({ "backend": device::resolve(self.device)?.name() }),
        ))
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let train_input = input_of(ctx.inputs(), "train", "evaluate")?;
        let (trained, train_key) = (train_input.dir.clone(), train_input.key.clone());
        let data = Dataset::load(&input_of(ctx.inputs(), "normalize", "evaluate")?.dir)?;
        let gpu = device::cuda_device(ctx.gpus().first().copied().unwrap_or(0));
        let e = match device::resolve(self.device)? {
            Backend::Cpu => evaluate::<CpuBackend>(&trained, &data, &Default::default())?,
            Backend::Cuda => evaluate::<GpuBackend>(&trained, &data, &gpu)?,
            Backend::CudaUnfused => evaluate::<GpuUnfusedBackend>(&trained, &data, &gpu)?,
        };
        std::fs::write(
            ctx.out_dir().join("evaluation.json"),
            serde_json::to_vec_pretty(&e)?,
        )?;
        // The report reads everything about a variant from here: the run's curves, summary,
        // config, its key, and its TensorBoard events.
        for f in ["metrics.jsonl", "summary.json", "config.json"] {
            std::fs::copy(trained.join(f), ctx.out_dir().join(f))?;
        }
        std::fs::write(ctx.out_dir().join("train_key.txt"), &train_key)?;
        let tb = trained.join("tensorboard");
        if tb.is_dir() {
            std::fs::create_dir_all(ctx.out_dir().join("tensorboard"))?;
            for e in std::fs::read_dir(&tb)? {
                let e = e?;
                std::fs::copy(
                    e.path(),
                    ctx.out_dir().join("tensorboard").join(e.file_name()),
                )?;
            }
        }
        ctx.log(format!(
            "test accuracy {:.4} (final), {:.4} (best validation, epoch {})",
            e.last.accuracy,
            e.best.accuracy,
            e.best_epoch
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into())
        ));
        Ok(())
    }
}
