//! SGD with momentum, PyTorch- and Keras-style (no dampening): `v ← g + m·v`, then
//! `w ← w − lr·v` (Nesterov: `w ← w − lr·(g + m·v)`).
//!
//! burn's `Sgd` computes this in five tensor operations, each a pass over the weights
//! with a fresh output buffer; `perf` put them at 7% of the MLP's and Highway's training
//! time on the CPU (docs/BENCHMARKS.md). On `flex` this is one pass that updates the
//! velocity and the weight in place. The arithmetic is burn's, operation for operation
//! (no fused multiply-add), so the weights come out bit-identical to burn's `Sgd`; other
//! backends (CUDA) run the same formula as tensor operations.

use std::any::Any;

use burn::backend::flex::{Flex, FlexTensor};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::SimpleOptimizer;
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::flex::{cast, values};
use super::wide::wide;

#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    momentum: f64,
    nesterov: bool,
}

/// The velocity of one parameter (none without momentum).
#[derive(Record, Clone)]
pub struct SgdState<B: Backend, const D: usize> {
    velocity: Tensor<B, D>,
}

impl Sgd {
    pub fn new(momentum: f64, nesterov: bool) -> Self {
        Sgd { momentum, nesterov }
    }

    /// The optimizer for a model's parameters, as burn's `SgdConfig::init` makes one.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Sgd, M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: Backend> SimpleOptimizer<B> for Sgd {
    type State<const D: usize> = SgdState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if self.momentum == 0.0 {
            return (tensor - grad.mul_scalar(lr), None);
        }
        let velocity = state.map(|s| s.velocity);
        let (tensor, velocity) = if tensor.dtype() == DType::F32 {
            let all: Box<dyn Any> = Box::new((tensor, grad, velocity));
            match all.downcast::<(Tensor<Flex, D>, Tensor<Flex, D>, Option<Tensor<Flex, D>>)>() {
                Ok(t) => {
                    let (w, v) = self.fused(t.0, t.1, t.2, lr);
                    (cast(w), cast(v))
                }
                Err(all) => {
                    let (t, g, v) = *all
                        .downcast::<(Tensor<B, D>, Tensor<B, D>, Option<Tensor<B, D>>)>()
                        .expect("its own types");
                    self.tensor_ops(t, g, v, lr)
                }
            }
        } else {
            self.tensor_ops(tensor, grad, velocity, lr)
        };
        (tensor, Some(SgdState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        SgdState {
            velocity: state.velocity.to_device(device),
        }
    }
}

impl Sgd {
    /// burn's `Sgd` with `Momentum` (dampening 0), operation for operation.
    fn tensor_ops<B: Backend, const D: usize>(
        &self,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        velocity: Option<Tensor<B, D>>,
        lr: f64,
    ) -> (Tensor<B, D>, Tensor<B, D>) {
        let velocity = match velocity {
            Some(v) => grad.clone().add(v.mul_scalar(self.momentum)),
            None => grad.clone(),
        };
        let step = if self.nesterov {
            velocity.clone().mul_scalar(self.momentum).add(grad)
        } else {
            velocity.clone()
        };
        (tensor - step.mul_scalar(lr), velocity)
    }

    /// The same on `flex`, in one pass over buffers the update owns.
    fn fused<const D: usize>(
        &self,
        tensor: Tensor<Flex, D>,
        grad: Tensor<Flex, D>,
        velocity: Option<Tensor<Flex, D>>,
        lr: f64,
    ) -> (Tensor<Flex, D>, Tensor<Flex, D>) {
        let (m, lr, nesterov) = (self.momentum as f32, lr as f32, self.nesterov);
        let grad = grad.into_primitive().tensor();
        let g = values(&grad);
        let n = g.len();
        let first = velocity.is_none();
        let mut w = dense(tensor.into_primitive().tensor());
        let mut v = match velocity {
            Some(v) => dense(v.into_primitive().tensor()),
            // The first step's velocity is the gradient itself (copied on write below).
            None => dense(grad.clone()),
        };
        let (ws, vs) = (
            &mut w.storage_mut::<f32>()[..n],
            &mut v.storage_mut::<f32>()[..n],
        );
        const CHUNK: usize = 1 << 14;
        ws.par_chunks_mut(CHUNK)
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(move |((w, v), g)| step(w, v, g, m, lr, first, nesterov));
        let wrap = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
        (wrap(w), wrap(v))
    }
}

wide! {
    /// One chunk's update: the velocity (unless it is the gradient itself, on the first
    /// step), then the weights. Loops without branches inside, so they vectorize.
    fn step(
        w: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        m: f32,
        lr: f32,
        first: bool,
        nesterov: bool,
    ) {
        if !first {
            for (v, &g) in v.iter_mut().zip(g) {
                *v = g + *v * m;
            }
        }
        if nesterov {
            for ((w, &v), &g) in w.iter_mut().zip(v.iter()).zip(g) {
                *w -= (v * m + g) * lr;
            }
        } else {
            for (w, &v) in w.iter_mut().zip(v.iter()) {
                *w -= v * lr;
            }
        }
    }
}

/// `t` with its values at the start of its storage, in order.
fn dense(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    use burn::tensor::Distribution;

    type T = Autodiff<Flex>;

    /// Three steps give bit-identical weights to burn's `Sgd` (no dampening), without
    /// momentum, with it and with Nesterov's, on a layer larger than one chunk of the
    /// update; and the update never writes into the weights it started from.
    #[test]
    fn matches_burns_sgd_bit_for_bit() {
        let device = Default::default();
        for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.8, true)] {
            let start = LinearConfig::new(300, 70).init::<T>(&device);
            let before = start.weight.val().into_data();
            // Two models with the same values and parameters of their own.
            let copy = || {
                let mut m = start.clone();
                m.weight = Param::from_tensor(Tensor::from_data(before.clone(), &device));
                let bias = start.bias.as_ref().expect("a bias").val().into_data();
                m.bias = Some(Param::from_tensor(Tensor::from_data(bias, &device)));
                m
            };
            let mut ours = Sgd::new(momentum, nesterov).init::<T, Linear<T>>();
            let mut burns = SgdConfig::new()
                .with_momentum((momentum > 0.0).then_some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov,
                }))
                .init::<T, Linear<T>>();
            let (mut a, mut b) = (copy(), copy());
            let a_start = a.weight.val();
            for step in 0..3 {
                let x = Tensor::<T, 2>::random([8, 300], Distribution::Normal(0.0, 1.0), &device);
                let loss = |m: &Linear<T>| m.forward(x.clone()).powi_scalar(2).sum();
                let lr = 0.01 * (step + 1) as f64;
                let grads = GradientsParams::from_grads(loss(&a).backward(), &a);
                a = ours.step(lr, a, grads);
                let grads = GradientsParams::from_grads(loss(&b).backward(), &b);
                b = burns.step(lr, b, grads);
            }
            let what = format!("momentum {momentum}, nesterov {nesterov}");
            assert_eq!(
                a.weight.val().into_data(),
                b.weight.val().into_data(),
                "{what}: weights"
            );
            let bias = |m: &Linear<T>| m.bias.as_ref().expect("a bias").val().into_data();
            assert_eq!(bias(&a), bias(&b), "{what}: biases");
            assert_ne!(
                a.weight.val().into_data(),
                before,
                "{what}: the weights moved"
            );
            assert_eq!(a_start.into_data(), before, "{what}: the start is intact");
        }
    }
}
