//! A study report from its variants' evaluations: curves, a table per variant, an
//! "Influence" section written from the measured numbers (its rules: [`influence`]), a look
//! at the classes, and provenance. Seed replicates of a variant (coordinates ending in `seed`)
//! are one row, their mean ± sd, and one curve, the mean with a band.

pub mod claims;
pub mod conclusions;
pub mod hparams;
pub mod html;
pub mod influence;
pub mod plot;
mod sections;
pub mod stats;
mod write;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::pipeline::SEED;
use crate::train::evaluate::Evaluation;
use crate::train::fit::{EpochMetrics, Summary, Timing};
pub use write::render;

/// The files a run is read from: what an `evaluate` stage writes, and what a `command` stage
/// a report gathers must write (README: "Your own training script").
pub const RUN_FILES: [&str; 3] = ["metrics.jsonl", "summary.json", "evaluation.json"];

/// The stage kinds whose outputs a report reads as runs.
pub const RUN_KINDS: [&str; 2] = ["evaluate", "command"];

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
    /// `key`: the stage's own key, standing for the training's where the run has no
    /// `train_key.txt` (a command's run).
    pub fn load(
        label: &str,
        coords: &[(String, String)],
        stage: &str,
        key: &str,
        dir: &Path,
    ) -> anyhow::Result<Run> {
        let mut run = Run::read(label, coords, stage, &|f| std::fs::read(dir.join(f)).ok())?;
        run.dir = dir.to_path_buf();
        if run.train_key.is_empty() {
            run.train_key = key.to_string();
        }
        Ok(run)
    }

    /// The run from the files of an evaluate output, however they are reached (`pipe show`
    /// reads them from the cache's objects, without laying them out). A `command` stage's
    /// output is read the same way: it is a run when it holds [`RUN_FILES`].
    pub fn read(
        label: &str,
        coords: &[(String, String)],
        stage: &str,
        file: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> anyhow::Result<Run> {
        let read = |f: &str| {
            file(f).with_context(|| {
                format!(
                    "`{stage}` has no {f}: a run is the output of an evaluate stage, or of a \
                     command that writes {} (README: \"Your own training script\")",
                    RUN_FILES.join(", ")
                )
            })
        };
        let json = |f: &str, line: Option<usize>, e: serde_json::Error| {
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            anyhow::anyhow!("`{stage}`: {f}{at}: {e}")
        };
        let metrics = String::from_utf8(read("metrics.jsonl")?)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| json("metrics.jsonl", Some(i + 1), e))
            })
            .collect::<Result<Vec<EpochMetrics>, _>>()?;
        if metrics.is_empty() {
            anyhow::bail!("`{stage}`: metrics.jsonl holds no epoch");
        }
        let summary = read("summary.json")?;
        let eval = read("evaluation.json")?;
        Ok(Run {
            label: label.to_string(),
            coords: coords
                .iter()
                .map(|(f, v)| (f.clone(), unquote_number(v)))
                .collect(),
            stage: stage.to_string(),
            // A command's run has none: its own key stands for it (set by the caller).
            train_key: file("train_key.txt")
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default(),
            summary: serde_json::from_slice(&summary).map_err(|e| json("summary.json", None, e))?,
            eval: serde_json::from_slice(&eval).map_err(|e| json("evaluation.json", None, e))?,
            timing: Timing::read(file, &metrics),
            metrics,
            dir: PathBuf::new(),
        })
    }

    /// The variant this run replicates: its label without the seed part, which a seed
    /// replicate's label ends with (`…,seed=43`) as its coordinates end with the seed.
    pub fn variant(&self) -> String {
        let Some((_, seed)) = self.coords.last().filter(|(p, _)| p == SEED) else {
            return self.label.clone();
        };
        let own = format!("{SEED}={seed}");
        match self.label.strip_suffix(&own) {
            Some("") => "base".into(),
            Some(rest) => rest.strip_suffix(',').unwrap_or(rest).to_string(),
            None => self.label.clone(),
        }
    }

    pub fn value_of(&self, path: &str) -> Option<&str> {
        self.coords
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
    }
}

/// A value as the report compares it: a string that holds a number (a command's `env`:
/// `"0.9"`) is that number, so its variants are raised and lowered and plotted in order.
fn unquote_number(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if inner.trim().parse::<f64>().is_ok_and(f64::is_finite) => inner.trim().into(),
        _ => v.to_string(),
    }
}

/// A study's name from its report's target: `reports/quick/momentum.md` → `quick/momentum`
/// (in every figure title, and `pipe show`'s study column).
pub fn study_name(target: &str) -> String {
    let t = target.strip_prefix("reports/").unwrap_or(target);
    t.strip_suffix(".md").unwrap_or(t).to_string()
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
    let s = s.trim_matches('_');
    // File names have a limit (255 bytes); a structure label can pass it.
    if s.len() <= MAX_SLUG {
        return s.to_string();
    }
    let hash = blake3::hash(label.as_bytes()).to_hex();
    format!("{}_{}", &s[..MAX_SLUG - 13], &hash[..12])
}

const MAX_SLUG: usize = 100;

pub struct Meta<'a> {
    pub title: &'a str,
    /// A short name for figure titles (`quick/mlp/momentum`).
    pub study: &'a str,
    pub description: &'a str,
    /// Folder of the images, relative to the markdown file (`momentum`).
    pub assets: &'a str,
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

#[cfg(test)]
mod tests {
    #[test]
    fn long_labels_give_short_distinct_file_names() {
        let a = format!("model.blocks={}", "[(filters:16,kernel:3)]".repeat(20));
        let b = a.replace("16", "32");
        let (sa, sb) = (super::slug(&a), super::slug(&b));
        assert!(sa.len() <= 100 && sb.len() <= 100, "{sa}");
        assert_ne!(sa, sb);
        assert_eq!(
            super::slug("optimizer.momentum=0.9"),
            "optimizer.momentum_0.9"
        );
    }
}
