//! One LSTM direction over the whole sequence as one CPU operation (`flex`), with its
//! backward through time written by hand, as PyTorch's and cuDNN's LSTMs are.
//!
//! Gate by gate on burn's tensors the LSTM ran at 0.43x PyTorch (docs/BENCHMARKS.md): per
//! step and gate a `[batch, inputs + hidden] × [inputs + hidden, hidden]` product too small
//! for two cores, a dozen element-wise kernels and as many autodiff nodes. Here:
//!
//! - the input side of every step, `x · W`, is one product over all steps (both cores);
//! - the recurrence runs on each core for its own share of the batch (the rows of a batch
//!   never meet), one `h · U` product and one pass of pointwise math per step;
//! - the backward pass walks the steps back once per share and leaves the weight gradients
//!   to three products over all steps: `dW = xᵀ · dG`, `dU = h₋₁ᵀ · dG`, `dx = dG · Wᵀ`.
//!
//! The gates are Keras' (input, forget, output, candidate; one bias each), laid side by side
//! as `[inputs, 4 · hidden]`; σ and tanh are [`super::activation`]' own, so the numbers are the
//! gate-by-gate path's up to the order of the sums. Each share of the batch runs in a fixed
//! order, so a machine gets the same bits on every run.

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

/// Batch rows a share of the recurrence runs ([`Dims::share`]).
pub const SHARE_ROWS: usize = 32;

use super::activation::{map_any, Act};
use super::flex::{cast, tensor, values};
use super::matmul::{add_rows, new_product, Mat, Packing};
use super::wide::wide;

type Train = Autodiff<Flex>;

/// Whether [`sequence`] runs on `B` (the CPU backend, training or not).
pub fn fused_on<B: Backend>() -> bool {
    let b = TypeId::of::<B>();
    b == TypeId::of::<Train>() || b == TypeId::of::<Flex>()
}

/// The hidden state of every step, `[batch, steps, hidden]`, of one LSTM direction over
/// `x`, `[batch, steps, inputs]`, starting from zero state. `w` is `[inputs, 4 · hidden]`,
/// `u` `[hidden, 4 · hidden]`, `b` `[1, 4 · hidden]`, gates in the order input, forget,
/// output, candidate. `reverse` reads the steps last to first (the state for step t still
/// lands at t). Only for the backends [`fused_on`] accepts.
pub fn sequence<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    u: Tensor<B, 2>,
    b: Tensor<B, 2>,
    reverse: bool,
) -> Tensor<B, 3> {
    assert!(
        [x.dtype(), w.dtype(), u.dtype(), b.dtype()] == [DType::F32; 4],
        "the fused LSTM takes f32 tensors"
    );
    let all: Box<dyn Any> = Box::new((x, w, u, b));
    let all = match all.downcast::<(
        Tensor<Train, 3>,
        Tensor<Train, 2>,
        Tensor<Train, 2>,
        Tensor<Train, 2>,
    )>() {
        Ok(t) => return cast(tracked(t.0, t.1, t.2, t.3, reverse)),
        Err(all) => all,
    };
    let (x, w, u, b) = *all
        .downcast::<(
            Tensor<Flex, 3>,
            Tensor<Flex, 2>,
            Tensor<Flex, 2>,
            Tensor<Flex, 2>,
        )>()
        .expect("fused_on accepts Flex and Autodiff<Flex> only");
    let (h, _, _) = forward(
        &x.into_primitive().tensor(),
        &w.into_primitive().tensor(),
        &u.into_primitive().tensor(),
        &b.into_primitive().tensor(),
        reverse,
    );
    cast(Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(h)))
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    steps: usize,
    inputs: usize,
    hidden: usize,
}

impl Dims {
    fn of(x: &FlexTensor, u: &FlexTensor) -> Dims {
        let (xs, us) = (x.layout().shape(), u.layout().shape());
        let d = Dims {
            batch: xs[0],
            steps: xs[1],
            inputs: xs[2],
            hidden: us[0],
        };
        assert_eq!(us[1], 4 * d.hidden, "u is [hidden, 4 · hidden]");
        d
    }

    fn rows(&self) -> usize {
        self.batch * self.steps
    }

    fn gates(&self) -> usize {
        4 * self.hidden
    }

    /// Batch rows per share; each share runs its own recurrence, the shares side by side.
    /// A fixed number, not one share per core: a step's product over fewer rows can round
    /// differently, and the weights must not depend on the thread count.
    fn share(&self) -> usize {
        SHARE_ROWS.min(self.batch).max(1)
    }

