//! Writing cache files so that a kill at any moment leaves the old file or the new one, and
//! the small facts of this machine and process that the cache's file names carry.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::super::memo::Stamp;

/// Removes, under `dir`, the temporary files of [`write_atomic`] calls that were
/// interrupted: those of this machine's processes that no longer exist, and any older than
/// a day (another node's, on a shared cache). `skip` folders are not entered, nor any below
/// `depth`.
pub fn remove_stale_tmp_files(dir: &Path, skip: &[&str], depth: usize) {
    let here = host_name();
    let walk = walkdir::WalkDir::new(dir)
        .max_depth(depth)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !skip.contains(&&*e.file_name().to_string_lossy()));
    for e in walk.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let mut parts = stem.rsplitn(4, '~');
        let (Some(_seq), Some(pid), Some(host), Some(_)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let dead = host == here
            && pid.parse::<u32>().is_ok_and(|p| {
                p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()
            });
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 24 * 3600);
        if e.file_type().is_file() && (dead || old) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_stamped(path, bytes).map(|_| ())
}

/// As [`write_atomic`], returning the stamp of the file written (a rename keeps it).
pub(super) fn write_atomic_stamped(path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}~{}~{}~{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        host_name(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        let stamp = Stamp::of(&f.metadata()?);
        drop(f);
        fs::rename(&tmp, path)?;
        Ok(stamp)
    })();
    // A full disk leaves nothing behind, and its error names the file.
    written.map_err(|e: io::Error| {
        let _ = fs::remove_file(&tmp);
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    })
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This machine's name, as a file name may hold it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).to_string()
    } else {
        String::new()
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

pub(super) fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
