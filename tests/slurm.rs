//! The Slurm executor on a real one-node Slurm cluster (tests/slurm/cluster.sh starts it:
//! munged, slurmctld, slurmd as plain processes, two fake GPUs). Where Slurm is not
//! installed the tests say so and pass, unless `PIPE_REQUIRE_SLURM` is set (CI sets it
//! after installing Debian's packages), which makes them fail instead.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use util::{learnable, Project};

/// Starts the cluster once per test process; `false` (after saying why) where there is none.
fn slurm() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        let dir = std::env::var("PIPE_SLURM_DIR").unwrap_or_else(|_| "/tmp/pipe-slurm".into());
        std::env::set_var("SLURM_CONF", format!("{dir}/slurm.conf"));
        // Every build here goes through Slurm unless it says `--executor local`.
        std::env::set_var("PIPE_EXECUTOR", "slurm");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh");
        match Command::new("bash").arg(script).arg("start").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    match up {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("PIPE_REQUIRE_SLURM").is_none(),
                "a Slurm cluster is required (PIPE_REQUIRE_SLURM): {why}"
            );
            eprintln!("no Slurm cluster here, test not run: {why}");
            false
        }
    }
}

fn scontrol_job(id: &str) -> String {
    let o = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Every run of the build log that went through Slurm: (stage, job id).
fn slurm_runs(p: &Project) -> Vec<(String, String)> {
    p.take_runs()
        .iter()
        .filter_map(|r| {
            Some((
                r["stage"].as_str()?.to_string(),
                r["slurm_job"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn fake_project(stages: &str, settings: &str) -> Project {
    let p = Project::new();
    p.write("pipelines/f.ron", &format!("Pipeline(stages: [{stages}])"));
    p.write("slurm.ron", settings);
    p
}

const TRAIN_STUDY: &str = r#"Pipeline(stages: [
    (name: "cifar10", kind: "download", config: (source: Local("src-data"))),
    (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 40)),
    (name: "mlp", kind: "train", inputs: ["data"],
     config: (model: Mlp(hidden: [32]), epochs: 2, batch_size: 16, seed: 5),
     vary: {"optimizer.lr": [0.05]}),
    (name: "eval", kind: "evaluate", inputs: ["mlp", "data"]),
])"#;

#[test]
fn a_study_built_through_slurm_trains_the_same_weights_as_a_local_build() {
    if !slurm() {
        return;
    }
    let build = |executor: &str| {
        let p = Project::new();
        learnable(&p.path().join("src-data"), 30, 20);
        p.write("pipelines/s.ron", TRAIN_STUDY);
        p.write("slurm.ron", "Slurm(poll_ms: 200)");
        let out = p.ok(&["--device", "cpu", "build", "--executor", executor, "s:eval"]);
        (p, out.stdout)
    };
    let ((local, _), (remote, remote_out)) = (build("local"), build("slurm"));
    let status = |p: &Project| -> serde_json::Value {
        serde_json::from_str(&p.ok(&["--device", "cpu", "status", "--json"]).stdout).unwrap()
    };
    let (a, b) = (status(&local), status(&remote));
    for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
        assert_eq!(x["state"], "fresh", "{x}");
        assert_eq!(y["state"], "fresh", "{y}");
        // Train's outputs hold wall-clock seconds, so evaluate's keys differ; every key
        // up to training is the same.
        if x["kind"] != "evaluate" {
            assert_eq!(x["key"], y["key"], "{} keyed alike", x["stage"]);
        }
    }
    for stage in ["s:mlp", "s:mlp[optimizer.lr=0.05]"] {
        let w = |p: &Project| std::fs::read(p.outputs(stage).join("model.bin")).unwrap();
        assert!(w(&local) == w(&remote), "{stage}: model.bin byte-identical");
    }
    for stage in ["s:eval", "s:eval[optimizer.lr=0.05]"] {
        let e = |p: &Project| {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(p.outputs(stage).join("evaluation.json")).unwrap(),
            )
            .unwrap();
            v["final"].clone()
        };
        assert_eq!(e(&local), e(&remote), "{stage}: the same test scores");
    }
    // Train and evaluate went through Slurm, and Slurm's own records show those jobs;
    // download and normalize ran on this machine.
    let runs = slurm_runs(&remote);
    let mut stages: Vec<&str> = runs.iter().map(|(s, _)| s.as_str()).collect();
    stages.sort();
    assert_eq!(
        stages,
        [
            "s:eval",
            "s:eval[optimizer.lr=0.05]",
            "s:mlp",
            "s:mlp[optimizer.lr=0.05]"
        ]
    );
    // Each evaluation ran in its training's job: one Slurm start-up for both, and the
    // build counts it as built, with its log.
    let job_of = |stage: &str| &runs.iter().find(|(s, _)| s == stage).unwrap().1;
    assert_eq!(job_of("s:eval"), job_of("s:mlp"));
    assert_eq!(
        job_of("s:eval[optimizer.lr=0.05]"),
        job_of("s:mlp[optimizer.lr=0.05]")
    );
    assert_ne!(job_of("s:mlp"), job_of("s:mlp[optimizer.lr=0.05]"));
    assert!(
        remote_out.contains("built s:eval in the same job")
            && remote_out.contains("6 built, 0 fresh"),
        "{remote_out}"
    );
    for (stage, id) in &runs {
        let record = scontrol_job(id);
        // An evaluation's job is its training's, named for it.
        let job = stage.replace("s:eval", "s:mlp");
        assert!(
            record.contains(&format!("JobName=pipe:{job} "))
                && record.contains("JobState=COMPLETED"),
            "{stage}: Slurm knows job {id}: {record}"
        );
    }
    assert!(slurm_runs(&local).is_empty());
}

#[test]
fn a_job_that_finds_its_input_damaged_has_it_rebuilt_through_slurm_in_the_same_build() {
    if !slurm() {
        return;
    }
    let p = Project::new();
    learnable(&p.path().join("src-data"), 30, 20);
    p.write("pipelines/s.ron", TRAIN_STUDY);
    p.write("slurm.ron", "Slurm(poll_ms: 200)");
    p.ok(&["--device", "cpu", "build", "s:eval"]);
    p.take_runs();
    let weights = std::fs::read(p.outputs("s:mlp").join("best.bin")).unwrap();
    let outputs = p.ok(&["outputs", "s:mlp[base]"]).stdout;
    let best = outputs
        .lines()
        .find_map(|l| l.strip_prefix("best.bin\t"))
        .expect("the best weights");
    // One byte changed in place, size and mtime kept: only a read past the memo sees it.
    let meta = std::fs::metadata(best).unwrap();
    let mut perm = meta.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(best, perm).unwrap();
    let mut bytes = std::fs::read(best).unwrap();
    bytes[0] ^= 0x20;
    let f = std::fs::OpenOptions::new().write(true).open(best).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes[..1], 0).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);

    let r = p.ok(&["--device", "cpu", "build", "s:eval", "--force", "s:eval"]);
    assert!(r.stdout.contains("`best.bin` is corrupt"), "{r:?}");
    let mut runs: Vec<String> = slurm_runs(&p).into_iter().map(|(s, _)| s).collect();
    runs.sort();
    assert_eq!(
        runs,
        ["s:eval", "s:eval[optimizer.lr=0.05]", "s:mlp"],
        "the training retrained as a Slurm job, each evaluation run once: {r:?}"
    );
    assert_eq!(
        std::fs::read(p.outputs("s:mlp").join("best.bin")).unwrap(),
        weights,
        "retrained from the same seed"
    );
    assert!(p.ok(&["verify"]).stdout.contains("0 damaged"));
}

