//! The pipeline language: the RON files under `pipelines/` → a checked [`Spec`], every
//! stage definition with its variants, which [`plan`](crate::plan) expands into the DAG.
//!
//! Loading goes in this order, one file per step:
//! 1. [`files`]: read every `*.ron` under `pipelines/`, sorted; parse each into drafts
//!    (stages as written, with the byte range of every value) and resolve its `uses`.
//! 2. [`resolve`]: names unique per file; `extends` and `inputs` resolved to stages; no
//!    cycle; targets relative, inside the project and unique. Gives the build order.
//! 3. [`config`] and [`variants`], per stage in that order: the kind, the base config
//!    (written, or the extended stage's with `set` applied) parsed and validated by the kind,
//!    then `vary` and `grid` spliced into it, one variant per value or combination.
//!
//! Everything a user can get wrong is caught here, before anything runs, and reported by
//! [`error`] with file:line:column, the field path and a hint: syntax, unknown fields and
//! wrong types (from ron, positioned by [`ron_path`](crate::ron_path)), unknown stage kinds
//! and references, `uses` of missing files, cycles, invalid values (from each kind's
//! `validate`), duplicate names and targets. Errors are collected over every file and
//! stage of a step, so one load reports many; a file that does not parse is parsed again
//! stage by stage ([`brackets`] splits it), so each broken stage is reported, and a bracket
//! never closed is reported at that bracket. A step whose input has errors does not run.

mod brackets;
mod config;
mod error;
mod files;
mod resolve;
mod studies;
mod variants;

use std::path::{Path, PathBuf};

use crate::stage::{Parsed, StageKind};

pub use error::{Place, SpecError, SpecErrors};
pub use files::read_files;
pub use variants::{product, SEED};

/// Where pipeline files live, relative to the project root.
pub const PIPELINES_DIR: &str = "pipelines";

/// A byte range in a pipeline file.
#[derive(Clone, Copy, Debug)]
struct Span(usize, usize);

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
    /// Where it is written, for errors found later.
    pub place: Place,
    pub name: String,
    pub description: String,
    pub kind: &'static dyn StageKind,
    pub inputs: Vec<usize>,
    /// Project files and folders whose content is part of the key (`deps`), as written.
    pub deps: Vec<String>,
    /// The base first, then the variants.
    pub variants: Vec<Variant>,
    pub target: Option<String>,
}

pub struct Spec {
    pub files: Vec<PipelineFile>,
    pub defs: Vec<Def>,
}

struct Loader<'k> {
    kinds: &'k [&'static dyn StageKind],
    root: Option<PathBuf>,
    files: Vec<PipelineFile>,
    errors: Vec<SpecError>,
    /// `uses` as written, per file, until `resolve_uses` turns them into file indices.
    pending_uses: Vec<Vec<String>>,
    /// Per file, the values split so far to place errors: linear in the number of errors.
    splits: std::cell::RefCell<std::collections::HashMap<usize, crate::ron_path::Splits>>,
}

/// Loads every `*.ron` under `root/pipelines`.
pub fn load(root: &Path, kinds: &[&'static dyn StageKind]) -> Result<Spec, SpecErrors> {
    load_files(read_files(root)?, kinds, Some(root))
}

/// Loads a spec from the files [`read_files`] returned.
/// `root`, the project's, to check that each `deps` exists there (`None`: unchecked).
pub fn load_files(
    files: Vec<(PathBuf, String)>,
    kinds: &[&'static dyn StageKind],
    root: Option<&Path>,
) -> Result<Spec, SpecErrors> {
    let mut loader = Loader {
        kinds,
        root: root.map(Path::to_path_buf),
        files: Vec::new(),
        errors: Vec::new(),
        pending_uses: Vec::new(),
        splits: Default::default(),
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
