//! Decides *when* each stage a build needs runs: in dependency order, as soon as its inputs
//! exist and a slot is free. *Where* it runs is the [`Executor`]'s business.
//!
//! Each ready stage's key is computed from its inputs' outputs the moment they exist; a key
//! already in the cache is a hit, a key another worker is building waits for it (two
//! studies sharing a run train it once), and the per-key file lock does the same across
//! processes. CPU stages share `-j` slots. GPU stages get device indices: `--gpus` devices,
//! each shared by at most `--gpu-share` stages at once, the least loaded first. Stages the
//! executor runs elsewhere (Slurm jobs) take no local slot, only one of `remote_jobs`. A
//! failed stage fails only what depends on it; without `--keep-going` nothing new starts
//! after a failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc;

use super::assess::{external, key_inputs};
use super::cache::{Built, Cache, Lookup};
use super::executor::{Env, Executor, Failure, Job, Ran};
use super::ui::Ui;
use crate::plan::Plan;
use crate::stage::Resources;

#[derive(Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    /// GPU devices of this machine, numbered `0..gpus`.
    pub gpus: usize,
    /// How many stages may share one GPU at once.
    pub gpu_share: usize,
    /// How many stages may run elsewhere (as Slurm jobs) at once.
    pub remote_jobs: usize,
    pub keep_going: bool,
    pub force: HashSet<usize>,
}

pub use super::outcome::Outcome;

pub struct Summary {
    /// Every node of the build, dependencies first.
    pub results: Vec<(usize, Outcome)>,
    /// How many failures were the cache's or the file system's (a target that could not be
    /// written, outputs that could not be stored), not a stage's.
    pub io_failures: usize,
}

impl Summary {
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_)))
    }
}

struct Msg {
    node: usize,
    key: String,
    slot: Slot,
    result: Result<Ran, Failure>,
}

/// What a running stage holds, given back when it ends.
enum Slot {
    Local { cpus: usize, gpus: Vec<usize> },
    Remote,
}

/// `want` distinct devices, each with fewer than `share` stages on it, the least loaded
/// first (the lowest index among equals); `None` when there are not enough.
fn pick_gpus(load: &[usize], share: usize, want: usize) -> Option<Vec<usize>> {
    let mut free: Vec<usize> = (0..load.len()).filter(|&d| load[d] < share).collect();
    free.sort_by_key(|&d| (load[d], d));
    (free.len() >= want).then(|| free[..want].to_vec())
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
    io_failures: usize,
    /// Stages an executor built along with another (a Slurm job's follow-ons): built by
    /// this build when their entries are found.
    along: HashSet<usize>,
}

