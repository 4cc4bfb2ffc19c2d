//! The markdown and its figures: the order of the sections, the table, and which series each
//! figure draws. The numbers come from [`super::stats`], the sentences from
//! [`super::influence`].

use std::fmt::Write as _;
use std::path::Path;

use super::claims::{self, compare, decide, Claims, Comparison, RunRef, Seeded};
use super::html::{Failed, Figure, Headline};
use super::influence::bullet;
use super::plot::{figure, Look, Panel, Series};
use super::sections::{classes, provenance, results_table, tensorboard};
use super::stats::{mean, stats, std_dev, Agg, Stats};
use super::{slug, Meta, Run};
use crate::train::fit::EpochMetrics;

/// A variant: its runs (one per seed), in seed order.
pub(super) struct Variant {
    pub label: String,
    pub runs: Vec<usize>,
}

impl Variant {
    pub fn stats<'a>(&self, all: &'a [Stats]) -> Vec<&'a Stats> {
        self.runs.iter().map(|&i| &all[i]).collect()
    }
}

/// Sorts values numerically when they all parse, else as text.
pub(super) fn value_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

fn label_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "base").cmp(&(b != "base")).then_with(|| {
        let field = |l: &str| l.split('=').next().unwrap_or("").to_string();
        let value = |l: &str| l.split('=').nth(1).unwrap_or("").to_string();
        field(a)
            .cmp(&field(b))
            .then_with(|| value_order(&value(a), &value(b)))
    })
}

/// Points (epoch, mean) and band (epoch, low, high).
type MeanCurve = (Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

/// Per epoch, the mean (and mean ± sd where there are two or more) over the runs that have
/// a finite value there.
fn mean_curve(runs: &[&Run], f: &dyn Fn(&EpochMetrics) -> Option<f64>, scale: f64) -> MeanCurve {
    let epochs = runs.iter().map(|r| r.metrics.len()).max().unwrap_or(0);
    let (mut line, mut band) = (Vec::new(), Vec::new());
    for e in 1..=epochs {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.metrics.iter().find(|m| m.epoch == e).and_then(f))
            .filter(|v| v.is_finite())
            .map(|v| v * scale)
            .collect();
        if values.is_empty() {
            continue;
        }
        let m = mean(&values);
        line.push((e as f64, m));
        if let Some(sd) = std_dev(&values) {
            band.push((e as f64, m - sd, m + sd));
        }
    }
    (line, band)
}

/// Legend labels longer than this are replaced by `variant N`, with a key under the figure.
const LEGEND_LABEL: usize = 22;

/// The name a variant goes by in figures: its label, or `variant N` when that is long.
fn short_label(i: usize, v: &Variant) -> String {
    if v.label.chars().count() > LEGEND_LABEL {
        format!("variant {i}")
    } else {
        v.label.clone()
    }
}

/// What the legend says of a variant: its short label, and how many seeds failed.
fn legend_name(i: usize, v: &Variant, all: &[Stats]) -> String {
    let st = v.stats(all);
    let failed = st.iter().filter(|s| s.failure.is_some()).count();
    let mark = match failed {
        0 => String::new(),
        f if f == st.len() => " (failed)".into(),
        f => format!(" ({f}/{} failed)", st.len()),
    };
    format!("{}{mark}", short_label(i, v))
}

/// The model families of the runs, each once, in the order they first come.
fn families(runs: &[Run]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in runs {
        if !out.contains(&r.summary.family.as_str()) {
            out.push(&r.summary.family);
        }
    }
    out
}

/// The base against the best variant that learned, as the index shows them.
fn headline(meta: &Meta, variants: &[Variant], runs: &[Run], all: &[Stats]) -> Headline {
    let figure = |v: &Variant| Figure {
        label: v.label.clone(),
        best_val_acc: Agg::of(&v.stats(all), |s| s.best_val_acc).pct(),
    };
    let learned = |v: &&Variant| v.stats(all).iter().all(|s| s.failure.is_none());
    let best = variants.iter().filter(learned).max_by(|a, b| {
        let m = |v: &Variant| Agg::of(&v.stats(all), |s| s.best_val_acc).mean();
        m(a).unwrap_or(f64::MIN)
            .total_cmp(&m(b).unwrap_or(f64::MIN))
    });
    Headline {
        title: meta.title.to_string(),
        family: families(runs).join(", "),
        variants: variants.len(),
        seeds: variants.iter().map(|v| v.runs.len()).min().unwrap_or(0),
        base: variants.iter().find(|v| v.label == "base").map(figure),
        best: best.map(figure),
        failures: variants
            .iter()
            .filter(|v| !learned(v))
            .map(|v| Failed {
                label: v.label.clone(),
                seeds_failed: v.stats(all).iter().filter(|s| s.failure.is_some()).count(),
                seeds: v.runs.len(),
            })
            .collect(),
    }
}

