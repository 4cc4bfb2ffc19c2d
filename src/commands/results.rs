//! What `show`, `diff`, `outputs` and `log` share: a stage's outputs as the cache holds
//! them (fresh, or the last ones built when the pipeline has changed since), read without
//! laying them out, and one row of headline numbers per evaluated variant.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{Error, Project};
use crate::engine::assess::{assess, Freshness};
use crate::engine::cache::{Built, Cache};
use crate::report::stats::{stats, Stats};
use crate::report::Run;

/// A stage's outputs in the cache: fresh, or (`stale`) the last built before the
/// pipeline, its inputs or the data changed. `None` where it was never built.
pub(super) struct Held {
    pub built: Built,
    pub stale: bool,
}

pub(super) fn held(p: &Project, cache: &Cache, nodes: &[usize]) -> Vec<(usize, Option<Held>)> {
    // A key is known only from its inputs' outputs: assess what they depend on too.
    let wanted: HashSet<usize> = nodes.iter().copied().collect();
    assess(
        &p.plan,
        cache,
        &p.root,
        &p.plan.closure(nodes),
        &HashSet::new(),
    )
    .into_iter()
    .filter(|(n, _)| wanted.contains(n))
    .map(|(n, state)| {
        let held = match state {
            Freshness::Fresh(b) => Some(Held {
                built: *b,
                stale: false,
            }),
            Freshness::Stale { .. } => cache
                .last(&p.plan.nodes[n].id)
                .and_then(|k| cache.load_entry(&k))
                .map(|e| Held {
                    built: e.built,
                    stale: true,
                }),
        };
        (n, held)
    })
    .collect()
}

/// One output file's bytes, from its object.
pub(super) fn read_output(
    cache: &Cache,
    built: &Built,
    name: &str,
) -> Result<Option<Vec<u8>>, String> {
    let Some(out) = built.outputs.iter().find(|o| o.path == name) else {
        return Ok(None);
    };
    let bytes = std::fs::read(cache.object_path(&out.hash))
        .map_err(|e| format!("its cached `{name}` cannot be read ({e}): {REMAKE}"))?;
    // Past the memo, as a stage's inputs are checked: a flipped byte keeps size and mtime.
    if blake3::hash(&bytes).to_hex().as_str() != out.hash {
        return Err(format!(
            "its cached `{name}` is damaged (its blake3 no longer matches): {REMAKE}"
        ));
    }
    Ok(Some(bytes))
}

/// What to do about a damaged object, as every results command says it.
pub(super) const REMAKE: &str =
    "`pipe verify --repair` drops it and the next `pipe build` makes it again";

/// The one node a name selects, for commands about one variant.
pub(super) fn one(p: &Project, name: &str) -> Result<usize, Error> {
    // A stage's base variant is named by the stage's id, which also names all its variants.
    if let Some(&n) = p.plan.by_id.get(name) {
        return Ok(n);
    }
    let found = p.plan.select(&[name.to_string()]).map_err(Error::Usage)?;
    match found.as_slice() {
        [n] => Ok(*n),
        many => Err(Error::Usage(format!(
            "`{name}` names {} stages; name one variant, e.g. `{}`",
            many.len(),
            p.plan.nodes[many[0]].id
        ))),
    }
}

/// One evaluated variant (one seed of it): where it comes from and its headline numbers.
#[derive(Serialize)]
pub(super) struct Row {
    /// The study: the target of the report that gathers it, as the report names itself
    /// (`quick/momentum` for `reports/quick/momentum.md`); the stage's id where no report
    /// gathers it.
    pub study: String,
    pub stage: String,
    /// `base`, or the fields that differ from it.
    pub variant: String,
    /// The variant this run replicates (its label without its own seed), as the report
    /// groups seeds.
    #[serde(skip)]
    pub replicates: String,
    pub seed: u64,
    pub family: String,
    pub backend: String,
    pub parameters: usize,
    /// Outputs of an older version of the pipeline (it changed since they were built).
    pub stale: bool,
    #[serde(flatten)]
    pub stats: Stats,
}

impl Row {
    pub fn read(
        p: &Project,
        gatherers: &Gatherers,
        cache: &Cache,
        n: usize,
        held: &Held,
    ) -> Result<Row, String> {
        let node = &p.plan.nodes[n];
        // Every file is checked against its hash; the first damaged one is the row's error.
        let damaged = std::cell::RefCell::new(None);
        let file = |f: &str| {
            read_output(cache, &held.built, f).unwrap_or_else(|e| {
                damaged.borrow_mut().get_or_insert(e);
                None
            })
        };
        let run = Run::read(&node.label, &node.coords, &node.id, &file);
        if let Some(e) = damaged.into_inner() {
            return Err(e);
        }
        let run = run.map_err(|e| format!("{e:#}"))?;
        Ok(Row {
            study: gatherers.study(p, n),
            stage: node.id.clone(),
            variant: node.label.clone(),
            replicates: run.variant(),
            seed: run.summary.seed,
            family: run.summary.family.clone(),
            backend: run.summary.backend.clone(),
            parameters: run.summary.parameters,
            stale: held.stale,
            stats: stats(&run),
        })
    }

    /// `ok`, `stale`, or what went wrong.
    pub fn status(&self) -> String {
        match (&self.stats.failure, self.stale) {
            (Some(f), _) => f.clone(),
            (None, true) => "stale".into(),
            (None, false) => "ok".into(),
        }
    }
}

/// The report that gathers each node, found once per command: `show`'s study column, and
/// which `command` stages are runs, ask it for every node (a scan of the plan each would be
/// quadratic).
pub(super) struct Gatherers(HashMap<usize, usize>);

impl Gatherers {
    pub fn of(p: &Project) -> Gatherers {
        let mut by = HashMap::new();
        for r in (0..p.plan.nodes.len()).filter(|&r| p.plan.def(r).kind.name() == "report") {
            for &i in &p.plan.nodes[r].inputs {
                by.entry(i).or_insert(r);
            }
        }
        Gatherers(by)
    }

    /// The study node `n` belongs to: the report gathering it names it after its target, as
    /// in its figures' titles (several studies of a `studies:` family share a file, not a
    /// report); the stage's id where no report gathers it.
    pub fn study(&self, p: &Project, n: usize) -> String {
        match self
            .0
            .get(&n)
            .and_then(|&r| p.plan.def(r).target.as_deref())
        {
            Some(t) => crate::report::study_name(t),
            None => p.plan.def(n).id.clone(),
        }
    }

    /// Whether node `n` is a run whose results `show` and `diff` read: an `evaluate` stage,
    /// or a `command` that a report gathers (a training script of the user's own).
    pub fn is_run(&self, p: &Project, n: usize) -> bool {
        match p.plan.def(n).kind.name() {
            "evaluate" => true,
            "command" => self.0.contains_key(&n),
            _ => false,
        }
    }
}
