//! The contract between the engine and a stage kind (download, normalize, train, …).
//!
//! A kind turns RON text into a typed config; the config says what it needs to run and
//! runs with its inputs' output folders in hand, writing files into a fresh output folder.
//! The engine fingerprints, caches, schedules and explains; it never looks inside a config
//! except through the serialized form a kind hands back, so it knows nothing of burn.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ron_path;
pub use crate::ron_path::ConfigError;

/// The hashing a stage may ask for, of files it names outside the cache (a local dataset).
/// The engine answers with its memo, so a large file is read once; the contract needs only
/// these two calls, and so imports nothing of the engine.
pub trait FileDigest: Sync {
    /// blake3 of a file.
    fn hash_file(&self, path: &Path) -> std::io::Result<String>;
    /// Take note of a folder, so a file added to it later is noticed.
    fn watch(&self, dir: &Path);
}

/// Slots a running stage holds in the scheduler: CPU stages share `-j` cores, GPU stages
/// share the GPU slots, so a training run on the GPU does not starve CPU work and vice versa.
/// The cores given are also the threads the stage computes on: the engine runs it inside a
/// thread pool of exactly those (at most `-j`), so stages packed side by side never fight
/// over a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    pub cpus: usize,
    pub gpus: usize,
    /// Cores beyond `cpus` the stage uses well, given when they would otherwise idle (fewer
    /// stages waiting than free cores): a training left alone at the end of a study takes
    /// them; 500 waiting trainings take one core each.
    pub more_cpus: usize,
}

impl Resources {
    pub const ONE_CPU: Resources = Resources {
        cpus: 1,
        gpus: 0,
        more_cpus: 0,
    };
}

/// A config field that failed validation; the pipeline language turns the path into
/// file:line:column.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// Dotted path inside the config, e.g. `optimizer.momentum`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl FieldError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        FieldError {
            path: path.to_string(),
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// One typed stage config: what the kind does with it.
pub trait StageConfig: Send + Sync + 'static {
    /// Checks values the type system cannot (lr > 0, momentum in [0, 1), …).
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
    fn resources(&self) -> Resources {
        Resources::ONE_CPU
    }
    /// What the outputs depend on besides config and inputs (a local dataset folder), as
    /// key material: hashed into the key and diffed by `explain`. Runs before every build,
    /// so hash through `ctx.hash_file`, which memoizes.
    fn external_key(&self, _ctx: &KeyCtx) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(None)
    }
    /// Facts of this machine, beyond its files and `PIPE_*` variables, that `external_key`
    /// reads (whether CUDA works). A no-op answer recorded under other facts is not reused.
    fn environment() -> Option<String>
    where
        Self: Sized,
    {
        None
    }
    /// Whether the stage runs in a child process of its own: one whose end can take the
    /// process down (native code that aborts when an allocation fails), so that such an
    /// end fails it alone.
    fn own_process(&self) -> bool {
        false
    }
    /// Produce the outputs. Anything written to `ctx.out_dir()` becomes the stage's output.
    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()>;
}

/// A kind as the engine sees it. Implemented once, generically, by [`Kind`].
pub trait StageKind: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Bumped whenever the same config and inputs would give different outputs.
    fn version(&self) -> u32;
    /// A gathering kind (a report) runs once over every variant of its inputs; the others
    /// run once per variant.
    fn gathers(&self) -> bool;
    fn parse(&self, ron: &str) -> Result<Parsed, ConfigError>;
    /// [`StageConfig::environment`] of this kind's config type.
    fn environment(&self) -> Option<String>;
}

/// A parsed config plus the two serializations the engine needs.
#[derive(Clone)]
pub struct Parsed {
    pub config: Arc<dyn StageConfig>,
    /// Canonical RON (every field explicit): the text variants are spliced into.
    pub canonical: String,
    /// Canonical semantic content: hashed into the key and diffed by `explain`.
    pub key: Arc<serde_json::Value>,
}

