//! A mutation fuzzer for the pipeline loader: the shipped pipelines and hostile snippets,
//! mutated (bytes flipped, inserted, deleted, spans duplicated, RON tokens and extreme values
//! spliced in, brackets nested deep), each loaded and planned as `pipe` does. Any panic is a
//! bug: the loader must answer every input with a plan or with errors.
//!
//! `cargo run --release --example fuzz_loader -- 1000000 [seed]` for a long run; tests/fuzz.rs
//! runs a short one in CI. No external fuzzing engine: cargo-fuzz needs nightly, and this
//! needs nothing but stable and the loader.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pipe::rng::SplitMix64;

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "//",
    "/*",
    "*/",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-0.0",
    "4294967295",
    "18446744073709551616",
    "-1",
    "0",
    "Some(",
    "None",
    "r#\"",
    "\"#",
    "uses: [\"x.ron\"]",
    "extends: \"",
    "inputs: [\"",
    "vary: {\"optimizer.lr\": [",
    "grid: {",
    "seeds: 0",
    "seeds: 18446744073709551615",
    "target: \"reports/",
    "target: \"../",
    "target: \"/etc/",
    "kind: \"train\"",
    "kind: \"report\"",
    "kind: \"fake\"",
    "model: Mlp(hidden: [",
    "model: ConvNet(blocks: [(filters: 0",
    "config: (",
    "name: \"",
    "\u{feff}",
    "\u{0}",
    "é",
    "\n",
    "\t",
    "'",
    "b'a'",
    "#![enable(implicit_some)]",
    "()",
    "Pipeline(",
    "stages: [",
];

/// The seed inputs: every shipped pipeline, and small ones for each feature.
pub fn corpus() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut out: Vec<(String, String)> = walk(&root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.push(("s.ron".into(), r#"Pipeline(stages: [
    (name: "d", kind: "fake", config: (value: "x")),
    (name: "t", kind: "fake", inputs: ["d"], vary: {"optimizer.lr": [0.1, 0.2]}, grid: {"optimizer.momentum": [0.5], "value": ["a"]}, seeds: 2),
    (name: "r", kind: "fake_gather", inputs: ["t"], target: "reports/r.md"),
])"#.into()));
    out
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            v.extend(walk(&e.path()));
        } else if e.path().extension().is_some_and(|x| x == "ron") {
            v.push(e.path());
        }
    }
    v.sort();
    v
}

/// One mutant of `text`: 1 to 4 mutations.
pub fn mutate(rng: &mut SplitMix64, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if b.is_empty() {
            0
        } else {
            rng.below(b.len() + 1)
        };
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            2 => b.insert(at, rng.below(256) as u8),
            3 | 4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
            5 if !b.is_empty() => {
                let start = rng.below(b.len());
                let end = (start + rng.below(64)).min(b.len());
                let span = b[start..end].to_vec();
                b.splice(at..at, span);
            }
            6 => {
                let depth = 1 + rng.below(300);
                let (open, close) = [("(", ")"), ("[", "]"), ("{", "}")][rng.below(3)];
                let nest = open.repeat(depth) + &close.repeat(rng.below(depth + 1));
                b.splice(at..at, nest.bytes());
            }
            7 => {
                // A line pasted again and again (a study line repeated 300 times made
                // 900 errors, each placed by re-parsing the whole file: 20 s).
                let text = String::from_utf8_lossy(&b).into_owned();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                let i = rng.below(lines.len().max(1));
                let line = lines.get(i).copied().unwrap_or("");
                let mut out: String = lines[..i.min(lines.len())].concat();
                out.push_str(&line.repeat(1 + rng.below(300)));
                out.push_str(&lines.get(i..).map(|l| l.concat()).unwrap_or_default());
                b = out.into_bytes();
            }
            _ => {
                // A number replaced by an extreme one.
                if let Some(i) = (at..b.len()).find(|&i| b[i].is_ascii_digit()) {
                    let end = (i..b.len())
                        .find(|&j| !b[j].is_ascii_digit() && b[j] != b'.')
                        .unwrap_or(b.len());
                    let t = [
                        "1e999",
                        "NaN",
                        "-inf",
                        "0",
                        "99999999999999999999",
                        "1e-320",
                    ][rng.below(6)];
                    b.splice(i..end, t.bytes());
                }
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Loads `files` and plans them as `pipe` does; `Err` with the panic message if it panics.
pub fn load(files: Vec<(PathBuf, String)>) -> Result<bool, String> {
    let kinds = pipe::stages::all();
    catch_unwind(AssertUnwindSafe(|| {
        match pipe::pipeline::load_files(files, &kinds, None) {
            Ok(spec) => pipe::plan::Plan::new(spec).is_ok(),
            Err(e) => {
                // Errors must render too.
                let _ = e.to_string();
                false
            }
        }
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Seconds one load may take (`PIPE_FUZZ_SECONDS`, default 10): a mutant that takes
/// longer is a failure, as a panic is (error reporting must stay linear).
fn limit() -> f64 {
    std::env::var("PIPE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0)
}

/// Runs `cases` mutants from `seed`; returns (cases that loaded, the first panic's or
/// too slow load's input).
pub fn run(cases: u64, seed: u64) -> (u64, Option<(String, String, String)>) {
    let corpus = corpus();
    let mut rng = SplitMix64::new(seed);
    let mut loaded = 0;
    for _ in 0..cases {
        let (name, text) = &corpus[rng.below(corpus.len())];
        let mutant = mutate(&mut rng, text);
        let mut files = vec![(PathBuf::from(name), mutant.clone())];
        // Most files `use` others: give them the rest of their study half the time.
        if rng.below(2) == 0 {
            files.extend(
                corpus
                    .iter()
                    .filter(|(n, _)| n != name && n.starts_with(name.split('/').next().unwrap()))
                    .map(|(n, t)| (PathBuf::from(n), t.clone())),
            );
        }
        let clock = std::time::Instant::now();
        let result = load(files);
        let took = clock.elapsed().as_secs_f64();
        if took > limit() {
            let message = format!("loading took {took:.1} s (limit {:.0} s)", limit());
            return (loaded, Some((name.clone(), mutant, message)));
        }
        match result {
            Ok(ok) => loaded += ok as u64,
            Err(message) => return (loaded, Some((name.clone(), mutant, message))),
        }
    }
    (loaded, None)
}

#[allow(dead_code)]
fn main() {
    let mut args = std::env::args().skip(1);
    let cases: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    // Panics are caught and reported once, not printed for each.
    std::panic::set_hook(Box::new(|_| {}));
    let clock = std::time::Instant::now();
    let (loaded, panic) = run(cases, seed);
    match panic {
        None => println!(
            "{cases} inputs (seed {seed}), 0 panics, {loaded} loaded as valid plans, in {:.1} s",
            clock.elapsed().as_secs_f64()
        ),
        Some((name, input, message)) => {
            std::fs::write("fuzz-crash.ron", &input).unwrap();
            eprintln!("panic on a mutant of {name} (saved as fuzz-crash.ron): {message}");
            std::process::exit(1);
        }
    }
}
