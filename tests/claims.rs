//! The standing check of the reports' words: every `claims.json` under `reports/` is
//! re-derived from the runs' metrics (the copies beside it) by a second, small
//! implementation of each rule written here from the rules as the reports state them,
//! sharing no code with `src/report/`: the figures, which seeds are read, Welch's p (by
//! numerical integration of Student's t, not the incomplete beta), Holm's adjustment, the
//! verdict, which claims exist, and that each claim's words are in the report.

#[path = "claims/conclusions.rs"]
mod conclusions;
mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

const ALPHA: f64 = 0.05;

/// One run's curves, from its `metrics.jsonl`.
struct Curves {
    val: Vec<f64>,
    /// Validation loss without the weight penalty, per epoch.
    val_loss: Vec<f64>,
    train_acc: Vec<f64>,
    diverged: bool,
    /// The best weights' test accuracy, from the run's `evaluation.json`.
    test_acc: f64,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn curves(path: &Path) -> Curves {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut c = Curves {
        val: vec![],
        val_loss: vec![],
        train_acc: vec![],
        diverged: false,
        test_acc: f64::NAN,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: Value = serde_json::from_str(line).unwrap();
        match num(&m["train_loss"]) {
            Some(l) if l.is_finite() => {}
            _ => {
                c.diverged = true;
                continue;
            }
        }
        c.train_acc.push(num(&m["train_acc"]).unwrap());
        if let Some(a) = num(&m["val_acc"]) {
            c.val.push(a);
            let penalty = num(&m["val_penalty"]).unwrap_or(0.0);
            c.val_loss
                .push(num(&m["val_loss"]).map_or(f64::NAN, |l| l - penalty));
        }
    }
    c
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

/// Index of the first maximum (or minimum).
fn arg_best(v: &[f64], max: bool) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if (max && v[i] > v[best]) || (!max && v[i] < v[best]) {
            best = i;
        }
    }
    best
}

impl Curves {
    fn best(&self) -> f64 {
        self.val[arg_best(&self.val, true)]
    }
    fn failure(&self) -> Option<&'static str> {
        if self.diverged {
            return Some("diverged");
        }
        if self.best() <= 0.1 + 0.05 {
            return Some("did not learn");
        }
        if *self.val_loss.last().unwrap() > 10.0 * 10f64.ln() {
            return Some("loss exploded");
        }
        None
    }
    fn collapsed(&self) -> bool {
        self.best() - self.val.last().unwrap() > 0.10
    }
    fn quarter(&self) -> usize {
        self.val.len().div_ceil(4)
    }
    fn figure(&self, kind: &str) -> f64 {
        let n = self.val.len();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        match kind {
            "accuracy" => self.best(),
            "test_accuracy" => self.test_acc,
            "gap" => self.train_acc.last().unwrap() - self.val.last().unwrap(),
            "speed" => {
                (self
                    .val
                    .iter()
                    .position(|a| *a >= 0.9 * self.best())
                    .unwrap()
                    + 1) as f64
            }
            "onset" | "no_overfitting" => (arg_best(&self.val_loss, false) + 1) as f64,
            "smoothness" => {
                var(&self.val.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()).sqrt()
            }
            "collapse" => (self.best() - self.val.last().unwrap()).max(0.0),
            "failure" => flag(self.failure().is_some()),
            "rising" => {
                let k = self.quarter().max(3).min(n);
                let ys = &self.val[n - k..];
                let xs: Vec<f64> = (0..k).map(|i| i as f64).collect();
                let (mx, my) = (mean(&xs), mean(ys));
                let slope: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
                flag(self.val[n - 1] >= self.best() - 0.005 && slope > 0.0)
            }
            "plateau" => flag(arg_best(&self.val, true) < n - self.quarter()),
            k => panic!("unknown claim kind {k}"),
        }
    }
    fn readable(&self) -> bool {
        self.failure().is_none() && !self.collapsed() && self.val.len() >= 5
    }
    /// One epoch's noise: residuals around the centred 3-epoch mean, × √1.5.
    fn noise(&self) -> Option<f64> {
        if self.val.len() < 5 {
            return None;
        }
        let r: Vec<f64> = self
            .val
            .windows(3)
            .map(|w| w[1] - (w[0] + w[1] + w[2]) / 3.0)
            .collect();
        Some(var(&r).sqrt() * 1.5f64.sqrt())
    }
    fn gap_growth(&self) -> f64 {
        let i = arg_best(&self.val_loss, false);
        let n = self.val.len() - 1;
        (self.train_acc[n] - self.val[n]) - (self.train_acc[i] - self.val[i])
    }
}