#[test]
fn a_misspelt_kind_in_the_settings_is_an_error_where_it_is_written() {
    // Refused before Slurm is asked anything: misspelt in `kinds`, trainings would run on
    // this machine; in `per_kind`, the evaluations' time limit would be dropped.
    let p = fake_project(
        r#"(name: "v", kind: "fake", config: (value: "v")),"#,
        "Slurm(\n  kinds: [\"trian\", \"fake\"],\n  per_kind: {\"evalute\": (time: \"1\")},\n)\n",
    );
    let r = p.pipe(&["build", "--executor", "slurm", "f:v"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("error: slurm.ron:2:11: kinds[0]: unknown stage kind `trian`\n  hint: did you mean `train`?"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("error: slurm.ron:3:25: per_kind.evalute: unknown stage kind `evalute`\n  hint: did you mean `evaluate`?"),
        "{}",
        r.stderr
    );
    assert!(p.ran().is_empty());
    p.write("slurm.ron", r#"Slurm(per_kind: {"evaluate": (tme: "1")})"#);
    let r = p.pipe(&["build", "--executor", "slurm", "f:v"]);
    assert!(
        r.stderr
            .contains("per_kind.evaluate.tme: unknown field `tme` in `per_kind`"),
        "{}",
        r.stderr
    );
}

/// A follow-on that fails in its parent's job takes nothing down with it: the parent is
/// built, and the build runs the follow-on again in a job of its own, which says why.
/// A forced follow-on is never chained (the build would run it again anyway).
#[test]
fn a_follow_on_that_fails_in_its_parents_job_is_run_again_alone_and_fails_alone() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "a", kind: "fake", config: (value: "a")),
           (name: "b", kind: "fake", inputs: ["a"], config: (value: "b", fail: true)),
           (name: "c", kind: "fake", inputs: ["a"], config: (value: "c")),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    // Two stages wait on a alone: neither is chained, each gets a job.
    let r = p.pipe(&["build", "-k", "f:b", "f:c"]);
    assert_eq!(r.code, 1, "{r:?}");
    let mut jobs: Vec<String> = slurm_runs(&p).into_iter().map(|(_, j)| j).collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    // Built one at a time, each waits on a alone: chained.
    let fresh_cache = || std::fs::remove_dir_all(p.path().join("cache")).unwrap();
    fresh_cache();
    let r = p.pipe(&["build", "f:c"]);
    assert_eq!(r.code, 0, "{r:?}");
    let runs = slurm_runs(&p);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].1, runs[1].1, "c ran in a's job: {runs:?}");
    assert!(r.stdout.contains("built f:c in the same job"), "{r:?}");
    fresh_cache();
    let r = p.pipe(&["build", "-k", "f:b"]);
    assert_eq!(r.code, 1, "{r:?}");
    let runs = slurm_runs(&p);
    let job_of = |stage: &str| {
        runs.iter()
            .filter(|(s, _)| s == stage)
            .map(|(_, j)| j.clone())
            .collect::<Vec<_>>()
    };
    // b failed twice: in a's job, then in its own; a is built.
    let b = job_of("f:b");
    assert_eq!(b.len(), 2, "{runs:?}");
    assert_eq!(b[0], job_of("f:a")[0]);
    assert_ne!(b[1], b[0]);
    assert!(r.stdout.contains("built   f:a"), "{r:?}");
    assert!(
        r.stdout.contains("FAILED  f:b") || r.stderr.contains("FAILED  f:b"),
        "{r:?}"
    );
    assert!(r.stdout.contains("1 built, 0 fresh, 1 failed"), "{r:?}");
    // a and c forced: c, forced, in a job of its own.
    let r = p.pipe(&["build", "--force", "f:a", "--force", "f:c", "f:c"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut runs = slurm_runs(&p);
    runs.sort();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0].0.as_str(), runs[1].0.as_str()), ("f:a", "f:c"));
    assert_ne!(runs[0].1, runs[1].1, "{runs:?}");
}

