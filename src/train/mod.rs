//! Training on burn: the config, the five model families, the loop and the scores. Only
//! the stage modules `train` and `evaluate` call in here; the engine never does.

pub mod config;
pub mod conv;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod fit;
mod flex;
pub mod gate;
pub mod kernels;
pub mod layers;
pub mod lstm;
pub mod matmul;
pub mod metrics;
pub mod models;
pub mod norm;
pub mod pool;
pub mod sgd;
pub mod tensorboard;
mod wide;
