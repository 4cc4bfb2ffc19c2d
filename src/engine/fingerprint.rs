//! Stage keys: what makes two runs of a stage "the same run".
//!
//! A key is blake3 over the inputs below, and nothing else. It never includes mtimes,
//! absolute paths, stage names, titles or the RON text as written, so reformatting a file,
//! renaming a stage or defining the same training run in two studies leaves the key as it is.
//! Keys use upstream *outputs* (their content hash), not upstream keys: a stage rebuilt with
//! byte-identical output leaves its dependents' keys unchanged (early cutoff).
//!
//! | key input            | every kind | what it is                                                     |
//! |----------------------|------------|----------------------------------------------------------------|
//! | domain tag           | yes        | `pipe-key-v1`: bumped if this encoding changes                |
//! | kind                 | yes        | the stage kind's name (`train`, `report`, …)                   |
//! | kind version         | yes        | [`StageKind::version`], bumped when a kind's outputs change     |
//! | config               | yes        | the typed config re-serialized canonically (serde → JSON with  |
//! |                      |            | sorted keys, every default explicit); cosmetic fields are      |
//! |                      |            | `skip_serializing_if = "crate::stage::keying"` and absent      |
//! | external             | if any     | [`StageConfig::external_key`]: content the stage reads from     |
//! |                      |            | outside the cache (a local dataset folder's file hashes)        |
//! | deps                 | if any     | the stage's `deps` (files and folders of the project): each     |
//! |                      |            | file's path and blake3 (a script a `command` stage runs)        |
//! | target               | if set     | the path the output is materialized at: a report's links use it |
//! | input output hashes  | yes        | for each input in order, blake3 of its output listing           |
//! |                      |            | (relative path + blake3 of each file, sorted)                   |
//! | input labels         | gathering  | the variant label of each input (`optimizer.momentum=0.9`),     |
//! |                      | kinds only | which a report prints; mapped kinds never see labels             |
//!
//! Per kind, what the config carries (the rows above cover every kind; a kind whose
//! outputs also depend on something outside its config and inputs must say so here):
//!
//! | kind             | config fields in the key           | outside inputs (not in the key)     |
//! |------------------|------------------------------------|-------------------------------------|
//! | `download`       | `url`, `md5`, `source`             | a local copy's file hashes (external); |
//! |                  |                                    | `retries`, `backoff_ms` are not keyed |
//! | `normalize`      | `validation`, `scaling`,           | none                                 |
//! |                  | `train_subset`, `seed`             |                                      |
//! | `train`          | `model` (family and its fields),   | the backend used, `flex-cpu`,        |
//! |                  | `epochs`, `batch_size`,            | `cuda-unfused`, `cuda-fused` (with   |
//! |                  | `optimizer`, `schedule`,           | `-autotune` if built so) or          |
//! |                  |                                    | `ndarray-cpu` (external); `device`   |
//! |                  |                                    | itself is not keyed                  |
//! |                  | `initializer`, `bias_initializer`, |                                      |
//! |                  | `regularizer`, `seed`, `shuffle`   |                                      |
//! | `evaluate`       | none                               | the backend used (external)          |
//! | `command`        | `run`, `env`, `cpus`, `gpus`       | programs and files the command reads |
//! |                  |                                    | from the project (documented)        |
//! | `command_gather` | as `command`                       | as `command`                         |
//! | `fake`           | every field but `title`            | none                                 |
//! | `fake_gather`    | every field but `title`            | none                                 |
//!
//! The upstream stage ids are stored beside the key (for `explain`) but not hashed.
//!
//! [`StageKind::version`]: crate::stage::StageKind::version
//! [`StageConfig::external_key`]: crate::stage::StageConfig::external_key

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Everything a key is made of, stored in the cache entry so `explain` can diff it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyInputs {
    pub kind: String,
    pub version: u32,
    /// Shared with the plan's variant: every key computation would otherwise copy it.
    #[serde(with = "shared_value")]
    pub config: Arc<serde_json::Value>,
    /// What the stage reads from outside the cache (`StageConfig::external_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
    /// The stage's declared `deps`: project path of each file → its blake3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps: Option<BTreeMap<String, String>>,
    pub target: Option<String>,
    pub inputs: Vec<InputKey>,
}

