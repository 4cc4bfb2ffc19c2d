//! What the cache guarantees against damage and hostile input (docs/RELIABILITY.md lists
//! each guarantee with its test): a damaged object is never used, targets stay inside the
//! output folders, bad values are refused before anything runs, leftovers are removed.

mod util;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use util::{sorted, Project};

const STUDY: &str = r#"Pipeline(
    stages: [
        (name: "data", kind: "fake", config: (value: "cifar")),
        (name: "train", kind: "fake", inputs: ["data"], config: (value: "model"), vary: {"optimizer.lr": [0.1]}),
        (name: "report", kind: "fake_gather", inputs: ["train"], target: "reports/r.md", config: (value: "R")),
    ],
)
"#;

fn built() -> Project {
    let p = Project::new();
    p.write("pipelines/s.ron", STUDY);
    p.ok(&["build"]);
    p.ran();
    p
}

/// The object of `stage`'s first output, from its entry.
fn object_of(p: &Project, stage: &str) -> PathBuf {
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["status", "--json", stage]).stdout).unwrap();
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == stage)
        .unwrap();
    let key = row["key"].as_str().unwrap();
    let entry: serde_json::Value =
        serde_json::from_str(&p.read(&format!("cache/entries/{}/{key}.json", &key[..2]))).unwrap();
    let hash = entry["outputs"][0]["hash"].as_str().unwrap();
    p.path()
        .join(format!("cache/objects/{}/{hash}", &hash[..2]))
}

/// Writes `byte` at `at` of `path` in place and puts its mtime back (and its read-only
/// mode): what a disk error or a careless tool does, and what the hash memo (size, mtime,
/// inode) cannot see.
fn overwrite_keeping_mtime(path: &Path, at: usize, byte: u8) {
    let meta = fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    let mut perm = meta.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(path, perm.clone()).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[byte]).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    perm.set_readonly(true);
    fs::set_permissions(path, perm).unwrap();
    assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// Flips a bit of the first byte of `path`, size and mtime kept.
fn flip_keeping_mtime(path: &Path) {
    let first = fs::read(path).unwrap()[0];
    overwrite_keeping_mtime(path, 0, first ^ 0x20);
}

#[test]
fn a_damaged_input_is_caught_before_a_stage_uses_it_and_rebuilt_in_the_same_build() {
    let p = built();
    let obj = object_of(&p, "s:data");
    flip_keeping_mtime(&obj);
    let damaged = fs::read(&obj).unwrap();

    // status, explain, list and dag change nothing: the damaged object stays for verify.
    for args in [
        &["status"][..],
        &["explain", "reports/r.md"],
        &["list"],
        &["dag"],
    ] {
        p.pipe(args);
        assert_eq!(
            fs::read(&obj).unwrap(),
            damaged,
            "{args:?} changed the cache"
        );
    }
    assert!(p.ran().is_empty());

    // A stage that reads it hashes it first: the input is rebuilt, then the stage runs.
    let r = p.ok(&["build", "--force", "s:train"]);
    assert!(
        r.stdout
            .contains("input from `s:data`: cached output `out.txt` is corrupt"),
        "{r:?}"
    );
    let ran = p.ran();
    assert!(ran.contains(&"s:data".to_string()), "{ran:?}");
    assert!(ran.contains(&"s:train".to_string()), "{ran:?}");
    assert_ne!(
        fs::read(&obj).unwrap(),
        damaged,
        "the object was stored again, intact"
    );
    let v = p.pipe(&["verify"]);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains("0 damaged"), "{v:?}");
}

