//! The conclusions across studies: what each hyperparameter does to each family, and whether
//! the classic claims hold. Built only from what the study reports decided (their
//! `claims.json`), so every cell says what its study's report says, with the same test and
//! correction; nothing is retrained and nothing is re-decided, except the batch-size claims,
//! which compare variants with each other (not with the base) and are tested here
//! ([`classic`]). Everything is written to `conclusions.json` as records a reader (and
//! `tests/claims.rs`) can check against the studies.

mod batch;
pub mod classic;
mod heatmap;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::claims::{self, Claims, Comparison, Kind, RunRef, Verdict};
use super::stats::mean;
pub use render::{matrix_csv, matrix_md, write};

/// Beside the conclusions report: its records.
pub const FILE: &str = "conclusions.json";

/// One study report among the inputs.
pub struct Study {
    /// The report stage (`quick/mlp:momentum_report`).
    pub stage: String,
    /// The report's markdown, relative to the conclusions' own (`mlp/momentum.md`).
    pub link: String,
    /// Its `claims.json`, relative to the conclusions' own markdown.
    pub claims_path: String,
    pub title: String,
    pub family: String,
    pub claims: Claims,
}

impl Study {
    /// The report an input stage built: its claims and headline, found beside its markdown.
    pub fn load(
        stage: &str,
        target: Option<&str>,
        dir: &Path,
        own: Option<&str>,
    ) -> anyhow::Result<Study> {
        let assets = match target {
            Some(t) => PathBuf::from(Path::new(t).file_stem().unwrap_or_default()),
            None => find_assets(dir)
                .with_context(|| format!("`{stage}` holds no {}: is it a report?", claims::FILE))?,
        };
        let read = |f: &str| {
            std::fs::read(dir.join(&assets).join(f))
                .with_context(|| format!("`{stage}` has no {f} (reports of pipe before claims cannot be gathered: rebuild it)"))
        };
        let claims: Claims = serde_json::from_slice(&read(claims::FILE)?)
            .with_context(|| format!("`{stage}`: its {} does not parse", claims::FILE))?;
        let headline: super::html::Headline =
            serde_json::from_slice(&read(super::html::HEADLINE)?)?;
        let md = match target {
            Some(t) => t.to_string(),
            None => format!("{}.md", assets.display()),
        };
        let link = relative(own, &md);
        let claims_path = relative(
            own,
            &format!("{}/{}", md.trim_end_matches(".md"), claims::FILE),
        );
        Ok(Study {
            stage: stage.to_string(),
            link,
            claims_path,
            title: headline.title,
            family: headline.family,
            claims,
        })
    }
}

fn find_assets(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        e.path()
            .join(claims::FILE)
            .is_file()
            .then(|| PathBuf::from(e.file_name()))
    })
}

/// `to` (a path from the project root) as seen from the folder of `from`.
fn relative(from: Option<&str>, to: &str) -> String {
    let Some(from) = from else {
        return to.to_string();
    };
    let base: Vec<&str> = Path::new(from)
        .parent()
        .map(|p| p.iter().filter_map(|c| c.to_str()).collect())
        .unwrap_or_default();
    let target: Vec<&str> = Path::new(to).iter().filter_map(|c| c.to_str()).collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; base.len() - common];
    parts.extend(&target[common..]);
    parts.join("/")
}

/// The rows of the matrix, in the assignment's order; a field no row names is a row of its own.
pub const ROWS: [&str; 9] = [
    "batch size",
    "learning rate",
    "momentum",
    "structure",
    "activation",
    "initializer",
    "dropout",
    "L1",
    "L2",
];

/// The row a varied field belongs to.
pub fn row_of(field: &str) -> String {
    let row = match field {
        "batch_size" => "batch size",
        "optimizer.lr" => "learning rate",
        "optimizer.momentum" => "momentum",
        "model.activation" => "activation",
        "initializer" => "initializer",
        "model.dropout" => "dropout",
        "regularizer.kernel_l1" => "L1",
        "regularizer.kernel_l2" => "L2",
        f if f.starts_with("model.") => "structure",
        f => return f.to_string(),
    };
    row.to_string()
}

/// Which way a variant moves its hyperparameter from the base.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Raised,
    Lowered,
    /// A structure with more / fewer parameters.
    Larger,
    Smaller,
    /// A categorical value (activation, initializer).
    Changed,
}

