//! Stride-1 convolutions without a column matrix: the image spread `kw` times and read in
//! place by one product per kernel row.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::matmul::{add, write, Mat};
use super::columns::zero_columns;
use super::{assume_init, scratch, Geometry};

/// The fewest values a spread image's product reads per output value (`kw · c`) for a
/// stride-1 convolution to go through [`Spread`]. Shallow products are slow: one core,
/// 16 × k by k × 1024 (`cargo bench --bench products -- 16 k 1024`, one run each), ran
/// at 60 GFLOP/s for k = 9 (an RGB stem's spread), 73 for 24, 88 for 48 and 96 for 144;
/// the stem keeps its column matrix (k = 27: 84).
const SPREAD_MIN_DEPTH: usize = 24;

impl Geometry {
    /// The forward (and weight gradient) of a stride-1 convolution as `kh` products of
    /// the spread input, where that pays.
    pub(super) fn spread_forward(&self) -> Option<Spread> {
        (self.stride == [1, 1] && !self.pointwise() && self.c_in * self.kw >= SPREAD_MIN_DEPTH)
            .then(|| Spread::new(self.c_in, [self.h, self.w], self.pad, self))
    }

    /// The input gradient of a stride-1 convolution: the output gradient padded by the
    /// kernel's span less the forward's padding (so not for a padding wider than that).
    pub(super) fn spread_backward(&self) -> Option<Spread> {
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
pub(super) struct Spread {
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
    pub(super) fn new(c: usize, [h, w]: [usize; 2], pad: [usize; 2], g: &Geometry) -> Spread {
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
    pub(super) fn depth(&self) -> usize {
        self.kw * self.c
    }

    pub(super) fn len(&self) -> usize {
        self.depth() * self.plane()
    }

    /// `out[j][c][r][o] = image[c][r − ph][o + j·dw − pw]`, 0 outside the image.
    pub(super) fn spread(&self, image: &[f32], out: &mut [f32]) {
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
    pub(super) fn operand<'a>(&self, spread: &'a [f32], i: usize) -> Mat<'a> {
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
    pub(super) fn correlate(
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
    pub(super) fn correlate_batch(
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
pub(super) fn weights_by_row(w: &[f32], g: &Geometry, flipped: bool) -> Vec<f32> {
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