    /// The step read `k`-th, and the one read before it.
    fn step(&self, k: usize, reverse: bool) -> (usize, Option<usize>) {
        if reverse {
            let t = self.steps - 1 - k;
            (t, (k > 0).then_some(t + 1))
        } else {
            (k, k.checked_sub(1))
        }
    }
}

/// What the forward keeps for the backward, all `[batch, steps, …]` row-major.
#[derive(Clone, Debug)]
struct Saved {
    /// σ(input), σ(forget), σ(output), tanh(candidate) side by side: `4 · hidden` a row.
    gates: Vec<f32>,
    /// The cell state.
    c: Vec<f32>,
    /// tanh of the cell state.
    tc: Vec<f32>,
}

/// A row's four gates: input, forget, output, candidate.
fn quarters(g: &[f32]) -> [&[f32]; 4] {
    let q = g.len() / 4;
    [&g[..q], &g[q..2 * q], &g[2 * q..3 * q], &g[3 * q..]]
}

fn quarters_mut(g: &mut [f32]) -> [&mut [f32]; 4] {
    let q = g.len() / 4;
    let (a, rest) = g.split_at_mut(q);
    let (b, rest) = rest.split_at_mut(q);
    let (c, d) = rest.split_at_mut(q);
    [a, b, c, d]
}

/// Row `read` of `v` to read and row `write` to write (`read` ≠ `write`), `len` wide.
fn two_rows(v: &mut [f32], len: usize, read: usize, write: usize) -> (&[f32], &mut [f32]) {
    assert_ne!(read, write);
    if read < write {
        let (a, b) = v.split_at_mut(write * len);
        (&a[read * len..][..len], &mut b[..len])
    } else {
        let (a, b) = v.split_at_mut(read * len);
        (&b[..len], &mut a[write * len..][..len])
    }
}

/// The hidden states `[batch, steps, hidden]`, what the backward needs, and the sizes.
fn forward(
    x: &FlexTensor,
    w: &FlexTensor,
    u: &FlexTensor,
    b: &FlexTensor,
    reverse: bool,
) -> (FlexTensor, Saved, Dims) {
    let d = Dims::of(x, u);
    let (x, w, u, b) = (values(x), values(w), values(u), values(b));
    let (g4, hid, t_len) = (d.gates(), d.hidden, d.steps);
    // The input side of every step at once: x · W (+ h₋₁ · U + b, step by step below).
    let mut gates = new_product(
        Mat::rows(&x, d.rows(), d.inputs),
        Mat::rows(&w, d.inputs, g4),
        true,
        Packing::Gemms,
    );
    let mut c = vec![0f32; d.rows() * hid];
    let mut tc = vec![0f32; d.rows() * hid];
    let mut h = vec![0f32; d.rows() * hid];
    let share = d.share();
    let u = Mat::rows(&u, hid, g4);
    gates
        .par_chunks_mut(share * t_len * g4)
        .zip(c.par_chunks_mut(share * t_len * hid))
        .zip(tc.par_chunks_mut(share * t_len * hid))
        .zip(h.par_chunks_mut(share * t_len * hid))
        .for_each(|(((gates, c), tc), h)| {
            let share = ShareForward {
                gates,
                c,
                tc,
                h,
                u,
                b: &b,
                d,
                reverse,
            };
            forward_share(share)
        });
    let h = tensor(h, [d.batch, d.steps, d.hidden]);
    (h, Saved { gates, c, tc }, d)
}

/// One share of the batch in the forward pass: its rows of every `[batch, steps, …]`
/// array, one after another (row j, step t is j·T + t).
struct ShareForward<'a> {
    gates: &'a mut [f32],
    c: &'a mut [f32],
    tc: &'a mut [f32],
    h: &'a mut [f32],
    u: Mat<'a>,
    b: &'a [f32],
    d: Dims,
    reverse: bool,
}

