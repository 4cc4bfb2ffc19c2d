//! A memo of file hashes keyed on (path, size, mtime, inode), so large files (datasets,
//! model weights) are read once, not on every build.
//!
//! The memo is only a shortcut to a hash; it is never part of a key. A file whose size,
//! mtime or inode moved is hashed again. Losing the memo costs time, never correctness, so
//! concurrent processes may overwrite each other's copy.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct Memoed {
    #[serde(flatten)]
    stamp: Stamp,
    hash: String,
}

pub struct Memo {
    file: PathBuf,
    map: Mutex<HashMap<PathBuf, Memoed>>,
    dirty: AtomicBool,
}

impl Memo {
    /// Reads the memo at `file`; a missing or unreadable memo starts empty.
    pub fn load(file: PathBuf) -> Memo {
        let map = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Memo {
            file,
            map: Mutex::new(map),
            dirty: AtomicBool::new(false),
        }
    }

    /// blake3 of the file at `path`, from the memo when its stamp still matches.
    pub fn hash_file(&self, path: &Path) -> io::Result<String> {
        self.hash_with_meta(path, &std::fs::metadata(path)?)
    }

    /// As [`Memo::hash_file`], with the metadata already in hand.
    pub fn hash_with_meta(&self, path: &Path, meta: &std::fs::Metadata) -> io::Result<String> {
        let stamp = Stamp::of(meta);
        if let Some(m) = self.map.lock().unwrap().get(path) {
            if m.stamp == stamp {
                return Ok(m.hash.clone());
            }
        }
        let hash = hash_uncached(path)?;
        self.remember(path, stamp, hash.clone());
        Ok(hash)
    }

    /// Records a hash computed elsewhere (a file just written into the cache).
    pub fn record(&self, path: &Path, hash: &str) -> io::Result<()> {
        let stamp = Stamp::of(&std::fs::metadata(path)?);
        self.remember(path, stamp, hash.to_string());
        Ok(())
    }

    fn remember(&self, path: &Path, stamp: Stamp, hash: String) {
        self.map
            .lock()
            .unwrap()
            .insert(path.to_path_buf(), Memoed { stamp, hash });
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Drops entries for files that no longer exist (after `gc`).
    pub fn prune(&self) {
        self.map.lock().unwrap().retain(|p, _| p.exists());
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the memo atomically if anything was added.
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&*self.map.lock().unwrap())?;
        crate::engine::cache::write_atomic(&self.file, &bytes)
    }
}

/// blake3 of a file's bytes, memory-mapped and multi-threaded for large files.
pub fn hash_uncached(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize().to_hex().to_string())
}
