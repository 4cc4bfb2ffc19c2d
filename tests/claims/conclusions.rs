//! The standing check of a conclusions report: each record of its `conclusions.json`
//! re-derived from the study reports it names (their `claims.json`, themselves checked
//! against their runs by [`super::check`]), by the rules as the report states them, and
//! sharing no code with `src/report/`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{holm, mean, welch_p, ALPHA};

fn read(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The row a field is in, as the report's matrix names them.
fn row(field: &str) -> String {
    match field {
        "batch_size" => "batch size".into(),
        "optimizer.lr" => "learning rate".into(),
        "optimizer.momentum" => "momentum".into(),
        "model.activation" => "activation".into(),
        "initializer" => "initializer".into(),
        "model.dropout" => "dropout".into(),
        "regularizer.kernel_l1" => "L1".into(),
        "regularizer.kernel_l2" => "L2".into(),
        f if f.starts_with("model.") => "structure".into(),
        f => f.into(),
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// A number, or the largest number of a list (an empty list: 0).
fn level(v: &str) -> Option<f64> {
    if let Ok(x) = v.parse() {
        return Some(x);
    }
    let inner = v.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut m: f64 = 0.0;
    for s in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        m = m.max(s.parse().ok()?);
    }
    Some(m)
}

fn mark(verdict: Option<&str>) -> &'static str {
    match verdict {
        Some("higher" | "lower") => "significant",
        Some("untested_higher" | "untested_lower") => "untested",
        Some(_) => "not_significant",
        None => "failed",
    }
}

/// What one study claim says of an expectation (`higher`, `lower`, `same`), the claimed
/// side being the variant, or the base when `flip`.
fn says(claim: Option<&Value>, expect: &str, flip: bool) -> &'static str {
    let Some(c) =
        claim.filter(|c| !floats(&c["base"]).is_empty() && !floats(&c["values"]).is_empty())
    else {
        return "failed";
    };
    if c["kind"] == "no_overfitting" {
        return if flip { "supports" } else { "contradicts" };
    }
    let delta = mean(&floats(&c["values"])) - mean(&floats(&c["base"]));
    match (c["verdict"].as_str().unwrap(), expect) {
        ("untested_higher" | "untested_lower", _) => "untested",
        ("higher" | "lower", "same") => "contradicts",
        (_, "same") if c["p_holm"].is_null() => "untested",
        (_, "same") if delta.abs() <= 0.01 => "supports",
        ("higher", e) | ("lower", e) => {
            let up = c["verdict"] == "higher";
            if (up != flip) == (e == "higher") {
                "supports"
            } else {
                "contradicts"
            }
        }
        _ => "not_significant",
    }
}

fn outcome(says: &[&str], all_needed: bool) -> &'static str {
    let n = |s: &str| says.iter().filter(|x| **x == s).count();
    let (sup, con, ns, unt, failed) = (
        n("supports"),
        n("contradicts"),
        n("not_significant"),
        n("untested"),
        n("failed"),
    );
    if says.is_empty() {
        "not_studied"
    } else if failed == says.len() {
        "failed_runs"
    } else if all_needed {
        if con > 0 {
            "contradicted"
        } else if sup > 0 && sup == says.len() - failed {
            "supported"
        } else if ns + sup > 0 {
            "not_significant"
        } else {
            let _ = unt;
            "untested"
        }
    } else if sup > 0 && con > 0 {
        "mixed"
    } else if sup > 0 {
        "supported"
    } else if con > 0 {
        "contradicted"
    } else if ns > 0 {
        "not_significant"
    } else {
        "untested"
    }
}

