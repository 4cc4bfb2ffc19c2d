//! The build engine: fingerprints, cache, freshness, scheduling and the build display.
//! It orchestrates any [`StageKind`](crate::stage::StageKind) and knows nothing of what
//! stages compute.

pub mod assess;
pub mod cache;
pub mod child;
pub mod deps;
pub mod eta;
pub mod executor;
pub mod fingerprint;
pub mod memo;
pub mod noop;
pub mod outcome;
pub mod scheduler;
pub mod slurm;
pub mod targets;
pub mod ui;
pub mod verify;
