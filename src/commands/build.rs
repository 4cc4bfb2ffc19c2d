//! `pipe build`: run what is stale, print a live line per stage and a summary.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use super::{io, one_line, print_json, Error, Project};
use crate::cli::{BuildArgs, Cli};
use crate::engine::assess::{assess, Freshness};
use crate::engine::cache::{Cache, RunRecord};
use crate::engine::child::ChildProcess;
use crate::engine::eta::Eta;
use crate::engine::executor::Executor;
use crate::engine::noop;
use crate::engine::scheduler::{build, BuildOptions, Outcome};
use crate::engine::slurm::{Settings, Slurm};
use crate::engine::ui::{outcome_line, Console};

pub(super) fn run(p: &Project, cli: &Cli, a: &BuildArgs) -> Result<ExitCode, Error> {
    // `--force X` alone builds X, not every target with X forced wherever it is used.
    let wanted = if a.targets.is_empty() && !a.force.is_empty() {
        p.select_or_targets(&a.force)?
    } else {
        p.select_or_targets(&a.targets)?
    };
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
    // No data: one message that says what to set, before any stage runs or is skipped.
    let absent = crate::engine::assess::missing(&p.plan, &cache, &p.root, &p.plan.closure(&wanted));
    if let Some((_, _, hint)) = absent.first() {
        let said: Vec<String> = absent
            .iter()
            .map(|(n, message, _)| format!("{}: {message}", p.plan.nodes[*n].id))
            .collect();
        return Err(Error::Usage(format!("{}\n  hint: {hint}", said.join("\n"))));
    }
    // No target means every target of every pipeline, the full studies' 500-epoch runs
    // included: past a few hundred epochs of training that is said, and waits for `--all`.
    let everything = a.targets.is_empty() && a.force.is_empty() && !a.all && !a.dry_run;
    let said = !a.quiet && !a.json;
    // What is about to run, assessed once for all that says it (and the time left).
    let ahead = (everything || said).then(|| Ahead::of(p, &cache, &wanted, &force));
    if let Some(ahead) = ahead.as_ref().filter(|_| everything) {
        if ahead.trainings(p).1 >= ANNOUNCE_EPOCHS {
            return Err(Error::Usage(format!(
                "`pipe build` with no target builds every target of every pipeline: {}\n  \
                 hint: name what to build (`pipe build reports/quick/momentum.md`; `pipe list` \
                 lists the targets), or `pipe build --all` to build everything",
                ahead.cost(p)
            )));
        }
    }
    let ahead = ahead.filter(|_| said);
    if a.dry_run {
        // The cost first, as the build itself would say it.
        if let Some(ahead) = &ahead {
            ahead.announce(p);
        }
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
        gpus: a
            .gpus
            .unwrap_or_else(|| crate::train::device::gpu_count().max(1)),
        gpu_share: a.gpu_share as usize,
        remote_jobs: a.max_jobs,
        keep_going: a.keep_going,
        force,
    };
    let exec: &'static dyn Executor = if a.executor == "slurm" {
        let kinds: Vec<&str> = crate::stages::all().iter().map(|k| k.name()).collect();
        let settings = Settings::load(&p.root, &kinds).map_err(Error::Usage)?;
        // Found once, before any stage runs, not as every job's failure.
        if let Err(e) = std::process::Command::new("sbatch")
            .arg("--version")
            .output()
        {
            return Err(Error::Usage(format!(
                "--executor slurm: cannot run `sbatch` ({e}); run the build where Slurm's \
                 client is installed (a login node), or `--executor local`"
            )));
        }
        let slurm: &'static Slurm = Box::leak(Box::new(Slurm::new(
            settings,
            &p.cache_dir,
            cli.device.clone(),
        )));
        let exec: &'static &'static Slurm = Box::leak(Box::new(slurm));
        exec
    } else {
        let bin = std::env::current_exe().map_err(io("cannot find this program's path"))?;
        let mut global: Vec<std::ffi::OsString> = vec![
            "--dir".into(),
            p.root.clone().into(),
            "--cache".into(),
            p.cache_dir.clone().into(),
        ];
        if let Some(d) = &cli.device {
            global.extend(["--device".into(), d.into()]);
        }
        Box::leak(Box::new(ChildProcess::new(bin, global)))
    };
    stop_on_signal(exec);
    if let Some(ahead) = &ahead {
        ahead.announce(p);
    }
    let ui = Console::with(a.verbose, a.quiet || a.json);
    if let Some(ahead) = &ahead {
        let slots = if a.executor == "slurm" {
            a.max_jobs
        } else {
            jobs
        };
        ui.expect(ahead.eta(p, slots));
    }
    let summary = build(&p.plan, &cache, &p.root, &wanted, &opts, &ui, exec);
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        // The stages ended because their processes were stopped: the signal's thread says
        // so and exits with the signal's code; this summary would only blame the stages.
        loop {
            std::thread::park();
        }
    }
    let saved = cache.save();
    super::index::refresh(p);
    let targets: Vec<String> = p
        .plan
        .targets()
        .into_iter()
        .filter(|(_, n)| wanted.contains(n))
        .map(|(t, _)| t.to_string())
        .collect();
    if a.json {
        let ids = |f: fn(&Outcome) -> bool| -> Vec<&str> {
            summary
                .results
                .iter()
                .filter(|(_, o)| f(o))
                .map(|(n, _)| p.plan.nodes[*n].id.as_str())
                .collect()
        };
        let why = |f: fn(&Outcome) -> Option<&String>| -> Vec<Reason> {
            summary
                .results
                .iter()
                .filter_map(|(n, o)| {
                    f(o).map(|r| Reason {
                        stage: &p.plan.nodes[*n].id,
                        reason: r,
                    })
                })
                .collect()
        };
        print_json(&JsonSummary {
            built: ids(|o| matches!(o, Outcome::Built { .. })),
            fresh: ids(|o| matches!(o, Outcome::Fresh)),
            failed: why(|o| match o {
                Outcome::Failed(r) => Some(r),
                _ => None,
            }),
            skipped: why(|o| match o {
                Outcome::Skipped(r) => Some(r),
                _ => None,
            }),
            targets: if summary.failed() {
                Vec::new()
            } else {
                targets.iter().map(String::as_str).collect()
            },
            seconds: clock.elapsed().as_secs_f64(),
        });
    }
    let count = |f: fn(&Outcome) -> bool| summary.results.iter().filter(|(_, o)| f(o)).count();
    let built = count(|o| matches!(o, Outcome::Built { .. }));
    let fresh = count(|o| matches!(o, Outcome::Fresh));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    if !a.json {
        println!(
            "{built} built, {fresh} fresh, {failed} failed, {skipped} skipped in {:.2}s",
            clock.elapsed().as_secs_f64()
        );
    }
    if summary.failed() {
        if !a.json {
            println!("failures:");
            for (n, o) in &summary.results {
                if let Outcome::Failed(_) = o {
                    println!("  {}", outcome_line(&p.plan.nodes[*n].id, o));
                }
            }
        }
        if let Err(e) = &saved {
            eprintln!("error: cannot save the cache index: {e}");
        }
        let io = summary.io_failures > 0 || saved.is_err();
        return Ok(ExitCode::from(if io { 3 } else { 1 }));
    }
    saved.map_err(io("cannot save the cache index"))?;
    if !a.json {
        for t in &targets {
            println!("target  {t}");
        }
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

/// `build --json`: the summary for scripts.
#[derive(serde::Serialize)]
pub(super) struct JsonSummary<'a> {
    pub built: Vec<&'a str>,
    pub fresh: Vec<&'a str>,
    pub failed: Vec<Reason<'a>>,
    pub skipped: Vec<Reason<'a>>,
    /// The targets materialized (none when something failed).
    pub targets: Vec<&'a str>,
    pub seconds: f64,
}

