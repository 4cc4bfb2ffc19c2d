//! The dense layers' matrix products on the CPU backend (`flex`), called through the `gemm`
//! crate directly, as `flex` itself does, but without two of its costs (docs/BENCHMARKS.md):
//!
//! - **Output buffers**: `flex` allocates every product's output zeroed and then copies it
//!   into a 16-byte aligned buffer before `gemm` overwrites it: three passes over a buffer
//!   that is 37 MB for the seed perceptron's weight gradient (20% of its training time).
//!   Here `gemm` writes into a fresh buffer once.
//! - **Small batches**: for `x · W` with a batch of at most 96 rows `gemm` reads burn's
//!   row-major `[inputs, outputs]` weight unpacked, a new page per step along the inner
//!   axis; [`pack_small_batches`] makes it pack instead (half the seed perceptron's
//!   forward product).
//!
//! The backward is the usual pair, `dx = dy · Wᵀ` and `dW = xᵀ · dy`, computed the
//! same way. Other backends (CUDA, `ndarray`) keep burn's `Linear` and `matmul`.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::kernels::cast;

type Train = Autodiff<Flex>;

/// What `Linear::forward` computes for a batch of rows: `x · W + b`.
pub fn dense<B: Backend>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    let y = matmul(x, layer.weight.val());
    match bias {
        Some(b) => y + b.unsqueeze_dim(0),
        None => y,
    }
}

/// `x · w` for 2-D tensors (as `Tensor::matmul`).
pub fn matmul<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.matmul(w);
    }
    let pair: Box<dyn Any> = Box::new((x, w));
    let pair = match pair.downcast::<(Tensor<Train, 2>, Tensor<Train, 2>)>() {
        Ok(p) => return cast(tracked(p.0, p.1)),
        Err(pair) => pair,
    };
    match pair.downcast::<(Tensor<Flex, 2>, Tensor<Flex, 2>)>() {
        Ok(p) => cast(wrap(product(&flex(p.0), &flex(p.1)))),
        Err(pair) => {
            let (x, w) = *pair
                .downcast::<(Tensor<B, 2>, Tensor<B, 2>)>()
                .expect("its own type");
            x.matmul(w)
        }
    }
}

fn flex(t: Tensor<Flex, 2>) -> FlexTensor {
    t.into_primitive().tensor()
}

fn wrap(t: FlexTensor) -> Tensor<Flex, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

#[derive(Debug)]
struct MatmulGrad;

impl Backward<Flex, 2> for MatmulGrad {
    /// The forward's `x` and `w`.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let dy = Mat::of(&dy);
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, mul(Mat::of(&x).t(), dy));
        }
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, mul(dy, Mat::of(&w).t()));
        }
    }
}