#[test]
fn verify_names_every_damaged_object_and_its_stages_and_repair_makes_the_next_build_rebuild_them() {
    let p = built();
    let data = object_of(&p, "s:data");
    let model = object_of(&p, "s:train[optimizer.lr=0.1]");
    flip_keeping_mtime(&data);
    fs::remove_file(&model).unwrap();
    assert!(
        p.ok(&["status"]).stdout.contains("fresh  s:data"),
        "the memo is trusted"
    );

    let v = p.pipe(&["verify"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("corrupt object"), "{v:?}");
    assert!(v.stdout.contains("used by s:data (out.txt"), "{v:?}");
    assert!(v.stdout.contains("missing object"), "{v:?}");
    assert!(
        v.stdout
            .contains("used by s:train[optimizer.lr=0.1] (out.txt"),
        "{v:?}"
    );
    assert!(v.stdout.contains("2 damaged"), "{v:?}");

    let v = p.pipe(&["verify", "--repair"]);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(!data.exists(), "the damaged object is removed");
    p.ok(&["build"]);
    let ran = p.ran();
    assert!(ran.contains(&"s:data".to_string()), "{ran:?}");
    assert!(
        ran.contains(&"s:train[optimizer.lr=0.1]".to_string()),
        "{ran:?}"
    );
    assert!(p.pipe(&["verify"]).stdout.contains("0 damaged"));
}

#[test]
fn a_damaged_target_object_is_never_copied_and_is_rebuilt_in_the_same_build() {
    let p = built();
    let obj = object_of(&p, "s:report");
    let good = fs::read(&obj).unwrap();
    let written = p.read("reports/r.md");
    flip_keeping_mtime(&obj);
    fs::remove_file(p.path().join("reports/r.md")).unwrap();
    let r = p.pipe(&["build"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("target `reports/r.md`: the cached object for `r.md` is corrupt; rebuilding"),
        "the damage said: {r:?}"
    );
    assert_eq!(p.ran(), vec!["s:report".to_string()], "only the report ran");
    assert_eq!(
        p.read("reports/r.md"),
        written,
        "the target is the intact one"
    );
    assert_eq!(
        fs::read(&obj).unwrap(),
        good,
        "the object stored again, intact"
    );
    let v = p.pipe(&["verify"]);
    assert!(v.stdout.contains("0 damaged"), "{v:?}");
}

#[test]
fn targets_stay_inside_the_output_folders() {
    for (target, expected) in [
        ("pipelines/s.ron", "would overwrite a file of `pipelines/`"),
        (".git/HEAD", "would overwrite a file of `.git/`"),
        ("cache/index.json", "would overwrite a file of `cache/`"),
        ("notes.md", "is outside the folders targets are written to"),
        (
            "reports/../pipelines/s.ron",
            "has a `..`: write the path without it",
        ),
        (
            "reports/x/../bad.md",
            "has a `..`: write the path without it",
        ),
        (
            "/tmp/r.md",
            "is absolute: targets are relative to the project root",
        ),
    ] {
        let p = Project::new();
        p.write("pipelines/s.ron", &STUDY.replace("reports/r.md", target));
        let before = p.read("pipelines/s.ron");
        let r = p.pipe(&["build"]);
        assert_eq!(r.code, 2, "{target}: {r:?}");
        assert!(r.stderr.contains(expected), "{target}: {r:?}");
        assert!(r.stderr.contains("s.ron:5:"), "{target} positioned: {r:?}");
        assert_eq!(p.read("pipelines/s.ron"), before);
    }
    // Allowed elsewhere only when asked for.
    let p = Project::new();
    p.write(
        "pipelines/s.ron",
        &STUDY.replace("reports/r.md", "figures/r.md"),
    );
    assert_eq!(p.pipe(&["list"]).code, 2);
    let r = util::Run::from_output(
        p.cmd(&["build"])
            .env("PIPE_TARGET_DIRS", "figures")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(p.path().join("figures/r.md").is_file());

    // A target inside the folder another report writes its files to.
    let p = Project::new();
    p.write(
        "pipelines/s.ron",
        &STUDY.replace(
            "target: \"reports/r.md\", config: (value: \"R\")),",
            "target: \"reports/r.md\", config: (value: \"R\")),\n        (name: \"r2\", kind: \"fake_gather\", inputs: [\"train\"], target: \"reports/r/inner.md\"),",
        ),
    );
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("lies in `reports/r/`, where target `reports/r.md`"),
        "{r:?}"
    );
}

#[test]
fn a_target_is_never_written_through_a_symbolic_link() {
    let p = Project::new();
    p.write("pipelines/s.ron", STUDY);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path().join("reports")).unwrap();
    let r = p.pipe(&["build"]);
    assert_eq!(
        r.code, 3,
        "a target that cannot be written is a file-system error: {r:?}"
    );
    assert!(r.stdout.contains("`reports` is a symbolic link"), "{r:?}");
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written there"
    );
}

