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
//! skip the column matrix: [`Spread`] copies the image `kw` times instead of `kh·kw` and
//! the products read the copies in place, one per kernel row; the input gradient is then
//! the same correlation of the padded output gradient, with no `col2im`.
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

use super::flex::{cast, tensor, values};
use super::matmul::{add, write, Mat};
use super::wide::wide;

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

    /// The output columns `o` whose input column `o·stride + shift − pad` lies inside
    /// `0..n`, as a range (`shift` is the kernel tap's offset, `j·dilation`).
    fn inside(n_out: usize, n: usize, stride: usize, shift: usize, pad: usize) -> (usize, usize) {
        let lo = pad.saturating_sub(shift).div_ceil(stride).min(n_out);
        let hi = if n + pad > shift {
            ((n + pad - shift - 1) / stride + 1).min(n_out)
        } else {
            0
        };
        (lo, hi.max(lo))
    }

    /// Calls `visit` for every row of the column matrix (every kernel tap of every input
    /// channel) with the output pixels whose input lies inside the image; the others read
    /// the padding.
    fn taps(&self, mut visit: impl FnMut(Tap)) {
        let [sh, sw] = self.stride;
        let [ph, pw] = self.pad;
        let [dh, dw] = self.dilation;
        for c in 0..self.c_in {
            for i in 0..self.kh {
                let (oh_lo, oh_hi) = Geometry::inside(self.oh, self.h, sh, i * dh, ph);
                for j in 0..self.kw {
                    let (lo, hi) = Geometry::inside(self.ow, self.w, sw, j * dw, pw);
                    visit(Tap {
                        row: (c * self.kh + i) * self.kw + j,
                        rows: (oh_lo, oh_hi),
                        cols: (lo, hi),
                        // Input row of output row oh: oh·sh + i·dh − ph (≥ 0 inside).
                        plane: c * self.h * self.w,
                        first_input_row: (oh_lo * sh + i * dh) as isize - ph as isize,
                        first_input_col: (lo * sw + j * dw) as isize - pw as isize,
                    });
                }
            }
        }
    }
}

impl Geometry {
    /// Where consecutive output pixels read consecutive input pixels (stride 1, output as
    /// wide as the input: `Same` padding), a tap's inside rows map onto the image as one
    /// block: its range in the column row, and where it starts in the image.
    fn block(&self, t: &Tap) -> Option<(std::ops::Range<usize>, usize)> {
        if self.stride != [1, 1] || self.ow != self.w || t.rows.0 == t.rows.1 {
            return None;
        }
        let (lo, hi) = t.cols;
        let first = t.rows.0 * self.ow + lo;
        let last = (t.rows.1 - 1) * self.ow + hi;
        let from = t.plane as isize + t.first_input_row * self.w as isize + t.first_input_col;
        Some((first..last, from as usize))
    }
}

/// One row of the column matrix: which output pixels read the image, and from where.
struct Tap {
    row: usize,
    /// Output rows and columns that fall inside the image.
    rows: (usize, usize),
    cols: (usize, usize),
    /// Start of the input channel in the image.
    plane: usize,
    /// Input row and column read by the first output pixel inside.
    first_input_row: isize,
    first_input_col: isize,
}

/// `cols[r][oh·ow + ow] = x[c, oh·sh + i·dh − ph, ow·sw + j·dw − pw]` (0 in the padding),
/// for `r = (c·kh + i)·kw + j`.
fn im2col(g: &Geometry, x: &[f32], cols: &mut [f32]) {
    let p = g.p();
    let [sh, sw] = g.stride;
    g.taps(|t| {
        let row = &mut cols[t.row * p..][..p];
        let (lo, hi) = t.cols;
        if lo == hi {
            row.fill(0.0);
            return;
        }
        row[..t.rows.0 * g.ow].fill(0.0);
        row[t.rows.1 * g.ow..].fill(0.0);
        if let Some((block, from)) = g.block(&t) {
            // One copy of the whole block; then the columns that read past a row's end
            // (into its neighbour) become the padding they stand for.
            row[block.clone()].copy_from_slice(&x[from..from + block.len()]);
            zero_side_columns(g, &t, row);
            return;
        }
        for (n, oh) in (t.rows.0..t.rows.1).enumerate() {
            let out = &mut row[oh * g.ow..][..g.ow];
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            let ih = (t.first_input_row + (n * sh) as isize) as usize;
            let src = &x[t.plane + ih * g.w + t.first_input_col as usize..];
            let n = hi - lo;
            match sw {
                1 => out[lo..hi].copy_from_slice(&src[..n]),
                2 => every_other(&mut out[lo..hi], &src[..2 * n - 1]),
                _ => {
                    for (o, s) in out[lo..hi].iter_mut().zip(src.iter().step_by(sw)) {
                        *o = *s;
                    }
                }
            }
        }
    });
}

