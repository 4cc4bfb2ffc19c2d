//! Freshness without running anything: which stages are fresh, which would run, and the
//! field-level reason why (`status`, `explain`, `--dry-run`, `gc`).

use std::collections::HashSet;
use std::path::Path;

use super::cache::{Built, Cache, Lookup};
use super::deps;
use super::fingerprint::{diff, InputKey, KeyInputs};
use crate::plan::Plan;
use crate::stage::{KeyCtx, Missing};

/// A node's key material from outside the cache, or why it cannot be had.
pub fn external(plan: &Plan, cache: &Cache, root: &Path, node: usize) -> Result<Outside, String> {
    let ctx = KeyCtx {
        memo: &cache.memo,
        root,
    };
    let external = match plan.variant(node).parsed.config.external_key(&ctx) {
        Ok(ext) => ext,
        Err(e) => match e
            .downcast_ref::<Missing>()
            .filter(|m| m.stand_in)
            .and_then(|_| as_last_built(plan, cache, node))
        {
            Some(ext) => ext,
            None => return Err(format!("cannot fingerprint: {e:#}")),
        },
    };
    let def = plan.def(node);
    let deps = if def.deps.is_empty() {
        None
    } else {
        Some(deps::hashes(&ctx, root, &def.deps)?)
    };
    Ok(Outside { external, deps })
}

/// The external part of `node`'s key as its last build had it, when that build had the
/// same kind and config: what stands in for a local copy that is not here now.
fn as_last_built(plan: &Plan, cache: &Cache, node: usize) -> Option<Option<serde_json::Value>> {
    let entry = cache.load_entry(&cache.last(&plan.nodes[node].id)?)?;
    let ki = entry.key_inputs;
    (ki.kind == plan.def(node).kind.name() && *ki.config == *plan.variant(node).parsed.key)
        .then_some(ki.external)
}

/// Stages of `order` without inputs (where data enters: a download) whose outside input is
/// missing with no earlier build to stand in: the message and hint of each, for a build to
/// stop on before anything runs.
pub fn missing(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    order: &[usize],
) -> Vec<(usize, String, String)> {
    let ctx = KeyCtx {
        memo: &cache.memo,
        root,
    };
    let mut out = Vec::new();
    for &n in order.iter().filter(|&&n| plan.nodes[n].inputs.is_empty()) {
        if let Err(e) = plan.variant(n).parsed.config.external_key(&ctx) {
            if let Some(m) = e.downcast_ref::<Missing>() {
                if !m.stand_in || as_last_built(plan, cache, n).is_none() {
                    out.push((n, m.message.clone(), m.hint.clone()));
                }
            }
        }
    }
    out
}

/// What a key reads from outside the cache: the config's own (a local dataset), and the
/// stage's declared `deps`.
pub struct Outside {
    pub external: Option<serde_json::Value>,
    pub deps: Option<std::collections::BTreeMap<String, String>>,
}

/// A node's key inputs, given the output hash of each of its inputs.
pub fn key_inputs(
    plan: &Plan,
    node: usize,
    outside: Outside,
    output_of: impl Fn(usize) -> Option<String>,
) -> Option<KeyInputs> {
    let n = &plan.nodes[node];
    let def = plan.def(node);
    let gathers = def.kind.gathers();
    let mut inputs = Vec::with_capacity(n.inputs.len());
    for &i in &n.inputs {
        inputs.push(InputKey {
            stage: plan.nodes[i].id.clone(),
            label: gathers.then(|| plan.nodes[i].label.clone()),
            hash: output_of(i)?,
        });
    }
    Some(KeyInputs {
        kind: def.kind.name().to_string(),
        version: def.kind.version(),
        config: plan.variant(node).parsed.key.clone(),
        external: outside.external,
        deps: outside.deps,
        target: def.target.clone(),
        inputs,
    })
}

pub enum Freshness {
    Fresh(Box<Built>),
    /// Would run; the reasons say why.
    Stale {
        key: Option<String>,
        reasons: Vec<String>,
    },
}

impl Freshness {
    pub fn is_fresh(&self) -> bool {
        matches!(self, Freshness::Fresh(_))
    }
}

