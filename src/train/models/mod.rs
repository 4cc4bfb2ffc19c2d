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

impl ModelConfig {
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
