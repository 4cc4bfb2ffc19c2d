//! The Influence section's words, each rendered from one [`Claim`] (its rule: [`super::claims`]),
//! so a sentence says exactly what its rule checked and carries the numbers and the test
//! that decided it. A claim whose rule says nothing has no words.

use super::claims::{failure_kind, Claim, Comparison, Kind, Seeded, Verdict};
use super::stats::Agg;

/// The report's explanation of its sentences, under the Influence section.
pub const RULES: &str = "How these sentences are made: each is the verdict of one rule over the \
per-seed figures, and the figures behind every sentence are in `claims.json` beside this report. \
Best validation accuracy, test accuracy of the best weights, convergence speed (the first epoch \
at 90% of the best validation accuracy), the onset of overfitting (the epoch of the lowest \
validation loss), the train–validation gap (train minus validation accuracy at the last epoch) \
and smoothness (the standard deviation of the epoch-to-epoch change of validation accuracy) are \
compared with Welch's two-sided t-test \
over the seeds, with Holm's correction over the report's tests of the same figure; a difference \
is called one only when the adjusted p < 0.05, and with fewer than two seeds on a side it is \
stated as untested (for accuracy, a difference under twice one seed's noise, the scatter of validation \
accuracy around its 3-epoch moving average, is no clear change). Speed must differ by 25%, \
smoothness by 50%, the gap by one point and the onset by one epoch (two with one seed) to be mentioned; \"overfitting \
starts earlier\" also needs the train–validation gap to grow by a point after the minimum. A \
seed that diverged or did not learn (within 5 points of chance, or a last validation loss ten \
times that of a uniform guess) is named, and the comparisons use the seeds that learned. A seed \
whose last validation accuracy is more than 10 points below its best collapsed: its accuracy \
counts, its curve is not read. Curves are read only from runs of at least 5 epochs. \"Still \
rising\" means the last epoch is within half a point of the best and the slope over the last \
quarter of training (at least 3 epochs) is positive; \"plateaued\" means the best epoch came \
before the last quarter; both must hold in every seed read. Time per epoch is wall time, which \
follows the machine's load: it is shown, never compared.";

/// `p = 0.012`, `p < 0.001`.
fn p_text(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("= {p:.3}")
    }
}

/// How a claim was decided: the test and its p, or why it is untested.
fn how(c: &Claim) -> String {
    match (c.p, c.p_holm) {
        (Some(p), Some(h)) => format!(
            "Welch's t-test over {} vs {} seeds, p {}, Holm-adjusted over {} test{}: p {}",
            c.base.len(),
            c.values.len(),
            p_text(p),
            c.tests,
            if c.tests == 1 { "" } else { "s" },
            p_text(h)
        ),
        _ if c.base.len() <= 1 && c.values.len() <= 1 => "one seed, untested".into(),
        _ => format!(
            "untested: {} vs {} seeds, a test needs two a side",
            c.base.len(),
            c.values.len()
        ),
    }
}

fn pct(v: &[f64]) -> String {
    Agg { values: v.to_vec() }.pct()
}

fn epochs(v: &[f64]) -> String {
    Agg { values: v.to_vec() }.num(if v.len() > 1 { 1 } else { 0 })
}

fn seeds_count(k: usize, n: usize) -> String {
    format!("in {k} of {n} seed{}", if n == 1 { "" } else { "s" })
}