/// Welch's two-sided p: the t statistic and Welch–Satterthwaite df, and the tail of
/// Student's t by Simpson's rule on ∫ cos^(df−1) θ dθ (x = √df·tan θ).
fn welch_p(a: &[f64], b: &[f64]) -> f64 {
    let (va, vb) = (var(a) / a.len() as f64, var(b) / b.len() as f64);
    let diff = mean(a) - mean(b);
    if va + vb == 0.0 {
        return if diff == 0.0 { 1.0 } else { 0.0 };
    }
    let t = diff.abs() / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    // The last node can land a rounding past π/2, where cos is a hair below 0.
    let f = |th: f64| th.cos().max(0.0).powf(df - 1.0);
    let simpson = |lo: f64, hi: f64| {
        let n = 20_000;
        let h = (hi - lo) / n as f64;
        (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * f(lo + i as f64 * h)
            })
            .sum::<f64>()
            * h
            / 3.0
    };
    let half = std::f64::consts::FRAC_PI_2;
    simpson((t / df.sqrt()).atan(), half) / simpson(0.0, half)
}

fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&x, &y| ps[x].partial_cmp(&ps[y]).unwrap());
    let mut out = vec![0.0; m];
    let mut top: f64 = 0.0;
    for (r, &i) in idx.iter().enumerate() {
        top = top.max((ps[i] * (m - r) as f64).min(1.0));
        out[i] = top;
    }
    out
}

