//! Whether a cached object still holds the bytes its name promises: through the memo for a
//! lookup, past it (read in full) before a stage uses an object as its input.

use std::fs;
use std::path::Path;

use rayon::prelude::*;

use super::super::memo::{hash_uncached, Memo};
use super::{object_path, Built, Cache, OutFile};

/// Why `out`'s object in the cache at `dir` is not intact (missing, wrong size, wrong content
/// hash through the memo), or `None`. Changes nothing: `preload` and `precheck` run it
/// ahead, `lookup` acts on it.
pub(super) fn damage(dir: &Path, memo: &Memo, out: &OutFile) -> Option<String> {
    let obj = object_path(dir, &out.hash);
    let meta = match fs::metadata(&obj) {
        Err(_) => return Some("is missing from the cache".into()),
        Ok(m) if m.len() != out.size => {
            return Some(format!("has the wrong size ({} ≠ {})", m.len(), out.size))
        }
        Ok(m) => m,
    };
    match memo.hash_with_meta(&obj, &meta) {
        Ok(h) if h == out.hash => None,
        _ => Some("is corrupt (hash mismatch)".into()),
    }
}

impl Cache {
    fn damage(&self, out: &OutFile) -> Option<String> {
        damage(&self.dir, &self.memo, out)
    }

    /// Checks `out`'s object (unless `precheck` found it intact). A damaged one stays: a
    /// lookup changes nothing on disk (`status` uses it); `store` replaces it on rebuild.
    pub(super) fn check_object(&self, out: &OutFile) -> Result<(), String> {
        if self.checked.lock().unwrap().contains(&out.hash) {
            return Ok(());
        }
        match self.damage(out) {
            None => Ok(()),
            Some(why) => Err(format!("cached output `{}` {why}", out.path)),
        }
    }

    /// Whether `out`'s object is whole, read again past the memo (a command handing its
    /// path out); changes nothing on disk.
    pub fn intact(&self, out: &OutFile) -> Result<(), String> {
        match self.fault(&out.hash, out.size) {
            None => Ok(()),
            Some(why) => Err(format!("cached output `{}` {why}", out.path)),
        }
    }

    /// Reads every object of `entry` again, past the memo, before a stage uses them. A
    /// damaged object is removed and the entry dropped, so the next lookup misses and the
    /// producing stage runs again; the error says which output and why.
    pub fn verify(&self, entry: &Built) -> Result<(), String> {
        let bad = entry
            .outputs
            .par_iter()
            .find_map_any(|out| self.fault(&out.hash, out.size).map(|why| (out, why)));
        let Some((out, why)) = bad else {
            return Ok(());
        };
        self.checked.lock().unwrap().remove(&out.hash);
        self.read_back.lock().unwrap().remove(&out.hash);
        let _ = fs::remove_file(self.object_path(&out.hash));
        let _ = self.remove_entry(&entry.key);
        Err(format!("cached output `{}` {why}", out.path))
    }

    /// What is wrong with the object for `hash` (read in full, past the memo), or `None`
    /// when it is in place with exactly these bytes.
    pub(super) fn fault(&self, hash: &str, size: u64) -> Option<&'static str> {
        let obj = self.object_path(hash);
        match fs::metadata(&obj) {
            Err(_) => Some("is missing from the cache"),
            Ok(m) if m.len() != size => Some("has the wrong size"),
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                let status = (m.ino(), m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec());
                if self.read_back.lock().unwrap().get(hash) == Some(&status) {
                    return None;
                }
                match hash_uncached(&obj) {
                    Ok(h) if h == hash => {
                        self.read_back
                            .lock()
                            .unwrap()
                            .insert(hash.to_string(), status);
                        None
                    }
                    _ => Some("is corrupt (its blake3 no longer matches)"),
                }
            }
        }
    }

    /// Checks, on every core, the objects of the last build of each of `stages`, so that
    /// the lookups that follow (which go in dependency order, one at a time) find them
    /// checked. Only good objects are remembered; a bad one is left for its lookup to report.
    pub fn precheck<'a>(&self, stages: impl Iterator<Item = &'a str>) {
        let outputs: Vec<OutFile> = {
            let idx = self.index.lock().unwrap();
            let checked = self.checked.lock().unwrap();
            stages
                .filter_map(|s| idx.0.get(s).and_then(|r| r.outputs.as_ref()))
                .flatten()
                .filter(|o| !checked.contains(&o.hash))
                .cloned()
                .collect()
        };
        let good = crate::par::map_chunks(&outputs, 128, |part| {
            part.iter()
                .filter(|out| self.damage(out).is_none())
                .map(|out| out.hash.clone())
                .collect::<Vec<_>>()
        });
        self.checked
            .lock()
            .unwrap()
            .extend(good.into_iter().flatten());
    }
}
