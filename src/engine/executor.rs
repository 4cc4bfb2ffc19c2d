//! Where a stage runs. The scheduler decides *when* a stage starts (its inputs exist, a
//! slot is free) and hands it to an [`Executor`], which decides *where*: in this process
//! ([`InProcess`]), in a child process ([`super::child`]) or as a Slurm job
//! ([`super::slurm`]).
//!
//! As in Bazel's spawn strategies and Snakemake's executor plugins, the interface is a job
//! in, an ending out. One call runs a job to its end on a worker thread the scheduler
//! gives it; how the executor waits (a thread of its own, one `squeue` for all its jobs)
//! is its business, so the scheduler stays one loop over a channel, and a fake executor
//! (tests/engine.rs drives the real binary; the scheduler's own tests use [`Executor`]
//! fakes) needs a dozen lines.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use super::cache::{now_ms, Built, Cache, Entry, Lookup, RunRecord};
use super::fingerprint::KeyInputs;
use crate::plan::Plan;
use crate::stage::{Input, Progress, Resources, RunCtx};

/// What every job of one build shares.
pub struct Env<'a> {
    pub plan: &'a Plan,
    pub cache: &'a Cache,
    pub root: &'a Path,
}

/// One stage to run, with everything decided for it.
pub struct Job<'a> {
    pub node: usize,
    pub key_inputs: &'a KeyInputs,
    /// Each input's node and its stored outputs.
    pub inputs: &'a [(usize, Built)],
    /// Run even if the key is in the cache (`--force`).
    pub forced: bool,
    /// The slots the scheduler counted for it.
    pub resources: Resources,
    /// GPU device indices handed to it (as CUDA numbers them in the process that runs it);
    /// empty for a CPU stage.
    pub gpus: &'a [usize],
    pub progress: &'a dyn Progress,
    /// Stages of this build that need this one and nothing else still to build, none of
    /// them forced: an executor may run them right after it, where it runs (a Slurm job),
    /// and say so in [`Ran::along`].
    pub then: &'a [usize],
}

/// A job that ended well: its stored outputs and log.
pub struct Ran {
    pub built: Built,
    pub log: String,
    /// `false` when another process had built the key meanwhile.
    pub ran: bool,
    /// Stages of [`Job::then`] this run built too (in the same Slurm job): the scheduler
    /// counts them as built when it reaches them and finds their entries.
    pub along: Vec<usize>,
}

/// A job that ended badly: why, and what it logged.
#[derive(Default)]
pub struct Failure {
    pub message: String,
    pub log: String,
    /// An input's object was found corrupt and its entry dropped: the scheduler rebuilds
    /// that input and runs the stage again, once.
    pub corrupt_input: bool,
    /// The cache or the file system failed (a lock, a work folder, storing the outputs), not
    /// the stage: the build exits 3.
    pub io: bool,
}