/// What the rule says of a tested (or one-seed) comparison, from its figures.
fn verdict(
    kind: &str,
    b: &[f64],
    v: &[f64],
    p_holm: Option<f64>,
    noise: Option<f64>,
    growth: f64,
) -> &'static str {
    let (mb, mv) = (mean(b), mean(v));
    let big = match kind {
        "accuracy" | "test_accuracy" => true,
        "gap" => (mv - mb).abs() >= 0.01,
        "speed" => mb / mv.max(1.0) >= 1.25 || mv / mb.max(1.0) >= 1.25,
        "smoothness" => mb > 1e-6 && mv > 1e-6 && (mv / mb >= 1.5 || mb / mv >= 1.5),
        "onset" => {
            let need = if p_holm.is_some() { 1.0 } else { 2.0 };
            (mv <= mb - need && growth > 0.01) || mv >= mb + need
        }
        _ => unreachable!(),
    };
    if !big {
        return "too_small";
    }
    match p_holm {
        Some(p) if p < ALPHA => {
            if mv > mb {
                "higher"
            } else {
                "lower"
            }
        }
        Some(_) => "no_clear_change",
        None if kind == "accuracy" && noise.is_some_and(|n| (mv - mb).abs() < 2.0 * n) => {
            "no_clear_change"
        }
        None if mv > mb => "untested_higher",
        None if mv < mb => "untested_lower",
        None => "no_clear_change",
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn seeds(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// Every disagreement between one claims file (and its report) and the rules.
fn check(claims_path: &Path) -> Vec<String> {
    let dir = claims_path.parent().unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(claims_path).unwrap()).unwrap();
    let md_path = dir.with_extension("md");
    let md = std::fs::read_to_string(&md_path).unwrap_or_default();
    let mut bad = Vec::new();
    let mut say = |s: String| bad.push(format!("{}: {s}", claims_path.display()));
    // Runs by variant, seed order.
    let mut runs: BTreeMap<String, Vec<(u64, Curves)>> = BTreeMap::new();
    for r in json["runs"].as_array().unwrap() {
        let mut c = curves(&dir.join(r["metrics"].as_str().unwrap()));
        let raw = |key: &str| -> Value {
            let f = dir.join(r[key].as_str().unwrap_or_default());
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap_or_default())
                .unwrap_or_default()
        };
        c.test_acc = raw("evaluation")["best"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN);
        if r["test_acc"].as_f64() != Some(c.test_acc) {
            say(format!(
                "run {} seed {}: test_acc {}, its evaluation says {}",
                r["variant"], r["seed"], r["test_acc"], c.test_acc
            ));
        }
        // The median epoch after the first, from the timing as the run wrote it.
        let mut secs: Vec<f64> = raw("timing")["epoch_seconds"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if secs.len() > 1 {
            secs.remove(0);
        }
        secs.sort_by(f64::total_cmp);
        let median = match secs.len() {
            0 => 0.0,
            n if n % 2 == 1 => secs[n / 2],
            n => (secs[n / 2 - 1] + secs[n / 2]) / 2.0,
        };
        if r["seconds_per_epoch"]
            .as_f64()
            .is_none_or(|s| (s - median).abs() > 1e-12)
        {
            say(format!(
                "run {} seed {}: seconds_per_epoch {}, its timing gives {median}",
                r["variant"], r["seed"], r["seconds_per_epoch"]
            ));
        }
        let said = r["failure"].as_str();
        if said != c.failure() {
            say(format!(
                "run {} seed {}: failure {:?}, the metrics say {:?}",
                r["variant"],
                r["seed"],
                said,
                c.failure()
            ));
        }
        runs.entry(r["variant"].as_str().unwrap().to_string())
            .or_default()
            .push((r["seed"].as_u64().unwrap(), c));
    }
    for v in runs.values_mut() {
        v.sort_by_key(|(s, _)| *s);
    }
    let comparisons = json["comparisons"].as_array().unwrap();
    // Holm per kind over the whole report.
    let mut ps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in comparisons
        .iter()
        .flat_map(|c| c["claims"].as_array().unwrap())
    {
        if let Some(p) = c["p"].as_f64() {
            ps.entry(c["kind"].as_str().unwrap().to_string())
                .or_default()
                .push(p);
        }
    }
    let mut adjusted: BTreeMap<String, std::vec::IntoIter<f64>> = ps
        .iter()
        .map(|(k, v)| (k.clone(), holm(v).into_iter()))
        .collect();
    for cmp in comparisons {
        let name = cmp["variant"].as_str().unwrap();
        let (Some(base), Some(other)) = (runs.get("base"), runs.get(name)) else {
            say(format!("{name}: no runs for the base or the variant"));
            continue;
        };
        let learned = |side: &[(u64, Curves)]| -> Vec<usize> {
            (0..side.len())
                .filter(|&i| side[i].1.failure().is_none())
                .collect()
        };
        let readable = |side: &[(u64, Curves)]| -> Vec<usize> {
            (0..side.len()).filter(|&i| side[i].1.readable()).collect()
        };
        let (bl, vl, br, vr) = (
            learned(base),
            learned(other),
            readable(base),
            readable(other),
        );
        // Which claims the rules make.
        let mut expected: Vec<&str> = Vec::new();
        if bl.len() < base.len() || vl.len() < other.len() {
            expected.push("failure");
        }
        if !bl.is_empty() && !vl.is_empty() {
            if bl
                .iter()
                .map(|&i| &base[i])
                .chain(vl.iter().map(|&i| &other[i]))
                .any(|(_, c)| c.collapsed())
            {
                expected.push("collapse");
            }
            expected.push("accuracy");
            expected.push("test_accuracy");
            if !br.is_empty() && !vr.is_empty() {
                expected.push("speed");
                let at_end = vr
                    .iter()
                    .all(|&i| other[i].1.figure("onset") as usize == other[i].1.val.len());
                let base_before = br
                    .iter()
                    .all(|&i| (base[i].1.figure("onset") as usize) < base[i].1.val.len());
                expected.push(if at_end && base_before {
                    "no_overfitting"
                } else {
                    "onset"
                });
                expected.push("gap");
                expected.push("smoothness");
                for k in ["rising", "plateau"] {
                    if vr.iter().all(|&i| other[i].1.figure(k) == 1.0) {
                        expected.push(k);
                    }
                }
            }
        }
        let claims = cmp["claims"].as_array().unwrap();
        let kinds: Vec<&str> = claims.iter().map(|c| c["kind"].as_str().unwrap()).collect();
        if kinds != expected {
            say(format!(
                "{name}: claims {kinds:?}, the rules make {expected:?}"
            ));
            continue;
        }
        for c in claims {
            let kind = c["kind"].as_str().unwrap();
            let (bi, vi) = match kind {
                "failure" => ((0..base.len()).collect(), (0..other.len()).collect()),
                "collapse" | "accuracy" | "test_accuracy" => (bl.clone(), vl.clone()),
                _ => (br.clone(), vr.clone()),
            };
            let want_seeds = |side: &[(u64, Curves)], ix: &[usize]| -> Vec<u64> {
                ix.iter().map(|&i| side[i].0).collect()
            };
            if seeds(&c["base_seeds"]) != want_seeds(base, &bi)
                || seeds(&c["seeds"]) != want_seeds(other, &vi)
            {
                say(format!(
                    "{name} {kind}: seeds {} / {}, the rules read {:?} / {:?}",
                    c["base_seeds"],
                    c["seeds"],
                    want_seeds(base, &bi),
                    want_seeds(other, &vi)
                ));
                continue;
            }
            let fig = |side: &[(u64, Curves)], ix: &[usize]| -> Vec<f64> {
                ix.iter().map(|&i| side[i].1.figure(kind)).collect()
            };
            let (b, v) = (fig(base, &bi), fig(other, &vi));
            for (said, ours) in floats(&c["base"])
                .iter()
                .chain(&floats(&c["values"]))
                .zip(b.iter().chain(&v))
            {
                if (said - ours).abs() > 1e-9 {
                    say(format!(
                        "{name} {kind}: figure {said}, the metrics give {ours}"
                    ));
                }
            }
            let got_verdict = c["verdict"].as_str().unwrap();
            let words = c["words"].as_str();
            if let Some(w) = words {
                if !md.contains(w) {
                    say(format!(
                        "{name} {kind}: its words are not in {}: {w}",
                        md_path.display()
                    ));
                }
            }
            if ["failure", "collapse", "rising", "plateau", "no_overfitting"].contains(&kind) {
                if got_verdict != "holds" || words.is_none() || !c["p"].is_null() {
                    say(format!(
                        "{name} {kind}: verdict {got_verdict}, words {words:?}"
                    ));
                }
                continue;
            }
            let tested = b.len() >= 2 && v.len() >= 2;
            let p = c["p"].as_f64();
            match (tested, p) {
                (true, Some(p)) => {
                    let ours = welch_p(&b, &v);
                    if (p - ours).abs() > 1e-4 {
                        say(format!("{name} {kind}: p = {p}, Welch gives {ours}"));
                    }
                }
                (false, None) => {}
                _ => say(format!(
                    "{name} {kind}: p {p:?} with {} vs {} seeds",
                    b.len(),
                    v.len()
                )),
            }
            let holm_p = p.and_then(|_| adjusted.get_mut(kind).and_then(|it| it.next()));
            if let (Some(h), Some(said)) = (holm_p, c["p_holm"].as_f64()) {
                if (h - said).abs() > 1e-12 {
                    say(format!("{name} {kind}: Holm-adjusted p {said}, ours {h}"));
                }
            }
            let noise = c["noise"].as_f64();
            if kind == "accuracy" && p.is_none() {
                let ours = bi
                    .iter()
                    .map(|&i| &base[i].1)
                    .chain(vi.iter().map(|&i| &other[i].1))
                    .filter_map(Curves::noise)
                    .reduce(f64::max);
                if ours.zip(noise).is_some_and(|(a, b)| (a - b).abs() > 1e-9)
                    || ours.is_some() != noise.is_some()
                {
                    say(format!(
                        "{name}: noise {noise:?}, the metrics give {ours:?}"
                    ));
                }
            }
            let growth = if kind == "onset" {
                let g: Vec<f64> = vi.iter().map(|&i| other[i].1.gap_growth()).collect();
                mean(&g)
            } else {
                0.0
            };
            let ours = verdict(
                kind,
                &b,
                &v,
                c["p_holm"].as_f64().filter(|_| p.is_some()),
                noise,
                growth,
            );
            if ours != got_verdict {
                say(format!("{name} {kind}: verdict {got_verdict}, the rule gives {ours} (base {b:?}, variant {v:?}, p_holm {:?})", c["p_holm"]));
            }
            if (ours == "too_small") != words.is_none() {
                say(format!(
                    "{name} {kind}: verdict {ours} with words {words:?}"
                ));
            }
        }
    }
    // Every bullet of the Influence section is a comparison of the file.
    let bullets = md
        .split("## Influence")
        .nth(1)
        .map(|s| {
            s.split("\n## ")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| l.starts_with("- **"))
                .count()
        })
        .unwrap_or(0);
    if bullets != comparisons.len() {
        say(format!(
            "{bullets} Influence bullets, {} comparisons",
            comparisons.len()
        ));
    }
    bad
}

