//! Batch normalization of `[N, C, H, W]` feature maps, computed on their `[N, C, H·W]` view.
//!
//! burn's `BatchNorm` broadcasts `[1, C, 1, 1]` statistics over the maps, and the `flex`
//! CPU backend walks such broadcasts element by element: with their gradients that was
//! ~44% of ResNet-20's training time (docs/BENCHMARKS.md). Here each statistic is repeated
//! to `[N, C, 1]` first, so every broadcast runs along the last axis only, which `flex`
//! vectorizes. The math, parameters and defaults are burn's (biased batch variance,
//! momentum 0.1, epsilon 1e-5), and so are the parameter names (`gamma` and `beta`, which
//! the weight penalty skips).
//!
//! On the CPU backend (`flex`) training-mode batch norm is one operation with the usual
//! hand-written backward (x' = γ/σ · (y' − mean(y') − x̂ · mean(y'·x̂))): two passes over
//! the maps forward and two back, where the tensor-op version made some twenty, each a
//! separate `flex` kernel and allocation (docs/BENCHMARKS.md). Sums run in 16 lanes, each
//! channel in a fixed order: the same bits on every run. A ReLU after it, and a residual
//! block's sum before that ReLU, are part of the operation (`forward_then`): two passes
//! fewer over the maps forward, and `flex`'s separate ReLU gradient replaced by a mask
//! recomputed from the input.

use std::any::TypeId;
use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::module::{Module, Param, ParamId, RunningState};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::activation::activate;
use super::flex::{cast, tensor as flex, values};
use super::wide::wide;
use crate::train::hparams::Activation;

type Train = Autodiff<Flex>;

const MOMENTUM: f64 = 0.1;
const EPSILON: f64 = 1e-5;

#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    running_mean: RunningState<Tensor<B, 1>>,
    running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BatchNorm2d<B> {
    /// `ids`: of the running mean and variance (models get them from `Build::batch_norm`).
    pub fn new(channels: usize, ids: [ParamId; 2], device: &B::Device) -> Self {
        BatchNorm2d {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::with_id(ids[0], Tensor::zeros([channels], device)),
            running_var: RunningState::with_id(ids[1], Tensor::ones([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_then(x, None, Activation::Linear)
    }

    /// `act(bn(x))`, or `act(bn(x) + carried)` (a residual block's end). On the CPU in
    /// training, with ReLU (or nothing) after it, this is one operation: the sum and the
    /// ReLU are made while the normalized values are written, and the backward pass
    /// recomputes ReLU's mask from the input instead of a separate pass each way over the
    /// maps (outputs and gradients are the same bits as the separate operations; test).
    pub fn forward_then(
        &self,
        x: Tensor<B, 4>,
        carried: Option<Tensor<B, 4>>,
        act: Activation,
    ) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        let relu = match act {
            Activation::Relu => true,
            Activation::Linear if carried.is_none() => false,
            _ => return self.separately(x, carried, act),
        };
        if TypeId::of::<B>() != TypeId::of::<Train>() || x.dtype() != DType::F32 {
            return self.separately(x, carried, act);
        }
        let x: Tensor<Train, 3> = cast(x.reshape([n, c, h * w]));
        let carried = carried.map(|t| cast::<_, Tensor<Train, 3>>(t.reshape([n, c, h * w])));
        let (y, mean, var) = tracked(
            x,
            cast(self.gamma.val()),
            cast(self.beta.val()),
            carried,
            relu,
        );
        let channel = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [c]), &device);
        self.update(&self.running_mean, channel(mean));
        self.update(&self.running_var, channel(var));
        cast::<_, Tensor<B, 3>>(y).reshape([n, c, h, w])
    }

    /// [`forward_then`](Self::forward_then) as separate operations.
    fn separately(
        &self,
        x: Tensor<B, 4>,
        carried: Option<Tensor<B, 4>>,
        act: Activation,
    ) -> Tensor<B, 4> {
        let y = self.normalize(x);
        activate(
            act,
            match carried {
                Some(carried) => y + carried,
                None => y,
            },
        )
    }

    fn update(&self, state: &RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>) {
        let old = state.value_sync();
        state.update(
            old.mul_scalar(1.0 - MOMENTUM)
                .add(batch.detach().mul_scalar(MOMENTUM))
                .detach(),
        );
    }

    /// Batch norm as tensor operations (other backends, and inference).
    fn normalize(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let x = x.reshape([n, c, h * w]);
        let device = x.device();
        // [C] or [1, C, 1] → [N, C, 1]: one value per row of the view.
        let rows = |t: Tensor<B, 3>| t.repeat_dim(0, n);
        let channel = |t: Tensor<B, 1>| t.reshape([1, c, 1]);
        let (centered, var) = if B::ad_enabled(&device) {
            let count = (n * h * w) as f64;
            let mean = x.clone().sum_dim(2).sum_dim(0).div_scalar(count);
            let centered = x - rows(mean.clone());
            let var = centered
                .clone()
                .square()
                .sum_dim(2)
                .sum_dim(0)
                .div_scalar(count);
            self.update(&self.running_mean, mean.reshape([c]));
            self.update(&self.running_var, var.clone().reshape([c]));
            (centered, var)
        } else {
            let mean = channel(self.running_mean.value());
            (x - rows(mean), channel(self.running_var.value()))
        };
        let scale = var
            .add_scalar(EPSILON)
            .sqrt()
            .recip()
            .mul(channel(self.gamma.val()));
        let y = centered * rows(scale) + rows(channel(self.beta.val()));
        y.reshape([n, c, h, w])
    }
}

/// The sizes of the `[N, C, H·W]` view.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    hw: usize,
}

