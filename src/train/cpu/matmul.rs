//! The dense layers' matrix products on the CPU backend (`flex`), called through the `gemm`
//! crate directly, as `flex` itself does, but without three of its costs (docs/BENCHMARKS.md):
//!
//! - **Output buffers**: `flex` allocates every product's output zeroed and then copies it
//!   into a 16-byte aligned buffer before `gemm` overwrites it: three passes over a buffer
//!   that is 37 MB for the seed perceptron's weight gradient (20% of its training time).
//!   Here `gemm` writes into a fresh buffer once.
//! - **Small batches**: for `x · W` with a batch of at most 96 rows `gemm` reads burn's
//!   row-major `[inputs, outputs]` weight unpacked, a new page per step along the inner
//!   axis; here it always packs (half the seed perceptron's forward product).
//! - **Two cores**: `gemm`'s own split left some shapes as slow as on one core; here each
//!   core computes its half of the output (see [`halves`]).
//!
//! The backward is the usual pair, `dx = dy · Wᵀ` and `dW = xᵀ · dy`, computed the
//! same way. Other backends (CUDA, `ndarray`) keep burn's `Linear` and `matmul`.

use std::any::Any;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};

use super::flex::{cast, tensor};

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
        Ok(p) => cast(wrap(forward(&flex(p.0), &flex(p.1)))),
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
            let y = forward(&x.primitive, &w.primitive);
            prep.finish((x.primitive, w.primitive), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &w.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// The forward product `x · w`.
fn forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    mul(Mat::of(x), Mat::of(w))
}

/// A 2-D view into `f32` storage, as `gemm` takes it: any strides, so a transpose is free.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
    data: PhantomData<&'a [f32]>,
}

// SAFETY: a `Mat` only reads the storage it borrows, like the `&[f32]` it stands for.
unsafe impl Send for Mat<'_> {}
unsafe impl Sync for Mat<'_> {}

impl<'a> Mat<'a> {
    fn of(t: &'a FlexTensor) -> Mat<'a> {
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
            data: PhantomData,
        }
    }

    /// The row-major `rows × cols` matrix at the start of `data`.
    pub(super) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat::strided(data, rows, cols, cols)
    }

    /// `rows × cols` at the start of `data`, row `i` starting at `data[i * row_stride]`:
    /// one time step's rows of a `[batch, steps, features]` sequence.
    pub(super) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        assert!(
            rows == 0 || data.len() >= (rows - 1) * row_stride + cols,
            "a {rows} × {cols} matrix, rows {row_stride} apart"
        );
        Mat {
            ptr: data.as_ptr(),
            rows,
            cols,
            rs: row_stride as isize,
            cs: 1,
            data: PhantomData,
        }
    }

    /// Columns `from..to`: the rows of the transposed view.
    fn columns(self, from: usize, to: usize) -> Mat<'a> {
        self.t().row_range(from, to).t()
    }

    /// Rows `from..to`.
    fn row_range(self, from: usize, to: usize) -> Mat<'a> {
        assert!(from <= to && to <= self.rows);
        Mat {
            // SAFETY: row `from` lies inside the view (or one past its last row).
            ptr: unsafe { self.ptr.offset(from as isize * self.rs) },
            rows: to - from,
            ..self
        }
    }

    pub(super) fn t(self) -> Mat<'a> {
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

/// `a · b` into a new row-major tensor, on both cores when it is large.
fn mul(a: Mat, b: Mat) -> FlexTensor {
    let (m, n) = (a.rows, b.cols);
    let both_cores = m * n * a.cols >= PARALLEL_THRESHOLD;
    tensor(new_product(a, b, both_cores, Packing::Always), [m, n])
}

/// `a · b` into a new row-major vector, written once.
pub(super) fn new_product(a: Mat, b: Mat, both_cores: bool, packing: Packing) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if a.cols == 0 {
        out.resize(m * n, 0.0);
    } else {
        // SAFETY: with `read_dst` false and k ≥ 1, gemm writes all m × n elements.
        unsafe {
            product(out.as_mut_ptr(), m * n, n, false, a, b, both_cores, packing);
            out.set_len(m * n);
        }
    }
    out
}

