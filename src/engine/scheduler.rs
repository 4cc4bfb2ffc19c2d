//! Runs the stages a build needs, in dependency order, on a pool of workers.
//!
//! Each ready stage's key is computed from its inputs' outputs the moment they exist; a key
//! already in the cache is a hit, a key another worker is building waits for it (two
//! studies sharing a run train it once), and the per-key file lock does the same across
//! processes. CPU stages share `-j` slots and GPU stages the GPU slots. A failed stage fails
//! only what depends on it; without `--keep-going` nothing new starts after a failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use super::assess::{external, key_inputs};
use super::cache::{now_ms, Built, Cache, Entry, Lookup, RunRecord};
use super::fingerprint::KeyInputs;
use super::ui::Ui;
use crate::plan::Plan;
use crate::stage::{Input, Progress, Resources, RunCtx};

pub struct BuildOptions {
    pub jobs: usize,
    pub gpus: usize,
    pub keep_going: bool,
    pub force: HashSet<usize>,
}

pub use super::outcome::Outcome;

pub struct Summary {
    /// Every node of the build, dependencies first.
    pub results: Vec<(usize, Outcome)>,
}

impl Summary {
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_)))
    }
}

struct Failure {
    message: String,
    log: String,
}

struct Msg {
    node: usize,
    key: String,
    need: Resources,
    result: Result<(Built, String, bool), Failure>,
}

struct State<'a> {
    plan: &'a Plan,
    cache: &'a Cache,
    root: &'a Path,
    ui: &'a dyn Ui,
    done: HashMap<usize, Built>,
    outcome: HashMap<usize, Outcome>,
    remaining: HashMap<usize, usize>,
    dependents: HashMap<usize, Vec<usize>>,
    ready: VecDeque<usize>,
}

impl State<'_> {
    fn complete(&mut self, n: usize, entry: Built, outcome: Outcome, log: &str) {
        let node = &self.plan.nodes[n];
        let def = self.plan.def(n);
        let mut outcome = outcome;
        self.cache.set_last(&node.id, &def.id, &entry);
        if let Some(t) = &def.target {
            if let Err(e) = self.cache.materialize(&entry, self.root, t) {
                return self.fail(n, format!("cannot write target `{t}`: {e}"), log);
            }
        }
        if let Outcome::Built { .. } = outcome {
        } else {
            outcome = Outcome::Fresh;
        }
        self.ui.finish(&node.id, &outcome, log);
        self.outcome.insert(n, outcome);
        self.done.insert(n, entry);
        for d in self.dependents.get(&n).cloned().unwrap_or_default() {
            let r = self.remaining.get_mut(&d).expect("dependent in closure");
            *r -= 1;
            if *r == 0 {
                self.ready.push_back(d);
            }
        }
    }

    fn fail(&mut self, n: usize, message: String, log: &str) {
        let outcome = Outcome::Failed(message);
        self.ui.finish(&self.plan.nodes[n].id, &outcome, log);
        self.outcome.insert(n, outcome);
        let mut stack = self.dependents.get(&n).cloned().unwrap_or_default();
        while let Some(d) = stack.pop() {
            if self.outcome.contains_key(&d) {
                continue;
            }
            let why = Outcome::Skipped(format!("input `{}` failed", self.plan.nodes[n].id));
            self.ui.finish(&self.plan.nodes[d].id, &why, "");
            self.outcome.insert(d, why);
            stack.extend(self.dependents.get(&d).cloned().unwrap_or_default());
        }
    }
}

