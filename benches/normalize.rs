//! Normalize speed on data of the full CIFAR-10 size (50,000 training + 10,000 test
//! images, synthetic, in the official binary layout): the stage's own work, and a whole
//! `pipe build` of download (local copy) + normalize including the cache's hashing and
//! storing. `cargo bench --bench normalize`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pipe::dataset::{RECORD_BYTES, TEST_FILE, TRAIN_FILES};
use pipe::rng::SplitMix64;
use pipe::stages::normalize::{normalize, NormalizeConfig, Scaling};

fn write_full_size(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SplitMix64::new(42);
    for name in TRAIN_FILES.iter().copied().chain([TEST_FILE]) {
        let mut bytes = vec![0u8; 10_000 * RECORD_BYTES];
        for rec in bytes.chunks_exact_mut(RECORD_BYTES) {
            rec[0] = rng.below(10) as u8;
            for chunk in rec[1..].chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
        }
        assert_eq!(bytes.len() % RECORD_BYTES, 0);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let runs = 5;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("cifar-10-batches-bin");
    write_full_size(&src);
    println!("normalize, 50,000 + 10,000 synthetic images of full size, median of {runs} runs");
    println!("| measurement | time |");
    println!("|---|---|");
    for scaling in [Scaling::Div256, Scaling::Standardize] {
        let cfg = NormalizeConfig {
            validation: 5000,
            scaling,
            train_subset: None,
            seed: 0,
            allow_small_train: false,
        };
        let times: Vec<Duration> = (0..runs)
            .map(|i| {
                let out = tmp.path().join(format!("out-{scaling:?}-{i}"));
                std::fs::create_dir_all(&out).unwrap();
                let t = Instant::now();
                normalize(&src, &out, &cfg).unwrap();
                let d = t.elapsed();
                std::fs::remove_dir_all(&out).unwrap();
                d
            })
            .collect();
        println!(
            "| normalize stage, validation 5000, {scaling:?} | {} |",
            ms(median(times))
        );
    }
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("pipelines")).unwrap();
    std::fs::write(
        project.join("pipelines/data.ron"),
        format!(
            r#"Pipeline(stages: [
                (name: "cifar10", kind: "download", config: (source: Local({src:?}))),
                (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 5000)),
            ])"#
        ),
    )
    .unwrap();
    let pipe = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .current_dir(&project)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        t.elapsed()
    };
    let full: Vec<Duration> = (0..3)
        .map(|_| {
            let _ = std::fs::remove_dir_all(project.join("cache"));
            pipe(&["build", "data:data"])
        })
        .collect();
    let normalize_only: Vec<Duration> = (0..3)
        .map(|_| pipe(&["build", "--force", "data:data", "data:data"]))
        .collect();
    let noop: Vec<Duration> = (0..runs).map(|_| pipe(&["build", "data:data"])).collect();
    println!("| `pipe build`: copy the local set into the cache + normalize + store (cold cache, median of 3) | {} |", ms(median(full)));
    println!("| `pipe build --force data:data`: normalize + hash and store its outputs (median of 3) | {} |", ms(median(normalize_only)));
    println!(
        "| no-op `pipe build` (180 MB input re-checked through the memo) | {} |",
        ms(median(noop))
    );
}
