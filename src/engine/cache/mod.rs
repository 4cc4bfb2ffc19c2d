//! The content-addressed cache under `cache/`.
//!
//! ```text
//! cache/objects/ab/<blake3>        every output file, once, read-only
//! cache/entries/ab/<key>.json      one per stage key: outputs, timings, key inputs
//! cache/index.json                 last key built for each stage id (what `explain` diffs against)
//! cache/locks/<key>.lock           held while a key is being built, by any process
//! cache/scratch/<key>/             resumable work of an unfinished stage (checkpoints)
//! cache/tmp/<key>-<pid>-<n>/       a running stage's inputs and outputs, renamed in on success
//! cache/log/runs.jsonl             one line per stage run: what ran, when, how it ended
//! cache/memo.json                  file-hash memo (a shortcut, never a key)
//! cache/noop/<selection>.json      the last all-fresh answer per command (see `noop`)
//! ```
//!
//! Objects are renamed into place before the entry that names them, and the entry is
//! written last, atomically: an interrupted stage never looks fresh.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::fingerprint::{output_hash, KeyInputs};
use super::memo::{hash_uncached, Memo, Stamp};

mod check;
mod files;
mod gc;
mod locks;

use check::damage;
use files::write_atomic_stamped;
pub use files::{host_name, now_ms, remove_stale_tmp_files, write_atomic};
pub use gc::Swept;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OutFile {
    pub path: String,
    pub hash: String,
    pub size: u64,
}

/// What one stage key produced: all a dependant, a target or `status` needs. The index keeps
/// a copy per stage, so a no-op build reads one file, not one entry per stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Built {
    pub key: String,
    pub outputs: Vec<OutFile>,
    pub output_hash: String,
    pub duration_ms: u64,
}

impl Built {
    fn new(key: String, outputs: Vec<OutFile>, duration_ms: u64) -> Built {
        Built {
            key,
            output_hash: output_hash(outputs.iter().map(|o| (o.path.as_str(), o.hash.as_str()))),
            outputs,
            duration_ms,
        }
    }
}

/// The full record of one key, for `explain`, `clean` and `gc`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Entry {
    #[serde(flatten)]
    pub built: Built,
    /// The stage id that built it (informational: the same key may serve several ids).
    pub stage: String,
    pub key_inputs: KeyInputs,
    pub started_unix_ms: u64,
    pub log: String,
}

/// One line of `log/runs.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunRecord {
    pub stage: String,
    pub key: String,
    pub outcome: String,
    pub duration_ms: u64,
    pub pid: u32,
    #[serde(default)]
    pub started_unix_ms: u64,
    /// GPU device indices the stage was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<usize>,
    /// The Slurm job that ran it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct IndexRecord {
    def: String,
    key: String,
    /// The key's outputs (`Built` less what follows from them), so a no-op build finds a
    /// fresh stage here without reading its entry. `None` once the entry is removed
    /// (`clean`) or when written by an older pipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<OutFile>>,
    #[serde(default)]
    ms: u64,
}

impl IndexRecord {
    fn built(&self) -> Option<Built> {
        let outputs = self.outputs.clone()?;
        Some(Built::new(self.key.clone(), outputs, self.ms))
    }
}

type Index = std::collections::BTreeMap<String, IndexRecord>;

pub enum Lookup {
    Hit(Box<Built>),
    Miss,
    /// An entry exists but an object is missing or damaged: rebuild, and say why.
    Corrupt(String),
}

pub struct Cache {
    pub dir: PathBuf,
    pub memo: Memo,
    /// `index.json` as loaded, and this process's changes to it (merged in on save, so two
    /// concurrent builds do not erase each other's records).
    index: std::sync::Mutex<(Index, Index)>,
    /// The stamp of `index.json` as this process last read or wrote it (`None`: none, or
    /// `gc` rewrote it).
    index_stamp: std::sync::Mutex<Option<Stamp>>,
    /// Objects this process has found intact (by `precheck`).
    checked: std::sync::Mutex<HashSet<String>>,
    /// Objects this process has read in full and found intact as a stage's inputs, with
    /// their inode, size and mtime then. The next stage of this build that reads the same
    /// object (500 variants read one dataset) does not hash it again while those hold: the
    /// stages in this process share the dataset as first loaded (`Dataset::shared`) right
    /// after that check, and a stage in a child process checks its inputs itself (ctime
    /// cannot tell: laying out each stage's inputs as hard links changes it).
    read_back: std::sync::Mutex<HashMap<String, (u64, u64, i64)>>,
}