/// The words of one claim, from its verdict and figures.
fn words(c: &Claim, base: &[Seeded], other: &[Seeded], lower_accuracy: bool) -> Option<String> {
    use Verdict::*;
    let (b, v) = (&c.base, &c.values);
    let tested = c.p.is_some();
    let said = |up: &str, down: &str| match c.verdict {
        Higher | UntestedHigher => Some(up.to_string()),
        Lower | UntestedLower => Some(down.to_string()),
        _ => None,
    };
    // An observation over every seed read: with one seed it is that seed's.
    let one_seed = if v.len() <= 1 { "; one seed" } else { "" };
    match c.kind {
        Kind::EpochSeconds => None,
        Kind::Failure => Some(failures(base, other)),
        Kind::Collapse => {
            let named: Vec<String> = c
                .base_seeds
                .iter()
                .zip(b)
                .map(|(s, d)| ("the base's seed", s, d))
                .chain(c.seeds.iter().zip(v).map(|(s, d)| ("seed", s, d)))
                .filter(|(_, _, d)| **d > super::claims::COLLAPSE)
                .map(|(who, s, d)| {
                    format!(
                        "{who} {s} collapsed: its validation accuracy ended {:.1} points below its best, so its curve is not read",
                        d * 100.0
                    )
                })
                .collect();
            Some(named.join("; "))
        }
        Kind::Accuracy => Some(match c.verdict {
            NoClearChange => {
                let why = match c.noise {
                    Some(n) if !tested => format!(
                        "{}; within twice its noise of {:.1} points",
                        how(c),
                        n * 100.0
                    ),
                    _ => how(c),
                };
                format!(
                    "no clear change in best validation accuracy ({} vs {}; {why})",
                    pct(b),
                    pct(v)
                )
            }
            _ => format!(
                "best validation accuracy {} → {} ({:+.1} points; {})",
                pct(b),
                pct(v),
                (super::stats::mean(v) - super::stats::mean(b)) * 100.0,
                how(c)
            ),
        }),
        Kind::TestAccuracy => Some(match c.verdict {
            NoClearChange => format!(
                "no clear change in test accuracy of the best weights ({} vs {}; {})",
                pct(b),
                pct(v),
                how(c)
            ),
            _ => format!(
                "test accuracy of the best weights {} → {} ({:+.1} points; {})",
                pct(b),
                pct(v),
                (super::stats::mean(v) - super::stats::mean(b)) * 100.0,
                how(c)
            ),
        }),
        Kind::Gap => {
            let figures = format!(
                "train − validation accuracy at the last epoch {:.1} → {:.1} points",
                super::stats::mean(b) * 100.0,
                super::stats::mean(v) * 100.0
            );
            if c.verdict == NoClearChange {
                return Some(format!(
                    "no clear change in the train–validation gap ({figures}; {})",
                    how(c)
                ));
            }
            let w = said(
                "wider train–validation gap",
                "narrower train–validation gap",
            )?;
            Some(format!("{w}: {figures} ({})", how(c)))
        }
        Kind::Speed => {
            let figures = format!(
                "90% of its best by epoch {} instead of {}",
                epochs(v),
                epochs(b)
            );
            if c.verdict == NoClearChange {
                return Some(format!(
                    "no clear change in convergence speed ({figures}; {})",
                    how(c)
                ));
            }
            let w = said("converged slower", "converged faster")?;
            Some(format!("{w}: {figures} ({})", how(c)))
        }
        Kind::Onset => {
            let at = format!(
                "validation loss is lowest at epoch {} (base: {})",
                epochs(v),
                epochs(b)
            );
            match c.verdict {
                NoClearChange => Some(format!(
                    "no clear change in when overfitting starts ({at}; {})",
                    how(c)
                )),
                Lower | UntestedLower => Some(format!(
                    "overfitting starts earlier: {at} and the train–validation gap grows by {:.1} points after it ({})",
                    c.gap_growth.unwrap_or(0.0) * 100.0,
                    how(c)
                )),
                Higher | UntestedHigher => {
                    Some(format!("overfitting starts later: {at} ({})", how(c)))
                }
                _ => None,
            }
        }
        Kind::NoOverfitting => {
            let last = other.iter().map(|s| s.stats.epochs).max().unwrap_or(0);
            Some(format!(
                "no overfitting within {last} epochs: validation loss is lowest at the last epoch {} (the base's at epoch {}){one_seed}",
                seeds_count(v.len(), v.len()),
                epochs(b)
            ))
        }
        Kind::Smoothness => {
            let spreads = format!(
                "epoch-to-epoch spread of validation accuracy {:.2} vs {:.2} points",
                super::stats::mean(v) * 100.0,
                super::stats::mean(b) * 100.0
            );
            if c.verdict == NoClearChange {
                return Some(format!(
                    "no clear change in smoothness ({spreads}; {})",
                    how(c)
                ));
            }
            let w = said("noisier validation curve", "smoother validation curve")?;
            Some(format!("{w} ({spreads}; {})", how(c)))
        }
        Kind::Rising => {
            let last = other.iter().map(|s| s.stats.epochs).max().unwrap_or(0);
            let more = if lower_accuracy {
                ": more epochs could narrow the gap"
            } else {
                ""
            };
            Some(format!(
                "still rising at its last epoch ({last}) {}{more}",
                seeds_count(v.len(), v.len())
            ))
        }
        Kind::Plateau => {
            let best: Vec<f64> = other
                .iter()
                .filter(|s| c.seeds.contains(&s.seed))
                .filter_map(|s| s.stats.best_epoch.map(|e| e as f64))
                .collect();
            let last = other.iter().map(|s| s.stats.epochs).max().unwrap_or(0);
            Some(format!(
                "plateaued: its best validation accuracy came before the last quarter of training (epoch {} of {last}) {}",
                epochs(&best),
                seeds_count(v.len(), v.len())
            ))
        }
    }
}