impl Dims {
    fn count(&self) -> f32 {
        (self.n * self.hw) as f32
    }

    /// `f(channel, block)` summed over the channel's `n` blocks of `hw` values, for every
    /// channel (in parallel, each in a fixed order).
    fn per_channel(&self, f: impl Fn(usize, usize) -> f32 + Sync) -> Vec<f32> {
        (0..self.c)
            .into_par_iter()
            .map(|c| (0..self.n).map(|i| f(c, (i * self.c + c) * self.hw)).sum())
            .collect()
    }
}

/// `Σ f(a[i], b[i])` in 16 lanes, the same order on every run (`b` as long as `a`, or
/// empty when `f` ignores it).
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let b = if b.is_empty() { a } else { b };
    assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| f(*x, *y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + rest
}

wide! {
/// Mean, variance and inverse standard deviation of every channel.
fn statistics(x: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mean: Vec<f32> = d
        .per_channel(|_, b| lanes(&x[b..b + d.hw], &[], |v, _| v))
        .into_iter()
        .map(|s| s / d.count())
        .collect();
    let var: Vec<f32> = d
        .per_channel(|c, b| {
            let m = mean[c];
            lanes(&x[b..b + d.hw], &[], |v, _| (v - m) * (v - m))
        })
        .into_iter()
        .map(|s| s / d.count())
        .collect();
    let inv_std = var
        .iter()
        .map(|v| 1.0 / (v + EPSILON as f32).sqrt())
        .collect();
    (mean, var, inv_std)
}
}

/// `out[block of channel c] = f(c, block values)`, over all `n · c` blocks in parallel.
/// `f` writes every value of its block; the buffer is not zeroed first (zeroing was 2–4%
/// of ResNet-20's training time in `perf`).
fn map_blocks(d: Dims, f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let len = d.n * d.c * d.hw;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(d.hw)
        .enumerate()
        .for_each(|(block, o)| f(block % d.c, block * d.hw, o));
    // SAFETY: every block of `hw` values was handed to `f`, which writes all of them.
    unsafe { out.set_len(len) };
    out
}

/// What the operation did after normalizing, which its backward pass undoes first.
#[derive(Clone, Debug)]
struct Then {
    /// Each channel's `y = x·a + b`, to recompute ReLU's mask from the input.
    a: Vec<f32>,
    b: Vec<f32>,
    /// The residual added before the ReLU; its gradient is the masked output gradient.
    carried: Option<FlexTensor>,
}

