//! The batch-size claims compare one batch size with each other of its study, not with
//! the base, so the study's report holds no test of them: they are tested here, over the
//! per-run figures its `claims.json` records (Welch over the seeds that learned, Holm over
//! the comparisons of the claimed size within the study).

use super::super::claims::{holm, Kind, Verdict, ALPHA};
use super::super::stats::{mean, welch};
use super::classic::{Evidence, Says};
use super::Study;

/// One batch size against each other of the family's batch-size studies, on the test
/// accuracy of the best weights (seeds that learned) or the steady time per epoch.
pub fn against_each(studies: &[Study], family: &str, size: &str, kind: Kind) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (si, s) in studies
        .iter()
        .enumerate()
        .filter(|(_, s)| s.family == family)
    {
        let Some(c0) = s
            .claims
            .comparisons
            .iter()
            .find(|c| c.field == "batch_size")
        else {
            continue;
        };
        // Every value of the study: the base's, then each variant's.
        let mut values: Vec<(String, String)> = vec![(c0.base_value.clone(), "base".into())];
        values.extend(
            s.claims
                .comparisons
                .iter()
                .filter(|c| c.field == "batch_size")
                .map(|c| (c.value.clone(), c.variant.clone())),
        );
        let Some((_, claimed_variant)) = values.iter().find(|(v, _)| v == size).cloned() else {
            continue;
        };
        let figures = |variant: &str| -> Vec<f64> {
            let mut runs: Vec<_> = s
                .claims
                .runs
                .iter()
                .filter(|r| r.variant == variant)
                .collect();
            runs.sort_by_key(|r| r.seed);
            runs.iter()
                .filter(|r| r.failure.is_none())
                .map(|r| {
                    if kind == Kind::TestAccuracy {
                        r.test_acc
                    } else {
                        r.seconds_per_epoch
                    }
                })
                .collect()
        };
        let mine = figures(&claimed_variant);
        let start = out.len();
        for (value, variant) in values.iter().filter(|(v, _)| v != size) {
            let theirs = figures(variant);
            let p = welch(&mine, &theirs).map(|(_, _, p)| p);
            out.push(Evidence {
                study: si,
                variant: format!("batch_size={size} vs batch_size={value}"),
                kind,
                claimed: mine.clone(),
                other: theirs.clone(),
                p_holm: p,
                verdict: None,
                says: if mine.is_empty() || theirs.is_empty() {
                    Says::Failed
                } else if p.is_none() {
                    Says::Untested
                } else {
                    Says::NotSignificant
                },
            });
        }
        // Holm over this study's comparisons of the claimed size, then each verdict.
        let tested: Vec<usize> = (start..out.len())
            .filter(|&i| out[i].says == Says::NotSignificant)
            .collect();
        let adjusted = holm(
            &tested
                .iter()
                .map(|&i| out[i].p_holm.unwrap_or(1.0))
                .collect::<Vec<_>>(),
        );
        for (&i, p) in tested.iter().zip(adjusted) {
            let e = &mut out[i];
            e.p_holm = Some(p);
            if p < ALPHA {
                let higher = mean(&e.claimed) > mean(&e.other);
                e.verdict = Some(if higher {
                    Verdict::Higher
                } else {
                    Verdict::Lower
                });
                e.says = if higher {
                    Says::Supports
                } else {
                    Says::Contradicts
                };
            } else {
                e.verdict = Some(Verdict::NoClearChange);
            }
        }
    }
    out
}
