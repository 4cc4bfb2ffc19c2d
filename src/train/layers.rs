//! What every model family shares: activations (computed in [`cpu`](super::cpu)),
//! initializers, the Keras-style weight penalties, and forcing burn's lazily initialized
//! parameters into existence in a fixed order (so a seed gives the same weights however
//! the model is used afterwards).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::{Initializer, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

pub use super::cpu::activation::activate;
use super::cpu::norm::BatchNorm2d;
use super::hparams::{Init, Regularizer};

/// Keras' initializers in burn's terms: He = Kaiming with gain √2, LeCun = Kaiming with gain 1.
pub fn initializer(init: &Init) -> Initializer {
    let sqrt2 = std::f64::consts::SQRT_2;
    match *init {
        Init::GlorotUniform => Initializer::XavierUniform { gain: 1.0 },
        Init::GlorotNormal => Initializer::XavierNormal { gain: 1.0 },
        Init::HeUniform => Initializer::KaimingUniform {
            gain: sqrt2,
            fan_out_only: false,
        },
        Init::HeNormal => Initializer::KaimingNormal {
            gain: sqrt2,
            fan_out_only: false,
        },
        Init::LecunUniform => Initializer::KaimingUniform {
            gain: 1.0,
            fan_out_only: false,
        },
        Init::LecunNormal => Initializer::KaimingNormal {
            gain: 1.0,
            fan_out_only: false,
        },
        Init::Orthogonal => Initializer::Orthogonal { gain: 1.0 },
        Init::Zeros => Initializer::Zeros,
        Init::Ones => Initializer::Ones,
        Init::Constant(value) => Initializer::Constant { value },
        Init::Uniform(min, max) => Initializer::Uniform { min, max },
        Init::Normal(mean, std) => Initializer::Normal { mean, std },
    }
}

/// How a family builds its layers: kernel initializer from the config, everything else
/// burn's defaults. Biases are set afterwards by [`init_biases`].
/// Not `Clone`: a copy would number batch norms from the same count as the original.
#[derive(Debug)]
pub struct Build {
    pub kernel: Initializer,
    /// Batch norms made so far: their running statistics' ids.
    norms: std::cell::Cell<u64>,
}

/// Where the ids of batch norms' running statistics start: [`renumber`] gives parameters
/// 0, 1, 2…, and these are not parameters.
const RUNNING_STATE_IDS: u64 = 1 << 48;

impl Build {
    pub fn new(kernel: Initializer) -> Self {
        Build {
            kernel,
            norms: std::cell::Cell::new(0),
        }
    }

    /// A batch norm whose running statistics have ids numbered in the order the model
    /// makes them: burn draws those at random (as it does parameters' ids, see
    /// [`renumber`], which cannot reach these), and writes them into the saved weights.
    pub fn batch_norm<B: Backend>(&self, channels: usize, device: &B::Device) -> BatchNorm2d<B> {
        let k = self.norms.get();
        self.norms.set(k + 1);
        let id = |i: u64| ParamId::from(RUNNING_STATE_IDS + 2 * k + i);
        BatchNorm2d::new(channels, [id(0), id(1)], device)
    }

    pub fn linear<B: Backend>(
        &self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> burn::nn::Linear<B> {
        let config = LinearConfig::new(d_in, d_out).with_initializer(self.kernel.clone());
        // burn gives the bias the kernel's initializer, and an orthogonal matrix has no
        // one-dimensional form (it panics). The bias is replaced by [`init_biases`] anyway;
        // the other initializers keep burn's bias so their seeds draw what they always drew.
        if !matches!(self.kernel, Initializer::Orthogonal { .. }) {
            return config.init(device);
        }
        let mut linear = config.with_bias(false).init(device);
        linear.bias = Some(Initializer::Zeros.init_with([d_out], Some(d_in), Some(d_out), device));
        linear
    }
}

/// Path-tracking helper: the name of the field being visited is the last entered one.
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn field(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }
}

/// Replaces every bias (a parameter named `bias`: dense, convolution and recurrent layers)
/// with the configured bias initializer; keeps the family's own choice where it has one.
struct BiasInit<'a, B: Backend> {
    init: Initializer,
    path: Path,
    device: &'a B::Device,
    /// Biases a family sets itself (a highway gate's bias), by their path.
    keep: &'a [&'a str],
}

impl<B: Backend> ModuleMapper<B> for BiasInit<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let joined = self.path.0.join(".");
        if self.path.field() != "bias" || self.keep.iter().any(|k| joined.ends_with(k)) {
            return param;
        }
        let shape = param.val().shape();
        let n = shape.num_elements();
        let id = param.id;
        let fresh: Param<Tensor<B, D>> = self.init.init_with(shape, Some(n), Some(n), self.device);
        Param::initialized(id, fresh.val().require_grad())
    }
}

pub fn init_biases<B: Backend, M: Module<B>>(
    module: M,
    init: &Init,
    keep: &[&str],
    device: &B::Device,
) -> M {
    module.map(&mut BiasInit {
        init: initializer(init),
        path: Path::default(),
        device,
        keep,
    })
}

/// Numbers the parameters 0, 1, 2… in declaration order. burn draws parameter ids at
/// random and writes them into saved records, so without this two identical runs would
/// save different bytes (and optimizer state, keyed by id, could not be matched by order).
struct Renumber(u64);

impl<B: Backend> ModuleMapper<B> for Renumber {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, _) = param.consume();
        self.0 += 1;
        Param::initialized(ParamId::from(self.0 - 1), tensor)
    }
}

pub fn renumber<B: Backend, M: Module<B>>(module: M) -> M {
    module.map(&mut Renumber(0))
}

/// Touches every parameter once, in declaration order, so lazy initialization draws from
/// the seeded generator right away and in a fixed order.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    module.visit(&mut Materialize);
}

/// Σ l1·|w| + l2·w² over kernels (`weight`, a recurrent layer's `recurrent_weight`) and biases (`bias`), as Keras regularizers add
/// to the loss. Batch-norm parameters (`gamma`, `beta`) are not penalized.
struct Penalty<B: Backend> {
    reg: Regularizer,
    path: Path,
    total: Option<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Penalty<B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let (l1, l2) = match self.path.field() {
            "weight" | "recurrent_weight" => (self.reg.kernel_l1, self.reg.kernel_l2),
            "bias" => (self.reg.bias_l1, self.reg.bias_l2),
            _ => return,
        };
        let w = param.val();
        let mut term: Option<Tensor<B, 1>> = None;
        if l1 > 0.0 {
            term = Some(w.clone().abs().sum().mul_scalar(l1));
        }
        if l2 > 0.0 {
            let t = w.powi_scalar(2).sum().mul_scalar(l2);
            term = Some(match term {
                Some(a) => a + t,
                None => t,
            });
        }
        if let Some(t) = term {
            self.total = Some(match self.total.take() {
                Some(a) => a + t,
                None => t,
            });
        }
    }
}

/// The weight penalty of `module`, or `None` when the regularizer is all zeros.
pub fn penalty<B: Backend, M: Module<B>>(module: &M, reg: &Regularizer) -> Option<Tensor<B, 1>> {
    if reg.is_zero() {
        return None;
    }
    let mut p = Penalty {
        reg: reg.clone(),
        path: Path::default(),
        total: None,
    };
    module.visit(&mut p);
    p.total
}

/// Counts trainable scalars.
struct Count(usize);

impl<B: Backend> ModuleVisitor<B> for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 += param.val().shape().num_elements();
    }
}

pub fn parameter_count<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}
