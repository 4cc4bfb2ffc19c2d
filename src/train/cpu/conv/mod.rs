//! 2-D convolutions on the CPU backend (`flex`): forward and both gradients as `gemm`
//! products per image, the images split over the cores.
//!
//! `flex` runs a convolution forward through a serial NCHW → NHWC copy of the whole batch,
//! a fresh column buffer and a fresh product buffer for every 512-pixel tile, and a
//! scattered copy back; its input gradient is a transposed convolution and its weight
//! gradient a convolution of the batch with swapped axes (`perf`: the convolutions and
//! their copies were most of ConvNet's and ResNet-20's training time, docs/BENCHMARKS.md).
//! Here, in NCHW throughout, per image `n`:
//!
//! - forward: `cols = im2col(x[n])` (`[c_in·kh·kw, oh·ow]`), `y[n] = W · cols`;
//! - input gradient: `x'[n] = col2im(Wᵀ · y'[n])`;
//! - weight gradient: `W' = Σₙ y'[n] · colsₙᵀ`, with `cols` built again rather than kept
//!   (ResNet-20's would be ~0.5 GB a batch).
//!
//! Stride-1 convolutions with enough channels (all of ResNet's and ConvNet's but the first)
//! skip the column matrix ([`columns`]): [`Spread`](spread::Spread) copies the image `kw`
//! times instead of `kh·kw` and the products read the copies in place, one per kernel
//! row; the input gradient is then the same correlation of the padded output gradient,
//! with no `col2im`.
//!
//! Every image is one single-threaded product, so the batch, not each product, is shared
//! between the cores. The weight gradient is summed in fixed groups of images, in order,
//! so that the result does not depend on how rayon scheduled the work: same seed, same
//! weights. Other backends (CUDA, `ndarray`) keep burn's `conv2d`.

use std::any::Any;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

mod columns;
mod spread;

use super::flex::{cast, tensor, values};
use super::matmul::{add, write, Mat};
use super::wide::wide;
use columns::{col2im, im2col};
use spread::weights_by_row;

type Train = Autodiff<Flex>;

/// What burn's `Conv2d::forward` does, through [`conv2d`]. Falls back to burn's own for
/// what pipe's models never build (a bias inside the module, `Same` padding).
pub fn conv2d_module<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return conv.forward(x),
    };
    if conv.bias.is_some() {
        return conv.forward(x);
    }
    if (top, left) != (bottom, right) {
        // Asymmetric: pad explicitly, as burn does, and convolve without padding.
        let options = ConvOptions::new(conv.stride, [0, 0], conv.dilation, conv.groups);
        let padded = x.pad((left, right, top, bottom), PadMode::Constant(0.0));
        return conv2d(padded, conv.weight.val(), options);
    }
    let options = ConvOptions::new(conv.stride, [top, left], conv.dilation, conv.groups);
    conv2d(x, conv.weight.val(), options)
}

