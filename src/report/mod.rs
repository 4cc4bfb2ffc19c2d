//! A study report from its variants' evaluations: curves, a table per variant, an
//! "Influence" section written from the measured numbers, and provenance.
//!
//! Every sentence of the Influence section is a comparison with the base run that the
//! numbers carry: a difference smaller than the base run's own epoch-to-epoch noise is
//! reported as no clear change, not as an effect.

pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::train::evaluate::Evaluation;
use crate::train::fit::{EpochMetrics, Summary, Timing};
use plot::{line_chart, Series};

/// One variant, as its evaluate stage left it.
pub struct Run {
    /// `base`, or the varied fields, e.g. `optimizer.momentum=0.9`.
    pub label: String,
    pub coords: Vec<(String, String)>,
    pub stage: String,
    pub train_key: String,
    pub metrics: Vec<EpochMetrics>,
    pub summary: Summary,
    pub eval: Evaluation,
    pub timing: Timing,
    pub dir: PathBuf,
}

impl Run {
    pub fn load(
        label: &str,
        coords: &[(String, String)],
        stage: &str,
        dir: &Path,
    ) -> anyhow::Result<Run> {
        let read = |f: &str| {
            std::fs::read(dir.join(f))
                .with_context(|| format!("`{stage}` has no {f}: is it an evaluate stage?"))
        };
        let metrics = String::from_utf8(read("metrics.jsonl")?)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<Vec<EpochMetrics>, _>>()?;
        Ok(Run {
            label: label.to_string(),
            coords: coords.to_vec(),
            stage: stage.to_string(),
            train_key: String::from_utf8(read("train_key.txt")?)?
                .trim()
                .to_string(),
            summary: serde_json::from_slice(&read("summary.json")?)?,
            eval: serde_json::from_slice(&read("evaluation.json")?)?,
            timing: Timing::of(dir, &metrics),
            metrics,
            dir: dir.to_path_buf(),
        })
    }

    fn value_of(&self, path: &str) -> Option<&str> {
        self.coords
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
    }
}

/// The numbers the table and the Influence section use.
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
    /// First epoch whose validation accuracy reaches 90% of the best.
    pub epochs_to_90: Option<usize>,
    /// Epoch of the lowest validation loss: where overfitting starts, if before the end.
    pub val_loss_min_epoch: Option<usize>,
    /// Standard deviation of the epoch-to-epoch change of validation accuracy.
    pub roughness: Option<f64>,
    /// Standard deviation of validation accuracy over the last five epochs: the noise floor.
    pub noise: Option<f64>,
    pub seconds_per_epoch: f64,
    pub epochs: usize,
    pub diverged_at: Option<usize>,
}

fn std_dev(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

pub fn stats(run: &Run) -> Stats {
    let m = &run.metrics;
    let val: Vec<(usize, f64)> = m
        .iter()
        .filter_map(|e| e.val_acc.filter(|a| a.is_finite()).map(|a| (e.epoch, a)))
        .collect();
    let best = val
        .iter()
        .copied()
        .fold(None, |b: Option<(usize, f64)>, (e, a)| match b {
            Some((_, ba)) if ba >= a => b,
            _ => Some((e, a)),
        });
    let last = m.iter().rev().find(|e| e.train_loss.is_finite());
    let epochs_to_90 =
        best.and_then(|(_, b)| val.iter().find(|(_, a)| *a >= 0.9 * b).map(|(e, _)| *e));
    let val_loss_min_epoch = m
        .iter()
        .filter_map(|e| e.val_loss.filter(|l| l.is_finite()).map(|l| (e.epoch, l)))
        .fold(None, |b: Option<(usize, f64)>, (e, l)| match b {
            Some((_, bl)) if bl <= l => b,
            _ => Some((e, l)),
        })
        .map(|(e, _)| e);
    let deltas: Vec<f64> = val.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let tail: Vec<f64> = val.iter().rev().take(5).map(|(_, a)| *a).collect();
    let timed: Vec<f64> = m
        .iter()
        .zip(&run.timing.epoch_seconds)
        .filter(|(e, _)| e.train_loss.is_finite())
        .map(|(_, s)| *s)
        .collect();
    Stats {
        best_val_acc: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        final_train_acc: last.map(|e| e.train_acc).unwrap_or(0.0),
        final_val_acc: last.and_then(|e| e.val_acc),
        test_acc_final: run.eval.last.accuracy,
        test_acc_best: run.eval.best.accuracy,
        gap: last.and_then(|e| e.val_acc.map(|v| e.train_acc - v)),
        epochs_to_90,
        val_loss_min_epoch,
        roughness: std_dev(&deltas),
        noise: std_dev(&tail),
        seconds_per_epoch: if timed.is_empty() {
            0.0
        } else {
            timed.iter().sum::<f64>() / timed.len() as f64
        },
        epochs: m.len(),
        diverged_at: run.summary.diverged_at_epoch,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "–".into())
}

fn opt<T: std::fmt::Display>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "–".into())
}

