//! The Influence section: what changing one field did, in sentences that carry their
//! numbers. Each kind of sentence has a rule, and says nothing when its rule does not hold:
//!
//! - accuracy: with two or more seeds a side, a difference is called one only when Welch's
//!   t-test over the seeds gives p < 0.05 (the test and the N are named); otherwise "no
//!   clear change". With one seed a side the noise-floor rule of thumb is used and the
//!   sentence says the difference is untested.
//! - a run that diverged or did not learn is named as such, with why, and nothing is said
//!   of its curves' shape.
//! - "plateaued" only when validation accuracy stopped improving before the last quarter of
//!   training; a run still rising at its end is said to be still rising.
//! - "overfitting starts earlier/later" only when the epoch of the lowest validation loss
//!   moves beyond the seeds' spread (at least one epoch) and, for "earlier", the
//!   train–validation gap grows after it.
//! - no timing claims: wall time per epoch follows the machine's load, not the field.

use super::stats::{welch, Agg, Stats};

/// One side of a comparison: the field's value and the stats of every seed.
pub struct Side<'a> {
    pub value: &'a str,
    pub stats: Vec<&'a Stats>,
}

const ALPHA: f64 = 0.05;

/// Whether `v` differs from `b` on `f`, and the words that say how it was decided.
struct Verdict {
    differs: bool,
    /// `Welch's t-test over 3 vs 3 seeds, p = 0.012` or the rule of thumb.
    how: String,
}

fn compare(b: &Agg, v: &Agg, noise: f64) -> Option<Verdict> {
    let (bm, vm) = (b.mean()?, v.mean()?);
    if let Some((_, _, p)) = welch(&b.values, &v.values) {
        return Some(Verdict {
            differs: p < ALPHA,
            how: format!(
                "Welch's t-test over {} vs {} seeds, p = {}",
                b.n(),
                v.n(),
                if p < 0.001 {
                    "< 0.001".to_string()
                } else {
                    format!("{p:.3}")
                }
            ),
        });
    }
    let threshold = (2.0 * noise).max(0.005);
    Some(Verdict {
        differs: (vm - bm).abs() >= threshold,
        how: format!(
            "one seed, untested: rule of thumb, twice the noise floor of {:.1} points",
            noise * 100.0
        ),
    })
}

pub fn influence(path: &str, base: &Side, variant: &Side) -> String {
    let direction = match (base.value.parse::<f64>(), variant.value.parse::<f64>()) {
        (Ok(x), Ok(y)) if y > x => "Raising",
        (Ok(x), Ok(y)) if y < x => "Lowering",
        _ => "Changing",
    };
    let head = format!(
        "- **{direction} `{path}` from {} to {}:**",
        base.value, variant.value
    );
    format!("{head} {}.", sentences(base, variant).join("; "))
}

fn sentences(base: &Side, variant: &Side) -> Vec<String> {
    let (bs, vs) = (&base.stats, &variant.stats);
    let mut parts = Vec::new();
    let test = |s: &[&Stats]| Agg::of(s, |x| Some(x.test_acc_final));
    let failed: Vec<&str> = vs.iter().filter_map(|s| s.failure.as_deref()).collect();
    if !failed.is_empty() {
        let seeds = if vs.len() > 1 {
            format!(" in {} of {} seeds", failed.len(), vs.len())
        } else {
            String::new()
        };
        parts.push(format!("{}{seeds}", failed[0]));
        parts.push(format!(
            "test accuracy {} → {}",
            test(bs).pct(),
            test(vs).pct()
        ));
        parts.push("no conclusion is drawn from the shape of its curves".into());
        return parts;
    }
    if bs.iter().any(|s| s.failure.is_some()) {
        parts.push("the base run itself did not learn: nothing to compare against".into());
        return parts;
    }
    let noise = bs
        .iter()
        .chain(vs.iter())
        .filter_map(|s| s.noise)
        .fold(0.0, f64::max);
    let (ba, va) = (
        Agg::of(bs, |s| s.best_val_acc),
        Agg::of(vs, |s| s.best_val_acc),
    );
    let mut worse = false;
    if let (Some(verdict), Some(bm), Some(vm)) = (compare(&ba, &va, noise), ba.mean(), va.mean()) {
        if verdict.differs {
            worse = vm < bm;
            parts.push(format!(
                "best validation accuracy {} → {} ({:+.1} points; {})",
                ba.pct(),
                va.pct(),
                (vm - bm) * 100.0,
                verdict.how
            ));
        } else {
            parts.push(format!(
                "no clear change in best validation accuracy ({} vs {}; {})",
                ba.pct(),
                va.pct(),
                verdict.how
            ));
        }
        parts.push(format!(
            "test accuracy {} → {}",
            test(bs).pct(),
            test(vs).pct()
        ));
    }
    let rising = vs.iter().filter(|s| s.still_rising).count() * 2 > vs.len();
    let (b90, v90) = (
        Agg::of(bs, |s| s.epochs_to_90.map(|e| e as f64)),
        Agg::of(vs, |s| s.epochs_to_90.map(|e| e as f64)),
    );
    if worse {
        let last = vs.iter().map(|s| s.epochs).max().unwrap_or(0);
        parts.push(if rising {
            format!("still rising at its last epoch ({last}): more epochs could narrow the gap")
        } else {
            "plateaued below the base: its validation accuracy stopped improving before the last quarter of training".into()
        });
    } else if let (Some(be), Some(ve)) = (b90.mean(), v90.mean()) {
        let ratio = be / ve.max(1.0);
        let (be, ve) = (b90.num(0), v90.num(0));
        if ratio >= 1.25 {
            parts.push(format!(
                "converged faster: 90% of its best by epoch {ve} instead of {be}"
            ));
        } else if ratio <= 0.8 {
            parts.push(format!(
                "converged slower: 90% of its best by epoch {ve} instead of {be}"
            ));
        }
        if rising {
            parts.push("still rising at its last epoch".into());
        }
    }
    if let Some(s) = overfitting(bs, vs) {
        parts.push(s);
    }
    if let Some(s) = smoothness(bs, vs) {
        parts.push(s);
    }
    parts
}

