//! The conclusions as markdown (matrices, heatmaps, the classic claims, the ranking, the
//! bases) and as CSV for `pipe show`.

use std::fmt::Write as _;
use std::path::Path;

use super::super::claims::Kind;
use super::super::stats::{mean, std_dev};
use super::classic::Outcome;
use super::heatmap;
use super::{cells, family_name, Conclusions, Direction, Effect, Mark, FIGURES};

/// What the report says of how it was made, under its title.
pub const RULES: &str = "Every cell below is one variant against its base, as its study's report \
decided it (the numbers and the test are in that report's `claims.json`): **bold** is a \
difference after Holm's correction over the study's tests of that figure (Welch's t-test over \
seeds, adjusted p < 0.05); *n.s.* is tested and not significant (or smaller than the figure \
needs to be mentioned: speed 25%, gap one point); *untested* has fewer than two seeds on a side; \
*failed* means no seed of the variant learned, *no figure* that none gave this figure (the \
seeds that learned collapsed, or ran under 5 epochs, so their curves are not read). ↑ raises the value (or, for the structure, adds \
parameters), ↓ lowers it, → changes a category. The correction is the study's: a cell agrees \
with the sentence of its report, and a matrix of many cells holds some differences that are \
chance.";

fn points(kind: Kind, d: f64) -> String {
    let d = if d.abs() < 5e-4 { 0.0 } else { d };
    match kind {
        Kind::Speed | Kind::Onset => format!("{d:+.1} ep"),
        _ => format!("{:+.1}", d * 100.0),
    }
}

fn arrow(d: Direction) -> &'static str {
    match d {
        Direction::Raised | Direction::Larger => "↑",
        Direction::Lowered | Direction::Smaller => "↓",
        Direction::Changed => "→",
    }
}

/// A value short enough for a cell: spaces dropped, long ones cut.
fn short(v: &str) -> String {
    let s: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if s.chars().count() > 30 {
        format!("{}…", s.chars().take(29).collect::<String>())
    } else {
        s
    }
}

/// A ConvNet's blocks by their filters (`[32, 64, 128]`): the rest of each block is the
/// base's, and the whole value does not fit a cell.
fn filters(v: &str) -> Option<String> {
    let f: Vec<&str> = v
        .split("filters:")
        .skip(1)
        .map(|s| {
            s.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        })
        .collect();
    (!f.is_empty()).then(|| format!("filters [{}]", f.join(", ")))
}

fn label(e: &Effect) -> String {
    let field = e.field.rsplit('.').next().unwrap_or(&e.field);
    if e.row == "structure" {
        filters(&e.value).unwrap_or_else(|| format!("{field} {}", short(&e.value)))
    } else {
        short(&e.value)
    }
}

/// One effect in a cell: `↓0.001: **−5.3**`.
fn entry(e: &Effect, link: Option<&str>) -> String {
    let name = match link {
        Some(l) => format!("[{}]({l})", label(e)),
        None => label(e),
    };
    let failed_some = if e.failed.0 > 0 && e.failed.0 < e.failed.1 {
        format!(" ({} of {} seeds failed)", e.failed.0, e.failed.1)
    } else {
        String::new()
    };
    let figure = match (e.mark, e.delta) {
        (Mark::Failed, _) | (_, None) if e.failed.0 == e.failed.1 => {
            format!("*failed* ({} of {} seeds)", e.failed.0, e.failed.1)
        }
        (Mark::Failed, _) | (_, None) => "*no figure* (no seed could be read)".to_string(),
        (Mark::Significant, Some(d)) => format!("**{}**", points(e.kind, d)),
        (Mark::NotSignificant, Some(d)) => format!("{} *n.s.*", points(e.kind, d)),
        (Mark::Untested, Some(d)) => format!("{} *untested*", points(e.kind, d)),
    };
    format!("{}{name}: {figure}{failed_some}", arrow(e.direction))
}

