//! `pipe show --by variant`: a variant's seed replicates in one row, each figure as mean ±
//! sd over the seeds, as the report's Results table has them.

use std::cmp::Ordering;

use serde::Serialize;

use super::results::Row;
use super::show::{Cell, Table};
use crate::report::stats::{Agg, Stats};

/// One figure over a variant's seeds (JSON: `{"mean": …, "sd": …, "n": …}`).
#[derive(Serialize)]
pub(super) struct Spread {
    mean: Option<f64>,
    /// `null` for a single seed.
    sd: Option<f64>,
    n: usize,
}

impl Spread {
    /// The figure `f` over the runs' statistics, as the report aggregates it.
    fn of(stats: &[&Stats], f: impl Fn(&Stats) -> Option<f64>) -> (Spread, Agg) {
        let agg = Agg::of(stats, f);
        let spread = Spread {
            mean: agg.mean(),
            sd: agg.sd(),
            n: agg.n(),
        };
        (spread, agg)
    }
}

/// A column's cell and whether it sorts high to low.
pub(super) type SortBy = (fn(&Row) -> Cell, bool);

/// A variant of a study and its seeds.
#[derive(Serialize)]
pub(super) struct Group {
    pub study: String,
    pub variant: String,
    pub family: String,
    pub seeds: Vec<u64>,
    pub best_val_acc: Spread,
    pub test_acc_final: Spread,
    pub test_acc_best: Spread,
    pub gap: Spread,
    pub epochs_to_90: Spread,
    pub seconds_per_epoch: Spread,
    /// `ok`, or how many seeds failed (diverged, did not learn) or are stale.
    pub status: String,
    #[serde(skip)]
    cells: Vec<String>,
    #[serde(skip)]
    raw: Vec<String>,
    #[serde(skip)]
    key: Option<f64>,
}

const NAMES: [&str; 11] = [
    "study",
    "variant",
    "family",
    "seeds",
    "best_val_acc",
    "test_acc",
    "test_acc_best",
    "gap",
    "epochs_to_90",
    "seconds_per_epoch",
    "status",
];
const HEADERS: [&str; 11] = [
    "study",
    "variant",
    "family",
    "seeds",
    "best val %",
    "test % (final)",
    "test % (best weights)",
    "train-val gap (pts)",
    "epochs to 90% of best",
    "s/epoch",
    "status",
];

/// The runs grouped by study and variant, in the order their first run comes; with a sort
/// column, by its mean over the seeds (text columns: as the runs were sorted).
pub(super) fn variants(rows: &[Row], sort: Option<SortBy>) -> Vec<Group> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut members: std::collections::HashMap<(String, String), Vec<&Row>> =
        std::collections::HashMap::new();
    for r in rows {
        let k = (r.study.clone(), r.replicates.clone());
        if !members.contains_key(&k) {
            order.push(k.clone());
        }
        members.entry(k).or_default().push(r);
    }
    let mut groups: Vec<Group> = order
        .into_iter()
        .map(|k| {
            let rs = &members[&k];
            group(k.0, k.1, rs, sort.map(|(cell, _)| cell))
        })
        .collect();
    if let Some((_, descending)) = sort {
        groups.sort_by(|a, b| {
            let o = match (a.key, b.key) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if descending && a.key.is_some() && b.key.is_some() {
                o.reverse()
            } else {
                o
            }
        });
    }
    groups
}

fn group(study: String, variant: String, rs: &[&Row], sort: Option<fn(&Row) -> Cell>) -> Group {
    let stats: Vec<&Stats> = rs.iter().map(|r| &r.stats).collect();
    let (best_val_acc, best) = Spread::of(&stats, |s| s.best_val_acc);
    let (test_acc_final, test) = Spread::of(&stats, |s| Some(s.test_acc_final));
    let (test_acc_best, test_best) = Spread::of(&stats, |s| Some(s.test_acc_best));
    let (gap, gap_agg) = Spread::of(&stats, |s| s.gap);
    let (epochs_to_90, e90) = Spread::of(&stats, |s| s.epochs_to_90.map(|e| e as f64));
    let (seconds_per_epoch, spe) = Spread::of(&stats, |s| Some(s.seconds_per_epoch));
    let failed = rs.iter().filter(|r| r.stats.failure.is_some()).count();
    let stale = rs.iter().filter(|r| r.stale).count();
    let mut status = Vec::new();
    if failed > 0 {
        status.push(format!("{failed} of {} failed", rs.len()));
    }
    if stale > 0 {
        status.push(format!("{stale} of {} stale", rs.len()));
    }
    let status = if status.is_empty() {
        "ok".to_string()
    } else {
        status.join(", ")
    };
    let mut seeds: Vec<u64> = rs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    let family = rs[0].family.clone();
    let points = |a: &Agg| match (a.mean(), a.sd()) {
        (None, _) => "-".to_string(),
        (Some(m), None) => format!("{:.1}", m * 100.0),
        (Some(m), Some(s)) => format!("{:.1} ± {:.1}", m * 100.0, s * 100.0),
    };
    let raw = |a: &Agg| a.mean().map(|m| m.to_string()).unwrap_or_default();
    let number = |a: &Agg, d: usize| match a.num(d).as_str() {
        "–" => "-".to_string(),
        t => t.to_string(),
    };
    let text = |t: &str| (t.to_string(), t.to_string());
    let (cells, raws): (Vec<String>, Vec<String>) = [
        text(&study),
        text(&variant),
        text(&family),
        text(&seeds.len().to_string()),
        (points(&best), raw(&best)),
        (points(&test), raw(&test)),
        (points(&test_best), raw(&test_best)),
        (points(&gap_agg), raw(&gap_agg)),
        (number(&e90, 1), raw(&e90)),
        (number(&spe, 2), raw(&spe)),
        text(&status),
    ]
    .into_iter()
    .unzip();
    let key = sort.and_then(|cell| {
        let values: Vec<f64> = rs.iter().filter_map(|r| cell(r).number()).collect();
        (!values.is_empty()).then(|| crate::report::stats::mean(&values))
    });
    Group {
        study,
        variant,
        family,
        seeds,
        best_val_acc,
        test_acc_final,
        test_acc_best,
        gap,
        epochs_to_90,
        seconds_per_epoch,
        status,
        cells,
        raw: raws,
        key,
    }
}

pub(super) fn table(groups: &[Group]) -> Table {
    Table {
        names: NAMES.to_vec(),
        headers: HEADERS.to_vec(),
        shown: groups.iter().map(|g| g.cells.clone()).collect(),
        raw: groups.iter().map(|g| g.raw.clone()).collect(),
    }
}