/// An `Arc<Value>` reads and writes as the value itself.
mod shared_value {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Arc<serde_json::Value>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(d).map(Arc::new)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InputKey {
    /// Upstream stage id; shown by `explain`, never hashed.
    pub stage: String,
    /// Set only for gathering kinds.
    pub label: Option<String>,
    /// blake3 of the upstream stage's output listing.
    pub hash: String,
}

impl KeyInputs {
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"pipe-key-v1");
        field(self.kind.as_bytes());
        field(&self.version.to_le_bytes());
        field(
            serde_json::to_string(&self.config)
                .expect("JSON values serialize")
                .as_bytes(),
        );
        field(self.target.as_deref().unwrap_or("\0none").as_bytes());
        if let Some(ext) = &self.external {
            field(b"external");
            field(
                serde_json::to_string(ext)
                    .expect("JSON values serialize")
                    .as_bytes(),
            );
        }
        if let Some(deps) = &self.deps {
            field(b"deps");
            for (path, hash) in deps {
                field(path.as_bytes());
                field(hash.as_bytes());
            }
        }
        for input in &self.inputs {
            field(input.label.as_deref().unwrap_or("\0none").as_bytes());
            field(input.hash.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// Outputs under this folder record facts of one execution (wall-clock times, event files
/// stamped with the time of day): stored, linked and materialized like any output, but left
/// out of [`output_hash`], so a rerun that reproduces every other byte leaves its dependents
/// fresh (the early cutoff) while the timings of the run that made them stay on record.
pub const VOLATILE: &str = "volatile/";

/// blake3 over a stage's output listing: `path\0hash\n` per file, sorted by path; files
/// under [`VOLATILE`] are not part of it.
pub fn output_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut files: Vec<_> = files
        .into_iter()
        .filter(|(path, _)| !path.starts_with(VOLATILE))
        .collect();
    files.sort();
    let mut h = blake3::Hasher::new();
    for (path, hash) in files {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// An enum value as serde's JSON writes it (`{"Rnn": {…}}`, `{"Normal": [0.0, 0.05]}`): its
/// variant and what it holds. A map of the config (a command's `env`) has no such keys: they
/// are `CamelCase` words, and hold a struct or a tuple, not a string.
pub fn enum_variant(
    m: &serde_json::Map<String, serde_json::Value>,
) -> Option<(&str, &serde_json::Value)> {
    let (k, v) = m.iter().next().filter(|_| m.len() == 1)?;
    let camel = k.starts_with(|c: char| c.is_ascii_uppercase())
        && k.chars().any(|c| c.is_ascii_lowercase());
    (camel && (v.is_object() || v.is_array())).then_some((k.as_str(), v))
}

/// Config leaves as `path → compact JSON`, e.g. `optimizer.momentum → 0.9`, each path as
/// `set` takes it: a list's items by index (`model.hidden[1]`), a struct variant's fields
/// under the field itself (`model.cell`, not `model.Rnn.cell`) with the variant as the
/// field's value (`model → Rnn`), a tuple variant whole (`initializer → Normal(0.0, 0.05)`).
pub fn flatten(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
        if let Some((name, inner)) = v.as_object().and_then(enum_variant) {
            match inner {
                serde_json::Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                    out.insert(prefix.to_string(), format!("{name}({})", items.join(", ")));
                }
                _ => {
                    out.insert(prefix.to_string(), name.to_string());
                    walk(inner, prefix, out);
                }
            }
            return;
        }
        match v {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &p, out);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{prefix}[{i}]"), out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, "", &mut out);
    out
}

/// Why `new` differs from `old`, one human line per difference, most specific first.
pub fn diff(old: &KeyInputs, new: &KeyInputs) -> Vec<String> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(format!("stage kind: {} → {}", old.kind, new.kind));
    }
    if old.version != new.version {
        out.push(format!(
            "{} implementation version: {} → {}",
            new.kind, old.version, new.version
        ));
    }
    let (a, b) = (flatten(&old.config), flatten(&new.config));
    for (k, v) in &b {
        match a.get(k) {
            Some(old_v) if old_v != v => out.push(format!("{k}: {old_v} → {v}")),
            None => out.push(format!("{k}: (absent) → {v}")),
            _ => {}
        }
    }
    for (k, v) in &a {
        if !b.contains_key(k) {
            out.push(format!("{k}: {v} → (absent)"));
        }
    }
    match (&old.external, &new.external) {
        (Some(o), Some(n)) => {
            let (a, b) = (flatten(o), flatten(n));
            for k in a
                .keys()
                .chain(b.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                if a.get(k) != b.get(k) {
                    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(absent)".into());
                    out.push(format!(
                        "external input changed: {k}: {} → {}",
                        show(a.get(k)),
                        show(b.get(k))
                    ));
                }
            }
        }
        (o, n) if o != n => {
            let names = |v: &Option<serde_json::Value>| match v {
                Some(serde_json::Value::Object(m)) => {
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                }
                Some(other) => other.to_string(),
                None => "none".into(),
            };
            out.push(format!(
                "external input changed: {} → {}",
                names(o),
                names(n)
            ));
        }
        _ => {}
    }
    let no_deps = BTreeMap::new();
    let (a, b) = (
        old.deps.as_ref().unwrap_or(&no_deps),
        new.deps.as_ref().unwrap_or(&no_deps),
    );
    for path in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) if x != y => out.push(format!(
                "dependency changed: {path} (content {} → {})",
                &x[..12.min(x.len())],
                &y[..12.min(y.len())]
            )),
            (Some(_), None) => out.push(format!("dependency removed: {path}")),
            (None, Some(_)) => out.push(format!("dependency added: {path}")),
            _ => {}
        }
    }
    if old.target != new.target {
        out.push(format!(
            "target: {} → {}",
            old.target.as_deref().unwrap_or("none"),
            new.target.as_deref().unwrap_or("none")
        ));
    }
    if old.inputs.len() != new.inputs.len() {
        out.push(format!(
            "number of inputs: {} → {}",
            old.inputs.len(),
            new.inputs.len()
        ));
    }
    for (o, n) in old.inputs.iter().zip(&new.inputs) {
        if o.hash != n.hash {
            out.push(format!("input data changed: output of `{}`", n.stage));
        } else if o.label != n.label {
            out.push(format!(
                "input label of `{}`: {} → {}",
                n.stage,
                o.label.as_deref().unwrap_or("none"),
                n.label.as_deref().unwrap_or("none")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ki(momentum: f64, input: &str) -> KeyInputs {
        KeyInputs {
            kind: "train".into(),
            version: 1,
            config: Arc::new(serde_json::json!({"optimizer": {"lr": 0.01, "momentum": momentum}})),
            external: None,
            deps: None,
            target: None,
            inputs: vec![InputKey {
                stage: "common:data".into(),
                label: None,
                hash: input.into(),
            }],
        }
    }

    /// `explain` names a field as `set` takes it: through an enum's variant, not by it.
    #[test]
    fn config_paths_read_through_enum_variants() {
        let with = |model: serde_json::Value| KeyInputs {
            config: Arc::new(serde_json::json!({
                "model": model,
                "initializer": {"Normal": [0.0, 0.05]},
                "env": {"MODE": "fast"},
            })),
            ..ki(0.9, "h")
        };
        let lstm = with(serde_json::json!({"Rnn": {"cell": "Lstm", "hidden": [64, 32]}}));
        let gru = with(serde_json::json!({"Rnn": {"cell": "Gru", "hidden": [64, 16]}}));
        assert_eq!(
            diff(&lstm, &gru),
            vec!["model.cell: \"Lstm\" → \"Gru\"", "model.hidden[1]: 32 → 16"]
        );
        let flat = flatten(&lstm.config);
        assert_eq!(flat["model"], "Rnn");
        assert_eq!(flat["initializer"], "Normal(0.0, 0.05)");
        assert_eq!(
            flat["env.MODE"], "\"fast\"",
            "a map of the config is no variant"
        );
        let mlp = with(serde_json::json!({"Mlp": {"hidden": [64, 32]}}));
        assert_eq!(
            diff(&lstm, &mlp),
            vec!["model: Rnn → Mlp", "model.cell: \"Lstm\" → (absent)"]
        );
    }

    #[test]
    fn volatile_outputs_do_not_enter_the_output_hash() {
        let plain = output_hash([("model.bin", "m"), ("metrics.jsonl", "x")]);
        let timed = |t| {
            output_hash([
                ("model.bin", "m"),
                ("volatile/timing.json", t),
                ("metrics.jsonl", "x"),
            ])
        };
        assert_eq!(timed("t1"), plain);
        assert_eq!(timed("t1"), timed("t2"));
        assert_ne!(
            output_hash([("model.bin", "m"), ("metrics.jsonl", "y")]),
            plain
        );
        // Only the top-level folder is volatile.
        assert_ne!(
            output_hash([
                ("model.bin", "m"),
                ("metrics.jsonl", "x"),
                ("a/volatile/t", "t")
            ]),
            plain
        );
    }

    #[test]
    fn key_ignores_upstream_names_but_not_content() {
        let a = ki(0.5, "h1");
        let mut renamed = a.clone();
        renamed.inputs[0].stage = "other:name".into();
        assert_eq!(a.key(), renamed.key());
        assert_ne!(a.key(), ki(0.9, "h1").key());
        assert_ne!(a.key(), ki(0.5, "h2").key());
    }

    #[test]
    fn diff_names_the_changed_field() {
        assert_eq!(
            diff(&ki(0.5, "h"), &ki(0.9, "h")),
            vec!["optimizer.momentum: 0.5 → 0.9"]
        );
        assert_eq!(
            diff(&ki(0.5, "h"), &ki(0.5, "g")),
            vec!["input data changed: output of `common:data`"]
        );
    }
}
