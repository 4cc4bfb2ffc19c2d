//! The report's sections of figures per variant: the results table, the classes of the base
//! and the best variant, provenance, and the TensorBoard files.

use std::fmt::Write as _;
use std::path::Path;

use super::claims;
use super::plot::confusion;
use super::stats::{Agg, Stats};
use super::write::Variant;
use super::{now_utc, slug, Meta, Run};
use crate::train::tensorboard::DIR as TENSORBOARD;

/// The table's status cell: short, the details are in the Influence section.
fn status(v: &Variant, all: &[Stats]) -> String {
    let st = v.stats(all);
    let n = st.len();
    let failed: Vec<&str> = st.iter().filter_map(|s| claims::failure_kind(s)).collect();
    let collapsed = st
        .iter()
        .filter(|s| s.failure.is_none() && s.drop.is_some_and(|d| d > claims::COLLAPSE))
        .count();
    let mut out = match failed.first() {
        None => "ok".to_string(),
        Some(k) if n == 1 => format!("failed: {k}"),
        Some(k) if failed.len() == n => format!("failed: {k}, {n} of {n} seeds"),
        Some(_) => format!("{} of {n} seeds failed", failed.len()),
    };
    if collapsed > 0 {
        out.push_str(&format!(", {collapsed} of {n} collapsed"));
    }
    out
}

pub(super) fn results_table(
    md: &mut String,
    variants: &[Variant],
    runs: &[Run],
    all: &[Stats],
    varied: &[String],
) -> anyhow::Result<()> {
    writeln!(md, "## Results\n")?;
    let penalized = all.iter().any(|s| s.final_penalty.is_some());
    let mut head = String::from("| variant |");
    for v in varied {
        write!(head, " `{v}` |")?;
    }
    // The columns a reader looks for first come first: they stay in view on a narrow screen.
    head.push_str(" status | seeds | test acc (final) | best val acc | test acc (best val) | best epoch | final train acc | final val acc | gap train−val (pts) | epochs to 90% of best | s/epoch (wall) |");
    if penalized {
        head.push_str(" weight penalty (last epoch) |");
    }
    writeln!(md, "{head}")?;
    writeln!(md, "{}", "|---".repeat(head.matches('|').count() - 1) + "|")?;
    for v in variants {
        let st = v.stats(all);
        let first = &runs[v.runs[0]];
        let mut row = format!("| {} |", v.label);
        for f in varied {
            write!(row, " {} |", first.value_of(f).unwrap_or("–"))?;
        }
        let a = |f: &dyn Fn(&Stats) -> Option<f64>| Agg::of(&st, f);
        let epoch_cell = |f: &dyn Fn(&Stats) -> Option<usize>| {
            let agg = a(&|s| f(s).map(|e| e as f64));
            if st.len() == 1 {
                agg.num(0)
            } else {
                agg.num(1)
            }
        };
        let gap = a(&|s| s.gap.map(|g| g * 100.0));
        write!(
            row,
            " {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            status(v, all),
            v.runs.len(),
            a(&|s| Some(s.test_acc_final)).pct(),
            a(&|s| s.best_val_acc).pct(),
            a(&|s| Some(s.test_acc_best)).pct(),
            epoch_cell(&|s| s.best_epoch),
            a(&|s| Some(s.final_train_acc)).pct(),
            a(&|s| s.final_val_acc).pct(),
            match gap.mean() {
                Some(m) if m >= 0.0 => format!("+{}", gap.num(1)),
                _ => gap.num(1),
            },
            epoch_cell(&|s| s.epochs_to_90),
            a(&|s| Some(s.seconds_per_epoch).filter(|x| *x > 0.0)).num(2),
        )?;
        if penalized {
            write!(row, " {} |", a(&|s| s.final_penalty).num(4))?;
        }
        writeln!(md, "{row}")?;
    }
    writeln!(md)?;
    Ok(())
}

