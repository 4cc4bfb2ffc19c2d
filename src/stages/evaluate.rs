//! `evaluate`: test-set scores of a trained model (inputs: a `train` stage and the
//! `normalize` stage), written as `evaluation.json`, next to the run's metrics, summary,
//! config and TensorBoard events: everything a report needs about one variant.

use serde::{Deserialize, Serialize};

use super::train::input_of;
use crate::dataset::Dataset;
use crate::stage::{write_file, KeyCtx, Kind, Resources, RunCtx, StageConfig};
use crate::train::config::DeviceChoice;
use crate::train::device::{self, Backend, CpuBackend, GpuBackend, GpuUnfusedBackend};
use crate::train::evaluate::evaluate;
use crate::train::isolation;
use crate::train::tensorboard::DIR as TENSORBOARD;

pub static EVALUATE: Kind<EvaluateConfig> = Kind::new("evaluate", 4);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    #[serde(default, skip_serializing_if = "crate::stage::keying")]
    pub device: DeviceChoice,
}

impl StageConfig for EvaluateConfig {
    /// burn aborts the process when an allocation fails, and CUDA faults end it. On the
    /// CPU an evaluation needs less memory than the training that made its model, which
    /// has fit: it runs in the build's process, as that training did when it was small.
    fn own_process(&self) -> bool {
        match device::planned(self.device) {
            Ok(Backend::Cpu) => !isolation::in_build_process(None, 0),
            _ => true,
        }
    }
    /// A CUDA evaluation holds a GPU like the training: locally a device slot, on Slurm
    /// `--gres=gpu:1`.
    fn resources(&self) -> Resources {
        match device::planned(self.device) {
            Ok(b) if b.is_gpu() => Resources {
                cpus: 1,
                gpus: 1,
                more_cpus: 0,
            },
            _ => Resources::ONE_CPU,
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
        let train_input = input_of(ctx.inputs(), "train", "evaluate")?;
        let (trained, train_key) = (train_input.dir.clone(), train_input.key.clone());
        let input = input_of(ctx.inputs(), "normalize", "evaluate")?;
        let data = Dataset::shared(&input.dir, &input.key)?;
        let gpu = device::cuda_device(ctx.gpus().first().copied().unwrap_or(0));
        let e = match device::resolve(self.device)? {
            Backend::Cpu => evaluate::<CpuBackend>(&trained, &data, &Default::default())?,
            Backend::Cuda => evaluate::<GpuBackend>(&trained, &data, &gpu)?,
            Backend::CudaUnfused => evaluate::<GpuUnfusedBackend>(&trained, &data, &gpu)?,
        };
        write_file(
            &ctx.out_dir().join("evaluation.json"),
            serde_json::to_vec_pretty(&e)?,
        )?;
        // The report reads everything about a variant from here: the run's curves, summary,
        // config, its key, and (volatile, as in the train output) its timing and TensorBoard
        // events.
        for f in ["metrics.jsonl", "summary.json", "config.json"] {
            std::fs::copy(trained.join(f), ctx.out_dir().join(f))?;
        }
        write_file(&ctx.out_dir().join("train_key.txt"), &train_key)?;
        // Runs from before the volatile folder kept their events in `tensorboard/`.
        for (from, to) in [("volatile", "volatile"), ("tensorboard", TENSORBOARD)] {
            copy_tree(&trained.join(from), &ctx.out_dir().join(to))?;
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

/// Copies the files under `from` (if it exists) to the same places under `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(from).expect("walked under from");
            let dest = to.join(rel);
            std::fs::create_dir_all(dest.parent().expect("joined path has a parent"))?;
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}
