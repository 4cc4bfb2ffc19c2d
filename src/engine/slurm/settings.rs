//! `slurm.ron`: what the jobs ask of Slurm (partition, account, time, memory, CPUs, GPUs,
//! extra `sbatch` arguments), for every kind and per kind. Never part of a key: moving a study
//! to another partition reruns nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::ron_path::{did_you_mean, line_col, offset_of_path, FieldPath};

/// Where a project keeps its Slurm settings.
pub const SETTINGS_FILE: &str = "slurm.ron";

/// `slurm.ron`: every field optional.
///
/// ```ron
/// Slurm(
///     kinds: ["train", "evaluate"],
///     partition: "gpu",
///     account: "my-lab",
///     time: "04:00:00",
///     mem: "16G",
///     extra: ["--qos=normal"],
///     per_kind: {"evaluate": (time: "00:20:00", gpus: 0)},
///     resubmit: 10,
/// )
/// ```
#[derive(Deserialize, Debug, Clone)]
#[serde(rename = "Slurm", deny_unknown_fields)]
pub struct Settings {
    /// Stage kinds that run as jobs; the rest run on the submitting machine.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub mem: Option<String>,
    #[serde(default)]
    pub cpus: Option<usize>,
    #[serde(default)]
    pub gpus: Option<usize>,
    #[serde(default)]
    pub extra: Vec<String>,
    /// A kind's own settings, over the ones above field by field (`extra` is added to).
    #[serde(default)]
    pub per_kind: BTreeMap<String, Request>,
    /// How many times a job that ran out of time (or was preempted) after making progress
    /// is submitted again. Unset: as many times as the run needs, so long as each job takes
    /// its progress (the epochs a training reports) past where the jobs before it got; for
    /// a stage that reports no progress, 3 times after its scratch folder changed.
    #[serde(default)]
    pub resubmit: Option<u32>,
    /// Milliseconds between two polls of the queue.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

/// What one job asks of Slurm. Named for where it is written, in errors.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename = "per_kind", deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    /// `--time`, e.g. `"04:00:00"` or `"1"` (minutes).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub mem: Option<String>,
    /// `--cpus-per-task`; default: what the stage asks for, and for a stage that would
    /// take every core of this machine (CPU training) 4, or all of the largest node if less.
    #[serde(default)]
    pub cpus: Option<usize>,
    /// `--gres=gpu:N`; default: what the stage asks for.
    #[serde(default)]
    pub gpus: Option<usize>,
    #[serde(default)]
    pub extra: Vec<String>,
}

fn default_kinds() -> Vec<String> {
    vec!["train".into(), "evaluate".into()]
}
fn default_poll_ms() -> u64 {
    1000
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kinds: default_kinds(),
            partition: None,
            account: None,
            time: None,
            mem: None,
            cpus: None,
            gpus: None,
            extra: Vec::new(),
            per_kind: BTreeMap::new(),
            resubmit: None,
            poll_ms: default_poll_ms(),
        }
    }
}

impl Settings {
    /// `root/slurm.ron`, or the defaults when there is none; errors name file, line and
    /// field. A kind name that is none of `known` is an error: misspelt in `kinds`, its
    /// stages would run on this machine; in `per_kind`, its limits would be dropped.
    pub fn load(root: &Path, known: &[&str]) -> Result<Settings, String> {
        let path = root.join(SETTINGS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Settings::default());
        };
        let at = |path: &str, line: usize, col: usize, message: &str, hint: Option<&str>| {
            let field = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            let hint = hint.map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            format!("{SETTINGS_FILE}:{line}:{col}: {field}{message}{hint}")
        };
        let settings = crate::ron_path::parse_typed::<Settings>(&text)
            .map_err(|e| at(&e.path, e.line, e.col, &e.message, e.hint.as_deref()))?;
        let unknown = settings
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (FieldPath::default().key("kinds").index(i), k))
            .chain(
                settings
                    .per_kind
                    .keys()
                    .map(|k| (FieldPath::default().key("per_kind").key(k), k)),
            )
            .filter(|(_, k)| !known.contains(&k.as_str()));
        let errors: Vec<String> = unknown
            .map(|(field, k)| {
                let (line, col) = line_col(&text, offset_of_path(&text, &field));
                let hint = did_you_mean(k, known.iter().copied());
                at(
                    &field.to_string(),
                    line,
                    col,
                    &format!("unknown stage kind `{k}`"),
                    Some(&hint),
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors.join("\nerror: "))
        }
    }

    pub(super) fn request(&self, kind: &str) -> Request {
        let mut r = Request {
            partition: self.partition.clone(),
            account: self.account.clone(),
            time: self.time.clone(),
            mem: self.mem.clone(),
            cpus: self.cpus,
            gpus: self.gpus,
            extra: self.extra.clone(),
        };
        if let Some(k) = self.per_kind.get(kind) {
            macro_rules! over {
                ($($f:ident),*) => {$(if k.$f.is_some() { r.$f = k.$f.clone(); })*};
            }
            over!(partition, account, time, mem, cpus, gpus);
            r.extra.extend(k.extra.iter().cloned());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_per_kind_over_the_defaults() {
        let s: Settings = crate::ron_path::parse_typed(
            r#"Slurm(partition: "gpu", time: "04:00:00", extra: ["--qos=x"],
                    per_kind: {"evaluate": (time: "00:20:00", gpus: 0, extra: ["-v"])})"#,
        )
        .unwrap();
        let e = s.request("evaluate");
        assert_eq!(e.partition.as_deref(), Some("gpu"));
        assert_eq!(e.time.as_deref(), Some("00:20:00"));
        assert_eq!(e.gpus, Some(0));
        assert_eq!(e.extra, ["--qos=x", "-v"]);
        assert_eq!(s.request("train").time.as_deref(), Some("04:00:00"));
        assert_eq!(s.kinds, ["train", "evaluate"]);
        let bad = crate::ron_path::parse_typed::<Settings>("Slurm(partiton: \"x\")");
        assert!(bad.is_err());
    }
}
