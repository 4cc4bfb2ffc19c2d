//! Every stage kind, one module each. Adding a kind means a module and a line in [`all`].

pub mod command;
pub mod conclusions;
pub mod download;
pub mod evaluate;
pub mod fake;
pub mod normalize;
pub mod report;
pub mod train;

use crate::stage::StageKind;

/// The kinds a pipeline may name in `kind: "…"`.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![
        &download::DOWNLOAD,
        &normalize::NORMALIZE,
        &train::TRAIN,
        &evaluate::EVALUATE,
        &report::REPORT,
        &conclusions::CONCLUSIONS,
        &command::COMMAND,
        &command::COMMAND_GATHER,
        &fake::FAKE,
        &fake::FAKE_GATHER,
    ]
}

/// A page's file name (the target's, or `default` without one) and the folder of its
/// figures beside it (the name without `.md`): what a report and the conclusions write.
pub(crate) fn page_names(target: Option<&str>, default: &str) -> (String, String) {
    let file = target
        .and_then(|t| std::path::Path::new(t).file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| default.into());
    let assets = std::path::Path::new(&file)
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    (file, assets)
}