/// `conv2d(x, weight)` without bias (as `burn::tensor::module::conv2d`).
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || options.groups != 1 {
        return burn::tensor::module::conv2d(x, weight, None, options);
    }
    let pair: Box<dyn Any> = Box::new((x, weight));
    let pair = match pair.downcast::<(Tensor<Train, 4>, Tensor<Train, 4>)>() {
        Ok(p) => return cast(tracked(p.0, p.1, &options)),
        Err(pair) => pair,
    };
    match pair.downcast::<(Tensor<Flex, 4>, Tensor<Flex, 4>)>() {
        Ok(p) => {
            let (x, w) = (p.0.into_primitive().tensor(), p.1.into_primitive().tensor());
            let g = Geometry::of(&x, &w, &options);
            cast(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(
                forward(&x, &w, &g),
            )))
        }
        Err(pair) => {
            let (x, w) = *pair
                .downcast::<(Tensor<B, 4>, Tensor<B, 4>)>()
                .expect("its own type");
            burn::tensor::module::conv2d(x, w, None, options)
        }
    }
}

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    /// Input height and width.
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    /// Output height and width.
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn of(x: &FlexTensor, w: &FlexTensor, options: &ConvOptions<2>) -> Geometry {
        let (xs, ws) = (x.layout().shape(), w.layout().shape());
        assert_eq!(xs[1], ws[1], "input channels of the input and the weight");
        let out = |n: usize, k: usize, axis: usize| {
            let span = options.dilation[axis] * (k - 1) + 1;
            let padded = n + 2 * options.padding[axis];
            assert!(padded >= span, "a {k}-wide kernel on a {n}-wide input");
            (padded - span) / options.stride[axis] + 1
        };
        Geometry {
            batch: xs[0],
            c_in: xs[1],
            h: xs[2],
            w: xs[3],
            c_out: ws[0],
            kh: ws[2],
            kw: ws[3],
            stride: options.stride,
            pad: options.padding,
            dilation: options.dilation,
            oh: out(xs[2], ws[2], 0),
            ow: out(xs[3], ws[3], 1),
        }
    }

    /// Rows of the column matrix: one per weight of an output channel.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output pixels of one channel.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// A 1×1 convolution with stride 1 and no padding: the image is its own column matrix.
    fn pointwise(&self) -> bool {
        (self.kh, self.kw, self.stride, self.pad) == (1, 1, [1, 1], [0, 0])
    }
}

/// `y[n] = W · im2col(x[n])`, or through [`Spread`](spread::Spread) where it applies.
fn forward(x: &FlexTensor, w: &FlexTensor, g: &Geometry) -> FlexTensor {
    let (x, w) = (values(x), values(w));
    let (k, p) = (g.k(), g.p());
    let mut y: Vec<f32> = Vec::with_capacity(g.batch * g.c_out * p);
    let out = &mut y.spare_capacity_mut()[..g.batch * g.c_out * p];
    if let Some(s) = g.spread_forward() {
        s.correlate_batch(&x, &weights_by_row(&w, g, false), g.c_out, out);
    } else {
        let weight = Mat::rows(&w, g.c_out, k);
        out.par_chunks_mut(g.c_out * p)
            .zip(x.par_chunks(g.image()))
            .for_each(|(y_n, x_n)| {
                if g.pointwise() {
                    write(y_n, weight, Mat::rows(x_n, k, p), false);
                } else {
                    scratch(k * p, |cols| {
                        im2col(g, x_n, cols);
                        write(y_n, weight, Mat::rows(cols, k, p), false);
                    })
                }
            });
    }
    // SAFETY: `write` (in `correlate` too) initialized every image's c_out × p outputs.
    unsafe { y.set_len(g.batch * g.c_out * p) };
    tensor(y, [g.batch, g.c_out, g.oh, g.ow])
}

/// `x'[n] = col2im(Wᵀ · y'[n])`, or through [`Spread`](spread::Spread) where it applies: a
/// stride-1 convolution's input gradient is the output gradient, padded, correlated with
/// the kernel flipped and its channels swapped.
fn input_grad(dy: &[f32], w: &[f32], g: &Geometry) -> FlexTensor {
    let (k, p) = (g.k(), g.p());
    if let Some(s) = g.spread_backward() {
        let mut dx: Vec<f32> = Vec::with_capacity(g.batch * g.image());
        let out = &mut dx.spare_capacity_mut()[..g.batch * g.image()];
        s.correlate_batch(dy, &weights_by_row(w, g, true), g.c_in, out);
        // SAFETY: `correlate_batch` initialized every image's c_in × h × w values.
        unsafe { dx.set_len(g.batch * g.image()) };
        return tensor(dx, [g.batch, g.c_in, g.h, g.w]);
    }
    let weight_t = Mat::rows(w, g.c_out, k).t();
    let mut dx = vec![0f32; g.batch * g.image()];
    dx.par_chunks_mut(g.image())
        .zip(dy.par_chunks(g.c_out * p))
        .for_each(|(dx_n, dy_n)| {
            let dy_n = Mat::rows(dy_n, g.c_out, p);
            if g.pointwise() {
                add(dx_n, weight_t, dy_n, false);
            } else {
                scratch(k * p, |dcols| {
                    write(uninit(dcols), weight_t, dy_n, false);
                    col2im(g, dcols, dx_n);
                })
            }
        });
    tensor(dx, [g.batch, g.c_in, g.h, g.w])
}

