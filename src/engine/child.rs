//! Stages whose end can take a whole process down — burn aborts when an allocation fails,
//! a CUDA fault kills the process, native code can crash — run as a child process of their
//! own: `pipe stage-job`, what a Slurm job runs on its node, here on this machine. Such an
//! end then fails that stage alone; its siblings, the build and its summary go on. Other
//! stages (download, normalize, report) run in this process, which costs them nothing.
//!
//! The child stores its outputs in the same cache under the key's lock, as any build
//! would; this side then reads the entry. While it runs it writes its progress as tagged
//! lines on stdout, which this side forwards to the display; its other output is the
//! stage's log. The child is in a process group of its own (an interrupt stops it with
//! the rest) and dies with the thread that waits for it (`PR_SET_PDEATHSIG`), so a
//! `kill -9` of the build leaves no training behind holding the key's lock.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::executor::{run_stage, Env, Executor, Failure, Job, Ran};
use crate::stage::Progress;

/// The tag of a progress line on the child's stdout.
const TAG: &str = "\u{1}pipe-progress\t";

/// Exit codes of `pipe stage-job` beyond 0 (built) and 1 (the stage failed).
pub const EXIT_IO: u8 = 3;
pub const EXIT_CORRUPT_INPUT: u8 = 4;

/// Runs [`own_process`](crate::stage::StageConfig::own_process) stages as `bin stage-job`.
pub struct ChildProcess {
    bin: PathBuf,
    /// The global options the child needs to see what this build sees (project, cache,
    /// device), before the subcommand.
    global: Vec<OsString>,
}

impl ChildProcess {
    pub fn new(bin: PathBuf, global: Vec<OsString>) -> Self {
        Self { bin, global }
    }
}

impl Executor for ChildProcess {
    fn run(&self, env: &Env, job: &Job) -> Result<Ran, Failure> {
        if !env.plan.variant(job.node).parsed.config.own_process() {
            return run_stage(env, job);
        }
        let id = &env.plan.nodes[job.node].id;
        let key = job.key_inputs.key();
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.global)
            .args([
                "stage-job",
                id.as_str(),
                "--key",
                key.as_str(),
                "--progress-lines",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if job.forced {
            cmd.arg("--force");
        }
        cmd.args(["--threads", &job.resources.cpus.max(1).to_string()]);
        if !job.gpus.is_empty() {
            // The child numbers its GPUs 0..n, as a Slurm job does.
            cmd.env(
                "CUDA_VISIBLE_DEVICES",
                crate::children::cuda_visible(job.gpus),
            );
        }
        die_with_parent(&mut cmd);
        let mut child = crate::children::spawn(&mut cmd).map_err(|e| Failure {
            message: format!("cannot start {}: {e}", self.bin.display()),
            io: true,
            ..Failure::default()
        })?;
        crate::children::stage_started(id);
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut log = String::new();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let Ok(line) = line else { break };
            match line.strip_prefix(TAG) {
                Some(p) => forward(p, job.progress),
                None => {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        }
        let status = child.wait();
        crate::children::forget_pid(child.id());
        crate::children::stage_ended(id);
        let stderr = stderr.join().unwrap_or_default();
        let status = status.map_err(|e| Failure {
            message: format!("cannot wait for the stage's process: {e}"),
            io: true,
            ..Failure::default()
        })?;
        // The stage's log, then the end of what its process said on stderr: a message
        // that is one line in the summary, its context under the stage's line.
        let fail = |message: String| Failure {
            message,
            log: format!("{log}{}", tail(&stderr, 20)),
            ..Failure::default()
        };
        let last_words = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!("; it said last: {}", l.trim()))
            .unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return Err(fail(format!(
                "its process was killed by {}{last_words}",
                signal_name(sig),
            )));
        }
        let code = status.code().unwrap_or(1) as u8;
        let said = last_said(&stderr, id)
            .unwrap_or_else(|| format!("its process exited with {code}{last_words}"));
        match code {
            // Past this process's index, which may hold an earlier run of the same key.
            0 => match env.cache.stored_entry(&key) {
                Some(entry) => Ok(Ran {
                    built: entry.built,
                    log: entry.log,
                    ran: !log.lines().any(|l| l == format!("fresh {id}")),
                    along: Vec::new(),
                }),
                None => Err(fail("its process ended well but stored no outputs".into())),
            },
            EXIT_IO => Err(Failure {
                io: true,
                ..fail(said)
            }),
            EXIT_CORRUPT_INPUT => Err(Failure {
                corrupt_input: true,
                ..fail(said)
            }),
            _ => Err(fail(said)),
        }
    }
}

