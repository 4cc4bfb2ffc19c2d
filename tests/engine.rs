//! The engine through the real `pipe` binary, with the instant `fake` stage kinds. Every
//! rebuild test asserts exactly which stages ran, from the execution log.

mod util;

/// The shells' completion scripts, run in bash and zsh.
#[path = "engine/completions.rs"]
mod completions;

use std::time::Duration;

use util::{sorted, Project};

const COMMON: &str = r#"// Shared stages: the dataset and the base model.
Pipeline(
    description: "shared stages",
    stages: [
        (name: "data", kind: "fake", config: (value: "cifar")),
        (name: "base", kind: "fake", inputs: ["data"], config: (optimizer: (lr: 0.01, momentum: 0.5), value: "linear")),
    ],
)
"#;

const MOMENTUM: &str = r#"Pipeline(
    description: "momentum study",
    uses: ["common.ron"],
    stages: [
        (name: "train", extends: "base", vary: {"optimizer.momentum": [0.1, 0.9]}),
        (name: "eval", kind: "fake", inputs: ["train", "data"]),
        (name: "report", kind: "fake_gather", inputs: ["eval"], target: "reports/momentum.md", config: (value: "Momentum", title: "Momentum")),
    ],
)
"#;

const ALL_MOMENTUM: &[&str] = &[
    "common:data",
    "momentum:train",
    "momentum:train[optimizer.momentum=0.1]",
    "momentum:train[optimizer.momentum=0.9]",
    "momentum:eval",
    "momentum:eval[optimizer.momentum=0.1]",
    "momentum:eval[optimizer.momentum=0.9]",
    "momentum:report",
];

fn study() -> Project {
    let p = Project::new();
    p.write("pipelines/common.ron", COMMON)
        .write("pipelines/momentum.ron", MOMENTUM);
    p
}

/// The cached object of `common:data`'s one output.
fn data_object(p: &Project) -> std::path::PathBuf {
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json", "common:data"]).stdout).unwrap();
    let key = status[0]["key"].as_str().unwrap();
    let entry: serde_json::Value =
        serde_json::from_str(&p.read(&format!("cache/entries/{}/{key}.json", &key[..2]))).unwrap();
    let hash = entry["outputs"][0]["hash"].as_str().unwrap();
    p.path()
        .join(format!("cache/objects/{}/{hash}", &hash[..2]))
}

fn built_study() -> Project {
    let p = study();
    assert_eq!(p.build(&[]), sorted(ALL_MOMENTUM));
    p
}

#[test]
fn first_build_runs_every_stage_once_and_materializes_the_target() {
    let p = study();
    assert_eq!(p.build(&["reports/momentum.md"]), sorted(ALL_MOMENTUM));
    let report = p.read("reports/momentum.md");
    assert_eq!(report.matches("input ").count(), 3, "{report}");
    assert!(report.contains("input optimizer.momentum=0.9 "), "{report}");
    assert_eq!(p.build(&[]), Vec::<String>::new());
}

#[test]
fn reformatting_and_comments_rerun_nothing() {
    let p = built_study();
    p.write(
        "pipelines/momentum.ron",
        r#"// The momentum study, reformatted: comments, other spacing, other field order,
// equal numbers written differently, a new description.
Pipeline(
  uses: [ "./common.ron" ],
  description: "momentum, one value at a time",
  stages: [
    ( extends: "base", name: "train",
      vary: { "optimizer.momentum": [ 0.10, /* high */ 9e-1 ] } ),
    ( name: "eval", inputs: [ "train", "common:data" ], kind: "fake" ),
    ( name: "report", kind: "fake_gather", inputs: ["eval"],
      config: ( title: "A new title is cosmetic", value: "Momentum" ),
      target: "reports/momentum.md" ),
  ],
)"#,
    );
    assert_eq!(p.build(&[]), Vec::<String>::new());
}

#[test]
fn the_same_training_config_in_two_studies_is_trained_once() {
    let p = study();
    // The lr study writes the same base run by hand, under another name, with the default
    // lr left out.
    p.write(
        "pipelines/lr.ron",
        r#"Pipeline(
    uses: ["common.ron"],
    stages: [
        (name: "linear", kind: "fake", inputs: ["data"], config: (value: "linear", optimizer: (momentum: 0.5))),
        (name: "lr_runs", extends: "linear", vary: {"optimizer.lr": [0.1]}),
        (name: "report", kind: "fake_gather", inputs: ["lr_runs"], target: "reports/lr.md"),
    ],
)"#,
    );
    let runs = p.build(&[]);
    let base_runs = runs
        .iter()
        .filter(|s| ["momentum:train", "lr:linear", "lr:lr_runs"].contains(&s.as_str()))
        .count();
    assert_eq!(base_runs, 1, "the shared base run trained once: {runs:?}");
    let entries = util::files_under(&p.path().join("cache/entries")).len();
    assert_eq!(entries, runs.len(), "one cache entry per run");
    // Building one study alone after a clean of the other is all hits.
    assert_eq!(p.build(&["reports/lr.md"]), Vec::<String>::new());
}

#[test]
fn a_study_built_after_another_reuses_its_shared_runs() {
    let p = built_study();
    p.write(
        "pipelines/lr.ron",
        r#"Pipeline(uses: ["common.ron"], stages: [
            (name: "linear", kind: "fake", inputs: ["data"], config: (value: "linear", optimizer: (lr: 0.01, momentum: 0.5))),
            (name: "report", kind: "fake_gather", inputs: ["linear"], target: "reports/lr.md"),
        ])"#,
    );
    assert_eq!(p.build(&["reports/lr.md"]), sorted(&["lr:report"]));
}

#[test]
fn editing_one_variant_reruns_only_that_variant_its_evaluation_and_the_report() {
    let p = built_study();
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, 0.95]");
    assert_eq!(
        p.build(&[]),
        sorted(&[
            "momentum:train[optimizer.momentum=0.95]",
            "momentum:eval[optimizer.momentum=0.95]",
            "momentum:report"
        ])
    );
}

#[test]
fn identical_output_stops_the_rebuild_early_cutoff() {
    let p = Project::new();
    p.write(
        "pipelines/common.ron",
        &COMMON.replace(
            r#"config: (value: "cifar")"#,
            r#"config: (value: "cifar", constant: Some("same bytes"))"#,
        ),
    )
    .write("pipelines/momentum.ron", MOMENTUM);
    assert_eq!(p.build(&[]).len(), ALL_MOMENTUM.len());
    p.edit(
        "pipelines/common.ron",
        r#"value: "cifar""#,
        r#"value: "cifar-v2""#,
    );
    assert_eq!(p.build(&[]), sorted(&["common:data"]));
}

