//! Pipeline files: RON text → a checked set of stage definitions with their variants.
//!
//! Everything a user can get wrong is caught here, before anything runs, and reported with
//! file:line:column, the field path and a hint: syntax, unknown fields and wrong types (from
//! ron), unknown stage kinds and references, `uses` of missing files, cycles, invalid
//! values (from each kind's `validate`), duplicate names and targets.

pub mod ron_path;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use petgraph::graph::DiGraph;
use ron::value::RawValue;
use serde::Deserialize;

use crate::stage::{ConfigError, FieldError, Parsed, StageKind};
use ron_path::{
    did_you_mean, line_col, locate, offset_of, offset_of_path, parse_typed, splice, value_at,
    FieldPath,
};

/// Where pipeline files live, relative to the project root.
pub const PIPELINES_DIR: &str = "pipelines";

#[derive(Deserialize)]
#[serde(rename = "Pipeline", deny_unknown_fields)]
struct FileModel<'a> {
    #[serde(default)]
    description: String,
    #[serde(default)]
    uses: Vec<String>,
    #[serde(default, borrow)]
    stages: Vec<StageModel<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "Stage", deny_unknown_fields)]
struct StageModel<'a> {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    inputs: Option<Vec<String>>,
    #[serde(default, borrow)]
    config: Option<&'a RawValue>,
    #[serde(default, borrow)]
    set: IndexMap<String, &'a RawValue>,
    #[serde(default, borrow)]
    vary: IndexMap<String, Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    grid: IndexMap<String, Vec<&'a RawValue>>,
    #[serde(default)]
    target: Option<String>,
}

/// A byte range in a pipeline file.
#[derive(Clone, Copy, Debug)]
struct Span(usize, usize);

/// One stage as written, before resolution; owns no borrowed text.
struct Draft {
    file: usize,
    index: usize,
    name: String,
    kind: Option<String>,
    description: String,
    extends: Option<String>,
    inputs: Option<Vec<String>>,
    config: Option<Span>,
    set: Vec<(String, Span)>,
    vary: Vec<(String, Vec<Span>)>,
    grid: Vec<(String, Vec<Span>)>,
    target: Option<String>,
}

pub struct PipelineFile {
    /// Path relative to the project root, as shown in errors.
    pub rel: PathBuf,
    /// Namespace of its stages: the path under `pipelines/` without `.ron`.
    pub ns: String,
    pub description: String,
    pub text: String,
    uses: Vec<usize>,
}

/// One configuration of a stage: the base, or one variant from `vary`/`grid`.
pub struct Variant {
    /// `base`, or the varied fields, e.g. `optimizer.momentum=0.9`.
    pub label: String,
    /// Value of every varied field in this variant (the base too), in canonical RON.
    pub coords: Vec<(String, String)>,
    pub parsed: Parsed,
}

pub struct Def {
    /// `namespace:name`, unique across all files.
    pub id: String,
    pub file: usize,
    /// Position of the stage in its file's `stages` list.
    pub index: usize,
    pub name: String,
    pub description: String,
    pub kind: &'static dyn StageKind,
    pub inputs: Vec<usize>,
    /// The base first, then the variants.
    pub variants: Vec<Variant>,
    pub target: Option<String>,
}

pub struct Spec {
    pub files: Vec<PipelineFile>,
    pub defs: Vec<Def>,
}

#[derive(Debug, Clone)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every error found in one load, in file order.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}
impl std::error::Error for SpecErrors {}

fn stage_path(index: usize) -> FieldPath {
    FieldPath::default().key("stages").index(index)
}

struct Loader<'k> {
    kinds: &'k [&'static dyn StageKind],
    files: Vec<PipelineFile>,
    errors: Vec<SpecError>,
    /// `uses` as written, per file, until `resolve_uses` turns them into file indices.
    pending_uses: Vec<Vec<String>>,
}