/// The rule for "overfitting starts earlier/later" (module doc).
fn overfitting(bs: &[&Stats], vs: &[&Stats]) -> Option<String> {
    let epoch = |s: &Stats| s.val_loss_min_epoch.map(|e| e as f64);
    let (bm, vm) = (Agg::of(bs, epoch), Agg::of(vs, epoch));
    let (b, v) = (bm.mean()?, vm.mean()?);
    let spread = bm.sd().unwrap_or(0.0).max(vm.sd().unwrap_or(0.0)).max(1.0);
    let epochs = vs.iter().map(|s| s.epochs).min().unwrap_or(0) as f64;
    let base_epochs = bs.iter().map(|s| s.epochs).min().unwrap_or(0) as f64;
    let growth = Agg::of(vs, |s| Some(s.gap? - s.gap_at_val_loss_min?))
        .mean()
        .unwrap_or(0.0);
    let untested = if bm.n() < 2 || vm.n() < 2 {
        "; one seed, untested"
    } else {
        ""
    };
    if v < b - spread && v + 1.0 < epochs && growth > 0.01 {
        Some(format!(
            "overfitting starts earlier: validation loss is lowest at epoch {} (base: {}) and the train–validation gap grows by {:.1} points after it{untested}",
            vm.num(0),
            bm.num(0),
            growth * 100.0
        ))
    } else if v > b + spread && b + 1.0 < base_epochs {
        if v + 1.0 >= epochs {
            Some(format!(
                "no overfitting within {epochs} epochs: validation loss still falls at the end (the base's is lowest at epoch {}){untested}",
                bm.num(0)
            ))
        } else {
            Some(format!(
                "overfitting starts later: validation loss is lowest at epoch {} (base: {}){untested}",
                vm.num(0),
                bm.num(0)
            ))
        }
    } else {
        None
    }
}