/// The level of a value: a number, or the largest number of a list (`[0.2, 0.5]`: 0.5; an
/// empty list is 0).
fn level(v: &str) -> Option<f64> {
    if let Ok(x) = v.parse::<f64>() {
        return Some(x);
    }
    let inner = v.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().ok())
        .try_fold(0.0f64, |m, x| x.map(|x| m.max(x)))
}

/// A variant's parameters, mean over its seeds (none recorded: `None`).
fn params(runs: &[RunRef], variant: &str) -> Option<f64> {
    let p: Vec<f64> = runs
        .iter()
        .filter(|r| r.variant == variant && r.parameters > 0)
        .map(|r| r.parameters as f64)
        .collect();
    (!p.is_empty()).then(|| mean(&p))
}

/// The direction of a comparison: structure by parameter count, others by their level.
pub fn direction(row: &str, c: &Comparison, runs: &[RunRef]) -> Direction {
    if row == "structure" {
        return match (params(runs, "base"), params(runs, &c.variant)) {
            (Some(b), Some(v)) if v > b => Direction::Larger,
            (Some(b), Some(v)) if v < b => Direction::Smaller,
            _ => Direction::Changed,
        };
    }
    match (level(&c.base_value), level(&c.value)) {
        (Some(b), Some(v)) if v > b => Direction::Raised,
        (Some(b), Some(v)) if v < b => Direction::Lowered,
        _ => Direction::Changed,
    }
}

/// The figures the matrices show, each a kind of the studies' claims.
pub const FIGURES: [(Kind, &str); 4] = [
    (Kind::Accuracy, "best validation accuracy (points)"),
    (
        Kind::TestAccuracy,
        "test accuracy of the best weights (points)",
    ),
    (Kind::Speed, "epochs to 90% of the best validation accuracy"),
    (
        Kind::Gap,
        "train − validation accuracy at the last epoch (points)",
    ),
];

/// A cell's verdict, from its study's claim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Significant after the study's Holm correction.
    Significant,
    /// Tested, not significant (or below the size the figure needs to be mentioned).
    NotSignificant,
    /// Fewer than two seeds a side.
    Untested,
    /// No seed of the variant learned (or no figure: every seed failed or was unreadable).
    Failed,
}

impl Mark {
    pub fn of(v: Verdict) -> Mark {
        match v {
            Verdict::Higher | Verdict::Lower => Mark::Significant,
            Verdict::UntestedHigher | Verdict::UntestedLower => Mark::Untested,
            _ => Mark::NotSignificant,
        }
    }
}

/// One variant against its base on one figure: a record behind a matrix cell.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Effect {
    pub family: String,
    pub row: String,
    /// Index into [`Conclusions::studies`].
    pub study: usize,
    pub field: String,
    pub variant: String,
    pub base_value: String,
    pub value: String,
    pub direction: Direction,
    /// The variant's parameters (mean over its seeds): how structures are ordered.
    pub parameters: Option<f64>,
    pub kind: Kind,
    /// Mean of the variant's seeds − mean of the base's (accuracies in points × 100 are
    /// shown; stored as fractions, as the claims are).
    pub delta: Option<f64>,
    pub mark: Mark,
    /// The study's verdict and Holm-adjusted p (as its report says).
    pub verdict: Option<Verdict>,
    pub p_holm: Option<f64>,
    /// Seeds read on each side, and the variant's seeds that failed of all it has.
    pub seeds: (usize, usize),
    pub failed: (usize, usize),
}

/// A study named in the records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StudyRef {
    pub stage: String,
    pub title: String,
    pub family: String,
    pub link: String,
    pub claims: String,
}

/// The base model of a family, over its seeds, as its studies ran it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Base {
    pub family: String,
    pub seeds: Vec<u64>,
    pub best_val_acc: Vec<f64>,
    pub test_acc: Vec<f64>,
    pub epochs_to_90: Vec<f64>,
    pub seconds_per_epoch: Vec<f64>,
    pub backend: String,
    pub parameters: u64,
    /// Studies of the family whose base runs differ from the first's (another config).
    pub other_bases: Vec<usize>,
}

/// A family's hyperparameter by the largest accuracy change it made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Ranked {
    pub family: String,
    pub row: String,
    /// The effect on best validation accuracy with the largest |Δ| among the significant
    /// ones of the row (or among all, when none is significant).
    pub effect: Option<usize>,
    pub significant: bool,
    /// Variants of the row whose every seed failed.
    pub failed: Vec<usize>,
}

