//! Recurrent networks reading the image as a sequence: 32 rows (or columns), each a 96-d
//! vector (32 pixels × 3 channels). Simple RNN, LSTM or GRU; stacked; optionally
//! bidirectional. The classifier reads the last step of each direction.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::stage::FieldError;
use crate::train::cpu::activation::{sigmoid, tanh};
use crate::train::cpu::lstm;
use crate::train::cpu::matmul::{dense, matmul};
use crate::train::hparams::check_dropout;
use crate::train::layers::Build;

use super::{Size, CLASSES};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cell {
    /// Elman RNN with tanh (Keras' SimpleRNN).
    Simple,
    #[default]
    Lstm,
    Gru,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Read {
    /// One step per image row, top to bottom.
    #[default]
    Rows,
    /// One step per column, left to right.
    Columns,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecurrentConfig {
    #[serde(default)]
    pub cell: Cell,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default = "one")]
    pub layers: usize,
    #[serde(default)]
    pub bidirectional: bool,
    #[serde(default)]
    pub read: Read,
    /// Before the classifier.
    #[serde(default)]
    pub dropout: f64,
}

fn default_hidden() -> usize {
    128
}
fn one() -> usize {
    1
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        RecurrentConfig {
            cell: Cell::Lstm,
            hidden: default_hidden(),
            layers: 1,
            bidirectional: false,
            read: Read::Rows,
            dropout: 0.0,
        }
    }
}