/// Builds `wanted` and everything it needs.
pub fn build(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    wanted: &[usize],
    opts: &BuildOptions,
    ui: &dyn Ui,
) -> Summary {
    cache.clean_tmp();
    install_quiet_panic_hook();
    let order = plan.closure(wanted);
    cache.precheck(order.iter().map(|&n| plan.nodes[n].id.as_str()));
    let mut st = State {
        plan,
        cache,
        root,
        ui,
        done: HashMap::new(),
        outcome: HashMap::new(),
        remaining: order
            .iter()
            .map(|&n| (n, plan.nodes[n].inputs.len()))
            .collect(),
        dependents: HashMap::new(),
        ready: VecDeque::new(),
    };
    for &n in &order {
        for &i in &plan.nodes[n].inputs {
            st.dependents.entry(i).or_default().push(n);
        }
        if plan.nodes[n].inputs.is_empty() {
            st.ready.push_back(n);
        }
    }
    let jobs = opts.jobs.max(1);
    let (mut free_cpus, mut free_gpus) = (jobs, opts.gpus);
    let mut running = 0usize;
    let mut running_keys: HashSet<String> = HashSet::new();
    let mut parked: HashMap<String, Vec<usize>> = HashMap::new();
    let mut stop = false;
    let (tx, rx) = mpsc::channel::<Msg>();

    std::thread::scope(|s| loop {
        let mut deferred = VecDeque::new();
        while let Some(n) = st.ready.pop_front() {
            if stop {
                continue;
            }
            let ext = match external(plan, cache, root, n) {
                Ok(ext) => ext,
                Err(why) => {
                    st.fail(n, why, "");
                    if !opts.keep_going {
                        stop = true;
                    }
                    continue;
                }
            };
            let ki = key_inputs(plan, n, ext, |i| {
                st.done.get(&i).map(|e| e.output_hash.clone())
            })
            .expect("inputs are done");
            let key = ki.key();
            if running_keys.contains(&key) {
                parked.entry(key).or_default().push(n);
                continue;
            }
            let forced = opts.force.contains(&n);
            if !forced {
                match cache.lookup(&plan.nodes[n].id, &key) {
                    Lookup::Hit(e) => {
                        st.complete(n, *e, Outcome::Fresh, "");
                        continue;
                    }
                    Lookup::Corrupt(why) => {
                        ui.note(&format!("{}: {why}; rebuilding", plan.nodes[n].id))
                    }
                    Lookup::Miss => {}
                }
            }
            let want = plan.variant(n).parsed.config.resources();
            let need = Resources {
                cpus: want.cpus.clamp(1, jobs),
                gpus: want.gpus.min(opts.gpus),
            };
            if need.cpus > free_cpus || need.gpus > free_gpus {
                deferred.push_back(n);
                continue;
            }
            free_cpus -= need.cpus;
            free_gpus -= need.gpus;
            running += 1;
            running_keys.insert(key.clone());
            let inputs: Vec<(usize, Built)> = plan.nodes[n]
                .inputs
                .iter()
                .map(|&i| (i, st.done[&i].clone()))
                .collect();
            let tx = tx.clone();
            let id = plan.nodes[n].id.clone();
            std::thread::Builder::new()
                .name(format!("stage:{id}"))
                .spawn_scoped(s, move || {
                    let progress = ui.start(&id);
                    let result = run_stage(
                        plan,
                        cache,
                        root,
                        n,
                        &ki,
                        &inputs,
                        forced,
                        progress.as_ref(),
                    );
                    let _ = tx.send(Msg {
                        node: n,
                        key,
                        need,
                        result,
                    });
                })
                .expect("spawn a worker thread");
        }
        st.ready = deferred;
        if running == 0 {
            break;
        }
        let msg = rx.recv().expect("a worker is running");
        running -= 1;
        free_cpus += msg.need.cpus;
        free_gpus += msg.need.gpus;
        running_keys.remove(&msg.key);
        let twins = parked.remove(&msg.key).unwrap_or_default();
        match msg.result {
            Ok((entry, log, ran)) => {
                let outcome = if ran {
                    Outcome::Built {
                        ms: entry.duration_ms,
                    }
                } else {
                    Outcome::Fresh
                };
                st.complete(
                    msg.node,
                    entry.clone(),
                    outcome,
                    if ran { &log } else { "" },
                );
                for t in twins {
                    st.complete(t, entry.clone(), Outcome::Fresh, "");
                }
            }
            Err(f) => {
                st.fail(msg.node, f.message.clone(), &f.log);
                for t in twins {
                    st.fail(t, f.message.clone(), "");
                }
                if !opts.keep_going {
                    stop = true;
                }
            }
        }
    });

    let results = order
        .iter()
        .map(|&n| {
            let o = st.outcome.remove(&n).unwrap_or_else(|| {
                let o = Outcome::Skipped("not started: the build stopped at the first failure (--keep-going builds the rest)".into());
                ui.finish(&plan.nodes[n].id, &o, "");
                o
            });
            (n, o)
        })
        .collect();
    Summary { results }
}

