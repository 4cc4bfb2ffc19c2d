//! σ and tanh for the CPU backend (`flex`), where `perf` found its own slow: vectorized,
//! with gradients read from the saved output.
//!
//! `flex` maps σ and tanh over a tensor through scalar libm calls (`expf`; `tanhf` with an
//! `expm1f` inside), and burn's autodiff computes them a second time from the input in the
//! backward pass: in the LSTM that was 41% of training time (docs/BENCHMARKS.md). Here the
//! forward is a polynomial `exp` the compiler turns into SIMD code, and the gradient reuses
//! the output (σ' = σ(1 − σ), tanh' = 1 − tanh²). Other backends (CUDA) keep burn's own.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::flex::cast;
use super::wide::wide;
use super::{CpuBackend, CpuTrain};
use crate::train::hparams::Activation;

/// A layer's activation, with σ and tanh through the kernels below.
pub fn activate<B: Backend, const D: usize>(a: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match a {
        Activation::Relu => activation::relu(x),
        Activation::Tanh => tanh(x),
        Activation::Sigmoid => sigmoid(x),
        Activation::Elu => activation::elu(x, 1.0),
        Activation::Selu => activation::selu(x),
        Activation::Gelu => activation::gelu(x),
        Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
        Activation::Linear => x,
    }
}

pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    apply(x, Act::Sigmoid)
}

pub fn tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    apply(x, Act::Tanh)
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Act {
    Sigmoid,
    Tanh,
}

fn apply<B: Backend, const D: usize>(x: Tensor<B, D>, act: Act) -> Tensor<B, D> {
    if x.dtype() == DType::F32 {
        let x: Box<dyn Any> = Box::new(x);
        let x = match x.downcast::<Tensor<CpuTrain, D>>() {
            Ok(t) => return cast(tracked(*t, act)),
            Err(x) => x,
        };
        return match x.downcast::<Tensor<CpuBackend, D>>() {
            Ok(t) => cast(forward(*t, act)),
            Err(x) => burns(*x.downcast::<Tensor<B, D>>().expect("its own type"), act),
        };
    }
    burns(x, act)
}

fn burns<B: Backend, const D: usize>(x: Tensor<B, D>, act: Act) -> Tensor<B, D> {
    match act {
        Act::Sigmoid => activation::sigmoid(x),
        Act::Tanh => activation::tanh(x),
    }
}

/// The forward on the inner (non-autodiff) CPU backend, through the tensor's data.
fn forward<B: Backend, const D: usize>(x: Tensor<B, D>, act: Act) -> Tensor<B, D> {
    let device = x.device();
    let data = x.into_data();
    let shape = data.shape.clone();
    let mut values = data.as_slice::<f32>().expect("checked to be f32").to_vec();
    map(&mut values, act);
    Tensor::from_data(TensorData::new(values, shape), &device)
}

/// The gradient step: the state is the forward's output.
#[derive(Debug)]
struct Grad(Act);

impl<B: Backend> Backward<B, 1> for Grad {
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        let act = self.0;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| match act {
            Act::Sigmoid => B::sigmoid_backward(y, grad),
            Act::Tanh => {
                let slope =
                    B::float_add_scalar(B::float_neg(B::float_mul(y.clone(), y)), 1f32.into());
                B::float_mul(grad, slope)
            }
        });
    }
}