#[test]
fn editing_a_report_only_field_reruns_only_the_report() {
    let p = built_study();
    p.edit(
        "pipelines/momentum.ron",
        r#"value: "Momentum""#,
        r#"value: "Momentum, revised""#,
    );
    assert_eq!(p.build(&[]), sorted(&["momentum:report"]));
}

#[test]
fn editing_the_base_reruns_the_base_branch_and_explain_names_the_field() {
    let p = built_study();
    p.edit("pipelines/common.ron", "momentum: 0.5", "momentum: 0.6");
    let out = p.ok(&["explain", "momentum:train"]).stdout;
    assert!(out.contains("optimizer.momentum: 0.5 → 0.6"), "{out}");
    let out = p.ok(&["explain", "reports/momentum.md"]).stdout;
    assert!(
        out.contains("input `momentum:eval` will be rebuilt"),
        "{out}"
    );
    assert!(
        out.contains("optimizer.momentum: 0.5 → 0.6"),
        "the chain reaches the cause: {out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["explain", "--json", "momentum:train"]).stdout).unwrap();
    assert_eq!(
        json[0]["chain"][0]["reasons"][0],
        "optimizer.momentum: 0.5 → 0.6"
    );
    assert_eq!(
        p.build(&[]),
        sorted(&["momentum:train", "momentum:eval", "momentum:report"])
    );
}

#[test]
fn explain_says_input_data_changed() {
    let p = built_study();
    p.edit(
        "pipelines/common.ron",
        r#"value: "cifar""#,
        r#"value: "cifar-v2""#,
    );
    let out = p.ok(&["explain", "momentum:train"]).stdout;
    assert!(out.contains("input `common:data` will be rebuilt"), "{out}");
    assert_eq!(p.build(&["common:data"]), sorted(&["common:data"]));
    let out = p.ok(&["explain", "momentum:train"]).stdout;
    assert!(
        out.contains("input data changed: output of `common:data`"),
        "{out}"
    );
}

#[test]
fn explain_compares_an_edited_variant_with_the_one_it_replaced() {
    let p = built_study();
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, 0.95]");
    let out = p
        .ok(&["explain", "momentum:train[optimizer.momentum=0.95]"])
        .stdout;
    assert!(
        out.contains("`momentum:train[optimizer.momentum=0.9]`"),
        "{out}"
    );
    assert!(out.contains("optimizer.momentum: 0.9 → 0.95"), "{out}");
}

