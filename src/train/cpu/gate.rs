//! A highway layer's gated mix, `t·a + (1 − t)·h` with `t = σ(g)` and `a = relu(z)`, as
//! one operation on the CPU backend (`flex`): one pass forward, one pass back giving the
//! gradients of the gate `g`, the transform `z` and the carried `h` together.
//!
//! Written as tensor operations the mix is seven `flex` kernels forward (ReLU, σ, two
//! products, a negation, two sums) and about ten back, each a pass over the `[batch,
//! width]` values and a new allocation. The arithmetic here is theirs, operation for
//! operation (`1 − t` as `−t + 1`, the gate's gradient as `(t'·t)·(1 − t)` with
//! `t' = y'·a − y'·h`), and the parents are listed so that burn's backward pass reaches the
//! two dense layers in the same order (transform, then gate), which fixes the order in
//! which `h`'s three gradients are summed: outputs and gradients are the same bits (test
//! below; a Highway's `model.bin` too). Other activations and backends (CUDA) keep the
//! tensor operations.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::activation::{activate, sigmoid, sigmoid_slice};
use super::flex::{cast, tensor, values};
use super::wide::wide;
use crate::train::hparams::Activation;

type Train = Autodiff<Flex>;

/// Values per task: large enough that a task outweighs handing it to a core.
const CHUNK: usize = 8192;

/// `σ(gate)·act(transform) + (1 − σ(gate))·carried`.
pub fn highway_mix<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    transform: Tensor<B, D>,
    carried: Tensor<B, D>,
    act: Activation,
) -> Tensor<B, D> {
    let f32s = [&gate, &transform, &carried]
        .iter()
        .all(|t| t.dtype() == DType::F32);
    let same = gate.dims() == transform.dims() && gate.dims() == carried.dims();
    if act != Activation::Relu || !(f32s && same) {
        return tensor_ops(gate, activate(act, transform), carried);
    }
    let all: Box<dyn Any> = Box::new((gate, transform, carried));
    let all = match all.downcast::<(Tensor<Train, D>, Tensor<Train, D>, Tensor<Train, D>)>() {
        Ok(t) => return cast(tracked(t.0, t.1, t.2)),
        Err(all) => all,
    };
    match all.downcast::<(Tensor<Flex, D>, Tensor<Flex, D>, Tensor<Flex, D>)>() {
        Ok(t) => {
            let shape = t.0.dims();
            let [g, z, h] = [t.0, t.1, t.2].map(|t| t.into_primitive().tensor());
            let (y, _, _) = forward(&values(&g), &values(&z), &values(&h));
            cast(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(
                tensor(y, shape),
            )))
        }
        Err(all) => {
            let (g, z, h) = *all
                .downcast::<(Tensor<B, D>, Tensor<B, D>, Tensor<B, D>)>()
                .expect("its own types");
            tensor_ops(g, activate(act, z), h)
        }
    }
}

/// The mix as burn's tensor operations: what the fused operation reproduces.
fn tensor_ops<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    transformed: Tensor<B, D>,
    carried: Tensor<B, D>,
) -> Tensor<B, D> {
    let t = sigmoid(gate);
    transformed * t.clone() + carried * (t.neg() + 1.0)
}

wide! {
    /// The mix, and the gate's `t = σ(g)` and the activation `a = relu(z)`, which the
    /// backward pass reads.
    fn forward(g: &[f32], z: &[f32], h: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut t = g.to_vec();
        let mut a = vec![0f32; g.len()];
        let mut y = vec![0f32; g.len()];
        t.par_chunks_mut(CHUNK)
            .zip(a.par_chunks_mut(CHUNK))
            .zip(y.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, ((t, a), y))| {
                sigmoid_slice(t);
                let from = i * CHUNK;
                let (z, h) = (&z[from..][..t.len()], &h[from..][..t.len()]);
                for ((((y, a), t), z), h) in y.iter_mut().zip(a).zip(t.iter()).zip(z).zip(h) {
                    // `flex`'s ReLU.
                    *a = z.max(0.0);
                    *y = *a * t + h * (-t + 1.0);
                }
            });
        (y, t, a)
    }
}

#[derive(Debug)]
struct MixGrad<const D: usize>;