/// Writes `<assets>/*.svg` under `out` and returns the markdown.
pub fn render(meta: &Meta, runs: &mut [Run], out: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        !runs.is_empty(),
        "a report needs at least one evaluated variant among its inputs"
    );
    runs.sort_by(|a, b| {
        label_order(&a.variant(), &b.variant()).then(a.summary.seed.cmp(&b.summary.seed))
    });
    let all: Vec<Stats> = runs.iter().map(stats).collect();
    let mut variants: Vec<Variant> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let label = r.variant();
        match variants.iter_mut().find(|v| v.label == label) {
            Some(v) => v.runs.push(i),
            None => variants.push(Variant {
                label,
                runs: vec![i],
            }),
        }
    }
    let seeds_per_variant: Vec<usize> = variants.iter().map(|v| v.runs.len()).collect();
    let replicated = seeds_per_variant.iter().all(|&n| n >= 2);
    let assets = out.join(meta.assets);
    std::fs::create_dir_all(&assets)?;
    let headline = headline(meta, &variants, runs, &all);
    crate::stage::write_file(
        &assets.join(super::html::HEADLINE),
        serde_json::to_vec_pretty(&headline)?,
    )?;
    let mut md = String::new();
    writeln!(md, "# {}\n", meta.title)?;
    if !meta.description.is_empty() {
        writeln!(md, "{}\n", meta.description)?;
    }
    let varied: Vec<String> = {
        let mut v: Vec<String> = runs
            .iter()
            .flat_map(|r| r.coords.iter().map(|(p, _)| p.clone()))
            .filter(|p| p != crate::pipeline::SEED)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let families = families(runs);
    let seeds_said = if replicated {
        format!(
            "each trained with {} seeds; tables give the mean ± standard deviation over seeds, and curves the mean with a ±1 sd band",
            seeds_per_variant.iter().min().unwrap_or(&1)
        )
    } else if seeds_per_variant.iter().all(|&n| n == 1) {
        "each trained with one seed, so the differences below are untested: a second seed could move them".into()
    } else {
        "with 1 to several seeds each (the table says how many)".into()
    };
    writeln!(
        md,
        "{} variants of the {} model{}, varying {}, {seeds_said}. Accuracies are percentages of images classified right. Losses are the cross-entropy alone: a regularizer's weight penalty is left out of every loss shown and given apart.\n",
        variants.len(),
        families.join(", "),
        if families.len() > 1 { "s" } else { "" },
        if varied.is_empty() { "nothing".to_string() } else { varied.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ") },
    )?;

    // Curves of every variant, overlaid.
    let members = |v: &Variant| -> Vec<&Run> { v.runs.iter().map(|&i| &runs[i]).collect() };
    // The loss figure leaves failed seeds out: one exploded run would set its scale.
    let overlay = |f: &dyn Fn(&EpochMetrics) -> Option<f64>, scale: f64, failed: bool| {
        variants
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let rs: Vec<&Run> = v
                    .runs
                    .iter()
                    .filter(|&&r| failed || all[r].failure.is_none())
                    .map(|&r| &runs[r])
                    .collect();
                let (points, band) = mean_curve(&rs, f, scale);
                (!rs.is_empty()).then(|| Series {
                    name: legend_name(i, v, &all),
                    points,
                    band,
                    look: Look::nth(i),
                })
            })
            .collect::<Vec<Series>>()
    };
    let acc = figure(
        &assets.join("val_accuracy.svg"),
        &[Panel {
            title: format!("{}: validation accuracy", meta.study),
            y_label: "validation accuracy (%)".into(),
            series: overlay(&|m| m.val_acc, 100.0, true),
        }],
    )?;
    let loss = figure(
        &assets.join("val_loss.svg"),
        &[Panel {
            title: format!("{}: validation loss", meta.study),
            y_label: "validation loss (cross-entropy)".into(),
            series: overlay(&|m| m.val_data_loss(), 1.0, false),
        }],
    )?;
    writeln!(md, "## Curves\n")?;
    writeln!(
        md,
        "![validation accuracy]({}/val_accuracy.svg)\n",
        meta.assets
    )?;
    writeln!(md, "![validation loss]({}/val_loss.svg)\n", meta.assets)?;
    if all.iter().any(|s| s.failure.is_some()) {
        writeln!(
            md,
            "Seeds that failed are drawn in the accuracy figure and left out of the loss figure (their losses would set its scale); the table and the Influence section give their numbers.\n"
        )?;
    }
    let long: Vec<(String, &str)> = variants
        .iter()
        .enumerate()
        .filter(|(i, v)| short_label(*i, v) != v.label)
        .map(|(i, v)| (short_label(i, v), v.label.as_str()))
        .collect();
    if !long.is_empty() {
        writeln!(md, "| in the figures | variant |\n|---|---|")?;
        for (short, label) in long {
            writeln!(md, "| {short} | `{label}` |")?;
        }
        writeln!(md)?;
    }
    if !acc.log_axes.is_empty() || !loss.log_axes.is_empty() {
        writeln!(
            md,
            "The validation loss axis is logarithmic: the curves span more than a factor of 30.\n"
        )?;
    }

    results_table(&mut md, &variants, runs, &all, &varied)?;

    // Influence.
    writeln!(md, "## Influence\n")?;
    match variants.iter().position(|v| v.label == "base") {
        None => writeln!(
            md,
            "No base run among the inputs: nothing to compare against.\n"
        )?,
        Some(bi) => {
            let bullets = influence_section(&variants, bi, runs, &all, &assets)?;
            if bullets.is_empty() {
                writeln!(md, "Only the base run: nothing varied.")?;
            }
            for b in bullets {
                writeln!(md, "{b}")?;
            }
            writeln!(md, "\n{}\n", super::influence::RULES)?;
        }
    }

    // Train vs validation per variant.
    writeln!(md, "## Train vs validation (overfitting view)\n")?;
    writeln!(md, "Training curves dashed, validation solid; accuracy above, loss below (cross-entropy, penalty left out).\n")?;
    for (i, v) in variants.iter().enumerate() {
        let file = format!("fit_{}.svg", slug(&v.label));
        let rs = members(v);
        let pair = |train: &dyn Fn(&EpochMetrics) -> Option<f64>,
                    val: &dyn Fn(&EpochMetrics) -> Option<f64>,
                    scale: f64| {
            let (tp, tb) = mean_curve(&rs, train, scale);
            let (vp, vb) = mean_curve(&rs, val, scale);
            let c = i;
            vec![
                Series {
                    name: "training".into(),
                    points: tp,
                    band: tb,
                    look: Look {
                        color: c,
                        dash: 1,
                        marker: 1,
                    },
                },
                Series {
                    name: "validation".into(),
                    points: vp,
                    band: vb,
                    look: Look {
                        color: c,
                        dash: 0,
                        marker: 0,
                    },
                },
            ]
        };
        let title = format!("{}: {}", meta.study, legend_name(i, v, &all));
        let drawn = figure(
            &assets.join(&file),
            &[
                Panel {
                    title: format!("{title}, accuracy"),
                    y_label: "accuracy (%)".into(),
                    series: pair(&|m| Some(m.train_acc), &|m| m.val_acc, 100.0),
                },
                Panel {
                    title: format!("{title}, loss"),
                    y_label: "loss (cross-entropy)".into(),
                    series: pair(&|m| Some(m.train_data_loss()), &|m| m.val_data_loss(), 1.0),
                },
            ],
        )?;
        let log = if drawn.log_axes.is_empty() {
            ""
        } else {
            " (loss axis logarithmic)"
        };
        writeln!(md, "![{}]({}/{file}){log}\n", v.label, meta.assets)?;
    }

    classes(&mut md, &variants, runs, &all, meta, &assets)?;
    provenance(&mut md, runs, &all)?;
    tensorboard(&mut md, runs, meta, &assets)?;
    Ok(md)
}