/// Per-class test accuracy and confusion matrices of the base and the best other variant
/// (by mean best validation accuracy, among those that learned).
pub(super) fn classes(
    md: &mut String,
    variants: &[Variant],
    runs: &[Run],
    all: &[Stats],
    meta: &Meta,
    assets: &Path,
) -> anyhow::Result<()> {
    let score = |v: &Variant| Agg::of(&v.stats(all), |s| s.best_val_acc).mean();
    let learned = |v: &Variant| v.stats(all).iter().all(|s| s.failure.is_none());
    let base = variants.iter().find(|v| v.label == "base");
    let best = variants
        .iter()
        .filter(|v| v.label != "base" && learned(v))
        .max_by(|a, b| score(a).unwrap_or(0.0).total_cmp(&score(b).unwrap_or(0.0)));
    let shown: Vec<&Variant> = base.into_iter().chain(best).collect();
    if shown.is_empty() {
        return Ok(());
    }
    writeln!(md, "## Classes: the base and the best variant\n")?;
    writeln!(md, "Test accuracy per class with the final weights (mean over seeds), and the confusion matrix of the first seed.\n")?;
    let classes = &runs[shown[0].runs[0]].eval.classes;
    let mut head = String::from("| class |");
    for v in &shown {
        write!(head, " {} |", v.label)?;
    }
    writeln!(md, "{head}")?;
    writeln!(md, "{}", "|---".repeat(shown.len() + 1) + "|")?;
    for (c, name) in classes.iter().enumerate() {
        let mut row = format!("| {name} |");
        for v in &shown {
            let values: Vec<f64> = v
                .runs
                .iter()
                .filter_map(|&i| runs[i].eval.last.per_class_accuracy.get(c).copied())
                .collect();
            write!(row, " {} |", Agg { values }.pct())?;
        }
        writeln!(md, "{row}")?;
    }
    writeln!(md)?;
    for v in &shown {
        let r = &runs[v.runs[0]];
        let file = format!("confusion_{}.svg", slug(&v.label));
        confusion(
            &assets.join(&file),
            &format!(
                "{}: {} — confusion matrix (test, final weights, seed {})",
                meta.study, v.label, r.summary.seed
            ),
            &r.eval.classes,
            &r.eval.last.confusion,
        )?;
        writeln!(
            md,
            "![confusion matrix of {}]({}/{file})\n",
            v.label, meta.assets
        )?;
    }
    Ok(())
}

pub(super) fn provenance(md: &mut String, runs: &[Run], all: &[Stats]) -> anyhow::Result<()> {
    writeln!(md, "## Provenance\n")?;
    let first = &runs[0];
    let pipeline = first.stage.split(':').next().unwrap_or("");
    writeln!(md, "- pipeline: `pipelines/{pipeline}.ron`")?;
    writeln!(
        md,
        "- data: {} ({} scaling)",
        first
            .summary
            .data_sizes
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        first.summary.scaling
    )?;
    writeln!(
        md,
        "- pipe {} ({}), report written {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        now_utc()
    )?;
    writeln!(md, "\n| run | train stage key | seed | backend | epochs run | parameters | train images/s (wall) |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for (r, s) in runs.iter().zip(all) {
        writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} | {:.0} |",
            r.label,
            &r.train_key[..r.train_key.len().min(16)],
            r.summary.seed,
            r.summary.backend,
            s.epochs,
            r.summary.parameters,
            r.timing.train_images_per_second
        )?;
    }
    Ok(())
}

/// TensorBoard: one folder per run, named by its label.
pub(super) fn tensorboard(
    md: &mut String,
    runs: &[Run],
    meta: &Meta,
    assets: &Path,
) -> anyhow::Result<()> {
    let mut any = false;
    for r in runs {
        let to = assets.join("tensorboard").join(slug(&r.label));
        // Evaluations made before the volatile folder hold their events in `tensorboard/`.
        let Some(from) = [TENSORBOARD, "tensorboard"]
            .iter()
            .map(|d| r.dir.join(d))
            .find(|d| d.is_dir())
        else {
            // A run of the user's own script brings none: its metrics make them.
            crate::train::tensorboard::write(&to, &r.metrics, &r.timing)?;
            any = true;
            continue;
        };
        std::fs::create_dir_all(&to)?;
        for e in std::fs::read_dir(&from)? {
            let e = e?;
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
        any = true;
    }
    if any {
        super::hparams::write(&assets.join("tensorboard"), meta.title, runs)?;
        writeln!(
            md,
            "\nTensorBoard: `tensorboard --logdir {}/tensorboard` (next to this file); its \
             HParams tab compares the runs by hyperparameter and final metrics. Its loss curves \
             are what the optimizer minimized (a regularizer's penalty included); the HParams \
             metrics give the cross-entropy and the penalty apart.",
            meta.assets
        )?;
    }
    Ok(())
}
