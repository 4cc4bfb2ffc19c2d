//! What Slurm says of jobs: the queue (`squeue`, one call for all), a finished job's state
//! (`sacct`, else `scontrol show job`, else the completion file `sacct -c` reads), the exit
//! code a job script recorded, and the size of the largest node.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Slurm's states of a job that is over.
pub(super) const TERMINAL: [&str; 10] = [
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
];

/// The most CPUs any node of the cluster has, asked once.
pub(super) fn node_cpus() -> Option<usize> {
    static CPUS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        let out = Command::new("sinfo")
            .args(["-h", "-o", "%c"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches('+').parse::<usize>().ok())
            .max()
    })
}

/// Stage key → (job id, state) of every job in the queue that a build submitted for a
/// key of this cache (`pipe status` shows them); empty without Slurm or job files.
pub fn queued_by_key(jobs_dir: &Path) -> HashMap<String, (String, String)> {
    let Ok(rd) = std::fs::read_dir(jobs_dir) else {
        return HashMap::new();
    };
    let files: Vec<(String, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let key = name.strip_suffix(".job")?.to_string();
            let id = std::fs::read_to_string(e.path()).ok()?.trim().to_string();
            Some((key, id))
        })
        .collect();
    if files.is_empty() {
        return HashMap::new();
    }
    let Ok(queue) = squeue() else {
        return HashMap::new();
    };
    files
        .into_iter()
        .filter_map(|(key, id)| {
            let state = queue.get(&id)?.clone();
            (!TERMINAL.contains(&state.as_str())).then_some((key, (id, state)))
        })
        .collect()
}

/// Every job of this user in the queue: id → state. The user by number (`--user`, in every
/// Slurm), not `--me`, which Slurm before 20.11 refuses.
pub(super) fn squeue() -> Result<HashMap<String, String>, String> {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i|%T"])
        .arg(format!("--user={uid}"))
        .output()
        .map_err(|e| format!("cannot run squeue: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!(
            "squeue failed ({}): {said}",
            out.status
                .code()
                .map_or("killed".to_string(), |c| format!("exit {c}"))
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(id, state)| (id.trim().to_string(), state.trim().to_string()))
        .collect())
}

/// A finished job's state: `sacct` where accounting is kept, else `scontrol show job`, else
/// the job-completion file `sacct -c` reads. `None` while none of them knows it.
pub(super) fn final_state(id: &str) -> Option<String> {
    let first_word = |out: std::process::Output| -> Option<String> {
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let state = text.lines().next()?.split_whitespace().next()?.to_string();
        TERMINAL
            .iter()
            .any(|t| state.starts_with(t))
            .then_some(state)
    };
    let sacct = |extra: &[&str]| {
        Command::new("sacct")
            .args(extra)
            .args(["-j", id, "-X", "-n", "-P", "-o", "State"])
            .output()
            .ok()
            .and_then(first_word)
    };
    sacct(&[])
        .or_else(|| {
            let out = Command::new("scontrol")
                .args(["show", "job", "-o", id])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let state = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("JobState="))?
                .to_string();
            TERMINAL.contains(&state.as_str()).then_some(state)
        })
        .or_else(|| sacct(&["-c"]))
}

pub(super) fn exit_file(jobs_dir: &Path, id: &str) -> Option<i32> {
    std::fs::read_to_string(jobs_dir.join(format!("{id}.exit")))
        .ok()?
        .trim()
        .parse()
        .ok()
}
