//! Recurrent networks reading the image as a sequence: 32 rows (or columns), each a 96-d
//! vector (32 pixels × 3 channels). Simple RNN, LSTM or GRU; stacked; optionally
//! bidirectional. The classifier reads the last step of each direction.

use burn::module::Module;
use burn::nn::gru::{BiGru, BiGruConfig, Gru, GruConfig};
use burn::nn::lstm::{BiLstm, BiLstmConfig, Lstm, LstmConfig};
use burn::nn::{BiRnn, BiRnnConfig, Rnn, RnnConfig};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::stage::FieldError;
use crate::train::config::check_dropout;
use crate::train::layers::Build;

use super::CLASSES;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cell {
    /// Elman RNN with tanh (Keras' SimpleRNN).
    Simple,
    #[default]
    Lstm,
    Gru,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Read {
    /// One step per image row, top to bottom.
    #[default]
    Rows,
    /// One step per column, left to right.
    Columns,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecurrentConfig {
    #[serde(default)]
    pub cell: Cell,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default = "one")]
    pub layers: usize,
    #[serde(default)]
    pub bidirectional: bool,
    #[serde(default)]
    pub read: Read,
    /// Before the classifier.
    #[serde(default)]
    pub dropout: f64,
}

fn default_hidden() -> usize {
    128
}
fn one() -> usize {
    1
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        RecurrentConfig {
            cell: Cell::Lstm,
            hidden: default_hidden(),
            layers: 1,
            bidirectional: false,
            read: Read::Rows,
            dropout: 0.0,
        }
    }
}

/// One recurrent layer, batch first: `[batch, steps, features]` → `[batch, steps, out]`.
// One model lives per training run; boxing the variants would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer<B: Backend> {
    Simple(Rnn<B>),
    BiSimple(BiRnn<B>),
    Lstm(Lstm<B>),
    BiLstm(BiLstm<B>),
    Gru(Gru<B>),
    BiGru(BiGru<B>),
}

impl<B: Backend> Layer<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Layer::Simple(l) => l.forward(x, None).0,
            Layer::BiSimple(l) => l.forward(x, None).0,
            Layer::Lstm(l) => l.forward(x, None).0,
            Layer::BiLstm(l) => l.forward(x, None).0,
            Layer::Gru(l) => l.forward(x, None),
            Layer::BiGru(l) => l.forward(x, None).0,
        }
    }
}

#[derive(Module, Debug)]
pub struct Recurrent<B: Backend> {
    layers: Vec<Layer<B>>,
    dropout: Dropout,
    head: Linear<B>,
    read: Read,
    hidden: usize,
    bidirectional: bool,
}

impl RecurrentConfig {
    pub fn check(&self) -> Result<(), FieldError> {
        if self.hidden == 0 || self.layers == 0 {
            return Err(FieldError::new(
                "model.hidden",
                "hidden size and layers must be at least 1",
            ));
        }
        check_dropout("model.dropout", self.dropout)
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> Recurrent<B> {
        let init = build.kernel.clone();
        let (h, bi) = (self.hidden, self.bidirectional);
        let layers = (0..self.layers)
            .map(|i| {
                let d_in = if i == 0 {
                    96
                } else if bi {
                    2 * h
                } else {
                    h
                };
                match (self.cell, bi) {
                    (Cell::Simple, false) => Layer::Simple(
                        RnnConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .with_batch_first(true)
                            .init(device),
                    ),
                    (Cell::Simple, true) => Layer::BiSimple(
                        BiRnnConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .with_batch_first(true)
                            .init(device),
                    ),
                    (Cell::Lstm, false) => Layer::Lstm(
                        LstmConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .with_batch_first(true)
                            .init(device),
                    ),
                    (Cell::Lstm, true) => Layer::BiLstm(
                        BiLstmConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .with_batch_first(true)
                            .init(device),
                    ),
                    (Cell::Gru, false) => Layer::Gru(
                        GruConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .init(device),
                    ),
                    (Cell::Gru, true) => Layer::BiGru(
                        BiGruConfig::new(d_in, h, true)
                            .with_initializer(init.clone())
                            .with_batch_first(true)
                            .init(device),
                    ),
                }
            })
            .collect();
        Recurrent {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: build.linear(if bi { 2 * h } else { h }, CLASSES, device),
            read: self.read,
            hidden: h,
            bidirectional: bi,
        }
    }
}

impl<B: Backend> Recurrent<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, _, _, _] = x.dims();
        // [batch, channel, row, col] → [batch, step, channel, pixel] → [batch, 32, 96]
        let seq = match self.read {
            Read::Rows => x.swap_dims(1, 2),
            Read::Columns => x.permute([0, 3, 1, 2]),
        }
        .reshape([batch, 32, 96]);
        let mut h = seq;
        for layer in &self.layers {
            h = layer.forward(h);
        }
        let steps = h.dims()[1];
        let last = |t: Tensor<B, 3>, step: usize, from: usize, to: usize| -> Tensor<B, 2> {
            t.slice([0..batch, step..step + 1, from..to])
                .reshape([batch, to - from])
        };
        let features = if self.bidirectional {
            // Forward direction ends at the last step, backward at the first.
            let fwd = last(h.clone(), steps - 1, 0, self.hidden);
            let bwd = last(h, 0, self.hidden, 2 * self.hidden);
            Tensor::cat(vec![fwd, bwd], 1)
        } else {
            last(h, steps - 1, 0, self.hidden)
        };
        self.head.forward(self.dropout.forward(features))
    }
}
