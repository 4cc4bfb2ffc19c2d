//! `pipe build`: run what is stale, print a live line per stage and a summary.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use super::{io, one_line, Error, Project};
use crate::cli::{BuildArgs, Cli};
use crate::engine::assess::{assess, Freshness};
use crate::engine::child::ChildProcess;
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
        gpus: a
            .gpus
            .unwrap_or_else(|| crate::train::device::gpu_count().max(1)),
        gpu_share: a.gpu_share as usize,
        remote_jobs: a.max_jobs,
        keep_going: a.keep_going,
        force,
    };
    let exec: &'static dyn Executor = if a.executor == "slurm" {
        let settings = Settings::load(&p.root).map_err(Error::Usage)?;
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
    let ui = Console::new(a.verbose);
    let summary = build(&p.plan, &cache, &p.root, &wanted, &opts, &ui, exec);
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        // The stages ended because their processes were stopped: the signal's thread says
        // so and exits with the signal's code; this summary would only blame the stages.
        loop {
            std::thread::park();
        }
    }
    let saved = cache.save();
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
        if let Err(e) = &saved {
            eprintln!("error: cannot save the cache index: {e}");
        }
        let io = summary.io_failures > 0 || saved.is_err();
        return Ok(ExitCode::from(if io { 3 } else { 1 }));
    }
    saved.map_err(io("cannot save the cache index"))?;
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
