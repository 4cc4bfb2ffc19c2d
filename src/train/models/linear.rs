//! The linear family: a true linear softmax classifier (3072 → 10), and the seed notebook's
//! "Perceptron" (flatten → one dense hidden layer with an activation → 10).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::stage::FieldError;
use crate::train::cpu::matmul::dense;
use crate::train::hparams::{check_dropout, Activation};
use crate::train::layers::{activate, Build};

use super::{flat, Size, CLASSES, INPUTS};

/// `Linear()`: softmax regression on the raw pixels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {}

#[derive(Module, Debug)]
pub struct LinearNet<B: Backend> {
    fc: Linear<B>,
}

impl LinearConfig {
    pub fn size(&self) -> Size {
        Size::dense(&[INPUTS as f64, CLASSES as f64])
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> LinearNet<B> {
        LinearNet {
            fc: build.linear(INPUTS, CLASSES, device),
        }
    }
}

impl<B: Backend> LinearNet<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        dense(&self.fc, flat(x))
    }
}

/// `Perceptron(hidden: 3072, activation: Relu)`: the seed notebook's model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerceptronConfig {
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub dropout: f64,
}

fn default_hidden() -> usize {
    3072
}

impl Default for PerceptronConfig {
    fn default() -> Self {
        PerceptronConfig {
            hidden: default_hidden(),
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

#[derive(Module, Debug)]
pub struct Perceptron<B: Backend> {
    hidden: Linear<B>,
    out: Linear<B>,
    dropout: Dropout,
    activation: Activation,
}

impl PerceptronConfig {
    pub fn size(&self) -> Size {
        Size::dense(&[INPUTS as f64, self.hidden as f64, CLASSES as f64])
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.hidden == 0 {
            return Err(FieldError::new("model.hidden", "a hidden layer of 0 units"));
        }
        check_dropout("model.dropout", self.dropout)
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> Perceptron<B> {
        Perceptron {
            hidden: build.linear(INPUTS, self.hidden, device),
            out: build.linear(self.hidden, CLASSES, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        }
    }
}

impl<B: Backend> Perceptron<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = activate(self.activation, dense(&self.hidden, flat(x)));
        dense(&self.out, self.dropout.forward(h))
    }
}