fn tracked(x: Tensor<Train, 2>, w: Tensor<Train, 2>) -> Tensor<Train, 2> {
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    let y = match MatmulGrad
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = product(&x.primitive, &w.primitive);
            prep.finish((x.primitive, w.primitive), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(product(&x.primitive, &w.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// The forward product `x · w`.
fn product(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    mul(Mat::of(x), Mat::of(w))
}

/// Makes `gemm` pack the left-hand side of every product it computes. `gemm` skips packing
/// a column-major left-hand side when the product has few columns, which is what it sees
/// in `x · W` for a batch of at most 96 rows (it computes `Wᵀ · xᵀ`): it then reads `W`
/// one row, a new page, per step along the inner axis. For the seed perceptron's
/// `[32, 3072] × [3072, 3072]` this halves the product's time (8.97 → 4.34 ms, both
/// cores); products with larger batches are packed anyway and do not change. Packing only
/// copies, so the results are the same. Process-wide: `gemm` keeps the threshold globally.
pub fn pack_small_batches() {
    ::gemm::set_lhs_packing_threshold_single_thread(0);
    ::gemm::set_lhs_packing_threshold_multi_thread(0);
}

/// A 2-D view into a tensor's storage, as `gemm` takes it.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl Mat {
    fn of(t: &FlexTensor) -> Mat {
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        assert_eq!(shape.num_dims(), 2, "dense products take matrices");
        let data = t.storage::<f32>();
        Mat {
            // SAFETY: the layout's start offset lies inside its own storage.
            ptr: unsafe { data.as_ptr().add(layout.start_offset()) },
            rows: shape[0],
            cols: shape[1],
            rs: strides[0],
            cs: strides[1],
        }
    }

    fn t(self) -> Mat {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `flex`'s rule for when a product is worth both cores.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// `a · b` into a new row-major tensor.
fn mul(a: Mat, b: Mat) -> FlexTensor {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if k == 0 {
        out.resize(m * n, 0.0);
    } else {
        let parallelism = if m * n * k >= PARALLEL_THRESHOLD {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the views lie inside live storage (their tensors outlive this call);
        // `out` has room for m × n; with `read_dst` false and k ≥ 1, gemm writes every
        // element of it, so it is initialized before `set_len`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.ptr,
                a.cs,
                a.rs,
                b.ptr,
                b.cs,
                b.rs,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            out.set_len(m * n);
        }
    }
    FlexTensor::from_data(TensorData::new(out, [m, n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, ElementConversion};

    fn max_diff(a: Tensor<Flex, 2>, b: Tensor<Flex, 2>) -> f32 {
        a.sub(b).abs().max().into_scalar().elem()
    }

    /// The same output and gradients (input, weight, bias) as burn's `Linear`, for a
    /// small and a large batch and a transposed (non-contiguous) input, with `gemm`
    /// packing as training sets it.
    #[test]
    fn dense_matches_burns() {
        let device = Default::default();
        pack_small_batches();
        for (batch, d_in, d_out, transposed_input) in [
            (8, 1100, 1000, false),
            (200, 30, 20, false),
            (5, 7, 3, true),
        ] {
            let layer = LinearConfig::new(d_in, d_out).init::<Train>(&device);
            let x = if transposed_input {
                Tensor::<Train, 2>::random([d_in, batch], Distribution::Normal(0.0, 1.0), &device)
                    .transpose()
            } else {
                Tensor::<Train, 2>::random([batch, d_in], Distribution::Normal(0.0, 1.0), &device)
            };
            let run = |ours: bool| {
                let x = x.clone().detach().require_grad();
                let y = if ours {
                    dense(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let w = y.clone().detach().sin();
                let g = (y.clone() * w).sum().backward();
                let gx = x.grad(&g).expect("x is tracked");
                let gw = layer.weight.val().grad(&g).expect("the weight is tracked");
                let gb = layer
                    .bias
                    .as_ref()
                    .expect("a bias")
                    .val()
                    .grad(&g)
                    .expect("tracked");
                (y.inner(), gx, gw, gb.unsqueeze_dim(0))
            };
            let (ours, theirs) = (run(true), run(false));
            let what = format!("{batch} × {d_in} → {d_out}");
            assert!(max_diff(ours.0, theirs.0) < 1e-4, "{what}: outputs differ");
            assert!(
                max_diff(ours.1, theirs.1) < 1e-4,
                "{what}: input gradients differ"
            );
            assert!(
                max_diff(ours.2, theirs.2) < 1e-4,
                "{what}: weight gradients differ"
            );
            assert!(
                max_diff(ours.3, theirs.3) < 1e-4,
                "{what}: bias gradients differ"
            );
        }
    }

    /// Without autodiff (evaluation) the product is the same as burn's.
    #[test]
    fn inference_product_matches_burns() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([16, 1500], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Flex, 2>::random([1500, 800], Distribution::Normal(0.0, 1.0), &device);
        let d = max_diff(matmul(x.clone(), w.clone()), x.matmul(w));
        assert!(d < 1e-3, "products differ by {d}");
    }
}