pub trait Executor: Sync {
    /// Runs `job` to its end (blocking the calling worker thread).
    fn run(&self, env: &Env, job: &Job) -> Result<Ran, Failure>;
    /// Whether `node` runs off this machine, and so takes none of its CPU and GPU slots.
    fn remote(&self, _env: &Env, _node: usize) -> bool {
        false
    }
    /// Stops everything this executor runs elsewhere (Ctrl-C, SIGTERM); returns what it
    /// stopped, for the message. Stages in this process end with it.
    fn cancel_all(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Every stage as a thread of this process.
pub struct InProcess;

impl Executor for InProcess {
    fn run(&self, env: &Env, job: &Job) -> Result<Ran, Failure> {
        run_stage(env, job)
    }
}

/// Runs one stage here, in a fresh folder, and stores its outputs under the key's lock;
/// `ran: false` when another process built the same key while this one waited for the lock.
/// What a Slurm job runs on its node, too.
pub fn run_stage(env: &Env, job: &Job) -> Result<Ran, Failure> {
    let (plan, cache, root) = (env.plan, env.cache, env.root);
    let (n, ki, inputs, forced) = (job.node, job.key_inputs, job.inputs, job.forced);
    let io_fail = |what: &str, e: std::io::Error| Failure {
        message: format!("{what}: {e}"),
        io: true,
        ..Failure::default()
    };
    let node = &plan.nodes[n];
    let def = plan.def(n);
    let key = ki.key();
    let _lock = cache
        .lock_as(&key, "lock", &|who| {
            job.progress
                .set(0, 0, &format!("waiting: {who} is building the same key"));
        })
        .map_err(|e| io_fail("cannot lock the cache", e))?;
    if !forced {
        if let Lookup::Hit(e) = cache.lookup(&node.id, &key) {
            return Ok(Ran {
                built: *e,
                log: String::new(),
                ran: false,
                along: Vec::new(),
            });
        }
    }
    let tmp = cache
        .tmp_dir(&key)
        .map_err(|e| io_fail("cannot create a work folder", e))?;
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).map_err(|e| io_fail("cannot create a work folder", e))?;
    let mut ctx_inputs = Vec::new();
    for (k, (i, entry)) in inputs.iter().enumerate() {
        // The memo trusts a file's size, mtime and inode; a stage reads every byte of its
        // inputs anyway, so hashing them again first costs little next to the stage.
        if let Err(why) = cache.verify(entry) {
            let _ = std::fs::remove_dir_all(&tmp);
            let up = &plan.nodes[*i].id;
            return Err(Failure {
                message: format!(
                    "input from `{up}`: {why}; its entry was dropped so `{up}` is rebuilt"
                ),
                corrupt_input: true,
                ..Failure::default()
            });
        }
        let dir = tmp.join("in").join(k.to_string());
        cache
            .link_outputs(entry, &dir)
            .map_err(|e| io_fail("cannot lay out inputs", e))?;
        let up = &plan.nodes[*i];
        ctx_inputs.push(Input {
            stage: up.id.clone(),
            kind: plan.def(*i).kind.name(),
            label: up.label.clone(),
            coords: up.coords.clone(),
            key: entry.key.clone(),
            target: plan.def(*i).target.clone(),
            dir,
        });
    }
    let scratch = cache
        .scratch_dir(&key)
        .map_err(|e| io_fail("cannot create a scratch folder", e))?;
    let mut ctx = RunCtx {
        out_dir: out.clone(),
        scratch_dir: scratch.clone(),
        inputs: ctx_inputs,
        target: def.target.clone(),
        root: root.to_path_buf(),
        log: String::new(),
        memo: &cache.memo,
        progress: job.progress,
        gpus: job.gpus.to_vec(),
        threads: job.resources.cpus.max(1),
    };
    let started = now_ms();
    let clock = Instant::now();
    let config = plan.variant(n).parsed.config.clone();
    crate::children::stage_started(&node.id);
    let result = catch_unwind(AssertUnwindSafe(|| {
        in_pool(ctx.threads, &node.id, || config.run(&mut ctx))
    }));
    crate::children::stage_ended(&node.id);
    let mut disk = false;
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if storage_failure(&e) => {
            disk = true;
            Err(format!(
                "the file system refused a write (full, over quota or read-only): {e:#}"
            ))
        }
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    let ms = clock.elapsed().as_millis() as u64;
    let log = std::mem::take(&mut ctx.log);
    let result = result.and_then(|()| match &def.target {
        Some(t) => {
            let name = Path::new(t).file_name().unwrap_or_default();
            if out.join(name).is_file() {
                Ok(())
            } else {
                Err(format!(
                    "the stage did not write its target file `{}`",
                    name.to_string_lossy()
                ))
            }
        }
        None => Ok(()),
    });
    let stored = result.map_err(|m| (m, disk)).and_then(|()| {
        cache
            .store(&node.id, ki, &out, started, ms, log.clone())
            .map_err(|e| {
                (
                    format!("cannot store outputs in {}: {e}", cache.dir.display()),
                    true,
                )
            })
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let outcome = if stored.is_ok() { "built" } else { "failed" };
    let _ = cache.log_run(&RunRecord {
        stage: node.id.clone(),
        key: key.clone(),
        outcome: outcome.into(),
        duration_ms: ms,
        pid: std::process::id(),
        started_unix_ms: started,
        gpus: job.gpus.to_vec(),
        slurm_job: std::env::var("SLURM_JOB_ID").ok(),
    });
    match stored {
        Ok(Entry { built, log, .. }) => {
            let _ = std::fs::remove_dir_all(&scratch);
            Ok(Ran {
                built,
                log,
                ran: true,
                along: Vec::new(),
            })
        }
        // The scratch folder stays: a rerun of the same key resumes from it.
        Err((message, io)) => Err(Failure {
            message,
            log,
            io,
            ..Failure::default()
        }),
    }
}

/// `f` inside a thread pool of its own with `threads` threads: every rayon call the stage
/// makes (burn's kernels, pipe's CPU kernels) runs on exactly the cores the scheduler gave
/// it, whatever else runs in this process, instead of on the global pool's every core.
fn in_pool<R>(threads: usize, id: &str, f: impl FnOnce() -> R + Send) -> R
where
    R: Send,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name({
            let id = id.to_string();
            move |i| format!("{id}#{i}")
        })
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        // Threads cannot be started (a process limit): the stage still runs, on the
        // global pool.
        Err(_) => f(),
    }
}

/// Whether a stage failed because the file system did (full, over quota, read-only), which
/// is the machine's fault and not the stage's: the build exits 3, as for a cache failure.
pub fn storage_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|code| [libc::ENOSPC, libc::EDQUOT, libc::EROFS].contains(&code))
    })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_disk_is_named_and_counted_as_the_machines_failure() {
        let e = crate::stage::write_file(std::path::Path::new("/dev/full"), b"x").unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("cannot write /dev/full: No space left on device"),
            "{text}"
        );
        assert!(super::storage_failure(&e));
        assert!(!super::storage_failure(&anyhow::anyhow!(
            "diverged at epoch 3"
        )));
    }
}