/// Sorts values numerically when they all parse, else as text.
fn value_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

/// What changing one field did, in sentences with their numbers.
pub fn influence(path: &str, base: (&Run, &Stats), variant: (&Run, &Stats)) -> String {
    let (b, bs) = base;
    let (v, vs) = variant;
    let (bv, vv) = (
        b.value_of(path).unwrap_or("?"),
        v.value_of(path).unwrap_or("?"),
    );
    let direction = match (bv.parse::<f64>(), vv.parse::<f64>()) {
        (Ok(x), Ok(y)) if y > x => "Raising",
        (Ok(x), Ok(y)) if y < x => "Lowering",
        _ => "Changing",
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(e) = vs.diverged_at {
        parts.push(format!(
            "training diverged at epoch {e} (loss became NaN or infinite)"
        ));
    }
    // Accuracy, against the base's own noise floor.
    if let (Some(ba), Some(va)) = (bs.best_val_acc, vs.best_val_acc) {
        let noise = bs.noise.unwrap_or(0.0).max(vs.noise.unwrap_or(0.0));
        let threshold = (2.0 * noise).max(0.005);
        let d = va - ba;
        if d.abs() >= threshold {
            parts.push(format!(
                "best validation accuracy {} → {} ({:+.1} points; noise floor {:.1} points)",
                pct(ba),
                pct(va),
                d * 100.0,
                noise * 100.0
            ));
        } else {
            parts.push(format!(
                "no clear change in best validation accuracy ({} vs {}, within twice the noise floor of {:.1} points)",
                pct(ba),
                pct(va),
                noise * 100.0
            ));
        }
        parts.push(format!(
            "test accuracy {} → {}",
            pct(bs.test_acc_final),
            pct(vs.test_acc_final)
        ));
    }
    // Convergence speed: only meaningful when the variant reaches a comparable accuracy.
    let clearly_worse = match (bs.best_val_acc, vs.best_val_acc) {
        (Some(ba), Some(va)) => {
            ba - va >= (2.0 * bs.noise.unwrap_or(0.0).max(vs.noise.unwrap_or(0.0))).max(0.005)
        }
        _ => false,
    };
    if let (Some(be), Some(ve)) = (bs.epochs_to_90, vs.epochs_to_90) {
        let ratio = be as f64 / ve.max(1) as f64;
        if clearly_worse {
            parts.push(format!(
                "plateaued at its lower accuracy (90% of its best by epoch {ve}; base: {be})"
            ));
        } else if ratio >= 1.25 {
            parts.push(format!(
                "converged faster: 90% of its best at epoch {ve} instead of {be} ({ratio:.1}×)"
            ));
        } else if ratio <= 0.8 {
            parts.push(format!(
                "converged slower: 90% of its best at epoch {ve} instead of {be} ({:.1}× later)",
                1.0 / ratio
            ));
        } else {
            parts.push(format!(
                "a similar pace to 90% of its best (epoch {ve} vs {be})"
            ));
        }
    }
    // Overfitting: where validation loss bottoms out.
    if let (Some(bm), Some(vm)) = (bs.val_loss_min_epoch, vs.val_loss_min_epoch) {
        let ends = |m: usize, s: &Stats| m + 1 >= s.epochs;
        match (ends(bm, bs), ends(vm, vs)) {
            (_, false) if vm < bm => parts.push(format!("overfitting starts earlier: validation loss is lowest at epoch {vm} (base: {bm}) and rises after")),
            (_, false) if vm > bm => parts.push(format!("overfitting starts later: validation loss is lowest at epoch {vm} (base: {bm})")),
            (_, false) => parts.push(format!("validation loss is lowest at epoch {vm}, as in the base")),
            (false, true) => parts.push(format!("no overfitting within {} epochs (validation loss still falling; the base's rose after epoch {bm})", vs.epochs)),
            (true, true) => {}
        }
    }
    // Smoothness.
    if let (Some(br), Some(vr)) = (bs.roughness, vs.roughness) {
        if br > 0.0 && vr / br >= 1.5 {
            parts.push(format!(
                "noisier validation curve (epoch-to-epoch spread {:.2} vs {:.2} points)",
                vr * 100.0,
                br * 100.0
            ));
        } else if vr > 0.0 && br / vr >= 1.5 {
            parts.push(format!(
                "smoother validation curve (epoch-to-epoch spread {:.2} vs {:.2} points)",
                vr * 100.0,
                br * 100.0
            ));
        }
    }
    // Time.
    if bs.seconds_per_epoch > 0.0 && vs.seconds_per_epoch > 0.0 {
        let r = vs.seconds_per_epoch / bs.seconds_per_epoch;
        // Sub-0.1 s differences are timer and scheduling noise, whatever the ratio.
        if !(0.87..=1.15).contains(&r) && (vs.seconds_per_epoch - bs.seconds_per_epoch).abs() >= 0.1
        {
            parts.push(format!(
                "{:.2}× the time per epoch ({:.2} s vs {:.2} s)",
                r, vs.seconds_per_epoch, bs.seconds_per_epoch
            ));
        }
    }
    format!(
        "- **{direction} `{path}` from {bv} to {vv}:** {}.",
        parts.join("; ")
    )
}

/// Replaces characters that do not belong in a file name.
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').to_string()
}

