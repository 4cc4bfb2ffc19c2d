//! The column matrix: `im2col`, the image as the products of a convolution read it (one
//! row per kernel weight of an output channel, one column per output pixel), and its
//! adjoint `col2im`, which the input gradient adds back onto the image.

use super::super::wide::wide;
use super::Geometry;

impl Geometry {
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
pub(super) fn im2col(g: &Geometry, x: &[f32], cols: &mut [f32]) {
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
pub(super) fn zero_columns(rows: &mut [f32], width: usize, lo: usize, hi: usize) {
    for column in (0..lo).chain(hi..width) {
        for v in rows[column..].iter_mut().step_by(width) {
            *v = 0.0;
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it was read from.
/// Overwrites the entries of `cols` that stand for padding.
pub(super) fn col2im(g: &Geometry, cols: &mut [f32], x: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
