//! The subcommands, one file each: what they share is here (locating the project, loading
//! its plan while the cache's index is read, the no-op shortcut's record, errors and exit
//! codes); each file loads, asks the engine and prints the answer.

mod build;
mod clean;
mod dag;
mod diff;
mod explain;
mod gc;
mod index;
mod list;
mod outputs;
mod results;
mod show;
pub use show::sort_columns;
mod show_by;
mod stage_job;
mod status;
mod verify;

use std::cell::Cell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::cli::{BuildArgs, Cli, Command};
use crate::engine::cache::{Cache, Preloaded};
use crate::engine::noop;
use crate::pipeline::{self, SpecErrors};
use crate::plan::Plan;
use crate::stage::StageKind;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("{0}")]
    Spec(#[from] SpecErrors),
    #[error("error: {0}")]
    Usage(String),
    #[error("error: {0}")]
    Io(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Spec(_) | Error::Usage(_) => ExitCode::from(2),
            Error::Io(_) => ExitCode::from(3),
        }
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(format!("{what}: {e}"))
}

struct Project {
    root: PathBuf,
    plan: Plan,
    cache_dir: PathBuf,
    kinds: Vec<&'static dyn StageKind>,
    /// The no-op shortcut's digest of what the plan was made from (see [`noop`]).
    digest: Option<String>,
    /// The cache's index and hash memo, being read on a second thread while the pipelines
    /// are parsed: on a no-op build the two take about as long each.
    preloading: Cell<Option<JoinHandle<Preloaded>>>,
    /// Set when the command needs the cache: the second thread stops checking objects.
    enough: Arc<AtomicBool>,
}

/// The project root and cache folder the command line names. Without `-C`, the nearest
/// folder at or above this one that holds `pipelines/`, as git and cargo find theirs.
fn locate(cli: &Cli) -> Result<(PathBuf, PathBuf), Error> {
    let named = cli.dir.canonicalize().unwrap_or_else(|_| cli.dir.clone());
    let root = if cli.dir == Path::new(".") {
        named
            .ancestors()
            .find(|a| a.join(pipeline::PIPELINES_DIR).is_dir())
            .map_or_else(|| named.clone(), Path::to_path_buf)
    } else {
        named
    };
    if !root.join(pipeline::PIPELINES_DIR).is_dir() {
        return Err(Error::Usage(format!(
            "no `{}` folder in {}; run pipe from the project root or pass -C DIR",
            pipeline::PIPELINES_DIR,
            root.canonicalize().unwrap_or(root.clone()).display()
        )));
    }
    let cache_dir = cli.cache.clone().unwrap_or_else(|| root.join("cache"));
    Ok((root, cache_dir))
}

/// The no-op shortcut's view of this command, if it is one whose answers are recorded.
fn question<'a>(
    cli: &'a Cli,
    root: &'a Path,
    cache_dir: &'a Path,
    kinds: &'a [&'static dyn StageKind],
) -> Option<noop::Question<'a>> {
    let (command, selection) = match &cli.command {
        Command::Build(a) if a.force.is_empty() && !a.verbose => ("build", &a.targets),
        Command::Status(a) => ("status", &a.targets),
        _ => return None,
    };
    Some(noop::Question {
        root,
        cache_dir,
        command,
        selection,
        kinds,
    })
}

impl Project {
    /// Loads the plan from `files` (as [`pipeline::read_files`] read them); `digest` is the
    /// shortcut's digest of them, when the command has one.
    fn load(
        cli: &Cli,
        root: PathBuf,
        cache_dir: PathBuf,
        files: Vec<(PathBuf, String)>,
        kinds: Vec<&'static dyn StageKind>,
        digest: Option<String>,
    ) -> Result<Project, Error> {
        let uses_cache = !matches!(cli.command, Command::List(_) | Command::Dag(_));
        let enough = Arc::new(AtomicBool::new(false));
        let preloading = uses_cache.then(|| {
            let (dir, enough) = (cache_dir.clone(), enough.clone());
            std::thread::spawn(move || {
                crate::heap::room_for_thread();
                Cache::preload(&dir, &enough)
            })
        });
        let plan = Plan::new(pipeline::load_files(files, &kinds, Some(&root))?)?;
        Ok(Project {
            root,
            plan,
            cache_dir,
            kinds,
            digest,
            preloading: Cell::new(preloading),
            enough,
        })
    }

    /// Records an all-fresh answer for the shortcut (see [`noop`]).
    fn remember(&self, cli: &Cli, cache: &Cache, answer: noop::Answer) {
        let q = question(cli, &self.root, &self.cache_dir, &self.kinds);
        if let (Some(q), Some(d)) = (q, &self.digest) {
            q.remember(d, cache, answer);
        }
    }

    fn cache(&self) -> Result<Cache, Error> {
        self.enough.store(true, Ordering::Relaxed);
        let pre = self
            .preloading
            .take()
            .map(|h| h.join().expect("reading the cache's index does not panic"));
        Cache::open_preloaded(&self.cache_dir, pre).map_err(io("cannot open the cache"))
    }

