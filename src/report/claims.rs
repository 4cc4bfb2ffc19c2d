//! What a report claims, as data: each Influence sentence is rendered ([`super::influence`])
//! from one [`Claim`], and every claim is written to `claims.json` beside the report with
//! the per-seed figures it was decided from, so a reader (and `tests/claims.rs`, with a
//! second implementation of every rule) can re-derive it from the runs' metrics.
//!
//! The rules, one per kind (also written under each report's Influence section):
//! - **failure**: a seed that diverged or did not learn (the training's verdict) is named
//!   per seed; the other claims use the seeds that learned.
//! - **collapse**: a learned seed whose last validation accuracy is more than
//!   [`COLLAPSE`] below its best is named; its accuracy counts, its curve is not read.
//! - Curves are read ("readable" seeds) only from seeds that learned, did not collapse and
//!   ran at least [`MIN_SHAPE_EPOCHS`] epochs.
//! - **accuracy** (best validation accuracy), **test_accuracy** (test accuracy of the best
//!   weights), **speed** (first epoch at 90% of the best), **onset** (epoch of the lowest
//!   validation loss), **gap** (train − validation accuracy at the last epoch) and
//!   **smoothness** (sd of the epoch-to-epoch change of validation accuracy, in every seed:
//!   what "smoother" means): with two or more seeds a side, Welch's
//!   two-sided t-test over the per-seed figures, Holm's correction over the report's tests
//!   of the same kind, a difference when the adjusted p < [`ALPHA`]. Fewer than two seeds
//!   on a side is untested: its direction is stated as such. Speed must differ by a ratio of
//!   [`SPEED_RATIO`], smoothness by [`SMOOTH_RATIO`], the gap by [`GAP_GROWTH`] and onset by one epoch (two with one
//!   seed; "earlier" also needs the train–validation gap to grow by [`GAP_GROWTH`] after
//!   the minimum) to be mentioned at all.
//! - **no_overfitting**: the variant's validation loss is lowest at its last epoch in every
//!   readable seed, while the base's is lowest at least one epoch before its end.
//! - **rising**: in every readable seed the last epoch is within [`RISING_WITHIN`] of the
//!   best and the least-squares slope of the last quarter (at least 3 epochs) is positive.
//! - **plateau**: in every readable seed the best epoch is before the last quarter.

use serde::{Deserialize, Serialize};

use super::stats::{mean, welch, Stats};
pub use super::stats::{COLLAPSE, MIN_SHAPE_EPOCHS, RISING_WITHIN};

pub const ALPHA: f64 = 0.05;
/// Convergence speed: epochs to 90% of the best must differ by this ratio.
pub const SPEED_RATIO: f64 = 1.25;
/// Smoothness: the epoch-to-epoch spread must differ by this ratio.
pub const SMOOTH_RATIO: f64 = 1.5;
/// "Overfitting starts earlier" also needs the gap to grow this much after the minimum; a
/// gap claim needs the last epoch's gap to move this much.
pub const GAP_GROWTH: f64 = 0.01;
/// With one seed a side, an onset must move this many epochs to be mentioned.
pub const ONSET_ONE_SEED: f64 = 2.0;

/// The kinds decided by Welch's test (the others are observations).
pub const TESTED: [Kind; 6] = [
    Kind::Accuracy,
    Kind::TestAccuracy,
    Kind::Speed,
    Kind::Onset,
    Kind::Gap,
    Kind::Smoothness,
];

/// Beside a report's figures: its claims.
pub const FILE: &str = "claims.json";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Failure,
    Collapse,
    Accuracy,
    /// Test accuracy of the best weights (those of the best validation epoch).
    TestAccuracy,
    Speed,
    Onset,
    NoOverfitting,
    /// Train − validation accuracy at the last epoch.
    Gap,
    Smoothness,
    Rising,
    Plateau,
    /// Median wall time of an epoch after the first: never a study's claim (timings follow
    /// the machine), only the conclusions' batch-size check within one study.
    EpochSeconds,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Tested: the variant's figure is higher / lower (adjusted p < ALPHA).
    Higher,
    Lower,
    /// Tested and not significant, or one seed within twice the noise.
    NoClearChange,
    /// One seed a side: the direction seen, not tested.
    UntestedHigher,
    UntestedLower,
    /// Smaller than the size the kind needs to be mentioned: nothing is said.
    TooSmall,
    /// An observation about the variant's own seeds that holds (failure, collapse,
    /// rising, plateau, no overfitting).
    Holds,
}