/// Runs one stage in a fresh folder and stores its outputs; `Ok(_, false)` when another
/// process built the same key while this one waited for the lock.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    n: usize,
    ki: &KeyInputs,
    inputs: &[(usize, Built)],
    forced: bool,
    progress: &dyn Progress,
) -> Result<(Built, String, bool), Failure> {
    let io_fail = |what: &str, e: std::io::Error| Failure {
        message: format!("{what}: {e}"),
        log: String::new(),
    };
    let node = &plan.nodes[n];
    let def = plan.def(n);
    let key = ki.key();
    let _lock = cache
        .lock(&key)
        .map_err(|e| io_fail("cannot lock the cache", e))?;
    if !forced {
        if let Lookup::Hit(e) = cache.lookup(&node.id, &key) {
            return Ok((*e, String::new(), false));
        }
    }
    let tmp = cache
        .tmp_dir(&key)
        .map_err(|e| io_fail("cannot create a work folder", e))?;
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).map_err(|e| io_fail("cannot create a work folder", e))?;
    let mut ctx_inputs = Vec::new();
    for (k, (i, entry)) in inputs.iter().enumerate() {
        let dir = tmp.join("in").join(k.to_string());
        cache
            .link_outputs(entry, &dir)
            .map_err(|e| io_fail("cannot lay out inputs", e))?;
        let up = &plan.nodes[*i];
        ctx_inputs.push(Input {
            stage: up.id.clone(),
            kind: plan.def(*i).kind.name(),
            label: up.label.clone(),
            coords: up.coords.clone(),
            key: entry.key.clone(),
            dir,
        });
    }
    let scratch = cache
        .scratch_dir(&key)
        .map_err(|e| io_fail("cannot create a scratch folder", e))?;
    let mut ctx = RunCtx {
        out_dir: out.clone(),
        scratch_dir: scratch.clone(),
        inputs: ctx_inputs,
        target: def.target.clone(),
        root: root.to_path_buf(),
        log: String::new(),
        memo: &cache.memo,
        progress,
    };
    let started = now_ms();
    let clock = Instant::now();
    let config = plan.variant(n).parsed.config.clone();
    let result = match catch_unwind(AssertUnwindSafe(|| config.run(&mut ctx))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    let ms = clock.elapsed().as_millis() as u64;
    let log = std::mem::take(&mut ctx.log);
    let result = result.and_then(|()| match &def.target {
        Some(t) => {
            let name = Path::new(t).file_name().unwrap_or_default();
            if out.join(name).is_file() {
                Ok(())
            } else {
                Err(format!(
                    "the stage did not write its target file `{}`",
                    name.to_string_lossy()
                ))
            }
        }
        None => Ok(()),
    });
    let stored = result.and_then(|()| {
        cache
            .store(&node.id, ki, &out, started, ms, log.clone())
            .map_err(|e| format!("cannot store outputs: {e}"))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let outcome = if stored.is_ok() { "built" } else { "failed" };
    let _ = cache.log_run(&RunRecord {
        stage: node.id.clone(),
        key: key.clone(),
        outcome: outcome.into(),
        duration_ms: ms,
        pid: std::process::id(),
    });
    match stored {
        Ok(Entry { built, log, .. }) => {
            let _ = std::fs::remove_dir_all(&scratch);
            Ok((built, log, true))
        }
        // The scratch folder stays: a rerun of the same key resumes from it.
        Err(message) => Err(Failure { message, log }),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// A panicking stage is reported once, in its own failure line; the default hook would also
/// print to stderr mid-build, interleaved with other stages.
fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_stage = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("stage:"));
            if !in_stage {
                default(info);
            }
        }));
    });
}