thread_local! {
    /// This thread's column matrix or spread image, kept from one image and one call to
    /// the next: a fresh zeroed buffer for each of rayon's jobs was `memset` time.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, `len` values long, holding whatever the last
/// user left in it. (`f` must not hand work to rayon: a job stolen meanwhile could want
/// the buffer too.)
fn scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

/// Values to be overwritten, as `gemm`'s output.
fn uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and what is written through it is
    // initialized `f32`s.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// # Safety
/// Every element of `values` has been written.
unsafe fn assume_init(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller vouches for the values.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Images per partial sum of the weight gradient: fixed, so the sum's order is too.
const IMAGES_PER_SUM: usize = 8;

/// `W' = Σₙ y'[n] · im2col(x[n])ᵀ`, summed as its transpose `Σₙ im2col(x[n]) · y'[n]ᵀ`
/// (`[c_in·kh·kw, c_out]`): `gemm` runs along its output's contiguous axis, and in `W'`
/// that is the column matrix's long one, which it would then copy element by element at a
/// stride of `oh·ow` into its own layout (a third of ResNet-20's training time in `perf`).
///
/// `gemm` also wants the other factor, `y'[n]`, contiguous along `c_out`; as it comes
/// (`[c_out, oh·ow]`) it gathers it one value at a time, `c_out` rows 4 KB apart on a
/// 32×32 image, which all fall in the same L1 set (`perf` of a ConvNet stage: 11.7% of
/// samples in that gather against 13.6% in the product it fed). So each image's `y'[n]` is
/// transposed first, in tiles ([`transpose`]); the product and its bits are the same.
fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> FlexTensor {
    let (k, p) = (g.k(), g.p());
    let spread = g.spread_forward();
    // Each partial sum is `[rows × c_out]`, its rows the column matrix's or, with a
    // spread image, `(i, j, c)`: `kh` sums of `[(j, c) × c_out]`, one per kernel row.
    let partial: Vec<Vec<f32>> = x
        .par_chunks(IMAGES_PER_SUM * g.image())
        .zip(dy.par_chunks(IMAGES_PER_SUM * g.c_out * p))
        .map(|(xs, dys)| {
            let mut sum_t = vec![0f32; k * g.c_out];
            let mut cols =
                vec![0f32; spread.map_or(if g.pointwise() { 0 } else { k * p }, |s| s.len())];
            let mut dy_t = vec![0f32; p * g.c_out];
            for (x_n, dy_n) in xs.chunks(g.image()).zip(dys.chunks(g.c_out * p)) {
                transpose(dy_n, g.c_out, p, &mut dy_t);
                let dy_t = Mat::rows(&dy_t, p, g.c_out);
                if let Some(s) = spread {
                    s.spread(x_n, &mut cols);
                    for (i, sum_i) in sum_t.chunks_exact_mut(s.depth() * g.c_out).enumerate() {
                        add(sum_i, s.operand(&cols, i), dy_t, false);
                    }
                    continue;
                }
                let cols = if g.pointwise() {
                    Mat::rows(x_n, k, p)
                } else {
                    im2col(g, x_n, &mut cols);
                    Mat::rows(&cols, k, p)
                };
                add(&mut sum_t, cols, dy_t, false);
            }
            sum_t
        })
        .collect();
    // Where row r of a partial sum goes in a filter `[c_in, kh, kw]`.
    let column = |r: usize| match spread {
        None => r,
        Some(_) => {
            let (ij, c) = (r / g.c_in, r % g.c_in);
            c * g.kh * g.kw + ij
        }
    };
    let mut dw = vec![0f32; g.c_out * k];
    for part in &partial {
        for (r, row) in part.chunks_exact(g.c_out).enumerate() {
            let column = column(r);
            for (c, v) in row.iter().enumerate() {
                dw[c * k + column] += *v;
            }
        }
    }
    tensor(dw, [g.c_out, g.c_in, g.kh, g.kw])
}

wide! {
    /// `to[c·rows + r] = from[r·cols + c]`: the `rows × cols` row-major `from`, transposed,
    /// eight rows by eight columns at a time, each block as eight whole rows in and eight
    /// whole rows out (AVX2 shuffles; one value at a time in 16 × 16 tiles took 6.2% of a
    /// ConvNet stage's samples against 5.5%, one `perf` run each).
    fn transpose(from: &[f32], rows: usize, cols: usize, to: &mut [f32]) {
        const B: usize = 8;
        assert_eq!(from.len(), rows * cols);
        assert_eq!(to.len(), rows * cols);
        let (whole_rows, whole_cols) = (rows / B * B, cols / B * B);
        for r0 in (0..whole_rows).step_by(B) {
            for c0 in (0..whole_cols).step_by(B) {
                let block: [[f32; B]; B] = std::array::from_fn(|i| {
                    from[(r0 + i) * cols + c0..][..B].try_into().expect("eight values")
                });
                for j in 0..B {
                    let column: [f32; B] = std::array::from_fn(|i| block[i][j]);
                    to[(c0 + j) * rows + r0..][..B].copy_from_slice(&column);
                }
            }
        }
        // What the blocks left: the last rows (all columns) and the last columns.
        for r in 0..rows {
            let first = if r < whole_rows { whole_cols } else { 0 };
            for c in first..cols {
                to[c * rows + r] = from[r * cols + c];
            }
        }
    }
}

#[derive(Debug)]
struct ConvGrad;

impl Backward<Flex, 2> for ConvGrad {
    /// The forward's input and weight, and its sizes.
    type State = (FlexTensor, FlexTensor, Geometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, g) = ops.state;
        let dy = values(&dy);
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, weight_grad(&values(&x), &dy, &g));
        }
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, input_grad(&dy, &values(&w), &g));
        }
    }
}