fn object_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join("objects").join(&hash[..2]).join(hash)
}

fn read_index(path: &Path) -> Index {
    read_index_stamped(path).0
}

/// The index, with the stamp of the very file read (`None` when there is none to read).
fn read_index_stamped(path: &Path) -> (Index, Option<Stamp>) {
    let Ok(mut f) = File::open(path) else {
        return (Index::new(), None);
    };
    let stamp = f.metadata().ok().map(|m| Stamp::of(&m));
    let mut bytes = Vec::new();
    if io::Read::read_to_end(&mut f, &mut bytes).is_err() {
        return (Index::new(), None);
    }
    match serde_json::from_slice(&bytes) {
        Ok(index) => (index, stamp),
        Err(_) => (Index::new(), None),
    }
}

/// What opening a cache reads: its hash memo and index. Reading them creates nothing, so
/// it can start before the pipelines are known to load (a failed load leaves no `cache/`).
pub struct Preloaded {
    memo: Memo,
    index: Index,
    index_stamp: Option<Stamp>,
    checked: HashSet<String>,
}

impl Cache {
    /// Also checks the objects of every indexed stage: on a no-op, or after an edit, those
    /// are the objects the lookups will need, and this runs while the pipelines are parsed.
    /// It stops checking once `enough` is set (the plan is parsed and the command waits for
    /// the cache): [`precheck`](Cache::precheck) checks what is left on every core, rather
    /// than the command waiting for this one thread (at N = 500 it waited ~3 ms of ~13).
    pub fn preload(dir: &Path, enough: &AtomicBool) -> Preloaded {
        let (index, index_stamp) = read_index_stamped(&dir.join("index.json"));
        let memo = Memo::load(dir.join("memo.json"));
        // Object paths as the memo knows them: under the canonical cache folder.
        let checked = match dir.canonicalize() {
            Ok(dir) => index
                .values()
                .filter_map(|r| r.outputs.as_ref())
                .flatten()
                .take_while(|_| !enough.load(Ordering::Relaxed))
                .filter(|out| damage(&dir, &memo, out).is_none())
                .map(|out| out.hash.clone())
                .collect(),
            Err(_) => HashSet::new(),
        };
        Preloaded {
            memo,
            index,
            index_stamp,
            checked,
        }
    }

    pub fn open(dir: &Path) -> io::Result<Cache> {
        Cache::open_preloaded(dir, None)
    }