#[test]
fn empty_lists_non_finite_numbers_and_symlinked_pipelines() {
    for (edit, expected) in [
        (
            r#"vary: {"optimizer.lr": []}"#,
            "`vary` gives `optimizer.lr` no values",
        ),
        (
            r#"grid: {"optimizer.lr": []}"#,
            "`grid` gives `optimizer.lr` no values",
        ),
        (
            r#"vary: {"optimizer.lr": [NaN]}"#,
            "`optimizer.lr` is not a finite number",
        ),
        (
            r#"vary: {"optimizer.lr": [inf]}"#,
            "`optimizer.lr` is not a finite number",
        ),
        (
            r#"vary: {"optimizer.lr": [-1e999]}"#,
            "`optimizer.lr` is not a finite number",
        ),
    ] {
        let p = Project::new();
        p.write(
            "pipelines/s.ron",
            &STUDY.replace(r#"vary: {"optimizer.lr": [0.1]}"#, edit),
        );
        let r = p.pipe(&["build"]);
        assert_eq!(r.code, 2, "{edit}: {r:?}");
        assert!(r.stderr.contains(expected), "{edit}: {r:?}");
        assert!(r.stderr.contains("s.ron:4:"), "{edit} positioned: {r:?}");
    }
    let p = Project::new();
    p.write("elsewhere/s.ron", STUDY);
    std::os::unix::fs::symlink(
        p.path().join("elsewhere/s.ron"),
        p.path().join("pipelines/s.ron"),
    )
    .unwrap();
    let r = p.ok(&["list"]);
    assert!(r.stdout.contains("s:train"), "{r:?}");
}

#[test]
fn temporary_files_of_interrupted_writes_are_removed_by_the_next_build() {
    let p = built();
    let day_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let leftovers = [
        "cache/.index.json~othernode~4242~0.tmp",
        "cache/entries/.x.json~othernode~4242~1.tmp",
        "reports/.r.md~othernode~4242~2.tmp",
    ];
    for l in leftovers {
        p.write(l, "half");
        fs::File::options()
            .write(true)
            .open(p.path().join(l))
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
    }
    p.write(
        "cache/.memo.json~othernode~4242~3.tmp",
        "a live write on another node",
    );
    // A build that runs something (a no-op build is answered without looking).
    p.edit("pipelines/s.ron", "value: \"R\"", "value: \"R2\"");
    p.ok(&["build"]);
    for l in leftovers {
        assert!(!p.path().join(l).exists(), "{l} left behind");
    }
    assert!(p
        .path()
        .join("cache/.memo.json~othernode~4242~3.tmp")
        .exists());
    assert_eq!(p.ran(), sorted(&["s:report"]));
}

/// Whether `pid` is gone (or a zombie no one has reaped yet: it runs nothing).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn sigint_and_sigterm_stop_every_child_say_what_stopped_and_exit_128_plus_the_signal() {
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let p = Project::new();
        p.write(
            "pipelines/c.ron",
            r#"Pipeline(stages: [
                (name: "slow", kind: "command", config: (run: "sleep 300 & echo $! > \"$PIPE_ROOT/sleep.pid\"; wait")),
            ])"#,
        );
        let child = p
            .cmd(&["build", "c:slow"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid_file = p.path().join("sleep.pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let sleep_pid = loop {
            if let Some(pid) = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!gone(sleep_pid));
        assert!(std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let r = util::Run::from_output(out);
        assert_eq!(r.code, code, "{signal}: {r:?}");
        assert!(r.stderr.contains("stopped  c:slow"), "{r:?}");
        assert!(
            r.stderr.contains("1 stage stopped (1 process group)"),
            "{r:?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gone(sleep_pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{signal}: the command's child outlived pipe"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing half-done looks fresh, and the lock is free: the next build runs it.
        let s = p.ok(&["status"]);
        assert!(s.stdout.contains("stale  c:slow"), "{s:?}");
    }
}

/// A stage that aborts its process (as burn does when an allocation fails) fails alone: it
/// runs in a child process of its own, its sibling is built, and the build prints its
/// summary and exits 1.
#[test]
fn a_stage_that_aborts_its_process_fails_alone_and_the_build_goes_on() {
    let p = Project::new();
    p.write(
        "pipelines/a.ron",
        r#"Pipeline(stages: [
            (name: "data", kind: "fake", config: (value: "d")),
            (name: "train", kind: "fake", inputs: ["data"], config: (value: "m", own_process: true, sleep_ms: 200)),
            (name: "boom", kind: "fake", inputs: ["data"], config: (value: "m", own_process: true, abort: true)),
        ])"#,
    );
    let r = p.pipe(&["build", "-k", "a:train", "a:boom"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("killed by SIGABRT"), "{r:?}");
    assert!(
        r.stdout.contains("fake stage asked to abort"),
        "the child's last words: {r:?}"
    );
    assert!(r.stdout.contains("2 built, 0 fresh, 1 failed"), "{r:?}");
    let s = p.ok(&["status"]);
    assert!(s.stdout.lines().any(|l| l == "fresh  a:train"), "{s:?}");
    assert!(s.stdout.contains("stale  a:boom"), "{s:?}");
}

/// The child a training stage runs in dies with the build, even when the build is killed
/// with SIGKILL (it cannot pass anything on): nothing trains on, holding the key's lock.
#[test]
fn a_stage_process_dies_with_a_killed_build() {
    let p = Project::new();
    p.write(
        "pipelines/a.ron",
        r#"Pipeline(stages: [
            (name: "slow", kind: "fake", config: (own_process: true, steps: 2000, sleep_ms: 20)),
        ])"#,
    );
    let mut build = p
        .cmd(&["build", "a:slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The build's child: the process whose parent is the build (field 4 of its stat).
    let child_of = |parent: u32| {
        fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
    };
    let stage_pid = loop {
        if let Some(pid) = child_of(build.id()) {
            if util::find(&p.path().join("cache/scratch"), "step").is_some() {
                break pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stage's process never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    build.kill().unwrap();
    build.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone(stage_pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage's process outlived the killed build"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A build with nothing to do reads the cache and writes nothing to it: it works on a cache
/// mounted read-only (a finished study kept on an archive disk, a shared cache without
/// write permission), whether the no-op shortcut answers or the plan is assessed again.
#[test]
fn a_no_op_build_works_on_a_read_only_cache() {
    let p = Project::new();
    p.write("pipelines/s.ron", STUDY);
    let r = util::in_mount_namespace(
        &p,
        r#"mkdir -p cache && mount -t tmpfs -o size=64m tmpfs cache || exit 90
"$PIPE" build >/dev/null || exit 91
mount -o remount,ro cache || exit 92
touch cache/probe 2>/dev/null && exit 93
"$PIPE" build || exit 94
echo '// a comment: the shortcut does not answer, the plan is assessed' >> pipelines/s.ron
"$PIPE" build || exit 95
"$PIPE" status || exit 96
"#,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.matches("0 built, 4 fresh, 0 failed").count(),
        2,
        "{r:?}"
    );
    assert!(r.stdout.contains("4 fresh, 0 stale"), "{r:?}");
}

/// One load reports every broken stage of every file, a bracket never closed at that
/// bracket (not where the parser stumbles, lines on), and a file that is not UTF-8 at the
/// line and column of its first bad byte.
#[test]
fn every_syntax_error_of_every_file_is_reported_at_once_and_where_it_is() {
    let p = Project::new();
    p.write(
        "pipelines/a.ron",
        "Pipeline(stages: [\n    (name: \"data\", kind: \"fake\", config: (value: \"d\"),\n    (name: \"train\", kind: \"fake\", inputs: [\"data\"]),\n])\n",
    );
    p.write(
        "pipelines/b.ron",
        "Pipeline(stages: [\n    (name: \"x\", kindd: \"fake\"),\n    (name: \"y\", kind: \"fake\"),\n    (name: \"z\", kind: \"fake\", confi: ()),\n])\n",
    );
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("pipelines/a.ron:2:5: this `(` is never closed"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("the `]` at 4:1 closes the `[` at 1:18"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("pipelines/b.ron:2:17: stages[0].kindd: unknown field"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("pipelines/b.ron:4:31: stages[2].confi: unknown field"),
        "{r:?}"
    );
    assert_eq!(r.stderr.matches("error: ").count(), 3, "{r:?}");

    fs::write(
        p.path().join("pipelines/c.ron"),
        b"Pipeline(\n  description: \"caf\xc3\xa9 \xe9\",\n  stages: [])\n",
    )
    .unwrap();
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("pipelines/c.ron:2:22: not UTF-8: byte 32 (0xE9)"),
        "the column counts the characters before the byte: {r:?}"
    );
}

/// Changes one digit of `path` in place (a result that still parses, now wrong), keeping
/// its size and mtime.
fn bump_a_digit_keeping_mtime(path: &Path, after: &str) {
    let bytes = fs::read(path).unwrap();
    let from = String::from_utf8_lossy(&bytes)
        .find(after)
        .expect("the field")
        + after.len();
    let at = (from..bytes.len())
        .find(|&i| bytes[i].is_ascii_digit() && bytes[i] < b'9')
        .unwrap();
    overwrite_keeping_mtime(path, at, bytes[at] + 1);
}

#[test]
fn results_commands_never_show_a_tampered_object_as_a_result() {
    // The real path: train and evaluate stages, their objects read by show, diff, outputs.
    let p = Project::new();
    util::learnable(&p.path().join("src-data"), 20, 10);
    p.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 20)),
            (name: "train", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 2, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0), seed: 1),
             vary: {"optimizer.lr": [0.05]}),
            (name: "eval", kind: "evaluate", inputs: ["train", "data"]),
        ])"#,
    );
    p.ok(&["build", "s:eval"]);
    let before = p.ok(&["show", "--format", "json"]).stdout;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&before)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let outputs = p.ok(&["outputs", "s:eval[base]"]).stdout;
    let evaluation = outputs
        .lines()
        .find_map(|l| l.strip_prefix("evaluation.json\t"))
        .expect("an evaluation.json");
    bump_a_digit_keeping_mtime(Path::new(evaluation), "\"accuracy\":");
    let show = p.pipe(&["show", "--format", "json"]);
    assert_eq!(show.code, 1, "{show:?}");
    assert!(
        show.stderr
            .contains("s:eval: left out: its cached `evaluation.json` is damaged"),
        "{show:?}"
    );
    let rows: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "only the verified row: {show:?}"
    );
    let diff = p.pipe(&["diff", "s:eval", "s:eval[optimizer.lr=0.05]"]);
    assert_eq!(diff.code, 1, "{diff:?}");
    assert!(
        diff.stdout.contains("not shown") && diff.stderr.contains("damaged"),
        "{diff:?}"
    );
    let out = p.pipe(&["outputs", "s:eval[base]"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("`evaluation.json` is corrupt") && out.stdout.is_empty(),
        "{out:?}"
    );
    // Repaired and rebuilt, the results are whole again.
    p.pipe(&["verify", "--repair"]);
    p.ok(&["build", "s:eval"]);
    assert_eq!(p.ok(&["show", "--format", "json"]).stdout, before);
}