/// A row-major output of `a · b` holds exactly its `m × n` values.
#[track_caller]
fn check_output(len: usize, a: Mat, b: Mat) {
    assert_eq!(
        len,
        a.rows * b.cols,
        "the output is {} × {}",
        a.rows,
        b.cols
    );
}

/// `dst = a · b`, `dst` row-major; every element of `dst` is written.
pub(super) fn write(dst: &mut [MaybeUninit<f32>], a: Mat, b: Mat, both_cores: bool) {
    check_output(dst.len(), a, b);
    if a.cols == 0 {
        dst.fill(MaybeUninit::new(0.0));
        return;
    }
    // SAFETY: with `read_dst` false and k ≥ 1, gemm only writes `dst`.
    unsafe {
        product(
            dst.as_mut_ptr().cast(),
            dst.len(),
            b.cols,
            false,
            a,
            b,
            both_cores,
            Packing::Gemms,
        )
    }
}

/// `dst += a · b`, `dst` row-major.
pub(super) fn add(dst: &mut [f32], a: Mat, b: Mat, both_cores: bool) {
    check_output(dst.len(), a, b);
    add_rows(dst, b.cols, a, b, both_cores, Packing::Gemms)
}

/// `dst += a · b`, row `i` of the product added at `dst[i * row_stride..]`.
pub(super) fn add_rows(
    dst: &mut [f32],
    row_stride: usize,
    a: Mat,
    b: Mat,
    both_cores: bool,
    packing: Packing,
) {
    // SAFETY: `dst` is initialized, so gemm may read it.
    unsafe {
        product(
            dst.as_mut_ptr(),
            dst.len(),
            row_stride,
            true,
            a,
            b,
            both_cores,
            packing,
        )
    }
}

/// Whether `gemm` copies the left-hand side into its own layout before multiplying.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Packing {
    /// Always: for the dense layers. `gemm` skips packing a column-major left-hand side
    /// when the product has few columns, which is what it sees in `x · W` for a batch of
    /// at most 96 rows (it computes `Wᵀ · xᵀ`): it then reads `W` one row, a new page,
    /// per step along the inner axis. For the seed perceptron's `[32, 3072] × [3072,
    /// 3072]` packing halves the product's time (8.97 → 4.34 ms, both cores).
    Always,
    /// When `gemm` thinks it pays: for the convolutions' per-image products, whose
    /// left-hand side is the image's large column matrix, read in order, and used for few
    /// output channels (packing it was a third of ResNet-20's training time).
    Gemms,
    /// Never, for a row-major `b` (which `gemm` reads as its column-major left-hand side):
    /// the LSTM's step products `h · U` and `dG · Uᵀ` with `Uᵀ` stored, where `gemm` would
    /// otherwise copy all of `U` on every step for a 64-row product.
    Never,
}

/// The threshold is process-wide in `gemm`, so each product sets the one it wants; two
/// products racing on it can only make each other slower, not different: packing copies.
fn set_packing(packing: Packing) {
    let (single, multi) = match packing {
        Packing::Always => (0, 0),
        // gemm's largest: pack only products of more than 256 · 6 rows.
        Packing::Never => (256, 256),
        Packing::Gemms => (
            ::gemm::DEFAULT_LHS_PACKING_THRESHOLD_SINGLE_THREAD,
            ::gemm::DEFAULT_LHS_PACKING_THRESHOLD_MULTI_THREAD,
        ),
    };
    ::gemm::set_lhs_packing_threshold_single_thread(single);
    ::gemm::set_lhs_packing_threshold_multi_thread(multi);
}