impl State<'_> {
    /// Records `n` as done with `entry` and writes its target. `Err` when an object of the
    /// entry was found damaged while writing the target: the entry is dropped and `n` is
    /// left without an outcome, for the caller to run it again or fail it.
    fn complete(
        &mut self,
        n: usize,
        entry: Built,
        outcome: Outcome,
        log: &str,
    ) -> Result<(), String> {
        let node = &self.plan.nodes[n];
        let def = self.plan.def(n);
        let mut outcome = outcome;
        if let Some(t) = &def.target {
            match super::targets::materialize(self.cache, &entry, self.root, t) {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let _ = self.cache.verify(&entry);
                    return Err(format!("target `{t}`: {e}"));
                }
                Err(e) => {
                    self.io_failures += 1;
                    self.fail(n, format!("cannot write target `{t}`: {e}"), log);
                    return Ok(());
                }
                Ok(_) => {}
            }
        }
        self.cache.set_last(&node.id, &def.id, &entry);
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
        Ok(())
    }

    /// [`complete`](Self::complete) for a stage that has just run: a damaged object now is
    /// the disk's fault, not a stale cache's, and fails the stage.
    fn finish_run(&mut self, n: usize, entry: Built, outcome: Outcome, log: &str) {
        if let Err(why) = self.complete(n, entry, outcome, log) {
            self.io_failures += 1;
            self.fail(n, why, log);
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

/// Builds `wanted` and everything it needs, each stage run by `exec`. A stage that finds an
/// input corrupt drops that input's entry; a second round then rebuilds the input and runs
/// the stage again (what was fresh or built in the first round is a cache hit in the second).
pub fn build(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    wanted: &[usize],
    opts: &BuildOptions,
    ui: &dyn Ui,
    exec: &dyn Executor,
) -> Summary {
    let first = match round(plan, cache, root, wanted, opts, ui, exec, None) {
        Ok(summary) => return summary,
        Err(built) => built,
    };
    // What ran in the first round is a cache hit now: a forced stage is not run twice.
    let mut again = opts.clone();
    again.force.retain(|n| !first.contains_key(n));
    let mut summary = round(plan, cache, root, wanted, &again, ui, exec, Some(&first))
        .unwrap_or_else(|_| unreachable!("the last round always ends in a summary"));
    for (n, o) in &mut summary.results {
        if matches!(o, Outcome::Fresh) {
            if let Some(built) = first.get(n) {
                *o = built.clone();
            }
        }
    }
    summary
}

/// One pass over the build. The first (`earlier` is `None`) ends in `Err` with the stages
/// it ran when a stage found a corrupt input; the second, handed those, always ends in a
/// summary.
#[allow(clippy::too_many_arguments)]
fn round(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    wanted: &[usize],
    opts: &BuildOptions,
    ui: &dyn Ui,
    exec: &dyn Executor,
    earlier: Option<&HashMap<usize, Outcome>>,
) -> Result<Summary, HashMap<usize, Outcome>> {
    let last = earlier.is_some();
    let mut corrupt = false;
    let env = Env { plan, cache, root };
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
        io_failures: 0,
        along: HashSet::new(),
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
    let mut free_cpus = jobs;
    let mut gpu_load = vec![0usize; opts.gpus];
    let share = opts.gpu_share.max(1);
    let mut remote_running = 0usize;
    let mut running = 0usize;
    let mut running_keys: HashSet<String> = HashSet::new();
    let mut parked: HashMap<String, Vec<usize>> = HashMap::new();
    let mut stop = false;
    let mut warned_gpus: HashSet<usize> = HashSet::new();
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
                    Lookup::Hit(e) if st.along.remove(&n) => {
                        let log = cache.load_entry(&key).map(|e| e.log).unwrap_or_default();
                        let ms = e.duration_ms;
                        st.finish_run(n, *e, Outcome::Built { ms }, &log);
                        continue;
                    }
                    Lookup::Hit(e) => match st.complete(n, *e, Outcome::Fresh, "") {
                        Ok(()) => continue,
                        // Dropped: run again below, like any damaged output.
                        Err(why) => ui.note(&format!("{}: {why}; rebuilding", plan.nodes[n].id)),
                    },
                    Lookup::Corrupt(why) => {
                        ui.note(&format!("{}: {why}; rebuilding", plan.nodes[n].id))
                    }
                    Lookup::Miss => {}
                }
            }
            let want = plan.variant(n).parsed.config.resources();
            let (need, slot) =
                if exec.remote(&env, n) {
                    if remote_running >= opts.remote_jobs.max(1) {
                        deferred.push_back(n);
                        continue;
                    }
                    remote_running += 1;
                    (want, Slot::Remote)
                } else {
                    if want.gpus > opts.gpus && !warned_gpus.contains(&plan.nodes[n].def) {
                        warned_gpus.insert(plan.nodes[n].def);
                        ui.note(&format!(
                        "{}: asks for {} GPU(s), and this build has {} (--gpus): it runs with {}",
                        plan.def(n).id,
                        want.gpus,
                        opts.gpus,
                        if opts.gpus == 0 { "none".to_string() } else { opts.gpus.to_string() }
                    ));
                    }
                    let cpus = want.cpus.clamp(1, jobs);
                    // Spare cores, shared with the stages still waiting in this round.
                    let waiting = st.ready.len() + deferred.len();
                    let spare = free_cpus.saturating_sub(cpus) / (1 + waiting);
                    let need = Resources {
                        cpus: cpus + want.more_cpus.min(spare),
                        gpus: want.gpus.min(opts.gpus),
                        more_cpus: 0,
                    };
                    let gpus = match pick_gpus(&gpu_load, share, need.gpus) {
                        Some(g) if need.cpus <= free_cpus => g,
                        _ => {
                            deferred.push_back(n);
                            continue;
                        }
                    };
                    free_cpus -= need.cpus;
                    for &d in &gpus {
                        gpu_load[d] += 1;
                    }
                    (
                        need,
                        Slot::Local {
                            cpus: need.cpus,
                            gpus,
                        },
                    )
                };
            running += 1;
            running_keys.insert(key.clone());
            let inputs: Vec<(usize, Built)> = plan.nodes[n]
                .inputs
                .iter()
                .map(|&i| (i, st.done[&i].clone()))
                .collect();
            // What needs only this stage now, for an executor that can run it right after.
            let then: Vec<usize> = st
                .dependents
                .get(&n)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&d| {
                    !opts.force.contains(&d)
                        && plan.nodes[d]
                            .inputs
                            .iter()
                            .all(|&i| i == n || st.done.contains_key(&i))
                })
                .collect();
            let tx = tx.clone();
            let id = plan.nodes[n].id.clone();
            let env = &env;
            std::thread::Builder::new()
                .name(format!("stage:{id}"))
                .spawn_scoped(s, move || {
                    let progress = ui.start(&id);
                    let gpus: Vec<usize> = match &slot {
                        Slot::Local { gpus, .. } => gpus.clone(),
                        Slot::Remote => (0..need.gpus).collect(),
                    };
                    let job = Job {
                        node: n,
                        key_inputs: &ki,
                        inputs: &inputs,
                        forced,
                        resources: need,
                        gpus: &gpus,
                        progress: progress.as_ref(),
                        then: &then,
                    };
                    let result = exec.run(env, &job);
                    let _ = tx.send(Msg {
                        node: n,
                        key,
                        slot,
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
        match &msg.slot {
            Slot::Local { cpus, gpus } => {
                free_cpus += cpus;
                for &d in gpus {
                    gpu_load[d] -= 1;
                }
            }
            Slot::Remote => remote_running -= 1,
        }
        running_keys.remove(&msg.key);
        let twins = parked.remove(&msg.key).unwrap_or_default();
        match msg.result {
            Ok(Ran {
                built: entry,
                log,
                ran,
                along,
            }) => {
                st.along.extend(along);
                let outcome = if ran {
                    Outcome::Built {
                        ms: entry.duration_ms,
                    }
                } else {
                    Outcome::Fresh
                };
                st.finish_run(
                    msg.node,
                    entry.clone(),
                    outcome,
                    if ran { &log } else { "" },
                );
                for t in twins {
                    st.finish_run(t, entry.clone(), Outcome::Fresh, "");
                }
            }
            Err(f) if f.corrupt_input && !last => {
                // Whoever found the damage (this process, a child, a Slurm job) dropped it on
                // disk; checked here too, the inputs' entries leave this process's index, so
                // the next round rebuilds them.
                for i in &plan.nodes[msg.node].inputs {
                    if let Some(b) = st.done.get(i) {
                        let _ = st.cache.verify(b);
                    }
                }
                // Left without an outcome, with its twins: the next round runs them.
                ui.note(&format!("{}: {}", plan.nodes[msg.node].id, f.message));
                corrupt = true;
            }
            Err(f) => {
                st.io_failures += f.io as usize;
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

    if corrupt {
        return Err(st
            .outcome
            .into_iter()
            .filter(|(_, o)| matches!(o, Outcome::Built { .. }))
            .collect());
    }
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
    Ok(Summary {
        results,
        io_failures: st.io_failures,
    })
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::engine::outcome::Outcome;
    use crate::stage::Progress;

    struct Quiet;
    impl Progress for Quiet {
        fn set(&self, _: u64, _: u64, _: &str) {}
    }
    impl Ui for Quiet {
        fn start(&self, _: &str) -> Box<dyn Progress> {
            Box::new(Quiet)
        }
        fn finish(&self, _: &str, _: &Outcome, _: &str) {}
        fn note(&self, _: &str) {}
    }

    /// Runs nothing: records what each job was handed and how many ran at once, where.
    #[derive(Default)]
    struct Fake {
        remote: bool,
        running: Mutex<HashMap<Option<usize>, usize>>,
        most: Mutex<HashMap<Option<usize>, usize>>,
        handed: Mutex<Vec<(String, Vec<usize>)>>,
        cores: Mutex<HashMap<String, usize>>,
    }

    impl Executor for Fake {
        fn run(&self, env: &Env, job: &Job) -> Result<Ran, Failure> {
            let places: Vec<Option<usize>> = if job.gpus.is_empty() {
                vec![None]
            } else {
                job.gpus.iter().map(|&g| Some(g)).collect()
            };
            for p in &places {
                let mut r = self.running.lock().unwrap();
                let n = r.entry(*p).or_default();
                *n += 1;
                let mut most = self.most.lock().unwrap();
                let m = most.entry(*p).or_default();
                *m = (*m).max(*n);
            }
            self.handed
                .lock()
                .unwrap()
                .push((env.plan.nodes[job.node].id.clone(), job.gpus.to_vec()));
            self.cores
                .lock()
                .unwrap()
                .insert(env.plan.nodes[job.node].id.clone(), job.resources.cpus);
            std::thread::sleep(Duration::from_millis(20));
            for p in &places {
                *self.running.lock().unwrap().get_mut(p).unwrap() -= 1;
            }
            let key = job.key_inputs.key();
            Ok(Ran {
                built: Built {
                    output_hash: format!("out-{key}"),
                    key,
                    outputs: Vec::new(),
                    duration_ms: 20,
                },
                log: String::new(),
                ran: true,
                along: Vec::new(),
            })
        }
        fn remote(&self, _: &Env, _: usize) -> bool {
            self.remote
        }
    }

    fn plan(stages: &str) -> Plan {
        let text = format!("Pipeline(stages: [{stages}])");
        let spec = crate::pipeline::load_files(
            vec![(std::path::PathBuf::from("t.ron"), text)],
            &crate::stages::all(),
            None,
        )
        .unwrap();
        Plan::new(spec).unwrap()
    }

    fn run(plan: &Plan, exec: &Fake, opts: BuildOptions) -> Summary {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let all: Vec<usize> = (0..plan.nodes.len()).collect();
        build(plan, &cache, dir.path(), &all, &opts, &Quiet, exec)
    }

    fn opts(jobs: usize, gpus: usize, gpu_share: usize, remote_jobs: usize) -> BuildOptions {
        BuildOptions {
            jobs,
            gpus,
            gpu_share,
            remote_jobs,
            keep_going: false,
            force: HashSet::new(),
        }
    }

    #[test]
    fn gpu_stages_get_devices_within_the_share_and_cpu_stages_none() {
        let stages: String = (0..6)
            .map(|i| format!(r#"(name: "g{i}", kind: "fake", config: (gpu: true, value: "{i}")),"#))
            .chain([r#"(name: "c", kind: "fake", config: (value: "cpu")),"#.to_string()])
            .collect();
        let p = plan(&stages);
        for share in [1, 2] {
            let exec = Fake::default();
            let s = run(&p, &exec, opts(8, 2, share, 1));
            assert!(!s.failed());
            let most = exec.most.lock().unwrap();
            assert_eq!(most.get(&Some(0)), Some(&share), "device 0 at most {share}");
            assert_eq!(most.get(&Some(1)), Some(&share), "device 1 at most {share}");
            let handed = exec.handed.lock().unwrap();
            for (id, gpus) in handed.iter() {
                assert_eq!(gpus.len(), usize::from(id != "t:c"), "{id}: {gpus:?}");
            }
        }
    }

    #[test]
    fn remote_stages_take_no_local_slot_only_one_of_the_remote_ones() {
        let stages: String = (0..6)
            .map(|i| format!(r#"(name: "r{i}", kind: "fake", config: (value: "{i}")),"#))
            .collect();
        let p = plan(&stages);
        let exec = Fake {
            remote: true,
            ..Fake::default()
        };
        let s = run(&p, &exec, opts(1, 1, 1, 4));
        assert!(!s.failed());
        assert_eq!(exec.most.lock().unwrap().get(&None), Some(&4));
    }

    #[test]
    fn stages_that_use_more_cores_get_the_spare_ones_and_one_each_while_others_wait() {
        let stages = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    format!(
                        r#"(name: "s{i}", kind: "fake", config: (value: "{i}", more_cpus: 3)),"#
                    )
                })
                .collect()
        };
        // Six waiting: one core each, four at once.
        let exec = Fake::default();
        assert!(!run(&plan(&stages(6)), &exec, opts(4, 1, 1, 1)).failed());
        assert_eq!(exec.most.lock().unwrap().get(&None), Some(&4));
        assert!(exec.cores.lock().unwrap().values().all(|&c| c == 1));
        // Alone: every core. Two: half each.
        for (n, each) in [(1, 4), (2, 2)] {
            let exec = Fake::default();
            assert!(!run(&plan(&stages(n)), &exec, opts(4, 1, 1, 1)).failed());
            let cores = exec.cores.lock().unwrap();
            assert!(cores.values().all(|&c| c == each), "{n} stages: {cores:?}");
        }
    }

    #[test]
    fn the_least_loaded_devices_are_picked() {
        assert_eq!(pick_gpus(&[1, 0, 1], 2, 1), Some(vec![1]));
        assert_eq!(pick_gpus(&[1, 0, 2], 2, 2), Some(vec![1, 0]));
        assert_eq!(pick_gpus(&[2, 2], 2, 1), None);
        assert_eq!(pick_gpus(&[], 1, 0), Some(vec![]));
    }
}
