//! Training for real, through the binary, on tiny synthetic data with a learnable pattern:
//! every family learns, runs are bit-reproducible, a killed run resumes to the same bits,
//! divergence is recorded without failing siblings, and bad hyperparameters are refused.

mod util;

use std::path::{Path, PathBuf};

use util::{learnable, Project};

fn project(per_file: usize, validation: usize, stages: &str) -> Project {
    let p = Project::new();
    learnable(&p.path().join("src-data"), per_file, 100);
    p.write(
        "pipelines/t.ron",
        &format!(
            r#"Pipeline(stages: [
                (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
                (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: {validation})),
                {stages}
            ])"#
        ),
    );
    p
}

/// The output folder of `stage`'s current cache entry, materialized.
fn output(p: &Project, stage: &str) -> PathBuf {
    p.outputs(stage)
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
fn every_family_learns_a_learnable_task() {
    let families = [
        ("linear", "Linear()", 8),
        ("perceptron", "Perceptron(hidden: 64)", 8),
        (
            "mlp",
            "Mlp(hidden: [64, 32], dropout: [0.1], batch_norm: true)",
            8,
        ),
        (
            "convnet",
            "ConvNet(blocks: [(filters: 8), (filters: 8, batch_norm: true)], dense: [32])",
            6,
        ),
        ("resnet", "ResNet(depth: 8, width: 4)", 4),
        ("highway", "Highway(depth: 3, width: 64)", 8),
        ("lstm", "Rnn(cell: Lstm, hidden: 32)", 6),
        ("gru", "Rnn(cell: Gru, hidden: 32, bidirectional: true)", 6),
        ("simple", "Rnn(cell: Simple, hidden: 32, read: Columns)", 6),
    ];
    let mut stages = String::new();
    for (name, model, epochs) in families {
        stages.push_str(&format!(
            r#"(name: "{name}", kind: "train", inputs: ["data"], config: (model: {model}, epochs: {epochs}, batch_size: 16, optimizer: (kind: Adam, lr: 0.003))),
               (name: "{name}_eval", kind: "evaluate", inputs: ["{name}", "data"]),"#
        ));
    }
    let p = project(60, 50, &stages);
    let targets: Vec<String> = families
        .iter()
        .map(|(n, _, _)| format!("t:{n}_eval"))
        .collect();
    let mut args = vec!["build", "-k"];
    args.extend(targets.iter().map(String::as_str));
    p.ok(&args);
    for (name, _, _) in families {
        let m = metrics(&output(&p, &format!("t:{name}")));
        let (first, last) = (
            m[0]["train_loss"].as_f64().unwrap(),
            m.last().unwrap()["train_loss"].as_f64().unwrap(),
        );
        assert!(last < first, "{name}: loss fell ({first} → {last})");
        let e = json(output(&p, &format!("t:{name}_eval")).join("evaluation.json"));
        let acc = e["final"]["accuracy"].as_f64().unwrap();
        assert!(
            acc > 0.3,
            "{name}: test accuracy {acc} is above chance (0.1)"
        );
        let confusion = e["final"]["confusion"].as_array().unwrap();
        let total: u64 = confusion
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            total, 100,
            "{name}: every test image is in the confusion matrix"
        );
    }
}

/// With batch norm: its running statistics are saved with the weights, ids included.
const MLP: &str = r#"(name: "mlp", kind: "train", inputs: ["data"],
    config: (model: Mlp(hidden: [256], dropout: [0.3], batch_norm: true), epochs: EPOCHS, batch_size: 32,
             optimizer: (lr: 0.02, momentum: 0.9), seed: 7))"#;

#[test]
fn the_same_config_and_seed_give_identical_weights_and_metrics_in_two_processes() {
    let run = || {
        let p = project(40, 20, &MLP.replace("EPOCHS", "3"));
        p.ok(&["build", "t:mlp"]);
        let dir = output(&p, "t:mlp");
        (
            metrics(&dir),
            std::fs::read(dir.join("model.bin")).unwrap(),
            std::fs::read(dir.join("best.bin")).unwrap(),
            p,
        )
    };
    let (m1, w1, b1, _p1) = run();
    let (m2, w2, b2, _p2) = run();
    assert_eq!(m1, m2);
    assert!(w1 == w2, "final weights are bit-identical");
    assert!(b1 == b2, "best weights are bit-identical");
}