#[test]
fn a_line_pasted_200_times_gives_the_first_errors_and_a_count_of_the_rest() {
    let p = Project::new();
    let line = "(name: \"momentum\", vary: {\"optimizer.momentum\": [0.5]}),\n";
    p.write(
        "pipelines/s.ron",
        &format!(
            r#"Pipeline(stages: [
                (name: "data", kind: "fake", config: (value: "cifar")),
                (name: "base", kind: "fake", inputs: ["data"], config: (value: "model")),
            ], studies: [(extends: "base", data: "data", target: "reports/{{name}}.md", each: [
            {}])])"#,
            line.repeat(200)
        ),
    );
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    let shown = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .count();
    assert_eq!(shown, 50, "{}", r.stderr);
    // 199 repeats of 3 made stages each: 597 errors, 547 of them counted.
    assert!(r.stderr.contains("… and 547 more errors"), "{}", r.stderr);
    assert!(
        r.stderr.contains("pipelines/s.ron:6:"),
        "the first error where it is: {}",
        r.stderr
    );
}

#[test]
fn absurd_epochs_and_grids_are_refused_where_they_are_written_with_the_limit() {
    let p = Project::new();
    let train = |epochs: &str, grid: &str| {
        format!(
            r#"Pipeline(stages: [
    (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
    (name: "data", kind: "normalize", inputs: ["cifar10"]),
    (name: "train", kind: "train", inputs: ["data"],
     config: (model: Linear(), epochs: {epochs}, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0)){grid}),
])"#
        )
    };
    p.write("pipelines/s.ron", &train("1000000000000", ""));
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("pipelines/s.ron:5:")
            && r.stderr
                .contains("1000000000000 epochs is over the limit of 100000"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("PIPE_MAX_EPOCHS=<n> raises the limit"),
        "{}",
        r.stderr
    );
    // Raised, it loads.
    let raised = p
        .cmd(&["list"])
        .env("PIPE_MAX_EPOCHS", "2000000000000")
        .output()
        .unwrap();
    assert!(
        raised.status.success(),
        "{}",
        String::from_utf8_lossy(&raised.stderr)
    );
    // Three lists of 100 values: a million combinations, refused before one is made.
    let values = format!(
        "[{}]",
        (1..=100)
            .map(|i| format!("0.{i:03}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let grid = format!(
        r#", grid: {{"optimizer.lr": {values}, "optimizer.momentum": {values}, "regularizer.kernel_l2": {values}}}"#
    );
    p.write("pipelines/s.ron", &train("5", &grid));
    let r = p.pipe(&["list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(
            "`grid` makes 1000000 combinations (100 × 100 × 100), over the limit of 50000"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("pipelines/s.ron:5:"), "{}", r.stderr);
}

#[test]
fn a_fraction_or_exponent_in_a_whole_number_field_names_the_field_and_the_value() {
    let p = Project::new();
    let cases = [
        (
            "seed: 1",
            "seed: 1.5",
            "stages[2].config.seed: `seed` must be a whole number, not `1.5`",
            "round it: `1` or `2`",
        ),
        (
            "epochs: 5",
            "epochs: 1e12",
            "stages[2].config.epochs: `epochs` must be a whole number, not `1e12`",
            "`1000000000000`",
        ),
        (
            "epochs: 5",
            "epochs: -3",
            "stages[2].config.epochs: `epochs` cannot be negative (`-3`)",
            "0 or more",
        ),
        (
            "epochs: 5",
            "epochs: 5, epochs: 6",
            "`epochs` is written twice in `TrainConfig`",
            "keep one",
        ),
    ];
    for (from, to, message, hint) in cases {
        let text = r#"Pipeline(stages: [
    (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
    (name: "data", kind: "normalize", inputs: ["cifar10"]),
    (name: "train", kind: "train", inputs: ["data"],
     config: (model: Linear(), epochs: 5, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0), seed: 1)),
])"#
        .replace(from, to);
        p.write("pipelines/s.ron", &text);
        let r = p.pipe(&["list"]);
        assert_eq!(r.code, 2, "{to}: {r:?}");
        // The position is the written value's: line 5, where `to` starts.
        let col = text.lines().nth(4).unwrap().find(to).unwrap() + 1 + to.find(':').unwrap() + 2;
        let at = format!("pipelines/s.ron:5:{col}: ");
        // A value's error is at the value; the repeated field's at the stage's config.
        let whole = if message.starts_with("stages[") {
            format!("{at}{message}")
        } else {
            message.to_string()
        };
        assert!(
            r.stderr.contains(&whole),
            "{to}: want {whole}\n{}",
            r.stderr
        );
        assert!(r.stderr.contains(hint), "{to}: {}", r.stderr);
    }
}