#[derive(serde::Serialize)]
pub(super) struct Reason<'a> {
    stage: &'a str,
    reason: &'a String,
}

/// What a build is about to run: the stale stages, and the seconds each recorded run of
/// every stage took here (`cache/log/runs.jsonl`, the last one per stage).
struct Ahead {
    stale: Vec<usize>,
    last: std::collections::HashMap<String, f64>,
}

impl Ahead {
    fn of(p: &Project, cache: &Cache, wanted: &[usize], force: &HashSet<usize>) -> Ahead {
        let order = p.plan.closure(wanted);
        let stale: Vec<usize> = assess(&p.plan, cache, &p.root, &order, force)
            .into_iter()
            .filter(|(_, s)| !s.is_fresh())
            .map(|(n, _)| n)
            .collect();
        let mut last = std::collections::HashMap::new();
        let log = std::fs::read_to_string(p.cache_dir.join("log/runs.jsonl")).unwrap_or_default();
        for rec in log
            .lines()
            .filter_map(|l| serde_json::from_str::<RunRecord>(l).ok())
        {
            if rec.outcome == "built" {
                last.insert(rec.stage, rec.duration_ms as f64 / 1000.0);
            }
        }
        Ahead { stale, last }
    }

    /// The whole build's time left, for the progress display.
    fn eta(&self, p: &Project, slots: usize) -> Eta {
        let to_run = self
            .stale
            .iter()
            .map(|&n| {
                let id = &p.plan.nodes[n].id;
                let cpus = p.plan.variant(n).parsed.config.resources().cpus;
                (id.clone(), self.last.get(id).copied(), cpus)
            })
            .collect();
        let recorded: Vec<(String, f64)> = self.last.iter().map(|(k, v)| (k.clone(), *v)).collect();
        Eta::new(to_run, &recorded, slots)
    }

