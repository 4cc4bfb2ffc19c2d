//! `fake` and `fake_gather`: instant stage kinds for testing the engine through the real
//! binary. Their output is a pure function of config and inputs, unless `constant` says
//! otherwise (to show early cutoff); `fail`, `panic`, `abort`, `sleep_ms` and `steps`
//! simulate failing, crashing, slow and resumable work; `own_process` runs it as training
//! runs, in a child process.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::stage::{FieldError, Kind, Resources, RunCtx, StageConfig};

pub static FAKE: Kind<FakeConfig> = Kind::new("fake", 1);
pub static FAKE_GATHER: Kind<FakeConfig> = Kind::new("fake_gather", 1).gathering();

/// Shaped like a training config so variant paths (`optimizer.momentum`) mean the same.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FakeOptimizer {
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
}

fn default_lr() -> f64 {
    0.01
}

impl Default for FakeOptimizer {
    fn default() -> Self {
        FakeOptimizer {
            lr: default_lr(),
            momentum: 0.0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    #[serde(default)]
    pub optimizer: FakeOptimizer,
    #[serde(default)]
    pub value: String,
    /// When set, the output is this text whatever the config and inputs.
    #[serde(default)]
    pub constant: Option<String>,
    #[serde(default)]
    pub sleep_ms: u64,
    /// Work in this many resumable steps of `sleep_ms` each, checkpointed in scratch.
    #[serde(default)]
    pub steps: u32,
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub panic: bool,
    #[serde(default)]
    pub gpu: bool,
    /// Abort the process (what burn does when an allocation fails).
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
    /// Run in a child process of its own, as training does.
    #[serde(default, skip_serializing_if = "is_false")]
    pub own_process: bool,
    /// Cosmetic: never part of the key.
    #[serde(default, skip_serializing_if = "crate::stage::keying")]
    pub title: String,
    /// Cores beyond one it would use well (as a CPU training); never part of the key.
    #[serde(default, skip_serializing_if = "crate::stage::keying")]
    pub more_cpus: usize,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn hash_dir(dir: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e?;
        if e.file_type().is_file() {
            h.update(e.path().strip_prefix(dir)?.to_string_lossy().as_bytes());
            h.update(&std::fs::read(e.path())?);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

impl StageConfig for FakeConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.optimizer.lr <= 0.0 {
            return Err(FieldError::new(
                "optimizer.lr",
                format!("learning rate must be > 0, got {}", self.optimizer.lr),
            )
            .hint("try 0.01"));
        }
        if !(0.0..1.0).contains(&self.optimizer.momentum) {
            return Err(FieldError::new(
                "optimizer.momentum",
                format!(
                    "momentum must be in [0, 1), got {}",
                    self.optimizer.momentum
                ),
            )
            .hint("0.9 is the usual high value"));
        }
        Ok(())
    }

    fn resources(&self) -> Resources {
        if self.gpu {
            Resources {
                cpus: 1,
                gpus: 1,
                more_cpus: 0,
            }
        } else {
            Resources {
                more_cpus: self.more_cpus,
                ..Resources::ONE_CPU
            }
        }
    }

    fn own_process(&self) -> bool {
        self.own_process
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let step_file = ctx.scratch_dir().join("step");
        let mut step: u32 = std::fs::read_to_string(&step_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if step > 0 {
            ctx.log(format!("resumed at step {step}"));
        }
        while step < self.steps {
            std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
            step += 1;
            std::fs::write(&step_file, step.to_string())?;
            ctx.progress(step as u64, self.steps as u64, "steps");
        }
        if self.steps == 0 && self.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        }
        if self.panic {
            panic!("fake stage asked to panic");
        }
        if self.abort {
            eprintln!("fake stage asked to abort");
            std::process::abort();
        }
        if self.fail {
            bail!("fake stage asked to fail");
        }
        let mut text = String::new();
        match &self.constant {
            Some(c) => text.push_str(c),
            None => {
                writeln!(text, "config {}", serde_json::to_string(self)?)?;
                for input in ctx.inputs() {
                    writeln!(
                        text,
                        "input {} {}",
                        input.label,
                        hash_dir(&input.dir).with_context(|| format!("reading {}", input.stage))?
                    )?;
                }
            }
        }
        let name = match ctx.target() {
            Some(t) => Path::new(t)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
            None => "out.txt".to_string(),
        };
        std::fs::write(ctx.out_dir().join(name), text)?;
        ctx.log(format!("wrote {} input(s)", ctx.inputs().len()));
        Ok(())
    }
}