impl<const D: usize> Backward<Flex, 3> for MixGrad<D> {
    /// `t = σ(g)`, `a = relu(z)`, the carried `h`, and the shape.
    type State = (Vec<f32>, Vec<f32>, FlexTensor, [usize; D]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_z, node_g, node_h] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (t, a, h, shape) = ops.state;
        let (dy, h) = (values(&dy), values(&h));
        if let Some(node) = node_g {
            let dg = gradient(Wrt::Gate, &dy, &t, &a, &h);
            grads.register::<Flex>(node.id, tensor(dg, shape));
        }
        if let Some(node) = node_z {
            let dz = gradient(Wrt::Transform, &dy, &t, &a, &h);
            grads.register::<Flex>(node.id, tensor(dz, shape));
        }
        if let Some(node) = node_h {
            let dh = gradient(Wrt::Carried, &dy, &t, &a, &h);
            grads.register::<Flex>(node.id, tensor(dh, shape));
        }
    }
}

/// Which input of the mix a gradient is for.
#[derive(Clone, Copy, Debug)]
enum Wrt {
    Gate,
    Transform,
    Carried,
}

wide! {
    /// The gradient of one input from the output's `dy`, `t = σ(g)`, `a = relu(z)` and
    /// the carried `h`, in chunks on every core.
    fn gradient(wrt: Wrt, dy: &[f32], t: &[f32], a: &[f32], h: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; dy.len()];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
            let (from, n) = (c * CHUNK, out.len());
            let (dy, t, a, h) = (
                &dy[from..][..n],
                &t[from..][..n],
                &a[from..][..n],
                &h[from..][..n],
            );
            match wrt {
                // t' = y'·a − y'·h as the two products' gradients add up, then σ's.
                Wrt::Gate => {
                    for i in 0..n {
                        out[i] = (dy[i] * a[i] + -(dy[i] * h[i])) * t[i] * (1.0 - t[i]);
                    }
                }
                // `flex`'s ReLU gradient: through where the output is positive.
                Wrt::Transform => {
                    for i in 0..n {
                        out[i] = if a[i] > 0.0 { dy[i] * t[i] } else { 0.0 };
                    }
                }
                Wrt::Carried => {
                    for i in 0..n {
                        out[i] = dy[i] * (-t[i] + 1.0);
                    }
                }
            }
        });
        out
    }
}

fn tracked<const D: usize>(
    g: Tensor<Train, D>,
    z: Tensor<Train, D>,
    h: Tensor<Train, D>,
) -> Tensor<Train, D> {
    let shape = g.dims();
    let [g, z, h] = [g, z, h].map(|t| t.into_primitive().tensor());
    let (y, t, a) = forward(
        &values(&g.primitive),
        &values(&z.primitive),
        &values(&h.primitive),
    );
    let y = tensor(y, shape);
    // The transform first: see the module's doc.
    let y = match MixGrad::<D>
        .prepare::<NoCheckpointing>([z.node.clone(), g.node.clone(), h.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((t, a, h.primitive, shape), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The same output and the same gradients of gate, transform and carried input, bit
    /// for bit, as the tensor operations; each input also used elsewhere (as in the model,
    /// where `h` feeds the gate and the transform too), sizes that are not a multiple of
    /// the chunk, and inference through the inner backend.
    #[test]
    fn matches_the_tensor_operations_bit_for_bit() {
        let device = Default::default();
        for [rows, cols] in [
            [3, 5],
            [17, 1000],
            [256, 64],
            [74, 512],
            [256, 512],
            [1000, 512],
        ] {
            let normal = || {
                Tensor::<Train, 2>::random([rows, cols], Distribution::Normal(0.0, 2.0), &device)
            };
            let (g, a, h, w) = (normal(), normal(), normal(), normal());
            let run = |fused: bool| {
                let [g, a, h] = [&g, &a, &h].map(|t| t.clone().detach().require_grad());
                let y = if fused {
                    highway_mix(g.clone(), a.clone(), h.clone(), Activation::Relu)
                } else {
                    tensor_ops(g.clone(), activate(Activation::Relu, a.clone()), h.clone())
                };
                let loss = (y.clone() * w.clone()).sum() + (h.clone() * g.clone()).sum();
                let grads = loss.backward();
                let grad = |t: &Tensor<Train, 2>| t.grad(&grads).expect("tracked").into_data();
                (y.inner().into_data(), [grad(&g), grad(&a), grad(&h)])
            };
            let (ours, theirs) = (run(true), run(false));
            assert_eq!(ours.0, theirs.0, "{rows}×{cols}: outputs differ");
            for (name, (o, t)) in ["gate", "transform", "carried input"]
                .iter()
                .zip(ours.1.iter().zip(&theirs.1))
            {
                assert_eq!(o, t, "{rows}×{cols}: gradients of the {name} differ");
            }
            let inference = highway_mix(
                g.clone().inner(),
                a.clone().inner(),
                h.clone().inner(),
                Activation::Relu,
            );
            assert_eq!(
                inference.into_data(),
                theirs.0,
                "{rows}×{cols}: inference differs"
            );
        }
    }
}