/// The hypotheses as the report states them: id, the part's figure, the expectation, and
/// which comparisons it reads.
const PARTS: &[(&str, &str, &str, &str)] = &[
    ("smaller_lr", "smoothness", "lower", "lowered optimizer.lr"),
    ("smaller_lr", "speed", "higher", "lowered optimizer.lr"),
    (
        "high_momentum",
        "speed",
        "lower",
        "raised optimizer.momentum",
    ),
    (
        "high_momentum",
        "onset",
        "lower",
        "raised optimizer.momentum",
    ),
    ("initializer_linear", "accuracy", "same", "any initializer"),
    ("relu_vs_tanh", "accuracy", "higher", "relu"),
    ("relu_vs_tanh", "onset", "lower", "relu"),
    ("relu_vs_tanh", "speed", "higher", "relu"),
    ("batch_128", "test_accuracy", "higher", "batch 128"),
    ("batch_32", "epoch_seconds", "higher", "batch 32"),
];

/// Per run of a study, the figure the batch claims read (seeds that learned, seed order).
fn per_run(study: &Value, variant: &str, kind: &str) -> Vec<f64> {
    let mut runs: Vec<&Value> = study["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["variant"] == variant && r["failure"].is_null())
        .collect();
    runs.sort_by_key(|r| r["seed"].as_u64());
    runs.iter()
        .map(|r| {
            r[if kind == "test_accuracy" {
                "test_acc"
            } else {
                "seconds_per_epoch"
            }]
            .as_f64()
            .unwrap()
        })
        .collect()
}

/// Everything wrong with one `conclusions.json`.
pub fn check(path: &Path) -> Vec<String> {
    let c = read(path);
    let home = path.parent().unwrap().parent().unwrap().to_path_buf();
    let md =
        std::fs::read_to_string(path.parent().unwrap().with_extension("md")).unwrap_or_default();
    let mut bad = Vec::new();
    let mut say = |s: String| bad.push(format!("{}: {s}", path.display()));
    let studies: Vec<(Value, PathBuf)> = c["studies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let p = home.join(s["claims"].as_str().unwrap());
            (read(&p), p)
        })
        .collect();
    let family = |i: usize| c["studies"][i]["family"].as_str().unwrap().to_string();
    // Every comparison of every study is four effects, each its study's claim.
    let effects = c["effects"].as_array().unwrap();
    let mut expected = 0;
    for (si, (study, _)) in studies.iter().enumerate() {
        for cmp in study["comparisons"].as_array().unwrap() {
            for kind in ["accuracy", "test_accuracy", "speed", "gap"] {
                expected += 1;
                let Some(e) = effects.iter().find(|e| {
                    e["study"] == si && e["variant"] == cmp["variant"] && e["kind"] == kind
                }) else {
                    say(format!(
                        "no {kind} effect for {} of study {si}",
                        cmp["variant"]
                    ));
                    continue;
                };
                let claim = cmp["claims"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["kind"] == kind);
                let figures = claim.map(|x| (floats(&x["base"]), floats(&x["values"])));
                let delta = figures
                    .as_ref()
                    .filter(|(b, v)| !b.is_empty() && !v.is_empty())
                    .map(|(b, v)| mean(v) - mean(b));
                let said = e["delta"].as_f64();
                if said.is_some() != delta.is_some()
                    || said.zip(delta).is_some_and(|(a, b)| (a - b).abs() > 1e-12)
                {
                    say(format!(
                        "{} {kind}: delta {said:?}, its study's claim gives {delta:?}",
                        cmp["variant"]
                    ));
                }
                let want_mark = if delta.is_none() {
                    "failed"
                } else {
                    mark(claim.and_then(|x| x["verdict"].as_str()))
                };
                if e["mark"] != want_mark {
                    say(format!(
                        "{} {kind}: mark {}, its study's verdict gives {want_mark}",
                        cmp["variant"], e["mark"]
                    ));
                }
                let field = cmp["field"].as_str().unwrap();
                if e["row"] != row(field).as_str() || e["family"] != family(si).as_str() {
                    say(format!(
                        "{} {kind}: row {} family {}",
                        cmp["variant"], e["row"], e["family"]
                    ));
                }
                let runs = study["runs"].as_array().unwrap();
                let of = |v: &Value| {
                    runs.iter()
                        .filter(|r| r["variant"] == *v)
                        .collect::<Vec<_>>()
                };
                let mine = of(&cmp["variant"]);
                let failed = mine.iter().filter(|r| !r["failure"].is_null()).count();
                if e["failed"] != serde_json::json!([failed, mine.len()]) {
                    say(format!(
                        "{} {kind}: failed {}, the runs say {failed} of {}",
                        cmp["variant"],
                        e["failed"],
                        mine.len()
                    ));
                }
                let params = |v: &Value| {
                    mean(
                        &of(v)
                            .iter()
                            .map(|r| r["parameters"].as_f64().unwrap())
                            .collect::<Vec<_>>(),
                    )
                };
                let (b, v) = if row(field) == "structure" {
                    (
                        Some(params(&Value::from("base"))),
                        Some(params(&cmp["variant"])),
                    )
                } else {
                    (
                        level(cmp["base_value"].as_str().unwrap()),
                        level(cmp["value"].as_str().unwrap()),
                    )
                };
                let up = if row(field) == "structure" {
                    ("larger", "smaller")
                } else {
                    ("raised", "lowered")
                };
                let dir = match (b, v) {
                    (Some(b), Some(v)) if v > b => up.0,
                    (Some(b), Some(v)) if v < b => up.1,
                    _ => "changed",
                };
                if e["direction"] != dir {
                    say(format!(
                        "{} {kind}: direction {}, the values say {dir}",
                        cmp["variant"], e["direction"]
                    ));
                }
            }
        }
    }
    if effects.len() != expected {
        say(format!(
            "{} effects, the studies make {expected}",
            effects.len()
        ));
    }
    // Each classic claim, per family where it applies.
    let families: Vec<String> = c["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let mut counted = std::collections::BTreeMap::<String, usize>::new();
    for (id, kind, expect, select) in PARTS {
        for f in &families {
            if *id == "initializer_linear" && f != "linear" && f != "perceptron" {
                continue;
            }
            let mut said: Vec<&str> = Vec::new();
            for (si, (study, _)) in studies.iter().enumerate().filter(|(i, _)| family(*i) == *f) {
                if select.starts_with("batch") {
                    let size = select.trim_start_matches("batch ");
                    let cmps: Vec<&Value> = study["comparisons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|c| c["field"] == "batch_size")
                        .collect();
                    let Some(first) = cmps.first() else { continue };
                    let mut values: Vec<(String, String)> =
                        vec![(first["base_value"].as_str().unwrap().into(), "base".into())];
                    values.extend(cmps.iter().map(|c| {
                        (
                            c["value"].as_str().unwrap().to_string(),
                            c["variant"].as_str().unwrap().to_string(),
                        )
                    }));
                    let Some((_, claimed)) = values.iter().find(|(v, _)| v == size) else {
                        continue;
                    };
                    let mine = per_run(study, claimed, kind);
                    let mut tested = Vec::new();
                    for (_, other) in values.iter().filter(|(v, _)| v != size) {
                        let theirs = per_run(study, other, kind);
                        if mine.is_empty() || theirs.is_empty() {
                            said.push("failed");
                        } else if mine.len() < 2 || theirs.len() < 2 {
                            said.push("untested");
                        } else {
                            tested.push((welch_p(&mine, &theirs), mean(&mine) > mean(&theirs)));
                        }
                    }
                    let adjusted = holm(&tested.iter().map(|t| t.0).collect::<Vec<_>>());
                    for ((_, higher), p) in tested.iter().zip(adjusted) {
                        said.push(match (p < ALPHA, higher) {
                            (false, _) => "not_significant",
                            (true, true) => "supports",
                            (true, false) => "contradicts",
                        });
                    }
                    continue;
                }
                let _ = si;
                for cmp in study["comparisons"].as_array().unwrap() {
                    let (field, bv, vv) = (
                        cmp["field"].as_str().unwrap(),
                        cmp["base_value"].as_str().unwrap(),
                        cmp["value"].as_str().unwrap(),
                    );
                    let num = |s: &str| s.parse::<f64>().ok();
                    let flip = match *select {
                        "lowered optimizer.lr" if field == "optimizer.lr" && num(vv) < num(bv) => {
                            false
                        }
                        "raised optimizer.momentum"
                            if field == "optimizer.momentum" && num(vv) > num(bv) =>
                        {
                            false
                        }
                        "any initializer" if field == "initializer" => false,
                        "relu" if field == "model.activation" && bv == "Tanh" && vv == "Relu" => {
                            false
                        }
                        "relu" if field == "model.activation" && bv == "Relu" && vv == "Tanh" => {
                            true
                        }
                        _ => continue,
                    };
                    let claim = cmp["claims"].as_array().unwrap().iter().find(|x| {
                        x["kind"] == *kind || (*kind == "onset" && x["kind"] == "no_overfitting")
                    });
                    said.push(says(claim, expect, flip));
                }
            }
            let want = outcome(&said, select.starts_with("batch"));
            *counted.entry(want.to_string()).or_default() += 1;
            // The records of this part: their evidence is of its figure (none: not studied).
            let found: Vec<&Value> = c["hypotheses"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["id"] == *id && h["family"] == f.as_str())
                .filter(|h| {
                    h["evidence"].as_array().unwrap().iter().all(|e| {
                        e["kind"] == *kind || (*kind == "onset" && e["kind"] == "no_overfitting")
                    })
                })
                .collect();
            let got: Vec<&str> = found
                .iter()
                .map(|h| h["outcome"].as_str().unwrap())
                .collect();
            if !got.contains(&want) {
                say(format!(
                    "{id} {kind} ({f}): outcome {got:?}, the rules give {want} from {said:?}"
                ));
            }
            for h in &found {
                let w = h["words"].as_str().unwrap();
                if !md.contains(w) {
                    say(format!("{id} ({f}): its words are not in the report: {w}"));
                }
            }
        }
    }
    let total: usize = counted.values().sum();
    if c["hypotheses"].as_array().unwrap().len() != total {
        say(format!(
            "{} hypothesis records, the rules make {total}",
            c["hypotheses"].as_array().unwrap().len()
        ));
    }
    for (o, word) in [
        ("supported", "supported"),
        ("contradicted", "contradicted"),
        ("not_significant", "not significant"),
    ] {
        let n = counted.get(o).copied().unwrap_or(0);
        if !md.contains(&format!("{n} {word}")) {
            say(format!("the report's count of {word} is not {n}"));
        }
    }
    // The ranking's first row per family: the largest significant change of accuracy.
    for f in &families {
        let best = effects
            .iter()
            .filter(|e| {
                e["family"] == f.as_str() && e["kind"] == "accuracy" && e["mark"] == "significant"
            })
            .max_by(|a, b| {
                a["delta"]
                    .as_f64()
                    .unwrap()
                    .abs()
                    .total_cmp(&b["delta"].as_f64().unwrap().abs())
            });
        let first = c["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["family"] == f.as_str());
        if let (Some(best), Some(first)) = (best, first) {
            if first["row"] != best["row"] || first["significant"] != true {
                say(format!(
                    "{f}: ranked first {}, the largest significant change is in {}",
                    first["row"], best["row"]
                ));
            }
        }
    }
    bad
}

/// The conclusions under `reports/` (or `PIPE_CHECK_REPORTS`).
fn committed() -> Vec<PathBuf> {
    super::committed_named("conclusions.json")
}

#[test]
fn every_committed_conclusions_report_says_what_its_studies_decided() {
    let files = committed();
    if std::env::var_os("PIPE_CHECK_REPORTS").is_none() {
        assert!(!files.is_empty(), "no conclusions.json under reports/");
    }
    let bad: Vec<String> = files.iter().flat_map(|f| check(f)).collect();
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A small suite, built by the binary: 2 families × 2 hyperparameters × 2 seeds.
fn suite(p: &super::util::Project, extra: &str) {
    super::util::learnable(&p.path().join("src-data"), 40, 20);
    p.write(
        "pipelines/common.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
            (name: "linear", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 6, batch_size: 32, optimizer: (lr: 0.05, momentum: 0.0), seed: 1)),
            (name: "mlp", kind: "train", inputs: ["data"],
             config: (model: Mlp(hidden: [16], activation: Relu), epochs: 6, batch_size: 32, optimizer: (lr: 0.05, momentum: 0.9), seed: 1)),
        ])"#,
    );
    for f in ["linear", "mlp"] {
        p.write(
            &format!("pipelines/{f}.ron"),
            &format!(
                r#"Pipeline(uses: ["common.ron"], studies: [(extends: "{f}", seeds: 2, data: "data",
                    target: "reports/{f}/{{name}}.md", each: [
                    (name: "learning_rate", vary: {{"optimizer.lr": [0.01]}}),
                    (name: "batch_size", vary: {{"batch_size": [128]}}),
                    {extra}
                ])])"#
            ),
        );
    }
    p.write(
        "pipelines/conclusions.ron",
        r#"Pipeline(uses: ["linear.ron", "mlp.ron"], stages: [
            (name: "conclusions", kind: "conclusions", inputs: ["*_report"], target: "reports/conclusions.md"),
        ])"#,
    );
}

