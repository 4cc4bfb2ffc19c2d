//! A training script of the user's own in a study (examples/own-script): the shipped
//! PyTorch script, varied and seeded like a train stage through a `command` stage, gathered
//! by a report like a built-in family (table, Influence, TensorBoard, `pipe show`); its
//! script is a dependency. And what a command that writes a run's files wrongly is told.

mod util;

use util::{learnable, python_has, sorted, Project};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/own-script");

/// The shipped example in a project of its own, on synthetic data of the sample's format
/// (smaller: a validation split that fits it, four epochs).
fn example() -> Project {
    let p = Project::new();
    learnable(&p.path().join("src-data"), 60, 60);
    for f in ["pipelines/torch.ron", "scripts/train.py"] {
        p.write(
            f,
            &std::fs::read_to_string(format!("{EXAMPLE}/{f}")).unwrap(),
        );
    }
    let ron = "pipelines/torch.ron";
    p.edit(
        ron,
        "Local(\"../../../shared/data/cifar-10-sample\")",
        "Local(\"src-data\")",
    );
    p.edit(ron, "validation: 1000", "validation: 60");
    p.edit(ron, "\"EPOCHS\": \"10\"", "\"EPOCHS\": \"4\"");
    p
}

/// The cells of the Results table row whose first cell is `variant`.
fn row(md: &str, variant: &str) -> Vec<String> {
    let results = md.split("## Results").nth(1).unwrap();
    let line = results
        .lines()
        .find(|l| l.starts_with(&format!("| {variant} |")))
        .unwrap_or_else(|| panic!("no row {variant} in {md}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn a_pytorch_script_of_ones_own_is_a_family_of_the_study() {
    if !python_has("torch", "PIPE_REQUIRE_TORCH") {
        return;
    }
    let p = example();
    p.ok(&["build", "reports/momentum.md"]);
    let runs = [
        "torch:mlp",
        "torch:mlp[env.MOMENTUM=\"0.0\"]",
        "torch:mlp[env.MOMENTUM=\"0.5\"]",
        "torch:mlp[env.MOMENTUM=\"0.0\",seed=43]",
        "torch:mlp[env.MOMENTUM=\"0.5\",seed=43]",
        "torch:mlp[seed=43]",
    ];
    let ran = p.ran();
    for r in runs {
        assert!(ran.contains(&r.to_string()), "{r} ran: {ran:?}");
    }
    // Each run is what its own files say: the report's best validation accuracy is the
    // mean over the seeds of each metrics.jsonl's best epoch.
    let md = p.read("reports/momentum.md");
    for (variant, stages) in [
        ("base", ["torch:mlp", "torch:mlp[seed=43]"]),
        (
            "env.MOMENTUM=\"0.0\"",
            [
                "torch:mlp[env.MOMENTUM=\"0.0\"]",
                "torch:mlp[env.MOMENTUM=\"0.0\",seed=43]",
            ],
        ),
    ] {
        let best: Vec<f64> = stages
            .iter()
            .map(|s| {
                let text = std::fs::read_to_string(p.outputs(s).join("metrics.jsonl")).unwrap();
                let epochs: Vec<serde_json::Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(epochs.len(), 4, "{s}: one line per epoch");
                epochs
                    .iter()
                    .map(|e| e["val_acc"].as_f64().unwrap())
                    .fold(f64::MIN, f64::max)
            })
            .collect();
        let mean = (best[0] + best[1]) / 2.0;
        let cells = row(&md, variant);
        assert!(
            cells
                .iter()
                .any(|c| c.starts_with(&format!("{:.1}%", mean * 100.0))),
            "{variant}: mean best validation accuracy {mean} in {cells:?}"
        );
    }
    assert!(md.contains("## Influence"), "{md}");
    assert!(
        md.contains("`env.MOMENTUM`"),
        "the varied field is named: {md}"
    );
    // The seed reached the script: the replicates differ.
    let a = std::fs::read(p.outputs("torch:mlp").join("metrics.jsonl")).unwrap();
    let b = std::fs::read(p.outputs("torch:mlp[seed=43]").join("metrics.jsonl")).unwrap();
    assert_ne!(a, b, "seeds 42 and 43 train differently");
    // TensorBoard: the report made each run's events from its metrics, and the HParams table.
    let tb = p.path().join("reports/momentum/tensorboard");
    for dir in ["base", "seed_43", "env.MOMENTUM__0.5"] {
        let d = tb.join(dir);
        assert!(
            d.join("events.out.tfevents.0.pipe").is_file(),
            "{}",
            d.display()
        );
        assert!(
            d.join("events.out.tfevents.1.pipe-hparams").is_file(),
            "{}",
            d.display()
        );
    }
    assert!(tb.join("events.out.tfevents.1.pipe-hparams").is_file());
    // `pipe show` lists the six runs with the script's family.
    let show: serde_json::Value =
        serde_json::from_str(&p.ok(&["show", "--format", "json"]).stdout).unwrap();
    let rows = show.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{show}");
    assert!(rows.iter().all(|r| r["family"] == "torch-mlp"), "{show}");
    // `diff` compares two of them: the field and the results.
    let d = p
        .ok(&["diff", "torch:mlp", "torch:mlp[env.MOMENTUM=\"0.5\"]"])
        .stdout;
    assert!(d.contains("env.MOMENTUM  \"0.9\"  \"0.5\""), "{d}");
    assert!(
        d.contains("results: one seed each") && d.contains("best validation accuracy"),
        "{d}"
    );

    // The script is a dependency: untouched, nothing reruns; edited, every run and the report.
    assert_eq!(p.build(&["reports/momentum.md"]), Vec::<String>::new());
    let explain = p.ok(&["explain", "torch:mlp"]);
    assert!(explain.stdout.contains("fresh"), "{explain:?}");
    p.edit("scripts/train.py", "import copy", "import copy  # edited");
    let explain = p.ok(&["explain", "torch:mlp"]);
    assert!(
        explain
            .stdout
            .contains("dependency changed: scripts/train.py"),
        "{explain:?}"
    );
    // Every run retrains; a comment changes no number, and the script is seeded: each run
    // writes the bytes it wrote before, so the report, keyed by them, stays as it is.
    assert_eq!(p.build(&["reports/momentum.md"]), sorted(&runs));
    assert_eq!(
        std::fs::read(p.outputs("torch:mlp").join("metrics.jsonl")).unwrap(),
        a
    );
}

/// A command a report gathers that leaves out a run's file is named, with the file missing
/// and where the contract is written; one whose file does not parse, with the file and line.
#[test]
fn a_command_whose_run_files_are_wrong_is_told_which_file() {
    let p = Project::new();
    let pipeline = |run: &str| {
        format!(
            r#"Pipeline(stages: [
                (name: "mine", kind: "command", config: (run: {run:?})),
                (name: "report", kind: "report", inputs: ["mine"], target: "reports/mine.md"),
            ])"#
        )
    };
    p.write(
        "pipelines/t.ron",
        &pipeline("echo '{\"epoch\": 1}' > summary.json"),
    );
    let r = p.pipe(&["build", "reports/mine.md"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("FAILED  t:report: `t:mine` has no metrics.jsonl")
            && r.stdout
                .contains("metrics.jsonl, summary.json, evaluation.json")
            && r.stdout.contains("Your own training script"),
        "{r:?}"
    );
    p.write(
        "pipelines/t.ron",
        &pipeline("printf '{\"epoch\": 1, \"train_loss\": 2.0, \"train_acc\": 0.1, \"val_loss\": null, \"val_acc\": null, \"lr\": 0.1}\\n{\"epoch\": 2}\\n' > metrics.jsonl"),
    );
    let r = p.pipe(&["build", "reports/mine.md"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("`t:mine`: metrics.jsonl:2: missing field `train_loss`"),
        "{r:?}"
    );
}
