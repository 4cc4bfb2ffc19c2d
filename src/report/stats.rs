//! The numbers a report states: per run ([`Stats`]), per variant over its seed replicates
//! ([`Agg`]), and the test that decides whether two variants differ ([`welch`]).

use serde::{Deserialize, Serialize};

use super::Run;
use crate::train::fit::EpochMetrics;

/// The figures of one run (one seed of one variant). Losses are the data loss (cross-entropy
/// without the weight penalty), so regularized runs are compared on their fit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stats {
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub final_train_acc: f64,
    pub final_val_acc: Option<f64>,
    pub test_acc_final: f64,
    pub test_acc_best: f64,
    /// Final train accuracy − final validation accuracy.
    pub gap: Option<f64>,
    /// The gap at the epoch of the lowest validation loss: how much it grew after.
    pub gap_at_val_loss_min: Option<f64>,
    /// First epoch whose validation accuracy reaches 90% of the best.
    pub epochs_to_90: Option<usize>,
    /// Epoch of the lowest validation (data) loss.
    pub val_loss_min_epoch: Option<usize>,
    /// The last epoch's validation accuracy is within [`RISING_WITHIN`] of the best and the
    /// least-squares slope over the last quarter of the epochs is positive (rule:
    /// [`super::claims`]).
    pub still_rising: bool,
    /// The best validation accuracy came before the last quarter of the epochs.
    pub plateaued: bool,
    /// Standard deviation of the epoch-to-epoch change of validation accuracy.
    pub roughness: Option<f64>,
    /// One epoch's noise in validation accuracy: the scatter around its centred 3-epoch
    /// moving average (not the slope of a rising curve), from [`MIN_SHAPE_EPOCHS`] epochs.
    pub noise: Option<f64>,
    /// Mean wall time per epoch: shown, never compared (it follows the machine's load).
    pub seconds_per_epoch: f64,
    pub epochs: usize,
    pub diverged_at: Option<usize>,
    /// Diverged or failed to learn, in words.
    pub failure: Option<String>,
    /// Best validation accuracy minus the last: more than [`COLLAPSE`] is a collapse.
    pub drop: Option<f64>,
    /// The mean weight penalty at the last epoch, where there is one.
    pub final_penalty: Option<f64>,
}

/// Fewer epochs than this and nothing is read from a curve's shape or speed: with 4 epochs
/// the "last quarter" is one point, a slope two, and every curve of a short study is rising.
pub const MIN_SHAPE_EPOCHS: usize = 5;
/// A last epoch this close to the best still counts as "at the best" for "still rising".
pub const RISING_WITHIN: f64 = 0.005;
/// A run whose validation accuracy ends more than this below its best collapsed: its
/// accuracy is compared, its curve is not read.
pub const COLLAPSE: f64 = 0.10;

/// How many of `epochs` epochs are the last quarter (at least one).
pub fn last_quarter(epochs: usize) -> usize {
    epochs.div_ceil(4).max(1)
}

