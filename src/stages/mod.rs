//! Every stage kind, one module each. Adding a kind means a module and a line in [`all`].

pub mod command;
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
        &command::COMMAND,
        &command::COMMAND_GATHER,
        &fake::FAKE,
        &fake::FAKE_GATHER,
    ]
}