#[test]
fn a_failed_job_fails_its_stage_alone_with_the_tail_of_its_log() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "v", kind: "fake", config: (value: "v"), vary: {"fail": [true]}),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    let r = p.pipe(&["build", "-k", "f:v", "f:v[fail=true]"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("built   f:v "), "{r:?}");
    assert!(
        r.stdout.contains("FAILED  f:v[fail=true]: Slurm job ")
            && r.stdout.contains("failed (exit 1)"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("last lines of"),
        "the job log's tail: {r:?}"
    );
}

/// A build in the background, its output captured.
fn spawn(p: &Project, args: &[&str]) -> std::process::Child {
    p.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The job file of the only job submitted for `p`, once there is one.
fn wait_for_job(p: &Project) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = p.path().join("cache/jobs");
        if let Ok(rd) = std::fs::read_dir(&jobs) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "job") {
                    return std::fs::read_to_string(e.path())
                        .unwrap()
                        .trim()
                        .to_string();
                }
            }
        }
        assert!(Instant::now() < deadline, "no job was submitted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cancelled_job_fails_its_stage_with_slurms_state() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "slow", kind: "fake", config: (sleep_ms: 120000)),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    let child = spawn(&p, &["build", "f:slow"]);
    let id = wait_for_job(&p);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = p.ok(&["status"]).stdout;
        if status.contains(&format!("f:slow: Slurm job {id}")) {
            break;
        }
        assert!(Instant::now() < deadline, "status shows the job: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(Command::new("scancel").arg(&id).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("Slurm job {id} ended CANCELLED")),
        "{stdout}"
    );
}

