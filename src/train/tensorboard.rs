//! A training run's TensorBoard scalars, so `tensorboard --logdir` shows a study the way the
//! seed study looked at it: one event per epoch, the tags Keras writes.

use std::path::Path;

use super::metrics::{EpochMetrics, Timing};
use crate::tfevents::{event, file_version, scalar, write_file, Msg};

/// TensorBoard finds files by this name pattern; the fixed suffix keeps outputs stable.
pub const FILE_NAME: &str = "events.out.tfevents.0.pipe";

/// Where a train output keeps its events: the times of day inside make them volatile.
pub const DIR: &str = "volatile/tensorboard";

/// Writes one event file with every epoch's scalars under `dir`. Wall times are
/// `start + cumulative epoch seconds`, so the file is the same however often the run was
/// resumed.
pub fn write(dir: &Path, metrics: &[EpochMetrics], timing: &Timing) -> std::io::Result<()> {
    let start_unix = timing.started_unix;
    std::fs::create_dir_all(dir)?;
    let mut events = vec![file_version(start_unix)];
    let mut t = start_unix;
    for (i, m) in metrics.iter().enumerate() {
        t += timing.epoch_seconds.get(i).copied().unwrap_or(0.0);
        let mut values = vec![("epoch_learning_rate", m.lr as f32)];
        if m.train_loss.is_finite() {
            values.push(("train/epoch_loss", m.train_loss as f32));
        }
        values.push(("train/epoch_accuracy", m.train_acc as f32));
        if let (Some(l), Some(a)) = (m.val_loss, m.val_acc) {
            values.push(("validation/epoch_loss", l as f32));
            values.push(("validation/epoch_accuracy", a as f32));
        }
        let summary = values
            .iter()
            .fold(Msg::new(), |s, (tag, v)| s.msg(1, scalar(tag, *v)));
        events.push(event(t, m.epoch as i64).msg(5, summary));
    }
    write_file(&dir.join(FILE_NAME), events)
}
