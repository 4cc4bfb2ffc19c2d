//! Training throughput and test accuracy of every model family on the genuine CIFAR-10
//! sample (`../shared/data/cifar-10-sample`: 4170 training images after a 1000-image
//! validation split, 1017 test images), through the real `pipe` binary. Prints a table;
//! gates nothing. `cargo bench --bench train` (`PIPE_BENCH_EPOCHS` to change the budget,
//! `PIPE_DEVICE=cuda` to run on a GPU).

use std::path::Path;
use std::process::Command;

const FAMILIES: &[(&str, &str, usize)] = &[
    ("linear", "Linear()", 256),
    ("perceptron (seed)", "Perceptron(hidden: 3072)", 32),
    ("mlp 512-512", "Mlp(hidden: [512, 512])", 256),
    ("convnet 32-64", "ConvNet()", 128),
    ("resnet-20", "ResNet(depth: 20)", 128),
    ("highway 10×512", "Highway()", 256),
    ("lstm 128 (rows)", "Rnn(cell: Lstm, hidden: 128)", 128),
];

fn main() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cifar-10-sample");
    assert!(
        sample.join("test_batch.bin").exists(),
        "needs the genuine sample at {}",
        sample.display()
    );
    let epochs: usize = std::env::var("PIPE_BENCH_EPOCHS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    let mut stages = format!(
        r#"(name: "cifar10", kind: "download", config: (source: Local({:?}))),
           (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 1000)),"#,
        sample.canonicalize().unwrap()
    );
    for (i, (_, model, batch)) in FAMILIES.iter().enumerate() {
        stages.push_str(&format!(
            r#"(name: "t{i}", kind: "train", inputs: ["data"], config: (model: {model}, epochs: {epochs}, batch_size: {batch}, optimizer: (lr: 0.01, momentum: 0.9))),
               (name: "e{i}", kind: "evaluate", inputs: ["t{i}", "data"]),"#
        ));
    }
    std::fs::write(
        root.join("pipelines/b.ron"),
        format!("Pipeline(stages: [{stages}])"),
    )
    .unwrap();
    let pipe = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .current_dir(root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pipe {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let output = |stage: &str, file: &str| -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&pipe(&["status", "--json", stage])).unwrap();
        let key = status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == stage)
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string();
        let entry: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join(format!("cache/entries/{}/{key}.json", &key[..2]))).unwrap(),
        )
        .unwrap();
        let o = entry["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["path"] == file)
            .unwrap();
        let h = o["hash"].as_str().unwrap();
        serde_json::from_slice(
            &std::fs::read(root.join(format!("cache/objects/{}/{h}", &h[..2]))).unwrap(),
        )
        .unwrap()
    };
    println!("training on the genuine sample, {epochs} epoch(s), SGD lr 0.01 momentum 0.9, x/256");
    println!("| family | parameters | batch | backend | train images/s | test accuracy (final) |");
    println!("|---|---|---|---|---|---|");
    for (i, (name, _, batch)) in FAMILIES.iter().enumerate() {
        pipe(&["build", &format!("b:e{i}")]);
        let s = output(&format!("b:t{i}"), "summary.json");
        let e = output(&format!("b:e{i}"), "evaluation.json");
        println!(
            "| {name} | {} | {batch} | {} | {:.0} | {:.3} |",
            s["parameters"],
            s["backend"].as_str().unwrap(),
            s["train_images_per_second"].as_f64().unwrap(),
            e["final"]["accuracy"].as_f64().unwrap()
        );
    }
}