fn smoothness(bs: &[&Stats], vs: &[&Stats]) -> Option<String> {
    let (br, vr) = (Agg::of(bs, |s| s.roughness), Agg::of(vs, |s| s.roughness));
    let (b, v) = (br.mean()?, vr.mean()?);
    let tested = welch(&br.values, &vr.values).map(|(_, _, p)| p < ALPHA);
    if tested == Some(false) || b <= 0.0 || v <= 0.0 {
        return None;
    }
    let note = if tested.is_none() {
        "; one seed, untested"
    } else {
        ""
    };
    let spreads = format!(
        "epoch-to-epoch spread of validation accuracy {:.2} vs {:.2} points{note}",
        v * 100.0,
        b * 100.0
    );
    if v / b >= 1.5 {
        Some(format!("noisier validation curve ({spreads})"))
    } else if b / v >= 1.5 {
        Some(format!("smoother validation curve ({spreads})"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that learned: 38% at epoch 15 of 20, validation loss lowest at epoch 18.
    fn learned(best: f64) -> Stats {
        Stats {
            best_val_acc: Some(best),
            best_epoch: Some(15),
            final_train_acc: best + 0.05,
            final_val_acc: Some(best - 0.005),
            test_acc_final: best - 0.01,
            test_acc_best: best - 0.01,
            gap: Some(0.055),
            gap_at_val_loss_min: Some(0.05),
            epochs_to_90: Some(8),
            val_loss_min_epoch: Some(18),
            still_rising: false,
            roughness: Some(0.01),
            noise: Some(0.004),
            seconds_per_epoch: 1.0,
            epochs: 20,
            diverged_at: None,
            failure: None,
            final_penalty: None,
        }
    }

    fn side<'a>(value: &'a str, stats: &'a [Stats]) -> Side<'a> {
        Side {
            value,
            stats: stats.iter().collect(),
        }
    }

    #[test]
    fn a_run_that_did_not_learn_is_named_and_its_curves_are_not_read() {
        let base = [learned(0.38)];
        let mut stuck = learned(0.119);
        stuck.failure =
            Some("did not learn: best validation accuracy 11.9%, chance is 10.0%".into());
        stuck.val_loss_min_epoch = Some(2);
        stuck.roughness = Some(0.001);
        let text = influence("optimizer.lr", &side("0.01", &base), &side("0.2", &[stuck]));
        assert!(text.starts_with("- **Raising `optimizer.lr` from 0.01 to 0.2:** did not learn: best validation accuracy 11.9%"), "{text}");
        for shape in ["overfitting", "smoother", "plateau", "converged"] {
            assert!(!text.contains(shape), "{shape}: {text}");
        }
    }

    #[test]
    fn differences_are_called_only_when_welchs_test_supports_them() {
        let base = [learned(0.380), learned(0.385), learned(0.379)];
        let lower = [learned(0.360), learned(0.362), learned(0.358)];
        let text = influence("batch_size", &side("256", &base), &side("1024", &lower));
        assert!(text.contains("best validation accuracy 38.1% ± 0.3 → 36.0% ± 0.2 (-2.1 points; Welch's t-test over 3 vs 3 seeds, p = 0.001)"), "{text}");
        let noisy = [learned(0.36), learned(0.40), learned(0.37)];
        let text = influence("batch_size", &side("256", &base), &side("64", &noisy));
        assert!(text.contains("no clear change in best validation accuracy (38.1% ± 0.3 vs 37.7% ± 2.1; Welch's t-test over 3 vs 3 seeds, p = 0.7"), "{text}");
        // One seed a side: the rule of thumb, said to be untested.
        let text = influence(
            "batch_size",
            &side("256", &base[..1]),
            &side("1024", &lower[..1]),
        );
        assert!(text.contains("(-2.0 points; one seed, untested"), "{text}");
    }

    #[test]
    fn plateaued_only_when_the_last_epochs_stopped_improving() {
        let base = [learned(0.38)];
        let mut rising = learned(0.30);
        rising.still_rising = true;
        let text = influence(
            "optimizer.lr",
            &side("0.01", &base),
            &side("0.001", &[rising]),
        );
        assert!(
            text.contains("still rising at its last epoch (20)"),
            "{text}"
        );
        assert!(!text.contains("plateau"), "{text}");
        let flat = learned(0.30);
        let text = influence(
            "optimizer.lr",
            &side("0.01", &base),
            &side("0.001", &[flat]),
        );
        assert!(text.contains("plateaued below the base"), "{text}");
    }

    #[test]
    fn overfitting_earlier_needs_an_earlier_minimum_and_a_growing_gap() {
        let base = [learned(0.38)];
        let mut early = learned(0.38);
        early.val_loss_min_epoch = Some(6);
        early.gap = Some(0.15);
        early.gap_at_val_loss_min = Some(0.03);
        let text = influence(
            "model.dropout",
            &side("0.5", &base),
            &side("0.0", &[early.clone()]),
        );
        assert!(text.contains("overfitting starts earlier: validation loss is lowest at epoch 6 (base: 18) and the train–validation gap grows by 12.0 points after it; one seed, untested"), "{text}");
        // The same minimum without a growing gap is not called overfitting.
        early.gap = Some(0.03);
        let text = influence("model.dropout", &side("0.5", &base), &side("0.0", &[early]));
        assert!(!text.contains("overfitting"), "{text}");
        // A minimum one epoch apart is within the spread.
        let mut near = learned(0.38);
        near.val_loss_min_epoch = Some(17);
        near.gap = Some(0.2);
        let text = influence("model.dropout", &side("0.5", &base), &side("0.0", &[near]));
        assert!(!text.contains("overfitting"), "{text}");
    }

    #[test]
    fn no_sentence_compares_wall_time() {
        let base = [learned(0.38)];
        let mut slow = learned(0.38);
        slow.seconds_per_epoch = 3.0;
        let text = influence(
            "regularizer.kernel_l2",
            &side("0.0", &base),
            &side("0.0001", &[slow]),
        );
        assert!(!text.contains("time") && !text.contains(" s "), "{text}");
    }
}