/// A project whose `t:mlp` training was killed (SIGKILL) once it had checkpointed at least
/// 3 epochs, and the epochs it had done.
fn killed_after_a_checkpoint(stages: &str) -> (Project, u64) {
    let p = project(200, 50, stages);
    p.ok(&["build", "t:data"]);
    let mut child = p
        .cmd(&["build", "t:mlp"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let done = util::wait_for_progress(
        &p.path().join("cache/scratch"),
        "state.json",
        |s| serde_json::from_str::<serde_json::Value>(s).ok()?["epochs_done"].as_u64(),
        3,
        120,
        "training never checkpointed",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    (p, done)
}

#[test]
fn a_killed_run_resumes_and_ends_bitwise_identical_to_an_uninterrupted_one() {
    let stages = MLP.replace("EPOCHS", "40");
    let whole = project(200, 50, &stages);
    whole.ok(&["build", "t:mlp"]);
    let reference = output(&whole, "t:mlp");

    let (p, done) = killed_after_a_checkpoint(&stages);
    assert!(done < 40, "killed before the end (after epoch {done})");
    let r = p.ok(&["build", "t:mlp"]);
    assert!(r.stdout.contains("resumed after epoch"), "{r:?}");
    let resumed = output(&p, "t:mlp");
    // Every output byte for byte (floats in metrics.jsonl round-trip through the checkpoint),
    // the run's times under volatile/ aside.
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                (rel, std::fs::read(e.path()).unwrap())
            })
            .filter(|(rel, _)| !rel.starts_with("volatile/"))
            .collect()
    };
    let (got, want) = (files(&resumed), files(&reference));
    assert_eq!(
        got.iter().map(|f| &f.0).collect::<Vec<_>>(),
        want.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{name} differs after the resume");
    }
    assert!(
        json(resumed.join("volatile/timing.json"))["resumed_from_epoch"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

/// Retraining to the same bytes is an early cutoff: the run's times live under
/// `volatile/`, outside what the evaluation keys on, so it stays fresh.
#[test]
fn a_forced_retrain_with_identical_weights_leaves_the_evaluation_fresh() {
    let p = project(
        40,
        20,
        r#"(name: "m", kind: "train", inputs: ["data"], config: (model: Mlp(hidden: [16]), epochs: 2, batch_size: 16)),
           (name: "m_eval", kind: "evaluate", inputs: ["m", "data"]),"#,
    );
    p.ok(&["build", "t:m_eval"]);
    let first = output(&p, "t:m");
    let metrics_text = std::fs::read_to_string(first.join("metrics.jsonl")).unwrap();
    assert!(!metrics_text.contains("seconds"), "{metrics_text}");
    let timing = json(first.join("volatile/timing.json"));
    assert_eq!(timing["epoch_seconds"].as_array().unwrap().len(), 2);
    p.take_runs();
    p.ok(&["build", "--force", "t:m", "t:m_eval"]);
    assert_eq!(p.ran(), ["t:m"], "only the forced stage ran");
    let again = output(&p, "t:m");
    for f in [
        "model.bin",
        "best.bin",
        "metrics.jsonl",
        "summary.json",
        "config.json",
    ] {
        assert!(
            std::fs::read(again.join(f)).unwrap() == std::fs::read(first.join(f)).unwrap(),
            "{f} differs after retraining"
        );
    }
    let status = p.ok(&["status", "t:m_eval"]).stdout;
    assert!(status.contains("0 stale"), "{status}");
}

#[test]
fn a_diverging_variant_is_recorded_and_its_siblings_go_on() {
    let p = project(
        20,
        10,
        r#"(name: "lin", kind: "train", inputs: ["data"], config: (model: Linear(), epochs: 3), vary: {"optimizer.lr": [1e38]}),
           (name: "eval", kind: "evaluate", inputs: ["lin", "data"]),"#,
    );
    let r = p.ok(&["build", "t:eval"]);
    assert!(r.stdout.contains("DIVERGED at epoch 1"), "{r:?}");
    let diverged = json(output(&p, "t:lin[optimizer.lr=1e38]").join("summary.json"));
    assert_eq!(diverged["diverged_at_epoch"], 1);
    assert_eq!(
        json(output(&p, "t:lin").join("summary.json"))["epochs_run"],
        3,
        "the base trained on"
    );
    let e = json(output(&p, "t:eval[optimizer.lr=1e38]").join("evaluation.json"));
    assert_eq!(e["diverged_at_epoch"], 1);
}

#[test]
fn invalid_hyperparameters_are_refused_at_load_time_naming_the_field() {
    let cases = [
        (
            "optimizer: (lr: 0.0)",
            "stages[2].config.optimizer.lr: learning rate must be > 0, got 0",
        ),
        (
            "optimizer: (momentum: 1.0)",
            "stages[2].config.optimizer.momentum: momentum must be in [0, 1), got 1",
        ),
        (
            "batch_size: 0",
            "stages[2].config.batch_size: batch size must be at least 1",
        ),
        (
            "model: Mlp(dropout: [1.0])",
            "stages[2].config.model.dropout[0]: dropout must be in [0, 1), got 1",
        ),
        ("model: Mlp(activation: Relu6)", "unknown variant `Relu6`"),
        ("model: ResNet(depth: 21)", "depth 21 is not 6n + 2"),
        (
            "initializer: Uniform(0.5, 0.1)",
            "stages[2].config.initializer: Uniform(0.5, 0.1): min must be below max",
        ),
        (
            "bias_initializer: Orthogonal",
            "stages[2].config.bias_initializer: Orthogonal needs a matrix",
        ),
        (
            "initializer: Normal(0.0, NaN)",
            "stages[2].config.initializer[1]: `initializer[1]` is not a finite number",
        ),
        (
            "optimizer: (kind: Adam, epsilon: NaN)",
            "`optimizer.epsilon` is not a finite number",
        ),
        (
            "schedule: Step(every: 2, gamma: inf)",
            "`schedule.gamma` is not a finite number",
        ),
        (
            "model: Mlp(hidden: [4294967295])",
            "stages[2].config.model: the model would take about",
        ),
        (
            "model: Mlp(hidden: [100000, 100000])",
            "over the 64 GB limit",
        ),
    ];
    for (field, expected) in cases {
        let config = if field.starts_with("model:") {
            field.to_string()
        } else {
            format!("model: Linear(), {field}")
        };
        let p = project(
            2,
            1,
            &format!(r#"(name: "x", kind: "train", inputs: ["data"], config: ({config})),"#),
        );
        let r = p.pipe(&["build", "t:x"]);
        assert_eq!(r.code, 2, "{field}: {r:?}");
        assert!(
            r.stderr.contains(expected),
            "{field}: expected {expected:?} in\n{r:?}"
        );
        assert!(
            r.stderr.contains("pipelines/t.ron:4:"),
            "{field}: positioned\n{r:?}"
        );
    }
}

#[test]
fn varying_a_model_field_trains_one_model_per_value() {
    let p = project(
        10,
        5,
        r#"(name: "m", kind: "train", inputs: ["data"], config: (model: Mlp(hidden: [16]), epochs: 1),
            vary: {"model.activation": [Tanh], "model.hidden": [[8, 8]]}),"#,
    );
    let list: serde_json::Value = serde_json::from_str(&p.ok(&["list", "--json"]).stdout).unwrap();
    let nodes: Vec<&str> = list["stages"][2]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "t:m",
            "t:m[model.activation=Tanh]",
            "t:m[model.hidden=[8,8]]"
        ]
    );
    p.ok(&["build", "t:m"]);
    assert_eq!(p.ran().len(), 5);
}

#[test]
fn asking_for_cuda_without_a_gpu_is_a_clear_error_and_cpu_is_keyed_apart() {
    let p = project(
        10,
        5,
        r#"(name: "lin", kind: "train", inputs: ["data"], config: (model: Linear(), epochs: 1)),"#,
    );
    // This test machine has no GPU (CI never does); where one exists, skip the first half.
    if !pipe::train::device::cuda_usable() {
        let r = p.pipe(&["--device", "cuda", "build", "t:lin"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout
                .contains("no usable CUDA GPU and driver were found"),
            "{r:?}"
        );
    }
    p.ok(&["--device", "cpu", "build", "t:lin"]);
    let out = p.ok(&["explain", "t:lin"]).stdout;
    assert!(out.contains("t:lin: fresh"), "{out}");
    assert_eq!(
        json(output(&p, "t:lin").join("summary.json"))["backend"],
        "flex-cpu"
    );
}

/// Every kernel initializer on every family (dense, convolution, residual with batch
/// norm, highway, and the three recurrent cells' input and recurrent kernels), and every
/// bias initializer that has a vector form: one epoch each, finite loss, saved weights.
#[test]
fn every_initializer_trains_every_family() {
    let inits = [
        "GlorotUniform",
        "GlorotNormal",
        "HeUniform",
        "HeNormal",
        "LecunUniform",
        "LecunNormal",
        "Orthogonal",
        "Zeros",
        "Ones",
        "Constant(0.05)",
        "Uniform(-0.05, 0.05)",
        "Normal(0.0, 0.05)",
    ];
    let families = [
        ("linear", "Linear()"),
        ("perceptron", "Perceptron(hidden: 16)"),
        ("mlp", "Mlp(hidden: [16, 8], batch_norm: true)"),
        (
            "convnet",
            "ConvNet(blocks: [(filters: 4), (filters: 4, batch_norm: true)], dense: [8])",
        ),
        ("resnet", "ResNet(depth: 8, width: 4)"),
        ("highway", "Highway(depth: 2, width: 16)"),
        ("lstm", "Rnn(cell: Lstm, hidden: 8)"),
        ("gru", "Rnn(cell: Gru, hidden: 8, bidirectional: true)"),
        ("simple", "Rnn(cell: Simple, hidden: 8, layers: 2)"),
    ];
    let list = inits.join(", ");
    let biases = inits
        .iter()
        .filter(|i| **i != "Orthogonal")
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let mut stages = String::new();
    for (name, model) in families {
        stages.push_str(&format!(
            r#"(name: "{name}", kind: "train", inputs: ["data"], config: (model: {model}, epochs: 1, batch_size: 10),
                vary: {{"initializer": [{list}]}}),
               (name: "{name}_bias", kind: "train", inputs: ["data"], config: (model: {model}, epochs: 1, batch_size: 10),
                vary: {{"bias_initializer": [{biases}]}}),"#
        ));
    }
    let p = project(4, 10, &stages);
    let targets: Vec<String> = families
        .iter()
        .flat_map(|(n, _)| [format!("t:{n}"), format!("t:{n}_bias")])
        .collect();
    let mut args = vec!["build", "-k"];
    args.extend(targets.iter().map(String::as_str));
    p.ok(&args);
    let mut checked = 0;
    for (name, _) in families {
        for (stage, field, values) in [
            (name.to_string(), "initializer", inits.to_vec()),
            (
                format!("{name}_bias"),
                "bias_initializer",
                inits
                    .iter()
                    .filter(|i| **i != "Orthogonal")
                    .copied()
                    .collect(),
            ),
        ] {
            for init in values {
                // The value equal to the base config is the base variant.
                let variant = match (field, init) {
                    ("initializer", "GlorotUniform") | ("bias_initializer", "Zeros") => {
                        format!("t:{stage}")
                    }
                    _ => format!("t:{stage}[{field}={}]", init.replace(", ", ",")),
                };
                let dir = output(&p, &variant);
                let m = metrics(&dir);
                let loss = m[0]["train_loss"].as_f64();
                assert!(
                    loss.is_some_and(f64::is_finite),
                    "{variant}: a finite loss after one epoch, got {:?}",
                    m[0]["train_loss"]
                );
                assert!(dir.join("model.bin").is_file(), "{variant}: weights saved");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * (12 + 11));
}

/// The disk fills while a model trains: the build exits 3 with a plain message naming the
/// file it could not write (not burn's Debug text), no entry is written for the stage, and
/// once there is room the next build trains it.
#[test]
fn a_full_disk_during_training_exits_3_naming_the_file_and_the_next_build_recovers() {
    let p = project(
        40,
        20,
        r#"(name: "lin", kind: "train", inputs: ["data"], config: (model: Linear(), epochs: 2, batch_size: 32, optimizer: (lr: 0.01, momentum: 0.9)))"#,
    );
    let r = util::in_mount_namespace(
        &p,
        r#"mkdir -p cache && mount -t tmpfs -o size=32m tmpfs cache || exit 90
"$PIPE" build t:data >/dev/null || exit 91
dd if=/dev/zero of=cache/filler bs=64k 2>/dev/null
"$PIPE" build t:lin
echo "exit=$?"
"$PIPE" status t:lin
rm cache/filler
"$PIPE" build t:lin || exit 92
"#,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (full, after) = r.stdout.split_once("exit=").unwrap();
    assert!(after.starts_with("3\n"), "{r:?}");
    assert!(full.contains("No space left on device"), "{r:?}");
    assert!(
        full.contains("cannot write") && full.contains("/cache/"),
        "names the file: {r:?}"
    );
    for debug in ["Os {", "Unknown(", "code: 28"] {
        assert!(
            !r.stdout.contains(debug) && !r.stderr.contains(debug),
            "{debug}: {r:?}"
        );
    }
    assert!(
        after.contains("stale  t:lin"),
        "nothing of the failed run is served: {r:?}"
    );
    assert!(after.contains("1 built, 2 fresh, 0 failed"), "{r:?}");
}

/// The weights are the same bytes on 1, 2 and 3 threads, for every family and the options
/// that take their own code paths: the thread count is not in the key, so a result from a
/// laptop and from a 64-core node must be one cache entry. Batches of 48 split over the
/// threads unevenly (LSTM shares, image chunks, matrix halves).
#[test]
fn every_family_trains_to_the_same_bytes_on_1_2_and_3_threads() {
    let families = util::FAMILIES;
    let mut stages = String::new();
    for (name, model) in families {
        stages.push_str(&format!(
            r#"(name: "{name}", kind: "train", inputs: ["data"], config: (model: {model}, epochs: 2, batch_size: 48, optimizer: (lr: 0.01, momentum: 0.9), seed: 5)),"#
        ));
    }
    let targets: Vec<String> = families.iter().map(|(n, _)| format!("t:{n}")).collect();
    let weights = |threads: &str| {
        let p = project(60, 20, &stages);
        // -j 3: a training gets at most -j cores, and this machine may have two.
        let mut args = vec!["build", "-j", "3", "--threads", threads];
        args.extend(targets.iter().map(String::as_str));
        p.ok(&args);
        families
            .iter()
            .map(|(name, _)| {
                let log = p.ok(&["log", &format!("t:{name}")]).stdout;
                let on = format!("on {threads} CPU thread");
                assert!(log.contains(&on), "{name} trained {on}s: {log}");
                let dir = output(&p, &format!("t:{name}"));
                (
                    name.to_string(),
                    std::fs::read(dir.join("model.bin")).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let one = weights("1");
    for threads in ["2", "3"] {
        for ((name, a), (_, b)) in one.iter().zip(weights(threads)) {
            assert!(
                *a == b,
                "{name}: model.bin differs between 1 and {threads} threads"
            );
        }
    }
}

/// `bench/train.py`, the documented training benchmark, runs against this build's binary
/// (one family, one epoch, PyTorch's side left out: CI has no PyTorch), so it cannot rot
/// unnoticed as it did when the timings moved to `volatile/timing.json`.
#[test]
fn the_training_benchmark_script_runs_and_reports_its_figures() {
    let p = Project::new();
    let data = p.path().join("src-data");
    learnable(&data, 500, 100);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/train.py");
    let out_json = p.path().join("bench.json");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--pipe", util::bin(), "--no-torch", "--families", "linear"])
        .args(["--epochs", "1", "--threads", "1", "--data"])
        .arg(&data)
        .arg("--workdir")
        .arg(p.path().join("work"))
        .arg("--out")
        .arg(&out_json)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("| linear | 256 | 10 |")),
        "a table row for the linear model: {stdout}"
    );
    let r = json(out_json);
    let linear = &r["results"][0]["pipe"];
    assert!(
        linear["train_images_per_second"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert_eq!(linear["threads"], 1, "{r}");
    assert!(r["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
}

#[test]
fn a_damaged_checkpoint_is_named_by_verify_and_discarded_not_resumed() {
    let stages = MLP.replace("EPOCHS", "40");
    let whole = project(200, 50, &stages);
    whole.ok(&["build", "t:mlp"]);
    let reference = output(&whole, "t:mlp");

    let (p, _) = killed_after_a_checkpoint(&stages);
    // One byte of the checkpointed weights flipped in place, size and mtime kept.
    let model = walkdir::WalkDir::new(p.path().join("cache/scratch"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|f| f.ends_with("checkpoint/model.bin"))
        .expect("a checkpoint");
    let meta = std::fs::metadata(&model).unwrap();
    let mut bytes = std::fs::read(&model).unwrap();
    let at = bytes.len() - 9;
    bytes[at] ^= 0x10;
    std::fs::write(&model, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&model).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    let v = p.pipe(&["verify"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout
            .contains("damaged checkpoint: model.bin is damaged"),
        "{v:?}"
    );
    let r = p.ok(&["build", "t:mlp"]);
    assert!(
        r.stdout
            .contains("checkpoint discarded, training from the start: model.bin is damaged"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("resumed after epoch"), "{r:?}");
    // From the start, it ends where an uninterrupted run ends.
    let got = output(&p, "t:mlp");
    for f in ["model.bin", "best.bin", "metrics.jsonl", "summary.json"] {
        assert!(
            std::fs::read(got.join(f)).unwrap() == std::fs::read(reference.join(f)).unwrap(),
            "{f} differs from the uninterrupted run"
        );
    }
    assert_eq!(p.ok(&["verify"]).code, 0);
}
