//! Per-key file locks: one process builds a key at a time (`locks/<key>.lock`), and one
//! driver submits its Slurm job (`locks/<key>.submit`); the operating system drops a lock
//! with the process that held it, so a killed build never leaves one behind.

use std::fs::{File, OpenOptions};
use std::io;

use super::Cache;

impl Cache {
    /// Blocks until no other thread or process is building `key`. The lock is released when
    /// the returned file is dropped (or the process dies).
    pub fn lock(&self, key: &str) -> io::Result<File> {
        self.lock_as(key, "lock", &|_| {})
    }

    /// The lock `locks/<key>.<what>`; `waiting` is told who holds it before this blocks.
    pub fn lock_as(&self, key: &str, what: &str, waiting: &dyn Fn(&str)) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("locks").join(format!("{key}.{what}")))?;
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        waiting(&self.holder(key));
        f.lock()?;
        Ok(f)
    }

    /// Who is building `key` elsewhere, in words: the Slurm job a build submitted for it,
    /// else another build.
    pub fn holder(&self, key: &str) -> String {
        match std::fs::read_to_string(self.dir.join("jobs").join(format!("{key}.job"))) {
            Ok(id) if !id.trim().is_empty() => format!("Slurm job {}", id.trim()),
            _ => "another build".to_string(),
        }
    }
}