fn claim_files(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            claim_files(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

/// The files so named under `reports/`, or under `PIPE_CHECK_REPORTS` (any project's reports).
fn committed_named(name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let dir = std::env::var_os("PIPE_CHECK_REPORTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("reports"));
    claim_files(&dir, name, &mut files);
    files.sort();
    files
}

/// The study claims under `reports/`.
fn committed() -> Vec<PathBuf> {
    committed_named("claims.json")
}

#[test]
fn every_committed_report_says_what_its_runs_show() {
    let files = committed();
    // Every quick study's report has its claims (the quick suite: 51 reports).
    let least = if std::env::var_os("PIPE_CHECK_REPORTS").is_some() {
        1
    } else {
        51
    };
    assert!(
        files.len() >= least,
        "only {} claims files under reports/",
        files.len()
    );
    let mut bad = Vec::new();
    let mut claims = 0;
    for f in &files {
        bad.extend(check(f));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        claims += json["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["claims"].as_array().unwrap().len())
            .sum::<usize>();
    }
    assert!(claims >= 10 * least, "{claims} claims");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_check_catches_a_claim_that_disagrees_with_its_runs() {
    // A committed report with a tested claim, its verdict flipped and a figure moved: the
    // check must say so (a check that cannot fail checks nothing).
    let f = committed()
        .into_iter()
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("\"verdict\": \"no_clear_change\"")
        })
        .expect("a report with a tested claim");
    let tmp = tempfile::tempdir().unwrap();
    let dir = f.parent().unwrap();
    let copy = tmp.path().join("study");
    std::fs::create_dir_all(copy.join("metrics")).unwrap();
    for e in std::fs::read_dir(dir.join("metrics")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join("metrics").join(e.file_name())).unwrap();
    }
    std::fs::copy(dir.with_extension("md"), tmp.path().join("study.md")).unwrap();
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(copy.join("claims.json"), &text).unwrap();
    assert_eq!(
        check(&copy.join("claims.json")),
        Vec::<String>::new(),
        "the copy checks clean"
    );
    let flipped = text.replacen(
        "\"verdict\": \"no_clear_change\"",
        "\"verdict\": \"higher\"",
        1,
    );
    std::fs::write(copy.join("claims.json"), flipped).unwrap();
    let bad = check(&copy.join("claims.json"));
    assert!(
        bad.iter()
            .any(|b| b.contains("verdict higher, the rule gives no_clear_change")),
        "{bad:?}"
    );
}

/// The natural width of an SVG file (`<svg width="860" …`).
fn svg_width(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text
        .find("width=\"")
        .unwrap_or_else(|| panic!("{}: no width", path.display()));
    text[at + 7..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn committed_pages_show_their_figures_at_full_size_and_key_columns_first() {
    // A page's text column is 72rem less 2rem of padding: 1120 px at the default 16 px.
    // A figure no wider shows at full size, its 13 px text readable (wider ones shrank to
    // ~7 px before figures stacked their panels).
    for f in committed() {
        let dir = f.parent().unwrap();
        let page = std::fs::read_to_string(dir.with_extension("html"))
            .unwrap_or_else(|e| panic!("{}: no HTML page: {e}", dir.display()));
        assert!(page.contains("max-width:72rem"), "{}", dir.display());
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "svg") {
                assert!(
                    svg_width(&p) <= 1120,
                    "{}: {} px",
                    p.display(),
                    svg_width(&p)
                );
            }
        }
        // The results table: variant and the varied fields, then status, seeds and test
        // accuracy, before the rest scrolls.
        let md = std::fs::read_to_string(dir.with_extension("md")).unwrap();
        let head = md
            .lines()
            .skip_while(|l| *l != "## Results")
            .find(|l| l.starts_with("| variant |"))
            .unwrap_or_else(|| panic!("{}: no results table", dir.display()));
        let cols: Vec<&str> = head.trim_matches('|').split('|').map(str::trim).collect();
        let status = cols.iter().position(|c| *c == "status").unwrap();
        assert_eq!(
            &cols[status..status + 3],
            ["status", "seeds", "test acc (final)"],
            "{head}"
        );
        assert!(cols[1..status].iter().all(|c| c.starts_with('`')), "{head}");
    }
}

/// Whether headless Chromium is here; where it is not, the test says so and passes unless
/// `PIPE_REQUIRE_CHROMIUM` is set (CI installs Debian's `chromium` and sets it).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("PIPE_REQUIRE_CHROMIUM").is_none(),
            "headless Chromium is required"
        );
        eprintln!("no chromium: `apt-get install chromium` to run this check");
    }
    found
}