/// `conclusions.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conclusions {
    pub studies: Vec<StudyRef>,
    pub families: Vec<String>,
    pub rows: Vec<String>,
    pub effects: Vec<Effect>,
    pub hypotheses: Vec<classic::Finding>,
    pub ranking: Vec<Ranked>,
    pub bases: Vec<Base>,
}

/// A family's display name, in the assignment's words.
pub fn family_name(f: &str) -> String {
    match f {
        "linear" => "linear".into(),
        "perceptron" => "linear (perceptron)".into(),
        "mlp" => "MLP".into(),
        "convnet" => "ConvNet".into(),
        "resnet" => "ResNet".into(),
        "highway" => "Highway".into(),
        "rnn" => "RNN".into(),
        other => other.into(),
    }
}

const FAMILY_ORDER: [&str; 7] = [
    "linear",
    "perceptron",
    "mlp",
    "convnet",
    "resnet",
    "highway",
    "rnn",
];

fn order_of<'a>(list: &'a [&'a str], x: &str) -> usize {
    list.iter().position(|f| *f == x).unwrap_or(list.len())
}

/// Everything the report says, from the studies.
pub fn gather(studies: &[Study]) -> Conclusions {
    let mut families: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut effects = Vec::new();
    for (si, s) in studies.iter().enumerate() {
        if !families.contains(&s.family) {
            families.push(s.family.clone());
        }
        for c in &s.claims.comparisons {
            let row = row_of(&c.field);
            if !rows.contains(&row) {
                rows.push(row.clone());
            }
            let dir = direction(&row, c, &s.claims.runs);
            let parameters = params(&s.claims.runs, &c.variant);
            let of_variant: Vec<&RunRef> = s
                .claims
                .runs
                .iter()
                .filter(|r| r.variant == c.variant)
                .collect();
            let failed = (
                of_variant.iter().filter(|r| r.failure.is_some()).count(),
                of_variant.len(),
            );
            for (kind, _) in FIGURES {
                let claim = c.claims.iter().find(|x| x.kind == kind);
                let (delta, mark, verdict, p_holm, seeds) = match claim {
                    Some(x) if !x.base.is_empty() && !x.values.is_empty() => (
                        Some(mean(&x.values) - mean(&x.base)),
                        Mark::of(x.verdict),
                        Some(x.verdict),
                        x.p_holm,
                        (x.base.len(), x.values.len()),
                    ),
                    _ => (None, Mark::Failed, None, None, (0, 0)),
                };
                effects.push(Effect {
                    family: s.family.clone(),
                    row: row.clone(),
                    study: si,
                    field: c.field.clone(),
                    variant: c.variant.clone(),
                    base_value: c.base_value.clone(),
                    value: c.value.clone(),
                    direction: dir,
                    parameters,
                    kind,
                    delta,
                    mark,
                    verdict,
                    p_holm,
                    seeds,
                    failed,
                });
            }
        }
    }
    families.sort_by_key(|f| order_of(&FAMILY_ORDER, f));
    rows.sort_by(|a, b| order_of(&ROWS, a).cmp(&order_of(&ROWS, b)).then(a.cmp(b)));
    let ranking = rank(&families, &rows, &effects);
    let bases = families.iter().map(|f| base_of(f, studies)).collect();
    let hypotheses = classic::check(studies, &families);
    Conclusions {
        studies: studies
            .iter()
            .map(|s| StudyRef {
                stage: s.stage.clone(),
                title: s.title.clone(),
                family: s.family.clone(),
                link: s.link.clone(),
                claims: s.claims_path.clone(),
            })
            .collect(),
        families,
        rows,
        effects,
        hypotheses,
        ranking,
        bases,
    }
}

/// Per family, its rows by the largest significant change of best validation accuracy;
/// rows with none follow, by their largest untested or non-significant change.
fn rank(families: &[String], rows: &[String], effects: &[Effect]) -> Vec<Ranked> {
    let mut out = Vec::new();
    for f in families {
        let mut ranked: Vec<Ranked> = Vec::new();
        for r in rows {
            let here: Vec<usize> = (0..effects.len())
                .filter(|&i| {
                    let e = &effects[i];
                    &e.family == f && &e.row == r && e.kind == Kind::Accuracy
                })
                .collect();
            if here.is_empty() {
                continue;
            }
            let failed: Vec<usize> = here
                .iter()
                .copied()
                .filter(|&i| effects[i].failed.1 > 0 && effects[i].failed.0 == effects[i].failed.1)
                .collect();
            let largest = |sig: bool| {
                here.iter()
                    .copied()
                    .filter(|&i| {
                        effects[i].delta.is_some() && (!sig || effects[i].mark == Mark::Significant)
                    })
                    .max_by(|&a, &b| {
                        let d = |i: usize| effects[i].delta.unwrap_or(0.0).abs();
                        d(a).total_cmp(&d(b))
                    })
            };
            let sig = largest(true);
            ranked.push(Ranked {
                family: f.clone(),
                row: r.clone(),
                effect: sig.or_else(|| largest(false)),
                significant: sig.is_some(),
                failed,
            });
        }
        let size = |x: &Ranked| x.effect.and_then(|i| effects[i].delta).unwrap_or(0.0).abs();
        ranked.sort_by(|a, b| {
            b.significant
                .cmp(&a.significant)
                .then(size(b).total_cmp(&size(a)))
        });
        out.extend(ranked);
    }
    out
}

