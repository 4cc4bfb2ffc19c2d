//! How many CPU threads one training computes on. Every stage holds as many of the `-j`
//! cores as it has threads, so this is the CPU twin of `--gpu-share`: while other stages
//! wait, a training takes one core and trains beside its siblings (a study's trainings are
//! many and none uses a second core fully); cores that would otherwise idle go to the
//! trainings that use them well, up to [`most`].
//!
//! The weights never depend on it (every kernel splits its work in pieces of a fixed size
//! and sums them in a fixed order; tests/train.rs trains every family on 1, 2 and 3
//! threads and compares the bytes), so it is not part of any key: a result from a laptop
//! and from a 64-core node is the same cache entry.

use super::config::TrainConfig;
use super::models::ModelConfig;

/// Overrides every CPU training's thread count (`pipe build --threads N` sets it).
pub const THREADS_ENV: &str = "PIPE_THREADS";

/// The most threads pipe gives one training by itself; more, by `threads` or `--threads`.
pub const MAX_AUTO_THREADS: usize = 4;

/// The threads a training is told to use: `PIPE_THREADS`, else its config's `threads`.
pub fn fixed(cfg: &TrainConfig) -> Option<usize> {
    let from_env = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    from_env.or(cfg.threads)
}

/// The most threads a training left to pipe takes when cores would otherwise idle (it
/// takes one while other stages wait for cores). From what its kernels split and from the
/// measured gain of a second thread (docs/BENCHMARKS.md, "Threads per training": 1.36x the
/// LSTM to 1.84x ResNet-20 on a 2-core AMD EPYC; beyond two not measured):
///
/// - dense families: 2, as their matrix products split the output in two halves
///   (`cpu::matmul`), the most of their epoch;
/// - convolutional families: 4, as they split the batch image by image;
/// - recurrent: one per share of the batch that runs its recurrence (`cpu::lstm`), 1 to 4.
pub fn most(cfg: &TrainConfig) -> usize {
    match &cfg.model {
        ModelConfig::Linear(_)
        | ModelConfig::Perceptron(_)
        | ModelConfig::Mlp(_)
        | ModelConfig::Highway(_) => 2,
        ModelConfig::ConvNet(_) | ModelConfig::ResNet(_) => MAX_AUTO_THREADS,
        ModelConfig::Rnn(_) => cfg
            .batch_size
            .div_ceil(super::cpu::lstm::SHARE_ROWS)
            .clamp(1, MAX_AUTO_THREADS),
    }
}