wide! {
    fn forward_share(share: ShareForward<'_>) {
        let ShareForward {
            gates,
            c,
            tc,
            h,
            u,
            b,
            d,
            reverse,
        } = share;
        let (g4, hid, t_len) = (d.gates(), d.hidden, d.steps);
        let n = h.len() / (t_len * hid);
        let zeros = vec![0f32; hid];
        for k in 0..t_len {
            let (t, prev) = d.step(k, reverse);
            if let Some(p) = prev {
                let h_prev = Mat::strided(&h[p * hid..], n, hid, t_len * hid);
                add_rows(
                    &mut gates[t * g4..],
                    t_len * g4,
                    h_prev,
                    u,
                    false,
                    Packing::Never,
                );
            }
            for j in 0..n {
                let row = j * t_len + t;
                let g = &mut gates[row * g4..][..g4];
                for (g, b) in g.iter_mut().zip(&b[..g4]) {
                    *g += b;
                }
                map_any(&mut g[..3 * hid], Act::Sigmoid);
                map_any(&mut g[3 * hid..], Act::Tanh);
                let [i, f, o, cand] = quarters(g).map(|v| &v[..hid]);
                // Before the first step read the cell state is zero.
                let (c_prev, c_t) = match prev {
                    Some(p) => two_rows(c, hid, j * t_len + p, row),
                    None => (&zeros[..], &mut c[row * hid..][..hid]),
                };
                let c_prev = &c_prev[..hid];
                for q in 0..hid {
                    c_t[q] = f[q] * c_prev[q] + i[q] * cand[q];
                }
                let tc_t = &mut tc[row * hid..][..hid];
                tc_t.copy_from_slice(c_t);
                map_any(tc_t, Act::Tanh);
                let h_t = &mut h[row * hid..][..hid];
                for q in 0..hid {
                    h_t[q] = o[q] * tc_t[q];
                }
            }
        }
    }
}

/// The gradient of the gates' pre-activations, `[batch, steps, 4 · hidden]`, from the
/// gradient `dh` of every hidden state: back through the steps, each share on its core.
fn gate_gradients(dh: &[f32], u: &[f32], s: &Saved, d: Dims, reverse: bool) -> Vec<f32> {
    let (g4, hid, t_len) = (d.gates(), d.hidden, d.steps);
    let mut dg = vec![0f32; d.rows() * g4];
    let share = d.share();
    // Uᵀ stored row-major, so the step products need not pack it.
    let mut u_t = vec![0f32; g4 * hid];
    for (r, row) in u.chunks_exact(g4).enumerate() {
        for (c, v) in row.iter().enumerate() {
            u_t[c * hid + r] = *v;
        }
    }
    let u_t = Mat::rows(&u_t, g4, hid);
    dg.par_chunks_mut(share * t_len * g4)
        .enumerate()
        .for_each(|(chunk, dg)| {
            let share = ShareBackward {
                dg,
                base: chunk * share * t_len,
                dh,
                s,
                u_t,
                d,
                reverse,
            };
            backward_share(share)
        });
    dg
}

/// One share of the batch in the backward pass; `base` is its first row.
struct ShareBackward<'a> {
    dg: &'a mut [f32],
    base: usize,
    dh: &'a [f32],
    s: &'a Saved,
    u_t: Mat<'a>,
    d: Dims,
    reverse: bool,
}

wide! {
    fn backward_share(share: ShareBackward<'_>) {
        let ShareBackward {
            dg,
            base,
            dh,
            s,
            u_t,
            d,
            reverse,
        } = share;
        let (g4, hid, t_len) = (d.gates(), d.hidden, d.steps);
        let n = dg.len() / (t_len * g4);
        let zeros = vec![0f32; hid];
        // What reaches h and c of the step read before from the step after.
        let mut dh_next = vec![0f32; n * hid];
        let mut dc_next = vec![0f32; n * hid];
        for k in (0..t_len).rev() {
            let (t, prev) = d.step(k, reverse);
            for j in 0..n {
                let row = j * t_len + t;
                let at = base + row;
                let [i, f, o, cand] = quarters(&s.gates[at * g4..][..g4]);
                let c_prev = match prev {
                    Some(p) => &s.c[(base + j * t_len + p) * hid..][..hid],
                    None => &zeros[..hid],
                };
                let [di, df, d_o, dcand] = quarters_mut(&mut dg[row * g4..][..g4]);
                cell_backward(
                    &dh[at * hid..][..hid],
                    &dh_next[j * hid..][..hid],
                    &mut dc_next[j * hid..][..hid],
                    (i, f, o, cand),
                    &s.tc[at * hid..][..hid],
                    c_prev,
                    (di, df, d_o, dcand),
                );
            }
            if prev.is_some() {
                // dh₋₁ = dG · Uᵀ
                dh_next.fill(0.0);
                let dg_t = Mat::strided(&dg[t * g4..], n, g4, t_len * g4);
                add_rows(&mut dh_next, hid, dg_t, u_t, false, Packing::Never);
            }
        }
    }
}