impl Loader<'_> {
    /// An error at `path` in `file`; a path that is not written (a defaulted field) points
    /// at the nearest enclosing value that is.
    fn error_at(&mut self, file: usize, path: &FieldPath, message: String, hint: Option<String>) {
        let offset = offset_of_path(&self.files[file].text, path);
        self.error_at_offset(file, offset, path.to_string(), message, hint);
    }

    fn error_at_offset(
        &mut self,
        file: usize,
        offset: usize,
        path: String,
        message: String,
        hint: Option<String>,
    ) {
        let f = &self.files[file];
        let (line, col) = line_col(&f.text, offset);
        self.errors.push(SpecError {
            file: f.rel.clone(),
            line,
            col,
            path,
            message,
            hint,
        });
    }

    /// A config error whose position is relative to `text`, which was parsed from `span`
    /// of the file (or, for spliced text, whose splice started at `splice_start`).
    fn config_error(&mut self, file: usize, base: &FieldPath, e: ConfigError, origin: Origin) {
        let offset = match origin {
            Origin::Written(span) => {
                let text = &self.files[file].text[span.0..span.1];
                span.0 + offset_of(text, e.line, e.col)
            }
            Origin::Spliced {
                text,
                splice_start,
                value,
            } => {
                let at = offset_of(&text, e.line, e.col);
                let len = value.1 - value.0;
                if at >= splice_start && at < splice_start + len {
                    value.0 + (at - splice_start)
                } else {
                    value.0
                }
            }
        };
        let mut path = base.to_string();
        if !e.path.is_empty() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&e.path);
        }
        self.error_at_offset(file, offset, path, e.message, e.hint);
    }

    fn text(&self, file: usize, span: Span) -> &str {
        &self.files[file].text[span.0..span.1]
    }
}

/// Where the text of a parsed config came from, to put its errors back in the file.
enum Origin {
    Written(Span),
    Spliced {
        text: String,
        splice_start: usize,
        value: Span,
    },
}

/// Every `*.ron` under `root/pipelines`, sorted: (path in that folder, text). What a spec
/// is made of, and so what a no-op answer is recorded against.
pub fn read_files(root: &Path) -> Result<Vec<(PathBuf, String)>, SpecErrors> {
    let dir = root.join(PIPELINES_DIR);
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "ron"))
        .map(|e| e.into_path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                SpecErrors(vec![SpecError {
                    file: path.clone(),
                    line: 1,
                    col: 1,
                    path: String::new(),
                    message: format!("cannot read: {e}"),
                    hint: None,
                }])
            })?;
            let rel_in = path.strip_prefix(&dir).unwrap_or(&path).to_path_buf();
            Ok((rel_in, text))
        })
        .collect()
}

/// A spliced config that failed to parse: the error, the spliced text, where the value
/// starts in it.
struct SpliceError(ConfigError, String, usize);

/// `canonical` with `range` replaced by `value`, parsed: the part of a splice that needs
/// nothing of the loader.
fn splice_try(
    kind: &dyn StageKind,
    canonical: &str,
    range: (usize, usize),
    value: &str,
) -> Result<Parsed, SpliceError> {
    let (spliced, splice_start) = splice(canonical, range, value);
    kind.parse(&spliced)
        .map_err(|e| SpliceError(e, spliced, splice_start))
}

