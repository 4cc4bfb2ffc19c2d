//! The no-op shortcut: a `build` or `status` that finds every stage it looked at fresh
//! records that answer with everything it rested on, and the next run of the same command
//! checks those things and, when none has moved, gives the same answer without expanding
//! the plan or computing a key. On a study of a thousand stages that is most of a no-op.
//!
//! The answer of the full path is a function of what is in this table, so a record whose
//! every row still matches gives the full path's answer:
//!
//! | what the answer rested on              | held in the record as                          |
//! |----------------------------------------|------------------------------------------------|
//! | the pipeline files                     | digest: each `*.ron` path and text, in order    |
//! | pipe itself                            | digest: its version and its executable's stamp  |
//! | the stage kinds                        | digest: name and version of each             |
//! | facts of the machine the kinds read    | the [`StageKind::environment`] of each kind    |
//! |                                        | in the answer (whether CUDA works), asked again |
//! | the environment                        | digest: every `PIPE_*` variable, sorted         |
//! | the command                            | digest and file name: command and selection     |
//! | project root and cache folder          | digest: their paths                             |
//! | the cache index                        | watched: the stamp of `index.json` as read      |
//! | output objects, target files, files    | watched: their stamps when the memo hashed them |
//! | read from outside the cache            |                                                 |
//! | the folders those outside files sit in | watched: their stamps (a file added there)      |
//!
//! A stamp is (size, mtime, inode), the hash memo's own test for an unchanged file. A
//! record is written when the full path found everything fresh, or (`build`) built what
//! was not, without a failure; anything that does not match, or a record that cannot be
//! read, sends the command down the full path. Records are written without fsync: a torn one does not
//! parse, which costs only the full path.
//!
//! [`StageKind::environment`]: crate::stage::StageKind::environment

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::memo::Stamp;
use crate::stage::StageKind;

/// The records' folder under the cache.
pub const DIR: &str = "noop";

/// One fresh stage of a recorded answer, with what `status` prints of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FreshStage {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub target: Option<String>,
}

/// What the command answered: its stages, in the order printed, and the targets it
/// reported (`build`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Answer {
    pub stages: Vec<FreshStage>,
    pub targets: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    digest: String,
    /// (kind, environment) for each kind in the answer that reads the machine: asked again
    /// on recall, and only for these (probing CUDA is no cost a `command` study should pay).
    environment: Vec<(String, String)>,
    watched: Vec<(PathBuf, Stamp)>,
    answer: Answer,
}

/// One command as the shortcut sees it.
pub struct Question<'a> {
    pub root: &'a Path,
    pub cache_dir: &'a Path,
    /// `build` or `status`: each has records of its own.
    pub command: &'a str,
    /// The targets or stages named on the command line.
    pub selection: &'a [String],
    pub kinds: &'a [&'static dyn StageKind],
}

impl Question<'_> {
    fn record_path(&self) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(self.command.as_bytes());
        for s in self.selection {
            h.update(b"\0");
            h.update(s.as_bytes());
        }
        let name = h.finalize().to_hex();
        self.cache_dir
            .join(DIR)
            .join(format!("{}.json", &name.as_str()[..16]))
    }

    /// blake3 over the digest rows of the table above, with `files` the pipeline files
    /// ([`read_files`](crate::pipeline::read_files)) the answer was computed from.
    pub fn digest(&self, files: &[(PathBuf, String)]) -> Option<String> {
        let mut h = blake3::Hasher::new();
        let mut field = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(b"pipe-noop-v1");
        field(env!("CARGO_PKG_VERSION").as_bytes());
        let exe = Stamp::of_path(&std::env::current_exe().ok()?).ok()?;
        field(&serde_json::to_vec(&exe).ok()?);
        for k in self.kinds {
            field(k.name().as_bytes());
            field(&k.version().to_le_bytes());
        }
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .filter(|(k, _)| k.starts_with("PIPE_"))
            .collect();
        for (k, v) in &vars {
            field(k.as_bytes());
            field(v.as_bytes());
        }
        field(self.command.as_bytes());
        field(&(self.selection.len() as u64).to_le_bytes());
        for s in self.selection {
            field(s.as_bytes());
        }
        field(self.root.as_os_str().as_encoded_bytes());
        field(self.cache_dir.as_os_str().as_encoded_bytes());
        for (path, text) in files {
            field(path.as_os_str().as_encoded_bytes());
            field(text.as_bytes());
        }
        Some(h.finalize().to_hex().to_string())
    }

    /// The recorded answer, if the record is there, was made under `digest` and nothing it
    /// watched has moved. Reads only: creates nothing.
    pub fn recall(&self, digest: &str) -> Option<Answer> {
        let bytes = fs::read(self.record_path()).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        if record.digest != digest || !unmoved(&record.watched) {
            return None;
        }
        for (kind, env) in &record.environment {
            let k = self.kinds.iter().find(|k| k.name() == kind)?;
            if k.environment().as_ref() != Some(env) {
                return None;
            }
        }
        Some(record.answer)
    }

    /// Records `answer`, which the full path found with `cache` under `digest`: everything
    /// in it fresh (or just built). Does nothing when the answer rests on more than can be
    /// watched (`gc` rewrote the index, or a file moved while it was being looked at).
    pub fn remember(&self, digest: &str, cache: &Cache, answer: Answer) {
        let Some(index) = cache.index_stamp() else {
            return;
        };
        // Each path's last stamp; a path found with two stamps, without this process having
        // written it in between, moved under the answer.
        let mut latest: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
        for look in cache.memo.seen() {
            match latest.get(&look.path) {
                Some(before) if !look.written && *before != look.stamp => return,
                _ => {
                    latest.insert(look.path, look.stamp);
                }
            }
        }
        latest.insert(cache.dir.join("index.json"), index);
        let environment = self
            .kinds
            .iter()
            .filter(|k| answer.stages.iter().any(|s| s.kind == k.name()))
            .filter_map(|k| Some((k.name().to_string(), k.environment()?)))
            .collect();
        let record = Record {
            digest: digest.to_string(),
            environment,
            watched: latest.into_iter().collect(),
            answer,
        };
        let path = self.record_path();
        let Ok(bytes) = serde_json::to_vec(&record) else {
            return;
        };
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let written = fs::create_dir_all(self.cache_dir.join(DIR))
            .and_then(|()| fs::write(&tmp, &bytes))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// Whether every watched path still has its stamp, checked on every core (a thousand
/// `stat`s are most of what a shortcut answer costs).
fn unmoved(watched: &[(PathBuf, Stamp)]) -> bool {
    crate::par::map_chunks(watched, 128, |part| {
        part.iter()
            .all(|(p, s)| Stamp::of_path(p).is_ok_and(|now| now == *s))
    })
    .into_iter()
    .all(|same| same)
}
