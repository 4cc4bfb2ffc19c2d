//! Step 2 of loading: references. Stage names are unique per file; `extends` and `inputs`
//! resolve to stages (this file's, then those of the files it `uses`, or `file:stage`);
//! the graph they form must be acyclic, and its order (dependencies first) is the order in
//! which step 3 builds configs; targets are relative, inside the project, and unique.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use petgraph::graph::DiGraph;

use crate::ron_path::{did_you_mean, line_col, FieldPath};

use super::error::Place;
use super::files::{normalize, Draft};
use super::{Def, Loader};

impl Loader<'_> {
    /// Files whose stages `file` can name without a namespace: itself, then what it uses,
    /// transitively, in order.
    fn visible(&self, file: usize) -> Vec<usize> {
        let mut out = vec![file];
        let mut i = 0;
        while i < out.len() {
            for &u in &self.files[out[i]].uses {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
            i += 1;
        }
        out
    }

    fn resolve(
        &self,
        drafts: &[Draft],
        by_name: &HashMap<(usize, &str), usize>,
        file: usize,
        r: &str,
    ) -> Result<usize, String> {
        if let Some((ns, name)) = r.rsplit_once(':') {
            let f = self.files.iter().position(|f| f.ns == ns);
            return match f.and_then(|f| by_name.get(&(f, name))) {
                Some(&d) => Ok(d),
                None => Err(did_you_mean(r, drafts.iter().map(|d| d.name.as_str()))),
            };
        }
        let visible = self.visible(file);
        for &f in &visible {
            if let Some(&d) = by_name.get(&(f, r)) {
                return Ok(d);
            }
        }
        let names: Vec<&str> = drafts
            .iter()
            .filter(|d| visible.contains(&d.file))
            .map(|d| d.name.as_str())
            .collect();
        Err(format!(
            "{} (stages of other files are named `file:stage`, or reached through `uses`)",
            did_you_mean(r, names)
        ))
    }

    /// Every stage a pattern names (`*_report`, `quick/mlp:*`): `*` stands for any run of
    /// characters in the stage's name; without `file:` it searches the files `file` can
    /// see. A gathering stage so takes every study of a family, and a study added later
    /// joins it. At least one stage must match; the stage itself never does.
    fn resolve_pattern(
        &self,
        drafts: &[Draft],
        file: usize,
        r: &str,
        me: usize,
    ) -> Result<Vec<usize>, String> {
        let (files, pattern) = match r.rsplit_once(':') {
            Some((ns, p)) => match self.files.iter().position(|f| f.ns == ns) {
                Some(f) => (vec![f], p),
                None => {
                    let names = self.files.iter().map(|f| f.ns.as_str());
                    return Err(format!(
                        "no pipeline file `{ns}`; {}",
                        did_you_mean(ns, names)
                    ));
                }
            },
            None => (self.visible(file), r),
        };
        let found: Vec<usize> = drafts
            .iter()
            .enumerate()
            .filter(|(i, d)| *i != me && files.contains(&d.file) && matches(pattern, &d.name))
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(format!(
                "no stage matches `{pattern}` in {} (`*` stands for any characters of a name)",
                files
                    .iter()
                    .map(|&f| self.files[f].rel.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(found)
    }

    pub(super) fn build_defs(&mut self, drafts: Vec<Draft>) -> Option<Vec<Def>> {
        // Names: unique per file.
        let mut by_name: HashMap<(usize, &str), usize> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if let Some(&first) = by_name.get(&(d.file, d.name.as_str())) {
                let (line, _) = self.locate_line(d.file, &drafts[first].place.whole());
                self.error_at(
                    d.file,
                    &d.place.field("name"),
                    format!("stage `{}` is defined twice", d.name),
                    Some(format!(
                        "the first definition is on line {line}; rename one"
                    )),
                );
            } else {
                by_name.insert((d.file, d.name.as_str()), i);
            }
        }
        // Two stages of one name make every reference to it a guess: said alone.
        if !self.errors.is_empty() {
            return None;
        }
        // References.
        let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
        let mut parent: Vec<Option<usize>> = vec![None; drafts.len()];
        // A stage whose `extends` names nothing is not built (its config means nothing alone);
        // the others are, so their own errors are said in the same run.
        let mut orphan = vec![false; drafts.len()];
        for (i, d) in drafts.iter().enumerate() {
            if let Some(ext) = &d.extends {
                match self.resolve(&drafts, &by_name, d.file, ext) {
                    Ok(p) => parent[i] = Some(p),
                    Err(hint) => {
                        orphan[i] = true;
                        self.error_at(
                            d.file,
                            &d.place.field("extends"),
                            format!("unknown stage `{ext}`"),
                            Some(hint),
                        );
                    }
                }
            }
            for (j, r) in d.inputs.iter().flatten().enumerate() {
                let found = if r.contains('*') {
                    self.resolve_pattern(&drafts, d.file, r, i)
                } else {
                    self.resolve(&drafts, &by_name, d.file, r).map(|t| vec![t])
                };
                match found {
                    Ok(t) => {
                        for t in t {
                            if !inputs[i].contains(&t) {
                                inputs[i].push(t);
                            }
                        }
                    }
                    Err(hint) => self.error_at(
                        d.file,
                        &d.place.field(&format!("inputs[{j}]")),
                        format!("unknown stage `{r}`"),
                        Some(hint),
                    ),
                }
            }
        }
        // Inputs are inherited from the stage extended, when not given.
        let order = self.check_cycles(&drafts, &inputs, &parent)?;
        for &i in &order {
            if drafts[i].inputs.is_none() {
                if let Some(p) = parent[i] {
                    inputs[i] = inputs[p].clone();
                }
            }
        }
        let mut defs: Vec<Option<Def>> = (0..drafts.len()).map(|_| None).collect();
        for &i in &order {
            let parent_def = parent[i].and_then(|p| defs[p].as_ref());
            if orphan[i] || (parent[i].is_some() && parent_def.is_none()) {
                continue; // the parent failed; its error is reported
            }
            if let Some(def) = self.build_def(&drafts[i], parent_def, inputs[i].clone()) {
                defs[i] = Some(def);
            }
        }
        self.check_targets(&drafts);
        if !self.errors.is_empty() {
            return None;
        }
        defs.into_iter().collect()
    }

    pub(super) fn locate_line(&self, file: usize, path: &FieldPath) -> (usize, usize) {
        line_col(&self.files[file].text, self.offset_of(file, path))
    }

    /// Topological order of the drafts (dependencies first), or a cycle error.
    fn check_cycles(
        &mut self,
        drafts: &[Draft],
        inputs: &[Vec<usize>],
        parent: &[Option<usize>],
    ) -> Option<Vec<usize>> {
        let mut g = DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..drafts.len()).map(|i| g.add_node(i)).collect();
        for i in 0..drafts.len() {
            for &d in inputs[i].iter().chain(parent[i].iter()) {
                g.add_edge(nodes[d], nodes[i], ());
            }
        }
        match petgraph::algo::toposort(&g, None) {
            Ok(order) => Some(order.into_iter().map(|n| g[n]).collect()),
            Err(cycle) => {
                // Walk back along dependencies from the reported node until one repeats.
                let start = g[cycle.node_id()];
                let mut path = vec![start];
                let mut cur = start;
                loop {
                    let deps: Vec<usize> = inputs[cur]
                        .iter()
                        .chain(parent[cur].iter())
                        .copied()
                        .collect();
                    let next = deps
                        .iter()
                        .copied()
                        .find(|&d| {
                            petgraph::algo::has_path_connecting(&g, nodes[cur], nodes[d], None)
                        })
                        .unwrap_or(deps[0]);
                    if let Some(pos) = path.iter().position(|&p| p == next) {
                        path.drain(..pos);
                        path.push(next);
                        break;
                    }
                    path.push(next);
                    cur = next;
                }
                path.reverse();
                // Start the cycle at the stage written first, so the report is stable.
                path.pop();
                let first = (0..path.len()).min_by_key(|&i| path[i]).unwrap_or(0);
                path.rotate_left(first);
                path.push(path[0]);
                let names: Vec<&str> = path.iter().map(|&i| drafts[i].name.as_str()).collect();
                let first = &drafts[path[0]];
                let field = if first.inputs.is_some() {
                    "inputs"
                } else {
                    "extends"
                };
                self.error_at(
                    first.file,
                    &first.place.field(field),
                    format!("dependency cycle: {}", names.join(" → ")),
                    Some(
                        "a stage cannot depend on its own output; remove one of these inputs"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn check_targets(&mut self, drafts: &[Draft]) {
        let mut seen: HashMap<PathBuf, (usize, &Place)> = HashMap::new();
        for d in drafts {
            let Some(t) = &d.target else { continue };
            let path = d.place.field("target");
            let p = Path::new(t);
            let why = if t.is_empty() {
                Some("is empty: name a file")
            } else if p.is_absolute() {
                Some("is absolute: targets are relative to the project root")
            } else if p.components().any(|c| matches!(c, Component::ParentDir)) {
                Some("has a `..`: write the path without it (targets never climb out of a folder)")
            } else {
                None
            };
            if let Some(why) = why {
                self.error_at(
                    d.file,
                    &path,
                    format!("target `{t}` {why}"),
                    Some("e.g. `reports/momentum.md`".into()),
                );
                continue;
            }
            let norm = normalize(p);
            if let Err(why) = confined(&norm) {
                self.error_at(
                    d.file,
                    &path,
                    format!("target `{t}` {why}"),
                    Some(format!(
                    "targets are written under {}; {TARGET_DIRS_VAR} (folders separated by `:`) \
                     allows others",
                    target_dirs().iter().map(|d| format!("`{d}/`")).collect::<Vec<_>>().join(", ")
                )),
                );
                continue;
            }
            if let Some(&(f, place)) = seen.get(&norm) {
                let (line, col) = self.locate_line(f, &place.field("target"));
                let first = format!("{}:{line}:{col}", self.files[f].rel.display());
                self.error_at(
                    d.file,
                    &path,
                    format!("target `{t}` is declared twice"),
                    Some(format!("first declared at {first}")),
                );
            } else {
                seen.insert(norm, (d.file, &d.place));
            }
        }
        // A report lays its files out in a folder named after it (`reports/lr.md` writes
        // `reports/lr/…`): a target in there would be overwritten by the other's build.
        let assets: HashMap<PathBuf, PathBuf> = seen
            .keys()
            .map(|q| (q.with_extension(""), q.clone()))
            .collect();
        let mut inside: Vec<(usize, FieldPath, String)> = Vec::new();
        for (p, &(f, place)) in &seen {
            for dir in p.ancestors().skip(1) {
                if let Some(q) = assets.get(dir).filter(|q| *q != p) {
                    inside.push((
                        f,
                        place.field("target"),
                        format!(
                            "target `{}` lies in `{}/`, where target `{}` writes its files",
                            p.display(),
                            dir.display(),
                            q.display()
                        ),
                    ));
                }
            }
        }
        inside.sort_by_key(|a| (a.0, a.1.to_string()));
        for (f, at, message) in inside {
            self.error_at(f, &at, message, None);
        }
    }
}

/// Where targets may be written: `reports/`, or the folders `PIPE_TARGET_DIRS` names.
pub const TARGET_DIRS_VAR: &str = "PIPE_TARGET_DIRS";

fn target_dirs() -> Vec<String> {
    match std::env::var(TARGET_DIRS_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .split(':')
            .map(|d| d.trim().trim_end_matches('/').to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        _ => vec!["reports".to_string()],
    }
}

/// Whether a (normalized, relative) target path may be written: inside an output folder,
/// never the pipelines, the repository's metadata or the cache.
fn confined(target: &Path) -> Result<(), String> {
    let first = target
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    if let Some(first) = &first {
        if ["pipelines", ".git", "cache"].contains(&first.as_str()) {
            return Err(format!("would overwrite a file of `{first}/`"));
        }
    }
    let inside = target_dirs().iter().any(|d| {
        let d = normalize(Path::new(d));
        target.starts_with(&d) && target != d
    });
    if inside {
        Ok(())
    } else {
        Err("is outside the folders targets are written to".into())
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod pattern_tests {
    use super::matches;

    #[test]
    fn a_star_stands_for_any_run_of_characters() {
        assert!(matches("*_report", "momentum_report"));
        assert!(matches("*", "x"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("*_report", "momentum_eval"));
        assert!(!matches("a*a", "a"));
        assert!(!matches("report", "momentum_report"));
    }
}
