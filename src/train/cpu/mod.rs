//! The CPU fast path: hand-written kernels for the operations where burn's `flex` backend
//! was slow, each one a drop-in for the burn call it replaces, with the same math.
//!
//! | file | replaces in burn | why (docs/BENCHMARKS.md) |
//! |---|---|---|
//! | [`conv`] | `conv2d` and its two gradients | NHWC copies and per-tile buffers: most of ConvNet's and ResNet-20's time |
//! | [`matmul`] | dense layers' `matmul` | zeroed-then-copied output buffers, unpacked small-batch weights, a split that left one core idle |
//! | [`norm`] | `BatchNorm` | element-by-element broadcasts: ~44% of ResNet-20's time |
//! | [`pool`] | `MaxPool2d` | a bounds-checked 3-D loop: 37% of ConvNet's time |
//! | [`lstm`] | an LSTM cell gate by gate | tiny products and a dozen kernels per step: the LSTM ran at 0.43x PyTorch |
//! | [`gate`] | a highway layer's mix as seven tensor ops | a pass and an allocation per op |
//! | [`activation`] | σ and tanh | scalar libm calls, recomputed in the backward: 41% of the LSTM's time |
//! | [`sgd`] | burn's `Sgd` step | five tensor ops per parameter: 7% of the MLP's and Highway's time |
//!
//! With them every family trains at or above PyTorch's speed on two cores (1.12–1.89x,
//! docs/BENCHMARKS.md, 2026-12-03, sixth session) where burn alone ran at 0.07–0.71x
//! (2026-11-25). [`flex`] recognizes the backend's tensors behind a generic `Backend` and
//! [`wide`] compiles element-wise loops for AVX2. Every kernel gives the same bits as the
//! burn code it replaces, or is tested against it within rounding where the order of a sum
//! differs; on any other backend (CUDA, `ndarray`) each one calls burn's own. Nothing here
//! knows a model family or the training loop; the families call in here for their layers.

pub mod activation;
pub mod conv;
mod flex;
pub mod gate;
pub mod lstm;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod sgd;
mod wide;

use burn::backend::Autodiff;

/// The CPU backend, the one these kernels are written for.
#[cfg(not(feature = "ndarray"))]
pub type CpuBackend = burn::backend::Flex;
/// Only to measure burn's other CPU backend against `flex` (`--features ndarray`, see
/// docs/BENCHMARKS.md): `flex` is faster on every family and bit-reproducible, ndarray is not.
#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray;
pub type CpuTrain = Autodiff<CpuBackend>;
