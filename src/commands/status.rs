//! `pipe status`: which stages are fresh and which would run, and why; runs nothing.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::ExitCode;

use super::{one_line, print_json, Error, Project, StatusRow};
use crate::cli::{Cli, StatusArgs};
use crate::engine::assess::{assess, Freshness};
use crate::engine::noop;

pub(super) fn run(p: &Project, cli: &Cli, a: &StatusArgs) -> Result<ExitCode, Error> {
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
    let jobs = crate::engine::slurm::queued_by_key(&p.cache_dir.join("jobs"));
    let job_of = |s: &Freshness| match s {
        Freshness::Stale { key: Some(k), .. } => jobs.get(k),
        _ => None,
    };
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
                    slurm_job: job_of(s).map(|(id, _)| id.as_str()),
                }
            })
            .collect();
        print_json(&rows);
        return Ok(exit(a, states.iter().any(|(_, s)| !s.is_fresh())));
    }
    let stale = states.iter().filter(|(_, s)| !s.is_fresh()).count();
    // One line per stage: buffered, or stdout's line buffering makes it a write each.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, s) in &states {
        let _ = match s {
            Freshness::Fresh(_) => writeln!(out, "fresh  {}", p.plan.nodes[*n].id),
            Freshness::Stale { reasons, .. } => match job_of(s) {
                Some((id, state)) => writeln!(
                    out,
                    "{:<6} {}: Slurm job {id}",
                    state.to_lowercase(),
                    p.plan.nodes[*n].id
                ),
                None => writeln!(out, "stale  {}: {}", p.plan.nodes[*n].id, one_line(reasons)),
            },
        };
    }
    let _ = writeln!(out, "{} fresh, {stale} stale", states.len() - stale);
    Ok(exit(a, stale > 0))
}

/// With `--exit-code`, 1 when anything would run.
fn exit(a: &StatusArgs, stale: bool) -> ExitCode {
    ExitCode::from(u8::from(a.exit_code && stale))
}
