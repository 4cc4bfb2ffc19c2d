//! Errors of the pipeline language: each at file:line:column, with the field path and a
//! hint, and every one of a load reported, not just the first.

use std::fmt;
use std::path::PathBuf;

use crate::ron_path::{line_col, offset_of, offset_of_path, offset_of_path_in, FieldPath};
use crate::stage::ConfigError;

use super::{Def, Loader, Span, Spec};

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

/// Errors printed at most: past these the same mistake repeated (a pasted line) only
/// buries the first ones; the rest are counted.
pub const SHOWN: usize = 50;

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        if self.0.len() > SHOWN {
            write!(
                f,
                "\n… and {} more errors (the first {SHOWN} are above; fixing them may fix the rest)",
                self.0.len() - SHOWN
            )?;
        }
        Ok(())
    }
}
impl std::error::Error for SpecErrors {}

pub(super) fn stage_path(index: usize) -> FieldPath {
    FieldPath::default().key("stages").index(index)
}

/// Where a stage's fields are written, for its errors: a written stage's under
/// `stages[i]`; a stage that `studies` makes has them spread over its study and the
/// family's shared fields (its `target` is the family's pattern).
#[derive(Clone, Debug)]
pub struct Place {
    whole: FieldPath,
    moved: Vec<(String, FieldPath)>,
}

impl Place {
    pub(super) fn stage(index: usize) -> Place {
        Place {
            whole: stage_path(index),
            moved: Vec::new(),
        }
    }

    /// A made stage written at `whole`, its field `rel` (as `field` takes it) at `path`.
    pub(super) fn made(whole: FieldPath, moved: Vec<(&str, FieldPath)>) -> Place {
        Place {
            whole,
            moved: moved.into_iter().map(|(k, p)| (k.to_string(), p)).collect(),
        }
    }

    pub(super) fn whole(&self) -> FieldPath {
        self.whole.clone()
    }

    /// The path of field `rel` (`vary`, `inputs[1]`): where it was written, else inside
    /// the stage.
    pub(super) fn field(&self, rel: &str) -> FieldPath {
        if let Some((_, p)) = self.moved.iter().find(|(k, _)| k == rel) {
            return p.clone();
        }
        match FieldPath::parse(rel) {
            Some(p) => self.whole.clone().join(&p),
            None => self.whole.clone().key(rel),
        }
    }
}

impl Loader<'_> {
    /// An error at `path` in `file`; a path that is not written (a defaulted field) points
    /// at the nearest enclosing value that is.
    pub(super) fn error_at(
        &mut self,
        file: usize,
        path: &FieldPath,
        message: String,
        hint: Option<String>,
    ) {
        let offset = self.offset_of(file, path);
        self.error_at_offset(file, offset, path.to_string(), message, hint);
    }

    /// Where `path` is written in `file`, each value of the file split once.
    pub(super) fn offset_of(&self, file: usize, path: &FieldPath) -> usize {
        let mut splits = self.splits.borrow_mut();
        offset_of_path_in(
            &self.files[file].text,
            path,
            splits.entry(file).or_default(),
        )
    }

    pub(super) fn error_at_offset(
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
    pub(super) fn config_error(
        &mut self,
        file: usize,
        base: &FieldPath,
        e: ConfigError,
        origin: Origin,
    ) {
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

    pub(super) fn text(&self, file: usize, span: Span) -> &str {
        &self.files[file].text[span.0..span.1]
    }
}

/// Where the text of a parsed config came from, to put its errors back in the file.
pub(super) enum Origin {
    Written(Span),
    Spliced {
        text: String,
        splice_start: usize,
        value: Span,
    },
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
        let path = def.place.field(field);
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