wide! {
    /// `out[i] = src[2·i]`: stride-2 convolutions' rows (ResNet's downsampling), with a
    /// constant stride the compiler turns into shuffles instead of one load per value.
    /// Eight at a time: ResNet's rows are 8 or 16 outputs wide, too short for the
    /// compiler's own vector loop.
    fn every_other(out: &mut [f32], src: &[f32]) {
        assert_eq!(src.len(), 2 * out.len() - 1);
        let whole = out.len() / 8 * 8;
        let (body, tail) = out.split_at_mut(whole);
        for (o, s) in body.chunks_exact_mut(8).zip(src.chunks(16)) {
            let s = &s[..15];
            for i in 0..8 {
                o[i] = s[2 * i];
            }
        }
        for (i, o) in tail.iter_mut().enumerate() {
            *o = src[2 * (whole + i)];
        }
    }
}

/// Zeroes the columns left and right of a tap's inside columns, on its inside rows.
fn zero_side_columns(g: &Geometry, t: &Tap, row: &mut [f32]) {
    let (lo, hi) = t.cols;
    zero_columns(&mut row[t.rows.0 * g.ow..t.rows.1 * g.ow], g.ow, lo, hi);
}

/// Zeroes columns `..lo` and `hi..` of the `width`-wide rows of `rows`, one column at a
/// time down the rows: a 3×3 kernel's taps have one such column or none, and zeroing it
/// row by row was a `memset` call per row (`perf`: 4% of ResNet-20's samples in `memset`).
fn zero_columns(rows: &mut [f32], width: usize, lo: usize, hi: usize) {
    for column in (0..lo).chain(hi..width) {
        for v in rows[column..].iter_mut().step_by(width) {
            *v = 0.0;
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it was read from.
/// Overwrites the entries of `cols` that stand for padding.
fn col2im(g: &Geometry, cols: &mut [f32], x: &mut [f32]) {
    let p = g.p();
    let [sh, sw] = g.stride;
    g.taps(|t| {
        let row = &mut cols[t.row * p..][..p];
        let (lo, hi) = t.cols;
        if lo == hi {
            return;
        }
        if let Some((block, to)) = g.block(&t) {
            // Padding entries would land on a neighbouring row's pixel: zero them, then
            // add the whole block at once.
            zero_side_columns(g, &t, row);
            let len = block.len();
            add_to(&mut x[to..to + len], &row[block]);
            return;
        }
        for (n, oh) in (t.rows.0..t.rows.1).enumerate() {
            let from = &row[oh * g.ow + lo..oh * g.ow + hi];
            let ih = (t.first_input_row + (n * sh) as isize) as usize;
            let dst = &mut x[t.plane + ih * g.w + t.first_input_col as usize..];
            if sw == 1 {
                add_to(&mut dst[..hi - lo], from);
            } else {
                for (d, f) in dst.iter_mut().step_by(sw).zip(from) {
                    *d += *f;
                }
            }
        }
    });
}

wide! {
    /// `dst += from`, element by element.
    fn add_to(dst: &mut [f32], from: &[f32]) {
        for (d, f) in dst.iter_mut().zip(from) {
            *d += *f;
        }
    }
}

/// The fewest values a spread image's product reads per output value (`kw · c`) for a
/// stride-1 convolution to go through [`Spread`]. Shallow products are slow: one core,
/// 16 × k by k × 1024 (`cargo bench --bench products -- 16 k 1024`, one run each), ran
/// at 60 GFLOP/s for k = 9 (an RGB stem's spread), 73 for 24, 88 for 48 and 96 for 144;
/// the stem keeps its column matrix (k = 27: 84).
const SPREAD_MIN_DEPTH: usize = 24;

impl Geometry {
    /// The forward (and weight gradient) of a stride-1 convolution as `kh` products of
    /// the spread input, where that pays.
    fn spread_forward(&self) -> Option<Spread> {
        (self.stride == [1, 1] && !self.pointwise() && self.c_in * self.kw >= SPREAD_MIN_DEPTH)
            .then(|| Spread::new(self.c_in, [self.h, self.w], self.pad, self))
    }

    /// The input gradient of a stride-1 convolution: the output gradient padded by the
    /// kernel's span less the forward's padding (so not for a padding wider than that).
    fn spread_backward(&self) -> Option<Spread> {
        let [dh, dw] = self.dilation;
        let (span_h, span_w) = ((self.kh - 1) * dh, (self.kw - 1) * dw);
        let fits = self.pad[0] <= span_h && self.pad[1] <= span_w;
        (self.stride == [1, 1]
            && fits
            && !self.pointwise()
            && self.c_out * self.kw >= SPREAD_MIN_DEPTH)
            .then(|| {
                let pad = [span_h - self.pad[0], span_w - self.pad[1]];
                Spread::new(self.c_out, [self.oh, self.ow], pad, self)
            })
    }
}

/// A stride-1 correlation read without a column matrix. The image is copied `kw` times,
/// copy `j` shifted left by kernel column `j`'s offset and zero-padded, each as wide as
/// the output and as high as the padded image: `[kw][c][h + 2·ph][ow]`. Kernel row `i`'s
/// taps then read, for every output pixel `q = oh·ow + o`, the values `q + i·dh·ow` of
/// every (copy, channel) plane, planes a fixed stride apart: one `[kw·c × oh·ow]` matrix
/// inside the copies, which `gemm` reads in place. The convolution is `kh` products
/// instead of one, from `kw` copies of the image instead of `kh·kw` (the column matrix's),
/// with nothing computed twice and no padding computed at all.
#[derive(Clone, Copy, Debug)]
struct Spread {
    /// Channels, height and width of the image read.
    c: usize,
    h: usize,
    w: usize,
    pad: [usize; 2],
    kh: usize,
    kw: usize,
    dilation: [usize; 2],
    /// Output height and width.
    oh: usize,
    ow: usize,
}

impl Spread {
    fn new(c: usize, [h, w]: [usize; 2], pad: [usize; 2], g: &Geometry) -> Spread {
        let [dh, dw] = g.dilation;
        Spread {
            c,
            h,
            w,
            pad,
            kh: g.kh,
            kw: g.kw,
            dilation: g.dilation,
            oh: h + 2 * pad[0] - (g.kh - 1) * dh,
            ow: w + 2 * pad[1] - (g.kw - 1) * dw,
        }
    }

    /// Values in one (copy, channel) plane.
    fn plane(&self) -> usize {
        (self.h + 2 * self.pad[0]) * self.ow
    }

    /// Rows of each product: one per (copy, channel).
    fn depth(&self) -> usize {
        self.kw * self.c
    }

    fn len(&self) -> usize {
        self.depth() * self.plane()
    }

    /// `out[j][c][r][o] = image[c][r − ph][o + j·dw − pw]`, 0 outside the image.
    fn spread(&self, image: &[f32], out: &mut [f32]) {
        let (h, w, ow, plane) = (self.h, self.w, self.ow, self.plane());
        let [ph, pw] = self.pad;
        assert_eq!(image.len(), self.c * h * w);
        assert_eq!(out.len(), self.len());
        for (j, copy) in out.chunks_exact_mut(self.c * plane).enumerate() {
            // Input column of output column o: o + shift.
            let shift = (j * self.dilation[1]) as isize - pw as isize;
            let lo = (-shift).clamp(0, ow as isize) as usize;
            let hi = (w as isize - shift).clamp(lo as isize, ow as isize) as usize;
            for (plane, image) in copy.chunks_exact_mut(plane).zip(image.chunks_exact(h * w)) {
                let (top, rest) = plane.split_at_mut(ph * ow);
                let (inside, bottom) = rest.split_at_mut(h * ow);
                top.fill(0.0);
                bottom.fill(0.0);
                if ow == w && lo < hi && h > 0 {
                    // Rows as wide as the image's: one shifted copy of the whole plane,
                    // then the columns that read a neighbouring row become padding.
                    let (from, len) = ((lo as isize + shift) as usize, (h - 1) * ow + hi - lo);
                    inside[lo..lo + len].copy_from_slice(&image[from..from + len]);
                    zero_columns(inside, ow, lo, hi);
                    continue;
                }
                for (row, from) in inside.chunks_exact_mut(ow).zip(image.chunks_exact(w)) {
                    row[..lo].fill(0.0);
                    row[hi..].fill(0.0);
                    let first = (lo as isize + shift) as usize;
                    row[lo..hi].copy_from_slice(&from[first..first + (hi - lo)]);
                }
            }
        }
    }

    /// Kernel row `i`'s operand: `[kw·c × oh·ow]` inside the copies.
    fn operand<'a>(&self, spread: &'a [f32], i: usize) -> Mat<'a> {
        let first = i * self.dilation[0] * self.ow;
        Mat::strided(
            &spread[first..],
            self.depth(),
            self.oh * self.ow,
            self.plane(),
        )
    }

    /// `out = Σᵢ weights[i] · operand(i)`, `weights` as [`weights_by_row`] lays them out
    /// for `c_out` output channels.
    fn correlate(
        &self,
        spread: &[f32],
        weights: &[f32],
        c_out: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let size = c_out * self.depth();
        assert_eq!(weights.len(), self.kh * size);
        for (i, w_i) in weights.chunks_exact(size).enumerate() {
            let (w_i, b) = (Mat::rows(w_i, c_out, self.depth()), self.operand(spread, i));
            if i == 0 {
                write(out, w_i, b, false);
            } else {
                // SAFETY: the first product wrote every value.
                add(unsafe { assume_init(out) }, w_i, b, false);
            }
        }
    }

    /// [`correlate`](Spread::correlate) for every image of a batch, each spread in this
    /// thread's scratch buffer: `out` holds `c_out · oh · ow` values an image, all written.
    fn correlate_batch(
        &self,
        images: &[f32],
        weights: &[f32],
        c_out: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        out.par_chunks_mut(c_out * self.oh * self.ow)
            .zip(images.par_chunks(self.c * self.h * self.w))
            .for_each(|(out, image)| {
                scratch(self.len(), |spread| {
                    self.spread(image, spread);
                    self.correlate(spread, weights, c_out, out);
                })
            });
    }
}

/// A filter bank `w[co][c][i][j]` as [`Spread::correlate`] multiplies it: `kh` row-major
/// matrices `[co × (j, c)]`. `flipped`, for the input gradient: `[c × (j, co)]` holding
/// `w[co][c][kh−1−i][kw−1−j]`.
fn weights_by_row(w: &[f32], g: &Geometry, flipped: bool) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    let (rows, inner) = if flipped {
        (g.c_in, g.c_out)
    } else {
        (g.c_out, g.c_in)
    };
    let mut out = vec![0f32; w.len()];
    for (co, filter) in w.chunks_exact(g.c_in * kh * kw).enumerate() {
        for (c, taps) in filter.chunks_exact(kh * kw).enumerate() {
            for (t, v) in taps.iter().enumerate() {
                let (i, j) = (t / kw, t % kw);
                let (row, e, i, j) = if flipped {
                    (c, co, kh - 1 - i, kw - 1 - j)
                } else {
                    (co, c, i, j)
                };
                out[((i * rows + row) * kw + j) * inner + e] = *v;
            }
        }
    }
    out
}

/// `y[n] = W · im2col(x[n])`, or through [`Spread`] where it applies.
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

/// `x'[n] = col2im(Wᵀ · y'[n])`, or through [`Spread`] where it applies: a stride-1
/// convolution's input gradient is the output gradient, padded, correlated with the
/// kernel flipped and its channels swapped.
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
    /// and with enough for stride 1 to go through [`Spread`], forward and backward.
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

    /// The eight-at-a-time copy takes every other value, for rows shorter and longer than
    /// eight (the convolution test's images are too small to reach its vector part).
    #[test]
    fn every_other_takes_the_even_positions() {
        for n in 1..40 {
            let src: Vec<f32> = (0..2 * n - 1).map(|i| i as f32).collect();
            let mut out = vec![-1.0; n];
            every_other(&mut out, &src);
            let expected: Vec<f32> = src.iter().step_by(2).copied().collect();
            assert_eq!(out, expected, "{n} values");
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