#[test]
fn sigterm_on_the_driver_cancels_its_jobs() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "slow", kind: "fake", config: (sleep_ms: 120000, value: "term")),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    let child = spawn(&p, &["build", "f:slow"]);
    let id = wait_for_job(&p);
    // Followed by the poller once submitted; give it a round.
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "128 + SIGTERM: {stderr}");
    assert!(
        stderr.contains(&format!("1 Slurm job cancelled ({id})")),
        "{stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !scontrol_job(&id).contains("JobState=CANCELLED") {
        assert!(Instant::now() < deadline, "{}", scontrol_job(&id));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_drivers_on_one_cache_run_each_stage_once() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "v", kind: "fake", config: (sleep_ms: 1500, value: "twice"), vary: {"optimizer.lr": [0.1, 0.2]}),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    let targets = [
        "build",
        "f:v",
        "f:v[optimizer.lr=0.1]",
        "f:v[optimizer.lr=0.2]",
    ];
    // Started together: both find every stage unbuilt and no job queued for it.
    let drivers: Vec<_> = (0..2).map(|_| spawn(&p, &targets)).collect();
    for d in drivers {
        let out = d.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let built: Vec<String> = p
        .take_runs()
        .iter()
        .filter(|r| r["outcome"] == "built")
        .map(|r| r["stage"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = built.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "{built:?}");
    assert_eq!(built.len(), 3, "each stage ran once: {built:?}");
    // One job per stage was submitted (each job writes its log), not one per driver.
    let logs = std::fs::read_dir(p.path().join("cache/jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count();
    assert_eq!(logs, 3, "one Slurm job per stage");
}

#[test]
fn gpu_stages_ask_slurm_for_gres() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "g", kind: "fake", config: (gpu: true, value: "gres")),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    p.ok(&["build", "f:g"]);
    let runs = slurm_runs(&p);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let record = scontrol_job(&runs[0].1);
    assert!(record.contains("gpu:1"), "asked for one GPU: {record}");
}

/// A 1-minute limit against a run of ~80 s in checkpointed steps: the job ends in TIMEOUT,
/// is submitted again, and goes on from its checkpoint to the end.
#[test]
fn a_job_past_its_time_limit_is_resubmitted_and_resumes() {
    if !slurm() {
        return;
    }
    // 120 s of steps against a 1-minute limit: slurmctld checks limits every 30 s, so the
    // job is killed between 60 and 90 s, always before it could finish.
    let p = fake_project(
        r#"(name: "long", kind: "fake", config: (steps: 30, sleep_ms: 4000, value: "long")),"#,
        r#"Slurm(kinds: ["fake"], time: "1", poll_ms: 500)"#,
    );
    let r = p.ok(&["build", "f:long"]);
    // No `resubmit` set: resubmitted because the job moved the run on, with the pace seen.
    let said = r
        .stdout
        .lines()
        .find_map(|l| l.split_once("ended TIMEOUT after progress; submitted again (job 2: at "))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("the resubmission: {r:?}"));
    let at: u64 = said.split(' ').next().unwrap().parse().unwrap();
    assert!((10..30).contains(&at), "killed between 60 and 90 s: {said}");
    assert!(
        said.starts_with(&format!("{at} of 30, {at} in this job, about "))
            && said.ends_with(" more at this pace)"),
        "{said}"
    );
    assert!(
        r.stdout.contains("resumed at step "),
        "went on from its checkpoint: {r:?}"
    );
    // Said when it happened, on stderr, not only in the stage's log at the end.
    assert!(
        r.stderr.contains("note: f:long: Slurm job ")
            && r.stderr
                .contains("ended TIMEOUT after progress; submitted again (job 2: at "),
        "{r:?}"
    );
    // The stage's time is both jobs', 60 s and more, not the last job's.
    assert!(r.stdout.contains("(2 jobs, "), "{r:?}");
    let secs: f64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("built   f:long ("))
        .and_then(|t| t.split('s').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the stage's time: {r:?}"));
    assert!(secs >= 60.0, "{secs} s: {r:?}");
    // The killed job's log holds its progress up to the kill, written as it went.
    let logs: Vec<String> = std::fs::read_dir(p.path().join("cache/jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .any(|l| !l.contains("built f:long") && l.contains("pipe-progress\t")),
        "progress lines in the killed job's log: {logs:?}"
    );
    let runs = slurm_runs(&p);
    assert_eq!(runs.len(), 1, "only the second job got to store: {runs:?}");
    let out = std::fs::read_to_string(p.outputs("f:long").join("out.txt")).unwrap();
    assert!(out.starts_with("config "), "{out}");
}

/// `child`'s output once it ends; killed (and the test failed) past `secs`.
fn finish_within(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {secs} s:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// A folder put first on PATH holding a `squeue` that runs `script`.
fn with_squeue(p: &Project, script: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = p.path().join("fake-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("squeue");
    std::fs::write(&file, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_failing_squeue_is_said_and_the_jobs_are_still_followed_to_their_end() {
    if !slurm() {
        return;
    }
    let p = fake_project(
        r#"(name: "v", kind: "fake", config: (value: "v", sleep_ms: 1500)),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    // Slurm before 20.11 has no `--me`: such a squeue must not be needed.
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v squeue"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let path = with_squeue(
        &p,
        &format!(
            "for a in \"$@\"; do [ \"$a\" = --me ] && {{ echo \"squeue: unrecognized option '--me'\" >&2; exit 1; }}; done\nexec {} \"$@\"",
            real.trim()
        ),
    );
    let out = finish_within(
        p.cmd(&["build", "f:v"])
            .env("PATH", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        60,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("warning"),
        "an old squeue is enough: {stderr}"
    );
    assert_eq!(slurm_runs(&p).len(), 1);

    // A squeue that always fails: said, and the job is followed by its exit file.
    let path = with_squeue(
        &p,
        "echo 'squeue: error: Unable to contact slurm controller' >&2\nexit 1",
    );
    let out = finish_within(
        p.cmd(&["build", "f:v", "--force", "f:v"])
            .env("PATH", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        60,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("built   f:v"), "{stdout}");
    assert_eq!(
        stderr.matches("warning: squeue failed (exit 1): squeue: error: Unable to contact slurm controller").count(),
        1,
        "said once in a build under a minute: {stderr}"
    );
    assert_eq!(slurm_runs(&p).len(), 1);
}

#[test]
fn a_missing_sbatch_is_said_once_before_anything_runs_and_a_refusal_keeps_its_lines_together() {
    // Neither needs a cluster: no sbatch at all, then one that refuses every job.
    use std::os::unix::fs::PermissionsExt;
    let p = fake_project(
        r#"(name: "a", kind: "fake", config: (value: "a")), (name: "b", kind: "fake", config: (value: "b")),"#,
        r#"Slurm(kinds: ["fake"], poll_ms: 200)"#,
    );
    let bin = p.path().join("no-slurm");
    std::fs::create_dir_all(&bin).unwrap();
    let r = p
        .cmd(&["build", "--executor", "slurm", "f:a", "f:b"])
        .env("PATH", &bin)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("cannot run `sbatch`").count(), 1, "{stderr}");
    assert!(p.ran().is_empty());

    let sbatch = bin.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'slurm 22.05.8'; exit 0; }\n\
         echo 'sbatch: error: Batch job submission failed:' >&2\n\
         echo 'Requested partition configuration not available now' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let r = p
        .cmd(&["build", "-k", "--executor", "slurm", "f:a"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "sbatch refused the job: sbatch: error: Batch job submission failed:\n    Requested partition configuration not available now"
        ),
        "{stdout}"
    );
}

#[test]
fn a_cuda_stage_submitted_from_a_machine_without_a_gpu_is_keyed_for_cuda_and_asks_for_one() {
    // The driver here has no GPU (nor has CI): a stage that asks for CUDA is keyed for
    // CUDA and submitted with a GPU request, not keyed for the CPU or refused; the node
    // checks that it really got a working GPU (the cluster's GPUs are fake).
    if !slurm() {
        return;
    }
    let p = Project::new();
    learnable(&p.path().join("src-data"), 30, 20);
    p.write(
        "pipelines/s.ron",
        &TRAIN_STUDY.replace("seed: 5)", "seed: 5, device: Cuda)"),
    );
    p.write("slurm.ron", "Slurm(poll_ms: 200)");
    let r = p.pipe(&["build", "-k", "s:mlp"]);
    let status = p.ok(&["status", "--json", "s:mlp"]).stdout;
    let runs = slurm_runs(&p);
    assert!(!runs.is_empty(), "submitted: {r:?}");
    for (stage, id) in &runs {
        let record = scontrol_job(id);
        assert!(
            record.contains("gpu:1"),
            "{stage} asked for one GPU: {record}"
        );
    }
    if Path::new("/dev/nvidia0").exists() {
        assert_eq!(r.code, 0, "{r:?}");
    } else {
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout.contains("this stage is keyed for CUDA (cuda-")
                && r.stdout.contains("was given no working GPU"),
            "the node's check: {r:?}"
        );
    }
    // The key is the CUDA key: asking for the CPU instead keys every training apart.
    let cpu = p
        .ok(&["--device", "cpu", "status", "--json", "s:mlp"])
        .stdout;
    let key = |s: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "train")
            .map(|r| r["key"].as_str().unwrap().to_string())
            .collect()
    };
    let (cuda_keys, cpu_keys) = (key(&status), key(&cpu));
    assert_eq!(cuda_keys.len(), 2);
    assert!(
        cuda_keys.iter().all(|k| !cpu_keys.contains(k)),
        "{cuda_keys:?} {cpu_keys:?}"
    );
}
