//! `gc`: what no current pipeline reaches goes, entries first, then what only they used.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;

use super::files::{dir_size, write_atomic};
use super::{read_index, Cache};

/// What a collection removed (or would remove).
pub struct Swept {
    /// Each entry's key, and the stage that built it where the entry could be read.
    pub entries: Vec<(String, Option<String>)>,
    /// Entries, objects, scratch folders and locks together.
    pub bytes: u64,
}

impl Cache {
    /// Removes every entry whose key is not in `keep`, then every object, scratch folder and
    /// index record no kept entry uses. With `dry_run`, finds what it would remove and
    /// removes nothing.
    pub fn gc(&self, keep: &HashSet<String>, dry_run: bool) -> io::Result<Swept> {
        let mut removed = Vec::new();
        let mut freed = 0u64;
        let mut live_objects: HashSet<String> = HashSet::new();
        for e in walkdir::WalkDir::new(self.dir.join("entries"))
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if !e.file_type().is_file() {
                continue;
            }
            let key = e
                .path()
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if keep.contains(&key) {
                if let Some(entry) = self.load_entry(&key) {
                    live_objects.extend(entry.built.outputs.into_iter().map(|o| o.hash));
                    continue;
                }
            }
            freed += e.metadata().map(|m| m.len()).unwrap_or(0);
            // Read before it goes: the list names what each entry was.
            let stage = self.load_entry(&key).map(|e| e.stage);
            if !dry_run {
                fs::remove_file(e.path())?;
            }
            removed.push((key, stage));
        }
        for e in walkdir::WalkDir::new(self.dir.join("objects"))
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if e.file_type().is_file() && !live_objects.contains(&*e.file_name().to_string_lossy())
            {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    fs::remove_file(e.path())?;
                }
            }
        }
        for sub in ["scratch", "locks"] {
            for e in fs::read_dir(self.dir.join(sub))?.flatten() {
                let name = e
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".lock")
                    .to_string();
                if !keep.contains(&name) {
                    // A lock held by a running build is skipped: try_lock fails.
                    if sub == "locks" {
                        match File::open(e.path())
                            .and_then(|f| f.try_lock().map_err(io::Error::other))
                        {
                            Ok(()) => {}
                            Err(_) => continue,
                        }
                    }
                    freed += dir_size(&e.path());
                    if dry_run {
                        continue;
                    }
                    if e.path().is_dir() {
                        fs::remove_dir_all(e.path())?;
                    } else {
                        fs::remove_file(e.path())?;
                    }
                }
            }
        }
        if dry_run {
            return Ok(Swept {
                entries: removed,
                bytes: freed,
            });
        }
        {
            let path = self.dir.join("index.json");
            let mut idx = self.index.lock().unwrap();
            let mut on_disk = read_index(&path);
            on_disk.extend(std::mem::take(&mut idx.1));
            on_disk.retain(|_, r| keep.contains(&r.key));
            *self.index_stamp.lock().unwrap() = None;
            write_atomic(&path, &serde_json::to_vec(&on_disk)?)?;
            idx.0 = on_disk;
        }
        self.clean_tmp();
        self.memo.prune();
        let _ = fs::remove_dir_all(self.dir.join(super::super::noop::DIR));
        Ok(Swept {
            entries: removed,
            bytes: freed,
        })
    }
}
