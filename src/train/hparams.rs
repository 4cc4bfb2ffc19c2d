//! The per-layer choices every model family shares, as written in RON: activation, weight
//! initializer, weight penalty, and the range a dropout rate must lie in.
//!
//! A leaf: the run's config ([`config`](super::config)), the families
//! ([`models`](super::models)) and the CPU kernels ([`cpu`](super::cpu)) all read it, and it
//! reads none of them.

use serde::{Deserialize, Serialize};

use crate::stage::FieldError;

/// Weight initializers, named as in Keras (Xavier = Glorot, Kaiming = He).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub enum Init {
    #[default]
    #[serde(alias = "XavierUniform")]
    GlorotUniform,
    #[serde(alias = "XavierNormal")]
    GlorotNormal,
    #[serde(alias = "KaimingUniform")]
    HeUniform,
    #[serde(alias = "KaimingNormal")]
    HeNormal,
    LecunUniform,
    LecunNormal,
    Orthogonal,
    Zeros,
    Ones,
    Constant(f64),
    /// Uniform in [min, max].
    Uniform(f64, f64),
    /// Normal with (mean, std).
    Normal(f64, f64),
}

/// Keras-style penalties added to the loss: `l1 * Σ|w| + l2 * Σw²`, separately for kernels
/// (weights of dense, convolution and recurrent layers) and biases. Batch-norm scales and
/// shifts are never penalized.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Regularizer {
    #[serde(default)]
    pub kernel_l1: f64,
    #[serde(default)]
    pub kernel_l2: f64,
    #[serde(default)]
    pub bias_l1: f64,
    #[serde(default)]
    pub bias_l2: f64,
}

impl Regularizer {
    pub fn is_zero(&self) -> bool {
        self.kernel_l1 == 0.0 && self.kernel_l2 == 0.0 && self.bias_l1 == 0.0 && self.bias_l2 == 0.0
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Sigmoid,
    Elu,
    Selu,
    Gelu,
    /// Slope 0.01 for negative inputs.
    LeakyRelu,
    /// The identity.
    Linear,
}

/// Dropout probabilities must leave something: [0, 1).
pub fn check_dropout(path: &str, p: f64) -> Result<(), FieldError> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(
            FieldError::new(path, format!("dropout must be in [0, 1), got {p}"))
                .hint("0.5 drops half the units"),
        )
    }
}

pub fn check_init(path: &str, init: &Init) -> Result<(), FieldError> {
    match init {
        Init::Uniform(a, b) if a >= b => Err(FieldError::new(
            path,
            format!("Uniform({a}, {b}): min must be below max"),
        )),
        Init::Normal(_, s) if *s <= 0.0 => Err(FieldError::new(
            path,
            format!("Normal(_, {s}): std must be > 0"),
        )),
        _ => Ok(()),
    }
}
