//! `pipe build`: run what is stale, print a live line per stage and a summary.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{io, one_line, Error, Project};
use crate::cli::{BuildArgs, Cli};
use crate::engine::assess::{assess, Freshness};
use crate::engine::executor::{Executor, InProcess};
use crate::engine::noop;
use crate::engine::scheduler::{build, BuildOptions, Outcome};
use crate::engine::slurm::{Settings, Slurm};
use crate::engine::ui::{outcome_line, Console};

pub(super) fn run(p: &Project, cli: &Cli, a: &BuildArgs) -> Result<ExitCode, Error> {
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
        gpus: a
            .gpus
            .unwrap_or_else(|| crate::train::device::gpu_count().max(1)),
        gpu_share: a.gpu_share as usize,
        remote_jobs: a.max_jobs,
        keep_going: a.keep_going,
        force,
    };
    let exec: &dyn Executor = if a.executor == "slurm" {
        let settings = Settings::load(&p.root).map_err(Error::Usage)?;
        let slurm: &'static Slurm = Box::leak(Box::new(Slurm::new(
            settings,
            &p.cache_dir,
            cli.device.clone(),
        )));
        let exec: &'static &'static Slurm = Box::leak(Box::new(slurm));
        cancel_on_signal(exec);
        exec
    } else {
        &InProcess
    };
    let ui = Console::new(a.verbose);
    let summary = build(&p.plan, &cache, &p.root, &wanted, &opts, &ui, exec);
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

/// Ctrl-C or SIGTERM: cancel what runs elsewhere (Slurm jobs), say so, and exit 130.
fn cancel_on_signal(exec: &'static dyn Executor) {
    static SIGNALLED: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        SIGNALLED.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if SIGNALLED.load(Ordering::SeqCst) {
            let ids = exec.cancel_all();
            eprintln!(
                "interrupted: cancelled {} Slurm job{}{}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", ids.join(", "))
                }
            );
            std::process::exit(130);
        }
    });
}