/// Why a `stage-job` for stage `id` said it failed, from what it wrote on stderr (a local
/// child's, or a Slurm job's log).
pub fn last_said(stderr: &str, id: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix(&format!("failed {id}: "))
                .or_else(|| l.strip_prefix("error: "))
        })
        .map(str::to_string)
}

/// The child gets SIGKILL when the thread that started it ends, which it does only when
/// this process dies (it waits for the child).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody waits for us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGABRT => {
            "SIGABRT (it aborted: an allocation that failed, or native code that gave up)".into()
        }
        libc::SIGKILL => "SIGKILL (the kernel's out-of-memory killer, or a user)".into(),
        libc::SIGSEGV => "SIGSEGV (a crash in native code)".into(),
        libc::SIGBUS => "SIGBUS (a crash in native code, or a file it mapped was cut short)".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return String::new();
    }
    format!(
        "stderr of the stage's process:\n{}\n",
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

fn forward(line: &str, progress: &dyn Progress) {
    let mut parts = line.splitn(4, '\t');
    let (Some(done), Some(total), Some(bytes), Some(message)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(done), Ok(total)) = (done.parse(), total.parse()) else {
        return;
    };
    if bytes == "b" {
        progress.set_bytes(done, total, message);
    } else {
        progress.set(done, total, message);
    }
}

/// A line a `stage-job` wrote (read from its stdout, or from a Slurm job's log): its
/// progress forwarded, `message` prefixed with `prefix`, when it is a progress line.
pub fn forward_tagged(line: &str, progress: &dyn Progress, prefix: &str) -> bool {
    let Some(p) = line.strip_prefix(TAG) else {
        return false;
    };
    let mut parts = p.splitn(4, '\t');
    if let (Some(done), Some(total), Some(_), Some(message)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        if let (Ok(done), Ok(total)) = (done.parse(), total.parse()) {
            progress.set(done, total, &format!("{prefix}{message}"));
        }
    }
    true
}

/// The (done, total) of a tagged progress line counted in steps (a training's epochs), not
/// bytes: how far a Slurm job got, to tell whether submitting it again moves the run on.
pub fn tagged_counts(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.strip_prefix(TAG)?.splitn(4, '\t');
    let (done, total, unit) = (parts.next()?, parts.next()?, parts.next()?);
    (unit == "n").then_some(())?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// The message of a progress line, for a job log's tail read by a person.
pub fn untagged(line: &str) -> Option<&str> {
    line.strip_prefix(TAG)?.splitn(4, '\t').nth(3)
}

/// The child's side: progress as tagged lines on stdout, at most ten a second (one a
/// second in a Slurm job's log: `PIPE_PROGRESS_MS`), and every last step, so a fast loop
/// does not spend its time writing them.
#[derive(Default)]
pub struct LineProgress {
    last: Mutex<Option<Instant>>,
}

impl LineProgress {
    fn emit(&self, done: u64, total: u64, bytes: bool, message: &str) {
        let mut last = self.last.lock().unwrap();
        static EVERY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let every = *EVERY.get_or_init(|| {
            std::env::var("PIPE_PROGRESS_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
        });
        if done < total && last.is_some_and(|t| t.elapsed() < Duration::from_millis(every)) {
            return;
        }
        *last = Some(Instant::now());
        let message = message.replace(['\n', '\r'], " ");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{TAG}{done}\t{total}\t{}\t{message}",
            if bytes { "b" } else { "n" }
        );
        let _ = out.flush();
    }
}

impl Progress for LineProgress {
    fn set(&self, done: u64, total: u64, message: &str) {
        self.emit(done, total, false, message);
    }
    fn set_bytes(&self, done: u64, total: u64, message: &str) {
        self.emit(done, total, true, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(u64, u64, String)>>);
    impl Progress for Seen {
        fn set(&self, done: u64, total: u64, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push((done, total, message.to_string()));
        }
    }

    #[test]
    fn progress_lines_are_read_back_and_bad_ones_ignored() {
        let seen = Seen::default();
        forward("3\t10\tn\tepoch 3/10 loss 1.2\tx", &seen);
        forward("not\ta\tnumber\tx", &seen);
        forward("3\t10", &seen);
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![(3, 10, "epoch 3/10 loss 1.2\tx".to_string())]
        );
    }
}
