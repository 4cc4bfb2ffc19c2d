//! The training config as written in RON: every hyperparameter of the seed study, with its
//! default and its check. The model families' own fields live with each family, the
//! choices every layer shares (activation, initializer, penalty) in [`hparams`](super::hparams).

use serde::{Deserialize, Serialize};

use super::hparams::{check_init, Init, Regularizer};
use super::models::ModelConfig;
use crate::stage::FieldError;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    /// The seed study trains every base model for 500 epochs.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: Schedule,
    /// Kernel (weight) initializer; Keras' default.
    #[serde(default)]
    pub initializer: Init,
    #[serde(default = "zeros")]
    pub bias_initializer: Init,
    #[serde(default)]
    pub regularizer: Regularizer,
    #[serde(default)]
    pub seed: u64,
    /// Reshuffle the training set every epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Where to train; the backend actually used is part of the key (it changes results).
    #[serde(default, skip_serializing_if = "crate::stage::keying")]
    pub device: DeviceChoice,
    /// CPU threads this training computes on; default: [`super::threads`]'s rule. Not in
    /// the key: the weights are the same bytes on any number of threads.
    #[serde(default, skip_serializing_if = "crate::stage::keying")]
    pub threads: Option<usize>,
}

fn default_epochs() -> usize {
    500
}
fn default_batch_size() -> usize {
    32
}
fn zeros() -> Init {
    Init::Zeros
}
fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, else CPU; `--device` / `PIPE_DEVICE` override it.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// SGD with optional (Nesterov) momentum, as the seed study.
    #[default]
    Sgd,
    Adam,
}

/// One flat struct for both optimizers, so a study varies `optimizer.momentum` or
/// `optimizer.lr` by the same short path. Fields the kind does not use are ignored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    #[serde(default)]
    pub kind: OptimizerKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// SGD only.
    #[serde(default)]
    pub momentum: f64,
    /// SGD only.
    #[serde(default)]
    pub nesterov: bool,
    /// Adam only.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
}

fn default_lr() -> f64 {
    0.01
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_epsilon() -> f64 {
    1e-7
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: default_lr(),
            momentum: 0.0,
            nesterov: false,
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
        }
    }
}

/// Learning rate over epochs (epoch 0 is the first).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub enum Schedule {
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step { every: usize, gamma: f64 },
    /// Cosine from `lr` at the first epoch down to `min_lr` at the last.
    Cosine { min_lr: f64 },
}

impl Schedule {
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(&1)) as i32),
            Schedule::Cosine { min_lr } => {
                let t = if epochs <= 1 {
                    0.0
                } else {
                    epoch as f64 / (epochs - 1) as f64
                };
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl TrainConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        if self.epochs == 0 {
            return Err(
                FieldError::new("epochs", "at least one epoch").hint("the seed study uses 500")
            );
        }
        let most = max_epochs();
        if self.epochs as u64 > most {
            return Err(FieldError::new(
                "epochs",
                format!("{} epochs is over the limit of {most}", self.epochs),
            )
            .hint(format!(
                "the seed study uses 500; {MAX_EPOCHS_VAR}=<n> raises the limit"
            )));
        }
        if self.batch_size == 0 {
            return Err(
                FieldError::new("batch_size", "batch size must be at least 1")
                    .hint("the seed study uses 32"),
            );
        }
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(FieldError::new(
                "optimizer.lr",
                format!("learning rate must be > 0, got {}", o.lr),
            )
            .hint("try 0.01"));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(FieldError::new(
                "optimizer.momentum",
                format!("momentum must be in [0, 1), got {}", o.momentum),
            )
            .hint("0.9 is the usual high value"));
        }
        if o.nesterov && o.momentum == 0.0 && o.kind == OptimizerKind::Sgd {
            return Err(FieldError::new(
                "optimizer.nesterov",
                "Nesterov momentum needs momentum > 0",
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(FieldError::new(
                "optimizer.beta1",
                "Adam's betas must be in [0, 1)",
            ));
        }
        if o.epsilon <= 0.0 {
            return Err(FieldError::new("optimizer.epsilon", "epsilon must be > 0"));
        }
        match &self.schedule {
            Schedule::Step { every: 0, .. } => {
                return Err(FieldError::new(
                    "schedule.every",
                    "a step schedule's `every` must be at least 1 epoch, got 0",
                )
                .hint("e.g. `Step(every: 30, gamma: 0.1)`"))
            }
            Schedule::Step { gamma, .. } if *gamma <= 0.0 => {
                return Err(FieldError::new("schedule.gamma", "gamma must be > 0")
                    .hint("0.1 divides the rate by ten"))
            }
            Schedule::Cosine { min_lr } if *min_lr < 0.0 || *min_lr > o.lr => {
                return Err(FieldError::new(
                    "schedule.min_lr",
                    format!("min_lr must be in [0, lr], got {min_lr}"),
                ))
            }
            _ => {}
        }
        let r = &self.regularizer;
        for (name, v) in [
            ("kernel_l1", r.kernel_l1),
            ("kernel_l2", r.kernel_l2),
            ("bias_l1", r.bias_l1),
            ("bias_l2", r.bias_l2),
        ] {
            if v < 0.0 || !v.is_finite() {
                return Err(FieldError::new(
                    &format!("regularizer.{name}"),
                    format!("a penalty must be ≥ 0, got {v}"),
                ));
            }
        }
        if self.threads == Some(0) {
            return Err(FieldError::new("threads", "at least one thread")
                .hint("leave it out to let pipe choose"));
        }
        check_init("initializer", &self.initializer)?;
        check_init("bias_initializer", &self.bias_initializer)?;
        if self.bias_initializer == Init::Orthogonal {
            return Err(FieldError::new(
                "bias_initializer",
                "Orthogonal needs a matrix; a bias is a vector (use Zeros, Constant, Uniform or Normal)",
            ));
        }
        self.model.check()?;
        self.check_size()
    }

    /// Refuses, before anything runs, a model whose training would not fit in memory: one
    /// too large aborts the process (an allocation failure is not a panic) and takes every
    /// stage running beside it down.
    fn check_size(&self) -> Result<(), FieldError> {
        let Some(size) = self.model.size() else {
            return Ok(());
        };
        let limit_gb = memory_limit_gb();
        let gb = size.training_bytes(self.batch_size) / 1e9;
        if gb > limit_gb {
            return Err(FieldError::new(
                "model",
                format!(
                    "the model would take about {gb:.3e} GB to train ({:.3e} parameters, \
                     {:.3e} activations per image at batch size {}), over the {limit_gb} GB limit",
                    size.params, size.activations, self.batch_size
                ),
            )
            .hint(format!("{MEMORY_LIMIT_VAR}=<GB> raises the limit")));
        }
        Ok(())
    }
}

/// The epochs a config may ask for: `PIPE_MAX_EPOCHS`, or 100,000 (200 times the seed
/// study's 500: more is a typo that would start a run of years).
pub const MAX_EPOCHS_VAR: &str = "PIPE_MAX_EPOCHS";

fn max_epochs() -> u64 {
    std::env::var(MAX_EPOCHS_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(100_000)
}

/// The training memory a config may ask for, in GB: `PIPE_MEMORY_LIMIT_GB`, or 64.
pub const MEMORY_LIMIT_VAR: &str = "PIPE_MEMORY_LIMIT_GB";

fn memory_limit_gb() -> f64 {
    std::env::var(MEMORY_LIMIT_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(64.0)
}
