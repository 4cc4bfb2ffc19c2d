//! Step 1 of loading: the files. Every `*.ron` under `pipelines/` is read in a fixed
//! order, parsed into drafts (stages as written, with the byte range of every value kept for
//! error positions and splicing), and each file's `uses` resolved to other files.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use ron::value::RawValue;
use serde::Deserialize;

use crate::ron_path::{offset_of, parse_typed, FieldPath};
use crate::stage::ConfigError;

use super::brackets;
use super::error::{stage_path, Origin, Place};
use super::studies::FamilyModel;
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
    #[serde(default, borrow)]
    studies: Vec<FamilyModel<'a>>,
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
    /// Project files and folders the stage reads (a script): their content is keyed.
    #[serde(default)]
    deps: Option<Vec<String>>,
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

/// One stage as written (or as `studies` makes it), before resolution; owns no borrowed
/// text.
pub(super) struct Draft {
    pub(super) file: usize,
    pub(super) place: Place,
    pub(super) name: String,
    pub(super) kind: Option<String>,
    pub(super) description: String,
    pub(super) extends: Option<String>,
    pub(super) inputs: Option<Vec<String>>,
    /// `None`: the stage extended's.
    pub(super) deps: Option<Vec<String>>,
    pub(super) config: Option<ConfigText>,
    pub(super) set: Vec<(String, Span)>,
    pub(super) vary: Vec<(String, Vec<Span>)>,
    pub(super) grid: Vec<(String, Vec<Span>)>,
    pub(super) seeds: Option<u64>,
    pub(super) target: Option<String>,
}

/// A whole `config`: written in the file, or made by `studies` (a report's title).
pub(super) enum ConfigText {
    Written(Span),
    Made(String),
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
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let shown = Path::new(PIPELINES_DIR).join(path.strip_prefix(&dir).unwrap_or(&path));
        let error = |line, col, message| SpecError {
            file: shown.clone(),
            line,
            col,
            path: String::new(),
            message,
            hint: None,
        };
        match std::fs::read(&path) {
            Err(e) => errors.push(error(1, 1, format!("cannot read: {e}"))),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    let rel_in = path.strip_prefix(&dir).unwrap_or(&path).to_path_buf();
                    files.push((rel_in, text));
                }
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let bytes = e.as_bytes();
                    let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
                    let (line, col) = crate::ron_path::line_col(valid, at);
                    errors.push(SpecError {
                        hint: Some("pipeline files are UTF-8 text; save it as UTF-8".into()),
                        ..error(
                            line,
                            col,
                            format!(
                                "not UTF-8: byte {at} (0x{:02X}) starts no character",
                                bytes[at]
                            ),
                        )
                    });
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(SpecErrors(errors))
    }
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
                    self.syntax_errors(fi, &text, e);
                    continue;
                }
            };
            let span = |r: &RawValue| span_in(&text, r);
            self.files[fi].description = model.description;
            uses_by_file.push(model.uses);
            for (index, st) in model.stages.into_iter().enumerate() {
                drafts.push(Draft {
                    file: fi,
                    place: Place::stage(index),
                    name: st.name,
                    kind: st.kind,
                    description: st.description,
                    extends: st.extends,
                    inputs: st.inputs,
                    deps: st.deps,
                    config: st.config.map(|c| ConfigText::Written(span(c))),
                    set: spans(&text, st.set),
                    vary: spans_each(&text, st.vary),
                    grid: spans_each(&text, st.grid),
                    seeds: st.seeds,
                    target: st.target,
                });
            }
            for (i, family) in model.studies.into_iter().enumerate() {
                self.expand_studies(fi, &text, i, family, &mut drafts);
            }
        }
        self.pending_uses = uses_by_file;
        drafts
    }
}

/// Where a value borrowed from `text` lies in it.
pub(super) fn span_in(text: &str, r: &RawValue) -> Span {
    let s = r.get_ron().as_ptr() as usize - text.as_ptr() as usize;
    Span(s, s + r.get_ron().len())
}

pub(super) fn spans(text: &str, map: IndexMap<String, &RawValue>) -> Vec<(String, Span)> {
    map.into_iter()
        .map(|(k, v)| (k, span_in(text, v)))
        .collect()
}

pub(super) fn spans_each(
    text: &str,
    map: IndexMap<String, Vec<&RawValue>>,
) -> Vec<(String, Vec<Span>)> {
    map.into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|r| span_in(text, r)).collect()))
        .collect()
}

impl Loader<'_> {
    /// Every error of a file that did not parse, where the parser stops at the first: a
    /// bracket never closed at the bracket; else each stage parsed on its own, so every
    /// broken stage is reported, and the file's own error where it lies outside them.
    fn syntax_errors(&mut self, fi: usize, text: &str, whole: ConfigError) {
        let groups = match brackets::groups(text) {
            Ok(g) => g,
            Err(u) => {
                self.error_at_offset(fi, u.at, String::new(), u.message, u.hint);
                return;
            }
        };
        let mut broken = Vec::new();
        for (index, &(a, b)) in brackets::stage_items(text, &groups).iter().enumerate() {
            if let Err(e) = parse_typed::<StageModel>(&text[a..b]) {
                self.config_error(fi, &stage_path(index), e, Origin::Written(Span(a, b)));
                broken.push((a, b));
            }
        }
        let at = offset_of(text, whole.line, whole.col);
        if !broken.iter().any(|&(a, b)| (a..b).contains(&at)) {
            self.config_error(
                fi,
                &FieldPath::default(),
                whole,
                Origin::Written(Span(0, text.len())),
            );
        }
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
