//! What this process has running, so an interrupt (Ctrl-C, SIGTERM) can stop all of it and
//! say what it stopped: the process group of every child a stage started, and the ids of
//! the stages running here. A child gets a group of its own so that stopping it stops what
//! it started in turn (`sh -c` and its children), and so the terminal's Ctrl-C reaches pipe
//! alone, which then stops them in order.

use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;

static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static RUNNING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Spawns `cmd` as the leader of a new process group, remembered until [`forget`].
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut groups = GROUPS.lock().unwrap();
    let child = cmd.process_group(0).spawn()?;
    groups.push(child.id() as i32);
    Ok(child)
}

/// The child `pid` has ended (and been waited for): its group is no longer ours to stop.
pub fn forget_pid(pid: u32) {
    GROUPS.lock().unwrap().retain(|&g| g != pid as i32);
}

/// Sends SIGTERM to every remembered group, then SIGKILL to what is left after `grace`.
/// Returns how many groups there were.
pub fn stop_all(grace: std::time::Duration) -> usize {
    let groups = GROUPS.lock().unwrap().clone();
    for &g in &groups {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let until = std::time::Instant::now() + grace;
    // SAFETY: as above; signal 0 only asks whether the group still exists.
    while std::time::Instant::now() < until
        && groups.iter().any(|&g| unsafe { libc::kill(-g, 0) } == 0)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for &g in &groups {
        // SAFETY: as above.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    groups.len()
}

pub fn stage_started(id: &str) {
    RUNNING.lock().unwrap().push(id.to_string());
}

pub fn stage_ended(id: &str) {
    let mut r = RUNNING.lock().unwrap();
    if let Some(i) = r.iter().position(|s| s == id) {
        r.remove(i);
    }
}

/// The stages running in this process now.
pub fn running() -> Vec<String> {
    RUNNING.lock().unwrap().clone()
}
