//! How a stage's part in a build ended: made by the scheduler, printed by the console, so
//! it belongs to neither.

#[derive(Clone, Debug)]
pub enum Outcome {
    /// Already in the cache (or built by a concurrent build).
    Fresh,
    Built {
        ms: u64,
    },
    Failed(String),
    /// Not run because an input failed or the build stopped.
    Skipped(String),
}
