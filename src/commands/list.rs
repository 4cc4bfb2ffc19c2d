//! `pipe list`: pipeline files, stages and targets.

use std::process::ExitCode;

use serde_json::json;

use super::{print_json, Error, Project};
use crate::cli::ListArgs;

pub(super) fn run(p: &Project, a: &ListArgs) -> Result<ExitCode, Error> {
    let plan = &p.plan;
    let files: Vec<_> = plan
        .spec
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let stages = plan.spec.defs.iter().filter(|d| d.file == i).count();
            json!({"file": f.rel, "namespace": f.ns, "description": f.description, "stages": stages})
        })
        .collect();
    let stages: Vec<_> = plan
        .spec
        .defs
        .iter()
        .map(|d| {
            let nodes: Vec<&str> = plan.nodes.iter().filter(|n| plan.spec.defs[n.def].id == d.id).map(|n| n.id.as_str()).collect();
            let inputs: Vec<&str> = d.inputs.iter().map(|&i| plan.spec.defs[i].id.as_str()).collect();
            json!({"stage": d.id, "kind": d.kind.name(), "description": d.description, "inputs": inputs,
                   "variants": d.variants.len(), "nodes": nodes, "target": d.target})
        })
        .collect();
    let targets: Vec<_> = plan
        .targets()
        .into_iter()
        .map(|(t, n)| json!({"target": t, "stage": plan.nodes[n].id}))
        .collect();
    if a.json {
        print_json(&json!({"pipelines": files, "stages": stages, "targets": targets}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("pipelines:");
    for f in &plan.spec.files {
        let desc = if f.description.is_empty() {
            String::new()
        } else {
            format!("  {}", f.description)
        };
        println!("  {}{desc}", f.rel.display());
    }
    println!("stages:");
    for d in &plan.spec.defs {
        let n = plan
            .nodes
            .iter()
            .filter(|n| plan.spec.defs[n.def].id == d.id)
            .count();
        let inputs: Vec<&str> = d
            .inputs
            .iter()
            .map(|&i| plan.spec.defs[i].id.as_str())
            .collect();
        let from = if inputs.is_empty() {
            String::new()
        } else {
            format!(" ← {}", inputs.join(", "))
        };
        println!(
            "  {} ({}, {} variant(s), {n} node(s)){from}",
            d.id,
            d.kind.name(),
            d.variants.len()
        );
    }
    println!("targets:");
    for (t, n) in plan.targets() {
        println!("  {t} ← {}", plan.nodes[n].id);
    }
    Ok(ExitCode::SUCCESS)
}
