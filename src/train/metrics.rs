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
    /// The weight penalty (L1/L2) inside `train_loss`: its mean over the epoch's batches.
    /// Absent without a regularizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_penalty: Option<f64>,
    /// The weight penalty inside `val_loss`, at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_penalty: Option<f64>,
    /// Wall time of the epoch. Runs since the early cutoff keep it in `volatile/timing.json`
    /// instead (a rerun's bytes must not differ by the clock); older runs have it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl EpochMetrics {
    /// Cross-entropy alone: what the model's fit is, without the regularizer's term.
    pub fn train_data_loss(&self) -> f64 {
        self.train_loss - self.train_penalty.unwrap_or(0.0)
    }

    pub fn val_data_loss(&self) -> Option<f64> {
        self.val_loss.map(|l| l - self.val_penalty.unwrap_or(0.0))
    }
}

/// `volatile/timing.json`: the facts of one execution of a train stage, outside the output
/// hash (see the engine's `VOLATILE`), so retraining to the same weights is an early cutoff.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Timing {
    /// When the first epoch started (seconds since 1970): TensorBoard's time axis.
    pub started_unix: f64,
    /// Wall time of each epoch, in order.
    pub epoch_seconds: Vec<f64>,
    pub train_images_per_second: f64,
    /// The epoch a killed run was resumed after, if it was.
    pub resumed_from_epoch: Option<usize>,
}

impl Timing {
    pub const FILE: &'static str = "volatile/timing.json";

    /// The timing a train (or evaluate) output folder holds, from `volatile/timing.json`, or
    /// from the metrics and summary of runs that predate it.
    pub fn of(dir: &std::path::Path, metrics: &[EpochMetrics]) -> Timing {
        Self::read(&|f| std::fs::read(dir.join(f)).ok(), metrics)
    }

    /// As [`of`](Self::of), with the output's files read by `file`.
    pub fn read(file: &dyn Fn(&str) -> Option<Vec<u8>>, metrics: &[EpochMetrics]) -> Timing {
        if let Some(t) = file(Self::FILE).and_then(|b| serde_json::from_slice(&b).ok()) {
            return t;
        }
        let old: serde_json::Value = file("summary.json")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Timing {
            started_unix: 0.0,
            epoch_seconds: metrics.iter().map(|m| m.seconds.unwrap_or(0.0)).collect(),
            train_images_per_second: old["train_images_per_second"].as_f64().unwrap_or(0.0),
            resumed_from_epoch: old["resumed_from_epoch"].as_u64().map(|e| e as usize),
        }
    }
}

/// Validation loss (without the penalty) this many times that of guessing uniformly at the
/// last epoch: the run blew up, whatever its accuracy.
const EXPLODED: f64 = 10.0;
/// Best accuracy at most this far above chance: the run did not learn.
const NEAR_CHANCE: f64 = 0.05;

/// Why a run that did not diverge still failed to learn, or `None` when it learned: its best
/// validation accuracy (training accuracy without a validation split) stayed within
/// [`NEAR_CHANCE`] of chance, or its last validation loss is [`EXPLODED`] times that of a
/// uniform guess (ln of the number of classes). The report draws no curve-shape conclusion
/// from such a run.
pub fn failed_to_learn(metrics: &[EpochMetrics], classes: usize) -> Option<String> {
    let classes = classes.max(2) as f64;
    let chance = 1.0 / classes;
    let finite = |x: &Option<f64>| x.filter(|v| v.is_finite());
    let val: Vec<f64> = metrics.iter().filter_map(|m| finite(&m.val_acc)).collect();
    let (best, what) = if val.is_empty() {
        let train = metrics
            .iter()
            .map(|m| m.train_acc)
            .filter(|a| a.is_finite());
        (train.fold(f64::NAN, f64::max), "training")
    } else {
        (val.iter().copied().fold(f64::NAN, f64::max), "validation")
    };
    if best.is_finite() && best <= chance + NEAR_CHANCE {
        return Some(format!(
            "did not learn: best {what} accuracy {:.1}%, chance is {:.1}%",
            best * 100.0,
            chance * 100.0
        ));
    }
    let guess = classes.ln();
    let last = metrics
        .iter()
        .rev()
        .find_map(|m| finite(&m.val_data_loss()));
    match last {
        Some(l) if l > EXPLODED * guess => Some(format!(
            "loss exploded: last validation loss {}, {:.0}× that of a uniform guess ({guess:.2})",
            significant(l),
            l / guess
        )),
        _ => None,
    }
}

/// Three significant digits, without an exponent for the values losses take.
pub fn significant(x: f64) -> String {
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, val_acc: f64, val_loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            train_loss: 2.0,
            train_acc: val_acc,
            val_loss: Some(val_loss),
            val_acc: Some(val_acc),
            lr: 0.1,
            train_penalty: None,
            val_penalty: None,
            seconds: None,
        }
    }

    #[test]
    fn a_run_stuck_at_chance_or_with_an_exploded_loss_failed_to_learn() {
        // lr 0.2 in the quick learning-rate study: 11.9%, loss in the hundreds.
        let stuck = [epoch(1, 0.10, 129.0), epoch(2, 0.119, 362.0)];
        let why = failed_to_learn(&stuck, 10).unwrap();
        assert!(
            why.contains("did not learn: best validation accuracy 11.9%"),
            "{why}"
        );
        let exploded = [epoch(1, 0.30, 1.9), epoch(2, 0.32, 40.0)];
        let why = failed_to_learn(&exploded, 10).unwrap();
        assert!(why.starts_with("loss exploded"), "{why}");
        let learned = [epoch(1, 0.25, 2.1), epoch(2, 0.38, 1.8)];
        assert_eq!(failed_to_learn(&learned, 10), None);
        // The penalty does not count: a large L2 term is not an explosion.
        let mut penalized = learned.clone();
        penalized[1].val_loss = Some(60.0);
        penalized[1].val_penalty = Some(58.3);
        assert_eq!(failed_to_learn(&penalized, 10), None);
    }
}