/// One claim about a variant against the base.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claim {
    pub kind: Kind,
    /// Seeds whose figure is read, base side and variant side, in seed order.
    pub base_seeds: Vec<u64>,
    pub seeds: Vec<u64>,
    /// The per-seed figure of those seeds (accuracy: best validation accuracy;
    /// test_accuracy: the best weights' test accuracy; gap: last train − validation
    /// accuracy; speed:
    /// epochs to 90% of the best; onset and no_overfitting: the epoch of the lowest
    /// validation loss; smoothness: the epoch-to-epoch spread; collapse: best − last
    /// validation accuracy; failure, rising, plateau: 1 where it holds, else 0).
    pub base: Vec<f64>,
    pub values: Vec<f64>,
    /// Welch's two-sided p (accuracy, speed, onset and smoothness, two or more seeds a
    /// side; observations have none), and after Holm's correction over the report's tests
    /// of this kind.
    pub p: Option<f64>,
    pub p_holm: Option<f64>,
    /// How many tests of this kind the report made (Holm's m).
    pub tests: usize,
    /// One seed's noise (accuracy, one seed a side): the larger of the two runs'.
    pub noise: Option<f64>,
    /// Onset: the mean growth of the train–validation gap after the minimum.
    pub gap_growth: Option<f64>,
    pub verdict: Verdict,
    /// The words in the report; `None` when the rule says nothing.
    pub words: Option<String>,
}

/// One variant against the base, for one varied field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Comparison {
    pub field: String,
    pub variant: String,
    pub base_value: String,
    pub value: String,
    pub claims: Vec<Claim>,
}

/// A run as the claims name it: which variant and seed, and where its metrics are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRef {
    pub variant: String,
    pub seed: u64,
    /// Relative to the claims file: a copy of the run's `metrics.jsonl`.
    pub metrics: String,
    /// `diverged`, `did not learn` or `loss exploded`, as the training decided.
    pub failure: Option<String>,
    /// Copies of the run's `evaluation.json` and `volatile/timing.json`, relative to the
    /// claims file: where the test accuracy and the time per epoch below come from.
    #[serde(default)]
    pub evaluation: String,
    #[serde(default)]
    pub timing: String,
    /// The best weights' test accuracy.
    #[serde(default)]
    pub test_acc: f64,
    /// Best validation accuracy and the first epoch at 90% of it (the base's figures in the
    /// conclusions).
    #[serde(default)]
    pub best_val_acc: Option<f64>,
    #[serde(default)]
    pub epochs_to_90: Option<f64>,
    /// Median wall time of the epochs after the first (the first compiles and warms up):
    /// follows the machine and its load, so it is only ever compared within one study.
    #[serde(default)]
    pub seconds_per_epoch: f64,
    #[serde(default)]
    pub parameters: u64,
    #[serde(default)]
    pub backend: String,
    /// The train stage's key: runs of two studies with the same key are the same run.
    #[serde(default)]
    pub train_key: String,
}