/// The matrix of one figure as a markdown table; `links`: each value links to its study.
pub fn matrix_md(c: &Conclusions, kind: Kind, links: bool) -> String {
    let by_cell = cells(c, kind);
    let mut md = String::from("| hyperparameter |");
    for f in &c.families {
        let _ = write!(md, " {} |", family_name(f));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(c.families.len()));
    md.push('\n');
    for (ri, row) in c.rows.iter().enumerate() {
        let _ = write!(md, "| {row} |");
        for fi in 0..c.families.len() {
            let text = match by_cell.get(&(ri, fi)) {
                None => "not studied".to_string(),
                Some(list) => list
                    .iter()
                    .map(|e| entry(e, links.then(|| c.studies[e.study].link.as_str())))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            };
            let _ = write!(md, " {text} |");
        }
        md.push('\n');
    }
    md
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every effect, one a line: what a spreadsheet wants.
pub fn matrix_csv(c: &Conclusions) -> String {
    let mut out = String::from(
        "hyperparameter,family,field,base_value,value,direction,figure,delta,mark,p_holm,seeds_base,seeds_variant,seeds_failed,study\n",
    );
    for e in &c.effects {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let dir = serde_json::to_value(e.direction)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mark = serde_json::to_value(e.mark)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{dir},{kind},{},{mark},{},{},{},{},{}",
            csv_field(&e.row),
            csv_field(&e.family),
            csv_field(&e.field),
            csv_field(&e.base_value),
            csv_field(&e.value),
            e.delta.map(|d| format!("{d}")).unwrap_or_default(),
            e.p_holm.map(|p| format!("{p}")).unwrap_or_default(),
            e.seeds.0,
            e.seeds.1,
            e.failed.0,
            csv_field(&c.studies[e.study].stage),
        );
    }
    out
}

fn pm(v: &[f64], scale: f64, digits: usize, unit: &str) -> String {
    match (v.is_empty(), std_dev(v)) {
        (true, _) => "–".into(),
        (false, Some(s)) => format!(
            "{:.digits$}{unit} ± {:.digits$}",
            mean(v) * scale,
            s * scale
        ),
        (false, None) => format!("{:.digits$}{unit}", mean(v) * scale),
    }
}

/// Writes the markdown, `conclusions.json`, the heatmaps and the headline under `out`.
pub fn write(
    c: &Conclusions,
    title: &str,
    description: &str,
    assets: &str,
    out: &Path,
) -> anyhow::Result<String> {
    let dir = out.join(assets);
    std::fs::create_dir_all(&dir)?;
    crate::stage::write_file(&dir.join(super::FILE), serde_json::to_vec_pretty(c)?)?;
    let seeds = c.bases.iter().map(|b| b.seeds.len()).min().unwrap_or(0);
    let headline = super::super::html::Headline {
        title: title.to_string(),
        family: c
            .families
            .iter()
            .map(|f| family_name(f))
            .collect::<Vec<_>>()
            .join(", "),
        variants: c.studies.len(),
        seeds,
        base: None,
        best: None,
        failures: Vec::new(),
    };
    crate::stage::write_file(
        &dir.join(super::super::html::HEADLINE),
        serde_json::to_vec_pretty(&headline)?,
    )?;
    let mut md = String::new();
    writeln!(md, "# {title}\n")?;
    if !description.is_empty() {
        writeln!(md, "{description}\n")?;
    }
    let names: Vec<String> = c.families.iter().map(|f| family_name(f)).collect();
    writeln!(
        md,
        "{} studies of {} families ({}), one hyperparameter at a time around each family's base model. {RULES}\n",
        c.studies.len(),
        c.families.len(),
        names.join(", ")
    )?;
    bases(&mut md, c)?;
    for (i, (kind, what)) in FIGURES.iter().enumerate() {
        let heading = match kind {
            Kind::Accuracy => "Best validation accuracy".to_string(),
            Kind::TestAccuracy => "Test accuracy of the best weights".to_string(),
            Kind::Speed => "Convergence speed".to_string(),
            _ => "Overfitting: the train–validation gap".to_string(),
        };
        writeln!(md, "## {heading}\n")?;
        writeln!(
            md,
            "The change of the {what}, variant minus base, mean over seeds.\n"
        )?;
        let file = format!(
            "heatmap_{i}_{}.svg",
            serde_json::to_value(kind)?.as_str().unwrap_or("figure")
        );
        crate::stage::write_file(&dir.join(&file), heatmap::svg(c, *kind, &heading))?;
        writeln!(
            md,
            "![{heading}: change per hyperparameter and family]({assets}/{file})\n"
        )?;
        writeln!(md, "{}", matrix_md(c, *kind, true))?;
    }
    classic(&mut md, c)?;
    ranking(&mut md, c)?;
    writeln!(md, "## Studies\n")?;
    for s in &c.studies {
        writeln!(md, "- [{}]({}) (`{}`)", s.title, s.link, s.stage)?;
    }
    Ok(md)
}