    /// Before a big build (many stages, or many epochs of training), what it is about to
    /// do: the stages, the trainings and their epochs, and how long the same stages took
    /// when they last ran here, so nobody starts a GPU-day by accident.
    fn announce(&self, p: &Project) {
        let (_, epochs) = self.trainings(p);
        if self.stale.len() < ANNOUNCE_STAGES && epochs < ANNOUNCE_EPOCHS {
            return;
        }
        println!("{}", self.cost(p));
    }

    /// The trainings to run and their epochs in all.
    fn trainings(&self, p: &Project) -> (usize, u64) {
        let trainings: Vec<usize> = self
            .stale
            .iter()
            .copied()
            .filter(|&n| p.plan.def(n).kind.name() == "train")
            .collect();
        let epochs: u64 = trainings
            .iter()
            .filter_map(|&n| p.plan.variant(n).parsed.key.get("epochs")?.as_u64())
            .sum();
        (trainings.len(), epochs)
    }

    /// `about to run 933 stages: 412 trainings (98000 epochs in all); …`.
    fn cost(&self, p: &Project) -> String {
        let stale = &self.stale;
        let (trainings, epochs) = self.trainings(p);
        let known: Vec<f64> = stale
            .iter()
            .filter_map(|&n| self.last.get(&p.plan.nodes[n].id).copied())
            .collect();
        let mut line = format!(
            "about to run {} stage{}: {trainings} training{} ({epochs} epochs in all)",
            stale.len(),
            if stale.len() == 1 { "" } else { "s" },
            if trainings == 1 { "" } else { "s" },
        );
        if !known.is_empty() {
            line.push_str(&format!(
                "; {} of them ran here before, taking {} one after another",
                known.len(),
                crate::engine::ui::clock(known.iter().sum::<f64>())
            ));
        }
        line
    }
}

/// A build is announced from this many stages to run, or this many epochs of training.
const ANNOUNCE_STAGES: usize = 20;
const ANNOUNCE_EPOCHS: u64 = 200;

/// The signal that interrupted the build (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Ctrl-C or SIGTERM: stop every process a stage started (its whole process group), cancel
/// what runs elsewhere (Slurm jobs), say what was interrupted, and exit 130 (SIGINT) or 143
/// (SIGTERM). Stages in this process end with it; their checkpoints stay in scratch, their
/// key locks are released with the process, and nothing half-written is ever an entry.
fn stop_on_signal(exec: &'static dyn Executor) {
    extern "C" fn on_signal(sig: libc::c_int) {
        SIGNAL.store(sig, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let sig = SIGNAL.load(Ordering::SeqCst);
        if sig == 0 {
            continue;
        }
        let running = crate::children::running();
        let groups = crate::children::stop_all(std::time::Duration::from_secs(2));
        let jobs = exec.cancel_all();
        let name = if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        eprintln!("interrupted ({name}):");
        for id in &running {
            eprintln!("  stopped  {id}");
        }
        eprintln!(
            "{} stage{} stopped ({groups} process group{}), {} Slurm job{} cancelled{}; \
             the next build resumes from their checkpoints",
            running.len(),
            if running.len() == 1 { "" } else { "s" },
            if groups == 1 { "" } else { "s" },
            jobs.len(),
            if jobs.len() == 1 { "" } else { "s" },
            if jobs.is_empty() {
                String::new()
            } else {
                format!(" ({})", jobs.join(", "))
            }
        );
        std::process::exit(128 + sig);
    });
}
