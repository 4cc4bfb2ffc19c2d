//! Batch normalization of `[N, C, H, W]` feature maps, computed on their `[N, C, H·W]` view.
//!
//! burn's `BatchNorm` broadcasts `[1, C, 1, 1]` statistics over the maps, and the `flex`
//! CPU backend walks such broadcasts element by element: with their gradients that was
//! ~44% of ResNet-20's training time (docs/BENCHMARKS.md). Here each statistic is repeated
//! to `[N, C, 1]` first, so every broadcast runs along the last axis only, which `flex`
//! vectorizes. The math, parameters and defaults are burn's (biased batch variance,
//! momentum 0.1, epsilon 1e-5), and so are the parameter names (`gamma` and `beta`, which
//! the weight penalty skips).

use burn::module::{Module, Param, RunningState};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

const MOMENTUM: f64 = 0.1;
const EPSILON: f64 = 1e-5;

#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    running_mean: RunningState<Tensor<B, 1>>,
    running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        BatchNorm2d {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let x = x.reshape([n, c, h * w]);
        // [C] or [1, C, 1] → [N, C, 1]: one value per row of the view.
        let rows = |t: Tensor<B, 3>| t.repeat_dim(0, n);
        let channel = |t: Tensor<B, 1>| t.reshape([1, c, 1]);
        let (centered, var) = if B::ad_enabled(&x.device()) {
            let count = (n * h * w) as f64;
            let mean = x.clone().sum_dim(2).sum_dim(0).div_scalar(count);
            let centered = x - rows(mean.clone());
            let var = centered
                .clone()
                .square()
                .sum_dim(2)
                .sum_dim(0)
                .div_scalar(count);
            let update = |state: &RunningState<Tensor<B, 1>>, batch: Tensor<B, 3>| {
                let old = state.value_sync();
                state.update(
                    old.mul_scalar(1.0 - MOMENTUM)
                        .add(batch.detach().reshape([c]).mul_scalar(MOMENTUM))
                        .detach(),
                );
            };
            update(&self.running_mean, mean);
            update(&self.running_var, var.clone());
            (centered, var)
        } else {
            let mean = channel(self.running_mean.value());
            (x - rows(mean), channel(self.running_var.value()))
        };
        let scale = var
            .add_scalar(EPSILON)
            .sqrt()
            .recip()
            .mul(channel(self.gamma.val()));
        let y = centered * rows(scale) + rows(channel(self.beta.val()));
        y.reshape([n, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::device::{CpuBackend, CpuTrain};
    use burn::module::AutodiffModule;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, ElementConversion};

    fn max_diff<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        a.sub(b).abs().max().into_scalar().elem()
    }

    /// The same outputs as burn's `BatchNorm` in training (batch statistics), and after the
    /// running statistics have moved, in inference.
    #[test]
    fn matches_burns_batch_norm() {
        let device = Default::default();
        let ours = BatchNorm2d::<CpuTrain>::new(3, &device);
        let theirs = BatchNormConfig::new(3).init::<CpuTrain>(&device);
        for step in 0..3 {
            let x = Tensor::<CpuTrain, 4>::random(
                [4, 3, 5, 6],
                Distribution::Normal(step as f64, 2.0),
                &device,
            );
            let d = max_diff(ours.forward(x.clone()), theirs.forward(x));
            assert!(d < 1e-5, "training step {step}: outputs differ by {d}");
        }
        let (ours, theirs) = (ours.valid(), theirs.valid());
        let x =
            Tensor::<CpuBackend, 4>::random([2, 3, 5, 6], Distribution::Normal(1.0, 2.0), &device);
        let d = max_diff(ours.forward(x.clone()), theirs.forward(x));
        assert!(d < 1e-5, "inference: outputs differ by {d}");
    }
}