/// Best validation accuracy of one run, from the metrics copy beside a study report.
fn best_val(p: &Path) -> f64 {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["val_acc"].as_f64())
        .fold(f64::MIN, f64::max)
}

#[test]
fn a_small_suite_concludes_each_cell_as_its_runs_say() {
    let p = super::util::Project::new();
    suite(&p, "");
    p.ok(&["build", "reports/conclusions.md"]);
    let path = p.path().join("reports/conclusions/conclusions.json");
    assert_eq!(check(&path), Vec::<String>::new());
    // Each study checks against its runs, too.
    for f in ["linear", "mlp"] {
        for s in ["learning_rate", "batch_size"] {
            let claims = p.path().join(format!("reports/{f}/{s}/claims.json"));
            assert_eq!(super::check(&claims), Vec::<String>::new());
        }
    }
    let c = read(&path);
    assert_eq!(c["families"], serde_json::json!(["linear", "mlp"]));
    assert_eq!(
        c["rows"],
        serde_json::json!(["batch size", "learning rate"])
    );
    // Every cell by hand: best validation accuracy from the runs' metrics, mean over the two
    // seeds, variant − base; its verdict from Welch over the seeds (one test per figure in a
    // study, so Holm changes nothing).
    for f in ["linear", "mlp"] {
        for (study, slug, row, dir) in [
            (
                "learning_rate",
                "optimizer.lr_0.01",
                "learning rate",
                "lowered",
            ),
            ("batch_size", "batch_size_128", "batch size", "raised"),
        ] {
            let m = p.path().join(format!("reports/{f}/{study}/metrics"));
            let base = [
                best_val(&m.join("base.jsonl")),
                best_val(&m.join("seed_2.jsonl")),
            ];
            let var = [
                best_val(&m.join(format!("{slug}.jsonl"))),
                best_val(&m.join(format!("{slug}_seed_2.jsonl"))),
            ];
            let e = c["effects"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["family"] == f && e["row"] == row && e["kind"] == "accuracy")
                .unwrap_or_else(|| panic!("no {f} {row} cell"));
            assert_eq!(
                e["failed"],
                serde_json::json!([0, 2]),
                "every seed learns here: {e}"
            );
            let delta = mean(&var) - mean(&base);
            assert!(
                (e["delta"].as_f64().unwrap() - delta).abs() < 1e-12,
                "{f} {row}: {e} vs {delta}"
            );
            assert_eq!(e["direction"], dir, "{e}");
            let p_value = welch_p(&base, &var);
            let want = if p_value < ALPHA {
                "significant"
            } else {
                "not_significant"
            };
            assert_eq!(e["mark"], want, "{f} {row}: p = {p_value}: {e}");
            assert!(
                (e["p_holm"].as_f64().unwrap() - p_value).abs() < 1e-4,
                "{e}"
            );
        }
    }
    // The classic claims where the suite studies them; the others are not studied.
    let outcome = |id: &str, f: &str| -> Vec<String> {
        c["hypotheses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["id"] == id && h["family"] == f)
            .map(|h| h["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        outcome("high_momentum", "mlp"),
        ["not_studied", "not_studied"]
    );
    assert!(outcome("batch_128", "linear")[0] != "not_studied");
    assert!(outcome("smaller_lr", "mlp")
        .iter()
        .all(|o| o != "not_studied"));
    let md = std::fs::read_to_string(p.path().join("reports/conclusions.md")).unwrap();
    assert!(
        md.contains("](linear/learning_rate.md)"),
        "cells link their study"
    );
    assert!(md.contains("![Best validation accuracy"), "{md}");
    let html = std::fs::read_to_string(p.path().join("reports/conclusions.html")).unwrap();
    assert!(
        html.contains("href=\"linear/learning_rate.html\""),
        "pages link pages"
    );
    assert!(
        html.contains("data:image/svg+xml;base64,"),
        "heatmaps inlined"
    );
    // `pipe show` prints the matrix.
    let shown = p.ok(&["show", "reports/conclusions.md"]).stdout;
    assert!(
        shown.contains("| learning rate |") && shown.contains("| hyperparameter | linear | MLP |"),
        "{shown}"
    );
    let csv = p
        .ok(&["show", "reports/conclusions.md", "--format", "csv"])
        .stdout;
    assert_eq!(csv.lines().count(), 1 + 2 * 2 * 4, "{csv}");
    let json: Value = serde_json::from_str(
        &p.ok(&["show", "reports/conclusions.md", "--format", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json, c);
    // A study added: its branch and the conclusions run, nothing else.
    suite(
        &p,
        r#"(name: "momentum", vary: {"optimizer.momentum": [0.5]}),"#,
    );
    let out = p.ok(&["build", "reports/conclusions.md", "--json"]).stdout;
    let summary: Value = serde_json::from_str(&out).unwrap();
    let mut built: Vec<String> = summary["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    built.sort();
    let want = [
        "conclusions:conclusions",
        "linear:momentum",
        "linear:momentum",
        "linear:momentum_eval",
        "linear:momentum_eval",
        "linear:momentum_report",
        "mlp:momentum",
        "mlp:momentum",
        "mlp:momentum_eval",
        "mlp:momentum_eval",
        "mlp:momentum_report",
    ];
    let stages: Vec<String> = built
        .iter()
        .map(|b| b.split('[').next().unwrap().to_string())
        .collect();
    assert_eq!(stages, want, "{out}");
    assert_eq!(check(&path), Vec::<String>::new());
}

#[test]
fn the_conclusions_check_catches_a_cell_or_claim_that_disagrees() {
    let p = super::util::Project::new();
    suite(&p, "");
    p.ok(&["build", "reports/conclusions.md"]);
    let path = p.path().join("reports/conclusions/conclusions.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut c: Value = serde_json::from_str(&text).unwrap();
    let d = c["effects"][0]["delta"].as_f64().unwrap();
    c["effects"][0]["delta"] = Value::from(d + 0.05);
    let h = c["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .position(|h| h["outcome"] != "supported")
        .unwrap();
    c["hypotheses"][h]["outcome"] = Value::from("supported");
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let bad = check(&path);
    assert!(bad.iter().any(|b| b.contains("delta")), "{bad:?}");
    assert!(bad.iter().any(|b| b.contains("the rules give")), "{bad:?}");
}