#[test]
fn a_report_page_in_headless_chromium_shows_figures_full_size_and_key_columns_in_view() {
    let Some(chromium) = chromium() else { return };
    // A committed page with a long table (the MLP's learning-rate study), measured in a
    // 1280 px wide window after load: each figure's shown width against its own, and
    // which table columns lie within the window without scrolling.
    let page = committed()
        .into_iter()
        .map(|f| f.parent().unwrap().with_extension("html"))
        .find(|p| p.ends_with("mlp/learning_rate.html"))
        .expect("reports/quick/mlp/learning_rate.html");
    let probe = r#"<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.getBoundingClientRect().width / i.naturalWidth);
  const t = document.querySelector('table');
  const seen = [...t.querySelectorAll('th')].filter(h => h.getBoundingClientRect().right <= window.innerWidth).map(h => h.textContent.trim());
  const pre = document.createElement('pre');
  pre.id = 'measure';
  pre.textContent = JSON.stringify({imgs, seen, width: window.innerWidth});
  document.body.appendChild(pre);
});
</script></body>"#;
    let html = std::fs::read_to_string(&page)
        .unwrap()
        .replace("</body>", probe);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("page.html");
    std::fs::write(&file, html).unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split("<pre id=\"measure\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no measurement: {dom:.2000}"))
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let m: Value = serde_json::from_str(&json).unwrap();
    let scales = floats(&m["imgs"]);
    assert!(scales.len() >= 5, "{m}");
    assert!(scales.iter().all(|s| *s >= 0.9), "a figure shrank: {m}");
    let seen: Vec<&str> = m["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for key in ["variant", "status", "seeds", "test acc (final)"] {
        assert!(seen.contains(&key), "{key} out of view at 1280 px: {m}");
    }
}