/// The fields in which a run differs from the base, seed left out: read from the
/// coordinates, never parsed back from a label.
fn changed<'a>(run: &'a Run, base: &Run) -> Vec<&'a (String, String)> {
    run.coords
        .iter()
        .filter(|(p, _)| p != crate::pipeline::SEED)
        .filter(|(p, v)| base.value_of(p) != Some(v.as_str()))
        .collect()
}

/// Every variant that changes one field against the base: its claims, decided over the
/// whole report, written to `claims.json` (with a copy of each run's metrics, which they
/// are re-derived from), and its bullet.
fn influence_section(
    variants: &[Variant],
    bi: usize,
    runs: &[Run],
    all: &[Stats],
    assets: &Path,
) -> anyhow::Result<Vec<String>> {
    let seeded = |v: &Variant| -> Vec<Seeded> {
        v.runs
            .iter()
            .map(|&i| Seeded {
                seed: runs[i].summary.seed,
                stats: &all[i],
            })
            .collect()
    };
    let base = &variants[bi];
    let base_run = &runs[base.runs[0]];
    let mut compared: Vec<(Comparison, &Variant)> = Vec::new();
    for v in variants.iter().filter(|v| v.label != "base") {
        let first = &runs[v.runs[0]];
        let [(field, value)] = changed(first, base_run)[..] else {
            continue;
        };
        compared.push((
            Comparison {
                field: field.clone(),
                variant: v.label.clone(),
                base_value: base_run.value_of(field).unwrap_or("?").to_string(),
                value: value.clone(),
                claims: compare(&seeded(base), &seeded(v)),
            },
            v,
        ));
    }
    let (mut comparisons, of): (Vec<Comparison>, Vec<&Variant>) = compared.into_iter().unzip();
    decide(&mut comparisons);
    let test = |v: &Variant| Agg::of(&v.stats(all), |s| Some(s.test_acc_final));
    let bullets = comparisons
        .iter_mut()
        .zip(&of)
        .map(|(c, v)| bullet(c, &seeded(base), &seeded(v), (&test(base), &test(v))))
        .collect();
    let metrics = assets.join("metrics");
    std::fs::create_dir_all(&metrics)?;
    let mut refs = Vec::new();
    for (r, s) in runs.iter().zip(all) {
        let file = format!("{}.jsonl", slug(&r.label));
        let bytes = std::fs::read(r.dir.join("metrics.jsonl")).or_else(|_| {
            r.metrics
                .iter()
                .map(|m| serde_json::to_string(m).map(|l| l + "\n"))
                .collect::<Result<String, _>>()
                .map(String::into_bytes)
        })?;
        crate::stage::write_file(&metrics.join(&file), bytes)?;
        // The evaluation and timing as the runs wrote them, for re-deriving test accuracy
        // and time per epoch (the timing of a run from before the volatile folder as read).
        let copy = |from: &str, to: String, made: &dyn Fn() -> serde_json::Result<Vec<u8>>| {
            let bytes = std::fs::read(r.dir.join(from)).or_else(|_| made())?;
            crate::stage::write_file(&metrics.join(&to), bytes)?;
            anyhow::Ok(format!("metrics/{to}"))
        };
        let stem = slug(&r.label);
        let evaluation = copy(
            "evaluation.json",
            format!("{stem}.evaluation.json"),
            &|| serde_json::to_vec_pretty(&r.eval),
        )?;
        let timing = copy(
            crate::train::fit::Timing::FILE,
            format!("{stem}.timing.json"),
            &|| serde_json::to_vec_pretty(&r.timing),
        )?;
        refs.push(RunRef {
            variant: r.variant(),
            seed: r.summary.seed,
            metrics: format!("metrics/{file}"),
            failure: claims::failure_kind(s).map(str::to_string),
            evaluation,
            timing,
            test_acc: s.test_acc_best,
            best_val_acc: s.best_val_acc,
            epochs_to_90: s.epochs_to_90.map(|e| e as f64),
            seconds_per_epoch: claims::steady_seconds(&r.timing.epoch_seconds),
            parameters: r.summary.parameters as u64,
            backend: r.summary.backend.clone(),
            train_key: r.train_key.clone(),
        });
    }
    crate::stage::write_file(
        &assets.join(claims::FILE),
        serde_json::to_vec_pretty(&Claims {
            runs: refs,
            comparisons,
        })?,
    )?;
    Ok(bullets)
}