/// Where the backward's channels write their blocks of the masked gradient: each block is
/// one channel's, so the threads never write the same value.
#[derive(Clone, Copy)]
struct Blocks(*mut f32);
unsafe impl Send for Blocks {}
unsafe impl Sync for Blocks {}

impl Blocks {
    /// # Safety
    /// `at..at + len` lies inside the buffer and no other thread writes it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn block(&self, at: usize, len: usize) -> &mut [MaybeUninit<f32>] {
        // SAFETY: as the caller promised.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at).cast(), len) }
    }
}

/// `o = dy` where the ReLU's input `x·a + bias (+ r)` was positive, else 0, as `flex`'s
/// `relu_backward` (its output is positive exactly where its input is); returns `o`, all
/// written.
#[inline(always)]
fn relu_mask<'a>(
    o: &'a mut [MaybeUninit<f32>],
    dy: &[f32],
    x: &[f32],
    r: Option<&[f32]>,
    a: f32,
    bias: f32,
) -> &'a [f32] {
    match r {
        Some(r) => {
            for (((o, &g), &v), &r) in o.iter_mut().zip(dy).zip(x).zip(r) {
                o.write(if v * a + bias + r > 0.0 { g } else { 0.0 });
            }
        }
        None => {
            for ((o, &g), &v) in o.iter_mut().zip(dy).zip(x) {
                o.write(if v * a + bias > 0.0 { g } else { 0.0 });
            }
        }
    }
    assert_eq!(o.len(), dy.len());
    // SAFETY: the loop wrote every value of `o` (as long as `dy`, checked).
    unsafe { &*(o as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// What batch norm's backward pass computes, before it registers it.
struct Grads {
    /// The output gradient through the ReLU, when there was one: the carried residual's.
    masked: Option<Vec<f32>>,
    /// Σ y' and Σ y'·x̂ per channel: β' and γ'.
    sum_dy: Vec<f32>,
    sum_dy_xhat: Vec<f32>,
    dx: Option<Vec<f32>>,
}

wide! {
    #[allow(clippy::too_many_arguments)]
    fn gradients(
        dy: &[f32],
        x: &[f32],
        gamma: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        d: Dims,
        then: Option<&Then>,
        want_dx: bool,
    ) -> Grads {
        // One pass over each channel's blocks: through the ReLU first ([`relu_mask`]),
        // kept for the residual, then Σ y' and Σ y'·x̂ of the block while it is in cache:
        // β' and γ', and what x' subtracts. (Separate passes for the three read the maps
        // three times more.)
        let len = d.n * d.c * d.hw;
        let mut masked: Option<Vec<f32>> = then.map(|_| Vec::with_capacity(len));
        let out = Blocks(masked.as_mut().map_or(std::ptr::null_mut(), |m| m.as_mut_ptr()));
        let carried = then.and_then(|then| then.carried.as_ref().map(values));
        let sums: Vec<(f32, f32)> = (0..d.c)
            .into_par_iter()
            .map(|c| {
                let (m, s) = (mean[c], inv_std[c]);
                let mut sum_dy = Vec::with_capacity(d.n);
                let mut sum_dy_xhat = Vec::with_capacity(d.n);
                for i in 0..d.n {
                    let b = (i * d.c + c) * d.hw;
                    let x = &x[b..b + d.hw];
                    let dy: &[f32] = match then {
                        None => &dy[b..b + d.hw],
                        Some(then) => {
                            // SAFETY: block (i, c) is this iteration's alone, inside the
                            // `len` values reserved.
                            let o = unsafe { out.block(b, d.hw) };
                            let r = carried.as_ref().map(|r| &r[b..b + d.hw]);
                            relu_mask(o, &dy[b..b + d.hw], x, r, then.a[c], then.b[c])
                        }
                    };
                    sum_dy.push(lanes(dy, &[], |g, _| g));
                    sum_dy_xhat.push(lanes(dy, x, |g, v| g * ((v - m) * s)));
                }
                (sum_dy.into_iter().sum(), sum_dy_xhat.into_iter().sum())
            })
            .collect();
        if let Some(masked) = &mut masked {
            // SAFETY: every block of every channel was written above.
            unsafe { masked.set_len(len) };
        }
        let (sum_dy, sum_dy_xhat): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        let dy: &[f32] = masked.as_deref().unwrap_or(dy);
        let dx = want_dx.then(|| {
            // x' = γ/σ · (y' − mean(y') − x̂ · mean(y'·x̂))
            map_blocks(d, |c, b, out| {
                let (m, s) = (mean[c], inv_std[c]);
                let scale = gamma[c] * s;
                let mean_dy = sum_dy[c] / d.count();
                let mean_dy_xhat = sum_dy_xhat[c] / d.count();
                let (dy, x) = (&dy[b..b + d.hw], &x[b..b + d.hw]);
                for ((o, g), v) in out.iter_mut().zip(dy).zip(x) {
                    let xhat = (v - m) * s;
                    o.write(scale * (g - mean_dy - xhat * mean_dy_xhat));
                }
            })
        });
        Grads {
            masked,
            sum_dy,
            sum_dy_xhat,
            dx,
        }
    }
}

/// `N` parents: the input, γ, β, and the carried residual when there is one.
#[derive(Debug)]
struct NormGrad<const N: usize>;

impl<const N: usize> Backward<Flex, N> for NormGrad<N> {
    /// The input, γ, each channel's mean and 1 / σ, and the ReLU (and sum) after them.
    type State = (
        FlexTensor,
        FlexTensor,
        Vec<f32>,
        Vec<f32>,
        Dims,
        Option<Then>,
    );

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (node_x, node_gamma, node_beta) = (&ops.parents[0], &ops.parents[1], &ops.parents[2]);
        let node_carried = ops.parents.get(3).cloned().flatten();
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, mean, inv_std, d, then) = ops.state;
        let (dy, x, gamma) = (values(&dy), values(&x), values(&gamma));
        let g = gradients(
            &dy,
            &x,
            &gamma,
            &mean,
            &inv_std,
            d,
            then.as_ref(),
            node_x.is_some(),
        );
        let (masked, sum_dy, sum_dy_xhat) = (g.masked, g.sum_dy, g.sum_dy_xhat);
        if let (Some(node), Some(dx)) = (node_x, g.dx) {
            grads.register::<Flex>(node.id, flex(dx, [d.n, d.c, d.hw]));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(sum_dy_xhat, [d.c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(sum_dy, [d.c]));
        }
        if let (Some(node), Some(masked)) = (node_carried, masked) {
            grads.register::<Flex>(node.id, flex(masked, [d.n, d.c, d.hw]));
        }
    }
}

wide! {
    /// `x·a + b` per channel, plus the carried residual and through the ReLU if asked.
    fn normalize(
        xs: &[f32],
        a: &[f32],
        b: &[f32],
        rs: Option<&[f32]>,
        relu: bool,
        d: Dims,
    ) -> Vec<f32> {
        // The separate operations' arithmetic: `flex`'s sum, then its ReLU (`max(0)`).
        map_blocks(d, |k, from, out| {
            let (xs, a, b) = (&xs[from..from + d.hw], a[k], b[k]);
            match (rs, relu) {
                (Some(r), _) => {
                    let r = &r[from..from + d.hw];
                    for ((o, &v), &r) in out.iter_mut().zip(xs).zip(r) {
                        o.write((v * a + b + r).max(0.0));
                    }
                }
                (None, true) => {
                    for (o, &v) in out.iter_mut().zip(xs) {
                        o.write((v * a + b).max(0.0));
                    }
                }
                (None, false) => {
                    for (o, &v) in out.iter_mut().zip(xs) {
                        o.write(v * a + b);
                    }
                }
            }
        })
    }
}

/// Batch norm in training, then the residual sum and the ReLU if asked, as one operation.
/// Returns the output and the batch's mean and (biased) variance per channel, for the
/// running statistics.
fn tracked(
    x: Tensor<Train, 3>,
    gamma: Tensor<Train, 1>,
    beta: Tensor<Train, 1>,
    carried: Option<Tensor<Train, 3>>,
    relu: bool,
) -> (Tensor<Train, 3>, Vec<f32>, Vec<f32>) {
    let [n, c, hw] = x.dims();
    let d = Dims { n, c, hw };
    let (x, gamma, beta) = (
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    );
    let carried = carried.map(|t| t.into_primitive().tensor());
    let (xs, gs, bs) = (
        values(&x.primitive),
        values(&gamma.primitive),
        values(&beta.primitive),
    );
    let rs = carried.as_ref().map(|r| values(&r.primitive));
    let (mean, var, inv_std) = statistics(&xs, d);
    // y = x̂·γ + β = x·a + b per channel.
    let a: Vec<f32> = (0..c).map(|k| gs[k] * inv_std[k]).collect();
    let b: Vec<f32> = (0..c).map(|k| bs[k] - mean[k] * a[k]).collect();
    let y = normalize(&xs, &a, &b, rs.as_deref(), relu, d);
    drop((xs, gs, bs, rs));
    let y = flex(y, [n, c, hw]);
    let then = relu.then(|| Then {
        a,
        b,
        carried: carried.as_ref().map(|r| r.primitive.clone()),
    });
    let state = |x: FlexTensor, gamma: FlexTensor| (x, gamma, mean.clone(), inv_std, d, then);
    let y = match carried {
        Some(r) => match NormGrad::<4>
            .prepare::<NoCheckpointing>([
                x.node.clone(),
                gamma.node.clone(),
                beta.node.clone(),
                r.node.clone(),
            ])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(x.primitive, gamma.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match NormGrad::<3>
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(x.primitive, gamma.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    (Tensor::from_primitive(TensorPrimitive::Float(y)), mean, var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::cpu::{CpuBackend, CpuTrain};
    use burn::module::AutodiffModule;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, ElementConversion};

    fn max_diff<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        a.sub(b).abs().max().into_scalar().elem()
    }

    /// Batch norm with the ReLU (and the residual sum) in the same operation gives the same
    /// bits as batch norm followed by `flex`'s sum and ReLU: output, and the gradients of
    /// the input, γ, β and the carried residual (which the loss also uses elsewhere, so its
    /// gradients are summed), with γ and β away from 1 and 0 so the ReLU cuts anywhere.
    #[test]
    fn relu_and_residual_in_the_operation_are_the_same_bits() {
        let device = Default::default();
        let random = |shape: [usize; 4], sd: f64| {
            Tensor::<CpuTrain, 4>::random(shape, Distribution::Normal(0.3, sd), &device)
        };
        let param = |v: Tensor<CpuTrain, 4>| Param::from_tensor(v.reshape([-1]));
        for (shape, with_carried) in [
            ([3, 4, 7, 5], true),
            ([3, 4, 7, 5], false),
            ([5, 2, 1, 1], true),
        ] {
            let c = shape[1];
            let bn = BatchNorm2d {
                gamma: param(random([1, c, 1, 1], 1.0)),
                beta: param(random([1, c, 1, 1], 1.0)),
                ..BatchNorm2d::new(c, [ParamId::new(), ParamId::new()], &device)
            };
            let (x, r, w) = (random(shape, 2.0), random(shape, 1.0), random(shape, 1.0));
            let run = |fused: bool| {
                let (x, r) = (
                    x.clone().detach().require_grad(),
                    r.clone().detach().require_grad(),
                );
                let carried = with_carried.then(|| r.clone());
                let y = if fused {
                    bn.forward_then(x.clone(), carried, Activation::Relu)
                } else {
                    let y = bn.forward(x.clone());
                    activate(
                        Activation::Relu,
                        match carried {
                            Some(r) => y + r,
                            None => y,
                        },
                    )
                };
                let loss = (y.clone() * w.clone()).sum() + (r.clone() * w.clone()).sum();
                let g = loss.backward();
                let mut grads = vec![
                    x.grad(&g).expect("x").into_data(),
                    r.grad(&g).expect("r").into_data(),
                ];
                for p in [&bn.gamma, &bn.beta] {
                    grads.push(p.val().grad(&g).expect("γ, β").into_data());
                }
                (y.inner().into_data(), grads)
            };
            let (ours, theirs) = (run(true), run(false));
            let what = format!("{shape:?}, carried {with_carried}");
            assert_eq!(ours.0, theirs.0, "{what}: outputs differ");
            for (name, (o, t)) in ["input", "carried", "γ", "β"]
                .iter()
                .zip(ours.1.iter().zip(&theirs.1))
            {
                assert_eq!(o, t, "{what}: gradients of {name} differ");
            }
        }
    }

    /// The same outputs as burn's `BatchNorm` in training (batch statistics), and after the
    /// running statistics have moved, in inference.
    #[test]
    fn matches_burns_batch_norm() {
        let device = Default::default();
        let ours = BatchNorm2d::<CpuTrain>::new(3, [ParamId::new(), ParamId::new()], &device);
        let theirs = BatchNormConfig::new(3).init::<CpuTrain>(&device);
        for step in 0..3 {
            let x = Tensor::<CpuTrain, 4>::random(
                [4, 3, 5, 6],
                Distribution::Normal(step as f64, 2.0),
                &device,
            );
            let d = max_diff(ours.forward(x.clone()), theirs.forward(x));
            assert!(d < 1e-5, "training step {step}: outputs differ by {d}");
        }
        let (ours, theirs) = (ours.valid(), theirs.valid());
        let x =
            Tensor::<CpuBackend, 4>::random([2, 3, 5, 6], Distribution::Normal(1.0, 2.0), &device);
        let d = max_diff(ours.forward(x.clone()), theirs.forward(x));
        assert!(d < 1e-5, "inference: outputs differ by {d}");
    }

    /// Through autodiff: the same gradients for the input, γ and β as burn's `BatchNorm`,
    /// for a loss that weighs each output differently, on maps of 1×1 (a block sum with no
    /// full lane) and of 7×5.
    #[test]
    fn gradients_match_burns() {
        let device = Default::default();
        for shape in [[6, 4, 1, 1], [3, 4, 7, 5]] {
            let ours = BatchNorm2d::<CpuTrain>::new(4, [ParamId::new(), ParamId::new()], &device);
            let theirs = BatchNormConfig::new(4).init::<CpuTrain>(&device);
            let x = Tensor::<CpuTrain, 4>::random(shape, Distribution::Normal(0.5, 3.0), &device);
            let weights = x.clone().cos();
            let xo = x.clone().detach().require_grad();
            let yo = ours.forward(xo.clone());
            let go = (yo.clone() * weights.clone()).sum().backward();
            let xt = x.clone().detach().require_grad();
            let yt = theirs.forward(xt.clone());
            let gt = (yt * weights.clone()).sum().backward();
            let d = max_diff(
                xo.grad(&go).expect("tracked"),
                xt.grad(&gt).expect("tracked"),
            );
            assert!(d < 1e-5, "{shape:?}: input gradients differ by {d}");
            let d1 = |a: Tensor<CpuBackend, 1>, b: Tensor<CpuBackend, 1>| -> f32 {
                a.sub(b).abs().max().into_scalar().elem()
            };
            let d = d1(
                ours.gamma.val().grad(&go).expect("γ"),
                theirs.gamma.val().grad(&gt).expect("γ"),
            );
            assert!(d < 1e-4, "{shape:?}: γ gradients differ by {d}");
            let d = d1(
                ours.beta.val().grad(&go).expect("β"),
                theirs.beta.val().grad(&gt).expect("β"),
            );
            assert!(d < 1e-4, "{shape:?}: β gradients differ by {d}");
        }
    }
}
