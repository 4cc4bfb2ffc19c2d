//! Step 1 of loading: the files. Every `*.ron` under `pipelines/` is read in a fixed
//! order, parsed into drafts (stages as written, with the byte range of every value kept for
//! error positions and splicing), and each file's `uses` resolved to other files.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use ron::value::RawValue;
use serde::Deserialize;

use crate::ron_path::{parse_typed, FieldPath};

use super::error::Origin;
use super::{Loader, Span, SpecError, SpecErrors, PIPELINES_DIR};

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
    /// Replicates of every variant: seeds `seed`, `seed + 1`, …
    #[serde(default)]
    seeds: Option<u64>,
    #[serde(default)]
    target: Option<String>,
}

/// One stage as written, before resolution; owns no borrowed text.
pub(super) struct Draft {
    pub(super) file: usize,
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) kind: Option<String>,
    pub(super) description: String,
    pub(super) extends: Option<String>,
    pub(super) inputs: Option<Vec<String>>,
    pub(super) config: Option<Span>,
    pub(super) set: Vec<(String, Span)>,
    pub(super) vary: Vec<(String, Vec<Span>)>,
    pub(super) grid: Vec<(String, Vec<Span>)>,
    pub(super) seeds: Option<u64>,
    pub(super) target: Option<String>,
}

/// is made of, and so what a no-op answer is recorded against.
pub fn read_files(root: &Path) -> Result<Vec<(PathBuf, String)>, SpecErrors> {
    let dir = root.join(PIPELINES_DIR);
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .follow_links(true)
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

impl Loader<'_> {
    pub(super) fn read_drafts(&mut self) -> Vec<Draft> {
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
                    seeds: st.seeds,
                    target: st.target,
                });
            }
        }
        self.pending_uses = uses_by_file;
        drafts
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (paths need not exist).
pub(super) fn normalize(path: &Path) -> PathBuf {
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

impl Loader<'_> {
    pub(super) fn resolve_uses(&mut self) {
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
}