/// Least-squares slope of `points`.
pub fn slope(points: &[(usize, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = points.iter().map(|p| p.0 as f64).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let (mx, my) = (mean(&xs), mean(&ys));
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// One epoch's noise: the sd of the residuals around a centred 3-epoch moving average,
/// scaled by √(3/2) (a residual of independent noise σ has sd σ·√(2/3)).
pub fn noise(val: &[f64]) -> Option<f64> {
    if val.len() < MIN_SHAPE_EPOCHS {
        return None;
    }
    let residuals: Vec<f64> = val
        .windows(3)
        .map(|w| w[1] - (w[0] + w[1] + w[2]) / 3.0)
        .collect();
    std_dev(&residuals).map(|s| s * 1.5f64.sqrt())
}

pub fn std_dev(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = mean(v);
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The best (`better` says which way) point of `(epoch, value)` pairs, first on ties.
fn extreme(points: &[(usize, f64)], better: impl Fn(f64, f64) -> bool) -> Option<(usize, f64)> {
    points.iter().copied().fold(None, |b, (e, v)| match b {
        Some((_, bv)) if !better(v, bv) => b,
        _ => Some((e, v)),
    })
}

pub fn stats(run: &Run) -> Stats {
    let failure = match run.summary.diverged_at_epoch {
        Some(e) => Some(format!("diverged at epoch {e} (loss not finite)")),
        None => run.summary.failed_to_learn.clone(),
    };
    let mut s = of_curves(
        &run.metrics,
        &run.timing.epoch_seconds,
        run.summary.diverged_at_epoch,
        failure,
    );
    s.test_acc_final = run.eval.last.accuracy;
    s.test_acc_best = run.eval.best.accuracy;
    s
}

/// The figures of a run's curves (test accuracies left at 0): what the report's claims
/// read, so rules can be tried on made-up curves.
pub fn of_curves(
    m: &[EpochMetrics],
    epoch_seconds: &[f64],
    diverged_at: Option<usize>,
    failure: Option<String>,
) -> Stats {
    let val: Vec<(usize, f64)> = m
        .iter()
        .filter_map(|e| e.val_acc.filter(|a| a.is_finite()).map(|a| (e.epoch, a)))
        .collect();
    let best = extreme(&val, |a, b| a > b);
    let last = m.iter().rev().find(|e| e.train_loss.is_finite());
    let epochs_to_90 =
        best.and_then(|(_, b)| val.iter().find(|(_, a)| *a >= 0.9 * b).map(|(e, _)| *e));
    let losses: Vec<(usize, f64)> = m
        .iter()
        .filter_map(|e| {
            e.val_data_loss()
                .filter(|l| l.is_finite())
                .map(|l| (e.epoch, l))
        })
        .collect();
    let val_loss_min_epoch = extreme(&losses, |a, b| a < b).map(|(e, _)| e);
    let gap_at = |epoch: usize| {
        m.iter()
            .find(|e| e.epoch == epoch)
            .and_then(|e| e.val_acc.map(|v| e.train_acc - v))
    };
    let quarter = last_quarter(val.len());
    let still_rising = match (best, val.last()) {
        (Some((_, b)), Some(&(_, last))) => {
            last >= b - RISING_WITHIN
                && slope(&val[val.len() - quarter.max(3).min(val.len())..]).is_some_and(|s| s > 0.0)
        }
        _ => false,
    };
    let plateaued = best.is_some_and(|(e, _)| {
        val.iter()
            .position(|p| p.0 == e)
            .is_some_and(|i| i < val.len() - quarter)
    });
    let deltas: Vec<f64> = val.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let accs: Vec<f64> = val.iter().map(|(_, a)| *a).collect();
    let timed: Vec<f64> = m
        .iter()
        .zip(epoch_seconds)
        .filter(|(e, _)| e.train_loss.is_finite())
        .map(|(_, s)| *s)
        .collect();
    Stats {
        best_val_acc: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        final_train_acc: last.map(|e| e.train_acc).unwrap_or(0.0),
        final_val_acc: last.and_then(|e| e.val_acc),
        test_acc_final: 0.0,
        test_acc_best: 0.0,
        gap: last.and_then(|e| e.val_acc.map(|v| e.train_acc - v)),
        gap_at_val_loss_min: val_loss_min_epoch.and_then(gap_at),
        epochs_to_90,
        val_loss_min_epoch,
        still_rising,
        plateaued,
        roughness: std_dev(&deltas),
        noise: noise(&accs),
        seconds_per_epoch: if timed.is_empty() { 0.0 } else { mean(&timed) },
        epochs: m.len(),
        diverged_at,
        failure,
        drop: best
            .zip(last.and_then(|e| e.val_acc))
            .map(|((_, b), l)| b - l),
        final_penalty: last.and_then(|e| e.val_penalty.or(e.train_penalty)),
    }
}

/// One figure over a variant's seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    pub values: Vec<f64>,
}

impl Agg {
    pub fn of(stats: &[&Stats], f: impl Fn(&Stats) -> Option<f64>) -> Agg {
        Agg {
            values: stats
                .iter()
                .filter_map(|s| f(s))
                .filter(|v| v.is_finite())
                .collect(),
        }
    }
    pub fn n(&self) -> usize {
        self.values.len()
    }
    pub fn mean(&self) -> Option<f64> {
        (!self.values.is_empty()).then(|| mean(&self.values))
    }
    pub fn sd(&self) -> Option<f64> {
        std_dev(&self.values)
    }
    /// `38.2% ± 0.4` (percent points) or `38.2%` for one value; `–` for none.
    pub fn pct(&self) -> String {
        match (self.mean(), self.sd()) {
            (None, _) => "–".into(),
            (Some(m), None) => format!("{:.1}%", m * 100.0),
            (Some(m), Some(s)) => format!("{:.1}% ± {:.1}", m * 100.0, s * 100.0),
        }
    }
    /// Mean ± sd of plain numbers with `digits` decimals.
    pub fn num(&self, digits: usize) -> String {
        match (self.mean(), self.sd()) {
            (None, _) => "–".into(),
            (Some(m), None) => format!("{m:.digits$}"),
            (Some(m), Some(s)) => format!("{m:.digits$} ± {s:.digits$}"),
        }
    }
}

/// Welch's two-sided t-test of equal means: `(t, degrees of freedom, p)`. `None` with fewer
/// than two values on a side. Two sets with no spread at all differ exactly when their
/// means do (p 0 or 1).
pub fn welch(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (std_dev(a)?.powi(2) / na, std_dev(b)?.powi(2) / nb);
    let diff = mean(a) - mean(b);
    if va + vb == 0.0 {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some((
            if diff == 0.0 { 0.0 } else { f64::INFINITY },
            na + nb - 2.0,
            p,
        ));
    }
    let t = diff / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    // Two-sided p of Student's t: I_{df/(df+t²)}(df/2, 1/2).
    let p = incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    Some((t, df, p.clamp(0.0, 1.0)))
}

/// The regularized incomplete beta function I_x(a, b) (continued fraction, as in Numerical
/// Recipes' `betai`): only for the p-value above, so no statistics crate.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

/// ln Γ(x), Lanczos (g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |s, (i, g)| s + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_reference_values() {
        // scipy 1.x: stats.ttest_ind([1, 2, 3, 4], [3, 4, 5, 6, 7], equal_var=False) gives
        // t = -2.611165, p = 0.034939, df = 6.980769.
        let (t, df, p) = welch(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
        assert!((t + 2.611165).abs() < 1e-5, "{t}");
        assert!((df - 6.980769).abs() < 1e-5, "{df}");
        assert!((p - 0.034939).abs() < 1e-5, "{p}");
        // Same samples: nothing to see.
        let (_, _, p) = welch(&[0.30, 0.31, 0.32], &[0.30, 0.31, 0.32]).unwrap();
        assert!((p - 1.0).abs() < 1e-9, "{p}");
        assert_eq!(welch(&[0.3], &[0.4, 0.5]), None);
        // Γ(5) = 24.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-10);
    }
}