    /// The nodes named on the command line, or every target when none is.
    fn select_or_targets(&self, names: &[String]) -> Result<Vec<usize>, Error> {
        if names.is_empty() {
            Ok(self.plan.targets().into_iter().map(|(_, n)| n).collect())
        } else {
            self.plan.select(names).map_err(Error::Usage)
        }
    }

    /// The nodes named, or every node when none is.
    fn select_or_all(&self, names: &[String]) -> Result<Vec<usize>, Error> {
        if names.is_empty() {
            Ok((0..self.plan.nodes.len()).collect())
        } else {
            Ok(self
                .plan
                .closure(&self.plan.select(names).map_err(Error::Usage)?))
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Some(d) = &cli.device {
        // Read by the stage kinds when they resolve their backend (and key on it).
        std::env::set_var(crate::train::device::DEVICE_ENV, d);
    }
    if let Command::Build(BuildArgs {
        threads: Some(t), ..
    }) = &cli.command
    {
        // Read by the train stages when they say how many cores they need (and by their
        // child processes), before any thread starts.
        std::env::set_var(crate::train::threads::THREADS_ENV, t.to_string());
    }
    let (root, cache_dir) = locate(&cli)?;
    crate::train::device::set_cache_dir(cache_dir.clone());
    let files = pipeline::read_files(&root)?;
    let kinds = crate::stages::all();
    let mut digest = None;
    if let Some(q) = question(&cli, &root, &cache_dir, &kinds) {
        digest = q.digest(&files);
        if let Some(answer) = digest.as_deref().and_then(|d| q.recall(d)) {
            return Ok(answer_again(&cli.command, &answer));
        }
    }
    let project = Project::load(&cli, root, cache_dir, files, kinds, digest)?;
    // Never dropped: the process ends right after, and freeing a plan of a thousand
    // variants one allocation at a time is a measurable part of a no-op build.
    let project = std::mem::ManuallyDrop::new(project);
    match &cli.command {
        Command::Build(a) => build::run(&project, &cli, a),
        Command::Status(a) => status::run(&project, &cli, a),
        Command::Explain(a) => explain::run(&project, a),
        Command::Dag(a) => dag::run(&project, a),
        Command::List(a) => list::run(&project, a),
        Command::Clean(a) => clean::run(&project, a),
        Command::Gc(a) => gc::run(&project, a),
        Command::Verify(a) => verify::run(&project, a.repair),
        Command::Show(a) => show::run(&project, a),
        Command::Diff(a) => diff::run(&project, a),
        Command::Outputs(a) => outputs::outputs(&project, &a.target),
        Command::Log(a) => outputs::log(&project, &a.target),
        Command::StageJob(a) => stage_job::run(&project, a),
        Command::Completions(_) => unreachable!("answered in main, before a project is loaded"),
    }
}

/// Said after a summary given by the no-op shortcut.
const UNCHANGED: &str = "nothing changed since the last check";

/// Prints what the full path printed when it recorded `answer`, with a note that it comes
/// from the record.
fn answer_again(command: &Command, answer: &noop::Answer) -> ExitCode {
    let n = answer.stages.len();
    match command {
        Command::Build(a) if a.dry_run => println!("0 of {n} stages would run ({UNCHANGED})"),
        Command::Build(a) if a.json => print_json(&build::JsonSummary {
            built: Vec::new(),
            fresh: answer.stages.iter().map(|s| s.id.as_str()).collect(),
            failed: Vec::new(),
            skipped: Vec::new(),
            targets: answer.targets.iter().map(String::as_str).collect(),
            seconds: 0.0,
        }),
        Command::Build(_) => {
            println!("0 built, {n} fresh, 0 failed, 0 skipped in 0.00s ({UNCHANGED})");
            for t in &answer.targets {
                println!("target  {t}");
            }
        }
        Command::Status(a) if a.json => {
            let rows: Vec<StatusRow> = answer
                .stages
                .iter()
                .map(|s| StatusRow {
                    stage: &s.id,
                    kind: &s.kind,
                    state: "fresh",
                    key: Some(&s.key),
                    reasons: &[],
                    target: s.target.as_deref(),
                    slurm_job: None,
                })
                .collect();
            print_json(&rows);
        }
        _ => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for s in &answer.stages {
                let _ = writeln!(out, "fresh  {}", s.id);
            }
            let _ = writeln!(out, "{n} fresh, 0 stale ({UNCHANGED})");
        }
    }
    ExitCode::SUCCESS
}

/// Reasons on one line; a reason ending in `:` introduces the next one.
fn one_line(reasons: &[String]) -> String {
    let mut out = String::new();
    for r in reasons {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(r);
    }
    out
}

/// Pretty JSON on stdout, written as it is serialized (a `status --json` of a thousand
/// stages is one buffered stream, not a string built first).
fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if serde_json::to_writer_pretty(&mut out, value).is_ok() {
        let _ = writeln!(out);
    }
}

/// One row of `status --json`.
#[derive(serde::Serialize)]
struct StatusRow<'a> {
    stage: &'a str,
    kind: &'a str,
    state: &'a str,
    key: Option<&'a str>,
    reasons: &'a [String],
    target: Option<&'a str>,
    /// The Slurm job building it now, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    slurm_job: Option<&'a str>,
}
