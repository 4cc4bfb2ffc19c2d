//! Multilayer perceptron: hidden widths, one activation, dropout per layer, optional batch
//! normalization after each hidden dense layer.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::stage::FieldError;
use crate::train::cpu::matmul::dense;
use crate::train::cpu::norm::BatchNorm2d;
use crate::train::hparams::{check_dropout, Activation};
use crate::train::layers::{activate, Build};

use super::{flat, Size, CLASSES, INPUTS};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
    /// One probability per hidden layer, or one for all, or none.
    #[serde(default)]
    pub dropout: Vec<f64>,
    #[serde(default)]
    pub batch_norm: bool,
}

fn default_hidden() -> Vec<usize> {
    vec![512, 512]
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: default_hidden(),
            activation: Activation::Relu,
            dropout: Vec::new(),
            batch_norm: false,
        }
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    layers: Vec<Linear<B>>,
    norms: Vec<BatchNorm2d<B>>,
    dropouts: Vec<Dropout>,
    out: Linear<B>,
    activation: Activation,
}

impl MlpConfig {
    pub fn size(&self) -> Size {
        let widths: Vec<f64> = std::iter::once(INPUTS as f64)
            .chain(self.hidden.iter().map(|&h| h as f64))
            .chain([CLASSES as f64])
            .collect();
        Size::dense(&widths)
    }

    fn dropout_of(&self, layer: usize) -> f64 {
        match self.dropout.len() {
            0 => 0.0,
            1 => self.dropout[0],
            _ => self.dropout[layer],
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.hidden.contains(&0) {
            return Err(FieldError::new("model.hidden", "a hidden layer of 0 units"));
        }
        if self.dropout.len() > 1 && self.dropout.len() != self.hidden.len() {
            return Err(FieldError::new(
                "model.dropout",
                format!(
                    "{} dropout values for {} hidden layers",
                    self.dropout.len(),
                    self.hidden.len()
                ),
            )
            .hint("give one value per hidden layer, or a single value for all"));
        }
        for (i, p) in self.dropout.iter().enumerate() {
            check_dropout(&format!("model.dropout[{i}]"), *p)?;
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> Mlp<B> {
        let mut width = INPUTS;
        let mut layers = Vec::new();
        let mut norms = Vec::new();
        let mut dropouts = Vec::new();
        for (i, &h) in self.hidden.iter().enumerate() {
            layers.push(build.linear(width, h, device));
            if self.batch_norm {
                norms.push(build.batch_norm(h, device));
            }
            dropouts.push(DropoutConfig::new(self.dropout_of(i)).init());
            width = h;
        }
        Mlp {
            layers,
            norms,
            dropouts,
            out: build.linear(width, CLASSES, device),
            activation: self.activation,
        }
    }
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = flat(x);
        for (i, layer) in self.layers.iter().enumerate() {
            h = dense(layer, h);
            if let Some(norm) = self.norms.get(i) {
                // Features as channels of 1 × 1 maps.
                let [n, c] = h.dims();
                h = norm.forward(h.reshape([n, c, 1, 1])).reshape([n, c]);
            }
            h = self.dropouts[i].forward(activate(self.activation, h));
        }
        dense(&self.out, h)
    }
}
