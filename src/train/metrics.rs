//! One epoch's figures: written by the training loop, read by the TensorBoard writer and
//! the report, so in a module of their own.

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean over batches of cross-entropy + weight penalty (what Keras reports as loss).
    pub train_loss: f64,
    pub train_acc: f64,
    /// `None` without a validation split.
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
}
