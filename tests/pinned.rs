//! What a build computes, pinned, so that moving code cannot change it unnoticed. Two
//! goldens in `tests/pinned/`, written by the code as it was before a move:
//! - `keys.tsv`: the key of every stage variant of every shipped pipeline (`pipelines/`),
//!   computed as the engine computes it (kind and version, canonical config, target,
//!   material from outside the cache, input labels), each upstream output standing in as a
//!   hash of its stage's key. How a pipeline file is read, its variants spliced and its
//!   configs canonicalized and hashed all show in these keys;
//! - `weights.tsv`: blake3 of each family's `model.bin` (every recurrent cell too) after two
//!   epochs on small synthetic data, trained by the binary on the CPU backend.
//!
//! A change meant to alter them (a kind's version bump, a new default) rewrites them with
//! `PIPE_BLESS=1 cargo test --test pinned` and says why in its commit.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe::engine::assess::{external, key_inputs};
use pipe::engine::cache::Cache;
use pipe::plan::Plan;
use util::{learnable, Project};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pinned")
        .join(name)
}

/// `actual` against the golden `name` (one `id<TAB>value` per line), or written to it
/// under `PIPE_BLESS`. Every difference is listed, not only the first.
fn check(name: &str, actual: &BTreeMap<String, String>) {
    let path = golden(name);
    if std::env::var_os("PIPE_BLESS").is_some() {
        let text: String = actual.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (PIPE_BLESS=1 writes it)", path.display()));
    let expected: BTreeMap<String, String> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("id<TAB>value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut diffs = Vec::new();
    for (k, v) in &expected {
        match actual.get(k) {
            None => diffs.push(format!("{k}: gone")),
            Some(a) if a != v => diffs.push(format!("{k}: {v} → {a}")),
            Some(_) => {}
        }
    }
    diffs.extend(
        actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| format!("{k}: new")),
    );
    assert!(
        diffs.is_empty(),
        "{} of {} entries differ from {}:\n{}",
        diffs.len(),
        expected.len(),
        path.display(),
        diffs.join("\n")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn every_shipped_pipeline_keeps_every_stage_key() {
    // Keys name the backend a run used; pin the CPU's, and the sample the studies name.
    std::env::set_var("PIPE_DEVICE", "cpu");
    std::env::remove_var("PIPE_CIFAR10");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        &root.join("pipelines"),
    );
    // The quick studies read `../shared/data/cifar-10-sample`: fixed synthetic files.
    learnable(&dir.path().join("shared/data/cifar-10-sample"), 20, 10);

    let spec = pipe::pipeline::load(&root, &pipe::stages::all()).expect("shipped pipelines load");
    let plan = Plan::new(spec).expect("shipped pipelines expand");
    let cache = Cache::open(&root.join("cache")).unwrap();
    let mut keys: Vec<String> = Vec::with_capacity(plan.nodes.len());
    let mut out = BTreeMap::new();
    for n in 0..plan.nodes.len() {
        let ext = external(&plan, &cache, &root, n)
            .unwrap_or_else(|e| panic!("{}: {e}", plan.nodes[n].id));
        let stand_in = |i: usize| {
            Some(
                blake3::hash(format!("output of {}", keys[i]).as_bytes())
                    .to_hex()
                    .to_string(),
            )
        };
        let key = key_inputs(&plan, n, ext, stand_in)
            .expect("every input stands in")
            .key();
        out.insert(plan.nodes[n].id.clone(), key.clone());
        keys.push(key);
    }
    assert!(out.len() > 900, "every variant of every study is pinned");
    check("keys.tsv", &out);
}

#[test]
fn every_family_trains_to_the_same_weights() {
    let p = Project::new();
    learnable(&p.path().join("src-data"), 40, 20);
    let mut stages = String::new();
    for (name, model) in util::FAMILIES {
        stages.push_str(&format!(
            r#"(name: "{name}", kind: "train", inputs: ["data"], config: (model: {model}, epochs: 2, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.9), seed: 3)),"#
        ));
    }
    p.write(
        "pipelines/t.ron",
        &format!(
            r#"Pipeline(stages: [
                (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
                (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
                {stages}
            ])"#
        ),
    );
    let mut args = vec!["--device", "cpu", "build"];
    let targets: Vec<String> = util::FAMILIES
        .iter()
        .map(|(n, _)| format!("t:{n}"))
        .collect();
    args.extend(targets.iter().map(String::as_str));
    p.ok(&args);
    let out: BTreeMap<String, String> = util::FAMILIES
        .iter()
        .map(|(name, _)| {
            let bin = std::fs::read(p.outputs(&format!("t:{name}")).join("model.bin")).unwrap();
            (name.to_string(), blake3::hash(&bin).to_hex().to_string())
        })
        .collect();
    // `gemm` computes with AVX-512 where the CPU has it, and its products round differently
    // from AVX2's: one golden per instruction set.
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let golden = if avx512 {
        "weights.tsv"
    } else {
        "weights-avx2.tsv"
    };
    check(golden, &out);
}

/// Every example in `pipe --help` names stages and targets that exist in the shipped
/// pipelines.
#[test]
fn help_examples_name_what_the_shipped_pipelines_hold() {
    let root = env!("CARGO_MANIFEST_DIR");
    let help = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut checked = 0;
    for sub in ["show", "diff"] {
        let text = help(&[sub, "--help"]);
        let example = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Example: pipe "))
            .unwrap_or_else(|| panic!("{sub}: {text}"));
        for word in example
            .split_whitespace()
            .skip(1)
            .filter(|w| !w.starts_with("--") && w.contains(['/', ':']))
        {
            let name = word.trim_matches('\'');
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
                .args(["-C", root, "dag", "--json", name])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "`{name}` of `pipe {sub}`'s example: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}
