//! The Slurm executor: a stage of a chosen kind (train and evaluate by default) becomes one
//! `sbatch --parsable` job that runs this same binary on a node, against the shared cache,
//! for exactly that stage (`pipe stage-job ID --key KEY`): the same key, the same lock, the
//! entry written last. Other stages run in this process.
//!
//! How it follows a job, as Nextflow does: one `squeue --me` per round for all jobs; a job
//! gone from the queue is over, and the exit-code file its script writes as its very last
//! act (`cache/jobs/<job>.exit`) is the last word; without it (the job was killed) the
//! final state comes from `sacct` where accounting exists, else `scontrol show job`. A job
//! briefly missing everywhere is waited for, not failed. A job that ends in TIMEOUT or
//! PREEMPTED after its scratch folder (where training checkpoints) changed is submitted
//! again, so a run longer than the partition's limit goes on from its checkpoint.
//!
//! Settings (partition, account, time, memory, extra arguments, per kind) come from
//! `slurm.ron` in the project root (see [`Settings`]); they never reach a key.

mod query;
mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::cache::{write_atomic, Entry, Lookup};
use super::executor::{Env, Executor, Failure, InProcess, Job, Ran};
pub use query::queued_by_key;
use query::{exit_file, final_state, node_cpus, squeue, TERMINAL};
pub use settings::{Request, Settings, SETTINGS_FILE};

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
enum End {
    /// The exit code its script recorded.
    Exit(i32),
    /// Killed before it could record one: Slurm's state (TIMEOUT, OUT_OF_MEMORY, …).
    State(String),
}

#[derive(Default)]
struct Jobs {
    /// Job id → its ending, once known.
    watched: HashMap<String, Option<End>>,
    /// Job id → rounds it has been missing from the queue with no final state anywhere.
    missing: HashMap<String, u32>,
    /// When a failure of `squeue` was last said.
    queue_failed: Option<Instant>,
    poller: bool,
}

/// The Slurm executor; `local` runs the stages that are not jobs.
pub struct Slurm {
    settings: Settings,
    /// The binary jobs run: this one (it must be on the shared file system).
    bin: PathBuf,
    /// `--device` given to the driver, passed on so a job keys its stage the same way.
    device: Option<String>,
    cache_dir: PathBuf,
    jobs: Mutex<Jobs>,
    changed: Condvar,
}

impl Slurm {
    pub fn new(settings: Settings, cache_dir: &Path, device: Option<String>) -> Slurm {
        let bin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pipe"));
        Slurm {
            settings,
            bin,
            device,
            cache_dir: cache_dir.to_path_buf(),
            jobs: Mutex::new(Jobs::default()),
            changed: Condvar::new(),
        }
    }

    fn is_job(&self, env: &Env, node: usize) -> bool {
        let kind = env.plan.def(node).kind.name();
        self.settings.kinds.iter().any(|k| k == kind)
    }

    /// The stage's entry after its job `id` ended, with which of `then` that job built (its
    /// log says `built ID` for each); `None` when no entry was stored.
    #[allow(clippy::too_many_arguments)]
    fn ended_well(
        &self,
        env: &Env,
        id: &str,
        key: &str,
        then: &[usize],
        started: Instant,
        (jobs_run, jobs_ms): (usize, u64),
        mut log: String,
    ) -> Option<Ran> {
        // Past this process's index, which may hold an earlier run of the same key.
        let Entry {
            mut built,
            log: stage_log,
            ..
        } = env.cache.stored_entry(key)?;
        let job_log =
            std::fs::read_to_string(self.cache_dir.join("jobs").join(format!("{id}.log")))
                .unwrap_or_default();
        let along: Vec<usize> = then
            .iter()
            .copied()
            .filter(|&d| {
                let line = format!("built {}", env.plan.nodes[d].id);
                job_log.lines().any(|l| l == line)
            })
            .collect();
        log.push_str(&format!(
            "Slurm job {id}: {:.1}s{}{}\n{stage_log}",
            started.elapsed().as_secs_f64(),
            if jobs_run > 1 {
                format!(" ({jobs_run} jobs, {:.1}s in all)", jobs_ms as f64 / 1000.0)
            } else {
                String::new()
            },
            if along.is_empty() {
                String::new()
            } else {
                let ids: Vec<&str> = along
                    .iter()
                    .map(|&d| env.plan.nodes[d].id.as_str())
                    .collect();
                format!("; built {} in the same job", ids.join(", "))
            }
        ));
        // The stage's time is all its jobs', not the last one's; of a last job that ran
        // follow-ons too, only the stage's own work, as recorded (the rest is theirs).
        let earlier_ms = jobs_ms.saturating_sub(started.elapsed().as_millis() as u64);
        built.duration_ms = if along.is_empty() {
            built.duration_ms.max(jobs_ms)
        } else {
            built.duration_ms + earlier_ms
        };
        Some(Ran {
            built,
            log,
            ran: true,
            along,
        })
    }

