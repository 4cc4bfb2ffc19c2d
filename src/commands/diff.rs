//! `pipe diff A B`: what differs between two variants, in any studies: the config fields
//! (as the kind re-serializes them, so `0.90` and `0.9` are one value) and the headline
//! numbers of their evaluations.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::results::{held, one, Gatherers, Row};
use super::{Error, Project};
use crate::cli::DiffArgs;
use crate::engine::fingerprint::flatten;
use crate::ron_path::{locate, FieldPath};

pub(super) fn run(p: &Project, a: &DiffArgs) -> Result<ExitCode, Error> {
    let (x, y) = (one(p, &a.a)?, one(p, &a.b)?);
    let (tx, ty) = (trained(p, x), trained(p, y));
    let (fx, fy) = (fields(p, tx), fields(p, ty));
    let mut rows: Vec<[String; 3]> = Vec::new();
    for key in fx
        .keys()
        .chain(fy.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (vx, vy) = (fx.get(key), fy.get(key));
        if vx != vy {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
            rows.push([key.clone(), show(vx), show(vy)]);
        }
    }
    println!("A: {}\nB: {}", p.plan.nodes[x].id, p.plan.nodes[y].id);
    if p.plan.def(tx).kind.name() != p.plan.def(ty).kind.name() {
        println!(
            "(a `{}` stage against a `{}` stage)",
            p.plan.def(tx).kind.name(),
            p.plan.def(ty).kind.name()
        );
    }
    println!();
    if rows.is_empty() {
        println!("config: the same");
    } else {
        println!("config:");
        print_rows(&rows);
    }
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    let gatherers = Gatherers::of(p);
    // Both sides in one assessment: their closures overlap (the data, the base).
    let evals: Vec<usize> = [x, y]
        .iter()
        .filter_map(|&n| evaluation(p, &gatherers, n))
        .collect();
    let found = held(p, &cache, &evals);
    let damaged = std::cell::Cell::new(false);
    let row = |n: usize| -> Option<Row> {
        let e = evaluation(p, &gatherers, n)?;
        let (_, h) = found.iter().find(|(m, _)| *m == e)?;
        match Row::read(p, &gatherers, &cache, e, h.as_ref()?) {
            Ok(r) => Some(r),
            Err(why) => {
                // Never a damaged object's numbers as a result: say which and why.
                eprintln!("warning: {}: {why}", p.plan.nodes[e].id);
                damaged.set(true);
                None
            }
        }
    };
    let (rx, ry) = (row(x), row(y));
    if damaged.get() {
        println!("\nresults: not shown: a side's cached results could not be verified");
        return Ok(ExitCode::from(1));
    }
    match (rx, ry) {
        (Some(rx), Some(ry)) => {
            let (nx, ny) = (replicates(p, x), replicates(p, y));
            if nx > 1 || ny > 1 {
                println!(
                    "\nresults: one seed each (A's seed {} of {nx}, B's seed {} of {ny}); \
                     the study's report gives the mean ± sd over the seeds:",
                    rx.seed, ry.seed
                );
            } else {
                println!("\nresults:");
            }
            let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0));
            let pts = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", v * 100.0));
            let int = |v: Option<usize>| v.map_or("-".into(), |v| v.to_string());
            let (sx, sy) = (&rx.stats, &ry.stats);
            let mut rows = vec![
                [
                    "best validation accuracy".into(),
                    pct(sx.best_val_acc),
                    pct(sy.best_val_acc),
                ],
                ["at epoch".into(), int(sx.best_epoch), int(sy.best_epoch)],
                [
                    "test accuracy (final)".into(),
                    pct(Some(sx.test_acc_final)),
                    pct(Some(sy.test_acc_final)),
                ],
                [
                    "test accuracy (best weights)".into(),
                    pct(Some(sx.test_acc_best)),
                    pct(Some(sy.test_acc_best)),
                ],
                [
                    "train-validation gap (points)".into(),
                    pts(sx.gap),
                    pts(sy.gap),
                ],
                [
                    "epochs to 90% of best".into(),
                    int(sx.epochs_to_90),
                    int(sy.epochs_to_90),
                ],
                [
                    "epochs run".into(),
                    sx.epochs.to_string(),
                    sy.epochs.to_string(),
                ],
                ["status".into(), rx.status(), ry.status()],
                [
                    "seconds per epoch".into(),
                    format!("{:.2}", sx.seconds_per_epoch),
                    format!("{:.2}", sy.seconds_per_epoch),
                ],
                ["backend".into(), rx.backend.clone(), ry.backend.clone()],
            ];
            if !a.all {
                rows.retain(|r| r[1] != r[2]);
            }
            print_rows(&rows);
        }
        _ => println!("\nresults: not both evaluated and built yet"),
    }
    Ok(ExitCode::SUCCESS)
}

/// How many seed replicates the variant of `n` has (1 without `seeds`).
fn replicates(p: &Project, n: usize) -> usize {
    let own = |m: usize| -> Vec<&(String, String)> {
        p.plan.nodes[m]
            .coords
            .iter()
            .filter(|(f, _)| f != crate::pipeline::SEED)
            .collect()
    };
    let (def, coords) = (p.plan.nodes[n].def, own(n));
    (0..p.plan.nodes.len())
        .filter(|&m| p.plan.nodes[m].def == def && own(m) == coords)
        .count()
}

/// The training behind `n`: itself, or the train stage an evaluation reads.
fn trained(p: &Project, n: usize) -> usize {
    if p.plan.def(n).kind.name() == "evaluate" {
        if let Some(&t) = p.plan.nodes[n]
            .inputs
            .iter()
            .find(|&&i| p.plan.def(i).kind.name() == "train")
        {
            return t;
        }
    }
    n
}

/// The evaluation of `n`: itself (an evaluate stage, or a command run a report gathers), or
/// the first evaluate stage that reads it.
fn evaluation(p: &Project, gatherers: &Gatherers, n: usize) -> Option<usize> {
    if gatherers.is_run(p, n) {
        return Some(n);
    }
    (0..p.plan.nodes.len())
        .find(|&e| p.plan.def(e).kind.name() == "evaluate" && p.plan.nodes[e].inputs.contains(&n))
}

/// Every leaf of the stage's config as `path → value`, paths as `set` and `vary` take them
/// (`fingerprint::flatten`, the rule `explain` follows too), and each string as the canonical
/// RON writes it: a unit variant bare (`Tanh`, as in the variant's label), a string of a
/// command's `env` quoted (JSON writes both `"Tanh"`).
fn fields(p: &Project, n: usize) -> BTreeMap<String, String> {
    let parsed = &p.plan.variant(n).parsed;
    let ron_text = |path: &str| -> Option<String> {
        let (s, e) = locate(&parsed.canonical, &FieldPath::parse(path)?).ok()?;
        Some(parsed.canonical[s..e].to_string())
    };
    let mut out = flatten(&parsed.key);
    for (path, value) in out.iter_mut() {
        if value.starts_with('"') {
            if let Some(text) = ron_text(path) {
                *value = text;
            }
        }
    }
    out
}

fn print_rows(rows: &[[String; 3]]) {
    let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r[1].chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    println!("  {:<w0$}  {:<w1$}  B", "", "A");
    for r in rows {
        println!("  {:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }
}
