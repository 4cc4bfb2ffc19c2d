//! Max pooling on the CPU backend (`flex`) with a `k × k` window and stride `k`, what a
//! ConvNet block's `pool: Max(k)` builds: the forward pass remembers which pixel of each
//! window won, the backward pass sends each output's gradient to it.
//!
//! `flex` pools through a 3-D loop that bounds-checks and recomputes indices for every
//! pixel and writes an `i64` index per output: `perf` put 37% of the ConvNet's training
//! time there (docs/BENCHMARKS.md, 2026-12-02 night). Ties and NaN resolve as in `flex`:
//! the first pixel of the window in row order, replaced only by a strictly greater one, so
//! outputs and gradients are the same bits. Other backends keep burn's `MaxPool2d`.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::Flex;
use burn::backend::Autodiff;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::flex::{cast, tensor, values};

type Train = Autodiff<Flex>;

/// `MaxPool2dConfig::new([k, k]).init().forward(x)`.
pub fn max_pool2d<B: Backend>(x: Tensor<B, 4>, k: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    if x.dtype() != DType::F32 || k == 0 || k > h || k > w {
        return MaxPool2dConfig::new([k, k]).init().forward(x);
    }
    let d = Dims { n, c, h, w, k };
    let x: Box<dyn Any> = Box::new(x);
    let x = match x.downcast::<Tensor<Train, 4>>() {
        Ok(x) => return cast(tracked(*x, d)),
        Err(x) => x,
    };
    match x.downcast::<Tensor<Flex, 4>>() {
        Ok(x) => {
            let x = x.into_primitive().tensor();
            let (y, _) = forward(&values(&x), d, false);
            cast(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(
                tensor(y, d.out_shape()),
            )))
        }
        Err(x) => MaxPool2dConfig::new([k, k])
            .init()
            .forward(*x.downcast::<Tensor<B, 4>>().expect("its own type")),
    }
}

/// The input's sizes and the window.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
}

impl Dims {
    /// Images × channels: the planes pooled independently.
    fn planes(&self) -> usize {
        self.n * self.c
    }

    fn oh(&self) -> usize {
        self.h / self.k
    }

    fn ow(&self) -> usize {
        self.w / self.k
    }

    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh(), self.ow()]
    }
}

/// Every window's maximum and, when asked, which of its pixels (`i·k + j`) holds it.
fn forward(x: &[f32], d: Dims, keep_winners: bool) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow, k) = (d.oh(), d.ow(), d.k);
    let out_plane = oh * ow;
    let mut y = vec![0f32; d.planes() * out_plane];
    let mut winners = vec![0u32; if keep_winners { y.len() } else { 0 }];
    let pool_plane = |x_p: &[f32], y_p: &mut [f32], win_p: &mut [u32]| {
        for r in 0..oh {
            let rows = &x_p[r * k * d.w..][..k * d.w];
            let y_r = &mut y_p[r * ow..][..ow];
            if k == 2 {
                let (top, bottom) = rows.split_at(d.w);
                for (o, out) in y_r.iter_mut().enumerate() {
                    let (m, i) =
                        first_max([top[2 * o], top[2 * o + 1], bottom[2 * o], bottom[2 * o + 1]]);
                    *out = m;
                    if let Some(win) = win_p.get_mut(r * ow + o) {
                        *win = i;
                    }
                }
                continue;
            }
            for (o, out) in y_r.iter_mut().enumerate() {
                let mut best = (rows[o * k], 0);
                for i in 0..k {
                    for (j, &v) in rows[i * d.w + o * k..][..k].iter().enumerate() {
                        best = keep_first_max(best, v, (i * k + j) as u32);
                    }
                }
                *out = best.0;
                if let Some(win) = win_p.get_mut(r * ow + o) {
                    *win = best.1;
                }
            }
        }
    };
    let plane = d.h * d.w;
    if keep_winners {
        y.par_chunks_mut(out_plane)
            .zip(winners.par_chunks_mut(out_plane))
            .zip(x.par_chunks(plane))
            .for_each(|((y_p, win_p), x_p)| pool_plane(x_p, y_p, win_p));
    } else {
        y.par_chunks_mut(out_plane)
            .zip(x.par_chunks(plane))
            .for_each(|(y_p, x_p)| pool_plane(x_p, y_p, &mut []));
    }
    (y, winners)
}

/// The maximum of a 2 × 2 window read in row order and its position.
#[inline(always)]
fn first_max(v: [f32; 4]) -> (f32, u32) {
    (1..4).fold((v[0], 0), |best, i| keep_first_max(best, v[i], i as u32))
}

/// The running maximum and its position, or pixel `i` if its value `v` is strictly
/// greater: ties stay with the earlier pixel, and NaN neither wins nor is beaten. Without
/// branches, so the loops around it stay straight-line.
#[inline(always)]
fn keep_first_max((m, at): (f32, u32), v: f32, i: u32) -> (f32, u32) {
    let greater = v > m;
    (if greater { v } else { m }, if greater { i } else { at })
}

