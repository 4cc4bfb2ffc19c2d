//! One function per subcommand: load the plan, ask the engine, print the answer.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::json;

use crate::cli::{BuildArgs, CleanArgs, Cli, Command, DagArgs, ExplainArgs, ListArgs, StatusArgs};
use crate::engine::assess::{assess, Freshness};
use crate::engine::cache::{Cache, Preloaded};
use crate::engine::noop;
use crate::engine::scheduler::{build, BuildOptions, Outcome};
use crate::engine::ui::{outcome_line, Console};
use crate::plan::Plan;
use crate::spec::{self, SpecErrors};
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

/// The project root and cache folder the command line names.
fn locate(cli: &Cli) -> Result<(PathBuf, PathBuf), Error> {
    let root = cli.dir.canonicalize().unwrap_or_else(|_| cli.dir.clone());
    if !root.join(spec::PIPELINES_DIR).is_dir() {
        return Err(Error::Usage(format!(
            "no `{}` folder in {}; run pipe from the project root or pass -C DIR",
            spec::PIPELINES_DIR,
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
    /// Loads the plan from `files` (as [`spec::read_files`] read them); `digest` is the
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
        let plan = Plan::new(spec::load_files(files, &kinds)?)?;
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
    let (root, cache_dir) = locate(&cli)?;
    let kernels = cache_dir.join("kernels");
    crate::train::device::set_kernel_cache(std::path::absolute(&kernels).unwrap_or(kernels));
    let files = spec::read_files(&root)?;
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
        Command::Build(a) => cmd_build(&project, &cli, a),
        Command::Status(a) => cmd_status(&project, &cli, a),
        Command::Explain(a) => cmd_explain(&project, a),
        Command::Dag(a) => cmd_dag(&project, a),
        Command::List(a) => cmd_list(&project, a),
        Command::Clean(a) => cmd_clean(&project, a),
        Command::Gc => cmd_gc(&project),
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
}

fn cmd_build(p: &Project, cli: &Cli, a: &BuildArgs) -> Result<ExitCode, Error> {
    let wanted = p.select_or_targets(&a.targets)?;
    if wanted.is_empty() {
        println!("nothing to build: no pipeline declares a `target`");
        return Ok(ExitCode::SUCCESS);
    }
    let force: HashSet<usize> = p
        .plan
        .select(&a.force)
        .map_err(Error::Usage)?
        .into_iter()
        .collect();
    // Never dropped, as the plan: the process ends right after.
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    let clock = Instant::now();
    if a.dry_run {
        let order = p.plan.closure(&wanted);
        let states = assess(&p.plan, &cache, &p.root, &order, &force);
        let stale = states.iter().filter(|(_, s)| !s.is_fresh()).count();
        for (n, s) in &states {
            if let Freshness::Stale { reasons, .. } = s {
                println!("would run {}: {}", p.plan.nodes[*n].id, one_line(reasons));
            }
        }
        println!("{stale} of {} stages would run", states.len());
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = a.jobs.unwrap_or_else(crate::par::cores);
    let opts = BuildOptions {
        jobs,
        gpus: a.gpus,
        keep_going: a.keep_going,
        force,
    };
    let ui = Console::new(a.verbose);
    let summary = build(&p.plan, &cache, &p.root, &wanted, &opts, &ui);
    cache.save().map_err(io("cannot save the cache index"))?;
    let count = |f: fn(&Outcome) -> bool| summary.results.iter().filter(|(_, o)| f(o)).count();
    let built = count(|o| matches!(o, Outcome::Built { .. }));
    let fresh = count(|o| matches!(o, Outcome::Fresh));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    println!(
        "{built} built, {fresh} fresh, {failed} failed, {skipped} skipped in {:.2}s",
        clock.elapsed().as_secs_f64()
    );
    if summary.failed() {
        println!("failures:");
        for (n, o) in &summary.results {
            if let Outcome::Failed(_) = o {
                println!("  {}", outcome_line(&p.plan.nodes[*n].id, o));
            }
        }
        return Ok(ExitCode::from(1));
    }
    let targets: Vec<String> = p
        .plan
        .targets()
        .into_iter()
        .filter(|(_, n)| wanted.contains(n))
        .map(|(t, _)| t.to_string())
        .collect();
    for t in &targets {
        println!("target  {t}");
    }
    // Nothing failed: every stage is now fresh, and the next build can be answered so.
    if fresh + built == summary.results.len() {
        let stages = summary
            .results
            .iter()
            .filter_map(|(n, _)| {
                let id = &p.plan.nodes[*n].id;
                let def = p.plan.def(*n);
                Some(noop::FreshStage {
                    id: id.clone(),
                    kind: def.kind.name().to_string(),
                    key: cache.last(id)?,
                    target: def.target.clone(),
                })
            })
            .collect::<Vec<_>>();
        if stages.len() == summary.results.len() {
            p.remember(cli, &cache, noop::Answer { stages, targets });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_status(p: &Project, cli: &Cli, a: &StatusArgs) -> Result<ExitCode, Error> {
    let nodes = p.select_or_all(&a.targets)?;
    // Never dropped, as the plan: the process ends right after.
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    let states = assess(&p.plan, &cache, &p.root, &nodes, &HashSet::new());
    if !states.is_empty() && states.iter().all(|(_, s)| s.is_fresh()) {
        let stages = states
            .iter()
            .filter_map(|(n, s)| match s {
                Freshness::Fresh(e) => Some(noop::FreshStage {
                    id: p.plan.nodes[*n].id.clone(),
                    kind: p.plan.def(*n).kind.name().to_string(),
                    key: e.key.clone(),
                    target: p.plan.def(*n).target.clone(),
                }),
                Freshness::Stale { .. } => None,
            })
            .collect();
        let answer = noop::Answer {
            stages,
            targets: Vec::new(),
        };
        p.remember(cli, &cache, answer);
    }
    if a.json {
        let rows: Vec<StatusRow> = states
            .iter()
            .map(|(n, s)| {
                let def = p.plan.def(*n);
                let (state, key, reasons): (_, _, &[String]) = match s {
                    Freshness::Fresh(e) => ("fresh", Some(e.key.as_str()), &[]),
                    Freshness::Stale { key, reasons } => ("stale", key.as_deref(), reasons),
                };
                StatusRow {
                    stage: &p.plan.nodes[*n].id,
                    kind: def.kind.name(),
                    state,
                    key,
                    reasons,
                    target: def.target.as_deref(),
                }
            })
            .collect();
        print_json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let stale = states.iter().filter(|(_, s)| !s.is_fresh()).count();
    // One line per stage: buffered, or stdout's line buffering makes it a write each.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, s) in &states {
        let _ = match s {
            Freshness::Fresh(_) => writeln!(out, "fresh  {}", p.plan.nodes[*n].id),
            Freshness::Stale { reasons, .. } => {
                writeln!(out, "stale  {}: {}", p.plan.nodes[*n].id, one_line(reasons))
            }
        };
    }
    let _ = writeln!(out, "{} fresh, {stale} stale", states.len() - stale);
    Ok(ExitCode::SUCCESS)
}

fn cmd_explain(p: &Project, a: &ExplainArgs) -> Result<ExitCode, Error> {
    let chosen = p.plan.select(&a.targets).map_err(Error::Usage)?;
    let cache = p.cache()?;
    let order = p.plan.closure(&chosen);
    let states = assess(&p.plan, &cache, &p.root, &order, &HashSet::new());
    let state_of = |n: usize| &states.iter().find(|(m, _)| *m == n).expect("in closure").1;
    let mut out = String::new();
    let mut rows = Vec::new();
    for &n in &chosen {
        let node = &p.plan.nodes[n];
        // Follow stale inputs down to the stages that are stale for a reason of their own.
        let mut chain = vec![n];
        let mut i = 0;
        while i < chain.len() {
            let m = chain[i];
            if let Freshness::Stale { key: None, .. } = state_of(m) {
                for &input in &p.plan.nodes[m].inputs {
                    if !state_of(input).is_fresh() && !chain.contains(&input) {
                        chain.push(input);
                    }
                }
            }
            i += 1;
        }
        let mut explained = Vec::new();
        for &m in &chain {
            let id = &p.plan.nodes[m].id;
            match state_of(m) {
                Freshness::Fresh(e) => {
                    let _ = writeln!(
                        out,
                        "{id}: fresh (key {}, built in {:.1}s)",
                        &e.key[..16],
                        e.duration_ms as f64 / 1000.0
                    );
                    explained.push(json!({"stage": id, "state": "fresh", "key": e.key}));
                }
                Freshness::Stale { key, reasons } => {
                    let _ = writeln!(out, "{id}: would run");
                    for r in reasons {
                        let _ = writeln!(out, "  {r}");
                    }
                    explained.push(
                        json!({"stage": id, "state": "stale", "key": key, "reasons": reasons}),
                    );
                }
            }
        }
        rows.push(json!({"stage": node.id, "chain": explained}));
    }
    if a.json {
        print_json(&json!(rows));
    } else {
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_dag(p: &Project, a: &DagArgs) -> Result<ExitCode, Error> {
    let roots = if a.targets.is_empty() {
        let t: Vec<usize> = p.plan.targets().into_iter().map(|(_, n)| n).collect();
        if t.is_empty() {
            // No targets: every node nothing depends on.
            let used: HashSet<usize> = p
                .plan
                .nodes
                .iter()
                .flat_map(|n| n.inputs.iter().copied())
                .collect();
            (0..p.plan.nodes.len())
                .filter(|n| !used.contains(n))
                .collect()
        } else {
            t
        }
    } else {
        p.plan.select(&a.targets).map_err(Error::Usage)?
    };
    let nodes = p.plan.closure(&roots);
    let name = |n: usize| {
        let node = &p.plan.nodes[n];
        format!("{} ({})", node.id, p.plan.def(n).kind.name())
    };
    if a.dot {
        println!("digraph pipe {{\n  rankdir=LR;\n  node [shape=box];");
        for &n in &nodes {
            let shape = if p.plan.def(n).target.is_some() {
                ", shape=note"
            } else {
                ""
            };
            println!("  n{n} [label={:?}{shape}];", name(n));
            for &i in &p.plan.nodes[n].inputs {
                println!("  n{i} -> n{n};");
            }
        }
        println!("}}");
    } else if a.mermaid {
        println!("flowchart LR");
        for &n in &nodes {
            println!("  n{n}[\"{}\"]", name(n).replace('"', "#quot;"));
            for &i in &p.plan.nodes[n].inputs {
                println!("  n{i} --> n{n}");
            }
        }
    } else {
        fn tree(p: &Project, n: usize, prefix: &str, last: bool, top: bool, out: &mut String) {
            let node = &p.plan.nodes[n];
            let def = p.plan.def(n);
            let mut label = format!("{} ({})", node.id, def.kind.name());
            if let Some(t) = &def.target {
                label = format!("{t} ← {label}");
            }
            let (branch, next) = if top {
                ("", String::new())
            } else if last {
                ("└── ", format!("{prefix}    "))
            } else {
                ("├── ", format!("{prefix}│   "))
            };
            let _ = writeln!(out, "{prefix}{branch}{label}");
            let k = node.inputs.len();
            for (j, &i) in node.inputs.iter().enumerate() {
                tree(p, i, &next, j + 1 == k, false, out);
            }
        }
        let mut out = String::new();
        for &r in &roots {
            tree(p, r, "", true, true, &mut out);
        }
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_list(p: &Project, a: &ListArgs) -> Result<ExitCode, Error> {
    let plan = &p.plan;
    let files: Vec<_> = plan
        .spec
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let stages = plan.spec.defs.iter().filter(|d| d.file == i).count();
            json!({"file": f.rel, "namespace": f.ns, "description": f.description, "stages": stages})
        })
        .collect();
    let stages: Vec<_> = plan
        .spec
        .defs
        .iter()
        .map(|d| {
            let nodes: Vec<&str> = plan.nodes.iter().filter(|n| plan.spec.defs[n.def].id == d.id).map(|n| n.id.as_str()).collect();
            let inputs: Vec<&str> = d.inputs.iter().map(|&i| plan.spec.defs[i].id.as_str()).collect();
            json!({"stage": d.id, "kind": d.kind.name(), "description": d.description, "inputs": inputs,
                   "variants": d.variants.len(), "nodes": nodes, "target": d.target})
        })
        .collect();
    let targets: Vec<_> = plan
        .targets()
        .into_iter()
        .map(|(t, n)| json!({"target": t, "stage": plan.nodes[n].id}))
        .collect();
    if a.json {
        print_json(&json!({"pipelines": files, "stages": stages, "targets": targets}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("pipelines:");
    for f in &plan.spec.files {
        let desc = if f.description.is_empty() {
            String::new()
        } else {
            format!("  {}", f.description)
        };
        println!("  {}{desc}", f.rel.display());
    }
    println!("stages:");
    for d in &plan.spec.defs {
        let n = plan
            .nodes
            .iter()
            .filter(|n| plan.spec.defs[n.def].id == d.id)
            .count();
        let inputs: Vec<&str> = d
            .inputs
            .iter()
            .map(|&i| plan.spec.defs[i].id.as_str())
            .collect();
        let from = if inputs.is_empty() {
            String::new()
        } else {
            format!(" ← {}", inputs.join(", "))
        };
        println!(
            "  {} ({}, {} variant(s), {n} node(s)){from}",
            d.id,
            d.kind.name(),
            d.variants.len()
        );
    }
    println!("targets:");
    for (t, n) in plan.targets() {
        println!("  {t} ← {}", plan.nodes[n].id);
    }
    Ok(ExitCode::SUCCESS)
}

fn remove_file(path: &Path, removed: &mut Vec<PathBuf>) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot remove {}: {e}", path.display()))),
    }
}

fn cmd_clean(p: &Project, a: &CleanArgs) -> Result<ExitCode, Error> {
    let chosen = p.select_or_targets(&a.targets)?;
    let cache = p.cache()?;
    let mut removed = Vec::new();
    let mut entries = 0;
    for n in chosen {
        let node = &p.plan.nodes[n];
        let Some(key) = cache.last(&node.id) else {
            continue;
        };
        if let Some(t) = &p.plan.def(n).target {
            let base = p
                .root
                .join(t)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| p.root.clone());
            if let Some(entry) = cache.load_entry(&key) {
                for out in &entry.built.outputs {
                    remove_file(&base.join(&out.path), &mut removed)?;
                }
            }
            remove_file(&p.root.join(t), &mut removed)?;
        }
        if cache
            .remove_entry(&key)
            .map_err(io("cannot remove a cache entry"))?
        {
            entries += 1;
        }
    }
    cache.save().map_err(io("cannot save the cache index"))?;
    for r in &removed {
        println!("removed {}", r.display());
    }
    println!(
        "cleaned {} file(s) and {entries} cache entr{}",
        removed.len(),
        if entries == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_gc(p: &Project) -> Result<ExitCode, Error> {
    let cache = p.cache()?;
    let all: Vec<usize> = (0..p.plan.nodes.len()).collect();
    // Reached: the current key of every fresh stage, and the last build of every current
    // stage (so a stage waiting on an edited input keeps its previous result until rebuilt).
    let mut keep: HashSet<String> = HashSet::new();
    for (n, s) in assess(&p.plan, &cache, &p.root, &all, &HashSet::new()) {
        if let Freshness::Fresh(e) = s {
            keep.insert(e.key);
        }
        if let Some(k) = cache.last(&p.plan.nodes[n].id) {
            keep.insert(k);
        }
    }
    let (entries, bytes) = cache.gc(&keep).map_err(io("garbage collection failed"))?;
    cache.save().map_err(io("cannot save the cache index"))?;
    println!(
        "removed {entries} unreachable entr{}, freed {bytes} bytes; kept {}",
        if entries == 1 { "y" } else { "ies" },
        keep.len()
    );
    Ok(ExitCode::SUCCESS)
}
