//! The markdown and its figures: the order of the sections, the table, and which series each
//! figure draws. The numbers come from [`super::stats`], the sentences from
//! [`super::influence`].

use std::fmt::Write as _;
use std::path::Path;

use super::html::{Figure, Headline};
use super::influence::{influence, Side};
use super::plot::{confusion, figure, Look, Panel, Series};
use super::stats::{mean, stats, std_dev, Agg, Stats};
use super::{now_utc, slug, Meta, Run};
use crate::train::fit::EpochMetrics;
use crate::train::tensorboard::DIR as TENSORBOARD;

/// A variant: its runs (one per seed), in seed order.
struct Variant {
    label: String,
    runs: Vec<usize>,
}

impl Variant {
    fn stats<'a>(&self, all: &'a [Stats]) -> Vec<&'a Stats> {
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

/// What the legend says of a variant that failed in some seeds.
fn legend_name(v: &Variant, all: &[Stats]) -> String {
    let failed = v.stats(all).iter().filter(|s| s.failure.is_some()).count();
    let mark = if failed == 0 {
        String::new()
    } else if v.stats(all).iter().any(|s| s.diverged_at.is_some()) {
        " (diverged)".into()
    } else {
        " (did not learn)".into()
    };
    let seeds = if v.runs.len() > 1 {
        format!(", {} seeds", v.runs.len())
    } else {
        String::new()
    };
    format!("{}{mark}{seeds}", v.label)
}

fn status(v: &Variant, all: &[Stats]) -> String {
    let st = v.stats(all);
    let failures: Vec<&str> = st.iter().filter_map(|s| s.failure.as_deref()).collect();
    match failures.first() {
        None => "ok".into(),
        Some(f) if st.len() == 1 => (*f).to_string(),
        Some(f) => format!("{} of {} seeds: {f}", failures.len(), st.len()),
    }
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
        failed: variants
            .iter()
            .filter(|v| !learned(v))
            .map(|v| v.label.clone())
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
    let overlay = |f: &dyn Fn(&EpochMetrics) -> Option<f64>, scale: f64| -> Vec<Series> {
        variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (points, band) = mean_curve(&members(v), f, scale);
                Series {
                    name: legend_name(v, &all),
                    points,
                    band,
                    look: Look::nth(i),
                }
            })
            .collect()
    };
    let acc = figure(
        &assets.join("val_accuracy.svg"),
        &[Panel {
            title: format!("{}: validation accuracy", meta.study),
            y_label: "validation accuracy (%)".into(),
            series: overlay(&|m| m.val_acc, 100.0),
        }],
    )?;
    let loss = figure(
        &assets.join("val_loss.svg"),
        &[Panel {
            title: format!("{}: validation loss", meta.study),
            y_label: "validation loss (cross-entropy)".into(),
            series: overlay(&|m| m.val_data_loss(), 1.0),
        }],
    )?;
    writeln!(md, "## Curves\n")?;
    writeln!(
        md,
        "![validation accuracy]({}/val_accuracy.svg)\n",
        meta.assets
    )?;
    writeln!(md, "![validation loss]({}/val_loss.svg)\n", meta.assets)?;
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
            let base = &variants[bi];
            let base_run = &runs[base.runs[0]];
            let mut any = false;
            for path in &varied {
                for v in &variants {
                    let first = &runs[v.runs[0]];
                    let only_this = v.label != "base"
                        && v.label
                            .split(',')
                            .all(|part| part.starts_with(&format!("{path}=")));
                    if !only_this {
                        continue;
                    }
                    let side = |r: &'_ Run, v: &Variant| -> (String, Vec<usize>) {
                        (r.value_of(path).unwrap_or("?").to_string(), v.runs.clone())
                    };
                    let (bv, bruns) = side(base_run, base);
                    let (vv, vruns) = side(first, v);
                    writeln!(
                        md,
                        "{}",
                        influence(
                            path,
                            &Side {
                                value: &bv,
                                stats: bruns.iter().map(|&i| &all[i]).collect()
                            },
                            &Side {
                                value: &vv,
                                stats: vruns.iter().map(|&i| &all[i]).collect()
                            },
                        )
                    )?;
                    any = true;
                }
            }
            if !any {
                writeln!(md, "Only the base run: nothing varied.")?;
            }
            writeln!(
                md,
                "\nHow these sentences are decided: with two or more seeds a side, a difference in accuracy is called one only when \
                 Welch's two-sided t-test over the seeds gives p < 0.05; with one seed a side, a difference under twice the noise \
                 floor (the larger standard deviation of validation accuracy over the last five epochs of the two runs) is called \
                 no clear change, and any difference is untested. A run that diverged, stayed within 5 points of chance, or ended with \
                 a validation loss ten times that of a uniform guess is named as failed, and nothing is read from its curves. \
                 \"Plateaued\" means validation accuracy stopped improving before the last quarter of training; \"overfitting starts \
                 earlier\" needs the lowest validation loss at least one epoch (and one standard deviation over seeds) earlier and the \
                 train–validation gap growing after it. Convergence speed must differ by 25% and curve smoothness by 50% to be \
                 mentioned. Time per epoch is wall time, which follows the machine's load: it is shown, never compared.\n"
            )?;
        }
    }

    // Train vs validation per variant.
    writeln!(md, "## Train vs validation (overfitting view)\n")?;
    writeln!(md, "Training curves dashed, validation solid; accuracy left, loss right (cross-entropy, penalty left out).\n")?;
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
        let title = format!("{}: {}", meta.study, legend_name(v, &all));
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

fn results_table(
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
    head.push_str(" best val acc | best epoch | final train acc | final val acc | test acc (final) | test acc (best val) | gap train−val (pts) | epochs to 90% of best | s/epoch (wall) | status | seeds |");
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
            a(&|s| s.best_val_acc).pct(),
            epoch_cell(&|s| s.best_epoch),
            a(&|s| Some(s.final_train_acc)).pct(),
            a(&|s| s.final_val_acc).pct(),
            a(&|s| Some(s.test_acc_final)).pct(),
            a(&|s| Some(s.test_acc_best)).pct(),
            match gap.mean() {
                Some(m) if m >= 0.0 => format!("+{}", gap.num(1)),
                _ => gap.num(1),
            },
            epoch_cell(&|s| s.epochs_to_90),
            a(&|s| Some(s.seconds_per_epoch).filter(|x| *x > 0.0)).num(2),
            status(v, all),
            v.runs.len(),
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
fn classes(
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

fn provenance(md: &mut String, runs: &[Run], all: &[Stats]) -> anyhow::Result<()> {
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
fn tensorboard(md: &mut String, runs: &[Run], meta: &Meta, assets: &Path) -> anyhow::Result<()> {
    let mut any = false;
    for r in runs {
        // Evaluations made before the volatile folder hold their events in `tensorboard/`.
        let Some(from) = [TENSORBOARD, "tensorboard"]
            .iter()
            .map(|d| r.dir.join(d))
            .find(|d| d.is_dir())
        else {
            continue;
        };
        let to = assets.join("tensorboard").join(slug(&r.label));
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
             HParams tab compares the runs by hyperparameter and final metrics.",
            meta.assets
        )?;
    }
    Ok(())
}
