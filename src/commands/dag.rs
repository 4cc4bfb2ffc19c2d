//! `pipe dag`: the graph as a text tree, Graphviz dot or a Mermaid flowchart.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use super::{Error, Project};
use crate::cli::DagArgs;

pub(super) fn run(p: &Project, a: &DagArgs) -> Result<ExitCode, Error> {
    let roots = if a.targets.is_empty() {
        let t: Vec<usize> = p.plan.targets().into_iter().map(|(_, n)| n).collect();
        if t.is_empty() {
            // No targets: every node nothing depends on.
            let used: HashSet<usize> = p
                .plan
                .nodes
                .iter()
                .flat_map(|n| n.inputs.iter().copied())
                .collect();
            (0..p.plan.nodes.len())
                .filter(|n| !used.contains(n))
                .collect()
        } else {
            t
        }
    } else {
        p.plan.select(&a.targets).map_err(Error::Usage)?
    };
    let nodes = p.plan.closure(&roots);
    let name = |n: usize| {
        let node = &p.plan.nodes[n];
        format!("{} ({})", node.id, p.plan.def(n).kind.name())
    };
    if a.json {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|&n| {
                let node = &p.plan.nodes[n];
                serde_json::json!({
                    "id": node.id,
                    "kind": p.plan.def(n).kind.name(),
                    "inputs": node.inputs.iter().map(|&i| p.plan.nodes[i].id.as_str()).collect::<Vec<_>>(),
                    "target": p.plan.def(n).target,
                })
            })
            .collect();
        super::print_json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    if a.dot {
        println!("digraph pipe {{\n  rankdir=LR;\n  node [shape=box];");
        for &n in &nodes {
            let shape = if p.plan.def(n).target.is_some() {
                ", shape=note"
            } else {
                ""
            };
            println!("  n{n} [label={:?}{shape}];", name(n));
            for &i in &p.plan.nodes[n].inputs {
                println!("  n{i} -> n{n};");
            }
        }
        println!("}}");
    } else if a.mermaid {
        println!("flowchart LR");
        for &n in &nodes {
            println!("  n{n}[\"{}\"]", name(n).replace('"', "#quot;"));
            for &i in &p.plan.nodes[n].inputs {
                println!("  n{i} --> n{n}");
            }
        }
    } else {
        /// A node shown before is not expanded again: `(*)` marks it, as `cargo tree` does,
        /// so a data stage every training reads is one subtree, not one per training.
        fn tree(
            p: &Project,
            n: usize,
            prefix: &str,
            (last, top): (bool, bool),
            seen: &mut HashSet<usize>,
            out: &mut String,
        ) -> bool {
            let node = &p.plan.nodes[n];
            let def = p.plan.def(n);
            let mut label = format!("{} ({})", node.id, def.kind.name());
            if let Some(t) = &def.target {
                label = format!("{t} ← {label}");
            }
            let (branch, next) = if top {
                ("", String::new())
            } else if last {
                ("└── ", format!("{prefix}    "))
            } else {
                ("├── ", format!("{prefix}│   "))
            };
            let again = !seen.insert(n) && !node.inputs.is_empty();
            let mark = if again { " (*)" } else { "" };
            let _ = writeln!(out, "{prefix}{branch}{label}{mark}");
            if again {
                return true;
            }
            let k = node.inputs.len();
            let mut marked = false;
            for (j, &i) in node.inputs.iter().enumerate() {
                marked |= tree(p, i, &next, (j + 1 == k, false), seen, out);
            }
            marked
        }
        let mut out = String::new();
        let mut seen = HashSet::new();
        let mut marked = false;
        for &r in &roots {
            marked |= tree(p, r, "", (true, true), &mut seen, &mut out);
        }
        if marked {
            out.push_str("(*) shown above, with its inputs\n");
        }
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}
