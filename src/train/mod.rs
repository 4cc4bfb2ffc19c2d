//! Training on burn, in three parts; only the stage modules `train` and `evaluate` call in
//! here, the engine never does.
//!
//! - **What is trained**: [`config`] (the run's config as written in RON), [`hparams`] (the
//!   per-layer choices every family shares), [`models`] (the five families, one file each)
//!   and [`layers`] (initializers, penalties, parameter order).
//! - **The loop and its scores**: [`device`] (the backend), [`data`] (batches), [`fit`]
//!   (the epochs, checkpoints and metrics), [`metrics`], [`tensorboard`], [`evaluate`].
//! - **The CPU fast path**: [`cpu`], hand-written kernels for what burn's `flex` backend
//!   was slow at; the families call them in place of burn's layers.
//!
//! Imports run one way: `hparams` ← `cpu` ← `layers` ← `models` ← `config` ← the loop.

pub mod config;
pub mod cpu;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod fit;
pub mod hparams;
pub mod isolation;
pub mod layers;
pub mod metrics;
pub mod models;
pub mod tensorboard;
pub mod threads;