/// A forced training in its own process that trains the same bytes again: the build says
/// that run's time and log, not those of the run its index remembered for the same key.
#[test]
fn a_forced_rerun_with_identical_output_shows_its_own_time_and_log() {
    let p = Project::new();
    util::learnable(&p.path().join("src-data"), 20, 10);
    p.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 20)),
            (name: "train", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 1, batch_size: 16, seed: 1)),
        ])"#,
    );
    p.ok(&["build", "s:train"]);
    // The index's record of that run, as if it had taken 1000 s.
    let index = p.path().join("cache/index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    v["s:train"]["ms"] = serde_json::json!(1_000_000);
    std::fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
    let r = p
        .cmd(&["build", "--force", "s:train", "s:train"])
        .env("PIPE_ISOLATE", "all")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}");
    let said = out
        .lines()
        .find_map(|l| l.strip_prefix("built   s:train ("))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        !said.starts_with("1000.0s"),
        "the remembered run's time: {out}"
    );
    let runs = p.take_runs();
    let last = runs.last().unwrap();
    assert_eq!(last["stage"], "s:train");
    let secs = last["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        said.starts_with(&format!("{secs:.1}s)")),
        "{said} vs {secs}: {out}"
    );
    let log = p.ok(&["log", "s:train"]).stdout;
    assert!(log.contains("epoch 1/1"), "{log}");
}

