//! `pipe verify`: every object of the cache read again, past the hash memo (which trusts a
//! file's size, mtime and inode, so a flipped byte with its mtime put back goes unseen until
//! a stage reads the file). A week of GPU time may sit in these files: this is the check to
//! run after a disk scare, a copy between machines, or before handing in results. Sealed
//! checkpoints in `scratch/` are checked too.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;

use super::cache::{Cache, Entry};
use super::memo::hash_uncached;

/// One damaged thing, and the cache entries (stage, key, output path) that rely on it.
pub struct Damage {
    pub what: String,
    pub path: PathBuf,
    pub users: Vec<(String, String, String)>,
}

pub struct Report {
    pub objects: usize,
    pub bytes: u64,
    pub entries: usize,
    pub damage: Vec<Damage>,
    /// Entries dropped and files removed by `--repair`.
    pub repaired: usize,
}

/// Hashes every object (on every core) against its name and every entry's record of it;
/// with `repair`, removes damaged objects and unreadable entries and drops every entry that
/// relies on a damaged or missing object, so the next build rebuilds those stages.
pub fn verify(cache: &Cache, repair: bool) -> Report {
    let mut entries: Vec<(PathBuf, Option<Entry>)> = Vec::new();
    for e in walkdir::WalkDir::new(cache.dir.join("entries"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "json"))
    {
        let entry = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
        entries.push((e.into_path(), entry));
    }
    // Every object on disk, whoever uses it: its name is its content's blake3.
    let objects: Vec<PathBuf> = walkdir::WalkDir::new(cache.dir.join("objects"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    let bytes = objects
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bad_objects: Vec<(PathBuf, String)> = objects
        .par_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().to_string();
            match hash_uncached(p) {
                Ok(h) if h == name => None,
                Ok(_) => Some((
                    p.clone(),
                    "corrupt object (its blake3 differs from its name)".to_string(),
                )),
                Err(e) => Some((p.clone(), format!("unreadable object ({e})"))),
            }
        })
        .collect();
    let mut users: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    let mut damage = Vec::new();
    for (path, entry) in &entries {
        match entry {
            None => damage.push(Damage {
                what: "unreadable cache entry".into(),
                path: path.clone(),
                users: Vec::new(),
            }),
            Some(e) => {
                for out in &e.built.outputs {
                    users.entry(out.hash.clone()).or_default().push((
                        e.stage.clone(),
                        e.built.key.clone(),
                        out.path.clone(),
                    ));
                }
            }
        }
    }
    for (path, what) in bad_objects {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        damage.push(Damage {
            what,
            users: users.get(&name).cloned().unwrap_or_default(),
            path,
        });
    }
    // Objects an entry names that are not there, or not at the size it recorded.
    let mut seen_missing = std::collections::HashSet::new();
    for (_, entry) in &entries {
        let Some(e) = entry else { continue };
        for out in &e.built.outputs {
            let obj = cache.object_path(&out.hash);
            let what = match fs::metadata(&obj) {
                Err(_) => "missing object".to_string(),
                Ok(m) if m.len() != out.size => {
                    format!(
                        "object of the wrong size ({} bytes, the entry says {})",
                        m.len(),
                        out.size
                    )
                }
                Ok(_) => continue,
            };
            if seen_missing.insert(out.hash.clone()) {
                damage.push(Damage {
                    what,
                    path: obj,
                    users: users.get(&out.hash).cloned().unwrap_or_default(),
                });
            }
        }
    }
    // Sealed folders of unfinished stages (checkpoints): one damaged since would be
    // discarded by the next run anyway; said here, removed with --repair.
    let seals: Vec<PathBuf> = walkdir::WalkDir::new(cache.dir.join("scratch"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == crate::sealed::FILE)
        .filter_map(|e| e.path().parent().map(PathBuf::from))
        .collect();
    for dir in seals {
        if let Err(why) = crate::sealed::check(&dir) {
            damage.push(Damage {
                what: format!("damaged checkpoint: {why}"),
                path: dir,
                users: Vec::new(),
            });
        }
    }
    let mut repaired = 0;
    if repair {
        for d in &damage {
            if fs::remove_file(&d.path).is_ok()
                || (d.path.is_dir() && fs::remove_dir_all(&d.path).is_ok())
            {
                repaired += 1;
            }
            for (_, key, _) in &d.users {
                if cache.remove_entry(key).unwrap_or(false) {
                    repaired += 1;
                }
            }
        }
    }
    Report {
        objects: objects.len(),
        bytes,
        entries: entries.len(),
        damage,
        repaired,
    }
}
