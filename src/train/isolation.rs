//! Which CPU trainings and evaluations run in the build's own process rather than in a
//! child process (`pipe stage-job`) of their own.
//!
//! A child buys one thing: an end that takes its process down (burn aborts when an
//! allocation fails; a CUDA fault ends the process) fails that stage alone. On the CPU
//! only the allocation failure can happen, and a training far below the machine's memory
//! does not meet it. A child costs its start, reading the dataset again and checking its
//! inputs again, per stage: on 500 one-epoch linear models (docs/BENCHMARKS.md, "Per-stage
//! cost") the whole study took 57 s in children and 28 s in the build's process.
//! Trainings with dropout always run in a child: they draw random numbers through every
//! epoch from burn's one generator per process (`models::GENERATOR`), which two trainings
//! side by side in one process would share. `PIPE_ISOLATE=all` puts every train and
//! evaluate stage in a child again.

use super::models::Size;

/// `all`: every train and evaluate stage in a child process; `auto` (default): small CPU
/// ones in the build's process.
pub const ISOLATE_ENV: &str = "PIPE_ISOLATE";

/// The training memory (the estimate that [`Size::training_bytes`] gives) below which a
/// CPU training runs in the build's process: a small share of any machine that trains.
pub const IN_PROCESS_BYTES: f64 = 1e9;

/// Whether a CPU stage of this size (`None`: an evaluation, whose model already trained)
/// runs in the build's process.
pub fn in_build_process(size: Option<Size>, batch: usize) -> bool {
    if std::env::var(ISOLATE_ENV).is_ok_and(|v| v.trim() == "all") {
        return false;
    }
    size.is_none_or(|s| s.training_bytes(batch) < IN_PROCESS_BYTES)
}