/// [`splice_try`] of every value, on every core when there are many: a study of hundreds
/// of variants spends most of its loading here. Results in the order of `values`.
fn splice_all(
    kind: &dyn StageKind,
    canonical: &str,
    range: (usize, usize),
    values: &[&str],
) -> Vec<Result<Parsed, SpliceError>> {
    crate::par::map_chunks(values, 64, |part| {
        part.iter()
            .map(|v| splice_try(kind, canonical, range, v))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Loads every `*.ron` under `root/pipelines`.
pub fn load(root: &Path, kinds: &[&'static dyn StageKind]) -> Result<Spec, SpecErrors> {
    load_files(read_files(root)?, kinds)
}

/// Loads a spec from the files [`read_files`] returned.
pub fn load_files(
    files: Vec<(PathBuf, String)>,
    kinds: &[&'static dyn StageKind],
) -> Result<Spec, SpecErrors> {
    let mut loader = Loader {
        kinds,
        files: Vec::new(),
        errors: Vec::new(),
        pending_uses: Vec::new(),
    };
    for (rel_in, text) in files {
        let ns = rel_in
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        loader.files.push(PipelineFile {
            rel: Path::new(PIPELINES_DIR).join(rel_in),
            ns,
            description: String::new(),
            text,
            uses: Vec::new(),
        });
    }
    let drafts = loader.read_drafts();
    loader.resolve_uses();
    if !loader.errors.is_empty() {
        return Err(SpecErrors(loader.errors));
    }
    let defs = loader.build_defs(drafts);
    match defs {
        Some(defs) if loader.errors.is_empty() => Ok(Spec {
            files: loader.files,
            defs,
        }),
        _ => Err(SpecErrors(loader.errors)),
    }
}

impl Loader<'_> {
    fn read_drafts(&mut self) -> Vec<Draft> {
        let mut drafts = Vec::new();
        let mut uses_by_file = Vec::new();
        for fi in 0..self.files.len() {
            let text = self.files[fi].text.clone();
            let model: FileModel = match parse_typed(&text) {
                Ok(m) => m,
                Err(e) => {
                    uses_by_file.push(Vec::new());
                    self.config_error(
                        fi,
                        &FieldPath::default(),
                        e,
                        Origin::Written(Span(0, text.len())),
                    );
                    continue;
                }
            };
            let span = |r: &RawValue| {
                let s = r.get_ron().as_ptr() as usize - text.as_ptr() as usize;
                Span(s, s + r.get_ron().len())
            };
            self.files[fi].description = model.description;
            uses_by_file.push(model.uses);
            for (index, st) in model.stages.into_iter().enumerate() {
                drafts.push(Draft {
                    file: fi,
                    index,
                    name: st.name,
                    kind: st.kind,
                    description: st.description,
                    extends: st.extends,
                    inputs: st.inputs,
                    config: st.config.map(span),
                    set: st.set.into_iter().map(|(k, v)| (k, span(v))).collect(),
                    vary: st
                        .vary
                        .into_iter()
                        .map(|(k, v)| (k, v.into_iter().map(span).collect()))
                        .collect(),
                    grid: st
                        .grid
                        .into_iter()
                        .map(|(k, v)| (k, v.into_iter().map(span).collect()))
                        .collect(),
                    target: st.target,
                });
            }
        }
        self.pending_uses = uses_by_file;
        drafts
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (paths need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Cartesian product of index ranges: `[2, 3]` → `[0,0], [0,1], …, [1,2]`.
pub fn product(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &n in sizes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..n).map(move |i| {
                    let mut p = prefix.clone();
                    p.push(i);
                    p
                })
            })
            .collect();
    }
    out
}

impl Loader<'_> {
    fn resolve_uses(&mut self) {
        let uses = std::mem::take(&mut self.pending_uses);
        for (fi, list) in uses.into_iter().enumerate() {
            for (j, u) in list.iter().enumerate() {
                let dir = self.files[fi]
                    .rel
                    .parent()
                    .unwrap_or(Path::new(""))
                    .to_path_buf();
                let wanted = normalize(&dir.join(u));
                match self.files.iter().position(|f| normalize(&f.rel) == wanted) {
                    Some(t) => self.files[fi].uses.push(t),
                    None => {
                        let known: Vec<String> = self
                            .files
                            .iter()
                            .map(|f| f.rel.display().to_string())
                            .collect();
                        let hint = format!(
                            "paths are relative to this file; pipeline files are {}",
                            known
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        let path = FieldPath::default().key("uses").index(j);
                        self.error_at(
                            fi,
                            &path,
                            format!("no pipeline file `{}`", wanted.display()),
                            Some(hint),
                        );
                    }
                }
            }
        }
    }

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

    fn build_defs(&mut self, drafts: Vec<Draft>) -> Option<Vec<Def>> {
        // Names: unique per file.
        let mut by_name: HashMap<(usize, &str), usize> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if let Some(&first) = by_name.get(&(d.file, d.name.as_str())) {
                let (line, _) = self.locate_line(d.file, &stage_path(drafts[first].index));
                self.error_at(
                    d.file,
                    &stage_path(d.index).key("name"),
                    format!("stage `{}` is defined twice", d.name),
                    Some(format!(
                        "the first definition is on line {line}; rename one"
                    )),
                );
            } else {
                by_name.insert((d.file, d.name.as_str()), i);
            }
        }
        // References.
        let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
        let mut parent: Vec<Option<usize>> = vec![None; drafts.len()];
        for (i, d) in drafts.iter().enumerate() {
            if let Some(ext) = &d.extends {
                match self.resolve(&drafts, &by_name, d.file, ext) {
                    Ok(p) => parent[i] = Some(p),
                    Err(hint) => self.error_at(
                        d.file,
                        &stage_path(d.index).key("extends"),
                        format!("unknown stage `{ext}`"),
                        Some(hint),
                    ),
                }
            }
            for (j, r) in d.inputs.iter().flatten().enumerate() {
                match self.resolve(&drafts, &by_name, d.file, r) {
                    Ok(t) => inputs[i].push(t),
                    Err(hint) => self.error_at(
                        d.file,
                        &stage_path(d.index).key("inputs").index(j),
                        format!("unknown stage `{r}`"),
                        Some(hint),
                    ),
                }
            }
        }
        if !self.errors.is_empty() {
            return None;
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
            if parent[i].is_some() && parent_def.is_none() {
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

    fn locate_line(&self, file: usize, path: &FieldPath) -> (usize, usize) {
        let text = &self.files[file].text;
        line_col(text, offset_of_path(text, path))
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
                    &stage_path(first.index).key(field),
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
        let mut seen: HashMap<PathBuf, (usize, usize)> = HashMap::new();
        for d in drafts {
            let Some(t) = &d.target else { continue };
            let path = stage_path(d.index).key("target");
            let p = Path::new(t);
            if p.is_absolute()
                || p.components().any(|c| matches!(c, Component::ParentDir))
                || t.is_empty()
            {
                self.error_at(
                    d.file,
                    &path,
                    format!("target `{t}` must be a relative path inside the project"),
                    Some("e.g. `reports/momentum.md`".into()),
                );
                continue;
            }
            let norm = normalize(p);
            if let Some(&(f, i)) = seen.get(&norm) {
                let (line, col) = self.locate_line(f, &stage_path(i).key("target"));
                let first = format!("{}:{line}:{col}", self.files[f].rel.display());
                self.error_at(
                    d.file,
                    &path,
                    format!("target `{t}` is declared twice"),
                    Some(format!("first declared at {first}")),
                );
            } else {
                seen.insert(norm, (d.file, d.index));
            }
        }
    }

    fn find_kind(&mut self, d: &Draft, parent: Option<&Def>) -> Option<&'static dyn StageKind> {
        let path = stage_path(d.index);
        match (&d.kind, parent) {
            (Some(k), _) => {
                let found = self.kinds.iter().copied().find(|x| x.name() == k);
                if found.is_none() {
                    let names: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
                    let hint = did_you_mean(k, names);
                    self.error_at(
                        d.file,
                        &path.key("kind"),
                        format!("unknown stage kind `{k}`"),
                        Some(hint),
                    );
                    return None;
                }
                if let Some(p) = parent.filter(|p| p.kind.name() != k) {
                    self.error_at(
                        d.file,
                        &path.key("kind"),
                        format!(
                            "kind `{k}` differs from the kind `{}` of the stage it extends",
                            p.kind.name()
                        ),
                        Some("leave `kind` out when extending".into()),
                    );
                    return None;
                }
                found
            }
            (None, Some(p)) => Some(p.kind),
            (None, None) => {
                self.error_at(
                    d.file,
                    &path,
                    format!("stage `{}` has no `kind`", d.name),
                    Some("add `kind: \"train\"` (or another kind), or `extends: \"stage\"`".into()),
                );
                None
            }
        }
    }

    /// Applies one `path: value` override to `base`, reporting errors at the value.
    /// `Err(true)` when the path itself is wrong (so other values of it need no report).
    fn apply(
        &mut self,
        d: &Draft,
        kind: &dyn StageKind,
        base: &Parsed,
        key: &str,
        value: Span,
        at: &FieldPath,
    ) -> Result<Parsed, bool> {
        let range = self.field_range(d, kind, &base.canonical, key, at)?;
        self.splice_parse(d, kind, &base.canonical, range, value, at)
    }

    /// Where field `key` is written in the canonical config `canonical`; an unknown field is
    /// reported at `at` (`Err(true)`). Found once per varied key, not once per value.
    fn field_range(
        &mut self,
        d: &Draft,
        kind: &dyn StageKind,
        canonical: &str,
        key: &str,
        at: &FieldPath,
    ) -> Result<(usize, usize), bool> {
        let Some(fp) = FieldPath::parse(key) else {
            self.error_at(
                d.file,
                at,
                format!("`{key}` is not a field path"),
                Some("write it like `optimizer.momentum` or `model.hidden[0]`".into()),
            );
            return Err(true);
        };
        locate(canonical, &fp).map_err(|miss| {
            let within = FieldPath(fp.0[..miss.matched].to_vec());
            let missing = FieldPath(fp.0[..=miss.matched].to_vec());
            let place = if within.0.is_empty() {
                "the config".to_string()
            } else {
                format!("`{within}`")
            };
            let hint = did_you_mean(
                &missing
                    .0
                    .last()
                    .map(|s| FieldPath(vec![s.clone()]).to_string())
                    .unwrap_or_default(),
                miss.known.iter().map(|s| s.as_str()),
            );
            self.error_at(
                d.file,
                at,
                format!(
                    "`{missing}` is not a field of {place} in a `{}` config",
                    kind.name()
                ),
                Some(hint),
            );
            true
        })
    }

    /// Parses `canonical` with `range` replaced by the written `value`, reporting errors at
    /// the value (`Err(false)`).
    fn splice_parse(
        &mut self,
        d: &Draft,
        kind: &dyn StageKind,
        canonical: &str,
        range: (usize, usize),
        value: Span,
        at: &FieldPath,
    ) -> Result<Parsed, bool> {
        let attempt = splice_try(kind, canonical, range, self.text(d.file, value));
        self.splice_report(d, at, value, attempt)
    }

    /// A splice's parse as [`splice_parse`](Self::splice_parse) reports it.
    fn splice_report(
        &mut self,
        d: &Draft,
        at: &FieldPath,
        value: Span,
        attempt: Result<Parsed, SpliceError>,
    ) -> Result<Parsed, bool> {
        attempt.map_err(|SpliceError(e, spliced, splice_start)| {
            let origin = Origin::Spliced {
                text: spliced,
                splice_start,
                value,
            };
            self.config_error(
                d.file,
                at,
                ConfigError {
                    path: String::new(),
                    ..e
                },
                origin,
            );
            false
        })
    }

    fn validate(&mut self, d: &Draft, parsed: &Parsed, at: &FieldPath, in_config: bool) -> bool {
        match parsed.config.validate() {
            Ok(()) => true,
            Err(FieldError {
                path,
                message,
                hint,
            }) => {
                let full = if in_config {
                    FieldPath::parse(&path)
                        .map(|p| at.clone().join(&p))
                        .unwrap_or_else(|| at.clone())
                } else {
                    at.clone()
                };
                let message = if in_config {
                    message
                } else {
                    format!("{path}: {message}")
                };
                self.error_at(d.file, &full, message, hint);
                false
            }
        }
    }

    fn build_def(&mut self, d: &Draft, parent: Option<&Def>, inputs: Vec<usize>) -> Option<Def> {
        let kind = self.find_kind(d, parent)?;
        let sp = stage_path(d.index);
        let mut base = match (parent, d.config) {
            (Some(_), Some(_)) => {
                self.error_at(
                    d.file,
                    &sp.clone().key("config"),
                    "a stage that `extends` another cannot also give a whole `config`".into(),
                    Some("change fields with `set: {\"optimizer.lr\": 0.01}`".into()),
                );
                return None;
            }
            (Some(p), None) => p.variants[0].parsed.clone(),
            (None, Some(span)) => match kind.parse(self.text(d.file, span)) {
                Ok(p) => p,
                Err(e) => {
                    self.config_error(d.file, &sp.clone().key("config"), e, Origin::Written(span));
                    return None;
                }
            },
            (None, None) => match kind.parse("()") {
                Ok(p) => p,
                Err(e) => {
                    self.error_at(
                        d.file,
                        &sp,
                        format!(
                            "stage kind `{}` needs a `config`: {}",
                            kind.name(),
                            e.message
                        ),
                        e.hint,
                    );
                    return None;
                }
            },
        };
        for (key, value) in &d.set {
            let at = sp.clone().key("set").key(key);
            base = self.apply(d, kind, &base, key, *value, &at).ok()?;
        }
        let written_config = parent.is_none() && d.set.is_empty();
        let at = if written_config {
            sp.clone().key("config")
        } else {
            sp.clone().key("set")
        };
        if !self.validate(d, &base, &at, written_config) {
            return None;
        }

        let varied: Vec<String> = d
            .vary
            .iter()
            .chain(&d.grid)
            .map(|(k, _)| k.clone())
            .collect::<indexmap::IndexSet<_>>()
            .into_iter()
            .collect();
        let mut variants = vec![Variant {
            label: "base".into(),
            coords: Vec::new(),
            parsed: base,
        }];
        let mut seen: HashSet<String> = HashSet::from([variants[0].parsed.canonical.clone()]);
        let mut ok = true;
        for (key, values) in &d.vary {
            let base = variants[0].parsed.canonical.clone();
            let first = sp.clone().key("vary").key(key).index(0);
            let range = match self.field_range(d, kind, &base, key, &first) {
                Ok(r) => r,
                Err(_) => {
                    ok = false;
                    continue;
                }
            };
            let texts: Vec<&str> = values.iter().map(|v| self.text(d.file, *v)).collect();
            let attempts = splice_all(kind, &base, range, &texts);
            for (k, (value, attempt)) in values.iter().zip(attempts).enumerate() {
                let at = sp.clone().key("vary").key(key).index(k);
                match self.splice_report(d, &at, *value, attempt) {
                    Ok(p) if self.validate(d, &p, &at, false) => {
                        if seen.insert(p.canonical.clone()) {
                            variants.push(Variant {
                                label: String::new(),
                                coords: Vec::new(),
                                parsed: p,
                            });
                        }
                    }
                    _ => ok = false,
                }
            }
        }
        if !d.grid.is_empty() {
            let sizes: Vec<usize> = d.grid.iter().map(|(_, v)| v.len()).collect();
            for combo in product(&sizes) {
                let mut cur = variants[0].parsed.clone();
                let mut good = true;
                for (g, &k) in combo.iter().enumerate() {
                    let (key, values) = &d.grid[g];
                    let at = sp.clone().key("grid").key(key).index(k);
                    match self.apply(d, kind, &cur, key, values[k], &at) {
                        Ok(p) if self.validate(d, &p, &at, false) => cur = p,
                        _ => {
                            good = false;
                            break;
                        }
                    }
                }
                if !good {
                    ok = false;
                    break;
                }
                if seen.insert(cur.canonical.clone()) {
                    variants.push(Variant {
                        label: String::new(),
                        coords: Vec::new(),
                        parsed: cur,
                    });
                }
            }
        }
        if !ok {
            return None;
        }
        // Coordinates and labels come from the re-serialized config, so `0.90` and `0.9`
        // are one variant with one label.
        let base_text = variants[0].parsed.canonical.clone();
        let paths: Vec<(FieldPath, Option<usize>)> = varied
            .iter()
            .map(|key| {
                let fp = FieldPath::parse(key).unwrap_or_default();
                let start = locate(&base_text, &fp).ok().map(|(s, _)| s);
                (fp, start)
            })
            .collect();
        for v in &mut variants {
            let text = &v.parsed.canonical;
            v.coords = varied
                .iter()
                .zip(&paths)
                .map(|(key, (fp, start))| {
                    let value = start
                        .and_then(|s| value_at(text, &base_text, s))
                        .or_else(|| locate(text, fp).ok().map(|(s, e)| &text[s..e]))
                        .unwrap_or_default();
                    (key.clone(), value.to_string())
                })
                .collect();
        }
        let base_coords = variants[0].coords.clone();
        for v in variants.iter_mut().skip(1) {
            let changed: Vec<String> = v
                .coords
                .iter()
                .zip(&base_coords)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| format!("{}={}", a.0, a.1))
                .collect();
            v.label = changed.join(",");
        }
        let f = &self.files[d.file];
        Some(Def {
            id: format!("{}:{}", f.ns, d.name),
            file: d.file,
            index: d.index,
            name: d.name.clone(),
            description: d.description.clone(),
            kind,
            inputs,
            variants,
            target: d.target.clone(),
        })
    }
}

impl Spec {
    /// An error about a stage found after loading (while expanding the plan).
    pub fn error_at(
        &self,
        def: &Def,
        field: &str,
        message: String,
        hint: Option<String>,
    ) -> SpecError {
        let f = &self.files[def.file];
        let path = stage_path(def.index).key(field);
        let (line, col) = line_col(&f.text, offset_of_path(&f.text, &path));
        SpecError {
            file: f.rel.clone(),
            line,
            col,
            path: path.to_string(),
            message,
            hint,
        }
    }
}