/// # Safety
/// `dst` points at `len` writable elements, initialized if `read_dst`; row `i` of the
/// product goes to `dst[i * dst_rs..]`.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    dst: *mut f32,
    len: usize,
    dst_rs: usize,
    read_dst: bool,
    a: Mat,
    b: Mat,
    both_cores: bool,
    packing: Packing,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    set_packing(packing);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        m == 0 || len >= (m - 1) * dst_rs + n,
        "the output holds {m} × {n}, rows {dst_rs} apart"
    );
    if both_cores && m.max(n) >= 2 * LANES {
        // SAFETY: the halves write disjoint parts of `dst`, each inside the caller's.
        return unsafe { halves(dst, len, dst_rs, read_dst, a, b, packing) };
    }
    // SAFETY: the views lie inside storage they borrow; `dst` as the caller promised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            read_dst,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            if read_dst { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Floats in an AVX-512 register: a split at a multiple of it keeps `gemm`'s tiles whole.
const LANES: usize = 16;

/// A product on both cores as two single-threaded products, one per half of the output's
/// longer side (columns on a tie). `gemm`'s own split (`Parallelism::Rayon`) ran some of
/// the dense layers' shapes no faster than one core: `dy · Wᵀ` of `[256, 512] × [512,
/// 512]`, the Highway and MLP hidden layers' input gradient, at 61–96 GFLOP/s against
/// 135–140 this way (`cargo bench --bench products`; docs/BENCHMARKS.md, 2026-12-02
/// night). Each output value is summed by one core in an order that does not depend on
/// how many there are.
///
/// # Safety
/// As [`product`].
unsafe fn halves(
    dst: *mut f32,
    len: usize,
    dst_rs: usize,
    read_dst: bool,
    a: Mat,
    b: Mat,
    packing: Packing,
) {
    let (m, n) = (a.rows, b.cols);
    let half = |size: usize| (size / 2).div_ceil(LANES) * LANES;
    // The second half's start in `dst`, and the two halves of each operand.
    let (offset, (a0, a1), (b0, b1)) = if n >= m {
        let h = half(n);
        (h, (a, a), (b.columns(0, h), b.columns(h, n)))
    } else {
        let h = half(m);
        (h * dst_rs, (a.row_range(0, h), a.row_range(h, m)), (b, b))
    };
    let second = Shared(unsafe { dst.add(offset) });
    let first = Shared(dst);
    rayon::join(
        // SAFETY: the halves' outputs do not overlap and lie inside `dst[..len]`.
        || unsafe { product(first.get(), len, dst_rs, read_dst, a0, b0, false, packing) },
        || unsafe {
            product(
                second.get(),
                len - offset,
                dst_rs,
                read_dst,
                a1,
                b1,
                false,
                packing,
            )
        },
    );
}

/// An output pointer handed to the other core for its own half.
struct Shared(*mut f32);

// SAFETY: each half writes only its own part of the output (see `halves`).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn get(&self) -> *mut f32 {
        self.0
    }
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
        for (batch, d_in, d_out, transposed_input) in [
            (8, 1100, 1000, false),
            // More rows than columns: the two cores split the rows.
            (300, 200, 150, false),
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

    /// On both cores, split by columns or by rows at any size, the product has the same
    /// bits as on one: each value is summed by one core, in the same order.
    #[test]
    fn both_cores_give_one_cores_bits() {
        let values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
                .collect()
        };
        for (m, k, n) in [
            (37, 50, 45),
            (100, 64, 33),
            (33, 20, 100),
            (32, 9, 32),
            (70, 300, 500),
        ] {
            let (a, b) = (values(m * k), values(k * n));
            for (a, b) in [
                (Mat::rows(&a, m, k), Mat::rows(&b, k, n)),
                (Mat::rows(&a, k, m).t(), Mat::rows(&b, n, k).t()),
            ] {
                for packing in [Packing::Always, Packing::Gemms, Packing::Never] {
                    let one = new_product(a, b, false, packing);
                    let two = new_product(a, b, true, packing);
                    assert!(
                        one.iter()
                            .zip(&two)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m} × {k} × {n}: the two-core product differs"
                    );
                    let mut sum = values(m * n);
                    let mut sum_two = sum.clone();
                    add_rows(&mut sum, n, a, b, false, packing);
                    add_rows(&mut sum_two, n, a, b, true, packing);
                    assert_eq!(sum, sum_two, "{m} × {k} × {n}: the two-core sum differs");
                }
            }
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
