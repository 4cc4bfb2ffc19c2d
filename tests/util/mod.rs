//! Test harness: a temporary project and the real `pipe` binary run inside it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pipe::dataset::{IMAGE_BYTES, RECORD_BYTES, TEST_FILE, TRAIN_FILES};
use pipe::rng::SplitMix64;

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pipe")
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// Replaces `from` (which must occur) by `to` in a project file.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path())
            .args(args)
            .env_remove("PIPE_CACHE")
            .env_remove("PIPE_GPUS");
        c
    }

    pub fn pipe(&self, args: &[&str]) -> Run {
        Run::from_output(self.cmd(args).output().expect("run pipe"))
    }

    /// Runs pipe and insists on success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.pipe(args);
        assert_eq!(r.code, 0, "pipe {args:?} failed:\n{r:?}");
        r
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("cache/log/runs.jsonl")
    }

    /// Every execution-log record so far, then empties the log.
    pub fn take_runs(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let _ = std::fs::write(self.log_path(), "");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    /// Stage ids that ran since the last call, sorted.
    pub fn ran(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .take_runs()
            .iter()
            .map(|r| r["stage"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    /// The files of `stage`'s current cache entry, copied out to a folder of their own.
    pub fn outputs(&self, stage: &str) -> PathBuf {
        let status: serde_json::Value =
            serde_json::from_str(&self.ok(&["status", "--json", stage]).stdout).unwrap();
        let row = status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == stage)
            .unwrap_or_else(|| panic!("{stage} in {status}"));
        let key = row["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{stage} is built: {row}"));
        let entry: serde_json::Value =
            serde_json::from_str(&self.read(&format!("cache/entries/{}/{key}.json", &key[..2])))
                .unwrap();
        let dir = self
            .path()
            .join("out")
            .join(stage.replace([':', '[', ']', '"', '='], "_"));
        for o in entry["outputs"].as_array().unwrap() {
            let h = o["hash"].as_str().unwrap();
            let to = dir.join(o["path"].as_str().unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(
                self.path().join(format!("cache/objects/{}/{h}", &h[..2])),
                to,
            )
            .unwrap();
        }
        dir
    }

    /// Runs `pipe build ARGS` and returns the stages that ran.
    pub fn build(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["build"];
        a.extend_from_slice(args);
        self.ok(&a);
        self.ran()
    }
}

pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// CIFAR-10 binary files where class c lights up rows 3c..3c+3 of channel c mod 3 over
/// faint noise: easy for every family, impossible by chance.
pub fn learnable(dir: &Path, per_file: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SplitMix64::new(1);
    let files: Vec<&str> = TRAIN_FILES.iter().copied().chain([TEST_FILE]).collect();
    for (f, name) in files.iter().enumerate() {
        let n = if f == 5 { test } else { per_file };
        let mut bytes = Vec::with_capacity(n * RECORD_BYTES);
        for _ in 0..n {
            let c = rng.below(10);
            bytes.push(c as u8);
            let mut img: Vec<u8> = (0..IMAGE_BYTES).map(|_| rng.below(60) as u8).collect();
            let plane = (c % 3) * 1024;
            for row in 3 * c..3 * c + 3 {
                for col in 0..32 {
                    img[plane + row * 32 + col] = 200 + rng.below(56) as u8;
                }
            }
            bytes.extend(img);
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The first file named `name` under `dir`.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    files_under(dir)
        .into_iter()
        .find(|f| f.file_name().is_some_and(|n| n == name))
}

/// Polls a running stage's progress: waits until the file `name` under `dir` reads as a
/// value of at least `min` (through `parse`), and returns it. Panics with `what` after
/// `timeout` seconds.
pub fn wait_for_progress(
    dir: &Path,
    name: &str,
    parse: impl Fn(&str) -> Option<u64>,
    min: u64,
    timeout: u64,
    what: &str,
) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let value = find(dir, name)
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| parse(&s));
        if let Some(v) = value.filter(|&v| v >= min) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Runs `script` with `sh` in a mount namespace of its own (`unshare -rm`: as root, or as
/// any user where user namespaces are allowed), so it can mount a small or read-only file
/// system over the project's cache without touching the machine's. `$PIPE` is the binary,
/// and the script starts in the project.
pub fn in_mount_namespace(p: &Project, script: &str) -> Run {
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &format!("set -u\ncd \"$P\"\n{script}")])
        .env("PIPE", bin())
        .env("P", p.path())
        .env_remove("PIPE_CACHE")
        .env_remove("PIPE_GPUS")
        .output()
        .expect("unshare (util-linux) runs");
    Run::from_output(out)
}

/// One model of each family, recurrent cells and the options that take their own code
/// paths (batch norm, dropout, bidirectional, columns) included.
pub const FAMILIES: [(&str, &str); 10] = [
    ("linear", "Linear()"),
    ("perceptron", "Perceptron(hidden: 64, activation: Tanh)"),
    (
        "mlp",
        "Mlp(hidden: [64, 32], dropout: [0.1], batch_norm: true)",
    ),
    (
        "convnet",
        "ConvNet(blocks: [(filters: 8), (filters: 8, batch_norm: true)], dense: [32])",
    ),
    ("resnet", "ResNet(depth: 8, width: 4)"),
    ("highway", "Highway(depth: 3, width: 64)"),
    ("lstm", "Rnn(cell: Lstm, hidden: 32)"),
    ("gru", "Rnn(cell: Gru, hidden: 16, bidirectional: true)"),
    ("simple", "Rnn(cell: Simple, hidden: 16, read: Columns)"),
    ("lstm2", "Rnn(cell: Lstm, hidden: 16, layers: 2)"),
];

/// Whether python3 can import `module`. Where it cannot, the test says so and passes,
/// unless `require` is set (CI sets `PIPE_REQUIRE_TENSORBOARD`, `PIPE_REQUIRE_HTML5LIB` and
/// `PIPE_REQUIRE_TORCH` after installing the packages).
pub fn python_has(module: &str, require: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os(require).is_none(),
            "the {module} Python package is required"
        );
        eprintln!("python3 cannot import {module}: `pip install {module}` to run this check");
        return false;
    }
    true
}