#[test]
fn a_seeded_study_built_now_says_what_its_runs_show_and_diff_says_it_shows_one_seed() {
    // The real path: train, evaluate and report stages of the binary, three seeds a variant.
    let p = util::Project::new();
    util::learnable(&p.path().join("src-data"), 40, 20);
    p.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
            (name: "train", kind: "train", inputs: ["data"], seeds: 3,
             config: (model: Linear(), epochs: 6, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0), seed: 1),
             vary: {"optimizer.lr": [0.05], "optimizer.momentum": [0.9]}),
            (name: "eval", kind: "evaluate", inputs: ["train", "data"]),
            (name: "report", kind: "report", inputs: ["eval"], target: "reports/s.md"),
        ])"#,
    );
    p.ok(&["build", "reports/s.md"]);
    let claims = p.path().join("reports/s/claims.json");
    assert_eq!(check(&claims), Vec::<String>::new());
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&claims).unwrap()).unwrap();
    let acc = &json["comparisons"][0]["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "accuracy")
        .cloned()
        .expect("an accuracy claim");
    assert_eq!(acc["base"].as_array().unwrap().len(), 3, "{acc}");
    assert!(
        acc["p"].is_f64() && acc["p_holm"].is_f64(),
        "tested over seeds: {acc}"
    );
    let d = p
        .ok(&["diff", "s:eval", "s:eval[optimizer.lr=0.05]"])
        .stdout;
    assert!(
        d.contains("one seed each (A's seed 1 of 3, B's seed 1 of 3)"),
        "{d}"
    );
}
