//! The classic claims of the seed study, each checked per family against the studies.
//!
//! The rules (also written in the report):
//! - A claim about a change ("a smaller learning rate is smoother") reads the study's own
//!   verdict on each variant that makes that change (every lowered learning rate): a
//!   significant difference the claimed way **supports** it, the other way **contradicts**
//!   it; a verdict of no clear change (or a change below the size the figure needs) is
//!   **not significant**; fewer than two seeds a side is **untested**; a variant with no
//!   figure (every seed failed) is **failed runs**. Over the variants: supported when one
//!   supports and none contradicts, contradicted the other way round, **mixed** when both.
//! - "Does not matter" (the initializer of the linear model) is supported when no variant
//!   changes best validation accuracy significantly and each mean moves by at most
//!   [`SAME_WITHIN`]; contradicted by a significant change; otherwise not significant.
//! - "Batch 128 generalises best" compares the test accuracy of the best weights of batch
//!   128 with every other batch size of the study (Welch over seeds, Holm's correction over
//!   those comparisons): supported when 128 is significantly better than each, contradicted
//!   when another size is significantly better than 128. "Batch 32 is slowest per epoch"
//!   does the same with the median wall time of an epoch after the first (timings compared
//!   only within one study, one machine).
//! - Not studied: the family has no study of that hyperparameter (or not the values named).

use serde::{Deserialize, Serialize};

use super::super::claims::{Claim, Comparison, Kind, Verdict};
use super::super::stats::mean;
use super::Study;

/// The rules, as the report states them.
pub const RULES: &str = "How each verdict is reached. A claim about a change (a smaller \
learning rate is smoother) reads its study's verdict on every variant making that change (every \
smaller learning rate): a significant difference the claimed way supports it, the other way \
contradicts it (Welch's t-test over seeds, Holm-corrected within the study, as its report says); \
no clear change, or one below the size a figure needs (speed 25%, smoothness 50%, onset one \
epoch), is not significant; fewer than two seeds on a side is untested; a variant whose every seed \
failed gives failed runs. Over the variants: supported when one supports and none contradicts, \
contradicted the other way round, mixed when both. \"Smoother\" is a smaller standard deviation \
of the epoch-to-epoch change of validation accuracy, computed per seed and tested like the other \
figures. \"Does not matter\" is supported when no variant changes best validation accuracy \
significantly and every mean moves by at most one point, contradicted by a significant change, \
and otherwise not significant. \"Batch 128 generalises best\" compares the test accuracy of the \
best weights of batch 128 with each other batch size of its study (Welch over seeds that learned, \
Holm over those comparisons): supported when 128 is significantly better than every other size, \
contradicted when another size is significantly better; \"batch 32 is slowest per epoch\" does \
the same with the median wall time of the epochs after the first, compared only within one study \
(one machine). Not studied: no study of the family varies the value that way.";

/// "Does not matter": each mean within this much (1 point of accuracy).
pub const SAME_WITHIN: f64 = 0.01;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Supported,
    Contradicted,
    Mixed,
    NotSignificant,
    Untested,
    FailedRuns,
    NotStudied,
}

impl Outcome {
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Supported => "supported",
            Outcome::Contradicted => "contradicted",
            Outcome::Mixed => "mixed",
            Outcome::NotSignificant => "not significant",
            Outcome::Untested => "untested (one seed)",
            Outcome::FailedRuns => "failed runs",
            Outcome::NotStudied => "not studied",
        }
    }
}

/// What one comparison says of a claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Says {
    Supports,
    Contradicts,
    NotSignificant,
    Untested,
    Failed,
}

/// One comparison read for a claim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Evidence {
    /// Index into the conclusions' studies.
    pub study: usize,
    /// The variant (or, for batch sizes, `batch_size=128 vs batch_size=32`).
    pub variant: String,
    pub kind: Kind,
    /// Per-seed figures: the side the claim is about first (ReLU, batch 128, batch 32),
    /// the other second.
    pub claimed: Vec<f64>,
    pub other: Vec<f64>,
    /// The study's (or, for batch sizes, this check's) Holm-adjusted p.
    pub p_holm: Option<f64>,
    pub verdict: Option<Verdict>,
    pub says: Says,
}

/// One part of a classic claim for one family.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Finding {
    pub id: String,
    pub statement: String,
    pub part: String,
    pub family: String,
    pub outcome: Outcome,
    pub evidence: Vec<Evidence>,
    pub words: String,
}

/// What the claimed side's figure should do against the other side.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Higher,
    Lower,
    Same,
}