/// The failure sentence: each kind of failure with its seeds, per side.
fn failures(base: &[Seeded], other: &[Seeded]) -> String {
    let mut parts = Vec::new();
    for (side, who) in [(other, ""), (base, "the base ")] {
        for kind in ["diverged", "did not learn", "loss exploded"] {
            let hit: Vec<&Seeded> = side
                .iter()
                .filter(|s| failure_kind(s.stats) == Some(kind))
                .collect();
            if hit.is_empty() {
                continue;
            }
            let detail = match kind {
                "did not learn" => format!(
                    "best validation accuracy {}, within 5 points of chance",
                    Agg::of(&hit.iter().map(|s| s.stats).collect::<Vec<_>>(), |s| s
                        .best_val_acc)
                    .pct()
                ),
                "diverged" => {
                    let at: Vec<String> = hit
                        .iter()
                        .filter_map(|s| s.stats.diverged_at.map(|e| e.to_string()))
                        .collect();
                    format!("loss not finite at epoch {}", at.join(", "))
                }
                _ => hit
                    .iter()
                    .find_map(|s| {
                        let why = s.stats.failure.as_deref()?;
                        let why = why.strip_prefix("loss exploded: ").unwrap_or(why);
                        Some(format!("seed {}: {why}", s.seed))
                    })
                    .unwrap_or_default(),
            };
            let which = if side.len() > 1 {
                let seeds: Vec<String> = hit.iter().map(|s| s.seed.to_string()).collect();
                format!(
                    " {} (seed {})",
                    seeds_count(hit.len(), side.len()),
                    seeds.join(", ")
                )
            } else {
                String::new()
            };
            let kind = kind.replace("loss exploded", "its loss exploded");
            parts.push(format!("{who}{kind}{which}: {detail}"));
        }
    }
    let learned = |side: &[Seeded]| side.iter().filter(|s| s.stats.failure.is_none()).count();
    let (bl, vl) = (learned(base), learned(other));
    if bl == 0 {
        parts.push("nothing to compare against".into());
    } else if vl == 0 {
        parts.push("no conclusion is drawn from its curves".into());
    } else if bl < base.len() || vl < other.len() {
        parts.push(format!(
            "the comparisons that follow use the seeds that learned ({bl} of the base's, {vl} of this variant's)"
        ));
    }
    parts.join("; ")
}