fn tracked(x: Tensor<Train, 4>, w: Tensor<Train, 4>, options: &ConvOptions<2>) -> Tensor<Train, 4> {
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    let g = Geometry::of(&x.primitive, &w.primitive, options);
    let y = match ConvGrad
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive, &w.primitive, &g);
            prep.finish((x.primitive, w.primitive, g), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &w.primitive, &g)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::AutodiffModule;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, ElementConversion};

    fn max_diff(a: Tensor<Flex, 4>, b: Tensor<Flex, 4>) -> f32 {
        a.sub(b).abs().max().into_scalar().elem()
    }

    /// The same output and gradients (input and weight) as burn's `Conv2d`, through
    /// autodiff and without it: 1×1, 2×2, 3×3 and 5×5 kernels, stride 1 and 2, dilation,
    /// symmetric, asymmetric and no padding, a batch that does not fill the last partial
    /// sum, and an input that is not contiguous; with 3 input channels (column matrices)
    /// and with enough for stride 1 to go through [`Spread`](spread::Spread), forward and backward.
    #[test]
    fn convolution_matches_burns() {
        let device = Default::default();
        use PaddingConfig2d::{Explicit as Pad, Valid};
        for (kernel, stride, dilation, padding, batch, transposed, channels) in [
            (3, 1, 1, Pad(1, 1, 1, 1), 11, false, [3, 5]),
            (3, 2, 1, Pad(1, 1, 1, 1), 4, false, [3, 5]),
            (2, 1, 1, Pad(0, 0, 1, 1), 3, false, [3, 5]),
            (2, 2, 1, Valid, 4, true, [3, 5]),
            (1, 1, 1, Valid, 9, false, [3, 5]),
            (1, 2, 1, Valid, 5, false, [3, 5]),
            (3, 1, 2, Pad(2, 2, 2, 2), 2, false, [3, 5]),
            (5, 3, 1, Pad(1, 1, 1, 1), 3, true, [3, 5]),
            // Enough channels for stride 1 to go through `Spread`.
            (3, 1, 1, Pad(1, 1, 1, 1), 11, false, [8, 9]),
            (3, 1, 1, Pad(1, 1, 1, 1), 3, true, [9, 8]),
            (3, 1, 1, Valid, 3, false, [8, 8]),
            (3, 1, 2, Pad(2, 2, 2, 2), 2, false, [8, 10]),
            (2, 1, 1, Pad(0, 0, 1, 1), 3, false, [12, 12]),
            (5, 1, 1, Pad(1, 1, 1, 1), 3, true, [5, 6]),
            // Padding wider than the kernel's span: the input gradient takes `col2im`.
            (3, 1, 1, Pad(3, 3, 3, 3), 2, false, [8, 8]),
        ] {
            let conv = Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_dilation([dilation, dilation])
                .with_padding(padding.clone())
                .with_bias(false)
                .init::<Train>(&device);
            let [c_in, _] = channels;
            let x = if transposed {
                Tensor::<Train, 4>::random(
                    [batch, c_in, 6, 7],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .swap_dims(2, 3)
            } else {
                Tensor::<Train, 4>::random(
                    [batch, c_in, 7, 6],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
            };
            let run = |ours: bool| {
                let x = x.clone().detach().require_grad();
                let y = if ours {
                    conv2d_module(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let w = y.clone().detach().sin();
                let g = (y.clone() * w).sum().backward();
                let gx = x.grad(&g).expect("x is tracked");
                let gw = conv.weight.val().grad(&g).expect("the weight is tracked");
                (y.inner(), gx, gw)
            };
            let (ours, theirs) = (run(true), run(false));
            let what = format!(
                "{kernel}×{kernel}, stride {stride}, dilation {dilation}, {padding:?}, {channels:?}"
            );
            assert_eq!(ours.0.dims(), theirs.0.dims(), "{what}: output shape");
            assert!(
                max_diff(ours.0, theirs.0.clone()) < 1e-5,
                "{what}: outputs differ"
            );
            assert!(
                max_diff(ours.1, theirs.1) < 1e-5,
                "{what}: input gradients differ"
            );
            assert!(
                max_diff(ours.2, theirs.2) < 1e-4,
                "{what}: weight gradients differ"
            );
            let inference = conv2d_module(&conv.valid(), x.clone().inner());
            assert!(
                max_diff(inference, theirs.0) < 1e-5,
                "{what}: inference differs"
            );
        }
    }

    /// Tiles cut at both edges, one row or column, and shapes of the models' convolutions.
    #[test]
    fn transpose_moves_every_value() {
        for (rows, cols) in [(1, 1), (3, 5), (16, 16), (32, 1024), (17, 40), (64, 33)] {
            let from: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut to = vec![f32::NAN; rows * cols];
            transpose(&from, rows, cols, &mut to);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        to[c * rows + r],
                        from[r * cols + c],
                        "{rows}×{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }

    /// Two runs on the same batch give the same bits, however rayon splits the images.
    #[test]
    fn gradients_are_reproducible() {
        let device = Default::default();
        let conv = Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init::<Train>(&device);
        let x = Tensor::<Train, 4>::random([37, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        let grad = || {
            let y = conv2d_module(&conv, x.clone());
            let g = (y.clone() * y.detach().cos()).sum().backward();
            conv.weight.val().grad(&g).expect("tracked").into_data()
        };
        let first = grad();
        for _ in 0..4 {
            assert_eq!(grad(), first);
        }
    }
}