/// Which comparisons a claim reads.
#[derive(Clone, Copy)]
enum Select {
    /// Variants that lower / raise a numeric field; the claimed side is the variant.
    Lowered(&'static str),
    Raised(&'static str),
    /// Every variant of the field.
    Any(&'static str),
    /// ReLU against tanh, either way round; the claimed side is ReLU.
    ReluVsTanh,
    /// One batch size against each other of the study, on a per-run figure.
    Batch(&'static str),
}

struct Part {
    name: &'static str,
    kind: Kind,
    expect: Expect,
}

struct Hypothesis {
    id: &'static str,
    statement: &'static str,
    select: Select,
    /// Families it is about; empty: every family.
    families: &'static [&'static str],
    parts: &'static [Part],
}

const HYPOTHESES: &[Hypothesis] = &[
    Hypothesis {
        id: "smaller_lr",
        statement: "A smaller learning rate gives smoother but slower learning",
        select: Select::Lowered("optimizer.lr"),
        families: &[],
        parts: &[
            Part {
                name: "smoother validation curve",
                kind: Kind::Smoothness,
                expect: Expect::Lower,
            },
            Part {
                name: "slower: more epochs to 90% of the best",
                kind: Kind::Speed,
                expect: Expect::Higher,
            },
        ],
    },
    Hypothesis {
        id: "high_momentum",
        statement: "A high momentum converges faster and overfits earlier",
        select: Select::Raised("optimizer.momentum"),
        families: &[],
        parts: &[
            Part {
                name: "faster: fewer epochs to 90% of the best",
                kind: Kind::Speed,
                expect: Expect::Lower,
            },
            Part {
                name: "overfits earlier: validation loss lowest sooner",
                kind: Kind::Onset,
                expect: Expect::Lower,
            },
        ],
    },
    Hypothesis {
        id: "initializer_linear",
        statement: "The kernel initializer does not matter for the linear model",
        select: Select::Any("initializer"),
        families: &["linear", "perceptron"],
        parts: &[Part {
            name: "same best validation accuracy",
            kind: Kind::Accuracy,
            expect: Expect::Same,
        }],
    },
    Hypothesis {
        id: "relu_vs_tanh",
        statement: "ReLU beats tanh, but overfits earlier and is a little slower",
        select: Select::ReluVsTanh,
        families: &[],
        parts: &[
            Part {
                name: "ReLU reaches a higher best validation accuracy",
                kind: Kind::Accuracy,
                expect: Expect::Higher,
            },
            Part {
                name: "ReLU overfits earlier",
                kind: Kind::Onset,
                expect: Expect::Lower,
            },
            Part {
                name: "ReLU is slower: more epochs to 90% of the best",
                kind: Kind::Speed,
                expect: Expect::Higher,
            },
        ],
    },
    Hypothesis {
        id: "batch_128",
        statement: "Batch size 128 generalises best",
        select: Select::Batch("128"),
        families: &[],
        parts: &[Part {
            name: "highest test accuracy of the best weights",
            kind: Kind::TestAccuracy,
            expect: Expect::Higher,
        }],
    },
    Hypothesis {
        id: "batch_32",
        statement: "Batch size 32 is the slowest per epoch",
        select: Select::Batch("32"),
        families: &[],
        parts: &[Part {
            name: "longest wall time per epoch",
            kind: Kind::EpochSeconds,
            expect: Expect::Higher,
        }],
    },
];

/// What a study's claim says of an expectation, the claimed side being the variant
/// (`flip`: the base).
fn says(claim: Option<&Claim>, expect: Expect, flip: bool) -> Says {
    let Some(c) = claim.filter(|c| !c.base.is_empty() && !c.values.is_empty()) else {
        return Says::Failed;
    };
    if c.kind == Kind::NoOverfitting {
        // The variant never overfits where the base does: the opposite of earlier.
        return if flip {
            Says::Supports
        } else {
            Says::Contradicts
        };
    }
    let up = match c.verdict {
        Verdict::Higher => Some(true),
        Verdict::Lower => Some(false),
        Verdict::UntestedHigher | Verdict::UntestedLower => return Says::Untested,
        _ => None,
    };
    let delta = mean(&c.values) - mean(&c.base);
    match (expect, up) {
        (Expect::Same, Some(_)) => Says::Contradicts,
        (Expect::Same, None) if c.p_holm.is_none() => Says::Untested,
        (Expect::Same, None) if delta.abs() <= SAME_WITHIN => Says::Supports,
        (_, None) => Says::NotSignificant,
        (e, Some(up)) => {
            if (up != flip) == (e == Expect::Higher) {
                Says::Supports
            } else {
                Says::Contradicts
            }
        }
    }
}

fn outcome(evidence: &[Evidence], all_needed: bool) -> Outcome {
    let n = |s: Says| evidence.iter().filter(|e| e.says == s).count();
    let (sup, con, ns, unt) = (
        n(Says::Supports),
        n(Says::Contradicts),
        n(Says::NotSignificant),
        n(Says::Untested),
    );
    if evidence.is_empty() {
        Outcome::NotStudied
    } else if sup + con + ns + unt == 0 {
        Outcome::FailedRuns
    } else if all_needed {
        if con > 0 {
            Outcome::Contradicted
        } else if sup > 0 && sup == evidence.len() - n(Says::Failed) {
            Outcome::Supported
        } else if ns > 0 || sup > 0 {
            Outcome::NotSignificant
        } else {
            Outcome::Untested
        }
    } else if sup > 0 && con > 0 {
        Outcome::Mixed
    } else if sup > 0 {
        Outcome::Supported
    } else if con > 0 {
        Outcome::Contradicted
    } else if ns > 0 {
        Outcome::NotSignificant
    } else {
        Outcome::Untested
    }
}

/// The comparisons a selection reads in one study, and whether the claimed side is the base.
fn selected(sel: Select, c: &Comparison) -> Option<bool> {
    let num = |v: &str| v.parse::<f64>().ok();
    match sel {
        Select::Lowered(f) => {
            (c.field == f && num(&c.value)? < num(&c.base_value)?).then_some(false)
        }
        Select::Raised(f) => {
            (c.field == f && num(&c.value)? > num(&c.base_value)?).then_some(false)
        }
        Select::Any(f) => (c.field == f).then_some(false),
        Select::ReluVsTanh => {
            if c.field != "model.activation" {
                return None;
            }
            match (c.base_value.as_str(), c.value.as_str()) {
                ("Tanh", "Relu") => Some(false),
                ("Relu", "Tanh") => Some(true),
                _ => None,
            }
        }
        Select::Batch(_) => None,
    }
}

/// Every hypothesis part for every family where it applies.
pub fn check(studies: &[Study], families: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in HYPOTHESES {
        for f in families
            .iter()
            .filter(|f| h.families.is_empty() || h.families.contains(&f.as_str()))
        {
            for part in h.parts {
                let evidence = match h.select {
                    Select::Batch(size) => super::batch::against_each(studies, f, size, part.kind),
                    sel => from_claims(studies, f, sel, part),
                };
                let o = outcome(&evidence, matches!(h.select, Select::Batch(_)));
                let words = words(o, &evidence, studies);
                out.push(Finding {
                    id: h.id.to_string(),
                    statement: h.statement.to_string(),
                    part: part.name.to_string(),
                    family: f.clone(),
                    outcome: o,
                    evidence,
                    words,
                });
            }
        }
    }
    out
}

fn from_claims(studies: &[Study], family: &str, sel: Select, part: &Part) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (si, s) in studies
        .iter()
        .enumerate()
        .filter(|(_, s)| s.family == family)
    {
        for c in &s.claims.comparisons {
            let Some(flip) = selected(sel, c) else {
                continue;
            };
            let claim = c.claims.iter().find(|x| {
                x.kind == part.kind || (part.kind == Kind::Onset && x.kind == Kind::NoOverfitting)
            });
            let (claimed, other) = match claim {
                Some(x) if flip => (x.base.clone(), x.values.clone()),
                Some(x) => (x.values.clone(), x.base.clone()),
                None => (vec![], vec![]),
            };
            out.push(Evidence {
                study: si,
                variant: c.variant.clone(),
                kind: claim.map_or(part.kind, |x| x.kind),
                claimed,
                other,
                p_holm: claim.and_then(|x| x.p_holm),
                verdict: claim.map(|x| x.verdict),
                says: says(claim, part.expect, flip),
            });
        }
    }
    out
}

/// A figure's per-seed values in words: `33.1%`, `12.3 epochs`, `1.52 s`.
pub fn figure(kind: Kind, v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let m = mean(v);
    match kind {
        Kind::Accuracy | Kind::TestAccuracy => format!("{:.1}%", m * 100.0),
        Kind::Gap | Kind::Smoothness => format!("{:.2} points", m * 100.0),
        Kind::Speed | Kind::Onset | Kind::NoOverfitting => format!("epoch {m:.1}"),
        Kind::EpochSeconds => format!("{m:.3} s/epoch"),
        _ => format!("{m:.3}"),
    }
}

fn words(o: Outcome, evidence: &[Evidence], studies: &[Study]) -> String {
    if evidence.is_empty() {
        return "not studied: no study of this family varies it that way".into();
    }
    let fig = figure;
    let parts: Vec<String> = evidence
        .iter()
        .map(|e| {
            let test = match (e.p_holm, e.says) {
                (_, Says::Failed) => "no figure: its seeds failed".to_string(),
                (_, Says::Untested) => "one seed, untested".to_string(),
                (Some(p), s) => format!(
                    "{}, Holm p {}",
                    match s {
                        Says::Supports => "supports",
                        Says::Contradicts => "contradicts",
                        _ => "not significant",
                    },
                    if p < 0.001 {
                        "< 0.001".to_string()
                    } else {
                        format!("= {p:.3}")
                    }
                ),
                (None, Says::Contradicts) => {
                    "contradicts: no overfitting within its epochs (observed in every seed)".into()
                }
                (None, Says::Supports) => "supports".into(),
                (None, _) => "not significant".into(),
            };
            let name = if e.variant.contains(" vs ") {
                e.variant.clone()
            } else {
                format!("{} ({})", e.variant, studies[e.study].stage)
            };
            format!(
                "{name}: {} vs {} ({test})",
                fig(e.kind, &e.claimed),
                fig(e.kind, &e.other)
            )
        })
        .collect();
    format!("{}: {}", o.words(), parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(says: Says) -> Evidence {
        Evidence {
            study: 0,
            variant: "v".into(),
            kind: Kind::Speed,
            claimed: vec![],
            other: vec![],
            p_holm: None,
            verdict: None,
            says,
        }
    }

    #[test]
    fn variants_combine_into_one_verdict_by_the_stated_rule() {
        use Says::*;
        let o = |s: &[Says], all: bool| outcome(&s.iter().map(|&x| ev(x)).collect::<Vec<_>>(), all);
        assert_eq!(o(&[], false), Outcome::NotStudied);
        assert_eq!(o(&[Failed, Failed], false), Outcome::FailedRuns);
        assert_eq!(o(&[Supports, NotSignificant], false), Outcome::Supported);
        assert_eq!(o(&[Supports, Contradicts], false), Outcome::Mixed);
        assert_eq!(o(&[Contradicts, Untested], false), Outcome::Contradicted);
        assert_eq!(
            o(&[NotSignificant, Untested], false),
            Outcome::NotSignificant
        );
        assert_eq!(o(&[Untested], false), Outcome::Untested);
        // "Best of all": every other size must be beaten, none may win.
        assert_eq!(o(&[Supports, Supports, Failed], true), Outcome::Supported);
        assert_eq!(
            o(&[Supports, NotSignificant], true),
            Outcome::NotSignificant
        );
        assert_eq!(o(&[Supports, Contradicts], true), Outcome::Contradicted);
    }

    #[test]
    fn a_claim_reads_the_studys_verdict_the_claimed_way_round() {
        let claim = |verdict: Verdict, p: Option<f64>, base: f64, value: f64| Claim {
            kind: Kind::Accuracy,
            base_seeds: vec![1, 2],
            seeds: vec![1, 2],
            base: vec![base, base],
            values: vec![value, value],
            p,
            p_holm: p,
            tests: 1,
            noise: None,
            gap_growth: None,
            verdict,
            words: None,
        };
        let higher = claim(Verdict::Higher, Some(0.01), 0.3, 0.4);
        assert_eq!(says(Some(&higher), Expect::Higher, false), Says::Supports);
        // ReLU as the base against a tanh variant that is higher: ReLU is lower.
        assert_eq!(says(Some(&higher), Expect::Higher, true), Says::Contradicts);
        assert_eq!(says(Some(&higher), Expect::Same, false), Says::Contradicts);
        let same = claim(Verdict::NoClearChange, Some(0.6), 0.300, 0.305);
        assert_eq!(says(Some(&same), Expect::Same, false), Says::Supports);
        let apart = claim(Verdict::NoClearChange, Some(0.2), 0.30, 0.33);
        assert_eq!(
            says(Some(&apart), Expect::Same, false),
            Says::NotSignificant
        );
        let one = claim(Verdict::UntestedLower, None, 0.3, 0.2);
        assert_eq!(says(Some(&one), Expect::Lower, false), Says::Untested);
        assert_eq!(says(None, Expect::Lower, false), Says::Failed);
    }
}