impl Cell {
    /// Gates in the order [`Direction::forward`] reads them: LSTM input, forget, output,
    /// candidate; GRU update, reset, candidate; simple RNN the state itself.
    fn gates(self) -> usize {
        match self {
            Cell::Simple => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One gate: `x·weight + h·recurrent_weight + bias`. Keeping gates apart, instead of Keras'
/// fused `[inputs, 4·hidden]` kernel, is for burn's autodiff: the gradient of a column
/// slice is a zero tensor of the whole width with the slice written in, once per slice and
/// step, which made a fused LSTM slower than burn's own.
#[derive(Module, Debug)]
pub struct Gate<B: Backend> {
    /// `[inputs, hidden]`: the names `weight` and `bias` are what the weight penalty and
    /// the bias initializer look for.
    weight: Param<Tensor<B, 2>>,
    /// `[hidden, hidden]`; penalized like `weight`.
    recurrent_weight: Param<Tensor<B, 2>>,
    /// `[1, hidden]`; `[2, hidden]` for a GRU's candidate, whose second row is the bias of
    /// the recurrent product the reset gate scales (Keras' `reset_after`). Elsewhere a
    /// second bias would only ever be added to the first.
    bias: Param<Tensor<B, 2>>,
}

impl<B: Backend> Gate<B> {
    fn new(
        inputs: usize,
        hidden: usize,
        bias_rows: usize,
        init: &Initializer,
        device: &B::Device,
    ) -> Self {
        Gate {
            weight: init.init_with([inputs, hidden], Some(inputs), Some(hidden), device),
            recurrent_weight: init.init_with([hidden, hidden], Some(hidden), Some(hidden), device),
            bias: Param::from_tensor(Tensor::zeros([bias_rows, hidden], device)),
        }
    }

    /// `[inputs + hidden, hidden]`, so a step is one product of `[x, h]`.
    fn stacked(&self) -> Tensor<B, 2> {
        Tensor::cat(vec![self.weight.val(), self.recurrent_weight.val()], 0)
    }

    fn input_bias(&self) -> Tensor<B, 2> {
        let hidden = self.bias.dims()[1];
        self.bias.val().slice([0..1, 0..hidden])
    }
}

/// One direction of one recurrent layer: the cell's gates, run over the steps. On the CPU
/// an LSTM runs as one operation over the whole sequence ([`lstm::sequence`]); other cells
/// and backends step gate by gate.
#[derive(Module, Debug)]
pub struct Direction<B: Backend> {
    gates: Vec<Gate<B>>,
}

impl<B: Backend> Direction<B> {
    fn new(
        cell: Cell,
        inputs: usize,
        hidden: usize,
        init: &Initializer,
        device: &B::Device,
    ) -> Self {
        let gates = (0..cell.gates())
            .map(|g| {
                let candidate_of_gru = cell == Cell::Gru && g == 2;
                Gate::new(
                    inputs,
                    hidden,
                    if candidate_of_gru { 2 } else { 1 },
                    init,
                    device,
                )
            })
            .collect();
        Direction { gates }
    }

    /// The gates side by side, as [`lstm::sequence`] takes them: `[inputs, 4 · hidden]`,
    /// `[hidden, 4 · hidden]` and `[1, 4 · hidden]`.
    fn side_by_side(&self) -> [Tensor<B, 2>; 3] {
        let all = |part: fn(&Gate<B>) -> Tensor<B, 2>| {
            Tensor::cat(self.gates.iter().map(part).collect(), 1)
        };
        [
            all(|g| g.weight.val()),
            all(|g| g.recurrent_weight.val()),
            all(Gate::input_bias),
        ]
    }

    /// `steps`: each step's `[batch, inputs]`. Returns each step's hidden state in time
    /// order (a reversed direction reads the steps last to first; its state for step t is
    /// still at t). The zero initial state is not multiplied: the first step reads `x` only.
    fn forward(&self, cell: Cell, steps: &[Tensor<B, 2>], reverse: bool) -> Vec<Tensor<B, 2>> {
        let stacked: Vec<Tensor<B, 2>> = self.gates.iter().map(Gate::stacked).collect();
        let mut out: Vec<Tensor<B, 2>> = Vec::with_capacity(steps.len());
        let mut h: Option<Tensor<B, 2>> = None;
        let mut c: Option<Tensor<B, 2>> = None;
        let order: Box<dyn Iterator<Item = &Tensor<B, 2>>> = if reverse {
            Box::new(steps.iter().rev())
        } else {
            Box::new(steps.iter())
        };
        for x in order {
            let xh = h
                .as_ref()
                .map(|h| Tensor::cat(vec![x.clone(), h.clone()], 1));
            // x·W + h·U + b of gate g.
            let pre = |g: usize| {
                let gate = &self.gates[g];
                let product = match &xh {
                    Some(xh) => matmul(xh.clone(), stacked[g].clone()),
                    None => matmul(x.clone(), gate.weight.val()),
                };
                product + gate.input_bias()
            };
            let next = match cell {
                Cell::Simple => tanh(pre(0)),
                Cell::Lstm => {
                    let (input, forget, output) =
                        (sigmoid(pre(0)), sigmoid(pre(1)), sigmoid(pre(2)));
                    let written = input * tanh(pre(3));
                    let state = match c.take() {
                        Some(c) => forget * c + written,
                        None => written,
                    };
                    let next = output * tanh(state.clone());
                    c = Some(state);
                    next
                }
                Cell::Gru => {
                    let (update, reset) = (sigmoid(pre(0)), sigmoid(pre(1)));
                    let gate = &self.gates[2];
                    let hidden = gate.bias.dims()[1];
                    let recurrent_bias = gate.bias.val().slice([1..2, 0..hidden]);
                    let recurrent = match &h {
                        Some(h) => matmul(h.clone(), gate.recurrent_weight.val()) + recurrent_bias,
                        None => recurrent_bias,
                    };
                    let candidate = tanh(
                        matmul(x.clone(), gate.weight.val())
                            + gate.input_bias()
                            + reset * recurrent,
                    );
                    let kept = update.clone().neg().add_scalar(1.0) * candidate;
                    match h.take() {
                        Some(h) => update * h + kept,
                        None => kept,
                    }
                }
            };
            out.push(next.clone());
            h = Some(next);
        }
        if reverse {
            out.reverse();
        }
        out
    }
}

/// One recurrent layer over per-step `[batch, features]` tensors → per-step `[batch, out]`
/// (`out` = hidden, or 2 × hidden bidirectional: forward state, then backward). Steps stay
/// separate tensors between layers: slicing one `[batch, steps, …]` tensor per step would,
/// again, cost a whole-size zero gradient per slice.
#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    forward: Direction<B>,
    backward: Option<Direction<B>>,
    cell: Cell,
}

impl<B: Backend> Layer<B> {
    /// An LSTM layer on the CPU: `[batch, steps, features]` → `[batch, steps, out]`.
    fn forward_fused(&self, seq: Tensor<B, 3>) -> Tensor<B, 3> {
        let run = |d: &Direction<B>, reverse: bool| {
            let [w, u, b] = d.side_by_side();
            lstm::sequence(seq.clone(), w, u, b, reverse)
        };
        let fwd = run(&self.forward, false);
        match &self.backward {
            Some(b) => Tensor::cat(vec![fwd, run(b, true)], 2),
            None => fwd,
        }
    }

    fn forward(&self, steps: &[Tensor<B, 2>]) -> Vec<Tensor<B, 2>> {
        let fwd = self.forward.forward(self.cell, steps, false);
        match &self.backward {
            Some(b) => fwd
                .into_iter()
                .zip(b.forward(self.cell, steps, true))
                .map(|(f, b)| Tensor::cat(vec![f, b], 1))
                .collect(),
            None => fwd,
        }
    }
}

#[derive(Module, Debug)]
pub struct Recurrent<B: Backend> {
    layers: Vec<Layer<B>>,
    dropout: Dropout,
    head: Linear<B>,
    read: Read,
    hidden: usize,
    bidirectional: bool,
}

impl RecurrentConfig {
    pub fn size(&self) -> Size {
        let gates = match self.cell {
            Cell::Simple => 1.0,
            Cell::Gru => 3.0,
            Cell::Lstm => 4.0,
        };
        let (h, dirs) = (
            self.hidden as f64,
            if self.bidirectional { 2.0 } else { 1.0 },
        );
        let mut s = Size::default();
        for i in 0..self.layers {
            let d_in = if i == 0 { 96.0 } else { dirs * h };
            s.params += dirs * gates * (d_in * h + h * h + h);
            // Every step keeps its gates and states for the backward pass: 32 steps.
            s.activations += dirs * 32.0 * (gates + 2.0) * h;
        }
        s.params += dirs * h * CLASSES as f64 + CLASSES as f64;
        s
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.hidden == 0 || self.layers == 0 {
            return Err(FieldError::new(
                "model.hidden",
                "hidden size and layers must be at least 1",
            ));
        }
        check_dropout("model.dropout", self.dropout)
    }

    pub fn init<B: Backend>(&self, build: &Build, device: &B::Device) -> Recurrent<B> {
        let init = build.kernel.clone();
        let (h, bi) = (self.hidden, self.bidirectional);
        let layers = (0..self.layers)
            .map(|i| {
                let d_in = if i == 0 {
                    96
                } else if bi {
                    2 * h
                } else {
                    h
                };
                let direction = || Direction::new(self.cell, d_in, h, &init, device);
                Layer {
                    forward: direction(),
                    backward: bi.then(direction),
                    cell: self.cell,
                }
            })
            .collect();
        Recurrent {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: build.linear(if bi { 2 * h } else { h }, CLASSES, device),
            read: self.read,
            hidden: h,
            bidirectional: bi,
        }
    }
}

/// `[batch, channel, row, col]` → `[batch, step, channel · pixel]`, a step per row (or
/// column). On the CPU backend, for images (no gradient to carry), the copy is made here a
/// row at a time: `flex` makes the permuted tensor contiguous through a per-element strided
/// iterator, 5.7% of an LSTM's training time (`perf`, docs/BENCHMARKS.md).
fn steps_of<B: Backend>(x: Tensor<B, 4>, read: Read) -> Tensor<B, 3> {
    let [n, c, rows, cols] = x.dims();
    let (steps, pixels) = match read {
        Read::Rows => (rows, cols),
        Read::Columns => (cols, rows),
    };
    if !(lstm::fused_on::<B>() && x.dtype() == DType::F32 && !x.is_require_grad()) {
        return match read {
            Read::Rows => x.swap_dims(1, 2),
            Read::Columns => x.permute([0, 3, 1, 2]),
        }
        .reshape([n, steps, c * pixels]);
    }
    let device = x.device();
    let data = x.into_data();
    let v = data.as_slice::<f32>().expect("checked to be f32");
    let at = |i: usize, ch: usize, row: usize| ((i * c + ch) * rows + row) * cols;
    let mut out = Vec::with_capacity(v.len());
    for i in 0..n {
        for step in 0..steps {
            for ch in 0..c {
                match read {
                    Read::Rows => out.extend_from_slice(&v[at(i, ch, step)..][..cols]),
                    Read::Columns => out.extend((0..rows).map(|row| v[at(i, ch, row) + step])),
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [n, steps, c * pixels]), &device)
}

impl<B: Backend> Recurrent<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, _, _, _] = x.dims();
        let seq = steps_of(x, self.read);
        let h = self.hidden;
        let features = if self.layers[0].cell == Cell::Lstm && lstm::fused_on::<B>() {
            let seq = self
                .layers
                .iter()
                .fold(seq, |seq, layer| layer.forward_fused(seq));
            let step = |t: usize, from: usize| {
                seq.clone()
                    .slice([0..batch, t..t + 1, from..from + h])
                    .reshape([batch, h])
            };
            let last = seq.dims()[1] - 1;
            if self.bidirectional {
                // Forward direction ends at the last step, backward at the first.
                Tensor::cat(vec![step(last, 0), step(0, h)], 1)
            } else {
                step(last, 0)
            }
        } else {
            let mut steps: Vec<Tensor<B, 2>> =
                seq.iter_dim(1).map(|s| s.reshape([batch, 96])).collect();
            for layer in &self.layers {
                steps = layer.forward(&steps);
            }
            let last = steps.len() - 1;
            if self.bidirectional {
                let fwd = steps[last].clone().slice([0..batch, 0..h]);
                let bwd = steps[0].clone().slice([0..batch, h..2 * h]);
                Tensor::cat(vec![fwd, bwd], 1)
            } else {
                steps.swap_remove(last)
            }
        };
        dense(&self.head, self.dropout.forward(features))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::cpu::CpuBackend as B;
    use burn::nn::gru::GruConfig;
    use burn::nn::lstm::LstmConfig;
    use burn::nn::{GateController, RnnConfig};
    use burn::tensor::{Distribution, ElementConversion};

    const BATCH: usize = 3;
    const STEPS: usize = 5;
    const INPUTS: usize = 4;
    const HIDDEN: usize = 6;

    /// Loads one of our gates into burn's: the input side carries our bias, the recurrent
    /// side `recurrent_bias` (zero except a GRU candidate's).
    fn load(theirs: &mut GateController<B>, ours: &Gate<B>, recurrent_bias: Tensor<B, 1>) {
        theirs.input_transform.weight = Param::from_tensor(ours.weight.val());
        theirs.input_transform.bias = Some(Param::from_tensor(ours.input_bias().reshape([HIDDEN])));
        theirs.hidden_transform.weight = Param::from_tensor(ours.recurrent_weight.val());
        theirs.hidden_transform.bias = Some(Param::from_tensor(recurrent_bias));
    }

    /// Our cell with random weights and biases (the biases are zeros at init).
    fn random<Bk: Backend>(cell: Cell, device: &Bk::Device) -> Direction<Bk> {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.5,
        };
        let mut d = Direction::<Bk>::new(cell, INPUTS, HIDDEN, &init, device);
        for g in &mut d.gates {
            let shape = g.bias.dims();
            g.bias = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.5),
                device,
            ));
        }
        d
    }

    fn compare(
        cell: Cell,
        ours: &Direction<B>,
        reverse: bool,
        theirs: Tensor<B, 3>,
        x: Tensor<B, 3>,
    ) {
        let steps: Vec<Tensor<B, 2>> = x.iter_dim(1).map(|s| s.reshape([BATCH, INPUTS])).collect();
        let ours = Tensor::stack::<3>(ours.forward(cell, &steps, reverse), 1);
        let diff: f32 = (ours - theirs).abs().max().into_scalar().elem();
        assert!(
            diff < 1e-5,
            "{cell:?} reverse={reverse}: states differ by {diff} from burn's"
        );
    }

    fn input(device: &burn::tensor::Device<B>) -> Tensor<B, 3> {
        Tensor::random(
            [BATCH, STEPS, INPUTS],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    /// The row-at-a-time copy gives burn's permuted tensor, reading rows or columns of a
    /// non-square image, on the inner and the autodiff backend; a tracked input keeps
    /// burn's operations (its gradient arrives).
    #[test]
    fn steps_are_burns_permutation() {
        use crate::train::cpu::CpuTrain as T;
        let device = Default::default();
        let x = Tensor::<B, 4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        for (read, theirs) in [
            (Read::Rows, x.clone().swap_dims(1, 2).reshape([2, 4, 15])),
            (
                Read::Columns,
                x.clone().permute([0, 3, 1, 2]).reshape([2, 5, 12]),
            ),
        ] {
            let theirs = theirs.into_data();
            assert_eq!(steps_of(x.clone(), read).into_data(), theirs, "{read:?}");
            let tracked = Tensor::<T, 4>::from_inner(x.clone());
            assert_eq!(
                steps_of(tracked.clone(), read).into_data(),
                theirs,
                "{read:?}"
            );
            let tracked = tracked.require_grad();
            let g = steps_of(tracked.clone(), read).sum().backward();
            assert!(tracked.grad(&g).is_some(), "{read:?}: gradient lost");
        }
    }

    /// On the CPU an LSTM direction runs as one operation (`lstm::sequence`): the same
    /// states, and the same gradients of the input and of every gate's weights and bias,
    /// as gate by gate, in both directions, for batches that split unevenly over the cores
    /// and one of a single image; and without autodiff (evaluation) the same states.
    #[test]
    fn fused_lstm_matches_gate_by_gate() {
        use crate::train::cpu::CpuTrain as T;
        use burn::module::AutodiffModule;
        let device = Default::default();
        for (batch, reverse) in [(5, false), (5, true), (1, false), (9, true)] {
            let d = random::<T>(Cell::Lstm, &device);
            let x = Tensor::<T, 3>::random(
                [batch, STEPS, INPUTS],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            // A loss that weighs every state of every step differently.
            let weights = Tensor::<T, 3>::random(
                [batch, STEPS, HIDDEN],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |fused: bool| {
                let x = x.clone().detach().require_grad();
                let states = if fused {
                    let [w, u, b] = d.side_by_side();
                    lstm::sequence(x.clone(), w, u, b, reverse)
                } else {
                    let steps: Vec<Tensor<T, 2>> = x
                        .clone()
                        .iter_dim(1)
                        .map(|s| s.reshape([batch, INPUTS]))
                        .collect();
                    Tensor::stack(d.forward(Cell::Lstm, &steps, reverse), 1)
                };
                let g = (states.clone() * weights.clone()).sum().backward();
                let mut grads = vec![x.grad(&g).expect("x is tracked").reshape([-1])];
                for gate in &d.gates {
                    for p in [&gate.weight, &gate.recurrent_weight, &gate.bias] {
                        grads.push(p.val().grad(&g).expect("tracked").reshape([-1]));
                    }
                }
                (states.inner(), grads)
            };
            let (fused, stepped) = (run(true), run(false));
            let what = format!("batch {batch}, reverse {reverse}");
            let diff: f32 = (fused.0.clone() - stepped.0)
                .abs()
                .max()
                .into_scalar()
                .elem();
            assert!(diff < 1e-5, "{what}: states differ by {diff}");
            let names = ["input"].into_iter().chain(
                ["input gate", "forget gate", "output gate", "candidate"]
                    .into_iter()
                    .flat_map(|g| [g; 3]),
            );
            for ((ours, theirs), name) in fused.1.into_iter().zip(stepped.1).zip(names) {
                let diff: f32 = (ours - theirs).abs().max().into_scalar().elem();
                assert!(diff < 1e-4, "{what}: {name} gradients differ by {diff}");
            }
            let valid = d.valid();
            let [w, u, b] = valid.side_by_side();
            let inference = lstm::sequence(x.inner(), w, u, b, reverse);
            let diff: f32 = (inference - fused.0).abs().max().into_scalar().elem();
            assert!(diff == 0.0, "{what}: inference states differ by {diff}");
        }
    }

    /// The gate-by-gate cells compute what burn's `Lstm`, `Gru` (reset after) and `Rnn`
    /// compute with the same weights, in both directions.
    #[test]
    fn cells_match_burns() {
        let device = Default::default();
        let zero = || Tensor::<B, 1>::zeros([HIDDEN], &device);
        for reverse in [false, true] {
            let d = random::<B>(Cell::Lstm, &device);
            let mut lstm = LstmConfig::new(INPUTS, HIDDEN, true)
                .with_reverse(reverse)
                .init::<B>(&device);
            load(&mut lstm.input_gate, &d.gates[0], zero());
            load(&mut lstm.forget_gate, &d.gates[1], zero());
            load(&mut lstm.output_gate, &d.gates[2], zero());
            load(&mut lstm.cell_gate, &d.gates[3], zero());
            let x = input(&device);
            compare(Cell::Lstm, &d, reverse, lstm.forward(x.clone(), None).0, x);

            let d = random::<B>(Cell::Simple, &device);
            let mut rnn = RnnConfig::new(INPUTS, HIDDEN, true)
                .with_reverse(reverse)
                .init::<B>(&device);
            load(&mut rnn.gate, &d.gates[0], zero());
            let x = input(&device);
            compare(Cell::Simple, &d, reverse, rnn.forward(x.clone(), None).0, x);
        }
        let d = random::<B>(Cell::Gru, &device);
        let mut gru = GruConfig::new(INPUTS, HIDDEN, true).init::<B>(&device);
        assert!(gru.reset_after);
        load(&mut gru.update_gate, &d.gates[0], zero());
        load(&mut gru.reset_gate, &d.gates[1], zero());
        let candidate_bias = d.gates[2]
            .bias
            .val()
            .slice([1..2, 0..HIDDEN])
            .reshape([HIDDEN]);
        load(&mut gru.new_gate, &d.gates[2], candidate_bias);
        let x = input(&device);
        compare(Cell::Gru, &d, false, gru.forward(x.clone(), None), x);
    }
}