#[test]
fn status_reports_fresh_and_stale_without_running() {
    let p = built_study();
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, 0.95]");
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json"]).stdout).unwrap();
    let stale: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "stale")
        .map(|r| r["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stale.len(), 3, "{json}");
    assert!(stale.contains(&"momentum:report"));
    let dry = p.ok(&["build", "--dry-run"]).stdout;
    assert!(dry.contains("3 of 8 stages would run"), "{dry}");
    assert!(p.ran().is_empty(), "status and --dry-run run nothing");
}

#[test]
fn a_cycle_is_rejected_with_its_position_before_anything_runs() {
    let p = Project::new();
    p.write(
        "pipelines/c.ron",
        "Pipeline(stages: [\n    (name: \"a\", kind: \"fake\", inputs: [\"b\"]),\n    (name: \"b\", kind: \"fake\", inputs: [\"a\"]),\n])\n",
    );
    let r = p.pipe(&["build", "c:a"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("pipelines/c.ron:2:39: stages[0].inputs: dependency cycle: a → b → a"),
        "{r:?}"
    );
    assert!(!p.path().join("cache").exists(), "nothing ran");
}

#[test]
fn unknown_fields_wrong_types_and_bad_values_name_file_line_column_and_field() {
    let p = study();
    p.edit(
        "pipelines/common.ron",
        "(lr: 0.01, momentum: 0.5)",
        "(lr: 0.01, momentun: 0.5)",
    );
    let r = p.pipe(&["build"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pipelines/common.ron:6:87: stages[1].config.optimizer.momentun: unknown field `momentun`"), "{r:?}");
    assert!(r.stderr.contains("did you mean `momentum`?"), "{r:?}");

    p.write("pipelines/common.ron", COMMON);
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, \"high\"]");
    let r = p.pipe(&["status"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("pipelines/momentum.ron:5:77: stages[0].vary[\"optimizer.momentum\"][1]"),
        "{r:?}"
    );

    p.write(
        "pipelines/momentum.ron",
        &MOMENTUM.replace("[0.1, 0.9]", "[0.1, 1.5]"),
    );
    let r = p.pipe(&["status"]);
    assert!(
        r.stderr.contains("momentum must be in [0, 1), got 1.5"),
        "{r:?}"
    );
    assert!(r.stderr.contains("pipelines/momentum.ron:5:77:"), "{r:?}");

    p.write(
        "pipelines/momentum.ron",
        &MOMENTUM.replace("optimizer.momentum", "optimizer.moment"),
    );
    let r = p.pipe(&["status"]);
    assert!(
        r.stderr
            .contains("`optimizer.moment` is not a field of `optimizer`"),
        "{r:?}"
    );
    assert_eq!(
        r.stderr.matches("error:").count(),
        1,
        "reported once, not per value: {r:?}"
    );

    p.write(
        "pipelines/momentum.ron",
        &MOMENTUM.replace(r#"inputs: ["eval"]"#, r#"inputs: ["evaluate"]"#),
    );
    let r = p.pipe(&["status"]);
    assert!(r.stderr.contains("pipelines/momentum.ron:7:"), "{r:?}");
    assert!(
        r.stderr
            .contains("stages[2].inputs[0]: unknown stage `evaluate`"),
        "{r:?}"
    );
    assert!(r.stderr.contains("hint: did you mean `eval`?"), "{r:?}");
}

#[test]
fn invalid_values_in_a_written_config_point_at_the_field() {
    let p = study();
    p.edit("pipelines/common.ron", "lr: 0.01", "lr: -0.5");
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pipelines/common.ron:6:81: stages[1].config.optimizer.lr: learning rate must be > 0, got -0.5"), "{r:?}");
}

#[test]
fn duplicate_targets_unknown_kinds_and_missing_uses_are_rejected() {
    let p = study();
    p.write(
        "pipelines/other.ron",
        r#"Pipeline(uses: ["commons.ron"], stages: [(name: "r", kind: "fake_gather", target: "reports/momentum.md")])"#,
    );
    let r = p.pipe(&["build"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(
            "pipelines/other.ron:1:17: uses[0]: no pipeline file `pipelines/commons.ron`"
        ),
        "{r:?}"
    );
    p.write(
        "pipelines/other.ron",
        r#"Pipeline(stages: [(name: "r", kind: "fake_gather", target: "reports/momentum.md")])"#,
    );
    let r = p.pipe(&["build"]);
    assert!(
        r.stderr
            .contains("target `reports/momentum.md` is declared twice"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("first declared at pipelines/momentum.ron:7:"),
        "{r:?}"
    );
    p.write(
        "pipelines/other.ron",
        r#"Pipeline(stages: [(name: "r", kind: "fak")])"#,
    );
    let r = p.pipe(&["build"]);
    assert!(
        r.stderr
            .contains("pipelines/other.ron:1:37: stages[0].kind: unknown stage kind `fak`"),
        "{r:?}"
    );
}

#[test]
fn a_syntax_error_gives_line_and_column() {
    let p = Project::new();
    p.write(
        "pipelines/s.ron",
        "Pipeline(\n  stages: [\n    (name: \"x\" kind: \"fake\"),\n  ],\n)\n",
    );
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("pipelines/s.ron:3:16: stages[0]: expected a comma"),
        "{r:?}"
    );
}

#[test]
fn gc_frees_unreachable_entries_and_keeps_reachable_ones() {
    let p = built_study();
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, 0.95]");
    p.build(&[]);
    let objects_before = util::files_under(&p.path().join("cache/objects")).len();
    // CUDA's compiled kernels are no stage's output, and cost minutes to make again.
    let kernels = p.path().join("cache/kernels/NVIDIA_H200-sm_90/ptx");
    std::fs::create_dir_all(&kernels).unwrap();
    std::fs::write(kernels.join("chunk0.cbor"), b"ptx").unwrap();
    let out = p.ok(&["gc"]).stdout;
    assert!(
        kernels.join("chunk0.cbor").exists(),
        "gc removed the kernel cache"
    );
    // The 0.9 run, its evaluation and the old report are unreachable now: each named, and
    // the bytes in a unit a person reads, with the exact count beside.
    assert!(out.contains("removed 3 unreachable entries"), "{out}");
    let named: Vec<&str> = out.lines().filter(|l| l.contains("(entry ")).collect();
    assert_eq!(named.len(), 3, "{out}");
    assert!(
        named
            .iter()
            .any(|l| l.starts_with("removed momentum:") && l.contains("0.9]")),
        "{out}"
    );
    // `freed 1234 bytes` or `freed 3.2 KiB (3277 bytes)`: the count before " bytes".
    let freed: u64 = out
        .split(" bytes")
        .next()
        .unwrap()
        .rsplit([' ', '('])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(freed > 0, "{out}");
    assert!(util::files_under(&p.path().join("cache/objects")).len() < objects_before);
    assert_eq!(
        p.build(&[]),
        Vec::<String>::new(),
        "reachable entries were kept"
    );
    assert!(p
        .ok(&["gc"])
        .stdout
        .contains("removed 0 unreachable entries"));
    // Going back to 0.9 now retrains it: its entry is gone.
    p.edit("pipelines/momentum.ron", "[0.1, 0.95]", "[0.1, 0.9]");
    assert_eq!(p.build(&[]).len(), 3);
}

#[test]
fn a_failing_variant_under_keep_going_lets_its_siblings_finish() {
    let p = Project::new();
    p.write("pipelines/common.ron", COMMON).write(
        "pipelines/momentum.ron",
        &MOMENTUM.replace(
            r#"vary: {"optimizer.momentum": [0.1, 0.9]}"#,
            r#"vary: {"optimizer.momentum": [0.1, 0.9], "fail": [true]}"#,
        ),
    );
    let r = p.pipe(&["build", "--keep-going", "-j", "1"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("FAILED  momentum:train[fail=true]: fake stage asked to fail"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("skipped momentum:eval[fail=true]: input `momentum:train[fail=true]` failed"),
        "{r:?}"
    );
    let ran = p.ran();
    for sibling in [
        "momentum:eval[optimizer.momentum=0.1]",
        "momentum:eval[optimizer.momentum=0.9]",
        "momentum:eval",
    ] {
        assert!(
            ran.contains(&sibling.to_string()),
            "{sibling} finished: {ran:?}"
        );
    }
    assert!(
        !ran.contains(&"momentum:report".to_string()),
        "the report depends on the failure"
    );
    // Fixed: only the failed branch and the report run.
    p.edit(
        "pipelines/momentum.ron",
        r#""fail": [true]"#,
        r#""value": ["fixed"]"#,
    );
    assert_eq!(
        p.build(&[]),
        sorted(&[
            "momentum:train[value=\"fixed\"]",
            "momentum:eval[value=\"fixed\"]",
            "momentum:report"
        ])
    );
}

#[test]
fn without_keep_going_the_build_stops_starting_stages_after_a_failure() {
    let p = Project::new();
    p.write(
        "pipelines/f.ron",
        r#"Pipeline(stages: [
            (name: "bad", kind: "fake", config: (fail: true)),
            (name: "after", kind: "fake", inputs: ["bad"]),
            (name: "slow", kind: "fake", config: (sleep_ms: 300)),
            (name: "later", kind: "fake", inputs: ["slow"]),
            (name: "all", kind: "fake_gather", inputs: ["after", "later"], target: "reports/all.txt"),
        ])"#,
    );
    let r = p.pipe(&["build", "-j", "2"]);
    assert_eq!(r.code, 1, "{r:?}");
    let ran = p.ran();
    assert!(
        ran.contains(&"f:slow".to_string()),
        "a stage already running finishes: {ran:?}"
    );
    assert!(
        !ran.contains(&"f:later".to_string()),
        "nothing new starts: {ran:?}"
    );
    assert!(r.stdout.contains("--keep-going"), "{r:?}");
}

#[test]
fn a_panicking_stage_fails_alone() {
    let p = Project::new();
    p.write("pipelines/common.ron", COMMON).write(
        "pipelines/momentum.ron",
        &MOMENTUM.replace(
            r#"vary: {"optimizer.momentum": [0.1, 0.9]}"#,
            r#"vary: {"optimizer.momentum": [0.1, 0.9], "panic": [true]}"#,
        ),
    );
    let r = p.pipe(&["build", "-k"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("FAILED  momentum:train[panic=true]: panicked: fake stage asked to panic"),
        "{r:?}"
    );
    assert_eq!(
        p.ran()
            .iter()
            .filter(|s| s.starts_with("momentum:eval"))
            .count(),
        3
    );
}

#[test]
fn two_concurrent_builds_run_each_stage_once() {
    let p = Project::new();
    p.write(
        "pipelines/common.ron",
        &COMMON
            .replace(
                r#"config: (value: "cifar")"#,
                r#"config: (value: "cifar", sleep_ms: 150)"#,
            )
            .replace(r#"value: "linear")"#, r#"value: "linear", sleep_ms: 150)"#),
    )
    .write("pipelines/momentum.ron", MOMENTUM);
    let a = p
        .cmd(&["build", "-j", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .cmd(&["build", "-j", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let runs = p.take_runs();
    let mut keys: Vec<&str> = runs.iter().map(|r| r["key"].as_str().unwrap()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key ran twice: {runs:?}");
    assert_eq!(n, ALL_MOMENTUM.len());
    assert_eq!(p.build(&[]), Vec::<String>::new());
}

#[test]
fn a_corrupt_or_missing_cached_object_is_reported_and_rebuilt() {
    let p = built_study();
    let obj = data_object(&p);
    let size = std::fs::metadata(&obj).unwrap().len() as usize;
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&obj, perm).unwrap();
    std::fs::write(&obj, "x".repeat(size)).unwrap();
    let r = p.ok(&["build"]);
    assert!(
        r.stdout
            .contains("common:data: cached output `out.txt` is corrupt"),
        "{r:?}"
    );
    assert_eq!(
        p.ran(),
        sorted(&["common:data"]),
        "rebuilt with identical output: nothing else"
    );
    std::fs::remove_file(&obj).unwrap();
    let r = p.ok(&["build"]);
    assert!(r.stdout.contains("is missing from the cache"), "{r:?}");
    assert_eq!(p.ran(), sorted(&["common:data"]));
}

#[test]
fn an_interrupted_stage_never_looks_fresh_and_resumes() {
    let p = Project::new();
    p.write("pipelines/r.ron", r#"Pipeline(stages: [(name: "long", kind: "fake", config: (steps: 40, sleep_ms: 50), target: "reports/long.txt")])"#);
    let mut child = p
        .cmd(&["build"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let scratch = p.path().join("cache/scratch");
    let step = util::wait_for_progress(
        &scratch,
        "step",
        |s| s.parse().ok(),
        3,
        20,
        "the stage never started",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(step < 40);
    let status = p.ok(&["status"]).stdout;
    assert!(status.contains("stale  r:long: never built"), "{status}");
    assert!(!p.path().join("reports/long.txt").exists());
    let r = p.ok(&["build"]);
    assert!(r.stdout.contains("resumed at step"), "{r:?}");
    assert!(p.path().join("reports/long.txt").exists());
    assert!(
        util::find(&scratch, "step").is_none(),
        "scratch is removed on success"
    );
}

#[test]
fn force_reruns_a_stage_and_early_cutoff_spares_its_dependents() {
    let p = built_study();
    assert_eq!(
        p.build(&["--force", "momentum:eval"]),
        sorted(&[
            "momentum:eval",
            "momentum:eval[optimizer.momentum=0.1]",
            "momentum:eval[optimizer.momentum=0.9]"
        ])
    );
}

#[test]
fn clean_removes_the_target_and_the_next_build_reruns_only_its_stage() {
    let p = built_study();
    let out = p.ok(&["clean", "reports/momentum.md"]).stdout;
    assert!(out.contains("cleaned 1 file(s) and 1 cache entry"), "{out}");
    assert!(!p.path().join("reports/momentum.md").exists());
    assert_eq!(p.build(&[]), sorted(&["momentum:report"]));
    assert!(p.path().join("reports/momentum.md").exists());
}

#[test]
fn a_deleted_target_file_is_restored_from_the_cache_without_running() {
    let p = built_study();
    let before = p.read("reports/momentum.md");
    std::fs::remove_file(p.path().join("reports/momentum.md")).unwrap();
    assert_eq!(p.build(&[]), Vec::<String>::new());
    assert_eq!(p.read("reports/momentum.md"), before);
}

#[test]
fn grid_expands_to_the_full_product() {
    let p = Project::new();
    p.write(
        "pipelines/g.ron",
        r#"Pipeline(stages: [
            (name: "t", kind: "fake", grid: {"optimizer.lr": [0.1, 0.2], "optimizer.momentum": [0.0, 0.9]}),
            (name: "r", kind: "fake_gather", inputs: ["t"], target: "reports/g.md"),
        ])"#,
    );
    let list: serde_json::Value = serde_json::from_str(&p.ok(&["list", "--json"]).stdout).unwrap();
    let t = &list["stages"][0];
    assert_eq!(t["variants"], 5, "base + 2×2: {t}");
    assert!(
        t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "g:t[optimizer.lr=0.2,optimizer.momentum=0.9]"),
        "{t}"
    );
    assert_eq!(p.build(&[]).len(), 6);
}

#[test]
fn dag_prints_a_tree_dot_and_mermaid() {
    let p = study();
    let tree = p.ok(&["dag"]).stdout;
    assert!(
        tree.starts_with("reports/momentum.md ← momentum:report (fake_gather)"),
        "{tree}"
    );
    assert!(
        tree.contains("└── momentum:eval[optimizer.momentum=0.9] (fake)"),
        "{tree}"
    );
    // Each node once with its inputs: a stage two others read is expanded the first time
    // and marked after, as `cargo tree` does.
    let shared = Project::new();
    shared.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "raw", kind: "fake"),
            (name: "data", kind: "fake", inputs: ["raw"]),
            (name: "a", kind: "fake", inputs: ["data"]),
            (name: "b", kind: "fake", inputs: ["data"]),
            (name: "r", kind: "fake_gather", inputs: ["a", "b"], target: "reports/r.txt"),
        ])"#,
    );
    let t = shared.ok(&["dag"]).stdout;
    assert_eq!(
        t,
        "reports/r.txt ← s:r (fake_gather)\n├── s:a (fake)\n│   └── s:data (fake)\n│       └── s:raw (fake)\n\
         └── s:b (fake)\n    └── s:data (fake) (*)\n(*) shown above, with its inputs\n"
    );
    let dot = p.ok(&["dag", "--dot"]).stdout;
    assert!(dot.starts_with("digraph pipe {"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 3 + 3 * 2 + 3, "{dot}");
    let mermaid = p.ok(&["dag", "--mermaid"]).stdout;
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    assert_eq!(mermaid.matches(" --> ").count(), 12, "{mermaid}");
}

#[test]
fn list_shows_pipelines_stages_and_targets() {
    let p = study();
    let out = p.ok(&["list"]).stdout;
    assert!(out.contains("pipelines/common.ron  shared stages"), "{out}");
    assert!(
        out.contains("momentum:train (fake, 3 variant(s), 3 node(s)) ← common:data"),
        "{out}"
    );
    assert!(
        out.contains("reports/momentum.md ← momentum:report"),
        "{out}"
    );
}

#[test]
fn gpu_stages_share_the_gpu_slots() {
    let p = Project::new();
    p.write(
        "pipelines/g.ron",
        r#"Pipeline(stages: [
            (name: "a", kind: "fake", config: (gpu: true, sleep_ms: 200, value: "a")),
            (name: "b", kind: "fake", config: (gpu: true, sleep_ms: 200, value: "b")),
            (name: "r", kind: "fake_gather", inputs: ["a", "b"], target: "reports/g.md"),
        ])"#,
    );
    p.ok(&["build", "-j", "4", "--gpus", "1"]);
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json", "g:a", "g:b"]).stdout).unwrap();
    let spans: Vec<(u64, u64)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = s["key"].as_str().unwrap();
            let e: serde_json::Value =
                serde_json::from_str(&p.read(&format!("cache/entries/{}/{key}.json", &key[..2])))
                    .unwrap();
            let start = e["started_unix_ms"].as_u64().unwrap();
            (start, start + e["duration_ms"].as_u64().unwrap())
        })
        .collect();
    let (x, y) = (spans[0], spans[1]);
    assert!(x.1 <= y.0 || y.1 <= x.0, "GPU stages overlapped: {spans:?}");
}

/// Eight GPU stages on two GPUs shared by two stages each: every stage is handed a device
/// index, both devices are used, and no device ever holds more than two at once.
#[test]
fn gpu_stages_get_device_indices_never_more_than_the_share_on_one() {
    let p = Project::new();
    let stages: String = (0..8)
        .map(|i| {
            format!(
                r#"(name: "s{i}", kind: "fake", config: (gpu: true, sleep_ms: 300, value: "{i}")),"#
            )
        })
        .collect();
    p.write("pipelines/g.ron", &format!("Pipeline(stages: [{stages}])"));
    let names: Vec<String> = (0..8).map(|i| format!("g:s{i}")).collect();
    let mut args = vec!["build", "-j", "8", "--gpus", "2", "--gpu-share", "2"];
    args.extend(names.iter().map(String::as_str));
    p.ok(&args);
    let runs = p.take_runs();
    assert_eq!(runs.len(), 8, "{runs:?}");
    let spans: Vec<(usize, u64, u64)> = runs
        .iter()
        .map(|r| {
            let gpus = r["gpus"].as_array().expect("the device index is recorded");
            assert_eq!(gpus.len(), 1, "{r}");
            let start = r["started_unix_ms"].as_u64().unwrap();
            (
                gpus[0].as_u64().unwrap() as usize,
                start,
                start + r["duration_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    for d in 0..2 {
        let on: Vec<_> = spans.iter().filter(|s| s.0 == d).collect();
        assert!(!on.is_empty(), "device {d} was never used: {spans:?}");
        for a in &on {
            let at_once = on.iter().filter(|b| b.1 <= a.1 && a.1 < b.2).count();
            assert!(
                at_once <= 2,
                "device {d} held {at_once} stages at once: {spans:?}"
            );
        }
    }
    let all_at_once = spans
        .iter()
        .map(|a| spans.iter().filter(|b| b.1 <= a.1 && a.1 < b.2).count())
        .max()
        .unwrap();
    assert!(
        all_at_once > 2,
        "the share let stages run side by side: {spans:?}"
    );
}

#[test]
fn unknown_target_names_a_close_one() {
    let p = study();
    let r = p.pipe(&["build", "reports/momentun.md"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("the closest: `reports/momentum.md`, "),
        "{r:?}"
    );
}

#[test]
fn a_no_op_build_reuses_the_hash_memo_and_rewrites_nothing() {
    let p = built_study();
    let memo = p.path().join("cache/memo.json");
    let index = p.path().join("cache/index.json");
    let stamp = |f: &std::path::Path| std::fs::metadata(f).unwrap().modified().unwrap();
    let (m, i) = (stamp(&memo), stamp(&index));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(p.build(&[]), Vec::<String>::new());
    assert_eq!(
        stamp(&memo),
        m,
        "every cached object's hash came from the memo"
    );
    assert_eq!(stamp(&index), i);
}

#[test]
fn command_stages_see_their_inputs_labels_and_fail_on_a_nonzero_exit() {
    let p = Project::new();
    p.write(
        "pipelines/c.ron",
        r#"Pipeline(stages: [
            (name: "make", kind: "command", config: (run: "echo $N > n.txt", env: {"N": "1"}), vary: {"env.N": ["2"]}),
            (name: "sum", kind: "command_gather", inputs: ["make"], target: "reports/sum.txt",
             config: (run: "for i in 0 1; do eval echo \\$PIPE_INPUT_${i}_LABEL; eval cat \\$PIPE_INPUT_$i/n.txt; done > sum.txt")),
            (name: "broken", kind: "command", config: (run: "echo about to fail; exit 3")),
        ])"#,
    );
    p.ok(&["build", "reports/sum.txt"]);
    assert_eq!(p.read("reports/sum.txt"), "base\n1\nenv.N=\"2\"\n2\n");
    let r = p.pipe(&["build", "c:broken"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("FAILED  c:broken: command exited with exit status: 3: about to fail"),
        "{r:?}"
    );
}

/// A script a stage runs is a dependency when it is declared: an edit (a whitespace one too:
/// it is content) reruns the stage, a `touch` or nothing does not, `explain` names the file,
/// a folder counts every file in it, and a stage extending it keeps its deps.
#[test]
fn declared_deps_rerun_a_stage_when_their_content_changes_and_only_then() {
    let p = Project::new();
    p.write("scripts/run.sh", "echo one > out.txt\n");
    p.write("tables/a.txt", "a\n");
    p.write(
        "pipelines/c.ron",
        r#"Pipeline(stages: [
            (name: "s", kind: "command", deps: ["scripts/run.sh", "tables"],
             config: (run: "sh $PIPE_ROOT/scripts/run.sh")),
            (name: "t", extends: "s", set: {"cpus": 2}),
        ])"#,
    );
    p.ok(&["build", "c:s", "c:t"]);
    assert_eq!(p.ran(), ["c:s", "c:t"]);
    let built = || p.ok(&["build", "c:s"]).stdout;
    built();
    assert!(p.ran().is_empty(), "nothing changed");
    // The same bytes with a new mtime: not a change.
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.write("scripts/run.sh", "echo one > out.txt\n");
    built();
    assert!(p.ran().is_empty(), "touched, not edited");
    p.write("scripts/run.sh", "echo two > out.txt\n");
    let why = p.ok(&["explain", "c:s"]).stdout;
    assert!(why.contains("dependency changed: scripts/run.sh"), "{why}");
    built();
    assert_eq!(p.ran(), ["c:s"]);
    assert_eq!(
        std::fs::read_to_string(p.outputs("c:s").join("out.txt")).unwrap(),
        "two\n"
    );
    p.write("scripts/run.sh", "echo  two > out.txt\n");
    built();
    assert_eq!(p.ran(), ["c:s"], "whitespace is content");
    p.write("tables/sub/b.txt", "b\n");
    let why = p.ok(&["explain", "c:s"]).stdout;
    assert!(why.contains("dependency added: tables/sub/b.txt"), "{why}");
    built();
    assert_eq!(p.ran(), ["c:s"]);
    p.ok(&["build", "c:t"]);
    assert_eq!(p.ran(), ["c:t"], "t inherited s's deps");
}

#[test]
fn a_missing_or_outside_dep_is_an_error_where_it_is_written() {
    let p = Project::new();
    p.write(
        "pipelines/c.ron",
        "Pipeline(stages: [\n    (name: \"s\", kind: \"command\", deps: [\"scripts/gone.py\", \"../x\"], config: (run: \"true\")),\n])",
    );
    let r = p.pipe(&["build", "c:s"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("pipelines/c.ron:2:41: stages[0].deps[0]: `scripts/gone.py` does not exist in the project"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("stages[0].deps[1]: `../x` is outside the project"),
        "{r:?}"
    );
    assert!(p.ran().is_empty());
}

/// Every stage id and target an example names, in README.md and in every `--help`, exists in
/// the shipped pipelines; an unknown one is answered with the closest few, not all of them.
#[test]
fn every_example_in_the_readme_and_the_help_names_what_exists() {
    let root = env!("CARGO_MANIFEST_DIR");
    let pipe = |args: &[&str]| {
        util::Run::from_output(
            std::process::Command::new(util::bin())
                .arg("-C")
                .arg(root)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    // The commands: `pipe …` spans, and lines of shell blocks that run pipe.
    let mut commands: Vec<String> = readme
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("pipe "))
        .map(str::to_string)
        .collect();
    commands.extend(
        readme
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("pipe ") || l.starts_with("$ pipe "))
            .map(str::to_string),
    );
    let help = pipe(&["--help"]).stdout;
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(subcommands.len() >= 10, "{help}");
    for sub in &subcommands {
        let text = pipe(&[sub, "--help"]).stdout;
        // The ids and targets in a help text are written in backticks or after `pipe `.
        commands.extend(
            text.split('`')
                .skip(1)
                .step_by(2)
                .map(|w| format!("pipe {sub} {w}")),
        );
        commands.extend(
            text.lines()
                .filter_map(|l| l.split_once("pipe "))
                .map(|(_, c)| format!("pipe {c}")),
        );
    }
    let mut named: Vec<String> = Vec::new();
    for c in &commands {
        for word in c.split_whitespace().skip(1) {
            let w = word.trim_matches(|ch| matches!(ch, '\'' | '"' | ',' | '.' | ')' | '('));
            let id_like = w.contains(':')
                && !w.starts_with('-')
                && !w.contains("://")
                && w.chars().next().is_some_and(|ch| ch.is_ascii_lowercase());
            let target_like = w.starts_with("reports/") && w.ends_with(".md");
            if (id_like || target_like) && !named.contains(&w.to_string()) {
                named.push(w.to_string());
            }
        }
    }
    assert!(named.len() >= 4, "{named:?} from {commands:?}");
    for name in &named {
        let r = pipe(&["dag", name]);
        assert_eq!(
            r.code, 0,
            "an example names `{name}`, which does not exist: {r:?}"
        );
    }
    let r = pipe(&["dag", "momentum:train"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("the closest: `") && r.stderr.contains("linear:momentum`"),
        "{r:?}"
    );
    assert!(r.stderr.len() < 600, "a few ids, not all: {}", r.stderr);
    let r = pipe(&["dag", "quick/linear:momentum[optimizer.momentum=0.8]"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("`quick/linear:momentum` has no variant `[optimizer.momentum=0.8]`; its 12 variant(s): [base], ")
            && r.stderr.contains("[optimizer.momentum=0.9]"),
        "{r:?}"
    );
}

/// Every error of every stage in one run: two wrong `set` entries of one stage and an unknown
/// input of another are all said, each at its place, and a stage extending nothing is said
/// without a cascade of its own config's errors.
#[test]
fn every_error_of_every_stage_is_said_at_once() {
    let p = Project::new();
    p.write(
        "pipelines/a.ron",
        r#"Pipeline(stages: [
    (name: "d", kind: "fake", config: (value: "d")),
    (name: "t", kind: "train", inputs: ["d"], config: (model: Linear(), epochs: 1), set: {"epochs": -2, "seed": 1.5}),
    (name: "u", kind: "fake", inputs: ["nothere"], config: (value: "u")),
    (name: "v", extends: "nobody", set: {"epochs": 3}),
])"#,
    );
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    for said in [
        "pipelines/a.ron:3:",
        "stages[1].set.epochs: `epochs` cannot be negative",
        "stages[1].set.seed: `seed` must be a whole number, not `1.5`",
        "pipelines/a.ron:4:",
        "stages[2].inputs[0]: unknown stage `nothere`",
        "stages[3].extends: unknown stage `nobody`",
    ] {
        assert!(r.stderr.contains(said), "`{said}` missing: {}", r.stderr);
    }
    assert_eq!(r.stderr.matches("error: ").count(), 4, "{}", r.stderr);
}

/// `build -n` says the cost as `build` would, before listing what would run.
#[test]
fn a_dry_run_says_what_the_build_is_about_to_run() {
    let p = Project::new();
    let values: Vec<String> = (1..25).map(|i| format!("\"v{i}\"")).collect();
    p.write(
        "pipelines/f.ron",
        &format!(
            r#"Pipeline(stages: [(name: "a", kind: "fake", config: (value: "a"), vary: {{"value": [{}]}})])"#,
            values.join(", ")
        ),
    );
    let out = p.ok(&["build", "-n", "f:a"]).stdout;
    assert!(
        out.starts_with("about to run 25 stages: 0 trainings"),
        "{out}"
    );
    assert!(out.contains("25 of 25 stages would run"), "{out}");
    assert!(p.ran().is_empty());
}

/// From a folder inside the project, without `-C`, pipe finds the project as git does.
#[test]
fn pipe_finds_its_project_from_a_subfolder() {
    let p = Project::new();
    p.write(
        "pipelines/f.ron",
        r#"Pipeline(stages: [(name: "a", kind: "fake", config: (value: "a"))])"#,
    );
    let sub = p.path().join("reports/deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    let run = |dir: &std::path::Path, args: &[&str]| {
        util::Run::from_output(
            std::process::Command::new(util::bin())
                .current_dir(dir)
                .args(args)
                .env_remove("PIPE_CACHE")
                .output()
                .unwrap(),
        )
    };
    let r = run(&sub, &["build", "f:a"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        p.path().join("cache/index.json").exists(),
        "the project's cache, not one in the subfolder"
    );
    assert!(!sub.join("cache").exists());
    assert_eq!(p.ran(), ["f:a"]);
    // Outside any project: the error says so.
    let outside = tempfile::tempdir().unwrap();
    let r = run(outside.path(), &["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no `pipelines` folder"), "{r:?}");
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let r = util::Run::from_output(
        std::process::Command::new(util::bin())
            .args(["-C", root, "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(!list["targets"].as_array().unwrap().is_empty());
}

const UNCHANGED: &str = "nothing changed since the last check";

/// `out` without the shortcut's note, and a build's time left out (`in 0.01s`).
fn without_note(out: &str) -> String {
    out.replace(&format!(" ({UNCHANGED})"), "")
        .lines()
        .map(|l| match l.find(" skipped in ") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_noop_is_answered_from_its_record_with_the_full_answer() {
    let p = built_study();
    // The build wrote a record; without it the same command takes the full path.
    let short_build = p.ok(&["build"]).stdout;
    assert!(short_build.contains(UNCHANGED), "{short_build}");
    std::fs::remove_dir_all(p.path().join("cache/noop")).unwrap();
    let full_build = p.ok(&["build"]).stdout;
    assert!(!full_build.contains(UNCHANGED), "{full_build}");
    let short_build = p.ok(&["build"]).stdout;
    assert!(short_build.contains(UNCHANGED), "{short_build}");
    assert_eq!(without_note(&short_build), without_note(&full_build));
    assert_eq!(p.ran(), Vec::<String>::new());
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["status", "momentum:eval"],
    ] {
        let full = p.ok(args).stdout;
        let short = p.ok(args).stdout;
        assert!(!full.contains(UNCHANGED), "{args:?}: {full}");
        if args.contains(&"--json") {
            assert_eq!(short, full, "{args:?}");
        } else {
            assert!(short.contains(UNCHANGED), "{args:?}: {short}");
            assert_eq!(without_note(&short), without_note(&full), "{args:?}");
        }
    }
    let dry = p.ok(&["build", "--dry-run"]).stdout;
    assert_eq!(dry.trim(), format!("0 of 8 stages would run ({UNCHANGED})"));
}

#[test]
fn the_noop_record_is_not_trusted_after_an_edit_a_lost_object_a_deleted_target_or_a_new_variable() {
    let p = built_study();
    let noop_twice = |p: &Project| {
        p.ok(&["build"]);
        let out = p.ok(&["build"]).stdout;
        assert!(out.contains(UNCHANGED), "{out}");
        assert_eq!(p.ran(), Vec::<String>::new());
    };
    noop_twice(&p);
    // An edit: the full path runs and reruns exactly the edited branch.
    p.edit("pipelines/momentum.ron", "0.9]", "0.8]");
    assert_eq!(
        p.build(&[]),
        sorted(&[
            "momentum:train[optimizer.momentum=0.8]",
            "momentum:eval[optimizer.momentum=0.8]",
            "momentum:report"
        ])
    );
    noop_twice(&p);
    // A deleted target file is restored, not assumed.
    let report = p.read("reports/momentum.md");
    std::fs::remove_file(p.path().join("reports/momentum.md")).unwrap();
    let out = p.ok(&["build"]).stdout;
    assert!(!out.contains(UNCHANGED), "{out}");
    assert_eq!(p.read("reports/momentum.md"), report);
    noop_twice(&p);
    // A lost object is rebuilt.
    std::fs::remove_file(data_object(&p)).unwrap();
    let out = p.ok(&["build"]).stdout;
    assert!(out.contains("is missing from the cache"), "{out}");
    assert_eq!(p.ran(), sorted(&["common:data"]));
    noop_twice(&p);
    // A `PIPE_*` variable may change what a kind keys on (the device): the full path runs.
    let r = util::Run::from_output(
        p.cmd(&["status"])
            .env("PIPE_DEVICE", "cpu")
            .output()
            .unwrap(),
    );
    assert!(!r.stdout.contains(UNCHANGED), "{r:?}");
    // `clean` writes the index: the record no longer holds.
    p.ok(&["clean", "reports/momentum.md"]);
    assert_eq!(p.build(&[]), sorted(&["momentum:report"]));
    // A new pipeline file is part of the plan.
    noop_twice(&p);
    p.write(
        "pipelines/extra.ron",
        r#"Pipeline(stages: [(name: "x", kind: "fake", config: (value: "x"), target: "reports/x.txt")])"#,
    );
    assert_eq!(p.build(&[]), sorted(&["extra:x"]));
}

/// `--force X` alone builds X (it started every target), and a closed stdout ends a command
/// quietly (`pipe list | head`).
#[test]
fn force_alone_builds_what_it_names_and_a_closed_pipe_is_no_panic() {
    let p = Project::new();
    p.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "a", kind: "fake", config: (value: "a")),
            (name: "b", kind: "fake", inputs: ["a"], config: (value: "b"), target: "reports/b.txt"),
            (name: "c", kind: "fake", config: (value: "c"), target: "reports/c.txt"),
        ])"#,
    );
    p.ok(&["build"]);
    p.ran();
    p.ok(&["build", "--force", "s:c"]);
    assert_eq!(p.ran(), vec!["s:c".to_string()]);

    let mut many = String::from("Pipeline(stages: [\n");
    for i in 0..3000 {
        many.push_str(&format!(
            "(name: \"x{i}\", kind: \"fake\", config: (value: \"{i}\")),\n"
        ));
    }
    many.push_str("])\n");
    p.write("pipelines/many.ron", &many);
    let mut list = p
        .cmd(&["list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `head -1` does.
    let mut out = list.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read(&mut out, &mut first).unwrap();
    drop(out);
    let o = list.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

/// The command line scripts and logs rely on: `build --json` (and its no-op answer),
/// `--quiet`, progress lines off a terminal, the announcement of a big build, `clean` and
/// `gc --dry-run` that remove nothing, `--json` on `dag`, `clean` and `gc`.
#[test]
fn machine_readable_output_quiet_builds_progress_lines_and_dry_runs() {
    let p = Project::new();
    let mut stages = String::from("Pipeline(stages: [\n");
    stages.push_str(r#"(name: "slow", kind: "fake", config: (steps: 3, sleep_ms: 30), target: "reports/slow.txt"),"#);
    for i in 0..25 {
        stages.push_str(&format!(
            "(name: \"x{i}\", kind: \"fake\", config: (value: \"{i}\")),\n"
        ));
    }
    stages.push_str("])\n");
    p.write("pipelines/s.ron", &stages);
    let r = p
        .cmd(&["build", "--json"])
        .env("PIPE_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&r.stdout).expect("stdout is JSON alone");
    assert_eq!(summary["built"], serde_json::json!(["s:slow"]));
    assert_eq!(summary["targets"], serde_json::json!(["reports/slow.txt"]));
    let again: serde_json::Value =
        serde_json::from_str(&p.ok(&["build", "--json"]).stdout).unwrap();
    assert_eq!(
        again["fresh"],
        serde_json::json!(["s:slow"]),
        "the no-op answer: {again}"
    );

    // Off a terminal, a running stage prints its progress; `--quiet` prints the summary only.
    p.edit("pipelines/s.ron", "steps: 3", "steps: 4");
    let r = p
        .cmd(&["build", "s:slow"])
        .env("PIPE_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("  ...   s:slow 2/4 steps ["), "{out}");
    assert!(out.contains("left]"), "{out}");
    p.edit("pipelines/s.ron", "steps: 4", "steps: 5");
    let q = p.ok(&["build", "--quiet", "s:slow"]).stdout;
    assert_eq!(
        q.lines().next().unwrap_or_default().split(" built").next(),
        Some("1"),
        "{q}"
    );
    assert!(!q.contains("built   s:slow"), "{q}");

    // Twenty stages or more to run are announced first.
    let r = p.ok(&[
        "build", "s:x0", "s:x1", "s:x2", "s:x3", "s:x4", "s:x5", "s:x6", "s:x7", "s:x8", "s:x9",
        "s:x10", "s:x11", "s:x12", "s:x13", "s:x14", "s:x15", "s:x16", "s:x17", "s:x18", "s:x19",
    ]);
    assert!(
        r.stdout
            .starts_with("about to run 20 stages: 0 trainings (0 epochs in all)"),
        "{r:?}"
    );

    let dag: Vec<serde_json::Value> =
        serde_json::from_str(&p.ok(&["dag", "--json", "s:slow"]).stdout).unwrap();
    assert_eq!(dag.len(), 1);
    assert_eq!(dag[0]["kind"], "fake");
    assert_eq!(dag[0]["target"], "reports/slow.txt");

    let dry = p.ok(&["clean", "--dry-run"]).stdout;
    assert!(
        dry.contains("would remove") && dry.contains("reports/slow.txt"),
        "{dry}"
    );
    assert!(
        p.path().join("reports/slow.txt").exists(),
        "a dry run removes nothing"
    );
    p.ok(&["status", "--exit-code", "s:slow"]);
    let c: serde_json::Value = serde_json::from_str(&p.ok(&["clean", "--json"]).stdout).unwrap();
    assert_eq!(c["entries"], 1, "{c}");
    assert!(!p.path().join("reports/slow.txt").exists());

    p.write("pipelines/s.ron", "Pipeline(stages: [])\n");
    let g: serde_json::Value =
        serde_json::from_str(&p.ok(&["gc", "--dry-run", "--json"]).stdout).unwrap();
    assert!(g["entries_removed"].as_u64().unwrap() >= 20, "{g}");
    let g2: serde_json::Value = serde_json::from_str(&p.ok(&["gc", "--json"]).stdout).unwrap();
    assert_eq!(
        g["entries_removed"], g2["entries_removed"],
        "the dry run counted what gc removed"
    );
    let g3: serde_json::Value = serde_json::from_str(&p.ok(&["gc", "--json"]).stdout).unwrap();
    assert_eq!(g3["entries_removed"], 0);
}

/// Off a terminal, the build says how far it is and, from the runs recorded here, how long
/// the rest will take: a new variant is timed by its siblings.
#[test]
fn the_build_prints_its_progress_and_time_left_from_recorded_runs() {
    let p = study();
    let run = |args: &[&str]| {
        let out = p
            .cmd(args)
            .env("PIPE_PROGRESS_SECONDS", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(&["build"]);
    let lines: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("build   "))
        .collect();
    assert_eq!(lines.len(), ALL_MOMENTUM.len(), "a line per stage: {first}");
    assert!(lines[0].starts_with("build   1/8 stages done, "), "{first}");
    assert!(lines[7].starts_with("build   8/8 stages done, "), "{first}");
    assert!(!lines[7].contains("left"), "{first}");

    // A new momentum value: its training has siblings on record, as have the evaluation
    // and the report, so the time left is given from the first line on.
    p.edit("pipelines/momentum.ron", "[0.1, 0.9]", "[0.1, 0.7]");
    let second = run(&["build"]);
    let lines: Vec<&str> = second
        .lines()
        .filter(|l| l.starts_with("build   "))
        .collect();
    assert_eq!(lines.len(), 3, "{second}");
    assert!(
        lines[0].starts_with("build   1/3 stages done, "),
        "{second}"
    );
    assert!(
        lines[0].contains(" left") && !lines[0].contains("without a time"),
        "{second}"
    );
}

#[test]
fn a_command_stage_that_asks_for_gpus_is_told_its_devices_and_a_build_without_says_so() {
    let p = Project::new();
    p.write(
        "pipelines/g.ron",
        r#"Pipeline(stages: [
            (name: "one", kind: "command", config: (run: "echo \"[$CUDA_VISIBLE_DEVICES]\" > d.txt", gpus: 1)),
            (name: "two", kind: "command", config: (run: "echo \"[$CUDA_VISIBLE_DEVICES]\" > d.txt", gpus: 2)),
        ])"#,
    );
    let devices = |stage: &str| std::fs::read_to_string(p.outputs(stage).join("d.txt")).unwrap();
    let r = p
        .cmd(&["build", "--gpus", "2", "g:one", "g:two"])
        .env("CUDA_VISIBLE_DEVICES", "5,7")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // Mapped through this build's own list: device 0 or 1 of "5,7".
    let one = devices("g:one");
    assert!(one == "[5]\n" || one == "[7]\n", "{one}");
    assert_eq!(devices("g:two"), "[5,7]\n");

    let r = p.ok(&["build", "--gpus", "0", "--force", "g:one", "g:one"]);
    assert!(
        r.stdout
            .contains("g:one: asks for 1 GPU(s), and this build has 0 (--gpus): it runs with none"),
        "{r:?}"
    );
    assert_eq!(devices("g:one"), "[]\n");
}

/// `pipe build` with no target builds every target of every pipeline: when that trains for
/// hundreds of epochs it says so and waits for `--all` (or targets), running nothing.
#[test]
fn a_build_without_target_that_would_train_for_long_asks_for_all() {
    let p = Project::new();
    util::learnable(&p.path().join("src-data"), 10, 10);
    p.write(
        "pipelines/big.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 10)),
            (name: "long", kind: "train", inputs: ["data"], config: (model: Linear(), epochs: 150),
             vary: {"batch_size": [64]}),
            (name: "eval", kind: "evaluate", inputs: ["long", "data"]),
            (name: "report", kind: "report", inputs: ["eval"], target: "reports/long.md"),
        ])"#,
    );
    let r = p.pipe(&["build"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("`pipe build` with no target builds every target of every pipeline: about to run 7 stages: 2 trainings (300 epochs in all)")
            && r.stderr.contains("`pipe build --all`"),
        "{r:?}"
    );
    assert!(p.ran().is_empty(), "nothing ran");
    // A dry run says the same cost and runs nothing; a target or `--all` is what it asks.
    let dry = p.ok(&["build", "-n"]).stdout;
    assert!(
        dry.starts_with("about to run 7 stages: 2 trainings (300 epochs in all)"),
        "{dry}"
    );
    assert_eq!(
        p.pipe(&["build", "--all", "reports/long.md"]).code,
        2,
        "one or the other"
    );
    p.edit("pipelines/big.ron", "epochs: 150", "epochs: 2");
    assert_eq!(p.build(&[]).len(), 7, "a small build needs no --all");
}
