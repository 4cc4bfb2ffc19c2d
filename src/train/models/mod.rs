//! The five model families, one file each. A family's config is a variant of
//! [`ModelConfig`] in RON (`model: Mlp(hidden: [512, 512])`); `init` builds the burn module.

pub mod convnet;
pub mod linear;
pub mod mlp;
pub mod residual;
pub mod rnn;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::hparams::Init;
use super::layers::{init_biases, initializer, materialize, renumber, Build};
use crate::stage::FieldError;

pub const INPUTS: usize = 3 * 32 * 32;
pub const CLASSES: usize = 10;

/// `[batch, c, h, w]` → `[batch, c·h·w]`.
pub fn flat<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    x.flatten(1, 3)
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Linear(linear::LinearConfig),
    Perceptron(linear::PerceptronConfig),
    Mlp(mlp::MlpConfig),
    ConvNet(convnet::ConvNetConfig),
    ResNet(residual::ResNetConfig),
    Highway(residual::HighwayConfig),
    Rnn(rnn::RecurrentConfig),
}

// One model lives per training run; boxing the variants would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model<B: Backend> {
    Linear(linear::LinearNet<B>),
    Perceptron(linear::Perceptron<B>),
    Mlp(mlp::Mlp<B>),
    ConvNet(convnet::ConvNet<B>),
    ResNet(residual::ResNet<B>),
    Highway(residual::Highway<B>),
    Rnn(rnn::Recurrent<B>),
}

/// A model's size before it is built: parameters, and the floats one image's forward pass
/// keeps for the backward pass. An estimate (within a small factor), in floats so that an
/// absurd width (`hidden: [4294967295]`) gives a number to refuse, not an overflow.
#[derive(Default, Clone, Copy, Debug)]
pub struct Size {
    pub params: f64,
    pub activations: f64,
}

impl Size {
    /// A chain of dense layers of these widths (input first): weights and biases, and each
    /// layer's output kept twice (before and after its activation).
    fn dense(widths: &[f64]) -> Size {
        let mut s = Size::default();
        for w in widths.windows(2) {
            s.params += w[0] * w[1] + w[1];
            s.activations += 2.0 * w[1];
        }
        s
    }

    /// Bytes training takes at `batch`: each parameter with its gradient and up to two
    /// optimizer slots (Adam), and the activations of one batch with their gradients.
    pub fn training_bytes(&self, batch: usize) -> f64 {
        4.0 * (4.0 * self.params + 2.0 * self.activations * batch as f64)
    }
}

impl ModelConfig {
    /// `None` when the config does not describe a model that fits a 32×32 image.
    pub fn size(&self) -> Option<Size> {
        Some(match self {
            ModelConfig::Linear(c) => c.size(),
            ModelConfig::Perceptron(c) => c.size(),
            ModelConfig::Mlp(c) => c.size(),
            ModelConfig::ConvNet(c) => c.size()?,
            ModelConfig::ResNet(c) => c.size(),
            ModelConfig::Highway(c) => c.size(),
            ModelConfig::Rnn(c) => c.size(),
        })
    }

    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Linear(_) => "linear",
            ModelConfig::Perceptron(_) => "perceptron",
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::ConvNet(_) => "convnet",
            ModelConfig::ResNet(_) => "resnet",
            ModelConfig::Highway(_) => "highway",
            ModelConfig::Rnn(_) => "rnn",
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        match self {
            ModelConfig::Linear(_) => Ok(()),
            ModelConfig::Perceptron(c) => c.check(),
            ModelConfig::Mlp(c) => c.check(),
            ModelConfig::ConvNet(c) => c.check(),
            ModelConfig::ResNet(c) => c.check(),
            ModelConfig::Highway(c) => c.check(),
            ModelConfig::Rnn(c) => c.check(),
        }
    }
}

/// burn's `flex` backend draws every random number (initial weights, dropout masks) from
/// one generator per process, which `Backend::seed` sets. Trainings and evaluations that
/// share the build's process hold this while they seed it and draw from it, so that one's
/// draws never come from another's seed; trainings with dropout, which draw through every
/// epoch, run in a process of their own ([`ModelConfig::draws_while_training`]).
pub static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`GENERATOR`], held.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

impl ModelConfig {
    /// Whether training draws random numbers after the initial weights (dropout masks).
    pub fn draws_while_training(&self) -> bool {
        fn any_dropout(v: &serde_json::Value, under: bool) -> bool {
            match v {
                serde_json::Value::Number(n) => under && n.as_f64().is_some_and(|p| p > 0.0),
                serde_json::Value::Array(a) => a.iter().any(|x| any_dropout(x, under)),
                serde_json::Value::Object(o) => o
                    .iter()
                    .any(|(k, x)| any_dropout(x, under || k.contains("dropout"))),
                _ => false,
            }
        }
        serde_json::to_value(self).is_ok_and(|v| any_dropout(&v, false))
    }
}

/// Builds `model` with every parameter initialized now, in a fixed order, from the
/// backend's generator (seed it first): kernels by `kernel`, biases by `bias`.
pub fn init<B: Backend>(
    model: &ModelConfig,
    kernel: &Init,
    bias: &Init,
    device: &B::Device,
) -> Model<B> {
    let build = Build::new(initializer(kernel));
    let model = match model {
        ModelConfig::Linear(c) => Model::Linear(c.init(&build, device)),
        ModelConfig::Perceptron(c) => Model::Perceptron(c.init(&build, device)),
        ModelConfig::Mlp(c) => Model::Mlp(c.init(&build, device)),
        ModelConfig::ConvNet(c) => Model::ConvNet(c.init(&build, device)),
        ModelConfig::ResNet(c) => Model::ResNet(c.init(&build, device)),
        ModelConfig::Highway(c) => Model::Highway(c.init(&build, device)),
        ModelConfig::Rnn(c) => Model::Rnn(c.init(&build, device)),
    };
    materialize(&model);
    let model = init_biases(model, bias, &[residual::GATE_BIAS], device);
    renumber(model)
}

impl<B: Backend> Model<B> {
    /// `[batch, 3, 32, 32]` scaled images → `[batch, 10]` logits.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Model::Linear(m) => m.forward(x),
            Model::Perceptron(m) => m.forward(x),
            Model::Mlp(m) => m.forward(x),
            Model::ConvNet(m) => m.forward(x),
            Model::ResNet(m) => m.forward(x),
            Model::Highway(m) => m.forward(x),
            Model::Rnn(m) => m.forward(x),
        }
    }
}
