//! Networks with skip connections: CIFAR-style ResNet (basic blocks, depth 6n+2 as in
//! He et al. 2016: ResNet-20/32/56) and a dense HighwayNet (Srivastava et al. 2015), whose
//! gates learn how much of each layer to carry. Both add a transformed signal to a carried
//! one; they share the activation and the classifier head.

use crate::train::cpu::conv::conv2d_module;
use crate::train::cpu::gate::highway_mix;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::AdaptiveAvgPool2dConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, PaddingConfig2d};
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
pub struct ResNetConfig {
    /// 6n + 2 layers: 20, 32, 56, 110.
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Channels of the first stage (then ×2, ×4).
    #[serde(default = "default_width")]
    pub width: usize,
    #[serde(default)]
    pub activation: Activation,
}

fn default_depth() -> usize {
    20
}
fn default_width() -> usize {
    16
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            depth: default_depth(),
            width: default_width(),
            activation: Activation::Relu,
        }
    }
}

fn conv3<B: Backend>(
    build: &Build,
    c_in: usize,
    c_out: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(build.kernel.clone())
        .init(device)
}

#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm2d<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm2d<B>,
    /// 1×1 projection where the shape changes.
    project: Option<(Conv2d<B>, BatchNorm2d<B>)>,
}

impl<B: Backend> BasicBlock<B> {
    fn new(build: &Build, c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Self {
        let project = (stride != 1 || c_in != c_out).then(|| {
            let conv = Conv2dConfig::new([c_in, c_out], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .with_initializer(build.kernel.clone())
                .init(device);
            (conv, build.batch_norm(c_out, device))
        });
        BasicBlock {
            conv1: conv3(build, c_in, c_out, stride, device),
            bn1: build.batch_norm(c_out, device),
            conv2: conv3(build, c_out, c_out, 1, device),
            bn2: build.batch_norm(c_out, device),
            project,
        }
    }

    fn forward(&self, x: Tensor<B, 4>, a: Activation) -> Tensor<B, 4> {
        let h = conv2d_module(&self.conv1, x.clone());
        let h = conv2d_module(&self.conv2, self.bn1.forward_then(h, None, a));
        let carried = match &self.project {
            Some((conv, bn)) => bn.forward(conv2d_module(conv, x)),
            None => x,
        };
        self.bn2.forward_then(h, Some(carried), a)
    }
}

#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    stem: Conv2d<B>,
    stem_bn: BatchNorm2d<B>,
    blocks: Vec<BasicBlock<B>>,
    head: Linear<B>,
    activation: Activation,
}

impl ResNetConfig {
    pub fn size(&self) -> Size {
        let n = (self.depth.saturating_sub(2) / 6) as f64;
        let w = self.width as f64;
        // Stem, then three stages of n blocks (two 3×3 convs with batch norm each) at
        // 32², 16² and 8² with w, 2w, 4w channels; 1×1 projections where widths change.
        let mut params = 27.0 * w + 2.0 * w;
        let mut activations = 3.0 * w * 1024.0;
        for (stage, side) in [(0, 32.0), (1, 16.0), (2, 8.0)] {
            let c = w * f64::from(1 << stage);
            params += n * 2.0 * (9.0 * c * c + 2.0 * c)
                + if stage > 0 {
                    c * c / 2.0 + 2.0 * c
                } else {
                    0.0
                };
            activations += n * 6.0 * c * side * side;
        }
        params += 4.0 * w * CLASSES as f64 + CLASSES as f64;
        Size {
            params,
            activations,
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.depth < 8 || !(self.depth - 2).is_multiple_of(6) {
            return Err(FieldError::new(
                "model.depth",
                format!("depth {} is not 6n + 2 with n ≥ 1", self.depth),
            )
            .hint("ResNet-20, -32, -56 and -110 have depth 20, 32, 56, 110"));
        }
        if self.width == 0 {
            return Err(FieldError::new("model.width", "width must be at least 1")
                .hint("CIFAR ResNets use 16"));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> ResNet<B> {
        let n = (self.depth - 2) / 6;
        let mut blocks = Vec::new();
        let mut c = self.width;
        for stage in 0..3 {
            let c_out = self.width << stage;
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(build, c, c_out, stride, device));
                c = c_out;
            }
        }
        ResNet {
            stem: conv3(build, 3, self.width, 1, device),
            stem_bn: build.batch_norm(self.width, device),
            blocks,
            head: build.linear(c, CLASSES, device),
            activation: self.activation,
        }
    }
}

impl<B: Backend> ResNet<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = self
            .stem_bn
            .forward_then(conv2d_module(&self.stem, x), None, self.activation);
        for b in &self.blocks {
            h = b.forward(h, self.activation);
        }
        let pooled = AdaptiveAvgPool2dConfig::new([1, 1]).init().forward(h);
        dense(&self.head, flat(pooled))
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HighwayConfig {
    /// Number of highway layers.
    #[serde(default = "default_highway_depth")]
    pub depth: usize,
    #[serde(default = "default_highway_width")]
    pub width: usize,
    /// Initial bias of the transform gates: negative values start by carrying the input.
    #[serde(default = "default_gate_bias")]
    pub gate_bias: f64,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub dropout: f64,
}

fn default_highway_depth() -> usize {
    10
}
fn default_highway_width() -> usize {
    512
}
fn default_gate_bias() -> f64 {
    -2.0
}

impl Default for HighwayConfig {
    fn default() -> Self {
        HighwayConfig {
            depth: default_highway_depth(),
            width: default_highway_width(),
            gate_bias: default_gate_bias(),
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

#[derive(Module, Debug)]
pub struct HighwayLayer<B: Backend> {
    transform: Linear<B>,
    gate: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Highway<B: Backend> {
    input: Linear<B>,
    layers: Vec<HighwayLayer<B>>,
    dropout: Dropout,
    head: Linear<B>,
    activation: Activation,
}

/// The gate biases a bias initializer must leave alone (see `layers::init_biases`).
pub const GATE_BIAS: &str = "gate.bias";

impl HighwayConfig {
    pub fn size(&self) -> Size {
        let w = self.width as f64;
        let layer = 2.0 * (w * w + w);
        Size {
            params: INPUTS as f64 * w
                + w
                + self.depth as f64 * layer
                + w * CLASSES as f64
                + CLASSES as f64,
            activations: w + self.depth as f64 * 4.0 * w + CLASSES as f64,
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.depth == 0 || self.width == 0 {
            return Err(FieldError::new(
                "model.depth",
                "depth and width must be at least 1",
            ));
        }
        check_dropout("model.dropout", self.dropout)
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> Highway<B> {
        let layers = (0..self.depth)
            .map(|_| {
                let mut gate = build.linear(self.width, self.width, device);
                gate.bias = Some(Param::from_tensor(Tensor::full(
                    [self.width],
                    self.gate_bias,
                    device,
                )));
                HighwayLayer {
                    transform: build.linear(self.width, self.width, device),
                    gate,
                }
            })
            .collect();
        Highway {
            input: build.linear(INPUTS, self.width, device),
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: build.linear(self.width, CLASSES, device),
            activation: self.activation,
        }
    }
}

impl<B: Backend> Highway<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = activate(self.activation, dense(&self.input, flat(x)));
        for l in &self.layers {
            let gate = dense(&l.gate, h.clone());
            h = highway_mix(gate, dense(&l.transform, h.clone()), h, self.activation);
        }
        dense(&self.head, self.dropout.forward(h))
    }
}