/// One row of one step back: the gates' gradients `d…` from the hidden state's (`dh` from
/// the output plus `dh_next` from the step after) and the cell state's (`dc`, from the
/// step after, replaced by what goes to the step before).
///
/// A function of its own, each slice an argument: `&mut` arguments tell the compiler that
/// nothing overlaps, which it needs to vectorize the loop.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn cell_backward(
    dh: &[f32],
    dh_next: &[f32],
    dc: &mut [f32],
    (i, f, o, cand): (&[f32], &[f32], &[f32], &[f32]),
    tc: &[f32],
    c_prev: &[f32],
    (di, df, d_o, dcand): (&mut [f32], &mut [f32], &mut [f32], &mut [f32]),
) {
    let n = dc.len();
    let (dh, dh_next, tc, c_prev) = (&dh[..n], &dh_next[..n], &tc[..n], &c_prev[..n]);
    let (i, f, o, cand) = (&i[..n], &f[..n], &o[..n], &cand[..n]);
    let (di, df, d_o, dcand) = (&mut di[..n], &mut df[..n], &mut d_o[..n], &mut dcand[..n]);
    for q in 0..n {
        let dht = dh[q] + dh_next[q];
        let dcq = dc[q] + dht * o[q] * (1.0 - tc[q] * tc[q]);
        di[q] = dcq * cand[q] * (i[q] * (1.0 - i[q]));
        df[q] = dcq * c_prev[q] * (f[q] * (1.0 - f[q]));
        d_o[q] = dht * tc[q] * (o[q] * (1.0 - o[q]));
        dcand[q] = dcq * i[q] * (1.0 - cand[q] * cand[q]);
        dc[q] = dcq * f[q];
    }
}

#[derive(Debug)]
struct LstmGrad;

/// What the backward needs: the forward's inputs, output and what it kept.
#[derive(Clone, Debug)]
struct State {
    x: FlexTensor,
    w: FlexTensor,
    u: FlexTensor,
    h: FlexTensor,
    saved: Saved,
    d: Dims,
    reverse: bool,
}

impl Backward<Flex, 4> for LstmGrad {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_u, node_b] = ops.parents;
        let dh = grads.consume::<Flex>(&ops.node);
        let State {
            x,
            w,
            u,
            h,
            saved,
            d,
            reverse,
        } = ops.state;
        let (g4, hid, rows) = (d.gates(), d.hidden, d.rows());
        let dg = gate_gradients(&values(&dh), &values(&u), &saved, d, reverse);
        drop(saved);
        let dg_m = Mat::rows(&dg, rows, g4);
        if let Some(node) = node_w {
            let x = values(&x);
            let dw = new_product(
                Mat::rows(&x, rows, d.inputs).t(),
                dg_m,
                true,
                Packing::Gemms,
            );
            grads.register::<Flex>(node.id, tensor(dw, [d.inputs, g4]));
        }
        if let Some(node) = node_u {
            // Each step's previous hidden state (zero before the first step read).
            let h = values(&h);
            let mut h_prev = vec![0f32; rows * hid];
            for k in 0..d.steps {
                if let (t, Some(p)) = d.step(k, reverse) {
                    for j in 0..d.batch {
                        let (to, from) = ((j * d.steps + t) * hid, (j * d.steps + p) * hid);
                        h_prev[to..to + hid].copy_from_slice(&h[from..from + hid]);
                    }
                }
            }
            let du = new_product(
                Mat::rows(&h_prev, rows, hid).t(),
                dg_m,
                true,
                Packing::Gemms,
            );
            grads.register::<Flex>(node.id, tensor(du, [hid, g4]));
        }
        if let Some(node) = node_b {
            let mut db = vec![0f32; g4];
            for row in dg.chunks_exact(g4) {
                for (s, g) in db.iter_mut().zip(row) {
                    *s += g;
                }
            }
            grads.register::<Flex>(node.id, tensor(db, [1, g4]));
        }
        if let Some(node) = node_x {
            let w = values(&w);
            let dx = new_product(dg_m, Mat::rows(&w, d.inputs, g4).t(), true, Packing::Gemms);
            grads.register::<Flex>(node.id, tensor(dx, [d.batch, d.steps, d.inputs]));
        }
    }
}

fn tracked(
    x: Tensor<Train, 3>,
    w: Tensor<Train, 2>,
    u: Tensor<Train, 2>,
    b: Tensor<Train, 2>,
    reverse: bool,
) -> Tensor<Train, 3> {
    let [x, w, u, b] = [
        x.into_primitive().tensor(),
        w.into_primitive().tensor(),
        u.into_primitive().tensor(),
        b.into_primitive().tensor(),
    ];
    let (h, saved, d) = forward(
        &x.primitive,
        &w.primitive,
        &u.primitive,
        &b.primitive,
        reverse,
    );
    let y = match LstmGrad
        .prepare::<NoCheckpointing>([
            x.node.clone(),
            w.node.clone(),
            u.node.clone(),
            b.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = State {
                x: x.primitive,
                w: w.primitive,
                u: u.primitive,
                h: h.clone(),
                saved,
                d,
                reverse,
            };
            prep.finish(state, h)
        }
        OpsKind::UnTracked(prep) => prep.finish(h),
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}