pub struct Meta<'a> {
    pub title: &'a str,
    pub description: &'a str,
    /// Folder of the images, relative to the markdown file (`momentum`).
    pub assets: &'a str,
}

/// Writes `<assets>/*.svg` under `out` and returns the markdown.
pub fn render(meta: &Meta, runs: &mut [Run], out: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        !runs.is_empty(),
        "a report needs at least one evaluated variant among its inputs"
    );
    // Base first, then by varied field and value.
    runs.sort_by(|a, b| {
        (a.label != "base").cmp(&(b.label != "base")).then_with(|| {
            let key = |r: &Run| r.label.split('=').next().unwrap_or("").to_string();
            key(a).cmp(&key(b)).then_with(|| {
                value_order(
                    a.label.split('=').nth(1).unwrap_or(""),
                    b.label.split('=').nth(1).unwrap_or(""),
                )
            })
        })
    });
    let all_stats: Vec<Stats> = runs.iter().map(stats).collect();
    let assets = out.join(meta.assets);
    std::fs::create_dir_all(&assets)?;
    let mut md = String::new();
    writeln!(md, "# {}\n", meta.title)?;
    if !meta.description.is_empty() {
        writeln!(md, "{}\n", meta.description)?;
    }
    let varied: Vec<String> = {
        let mut v: Vec<String> = runs
            .iter()
            .flat_map(|r| r.coords.iter().map(|(p, _)| p.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let families: Vec<&str> = {
        let mut f: Vec<&str> = runs.iter().map(|r| r.summary.family.as_str()).collect();
        f.dedup();
        f
    };
    writeln!(
        md,
        "{} runs of the {} model{}, varying {}. Curves are per epoch; accuracies are fractions of images classified right.\n",
        runs.len(),
        families.join(", "),
        if families.len() > 1 { "s" } else { "" },
        if varied.is_empty() { "nothing".to_string() } else { varied.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ") }
    )?;

    // Overlaid validation curves.
    let colors: Vec<usize> = (0..runs.len()).collect();
    for (file, title, y, pick) in [
        ("val_accuracy.svg", "Validation accuracy", "accuracy", 0),
        ("val_loss.svg", "Validation loss", "loss", 1),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| Series {
                name: r.label.clone(),
                points: r
                    .metrics
                    .iter()
                    .filter_map(|m| {
                        if pick == 0 { m.val_acc } else { m.val_loss }.map(|v| (m.epoch as f64, v))
                    })
                    .collect(),
                dashed: false,
            })
            .collect();
        line_chart(&assets.join(file), title, y, &series, &colors)?;
    }
    writeln!(md, "## Curves\n")?;
    writeln!(
        md,
        "![validation accuracy]({}/val_accuracy.svg)\n",
        meta.assets
    )?;
    writeln!(md, "![validation loss]({}/val_loss.svg)\n", meta.assets)?;

    // The table.
    writeln!(md, "## Results\n")?;
    let mut head = String::from("| variant |");
    for v in &varied {
        write!(head, " `{v}` |")?;
    }
    head.push_str(" best val acc | best epoch | final train acc | final val acc | test acc (final) | test acc (best val) | gap train−val | epochs to 90% of best | s/epoch | diverged |");
    writeln!(md, "{head}")?;
    writeln!(md, "{}", "|---".repeat(head.matches('|').count() - 1) + "|")?;
    for (r, s) in runs.iter().zip(&all_stats) {
        let mut row = format!("| {} |", r.label);
        for v in &varied {
            write!(row, " {} |", r.value_of(v).unwrap_or("–"))?;
        }
        write!(
            row,
            " {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            opt_pct(s.best_val_acc),
            opt(s.best_epoch),
            pct(s.final_train_acc),
            opt_pct(s.final_val_acc),
            pct(s.test_acc_final),
            pct(s.test_acc_best),
            s.gap
                .map(|g| format!("{:+.1} pts", g * 100.0))
                .unwrap_or_else(|| "–".into()),
            opt(s.epochs_to_90),
            s.seconds_per_epoch,
            s.diverged_at
                .map(|e| format!("yes, epoch {e}"))
                .unwrap_or_else(|| "no".into())
        )?;
        writeln!(md, "{row}")?;
    }
    writeln!(md)?;

    // Influence.
    writeln!(md, "## Influence\n")?;
    let base = runs.iter().position(|r| r.label == "base");
    match base {
        None => writeln!(
            md,
            "No base run among the inputs: nothing to compare against.\n"
        )?,
        Some(bi) => {
            let mut any = false;
            for path in &varied {
                for (i, r) in runs.iter().enumerate() {
                    if i != bi
                        && r.label
                            .split(',')
                            .all(|part| part.starts_with(&format!("{path}=")))
                    {
                        writeln!(
                            md,
                            "{}",
                            influence(path, (&runs[bi], &all_stats[bi]), (r, &all_stats[i]))
                        )?;
                        any = true;
                    }
                }
            }
            if !any {
                writeln!(md, "Only the base run: nothing varied.")?;
            }
            writeln!(
                md,
                "\nThresholds: accuracy differences under twice the noise floor (the larger standard deviation of \
                 validation accuracy over the last five epochs of the two runs) are not called changes; \
                 convergence speed must differ by 25%, curve smoothness by 50%, and time per epoch by 15% and 0.1 s to be mentioned. \
                 Time per epoch is wall time: it also moves with whatever else the machine was doing.\n"
            )?;
        }
    }

    // Train vs validation per variant.
    writeln!(md, "## Train vs validation (overfitting view)\n")?;
    for (i, r) in runs.iter().enumerate() {
        let file = format!("fit_{}.svg", slug(&r.label));
        let curve = |name: &str, f: &dyn Fn(&EpochMetrics) -> Option<f64>, dashed| Series {
            name: name.to_string(),
            points: r
                .metrics
                .iter()
                .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
                .collect(),
            dashed,
        };
        let series = [
            curve("train accuracy", &|m| Some(m.train_acc), true),
            curve("validation accuracy", &|m| m.val_acc, false),
        ];
        line_chart(
            &assets.join(&file),
            &format!("{}: train vs validation accuracy", r.label),
            "accuracy",
            &series,
            &[i, i],
        )?;
        writeln!(md, "![{}]({}/{file})", r.label, meta.assets)?;
    }
    writeln!(md)?;

    // Provenance.
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
    writeln!(md, "\n| variant | train stage key | seed | backend | epochs run | parameters | train images/s |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for r in runs.iter() {
        writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} | {:.0} |",
            r.label,
            &r.train_key[..r.train_key.len().min(16)],
            r.summary.seed,
            r.summary.backend,
            r.summary.epochs_run,
            r.summary.parameters,
            r.timing.train_images_per_second
        )?;
    }
    // TensorBoard: one folder per variant, named by its varied value.
    let mut tb = false;
    for r in runs.iter() {
        let from = r.dir.join(crate::train::tensorboard::DIR);
        if from.is_dir() {
            let to = assets.join("tensorboard").join(slug(&r.label));
            std::fs::create_dir_all(&to)?;
            for e in std::fs::read_dir(&from)? {
                let e = e?;
                std::fs::copy(e.path(), to.join(e.file_name()))?;
            }
            tb = true;
        }
    }
    if tb {
        writeln!(
            md,
            "\nTensorBoard: `tensorboard --logdir {}/tensorboard` (next to this file).",
            meta.assets
        )?;
    }
    Ok(md)
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}
