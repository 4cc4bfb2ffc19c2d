//! A memo of file hashes keyed on (path, size, mtime, inode), so large files (datasets,
//! model weights) are read once, not on every build.
//!
//! The memo is only a shortcut to a hash; it is never part of a key. A file whose size,
//! mtime or inode moved is hashed again. Losing the memo costs time, never correctness, so
//! concurrent processes may overwrite each other's copy.
//!
//! It also remembers every file it was asked about in this process, with its stamp then:
//! what a no-op decision rested on, for [`noop`](super::noop) to check next time.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What says a file (or folder) is the one seen before, short of reading it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Stamp {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

impl Stamp {
    pub fn of_path(path: &Path) -> io::Result<Stamp> {
        Ok(Stamp::of(&std::fs::metadata(path)?))
    }

    pub fn of(meta: &std::fs::Metadata) -> Stamp {
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

/// One look at a path (see [`Memo::seen`]).
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: PathBuf,
    pub stamp: Stamp,
    /// Recorded after this process wrote the file, rather than found as it was.
    pub written: bool,
}

#[derive(Default)]
struct State {
    map: HashMap<PathBuf, Memoed>,
    /// Every path hashed, recorded or watched by this process, in order, with its stamp
    /// then and whether this process had just written it.
    seen: Vec<Seen>,
}

pub struct Memo {
    file: PathBuf,
    state: Mutex<State>,
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
            state: Mutex::new(State {
                map,
                seen: Vec::new(),
            }),
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
        {
            let mut st = self.state.lock().unwrap();
            if let Some(m) = st.map.get(path) {
                if m.stamp == stamp {
                    let hash = m.hash.clone();
                    st.seen.push(Seen {
                        path: path.to_path_buf(),
                        stamp,
                        written: false,
                    });
                    return Ok(hash);
                }
            }
        }
        let hash = hash_uncached(path)?;
        self.remember(path, stamp, hash.clone(), false);
        Ok(hash)
    }

    /// Records a hash computed elsewhere (a file just written into the cache).
    pub fn record(&self, path: &Path, hash: &str) -> io::Result<()> {
        let stamp = Stamp::of(&std::fs::metadata(path)?);
        self.remember(path, stamp, hash.to_string(), true);
        Ok(())
    }

    fn remember(&self, path: &Path, stamp: Stamp, hash: String, written: bool) {
        let mut st = self.state.lock().unwrap();
        st.seen.push(Seen {
            path: path.to_path_buf(),
            stamp: stamp.clone(),
            written,
        });
        st.map.insert(path.to_path_buf(), Memoed { stamp, hash });
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Notes a path whose presence, not content, an answer depended on (the folder a local
    /// dataset is read from: a file added there changes its stamp). Missing: nothing noted.
    pub fn watch(&self, path: &Path) {
        if let Ok(stamp) = Stamp::of_path(path) {
            self.state.lock().unwrap().seen.push(Seen {
                path: path.to_path_buf(),
                stamp,
                written: false,
            });
        }
    }

    /// Every look this process took at a path (hashed, recorded or watched), in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Drops entries for files that no longer exist (after `gc`).
    pub fn prune(&self) {
        self.state.lock().unwrap().map.retain(|p, _| p.exists());
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the memo atomically if anything was added.
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.state.lock().unwrap().map)?;
        crate::engine::cache::write_atomic(&self.file, &bytes)
    }
}

/// blake3 of a file's bytes, memory-mapped and multi-threaded for large files.
pub fn hash_uncached(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize().to_hex().to_string())
}

impl crate::stage::FileDigest for Memo {
    fn hash_file(&self, path: &Path) -> io::Result<String> {
        Memo::hash_file(self, path)
    }
    fn watch(&self, dir: &Path) {
        Memo::watch(self, dir)
    }
}
