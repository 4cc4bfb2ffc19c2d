//! The expanded plan: every variant of every stage becomes one node of the build DAG.
//!
//! A stage that reads a varied stage runs once per variant of it (an evaluation per trained
//! model) and carries the variant's label on; a gathering kind (a report) runs once and
//! reads every variant.

use std::collections::HashMap;

use petgraph::graph::DiGraph;

use crate::pipeline::{product, Def, Spec, SpecErrors, Variant};

pub struct Node {
    /// `namespace:stage`, with `[label]` for anything but the base.
    pub id: String,
    pub def: usize,
    pub variant: usize,
    pub inputs: Vec<usize>,
    /// `base`, or the varied fields that lead to this node, e.g. `optimizer.momentum=0.9`.
    pub label: String,
    pub coords: Vec<(String, String)>,
}

pub struct Plan {
    pub spec: Spec,
    /// Dependencies always come before their dependents.
    pub nodes: Vec<Node>,
    pub by_id: HashMap<String, usize>,
}

impl Plan {
    pub fn new(spec: Spec) -> Result<Plan, SpecErrors> {
        let mut g = DiGraph::<usize, ()>::new();
        let ix: Vec<_> = (0..spec.defs.len()).map(|i| g.add_node(i)).collect();
        for (i, d) in spec.defs.iter().enumerate() {
            for &input in &d.inputs {
                g.add_edge(ix[input], ix[i], ());
            }
        }
        let order = petgraph::algo::toposort(&g, None).expect("the spec has no cycles");
        let mut nodes: Vec<Node> = Vec::new();
        let mut of_def: Vec<Vec<usize>> = vec![Vec::new(); spec.defs.len()];
        for n in order {
            let di = g[n];
            let def = &spec.defs[di];
            let combos: Vec<Vec<usize>> = if def.kind.gathers() {
                vec![def
                    .inputs
                    .iter()
                    .flat_map(|&i| of_def[i].iter().copied())
                    .collect()]
            } else {
                let lists: Vec<&Vec<usize>> = def.inputs.iter().map(|&i| &of_def[i]).collect();
                let sizes: Vec<usize> = lists.iter().map(|l| l.len()).collect();
                product(&sizes)
                    .into_iter()
                    .map(|c| c.iter().enumerate().map(|(k, &j)| lists[k][j]).collect())
                    .collect()
            };
            for combo in combos {
                for (vi, variant) in def.variants.iter().enumerate() {
                    let mut coords: Vec<(String, String)> = Vec::new();
                    let mut labels: Vec<&str> = Vec::new();
                    if !def.kind.gathers() {
                        for &i in &combo {
                            coords.extend(nodes[i].coords.iter().cloned());
                            if nodes[i].label != "base"
                                && !labels.contains(&nodes[i].label.as_str())
                            {
                                labels.push(&nodes[i].label);
                            }
                        }
                    }
                    coords.extend(variant.coords.iter().cloned());
                    if vi > 0 {
                        labels.push(&variant.label);
                    }
                    let label = if labels.is_empty() {
                        "base".to_string()
                    } else {
                        labels.join(",")
                    };
                    let id = if label == "base" {
                        def.id.clone()
                    } else {
                        format!("{}[{label}]", def.id)
                    };
                    of_def[di].push(nodes.len());
                    nodes.push(Node {
                        id,
                        def: di,
                        variant: vi,
                        inputs: combo.clone(),
                        label,
                        coords,
                    });
                }
            }
        }
        let mut errors = Vec::new();
        for (di, def) in spec.defs.iter().enumerate() {
            if def.target.is_some() && of_def[di].len() != 1 {
                errors.push(spec.error_at(
                    def,
                    "target",
                    format!("stage `{}` has {} variants but one target", def.name, of_def[di].len()),
                    Some("give the target to a gathering stage (a report) that reads every variant".into()),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(SpecErrors(errors));
        }
        let by_id = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        Ok(Plan { spec, nodes, by_id })
    }

    pub fn def(&self, node: usize) -> &Def {
        &self.spec.defs[self.nodes[node].def]
    }

    pub fn variant(&self, node: usize) -> &Variant {
        &self.def(node).variants[self.nodes[node].variant]
    }

    /// Every declared target with the node that produces it.
    pub fn targets(&self) -> Vec<(&str, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.spec.defs[n.def].target.as_deref().map(|t| (t, i)))
            .collect()
    }

    /// Nodes named by the user: a target path, a stage id (all its variants), one variant
    /// (`momentum:train[optimizer.momentum=0.9]`, or `[base]` for the base alone), or a bare
    /// stage name when it is unique.
    pub fn select(&self, names: &[String]) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for name in names {
            let clean = name.trim_start_matches("./");
            let mut found: Vec<usize> = self
                .targets()
                .into_iter()
                .filter(|(t, _)| *t == clean)
                .map(|(_, n)| n)
                .collect();
            if found.is_empty() {
                found = (0..self.nodes.len())
                    .filter(|&n| self.def(n).id == clean)
                    .collect();
            }
            if found.is_empty() {
                let id = clean.strip_suffix("[base]").unwrap_or(clean);
                if let Some(&n) = self.by_id.get(id) {
                    found.push(n);
                }
            }
            if found.is_empty() {
                let defs: Vec<&str> = self
                    .spec
                    .defs
                    .iter()
                    .filter(|d| d.name == clean)
                    .map(|d| d.id.as_str())
                    .collect();
                if defs.len() > 1 {
                    return Err(format!("`{name}` is ambiguous: {}", defs.join(", ")));
                }
                found = (0..self.nodes.len())
                    .filter(|&n| defs.contains(&self.def(n).id.as_str()))
                    .collect();
            }
            if found.is_empty() {
                return Err(self.unknown(name, clean));
            }
            for n in found {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// `N variant(s): [base], [a=1], …` for stage `def_id` (the first dozen), `None` when no
    /// stage has that id.
    pub fn variant_list(&self, def_id: &str) -> Option<String> {
        const SHOWN: usize = 12;
        let def = self.spec.defs.iter().find(|d| d.id == def_id)?;
        let labels: Vec<String> = (0..self.nodes.len())
            .filter(|&n| self.def(n).id == def.id)
            .map(|n| match self.nodes[n].label.as_str() {
                "" => "[base]".to_string(),
                l => format!("[{l}]"),
            })
            .collect();
        let more = labels.len().saturating_sub(SHOWN);
        Some(format!(
            "{} variant(s): {}{}",
            labels.len(),
            labels[..labels.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(", … ({more} more)")
            } else {
                String::new()
            }
        ))
    }

    /// Why `name` selects nothing: a stage's variant that does not exist lists the variants
    /// that do; anything else, the five closest ids and targets.
    fn unknown(&self, name: &str, clean: &str) -> String {
        if let Some((stage, _)) = clean.split_once('[') {
            if let Some(listed) = self.variant_list(stage) {
                return format!(
                    "`{stage}` has no variant `{}`; its {listed}",
                    &clean[stage.len()..]
                );
            }
        }
        // A stage is matched with its kind too: `momentum:train` means the momentum study's
        // trainings (`linear:momentum`, kind train) more than `demo:train`.
        let mut known: Vec<String> = self
            .targets()
            .into_iter()
            .map(|(t, _)| t.to_string())
            .collect();
        known.extend(
            self.spec
                .defs
                .iter()
                .map(|d| format!("{} {}", d.id, d.kind.name())),
        );
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let close = crate::ron_words::closest(clean, &refs, 5);
        if close.is_empty() {
            return format!("no target or stage `{name}`: no pipeline defines any");
        }
        format!(
            "no target or stage `{name}`; the closest: {} (`pipe list` shows all {})",
            close
                .iter()
                .map(|c| format!("`{}`", c.split(' ').next().unwrap_or(c)))
                .collect::<Vec<_>>()
                .join(", "),
            known.len()
        )
    }

    /// `wanted` and everything they depend on, dependencies first.
    pub fn closure(&self, wanted: &[usize]) -> Vec<usize> {
        let mut keep = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = wanted.to_vec();
        while let Some(n) = stack.pop() {
            if !keep[n] {
                keep[n] = true;
                stack.extend(self.nodes[n].inputs.iter().copied());
            }
        }
        (0..self.nodes.len()).filter(|&n| keep[n]).collect()
    }
}