/// Why `key_inputs` has no entry: the difference from the last build of this stage, or of
/// the closest variant of the same stage definition.
pub fn why_missing(plan: &Plan, cache: &Cache, node: usize, ki: &KeyInputs) -> Vec<String> {
    let id = &plan.nodes[node].id;
    if let Some(prev) = cache.last(id).and_then(|k| cache.load_entry(&k)) {
        let d = diff(&prev.key_inputs, ki);
        return if d.is_empty() {
            vec!["not in the cache (removed by `clean` or `gc`)".into()]
        } else {
            d
        };
    }
    // A variant edited in place has vanished from the plan: compare with those first (one
    // entry read after a one-value edit, not one per variant), then with the closest.
    let (gone, present): (Vec<_>, Vec<_>) = cache
        .last_of_def(&plan.def(node).id)
        .into_iter()
        .partition(|(stage, _)| !plan.by_id.contains_key(stage));
    let closest_of = |candidates: &[(String, String)]| {
        candidates
            .iter()
            .filter_map(|(stage, key)| {
                cache
                    .load_entry(key)
                    .map(|e| (stage.clone(), diff(&e.key_inputs, ki)))
            })
            .filter(|(_, d)| !d.is_empty())
            .min_by_key(|(_, d)| d.len())
    };
    let closest = closest_of(&gone).or_else(|| closest_of(&present));
    match closest {
        Some((stage, d)) => {
            let mut out = vec![format!(
                "new variant; compared with the last build of `{stage}`:"
            )];
            out.extend(d);
            out
        }
        None => vec!["never built".into()],
    }
}

/// Freshness of `nodes` (a closure, dependencies first). A stage whose input would be
/// rebuilt is stale for that reason only: its key is unknown until the input exists.
///
/// The stages go in waves: a stage's wave comes after all of its inputs', so the stages
/// of one wave need nothing of each other and are assessed on every core (a study's
/// variants are one wave; at N = 500 this was a quarter of the decision after an edit).
pub fn assess(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    nodes: &[usize],
    force: &HashSet<usize>,
) -> Vec<(usize, Freshness)> {
    cache.precheck(nodes.iter().map(|&n| plan.nodes[n].id.as_str()));
    let mut out: Vec<Option<Freshness>> = (0..plan.nodes.len()).map(|_| None).collect();
    for wave in waves(plan, nodes) {
        let states = crate::par::map_chunks(&wave, 64, |part| {
            part.iter()
                .map(|&n| assess_one(plan, cache, root, n, force, &out))
                .collect::<Vec<_>>()
        });
        for (&n, state) in wave.iter().zip(states.into_iter().flatten()) {
            out[n] = Some(state);
        }
    }
    nodes
        .iter()
        .map(|&n| (n, out[n].take().expect("assessed")))
        .collect()
}

/// `nodes` (dependencies first) grouped by their longest path from a stage without
/// inputs among them.
fn waves(plan: &Plan, nodes: &[usize]) -> Vec<Vec<usize>> {
    let mut depth = vec![0; plan.nodes.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for &n in nodes {
        let d = plan.nodes[n]
            .inputs
            .iter()
            .map(|&i| depth[i] + 1)
            .max()
            .unwrap_or(0);
        depth[n] = d;
        if waves.len() <= d {
            waves.resize_with(d + 1, Vec::new);
        }
        waves[d].push(n);
    }
    waves
}

/// Node `n`'s freshness, given `out`, the freshness of the stages assessed before it.
fn assess_one(
    plan: &Plan,
    cache: &Cache,
    root: &Path,
    n: usize,
    force: &HashSet<usize>,
    out: &[Option<Freshness>],
) -> Freshness {
    let stale_input = plan.nodes[n]
        .inputs
        .iter()
        .find(|&&i| !out[i].as_ref().is_some_and(|f| f.is_fresh()));
    if let Some(&i) = stale_input {
        return Freshness::Stale {
            key: None,
            reasons: vec![format!("input `{}` will be rebuilt", plan.nodes[i].id)],
        };
    }
    match external(plan, cache, root, n) {
        Err(why) => Freshness::Stale {
            key: None,
            reasons: vec![why],
        },
        Ok(ext) => {
            let ki = key_inputs(plan, n, ext, |i| match &out[i] {
                Some(Freshness::Fresh(e)) => Some(e.output_hash.clone()),
                _ => None,
            })
            .expect("inputs are fresh");
            fresh_or_stale(plan, cache, n, &ki, force)
        }
    }
}

fn fresh_or_stale(
    plan: &Plan,
    cache: &Cache,
    n: usize,
    ki: &KeyInputs,
    force: &HashSet<usize>,
) -> Freshness {
    let key = ki.key();
    match cache.lookup(&plan.nodes[n].id, &key) {
        Lookup::Hit(_) if force.contains(&n) => Freshness::Stale {
            key: Some(key),
            reasons: vec!["forced with --force".into()],
        },
        Lookup::Hit(e) => Freshness::Fresh(e),
        Lookup::Corrupt(why) => Freshness::Stale {
            key: Some(key),
            reasons: vec![why],
        },
        Lookup::Miss => Freshness::Stale {
            reasons: why_missing(plan, cache, n, ki),
            key: Some(key),
        },
    }
}