/// The bullet of one comparison; fills each claim's words.
pub fn bullet(
    c: &mut Comparison,
    base: &[Seeded],
    other: &[Seeded],
    test_acc: (&Agg, &Agg),
) -> String {
    let direction = match (c.base_value.parse::<f64>(), c.value.parse::<f64>()) {
        (Ok(x), Ok(y)) if y > x => "Raising",
        (Ok(x), Ok(y)) if y < x => "Lowering",
        _ => "Changing",
    };
    let lower = c.claims.iter().any(|c| {
        c.kind == Kind::Accuracy && matches!(c.verdict, Verdict::Lower | Verdict::UntestedLower)
    });
    let mut parts = Vec::new();
    for claim in &mut c.claims {
        claim.words = words(claim, base, other, lower);
        if let Some(w) = &claim.words {
            parts.push(w.clone());
            if claim.kind == Kind::Failure && !any_learned(other) {
                parts.push(format!(
                    "test accuracy {} → {}",
                    test_acc.0.pct(),
                    test_acc.1.pct()
                ));
            }
        }
    }
    format!(
        "- **{direction} `{}` from {} to {}:** {}.",
        c.field,
        c.base_value,
        c.value,
        parts.join("; ")
    )
}

fn any_learned(side: &[Seeded]) -> bool {
    side.iter().any(|s| s.stats.failure.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::{compare, decide, holm};
    use crate::report::stats::{of_curves, Stats};
    use crate::train::fit::EpochMetrics;

    /// A run from its validation accuracies; validation loss falls to `min_at` then rises,
    /// training accuracy runs `gap` above validation and grows by `growth` after `min_at`.
    fn run(val: &[f64], min_at: usize, growth: f64) -> Stats {
        let m: Vec<EpochMetrics> = val
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let e = i + 1;
                let after = e.saturating_sub(min_at) as f64;
                EpochMetrics {
                    epoch: e,
                    train_loss: 2.0 - 0.05 * e as f64,
                    train_acc: a + 0.05 + growth * after / val.len() as f64,
                    val_loss: Some(1.5 + 0.02 * (e as f64 - min_at as f64).abs()),
                    val_acc: Some(a),
                    lr: 0.01,
                    train_penalty: None,
                    val_penalty: None,
                    seconds: None,
                }
            })
            .collect();
        let failure = crate::train::metrics::failed_to_learn(&m, 10);
        of_curves(&m, &[], None, failure)
    }

    /// `base` against `other` (seeds 42, 43, …), decided and in words.
    fn said(base: &[Stats], other: &[Stats]) -> (String, Comparison) {
        fn seeded(s: &[Stats]) -> Vec<Seeded<'_>> {
            s.iter()
                .enumerate()
                .map(|(i, stats)| Seeded {
                    seed: 42 + i as u64,
                    stats,
                })
                .collect()
        }
        let (b, o) = (seeded(base), seeded(other));
        let mut c = vec![Comparison {
            field: "optimizer.lr".into(),
            variant: "optimizer.lr=0.1".into(),
            base_value: "0.01".into(),
            value: "0.1".into(),
            claims: compare(&b, &o),
        }];
        decide(&mut c);
        let zero = Agg { values: vec![0.3] };
        let text = bullet(&mut c[0], &b, &o, (&zero, &zero));
        (text, c.remove(0))
    }

    fn kinds(c: &Comparison) -> Vec<Kind> {
        c.claims.iter().map(|c| c.kind).collect()
    }

    fn rising(n: usize, from: f64, step: f64) -> Vec<f64> {
        (0..n).map(|i| from + step * i as f64).collect()
    }

    #[test]
    fn a_two_epoch_study_makes_no_shape_or_speed_claims() {
        let (text, c) = said(
            &[run(&[0.175, 0.182], 2, 0.0)],
            &[run(&[0.20, 0.20], 2, 0.0)],
        );
        assert_eq!(
            kinds(&c),
            vec![Kind::Accuracy, Kind::TestAccuracy],
            "{text}"
        );
        for shape in [
            "rising",
            "plateau",
            "converged",
            "overfitting",
            "smooth",
            "noisier",
        ] {
            assert!(!text.contains(shape), "{shape}: {text}");
        }
    }

    #[test]
    fn still_rising_needs_the_last_epoch_at_the_best_and_a_rising_last_quarter() {
        let base = [run(&rising(10, 0.30, 0.01), 10, 0.0)];
        let up = rising(10, 0.20, 0.01);
        let (text, c) = said(&base, &[run(&up, 10, 0.0)]);
        assert!(kinds(&c).contains(&Kind::Rising), "{text}");
        assert!(text.contains("still rising at its last epoch (10) in 1 of 1 seed: more epochs could narrow the gap"), "{text}");
        // Best at epoch 9, two points lower at 10: not rising, and not a plateau either
        // (epoch 9 is inside the last quarter).
        let mut dropped = up.clone();
        dropped[9] = dropped[8] - 0.02;
        let (text, c) = said(&base, &[run(&dropped, 10, 0.0)]);
        assert!(
            !kinds(&c).contains(&Kind::Rising) && !kinds(&c).contains(&Kind::Plateau),
            "{text}"
        );
        // A tie at the best on the last epoch, the last quarter still rising: rising.
        let mut tie = up.clone();
        tie[9] = tie[8];
        tie[8] = tie[7] + 0.005;
        tie[9] = tie[8];
        let (text, _) = said(&base, &[run(&tie, 10, 0.0)]);
        assert!(text.contains("still rising"), "{text}");
    }

    #[test]
    fn plateaued_only_when_the_best_epoch_is_before_the_last_quarter() {
        let base = [run(&rising(20, 0.30, 0.005), 20, 0.0)];
        let mut flat: Vec<f64> = rising(20, 0.20, 0.01);
        for a in flat.iter_mut().skip(10) {
            *a = 0.25;
        }
        flat[9] = 0.30;
        let (text, c) = said(&base, &[run(&flat, 20, 0.0)]);
        assert!(kinds(&c).contains(&Kind::Plateau), "{text}");
        assert!(text.contains("plateaued: its best validation accuracy came before the last quarter of training (epoch 10 of 20) in 1 of 1 seed"), "{text}");
        // Best at epoch 17 of 20: inside the last quarter.
        let mut late = flat.clone();
        late[16] = 0.31;
        let (text, c) = said(&base, &[run(&late, 20, 0.0)]);
        assert!(!kinds(&c).contains(&Kind::Plateau), "{text}");
    }

    #[test]
    fn a_collapsed_seed_is_named_counted_for_accuracy_and_its_curve_not_read() {
        let good = |d: f64| run(&rising(10, 0.30 + d, 0.01), 10, 0.0);
        let base = [good(0.0), good(0.002), good(-0.002)];
        let mut fell = rising(10, 0.20, 0.01);
        fell[3] = 0.268;
        fell[9] = 0.137;
        let other = [good(0.01), run(&fell, 10, 0.0), good(0.012)];
        let (text, c) = said(&base, &other);
        assert!(
            text.contains("seed 43 collapsed: its validation accuracy ended"),
            "{text}"
        );
        let acc = c.claims.iter().find(|c| c.kind == Kind::Accuracy).unwrap();
        assert_eq!(acc.seeds, vec![42, 43, 44]);
        let speed = c.claims.iter().find(|c| c.kind == Kind::Speed).unwrap();
        assert_eq!(
            speed.seeds,
            vec![42, 44],
            "the collapsed seed's curve is not read"
        );
    }

    #[test]
    fn a_failed_seed_is_counted_per_seed_and_the_test_uses_the_seeds_that_learned() {
        let good = |d: f64| run(&rising(10, 0.30 + d, 0.01), 10, 0.0);
        let base = [good(0.0), good(0.002), good(-0.002)];
        let stuck = run(
            &[0.10, 0.11, 0.105, 0.11, 0.10, 0.11, 0.10, 0.11, 0.105, 0.11],
            3,
            0.0,
        );
        assert!(stuck.failure.is_some());
        let (text, c) = said(&base, &[good(0.05), stuck.clone(), good(0.052)]);
        assert!(
            text.contains(
                "did not learn in 1 of 3 seeds (seed 43): best validation accuracy 11.0%"
            ),
            "{text}"
        );
        assert!(
            text.contains("the seeds that learned (3 of the base's, 2 of this variant's)"),
            "{text}"
        );
        let acc = c.claims.iter().find(|c| c.kind == Kind::Accuracy).unwrap();
        assert_eq!((acc.base.len(), acc.values.len()), (3, 2));
        assert!(text.contains("Welch's t-test over 3 vs 2 seeds"), "{text}");
        // Every seed failed: the mean ± sd of those seeds, not one seed's figure.
        let mut stuck2 = stuck.clone();
        stuck2.best_val_acc = Some(0.116);
        let (text, c) = said(&base, &[stuck.clone(), stuck2]);
        assert_eq!(kinds(&c), vec![Kind::Failure], "{text}");
        assert!(
            text.contains(
                "did not learn in 2 of 2 seeds (seed 42, 43): best validation accuracy 11.3% ± 0.4"
            ),
            "{text}"
        );
    }

    #[test]
    fn accuracy_is_called_different_only_by_the_test_and_one_seed_says_untested() {
        let at = |a: f64| run(&rising(10, a - 0.09, 0.01), 10, 0.0);
        let base = [at(0.380), at(0.385), at(0.379)];
        let (text, _) = said(&base, &[at(0.360), at(0.362), at(0.358)]);
        assert!(text.contains("best validation accuracy 38.1% ± 0.3 → 36.0% ± 0.2 (-2.1 points; Welch's t-test over 3 vs 3 seeds, p = 0.001, Holm-adjusted over 1 test: p = 0.001)"), "{text}");
        let (text, _) = said(&base, &[at(0.36), at(0.40), at(0.37)]);
        assert!(
            text.contains(
                "no clear change in best validation accuracy (38.1% ± 0.3 vs 37.7% ± 2.1; Welch's"
            ),
            "{text}"
        );
        let (text, _) = said(&base[..1], &[at(0.360)]);
        assert!(text.contains("(-2.0 points; one seed, untested)"), "{text}");
        // One seed within twice its noise (a zigzag of ±1.5 points): no clear change.
        let zig = |a: f64| -> Vec<f64> {
            (0..10)
                .map(|i| a + if i % 2 == 0 { 0.015 } else { -0.015 })
                .collect()
        };
        let (text, _) = said(&[run(&zig(0.38), 10, 0.0)], &[run(&zig(0.37), 10, 0.0)]);
        assert!(text.contains("no clear change in best validation accuracy (39.5% vs 38.5%; one seed, untested; within twice its noise of"), "{text}");
    }

    #[test]
    fn holm_adjusts_over_the_reports_tests_of_one_kind() {
        let claim = |p: f64| crate::report::claims::Claim {
            kind: Kind::Accuracy,
            base_seeds: vec![42, 43, 44],
            seeds: vec![42, 43, 44],
            base: vec![0.30, 0.31, 0.32],
            values: vec![0.35, 0.36, 0.37],
            p: Some(p),
            p_holm: None,
            tests: 0,
            noise: None,
            gap_growth: None,
            verdict: Verdict::TooSmall,
            words: None,
        };
        let cmp = |p: f64| Comparison {
            field: "f".into(),
            variant: "f=1".into(),
            base_value: "0".into(),
            value: "1".into(),
            claims: vec![claim(p)],
        };
        let mut one = vec![cmp(0.03)];
        decide(&mut one);
        assert_eq!(one[0].claims[0].verdict, Verdict::Higher);
        let mut two = vec![cmp(0.03), cmp(0.04)];
        decide(&mut two);
        for c in &two {
            assert_eq!(c.claims[0].p_holm, Some(0.06));
            assert_eq!(c.claims[0].verdict, Verdict::NoClearChange);
        }
        assert_eq!(holm(&[0.01, 0.5]), vec![0.02, 0.5]);
    }

    #[test]
    fn convergence_speed_is_tested_over_seeds_and_untested_with_one() {
        let slow = |d: f64| run(&rising(10, 0.10 + d, 0.03), 10, 0.0);
        let fast = |d: f64| {
            let mut v = vec![0.36 + d; 10];
            v[0] = 0.2;
            for (i, a) in v.iter_mut().enumerate() {
                *a += 0.004 * i as f64;
            }
            run(&v, 10, 0.0)
        };
        let (text, c) = said(&[slow(0.0)], &[fast(0.0)]);
        assert!(
            text.contains(
                "converged faster: 90% of its best by epoch 2 instead of 9 (one seed, untested)"
            ),
            "{text}"
        );
        assert!(kinds(&c).contains(&Kind::Speed));
        let (text, _) = said(
            &[slow(0.0), slow(0.001), slow(0.002)],
            &[fast(0.0), fast(0.001), fast(0.002)],
        );
        assert!(text.contains("converged faster: 90% of its best by epoch 2.0 ± 0.0 instead of 9.0 ± 0.0 (Welch's"), "{text}");
    }

    #[test]
    fn a_wider_gap_is_tested_over_seeds_and_a_small_one_not_mentioned() {
        let curve = rising(20, 0.30, 0.002);
        let seeds = |growth: f64| -> Vec<Stats> {
            (0..3)
                .map(|i| run(&curve, 18, growth + 0.002 * i as f64))
                .collect()
        };
        // The gap at the last epoch grows by 20 points (× 2/20 after epoch 18 of 20).
        let (text, c) = said(&seeds(0.0), &seeds(2.0));
        let gap = c
            .claims
            .iter()
            .find(|c| c.kind == Kind::Gap)
            .expect("a gap claim");
        assert_eq!(gap.verdict, Verdict::Higher, "{text}");
        assert!(text.contains("wider train–validation gap: train − validation accuracy at the last epoch 5.0 → 25.0 points (Welch's"), "{text}");
        // Half a point wider: below the point a gap needs to be mentioned.
        let (text, c) = said(&seeds(0.0), &seeds(0.05));
        let gap = c
            .claims
            .iter()
            .find(|c| c.kind == Kind::Gap)
            .expect("a gap claim");
        assert_eq!(gap.verdict, Verdict::TooSmall, "{text}");
        assert!(!text.contains("gap:"), "{text}");
    }

    #[test]
    fn overfitting_earlier_needs_an_earlier_minimum_and_a_growing_gap() {
        let curve = rising(20, 0.30, 0.002);
        let base = [run(&curve, 18, 0.0)];
        let (text, _) = said(&base, &[run(&curve, 6, 0.15)]);
        assert!(text.contains("overfitting starts earlier: validation loss is lowest at epoch 6 (base: 18) and the train–validation gap grows by"), "{text}");
        assert!(text.contains("one seed, untested"), "{text}");
        let (text, _) = said(&base, &[run(&curve, 6, 0.0)]);
        assert!(!text.contains("overfitting"), "{text}");
        // One epoch apart with one seed is below the two it needs.
        let (text, _) = said(&base, &[run(&curve, 17, 0.2)]);
        assert!(!text.contains("overfitting"), "{text}");
        // Lowest at the last epoch while the base's is at 18 of 20: no overfitting.
        let (text, c) = said(&base, &[run(&curve, 20, 0.0)]);
        assert!(kinds(&c).contains(&Kind::NoOverfitting), "{text}");
        assert!(text.contains("no overfitting within 20 epochs: validation loss is lowest at the last epoch in 1 of 1 seed (the base's at epoch 18)"), "{text}");
    }

    #[test]
    fn no_sentence_compares_wall_time() {
        let base = [run(&rising(10, 0.30, 0.01), 10, 0.0)];
        let mut slow = run(&rising(10, 0.30, 0.01), 10, 0.0);
        slow.seconds_per_epoch = 3.0;
        let (text, _) = said(&base, &[slow]);
        assert!(!text.contains("time") && !text.contains(" s "), "{text}");
    }
}
