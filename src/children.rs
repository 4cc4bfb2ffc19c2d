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

/// `CUDA_VISIBLE_DEVICES` for a child handed `devices` as this process numbers them: mapped
/// through this process's own `CUDA_VISIBLE_DEVICES`, so the child sees exactly those.
pub fn cuda_visible(devices: &[usize]) -> String {
    let list: Vec<String> = devices.iter().map(|g| g.to_string()).collect();
    visible(&list, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref())
}

/// The devices handed to a child, in the numbering this process sees: this process's
/// own `CUDA_VISIBLE_DEVICES` maps them on to the machine's.
fn visible(indices: &[String], outer: Option<&str>) -> String {
    match outer {
        Some(outer) if !outer.trim().is_empty() => {
            let outer: Vec<&str> = outer.split(',').map(str::trim).collect();
            indices
                .iter()
                .map(|i| {
                    i.parse::<usize>()
                        .ok()
                        .and_then(|i| outer.get(i).map(|s| s.to_string()))
                        .unwrap_or_else(|| i.clone())
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => indices.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_mapped_through_this_process_visible_list() {
        assert_eq!(visible(&["0".into(), "1".into()], None), "0,1");
        assert_eq!(visible(&["1".into()], Some("2,3")), "3");
        assert_eq!(visible(&["0".into()], Some("")), "0");
    }
}