    /// The stage of `job.then` its job runs after it: the one job waiting on it alone (a
    /// training's evaluation), asking no more GPUs. One with siblings is not chained: run one
    /// after another in one job, they would lose the parallelism of a job each.
    fn follow_ons(&self, env: &Env, job: &Job) -> Vec<usize> {
        let gpus_of = |n: usize| {
            let kind = env.plan.def(n).kind.name();
            let asked = env.plan.variant(n).parsed.config.resources().gpus;
            self.settings.request(kind).gpus.unwrap_or(asked)
        };
        let jobs: Vec<usize> = job
            .then
            .iter()
            .copied()
            .filter(|&d| self.is_job(env, d))
            .collect();
        match jobs[..] {
            [d] if gpus_of(d) <= gpus_of(job.node) => vec![d],
            _ => Vec::new(),
        }
    }

    /// Submits `job`, with `then` run after it in the same job, and returns its Slurm job id.
    fn submit(
        &self,
        env: &Env,
        job: &Job,
        then: &[usize],
        jobs_dir: &Path,
        key: &str,
    ) -> Result<String, String> {
        let node = &env.plan.nodes[job.node];
        let kind = env.plan.def(job.node).kind.name();
        let req = self.settings.request(kind);
        let script = jobs_dir.join(format!("{key}.sh"));
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        let device = self
            .device
            .as_deref()
            .map(|d| format!(" --device {}", shell_quote(d)))
            .unwrap_or_default();
        let force = if job.forced { " --force" } else { "" };
        let then: String = then
            .iter()
            .map(|&d| format!(" --then {}", shell_quote(&env.plan.nodes[d].id)))
            .collect();
        let text = format!(
            "#!/bin/sh\n\
             # pipe: stage {id}, key {key}\n\
             PIPE_PROGRESS_MS=1000 {bin} --dir {root} --cache {cache}{device} stage-job {qid} --key {key}{force}{then} --progress-lines\n\
             code=$?\n\
             printf '%s\\n' \"$code\" > {jobs}/\"$SLURM_JOB_ID\".exit.tmp && \
             mv {jobs}/\"$SLURM_JOB_ID\".exit.tmp {jobs}/\"$SLURM_JOB_ID\".exit\n\
             exit $code\n",
            id = node.id,
            bin = q(&self.bin),
            root = q(env.root),
            cache = q(&self.cache_dir),
            qid = shell_quote(&node.id),
            jobs = q(jobs_dir),
        );
        write_atomic(&script, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        let cpus = req.cpus.unwrap_or(if job.resources.cpus > 64 {
            // A stage that would take every core here (CPU training) gets 4, or all a
            // node has where nodes are smaller.
            node_cpus().map_or(4, |n| n.min(4))
        } else {
            job.resources.cpus.max(1)
        });
        let gpus = req.gpus.unwrap_or(job.resources.gpus);
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--job-name=pipe:{}", node.id))
            .arg(format!("--output={}/%j.log", jobs_dir.display()))
            .arg(format!("--chdir={}", env.root.display()))
            .arg(format!("--cpus-per-task={cpus}"));
        if gpus > 0 {
            cmd.arg(format!("--gres=gpu:{gpus}"));
        }
        for (flag, v) in [
            ("--partition", &req.partition),
            ("--account", &req.account),
            ("--time", &req.time),
            ("--mem", &req.mem),
        ] {
            if let Some(v) = v {
                cmd.arg(format!("{flag}={v}"));
            }
        }
        cmd.args(&req.extra).arg(&script);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run sbatch: {e} (is Slurm's client installed?)"))?;
        if !out.status.success() {
            // Each line of a long refusal under the stage's line, not at the margin.
            return Err(format!(
                "sbatch refused the job: {}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .lines()
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
        // `--parsable` prints `id` or `id;cluster`.
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("sbatch answered `{}`, not a job id", text.trim()));
        }
        let _ = write_atomic(&jobs_dir.join(format!("{key}.job")), id.as_bytes());
        Ok(id)
    }

    /// A job another driver submitted for `key` that Slurm still runs: followed, not
    /// submitted again.
    fn adoptable(&self, jobs_dir: &Path, key: &str) -> Option<String> {
        let id = std::fs::read_to_string(jobs_dir.join(format!("{key}.job"))).ok()?;
        let id = id.trim().to_string();
        let queue = squeue().ok()?;
        queue
            .get(&id)
            .filter(|s| !TERMINAL.contains(&s.as_str()))
            .map(|_| id)
    }

    /// Blocks until job `id` has ended, calling `tick` every poll meanwhile.
    fn wait(&'static self, id: &str, tick: &mut dyn FnMut()) -> End {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.watched.insert(id.to_string(), None);
        if !jobs.poller {
            jobs.poller = true;
            std::thread::Builder::new()
                .name("slurm-poller".into())
                .spawn(move || self.poll())
                .expect("spawn the Slurm poller");
        }
        loop {
            if let Some(Some(end)) = jobs.watched.get(id) {
                let end = end.clone();
                jobs.watched.remove(id);
                return end;
            }
            let every = Duration::from_millis(self.settings.poll_ms);
            jobs = self.changed.wait_timeout(jobs, every).unwrap().0;
            drop(jobs);
            tick();
            jobs = self.jobs.lock().unwrap();
        }
    }

    /// One `squeue` a round for every job followed, then the ending of each one gone.
    fn poll(&self) {
        let jobs_dir = self.cache_dir.join("jobs");
        loop {
            std::thread::sleep(Duration::from_millis(self.settings.poll_ms));
            let open = self.followed();
            if open.is_empty() {
                continue;
            }
            // Without the queue, each job's exit file and Slurm's records still tell
            // whether it ended; the failure is said once, then every minute it lasts.
            let queue = match squeue() {
                Ok(q) => Some(q),
                Err(why) => {
                    let mut jobs = self.jobs.lock().unwrap();
                    if jobs
                        .queue_failed
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        eprintln!(
                            "warning: {why}; following the jobs by their exit files and \
                             sacct/scontrol until it answers"
                        );
                        jobs.queue_failed = Some(Instant::now());
                    }
                    None
                }
            };
            let mut ended = Vec::new();
            let mut gone = Vec::new();
            for id in &open {
                let in_queue = queue.as_ref().map(|q| {
                    q.get(id)
                        .is_some_and(|state| !TERMINAL.contains(&state.as_str()))
                });
                match ending(&jobs_dir, id, in_queue) {
                    Some(end) => ended.push((id.clone(), end)),
                    None if in_queue != Some(false) => {}
                    None => gone.push(id.clone()),
                }
            }
            let mut jobs = self.jobs.lock().unwrap();
            for id in gone {
                let rounds = jobs.missing.entry(id.clone()).or_default();
                *rounds += 1;
                // Queue and records both lag now and then: a job is lost only after a
                // minute without a trace.
                if u64::from(*rounds) * self.settings.poll_ms > 60_000 {
                    jobs.watched.insert(
                        id,
                        Some(End::State(
                            "LOST (no trace in squeue, sacct or scontrol)".into(),
                        )),
                    );
                }
            }
            for (id, end) in ended {
                jobs.missing.remove(&id);
                jobs.watched.insert(id, Some(end));
            }
            self.changed.notify_all();
        }
    }

    /// Jobs submitted or adopted whose end is not known yet.
    fn followed(&self) -> Vec<String> {
        let jobs = self.jobs.lock().unwrap();
        jobs.watched
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// How a job ended, `None` while that is not known yet; `in_queue` is `None` when the queue
/// could not be read. The exit code the script wrote is the last word, except a death by
/// signal (code 128 + n): scancel, a time limit and preemption all kill with SIGTERM, and
/// only Slurm's state tells them apart, so such a job waits for that state while Slurm
/// still holds it in the queue.
fn ending(jobs_dir: &Path, id: &str, in_queue: Option<bool>) -> Option<End> {
    match exit_file(jobs_dir, id) {
        Some(code) if code < 128 => Some(End::Exit(code)),
        Some(_) if in_queue == Some(true) => None,
        Some(code) => Some(
            final_state(id)
                .filter(|state| !state.starts_with("COMPLETED"))
                .map_or(End::Exit(code), End::State),
        ),
        None if in_queue == Some(true) => None,
        None => final_state(id).map(End::State),
    }
}

impl Executor for &'static Slurm {
    fn run(&self, env: &Env, job: &Job) -> Result<Ran, Failure> {
        if !self.is_job(env, job.node) {
            return InProcess.run(env, job);
        }
        let fail = |message: String, log: String| Failure {
            message,
            log,
            ..Failure::default()
        };
        let key = job.key_inputs.key();
        let id_of_stage = &env.plan.nodes[job.node].id;
        let jobs_dir = env
            .cache
            .jobs_dir()
            .map_err(|e| fail(format!("cannot create cache/jobs: {e}"), String::new()))?;
        let scratch = env.cache.scratch_dir(&key).map_err(|e| {
            fail(
                format!("cannot create a scratch folder: {e}"),
                String::new(),
            )
        })?;
        // One driver submits a key's job: a second driver started at the same time waits
        // here for the first one's job to end, then finds the entry it wrote.
        let _submitting = env
            .cache
            .lock_as(&key, "submit", &|who| {
                job.progress
                    .set(0, 0, &format!("waiting: {who} is building the same key"));
            })
            .map_err(|e| fail(format!("cannot lock the cache: {e}"), String::new()))?;
        if !job.forced {
            if let Lookup::Hit(built) = env.cache.lookup(id_of_stage, &key) {
                return Ok(Ran {
                    built: *built,
                    log: String::new(),
                    ran: false,
                    along: Vec::new(),
                });
            }
        }
        let then = self.follow_ons(env, job);
        let mut resubmitted = 0;
        // The furthest progress (done of total) an earlier job of this stage reported.
        let mut best: Option<u64> = None;
        let (mut jobs_ms, mut jobs_run) = (0u64, 0usize);
        let mut log = String::new();
        loop {
            let before = listing(&scratch);
            let id = match self.adoptable(&jobs_dir, &key) {
                Some(id) => {
                    log.push_str(&format!(
                        "following Slurm job {id}, submitted by another build\n"
                    ));
                    id
                }
                None => self
                    .submit(env, job, &then, &jobs_dir, &key)
                    .map_err(|e| fail(e, log.clone()))?,
            };
            job.progress.set(0, 0, &format!("Slurm job {id}"));
            let started = Instant::now();
            // The job's log, read as it grows: its progress lines move this stage's.
            let log_path = jobs_dir.join(format!("{id}.log"));
            let prefix = format!("Slurm job {id}: ");
            let mut read = 0usize;
            let mut reached = None;
            let end = self.wait(id.as_str(), &mut || {
                // Only what was appended since the last poll: a long job's log is not read
                // whole every second.
                use std::io::{Read, Seek, SeekFrom};
                let Ok(mut f) = std::fs::File::open(&log_path) else {
                    return;
                };
                let mut new = Vec::new();
                if f.seek(SeekFrom::Start(read as u64)).is_err() || f.read_to_end(&mut new).is_err()
                {
                    return;
                }
                let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                for line in String::from_utf8_lossy(&new[..complete]).lines() {
                    crate::engine::child::forward_tagged(line, job.progress, &prefix);
                    if let Some(at) = crate::engine::child::tagged_counts(line) {
                        reached = Some(at);
                    }
                }
                read += complete;
            });
            jobs_ms += started.elapsed().as_millis() as u64;
            jobs_run += 1;
            // Only a job still running is worth a look from `status` or another build.
            let _ = std::fs::remove_file(jobs_dir.join(format!("{key}.job")));
            let tail = log_tail(&jobs_dir.join(format!("{id}.log")), 20);
            match end {
                End::Exit(0) => {
                    return self
                        .ended_well(env, &id, &key, &then, started, (jobs_run, jobs_ms), log)
                        .ok_or_else(|| {
                            fail(
                                format!("Slurm job {id} ended well but stored no outputs"),
                                tail,
                            )
                        });
                }
                // Killed while running a follow-on, its own stage stored: that stage is built;
                // the build runs what is left of the follow-ons in jobs of their own.
                End::State(state) if env.cache.stored_entry(&key).is_some() => {
                    log.push_str(&format!(
                        "Slurm job {id} ended {state} after storing {id_of_stage}\n"
                    ));
                    return self
                        .ended_well(env, &id, &key, &then, started, (jobs_run, jobs_ms), log)
                        .ok_or_else(|| fail(format!("Slurm job {id} ended {state}"), tail));
                }
                End::Exit(code) if code == i32::from(crate::engine::child::EXIT_CORRUPT_INPUT) => {
                    // As a local child: the job dropped a damaged input; the scheduler's
                    // next round rebuilds it.
                    return Err(Failure {
                        corrupt_input: true,
                        ..fail(
                            format!(
                                "Slurm job {id}: {}",
                                crate::engine::child::last_said(&tail, id_of_stage)
                                    .unwrap_or_else(|| "an input was damaged; it is rebuilt".into())
                            ),
                            tail,
                        )
                    });
                }
                End::Exit(code) => {
                    let said = crate::engine::child::last_said(&tail, id_of_stage)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    return Err(fail(
                        format!("Slurm job {id} failed (exit {code}){said}"),
                        tail,
                    ));
                }
                End::State(state)
                    if (state.starts_with("TIMEOUT") || state.starts_with("PREEMPTED"))
                        && match (self.settings.resubmit, reached) {
                            (Some(most), _) => resubmitted < most && listing(&scratch) != before,
                            (None, Some((done, _))) => done > best.unwrap_or(0),
                            (None, None) => resubmitted < 3 && listing(&scratch) != before,
                        } =>
                {
                    resubmitted += 1;
                    let pace = match (reached, self.settings.resubmit) {
                        (_, Some(most)) => format!("{resubmitted} of {most}"),
                        (Some((done, total)), None) => {
                            // What this job did, against what is left: the jobs still to come.
                            let did = done - best.unwrap_or(0);
                            let more = total.saturating_sub(done).div_ceil(did.max(1));
                            format!(
                                "job {}: at {done} of {total}, {did} in this job, about {more} more at this pace",
                                jobs_run + 1
                            )
                        }
                        (None, None) => format!("{resubmitted} of 3"),
                    };
                    best = reached.map(|(d, _)| d).max(best);
                    let line = format!(
                        "Slurm job {id} ended {state} after progress; submitted again ({pace})"
                    );
                    // Said when it happens, not only in the stage's log at its end.
                    eprintln!("note: {id_of_stage}: {line}");
                    job.progress.set(0, 0, &line);
                    log.push_str(&line);
                    log.push('\n');
                }
                End::State(state) => {
                    return Err(fail(format!("Slurm job {id} ended {state}"), tail));
                }
            }
        }
    }

    fn remote(&self, env: &Env, node: usize) -> bool {
        self.is_job(env, node)
    }

    fn cancel_all(&self) -> Vec<String> {
        let ids = self.followed();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
        ids
    }
}

/// Names, sizes and modification times under `dir`: changes when a run checkpoints.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.into_path(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}

/// The last `lines` lines of a job's log, its progress lines left out but the last one.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last_progress = text
        .lines()
        .rev()
        .find_map(crate::engine::child::untagged)
        .map(|m| format!("(last progress) {m}"));
    let mut all: Vec<&str> = text
        .lines()
        .filter(|l| crate::engine::child::untagged(l).is_none())
        .collect();
    if let Some(p) = &last_progress {
        let at = all
            .iter()
            .position(|l| l.starts_with("failed ") || l.starts_with("error: "))
            .unwrap_or(all.len());
        all.insert(at, p);
    }
    let from = all.len().saturating_sub(lines);
    let mut out = all[from..].join("\n");
    if !out.is_empty() {
        out = format!("last lines of {}:\n{out}", path.display());
    }
    out
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("quick/momentum:fit"), "quick/momentum:fit");
        assert_eq!(
            shell_quote("a:fit[optimizer.lr=0.1]"),
            "'a:fit[optimizer.lr=0.1]'"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