fn tracked<const D: usize>(x: Tensor<CpuTrain, D>, act: Act) -> Tensor<CpuTrain, D> {
    let x = x.into_primitive().tensor();
    let inner = |p| {
        forward(
            Tensor::<CpuBackend, D>::from_primitive(TensorPrimitive::Float(p)),
            act,
        )
        .into_primitive()
        .tensor()
    };
    let y = match Grad(act)
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = inner(x.primitive);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(inner(x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// σ of every value, in place: the same numbers as [`sigmoid`] (for the fused LSTM).
pub(super) fn sigmoid_slice(v: &mut [f32]) {
    map(v, Act::Sigmoid)
}

wide! {
    fn map(v: &mut [f32], act: Act) {
        map_any(v, act)
    }
}

#[inline(always)]
pub(super) fn map_any(v: &mut [f32], act: Act) {
    match act {
        Act::Sigmoid => {
            for x in v.iter_mut() {
                *x = sigmoid1(*x);
            }
        }
        Act::Tanh => {
            for x in v.iter_mut() {
                *x = 2.0 * sigmoid1(2.0 * *x) - 1.0;
            }
        }
    }
}

#[inline(always)]
fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// eˣ within 2 ulp on [−87, 88] (clamped there, so σ saturates instead of overflowing; NaN
/// stays NaN): eˣ = 2ᵏ·eʳ with k = round(x / ln 2), |r| ≤ ln 2 / 2, eʳ by its Taylor
/// polynomial to r⁶. Rounding adds and subtracts 1.5·2²³ instead of calling `round`, which
/// would be a libm call without SSE4.1 and stop vectorization.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ᵏ from k's own bits: k + 127 lands in the low mantissa bits of SHIFT + 127 + k
    // (k is a whole number in [−126, 127] after the clamp). The same bits as
    // `((k as i32 + 127) as u32) << 23`, but `as i32` saturates and maps NaN to 0, which
    // the compiler does one lane at a time; this is two integer vector operations. A NaN
    // `x` gives some finite 2ᵏ here and NaN from `p`.
    let biased = (k + (SHIFT + 127.0))
        .to_bits()
        .wrapping_sub(SHIFT.to_bits());
    p * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ElementConversion;

    fn grid<B: Backend>(device: &B::Device) -> Tensor<B, 1> {
        let mut v: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        v.extend([
            -200.0, -90.0, -88.5, -30.0, 30.0, 88.5, 90.0, 200.0, 1e-7, -1e-7, 0.0,
        ]);
        Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device)
    }

    fn max_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        a.sub(b).abs().max().into_scalar().elem()
    }

    /// The same values as burn's σ and tanh, from −20 to 20 and at the extremes.
    #[test]
    fn forward_matches_burns() {
        let device = Default::default();
        let x = grid::<CpuBackend>(&device);
        let d = max_diff(sigmoid(x.clone()), activation::sigmoid(x.clone()));
        assert!(d < 2e-7, "sigmoid differs by {d}");
        let d = max_diff(tanh(x.clone()), activation::tanh(x));
        assert!(d < 5e-7, "tanh differs by {d}");
        let nan = Tensor::<CpuBackend, 1>::from_data([f32::NAN], &device);
        assert!(sigmoid(nan).into_scalar().is_nan(), "NaN stays NaN");
    }

    /// 2ᵏ from the bits of `k` is the saturating integer conversion it replaced, bit for
    /// bit, over every f32 from −100 to 100 in steps of 2⁻¹⁰ and at the extremes (the
    /// whole range `exp` can see after its clamp, and beyond).
    #[test]
    fn exp_scales_as_the_integer_conversion_did() {
        fn by_conversion(x: f32) -> f32 {
            const SHIFT: f32 = 12_582_912.0;
            const LN2_HI: f32 = 0.693_145_75;
            const LN2_LO: f32 = 1.428_606_8e-6;
            let x = x.clamp(-87.0, 88.0);
            let k = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
            let r = (x - k * LN2_HI) - k * LN2_LO;
            let p = 1.0
                + r * (1.0
                    + r * (0.5
                        + r * (1.0 / 6.0
                            + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
            p * f32::from_bits(((k as i32 + 127) as u32) << 23)
        }
        let mut xs: Vec<f32> = (-102_400..=102_400).map(|i| i as f32 / 1024.0).collect();
        xs.extend([
            f32::MIN,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-30,
            -1e-30,
        ]);
        for x in xs {
            assert_eq!(exp(x).to_bits(), by_conversion(x).to_bits(), "exp({x})");
        }
        assert!(exp(f32::NAN).is_nan());
    }

    /// Through autodiff: the same gradients as burn's σ and tanh, for a loss that weighs
    /// each element differently.
    #[test]
    fn gradients_match_burns() {
        let device = Default::default();
        // Two-dimensional, as the models use them.
        let x = grid::<CpuTrain>(&device).reshape([2, -1]);
        let w = x.clone().cos();
        for act in [Act::Sigmoid, Act::Tanh] {
            let grad = |ours: bool| {
                let x = x.clone().detach().require_grad();
                let y = if ours {
                    apply(x.clone(), act)
                } else {
                    burns(x.clone(), act)
                };
                let g = (y * w.clone()).sum().backward();
                x.grad(&g).expect("x is tracked")
            };
            let d = max_diff(grad(true), grad(false));
            assert!(d < 5e-7, "{act:?}: gradients differ by {d}");
        }
    }
}