fn bases(md: &mut String, c: &Conclusions) -> anyhow::Result<()> {
    writeln!(md, "## The base models side by side\n")?;
    writeln!(
        md,
        "| family | seeds | best validation accuracy | test accuracy (best weights) | epochs to 90% of best | parameters | s/epoch (backend) |\n|---|---|---|---|---|---|---|"
    )?;
    for b in &c.bases {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            family_name(&b.family),
            b.seeds.len(),
            pm(&b.best_val_acc, 100.0, 1, "%"),
            pm(&b.test_acc, 100.0, 1, "%"),
            pm(&b.epochs_to_90, 1.0, 1, ""),
            b.parameters,
            pm(&b.seconds_per_epoch, 1.0, 3, ""),
            b.backend
        )?;
    }
    writeln!(
        md,
        "\nTime per epoch is the median wall time of the epochs after the first, on the machine and under the load each base trained with: it is shown, never compared across families or machines."
    )?;
    for b in c.bases.iter().filter(|b| !b.other_bases.is_empty()) {
        let names: Vec<&str> = b
            .other_bases
            .iter()
            .map(|&i| c.studies[i].stage.as_str())
            .collect();
        writeln!(
            md,
            "\n{}: the base runs of {} are other runs than those above (another config): their cells compare with their own base.",
            family_name(&b.family),
            names.join(", ")
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn classic(md: &mut String, c: &Conclusions) -> anyhow::Result<()> {
    writeln!(md, "## The classic claims, checked\n")?;
    writeln!(md, "{}\n", super::classic::RULES)?;
    let mut parts: Vec<(&str, &str)> = Vec::new();
    for h in &c.hypotheses {
        if !parts.contains(&(h.statement.as_str(), h.part.as_str())) {
            parts.push((&h.statement, &h.part));
        }
    }
    write!(md, "| claim | part |")?;
    for f in &c.families {
        write!(md, " {} |", family_name(f))?;
    }
    writeln!(md, "\n|---|---|{}", "---|".repeat(c.families.len()))?;
    for (statement, part) in &parts {
        write!(md, "| {statement} | {part} |")?;
        for f in &c.families {
            let cell = c
                .hypotheses
                .iter()
                .find(|h| h.statement == *statement && h.part == *part && &h.family == f)
                .map(|h| match h.outcome {
                    Outcome::Supported | Outcome::Contradicted => {
                        format!("**{}**", h.outcome.words())
                    }
                    o => o.words().to_string(),
                })
                .unwrap_or_else(|| "does not apply".into());
            write!(md, " {cell} |")?;
        }
        writeln!(md)?;
    }
    writeln!(
        md,
        "\nEach verdict with the numbers and the test that decided it:\n"
    )?;
    for h in &c.hypotheses {
        writeln!(
            md,
            "- **{}, {}** ({}): {}.",
            h.statement,
            h.part,
            family_name(&h.family),
            h.words
        )?;
    }
    let count = |o: Outcome| c.hypotheses.iter().filter(|h| h.outcome == o).count();
    writeln!(
        md,
        "\nIn all: {} supported, {} contradicted, {} mixed, {} not significant, {} untested, {} with failed runs, {} not studied.\n",
        count(Outcome::Supported),
        count(Outcome::Contradicted),
        count(Outcome::Mixed),
        count(Outcome::NotSignificant),
        count(Outcome::Untested),
        count(Outcome::FailedRuns),
        count(Outcome::NotStudied)
    )?;
    Ok(())
}

fn ranking(md: &mut String, c: &Conclusions) -> anyhow::Result<()> {
    writeln!(
        md,
        "## Which hyperparameters moved each family's accuracy\n"
    )?;
    writeln!(
        md,
        "Per family, the hyperparameters by the largest significant change of best validation accuracy any of their variants made; then those with no significant change, by their largest change (not to be trusted). Variants whose every seed failed are named apart.\n"
    )?;
    for f in &c.families {
        let mut sig = Vec::new();
        let mut rest = Vec::new();
        let mut failed = Vec::new();
        for r in c.ranking.iter().filter(|r| &r.family == f) {
            if let Some(e) = r.effect.map(|i| &c.effects[i]) {
                let text = format!(
                    "{} ({}{}: {} points)",
                    r.row,
                    arrow(e.direction),
                    label(e),
                    points(Kind::Accuracy, e.delta.unwrap_or(0.0))
                );
                if r.significant {
                    sig.push(text);
                } else {
                    rest.push(text);
                }
            }
            for &i in &r.failed {
                failed.push(format!(
                    "{} = {}",
                    c.effects[i].field,
                    short(&c.effects[i].value)
                ));
            }
        }
        let mut line = format!("- **{}**: ", family_name(f));
        if sig.is_empty() {
            line.push_str("no significant change of accuracy");
        } else {
            line.push_str(
                &sig.iter()
                    .enumerate()
                    .map(|(i, s)| format!("{}. {s}", i + 1))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        if !rest.is_empty() {
            let _ = write!(line, "; not significant: {}", rest.join(", "));
        }
        if !failed.is_empty() {
            let _ = write!(line, "; no seed learned with {}", failed.join(", "));
        }
        writeln!(md, "{line}")?;
    }
    writeln!(md)?;
    Ok(())
}