/// A family's base runs: those of its first study; a study whose base runs are other runs
/// (another train key) is named.
fn base_of(family: &str, studies: &[Study]) -> Base {
    let of_family: Vec<(usize, &Study)> = studies
        .iter()
        .enumerate()
        .filter(|(_, s)| s.family == family)
        .collect();
    let keys = |s: &Study| -> Vec<String> {
        let mut k: Vec<String> = s
            .claims
            .runs
            .iter()
            .filter(|r| r.variant == "base")
            .map(|r| r.train_key.clone())
            .collect();
        k.sort();
        k
    };
    let first = of_family.first().map(|(_, s)| *s);
    let mut runs: Vec<&RunRef> = first
        .map(|s| {
            s.claims
                .runs
                .iter()
                .filter(|r| r.variant == "base")
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by_key(|r| r.seed);
    let learned: Vec<&&RunRef> = runs.iter().filter(|r| r.failure.is_none()).collect();
    Base {
        family: family.to_string(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        best_val_acc: learned.iter().filter_map(|r| r.best_val_acc).collect(),
        test_acc: learned.iter().map(|r| r.test_acc).collect(),
        epochs_to_90: learned.iter().filter_map(|r| r.epochs_to_90).collect(),
        seconds_per_epoch: runs.iter().map(|r| r.seconds_per_epoch).collect(),
        backend: runs.first().map(|r| r.backend.clone()).unwrap_or_default(),
        parameters: runs.first().map(|r| r.parameters).unwrap_or(0),
        other_bases: of_family
            .iter()
            .filter(|(_, s)| first.is_some_and(|f| keys(s) != keys(f)))
            .map(|(i, _)| *i)
            .collect(),
    }
}

/// Groups `effects` indices by (row, family), in the given orders.
pub fn cells(c: &Conclusions, kind: Kind) -> BTreeMap<(usize, usize), Vec<&Effect>> {
    let mut out: BTreeMap<(usize, usize), Vec<&Effect>> = BTreeMap::new();
    for e in c.effects.iter().filter(|e| e.kind == kind) {
        let (Some(r), Some(f)) = (
            c.rows.iter().position(|x| x == &e.row),
            c.families.iter().position(|x| x == &e.family),
        ) else {
            continue;
        };
        out.entry((r, f)).or_default().push(e);
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| {
            let l = |e: &Effect| {
                let by_size = e.row == "structure";
                (if by_size {
                    e.parameters
                } else {
                    level(&e.value)
                })
                .unwrap_or(f64::NAN)
            };
            a.field
                .cmp(&b.field)
                .then(l(a).total_cmp(&l(b)))
                .then(a.value.cmp(&b.value))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_conclusions_folder() {
        let own = Some("reports/quick/conclusions.md");
        assert_eq!(
            relative(own, "reports/quick/mlp/momentum.md"),
            "mlp/momentum.md"
        );
        assert_eq!(relative(own, "reports/quick/momentum.md"), "momentum.md");
        assert_eq!(relative(own, "reports/other.md"), "../other.md");
        assert_eq!(relative(None, "x/y.md"), "x/y.md");
    }

    #[test]
    fn values_have_levels_and_fields_have_rows() {
        assert_eq!(level("0.9"), Some(0.9));
        assert_eq!(level("[0.2, 0.5]"), Some(0.5));
        assert_eq!(level("[]"), Some(0.0));
        assert_eq!(level("Relu"), None);
        assert_eq!(row_of("model.blocks"), "structure");
        assert_eq!(row_of("optimizer.lr"), "learning rate");
        assert_eq!(row_of("schedule"), "schedule");
    }
}