#[test]
fn a_damaged_input_of_a_training_in_its_own_process_is_rebuilt_in_the_same_build() {
    // The real path: normalize, then train in a `stage-job` child (PIPE_ISOLATE=all), as
    // GPU and large trainings run; a variant added after the data's object was damaged.
    let p = Project::new();
    util::learnable(&p.path().join("src-data"), 20, 10);
    let pipeline = |vary: &str| {
        format!(
            r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 20)),
            (name: "train", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 1, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0), seed: 1){vary}),
        ])"#
        )
    };
    p.write("pipelines/s.ron", &pipeline(""));
    p.ok(&["build", "s:train"]);
    let outputs = p.ok(&["outputs", "s:data"]).stdout;
    let train_npy = outputs
        .lines()
        .find_map(|l| l.strip_prefix("train_x.npy\t"))
        .expect("the training split");
    flip_keeping_mtime(Path::new(train_npy));
    p.write(
        "pipelines/s.ron",
        &pipeline(r#", vary: {"optimizer.lr": [0.05]}"#),
    );
    let r = p
        .cmd(&["build", "s:train"])
        .env("PIPE_ISOLATE", "all")
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
    );
    assert!(r.status.success(), "{out}\n{err}");
    assert!(
        out.contains("built   s:data"),
        "the data rebuilt in the same build: {out}"
    );
    assert!(out.contains("s:train[optimizer.lr=0.05]"), "{out}");
    assert!(
        format!("{out}{err}").contains("is rebuilt"),
        "the damage said: {out}\n{err}"
    );
    assert_eq!(p.ok(&["verify"]).code, 0);
}

