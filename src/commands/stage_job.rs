//! `pipe stage-job ID --key KEY` (hidden): what a Slurm job runs on its node. It runs that
//! one stage against the shared cache exactly as a local build would (same key, same lock,
//! entry written last) and exits 0 when the key is built, 1 when the stage failed (3 when
//! the cache or the disk did, 4 when an input's object was corrupt and dropped). It
//! refuses to run when this node keys the stage differently from the build that submitted
//! it (an edited pipeline, another backend), so nothing is stored under a wrong key.
//! `--then ID` runs more stages after it in the same process (a training's evaluation in
//! the training's job: one Slurm start-up, two entries); the exit code is the first stage's.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use super::{Error, Project};
use crate::cli::StageJobArgs;
use crate::engine::assess::{assess, external, key_inputs, Freshness};
use crate::engine::cache::Built;
use crate::engine::child::{LineProgress, EXIT_CORRUPT_INPUT, EXIT_IO};
use crate::engine::executor::{run_stage, Env, Job};
use crate::engine::ui::Silent;

pub(super) fn run(p: &Project, a: &StageJobArgs) -> Result<ExitCode, Error> {
    let plan = &p.plan;
    let node = |id: &str| {
        plan.by_id
            .get(id)
            .copied()
            .ok_or_else(|| Error::Usage(format!("no stage `{id}` in the pipelines")))
    };
    let n = node(&a.id)?;
    let then = a
        .then
        .iter()
        .map(|id| node(id))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    let code = one(p, &cache, a, n, Some(&a.key), a.force)?;
    if code == 0 {
        // Each follow-on is keyed here from what was just built, as the build will key it
        // when it gets there and finds the entry; one that fails is left to the build,
        // which runs it again in a job of its own and says why.
        for t in then {
            let code = one(p, &cache, a, t, None, false)?;
            if code != 0 {
                eprintln!("note: {} is left to the build", plan.nodes[t].id);
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// Runs stage `n` and returns the exit code it earns (see the module's doc); `key`: the
/// key the submitting build computed, `None` for a follow-on, keyed here.
fn one(
    p: &Project,
    cache: &crate::engine::cache::Cache,
    a: &StageJobArgs,
    n: usize,
    key: Option<&str>,
    force: bool,
) -> Result<u8, Error> {
    let plan = &p.plan;
    let id = &plan.nodes[n].id;
    let inputs = &plan.nodes[n].inputs;
    let upstream = plan.closure(inputs);
    let mut built: HashMap<usize, Built> = HashMap::new();
    for (i, state) in assess(plan, cache, &p.root, &upstream, &HashSet::new()) {
        if let Freshness::Fresh(b) = state {
            built.insert(i, *b);
        }
    }
    let missing: Vec<&str> = inputs
        .iter()
        .filter(|i| !built.contains_key(i))
        .map(|&i| plan.nodes[i].id.as_str())
        .collect();
    if !missing.is_empty() {
        // The build that started this job had them built: one that is not now had an
        // object damaged since (the check past the memo finds it). Its damaged object and
        // entry are dropped, and the build's next round rebuilds it, then runs this again,
        // as it does for a stage it runs itself.
        let mut damaged = Vec::new();
        for &i in inputs.iter().filter(|i| !built.contains_key(i)) {
            let id = &plan.nodes[i].id;
            let entry = cache.last(id).and_then(|k| cache.load_entry(&k));
            if let Some(Err(why)) = entry.map(|e| cache.verify(&e.built)) {
                damaged.push(format!(
                    "input from `{id}`: {why}; its entry was dropped so `{id}` is rebuilt"
                ));
            }
        }
        if !damaged.is_empty() {
            eprintln!("failed {id}: {}", damaged.join("; "));
            return Ok(EXIT_CORRUPT_INPUT);
        }
        eprintln!("error: {id}: inputs not built: {}", missing.join(", "));
        return Ok(1);
    }
    let ext = external(plan, cache, &p.root, n).map_err(Error::Usage)?;
    let ki = key_inputs(plan, n, ext, |i| {
        built.get(&i).map(|b| b.output_hash.clone())
    })
    .expect("every input is built");
    if let Some(key) = key.filter(|k| *k != ki.key()) {
        eprintln!(
            "error: this node keys `{id}` as {}, the build that submitted it as {}: the \
             pipelines, the data or the backend differ here (the backend is part of a train \
             stage's key; pass the same --device)",
            &ki.key()[..12],
            &key[..key.len().min(12)]
        );
        return Ok(1);
    }
    let input_entries: Vec<(usize, Built)> =
        inputs.iter().map(|&i| (i, built[&i].clone())).collect();
    let mut resources = plan.variant(n).parsed.config.resources();
    // What the build handed it, else what Slurm gave the job, else what the stage asks for
    // on this machine.
    resources.cpus = a
        .threads
        .or_else(|| {
            std::env::var("SLURM_CPUS_PER_TASK")
                .ok()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| resources.cpus.min(crate::par::cores()))
        .max(1);
    let gpus: Vec<usize> = (0..resources.gpus).collect();
    let env = Env {
        plan,
        cache,
        root: &p.root,
    };
    let lines = LineProgress::default();
    let job = Job {
        node: n,
        key_inputs: &ki,
        inputs: &input_entries,
        forced: force,
        resources,
        gpus: &gpus,
        progress: if a.progress_lines { &lines } else { &Silent },
        then: &[],
    };
    let result = run_stage(&env, &job);
    // The entry is what counts, and it is written; a full disk that refuses the index too
    // must not hide the stage's own message, which comes last.
    if let Err(e) = cache.save() {
        eprintln!("warning: cannot save the cache index: {e}");
    }
    match result {
        Ok(r) => {
            print!("{}", r.log);
            println!(
                "{} {}",
                if r.ran { "built" } else { "fresh" },
                plan.nodes[n].id
            );
            Ok(0)
        }
        Err(f) => {
            print!("{}", f.log);
            eprintln!("failed {}: {}", plan.nodes[n].id, f.message);
            Ok(if f.corrupt_input {
                EXIT_CORRUPT_INPUT
            } else if f.io {
                EXIT_IO
            } else {
                1
            })
        }
    }
}