thread_local! {
    static KEYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `skip_serializing_if` of the fields that never reach a key (where to train, on how many
/// threads, a title): true only while the key is serialized. They stay in the canonical RON,
/// which variants and extending stages are spliced into, so those keep them.
pub fn keying<T>(_: &T) -> bool {
    KEYING.with(|k| k.get())
}

/// Runs `f` (a serialization) with those fields left out: the key, and a training's
/// `config.json`, whose bytes a key's outputs must keep.
pub fn as_keyed<R>(f: impl FnOnce() -> R) -> R {
    KEYING.with(|k| k.set(true));
    let r = f();
    KEYING.with(|k| k.set(false));
    r
}

/// Adapts any serde config type to [`StageKind`]; a stage module is then just a config
/// struct with `#[derive(Serialize, Deserialize)]` and an `impl StageConfig`.
/// Fields marked `#[serde(skip_serializing_if = "crate::stage::keying")]` never reach the
/// key.
pub struct Kind<C> {
    name: &'static str,
    version: u32,
    gathers: bool,
    _config: std::marker::PhantomData<fn() -> C>,
}

impl<C> Kind<C> {
    pub const fn new(name: &'static str, version: u32) -> Self {
        Kind {
            name,
            version,
            gathers: false,
            _config: std::marker::PhantomData,
        }
    }
    pub const fn gathering(mut self) -> Self {
        self.gathers = true;
        self
    }
}

impl<C: StageConfig + Serialize + DeserializeOwned> StageKind for Kind<C> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn gathers(&self) -> bool {
        self.gathers
    }
    fn environment(&self) -> Option<String> {
        C::environment()
    }
    fn parse(&self, ron: &str) -> Result<Parsed, ConfigError> {
        let config: C = ron_path::parse_typed(ron)?;
        if let Some((path, offset)) = ron_path::non_finite(ron) {
            let (line, col) = ron_path::line_col(ron, offset);
            return Err(ConfigError {
                line,
                col,
                path: path.to_string(),
                message: format!("`{path}` is not a finite number"),
                hint: Some("NaN and ±inf (or a literal too large for a float) are refused".into()),
            });
        }
        let canonical = ron_path::to_canonical(&config)
            .map_err(|e| ConfigError::whole(format!("config cannot be re-serialized: {e}")))?;
        let key = as_keyed(|| serde_json::to_value(&config));
        let key =
            key.map_err(|e| ConfigError::whole(format!("config cannot be fingerprinted: {e}")))?;
        Ok(Parsed {
            config: Arc::new(config),
            canonical,
            key: Arc::new(key),
        })
    }
}

/// One input of a running stage: the output folder of an upstream stage.
#[derive(Debug, Clone)]
pub struct Input {
    /// Upstream stage id, e.g. `momentum:linear[optimizer.momentum=0.9]`.
    pub stage: String,
    pub kind: &'static str,
    /// The variant this input belongs to (`base`, or `optimizer.momentum=0.9`).
    pub label: String,
    /// The varied fields and their values for that variant.
    pub coords: Vec<(String, String)>,
    /// The upstream stage's cache key (for provenance in reports).
    pub key: String,
    /// Where the upstream output is materialized, if it has a target: what a gathering
    /// report links to.
    pub target: Option<String>,
    pub dir: PathBuf,
}

/// Reports how far a running stage is; shown in the live display.
pub trait Progress: Send + Sync {
    fn set(&self, done: u64, total: u64, message: &str);
    /// The same, counted in bytes (shown with a transfer rate).
    fn set_bytes(&self, done: u64, total: u64, message: &str) {
        self.set(done, total, message);
    }
}

/// What `external_key` may use.
pub struct KeyCtx<'a> {
    pub(crate) memo: &'a dyn FileDigest,
    pub(crate) root: &'a Path,
}

impl KeyCtx<'_> {
    /// blake3 of a file, memoized on (path, size, mtime, inode). Its folder is watched too,
    /// so a file added beside it (a dataset file that was missing) is noticed.
    pub fn hash_file(&self, path: &Path) -> std::io::Result<String> {
        if let Some(dir) = path.parent() {
            self.memo.watch(dir);
        }
        self.memo.hash_file(path)
    }
    /// The project root (absolute): relative paths in configs are resolved against it.
    pub fn project_root(&self) -> &Path {
        self.root
    }
}

/// Everything a stage may touch while it runs.
pub struct RunCtx<'a> {
    pub(crate) out_dir: PathBuf,
    pub(crate) scratch_dir: PathBuf,
    pub(crate) inputs: Vec<Input>,
    pub(crate) target: Option<String>,
    pub(crate) root: PathBuf,
    pub(crate) log: String,
    pub(crate) memo: &'a dyn FileDigest,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) gpus: Vec<usize>,
    pub(crate) threads: usize,
}

impl RunCtx<'_> {
    /// A fresh, empty folder; what is in it when `run` returns is the stage's output.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }
    /// Survives an interrupted run of the same key (checkpoints live here) and is removed
    /// once the stage succeeds.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }
    /// The target path (relative to the project root) this stage's output is materialized
    /// at: a stage with a target writes its files laid out relative to the target's folder.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }
    /// The project root (absolute), for stages that read files named in their config.
    pub fn project_root(&self) -> &Path {
        &self.root
    }
    /// Buffered: printed in one piece when the stage ends, never interleaved with others.
    pub fn log(&mut self, line: impl AsRef<str>) {
        self.log.push_str(line.as_ref());
        self.log.push('\n');
    }
    /// blake3 of a file outside the cache (a local dataset), memoized on
    /// (path, size, mtime, inode) so large inputs are read once.
    pub fn hash_file(&self, path: &Path) -> std::io::Result<String> {
        self.memo.hash_file(path)
    }
    /// The GPU device indices the scheduler gave this stage, as CUDA numbers them in this
    /// process; empty for a stage that asked for no GPU.
    pub fn gpus(&self) -> &[usize] {
        &self.gpus
    }
    /// The threads of the pool this stage runs in (the cores the scheduler gave it): rayon
    /// work started inside `run` uses exactly these.
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        self.progress.set(done, total, message);
    }
    pub fn progress_bytes(&self, done: u64, total: u64, message: &str) {
        self.progress.set_bytes(done, total, message);
    }
}

/// Writes a stage's output file, naming the path when the disk is full or the folder gone
/// (`std::fs::write` alone says "No space left on device" and no more).
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot write {}", path.display())))
}

/// As [`write_file`], through a temporary file renamed over `path`: a kill at any moment
/// leaves the old file or the new one, whole (checkpoints, the best weights so far).
pub fn replace_file(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot rename {} to {}",
            tmp.display(),
            path.display()
        ))
    })
}

/// What [`StageConfig::external_key`] fails with when the thing outside the cache a stage
/// reads is not there (a local dataset copy): the engine then keys the stage as its last
/// build did, if that build had the same config, so a forgotten environment variable in a
/// new shell does not make a complete cache stale; with no such build, `build` stops before
/// running anything, with this message and hint.
#[derive(Debug)]
pub struct Missing {
    pub message: String,
    pub hint: String,
    /// `false` when the user named this very place for this run (an environment variable):
    /// an earlier build's copy must not stand in for it.
    pub stand_in: bool,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Missing {}