#[test]
fn a_damaged_model_under_a_forced_evaluation_is_retrained_and_each_evaluation_runs_once() {
    // Real train and evaluate stages, each in a `stage-job` child: the first round's
    // evaluation of the other variant is a cache hit in the second, not run again.
    let p = Project::new();
    util::learnable(&p.path().join("src-data"), 20, 10);
    p.write(
        "pipelines/s.ron",
        r#"Pipeline(stages: [
            (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
            (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 20)),
            (name: "train", kind: "train", inputs: ["data"],
             config: (model: Linear(), epochs: 1, batch_size: 16, optimizer: (lr: 0.01, momentum: 0.0), seed: 1),
             vary: {"optimizer.lr": [0.05]}),
            (name: "eval", kind: "evaluate", inputs: ["train", "data"]),
        ])"#,
    );
    p.ok(&["build", "s:eval"]);
    p.ran();
    let weights = fs::read(p.outputs("s:train").join("best.bin")).unwrap();
    for keep_going in [false, true] {
        let outputs = p.ok(&["outputs", "s:train[base]"]).stdout;
        let best = outputs
            .lines()
            .find_map(|l| l.strip_prefix("best.bin\t"))
            .expect("the best weights");
        flip_keeping_mtime(Path::new(best));
        let mut args = vec!["build", "s:eval", "--force", "s:eval"];
        if keep_going {
            args.push("-k");
        }
        let r = p.cmd(&args).env("PIPE_ISOLATE", "all").output().unwrap();
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success(), "{args:?}: {out}");
        assert_eq!(
            p.ran(),
            ["s:eval", "s:eval[optimizer.lr=0.05]", "s:train"],
            "{args:?}: the damaged weights retrained, each evaluation once: {out}"
        );
        assert!(out.contains("`best.bin` is corrupt"), "{out}");
        assert!(out.contains("3 built"), "{out}");
    }
    // Retrained from the same seed: the same weights as before the damage.
    assert_eq!(
        fs::read(p.outputs("s:train").join("best.bin")).unwrap(),
        weights
    );
    assert!(p.ok(&["verify"]).stdout.contains("0 damaged"));
}