    /// Opens the cache at `dir`, creating it if need be, with what `preload` read from it.
    pub fn open_preloaded(dir: &Path, pre: Option<Preloaded>) -> io::Result<Cache> {
        for sub in ["objects", "entries", "locks", "scratch", "tmp", "log"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let dir = dir.canonicalize()?;
        let Preloaded {
            memo,
            index,
            index_stamp,
            checked,
        } = pre.unwrap_or_else(|| Cache::preload(&dir, &AtomicBool::new(false)));
        Ok(Cache {
            dir,
            memo,
            index: std::sync::Mutex::new((index, Index::new())),
            index_stamp: std::sync::Mutex::new(index_stamp),
            checked: std::sync::Mutex::new(checked),
            read_back: Default::default(),
        })
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir
            .join("entries")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    pub fn object_path(&self, hash: &str) -> PathBuf {
        object_path(&self.dir, hash)
    }

    pub fn load_entry(&self, key: &str) -> Option<Entry> {
        let bytes = fs::read(self.entry_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Finds what `key` produced and checks its objects: size always, content hash through
    /// the memo (so an unchanged object is not read again). The stage's index record answers
    /// when it names `key`; the entry file is read only when it does not.
    pub fn lookup(&self, stage: &str, key: &str) -> Lookup {
        let indexed = match self.index.lock().unwrap().0.get(stage) {
            Some(r) if r.key == key => r.built(),
            _ => None,
        };
        let found = match indexed {
            Some(b) => Ok(b),
            None => match self.read_entry(key) {
                Ok(Some(e)) => Ok(e.built),
                Ok(None) => return Lookup::Miss,
                Err(why) => Err(why),
            },
        };
        match found.and_then(|b| self.intact_outputs(&b).map(|()| b)) {
            Ok(b) => Lookup::Hit(Box::new(b)),
            Err(why) => Lookup::Corrupt(why),
        }
    }

    /// The entry of `key` as stored, read once, past this process's index, when its objects
    /// are intact: for a key another process (a child, a Slurm job) has just stored, which the
    /// index here may hold from an earlier run of the same key, with that run's time and log.
    pub fn stored_entry(&self, key: &str) -> Option<Entry> {
        let entry = self.read_entry(key).ok()??;
        self.intact_outputs(&entry.built).ok()?;
        Some(entry)
    }

    /// `Ok(None)`: no entry for `key`; `Err`: one that cannot be read.
    fn read_entry(&self, key: &str) -> Result<Option<Entry>, String> {
        let Ok(bytes) = fs::read(self.entry_path(key)) else {
            return Ok(None);
        };
        serde_json::from_slice::<Entry>(&bytes)
            .map(Some)
            .map_err(|e| format!("cache entry {} is unreadable ({e})", &key[..12]))
    }

    fn intact_outputs(&self, built: &Built) -> Result<(), String> {
        built
            .outputs
            .iter()
            .try_for_each(|out| self.check_object(out))
    }

    /// A new empty folder for one run of `key`.
    pub fn tmp_dir(&self, key: &str) -> io::Result<PathBuf> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = self.dir.join("tmp").join(format!(
            "{}-{}-{}-{}",
            &key[..16],
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            host_name()
        ));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Removes run folders left by processes of this machine that no longer exist (on a
    /// cache shared by a cluster's nodes, another machine's folders are its own business).
    pub fn clean_tmp(&self) {
        remove_stale_tmp_files(&self.dir, &["objects", "tmp"], usize::MAX);
        let Ok(rd) = fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        let here = host_name();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let mut parts = name.splitn(4, '-');
            let pid = parts.nth(1).and_then(|p| p.parse::<u32>().ok());
            if parts.nth(1).is_some_and(|h| h != here) {
                continue;
            }
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Where executors that run stages elsewhere keep their job files (`cache/jobs/`).
    pub fn jobs_dir(&self) -> io::Result<PathBuf> {
        let d = self.dir.join("jobs");
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    pub fn scratch_dir(&self, key: &str) -> io::Result<PathBuf> {
        let d = self.dir.join("scratch").join(key);
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Moves every file under `out` into the object store and records the entry, last.
    pub fn store(
        &self,
        stage: &str,
        key_inputs: &KeyInputs,
        out: &Path,
        started: u64,
        duration_ms: u64,
        log: String,
    ) -> io::Result<Entry> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for e in walkdir::WalkDir::new(out).sort_by_file_name() {
            let e = e.map_err(io::Error::other)?;
            if e.file_type().is_file() {
                let rel = e
                    .path()
                    .strip_prefix(out)
                    .expect("walked under out")
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push((rel, e.into_path()));
            } else if e.file_type().is_symlink() {
                return Err(io::Error::other(format!(
                    "output `{}` is a symbolic link; stages must write plain files",
                    e.path().display()
                )));
            }
        }
        let outputs: Vec<OutFile> = files
            .par_iter()
            .map(|(rel, path)| {
                let hash = hash_uncached(path)?;
                let size = fs::metadata(path)?.len();
                let obj = self.object_path(&hash);
                // An object already there is checked, not trusted: a damaged one is replaced.
                if self.fault(&hash, size).is_none() {
                    fs::remove_file(path)?;
                } else {
                    fs::create_dir_all(obj.parent().expect("objects have a parent"))?;
                    let mut perm = fs::metadata(path)?.permissions();
                    perm.set_readonly(true);
                    fs::set_permissions(path, perm)?;
                    fs::rename(path, &obj)?;
                }
                self.memo.record(&obj, &hash)?;
                Ok(OutFile {
                    path: rel.clone(),
                    hash,
                    size,
                })
            })
            .collect::<io::Result<_>>()?;
        let entry = Entry {
            built: Built::new(key_inputs.key(), outputs, duration_ms),
            stage: stage.to_string(),
            key_inputs: key_inputs.clone(),
            started_unix_ms: started,
            log,
        };
        write_atomic(
            &self.entry_path(&entry.built.key),
            &serde_json::to_vec_pretty(&entry)?,
        )?;
        Ok(entry)
    }

    /// Lays an entry's outputs out under `dest` as hard links to the objects (copies where
    /// links are impossible): how a stage sees its inputs.
    pub fn link_outputs(&self, entry: &Built, dest: &Path) -> io::Result<()> {
        for out in &entry.outputs {
            let to = dest.join(&out.path);
            fs::create_dir_all(to.parent().expect("joined path has a parent"))?;
            let from = self.object_path(&out.hash);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
        }
        Ok(())
    }

    /// Removes `key`'s entry; index records keep the key (for `explain`) but forget its
    /// outputs, so nothing looks fresh from the index alone.
    pub fn remove_entry(&self, key: &str) -> io::Result<bool> {
        {
            let mut idx = self.index.lock().unwrap();
            let (loaded, changed) = &mut *idx;
            for (stage, r) in loaded.iter_mut() {
                if r.key == key && r.outputs.is_some() {
                    r.outputs = None;
                    changed.insert(stage.clone(), r.clone());
                }
            }
        }
        match fs::remove_file(self.entry_path(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remembers that `stage` (of stage definition `def`) was last built as `built`.
    pub fn set_last(&self, stage: &str, def: &str, built: &Built) {
        let mut idx = self.index.lock().unwrap();
        let same = idx.0.get(stage).is_some_and(|r| {
            r.def == def
                && r.key == built.key
                && r.ms == built.duration_ms
                && r.outputs.as_ref() == Some(&built.outputs)
        });
        if !same {
            let rec = IndexRecord {
                def: def.into(),
                key: built.key.clone(),
                outputs: Some(built.outputs.clone()),
                ms: built.duration_ms,
            };
            idx.0.insert(stage.to_string(), rec.clone());
            idx.1.insert(stage.to_string(), rec);
        }
    }

    /// The last key built for `stage`, if any.
    pub fn last(&self, stage: &str) -> Option<String> {
        self.index
            .lock()
            .unwrap()
            .0
            .get(stage)
            .map(|r| r.key.clone())
    }

    /// Every (stage id, last key) recorded for the variants of stage definition `def`.
    pub fn last_of_def(&self, def: &str) -> Vec<(String, String)> {
        let idx = self.index.lock().unwrap();
        idx.0
            .iter()
            .filter(|(_, r)| r.def == def)
            .map(|(s, r)| (s.clone(), r.key.clone()))
            .collect()
    }

    /// Writes the hash memo and this process's index changes.
    pub fn save(&self) -> io::Result<()> {
        self.memo.save()?;
        let mut idx = self.index.lock().unwrap();
        if idx.1.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("index.json");
        let mut on_disk = read_index(&path);
        on_disk.extend(std::mem::take(&mut idx.1));
        *self.index_stamp.lock().unwrap() = None;
        let stamp = write_atomic_stamped(&path, &serde_json::to_vec(&on_disk)?)?;
        // What was written holds this process's record of every stage it built or found
        // fresh, whatever another process wrote meanwhile: its answer rests on that file.
        *self.index_stamp.lock().unwrap() = Some(stamp);
        idx.0 = on_disk;
        Ok(())
    }

    /// The stamp of the index as this process last read or wrote it: with the memo's
    /// [`seen`](Memo::seen) files, what an answer from this cache rested on.
    pub fn index_stamp(&self) -> Option<Stamp> {
        self.index_stamp.lock().unwrap().clone()
    }

    /// Appends one line to the execution log (a single write, so lines never interleave).
    pub fn log_run(&self, rec: &RunRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log").join("runs.jsonl"))?
            .write_all(&line)
    }
}
