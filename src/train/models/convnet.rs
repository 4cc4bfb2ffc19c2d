//! ConvNet: convolution blocks (filters, kernel, stride, padding, pooling, batch norm,
//! dropout), then a dense head.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::AvgPool2dConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::stage::FieldError;
use crate::train::cpu::conv;
use crate::train::cpu::matmul::dense;
use crate::train::cpu::norm::BatchNorm2d;
use crate::train::cpu::pool;
use crate::train::hparams::{check_dropout, Activation};
use crate::train::layers::{activate, Build};

use super::{Size, CLASSES};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// Keep the size (÷ stride).
    #[default]
    Same,
    Valid,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Max pooling with this window (and stride).
    Max(usize),
    Avg(usize),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConvBlock {
    pub filters: usize,
    #[serde(default = "three")]
    pub kernel: usize,
    #[serde(default = "one")]
    pub stride: usize,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default = "max2")]
    pub pool: Option<Pool>,
    #[serde(default)]
    pub batch_norm: bool,
    #[serde(default)]
    pub dropout: f64,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn max2() -> Option<Pool> {
    Some(Pool::Max(2))
}

fn block(filters: usize) -> ConvBlock {
    ConvBlock {
        filters,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
        pool: max2(),
        batch_norm: false,
        dropout: 0.0,
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConvNetConfig {
    #[serde(default = "default_blocks")]
    pub blocks: Vec<ConvBlock>,
    /// Hidden dense widths after the convolutions.
    #[serde(default = "default_dense")]
    pub dense: Vec<usize>,
    #[serde(default)]
    pub activation: Activation,
    /// Before each dense layer.
    #[serde(default)]
    pub dropout: f64,
}

fn default_blocks() -> Vec<ConvBlock> {
    vec![block(32), block(64)]
}
fn default_dense() -> Vec<usize> {
    vec![128]
}

impl Default for ConvNetConfig {
    fn default() -> Self {
        ConvNetConfig {
            blocks: default_blocks(),
            dense: default_dense(),
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

/// The non-parameter part of a block, kept beside the layers.
#[derive(Clone, Debug)]
struct Shape {
    pool: Option<Pool>,
}

/// A convolution whose bias is added on the `[N, C, H·W]` view with the bias repeated to
/// `[N, C, 1]`, as `norm` does for batch norm: burn's own conv bias gradient sums a
/// copy with swapped axes that `flex` makes element by element (11% of the ConvNet's
/// training time in `perf`). Same math; `bias` is the name the bias initializer and the
/// weight penalty look for.
#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    conv: Conv2d<B>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Conv<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = conv::conv2d_module(&self.conv, x);
        let [n, c, h, w] = y.dims();
        let bias = self.bias.val().reshape([1, c, 1]).repeat_dim(0, n);
        (y.reshape([n, c, h * w]) + bias).reshape([n, c, h, w])
    }
}

#[derive(Module, Debug)]
pub struct ConvNet<B: Backend> {
    convs: Vec<Conv<B>>,
    norms: Vec<Option<BatchNorm2d<B>>>,
    block_dropouts: Vec<Dropout>,
    dense: Vec<Linear<B>>,
    dropout: Dropout,
    out: Linear<B>,
    shapes: Vec<Shape>,
    activation: Activation,
}

/// Output side of a convolution: `Same` keeps ⌈n / stride⌉.
fn conv_out(n: usize, b: &ConvBlock) -> usize {
    match b.padding {
        Padding::Same => n.div_ceil(b.stride),
        Padding::Valid => (n.saturating_sub(b.kernel)) / b.stride + 1,
    }
}

impl ConvNetConfig {
    /// Parameters and stored activations (each conv's map before pooling, counted twice
    /// for the activation and normalization that follow); `None` when a block does not fit.
    pub fn size(&self) -> Option<Size> {
        let sizes = self.sizes().ok()?;
        let (mut s, mut channels, mut side) = (Size::default(), 3.0, 32.0_f64);
        for (b, &after) in self.blocks.iter().zip(&sizes) {
            let f = b.filters as f64;
            s.params += (b.kernel * b.kernel) as f64 * channels * f + f;
            side = (side / b.stride as f64).ceil();
            s.activations += 2.0 * f * side * side;
            channels = f;
            side = after as f64;
        }
        let flat = channels * side * side;
        let dense: Vec<f64> = std::iter::once(flat)
            .chain(self.dense.iter().map(|&d| d as f64))
            .chain([CLASSES as f64])
            .collect();
        let head = Size::dense(&dense);
        Some(Size {
            params: s.params + head.params,
            activations: s.activations + head.activations,
        })
    }

    /// Spatial size after every block, or the block that shrinks it to nothing.
    fn sizes(&self) -> Result<Vec<usize>, FieldError> {
        let mut n = 32;
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            if b.padding == Padding::Valid && b.kernel > n {
                return Err(FieldError::new(
                    &format!("model.blocks[{i}].kernel"),
                    format!("kernel {} on a {n}×{n} input", b.kernel),
                ));
            }
            n = conv_out(n, b);
            if let Some(Pool::Max(k) | Pool::Avg(k)) = b.pool {
                if k > n {
                    return Err(FieldError::new(
                        &format!("model.blocks[{i}].pool"),
                        format!("a {k}×{k} pool on a {n}×{n} map"),
                    )
                    .hint("remove pooling from a later block, or use fewer blocks"));
                }
                n /= k;
            }
            out.push(n);
        }
        Ok(out)
    }

    pub fn check(&self) -> Result<(), FieldError> {
        for (i, b) in self.blocks.iter().enumerate() {
            let at = |f: &str| format!("model.blocks[{i}].{f}");
            if b.filters == 0 || b.kernel == 0 || b.stride == 0 {
                return Err(FieldError::new(
                    &at("filters"),
                    "filters, kernel and stride must be at least 1",
                ));
            }
            if let Some(Pool::Max(0) | Pool::Avg(0)) = b.pool {
                return Err(FieldError::new(&at("pool"), "a pooling window of 0"));
            }
            check_dropout(&at("dropout"), b.dropout)?;
        }
        if self.dense.contains(&0) {
            return Err(FieldError::new("model.dense", "a dense layer of 0 units"));
        }
        check_dropout("model.dropout", self.dropout)?;
        self.sizes().map(|_| ())
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> ConvNet<B> {
        let sizes = self.sizes().expect("checked at load time");
        let mut channels = 3;
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut block_dropouts = Vec::new();
        let mut shapes = Vec::new();
        for b in &self.blocks {
            let k = b.kernel;
            let padding = match b.padding {
                // Asymmetric for even kernels, so the size is exactly ⌈n / stride⌉.
                Padding::Same => PaddingConfig2d::Explicit((k - 1) / 2, (k - 1) / 2, k / 2, k / 2),
                Padding::Valid => PaddingConfig2d::Valid,
            };
            convs.push(Conv {
                conv: Conv2dConfig::new([channels, b.filters], [k, k])
                    .with_stride([b.stride, b.stride])
                    .with_padding(padding)
                    .with_bias(false)
                    .with_initializer(build.kernel.clone())
                    .init(device),
                bias: Param::from_tensor(Tensor::zeros([b.filters], device)),
            });
            norms.push(b.batch_norm.then(|| build.batch_norm(b.filters, device)));
            block_dropouts.push(DropoutConfig::new(b.dropout).init());
            shapes.push(Shape { pool: b.pool });
            channels = b.filters;
        }
        let side = sizes.last().copied().unwrap_or(32);
        let mut width = channels * side * side;
        let mut dense = Vec::new();
        for &d in &self.dense {
            dense.push(build.linear(width, d, device));
            width = d;
        }
        ConvNet {
            convs,
            norms,
            block_dropouts,
            dense,
            dropout: DropoutConfig::new(self.dropout).init(),
            out: build.linear(width, CLASSES, device),
            shapes,
            activation: self.activation,
        }
    }
}

impl<B: Backend> ConvNet<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = x;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(h);
            h = match &self.norms[i] {
                Some(norm) => norm.forward_then(h, None, self.activation),
                None => activate(self.activation, h),
            };
            h = match self.shapes[i].pool {
                Some(Pool::Max(k)) => pool::max_pool2d(h, k),
                Some(Pool::Avg(k)) => AvgPool2dConfig::new([k, k]).init().forward(h),
                None => h,
            };
            h = self.block_dropouts[i].forward(h);
        }
        let mut h: Tensor<B, 2> = h.flatten(1, 3);
        for layer in &self.dense {
            h = activate(self.activation, dense(layer, self.dropout.forward(h)));
        }
        dense(&self.out, self.dropout.forward(h))
    }
}
