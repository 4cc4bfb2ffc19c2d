//! `pipe explain`: the field-level reason a stage would rerun, down to the stage that changed.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::json;

use super::{print_json, Error, Project};
use crate::cli::ExplainArgs;
use crate::engine::assess::{assess, Freshness};

pub(super) fn run(p: &Project, a: &ExplainArgs) -> Result<ExitCode, Error> {
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