/// Median wall time of the epochs after the first (of all, with one).
pub fn steady_seconds(epoch_seconds: &[f64]) -> f64 {
    let mut s: Vec<f64> = epoch_seconds
        .get(1..)
        .filter(|r| !r.is_empty())
        .unwrap_or(epoch_seconds)
        .to_vec();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `claims.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claims {
    pub runs: Vec<RunRef>,
    pub comparisons: Vec<Comparison>,
}

/// A seed of a variant and its figures.
#[derive(Clone, Copy)]
pub struct Seeded<'a> {
    pub seed: u64,
    pub stats: &'a Stats,
}

/// The kind of a failure, as [`RunRef::failure`] names it.
pub fn failure_kind(s: &Stats) -> Option<&'static str> {
    match (&s.failure, s.diverged_at) {
        (None, _) => None,
        (Some(_), Some(_)) => Some("diverged"),
        (Some(f), None) if f.starts_with("did not learn") => Some("did not learn"),
        (Some(_), None) => Some("loss exploded"),
    }
}

fn learned(s: &Seeded) -> bool {
    s.stats.failure.is_none()
}

fn readable(s: &Seeded) -> bool {
    learned(s) && s.stats.drop.is_none_or(|d| d <= COLLAPSE) && s.stats.epochs >= MIN_SHAPE_EPOCHS
}

fn claim(
    kind: Kind,
    base: &[Seeded],
    other: &[Seeded],
    f: impl Fn(&Stats) -> Option<f64>,
) -> Claim {
    let pick = |side: &[Seeded]| -> (Vec<u64>, Vec<f64>) {
        side.iter()
            .filter_map(|s| f(s.stats).filter(|v| v.is_finite()).map(|v| (s.seed, v)))
            .unzip()
    };
    let ((base_seeds, b), (seeds, v)) = (pick(base), pick(other));
    let tested = TESTED.contains(&kind);
    Claim {
        kind,
        p: welch(&b, &v).filter(|_| tested).map(|(_, _, p)| p),
        base_seeds,
        seeds,
        base: b,
        values: v,
        p_holm: None,
        tests: 0,
        noise: None,
        gap_growth: None,
        verdict: Verdict::TooSmall,
        words: None,
    }
}

fn flag(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// Every claim of one variant against the base, verdicts not yet decided ([`decide`]).
pub fn compare(base: &[Seeded], other: &[Seeded]) -> Vec<Claim> {
    let mut out = Vec::new();
    let failed = |s: &Stats| flag(s.failure.is_some());
    if base.iter().chain(other).any(|s| !learned(s)) {
        let mut c = claim(Kind::Failure, base, other, failed);
        c.verdict = Verdict::Holds;
        out.push(c);
    }
    let (b_ok, v_ok): (Vec<Seeded>, Vec<Seeded>) = (
        base.iter().copied().filter(learned).collect(),
        other.iter().copied().filter(learned).collect(),
    );
    if b_ok.is_empty() || v_ok.is_empty() {
        return out;
    }
    let dropped = |s: &Stats| s.drop.map(|d| d.max(0.0));
    if b_ok
        .iter()
        .chain(&v_ok)
        .any(|s| !readable(s) && s.stats.drop.is_some_and(|d| d > COLLAPSE))
    {
        let mut c = claim(Kind::Collapse, &b_ok, &v_ok, dropped);
        c.verdict = Verdict::Holds;
        out.push(c);
    }
    let mut acc = claim(Kind::Accuracy, &b_ok, &v_ok, |s| s.best_val_acc);
    if acc.p.is_none() {
        acc.noise = b_ok
            .iter()
            .chain(&v_ok)
            .filter_map(|s| s.stats.noise)
            .reduce(f64::max);
    }
    out.push(acc);
    out.push(claim(Kind::TestAccuracy, &b_ok, &v_ok, |s| {
        Some(s.test_acc_best)
    }));
    let (b_r, v_r): (Vec<Seeded>, Vec<Seeded>) = (
        b_ok.iter().copied().filter(readable).collect(),
        v_ok.iter().copied().filter(readable).collect(),
    );
    if b_r.is_empty() || v_r.is_empty() {
        return out;
    }
    out.push(claim(Kind::Speed, &b_r, &v_r, |s| {
        s.epochs_to_90.map(|e| e as f64)
    }));
    let min_epoch = |s: &Stats| s.val_loss_min_epoch.map(|e| e as f64);
    let at_end = |s: &Seeded| s.stats.val_loss_min_epoch == Some(s.stats.epochs);
    let base_overfits = b_r.iter().all(|s| {
        s.stats
            .val_loss_min_epoch
            .is_some_and(|e| e < s.stats.epochs)
    });
    if v_r.iter().all(at_end) && base_overfits {
        let mut c = claim(Kind::NoOverfitting, &b_r, &v_r, min_epoch);
        c.verdict = Verdict::Holds;
        out.push(c);
    } else {
        let mut c = claim(Kind::Onset, &b_r, &v_r, min_epoch);
        let growth: Vec<f64> = v_r
            .iter()
            .filter_map(|s| Some(s.stats.gap? - s.stats.gap_at_val_loss_min?))
            .collect();
        c.gap_growth = (!growth.is_empty()).then(|| mean(&growth));
        out.push(c);
    }
    out.push(claim(Kind::Gap, &b_r, &v_r, |s| s.gap));
    out.push(claim(Kind::Smoothness, &b_r, &v_r, |s| s.roughness));
    for (kind, holds) in [
        (
            Kind::Rising,
            (|s: &Stats| s.still_rising) as fn(&Stats) -> bool,
        ),
        (Kind::Plateau, |s: &Stats| s.plateaued),
    ] {
        if v_r.iter().all(|s| holds(s.stats)) {
            let mut c = claim(kind, &b_r, &v_r, |s| flag(holds(s)));
            c.verdict = Verdict::Holds;
            out.push(c);
        }
    }
    out
}

/// Holm's step-down adjustment of `ps`, in their order.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Holm's correction over each kind's tests across the report, then every verdict.
pub fn decide(comparisons: &mut [Comparison]) {
    for kind in TESTED {
        let mut tested: Vec<&mut Claim> = comparisons
            .iter_mut()
            .flat_map(|c| c.claims.iter_mut())
            .filter(|c| c.kind == kind && c.p.is_some())
            .collect();
        let ps: Vec<f64> = tested.iter().map(|c| c.p.unwrap_or(1.0)).collect();
        let adjusted = holm(&ps);
        let m = tested.len();
        for (c, p) in tested.iter_mut().zip(adjusted) {
            c.p_holm = Some(p);
            c.tests = m;
        }
    }
    for c in comparisons.iter_mut().flat_map(|c| c.claims.iter_mut()) {
        if c.verdict != Verdict::Holds {
            c.verdict = verdict(c);
        }
    }
}

/// The verdict of a tested or untested comparison (the rules in the module doc).
pub fn verdict(c: &Claim) -> Verdict {
    let (b, v) = (mean(&c.base), mean(&c.values));
    if c.base.is_empty() || c.values.is_empty() {
        return Verdict::TooSmall;
    }
    let big_enough = match c.kind {
        Kind::Accuracy | Kind::TestAccuracy => true,
        Kind::Gap => (v - b).abs() >= GAP_GROWTH,
        Kind::Speed => b / v.max(1.0) >= SPEED_RATIO || v / b.max(1.0) >= SPEED_RATIO,
        Kind::Smoothness => {
            b > 1e-6 && v > 1e-6 && (v / b >= SMOOTH_RATIO || b / v >= SMOOTH_RATIO)
        }
        Kind::Onset => {
            let needed = if c.p.is_some() { 1.0 } else { ONSET_ONE_SEED };
            let earlier = v <= b - needed && c.gap_growth.is_some_and(|g| g > GAP_GROWTH);
            earlier || v >= b + needed
        }
        _ => return Verdict::Holds,
    };
    if !big_enough {
        return Verdict::TooSmall;
    }
    match c.p_holm {
        Some(p) if p < ALPHA => {
            if v > b {
                Verdict::Higher
            } else {
                Verdict::Lower
            }
        }
        Some(_) => Verdict::NoClearChange,
        None if c.kind == Kind::Accuracy && c.noise.is_some_and(|n| (v - b).abs() < 2.0 * n) => {
            Verdict::NoClearChange
        }
        None if v > b => Verdict::UntestedHigher,
        None if v < b => Verdict::UntestedLower,
        None => Verdict::NoClearChange,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_its_definition() {
        // p sorted 0.01, 0.02, 0.04 over m = 3: 0.03, 0.04, 0.04 (monotone).
        let adj = holm(&[0.04, 0.01, 0.02]);
        let want = [0.04, 0.03, 0.04];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.6, 0.9]), vec![1.0, 1.0]);
    }
}