/// `x'`: each output's gradient on its window's winner, zero elsewhere.
fn backward(dy: &[f32], winners: &[u32], d: Dims) -> Vec<f32> {
    let (oh, ow, k) = (d.oh(), d.ow(), d.k);
    let mut dx = vec![0f32; d.planes() * d.h * d.w];
    dx.par_chunks_mut(d.h * d.w)
        .zip(dy.par_chunks(oh * ow))
        .zip(winners.par_chunks(oh * ow))
        .for_each(|((dx_p, dy_p), win_p)| {
            for r in 0..oh {
                for o in 0..ow {
                    let at = win_p[r * ow + o] as usize;
                    let (i, j) = (at / k, at % k);
                    // `flex` adds the gradient to a zero, so -0.0 arrives as 0.0. Written,
                    // not added in place: reading the fresh zeroed pages first maps them
                    // to the shared zero page, and the write after costs a fault and a
                    // TLB flush on every core (`perf`: a third of the time).
                    dx_p[(r * k + i) * d.w + o * k + j] = dy_p[r * ow + o] + 0.0;
                }
            }
        });
    dx
}

#[derive(Debug)]
struct PoolGrad;

impl Backward<Flex, 1> for PoolGrad {
    /// Each output's winning pixel within its window, and the sizes.
    type State = (Vec<u32>, Dims);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (winners, d) = ops.state;
        if let Some(node) = node_x {
            let dx = backward(&values(&dy), &winners, d);
            grads.register::<Flex>(node.id, tensor(dx, [d.n, d.c, d.h, d.w]));
        }
    }
}

fn tracked(x: Tensor<Train, 4>, d: Dims) -> Tensor<Train, 4> {
    let x = x.into_primitive().tensor();
    let y = match PoolGrad
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, winners) = forward(&values(&x.primitive), d, true);
            prep.finish((winners, d), tensor(y, d.out_shape()))
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = forward(&values(&x.primitive), d, false);
            prep.finish(tensor(y, d.out_shape()))
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// The same output and input gradient, bit for bit, as burn's `MaxPool2d`: windows of
    /// 2 and 3, sides that do not divide by the window, an input that is not contiguous,
    /// and ties (ReLU's zeros) that must go to the same pixel.
    #[test]
    fn matches_burns_max_pool_bit_for_bit() {
        let device = Default::default();
        for (k, [n, c, h, w], transposed) in [
            (2, [3, 4, 8, 6], false),
            (2, [2, 3, 7, 9], true),
            (3, [2, 2, 10, 8], false),
            (1, [1, 2, 3, 3], false),
        ] {
            let x =
                Tensor::<Train, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            // Rounded and clipped at zero: many windows hold equal values.
            let x = (x * 2.0).round().clamp_min(0.0);
            let x = if transposed { x.swap_dims(2, 3) } else { x };
            let weights = Tensor::<Train, 4>::random(
                [n, c, h / k, w / k],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let weights = if transposed {
                weights.swap_dims(2, 3)
            } else {
                weights
            };
            let run = |ours: bool| {
                let x = x.clone().detach().require_grad();
                let y = if ours {
                    max_pool2d(x.clone(), k)
                } else {
                    MaxPool2dConfig::new([k, k]).init().forward(x.clone())
                };
                let g = (y.clone() * weights.clone()).sum().backward();
                (
                    y.inner().into_data(),
                    x.grad(&g).expect("x is tracked").into_data(),
                )
            };
            let (ours, theirs) = (run(true), run(false));
            let what = format!("window {k} on {n}×{c}×{h}×{w}, transposed {transposed}");
            assert_eq!(ours.0, theirs.0, "{what}: outputs differ");
            assert_eq!(ours.1, theirs.1, "{what}: input gradients differ");
            let inference = max_pool2d(x.clone().inner(), k).into_data();
            assert_eq!(inference, theirs.0, "{what}: inference differs");
        }
    }

    /// The winner is the first of equal maxima in row order, and a NaN first pixel stays.
    #[test]
    fn ties_go_to_the_first_pixel() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(
                vec![1.0f32, 5.0, 5.0, 2.0, f32::NAN, 9.0, 0.0, 0.0],
                [1, 2, 2, 2],
            ),
            &device,
        );
        let x = Tensor::<Train, 4>::from_inner(x).require_grad();
        let y = max_pool2d(x.clone(), 2);
        let g = y.clone().sum().backward();
        let dx = x
            .grad(&g)
            .expect("tracked")
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let y = y.inner().into_data().to_vec::<f32>().unwrap();
        assert_eq!(y[0], 5.0);
        assert!(y[1].is_nan());
    }
}
