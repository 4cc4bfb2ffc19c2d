//! Orchestration overhead of the real `pipe` binary on a generated study with N variants of
//! the instant `fake` kind (default 500): first build, no-op rebuild, status, and the rebuild
//! after editing one variant. Prints medians; gates nothing.
//!
//! `cargo bench --bench noop_build` (set `PIPE_BENCH_VARIANTS` or `PIPE_BENCH_RUNS` to change
//! the size or the number of timed runs).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn pipeline(n: usize, last: f64) -> String {
    let mut lrs: Vec<String> = (1..n).map(|i| format!("{:.6}", i as f64 * 1e-4)).collect();
    lrs.push(format!("{last:.6}"));
    format!(
        r#"Pipeline(
    description: "generated: {n} variants",
    stages: [
        (name: "data", kind: "fake", config: (value: "dataset")),
        (name: "train", kind: "fake", inputs: ["data"], config: (optimizer: (lr: 0.5, momentum: 0.9)),
         vary: {{"optimizer.lr": [{}]}}),
        (name: "eval", kind: "fake", inputs: ["train", "data"]),
        (name: "report", kind: "fake_gather", inputs: ["eval"], target: "reports/bench.md"),
    ],
)
"#,
        lrs.join(", ")
    )
}

fn pipe(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run pipe");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "pipe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let n: usize = std::env::var("PIPE_BENCH_VARIANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let runs: usize = std::env::var("PIPE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    let file = dir.path().join("pipelines/bench.ron");
    std::fs::write(&file, pipeline(n, 0.9)).unwrap();

    let first = pipe(dir.path(), &["build"]);
    let noop = median((0..runs).map(|_| pipe(dir.path(), &["build"])).collect());
    let status = median((0..runs).map(|_| pipe(dir.path(), &["status"])).collect());
    let mut edits = Vec::new();
    let mut dry = Vec::new();
    for i in 0..runs.min(11) {
        std::fs::write(&file, pipeline(n, 0.8 - i as f64 * 0.01)).unwrap();
        dry.push(pipe(dir.path(), &["build", "--dry-run"]));
        edits.push(pipe(dir.path(), &["build"]));
    }
    let nodes = 2 + 2 * n;
    println!("pipe orchestration overhead, {n} variants ({} stages), fake stage kind, median of {runs} runs", nodes + 1);
    println!("| measurement | time |");
    println!("|---|---|");
    println!("| first build (every stage runs) | {} |", ms(first));
    println!("| no-op `pipe build` (everything fresh) | {} |", ms(noop));
    println!("| `pipe status` | {} |", ms(status));
    println!(
        "| `pipe build --dry-run` after editing one variant | {} |",
        ms(median(dry))
    );
    println!(
        "| `pipe build` after editing one variant (3 stages rerun) | {} |",
        ms(median(edits))
    );
}
