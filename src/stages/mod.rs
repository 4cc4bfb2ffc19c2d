//! Every stage kind, one module each. Adding a kind means a module and a line in [`all`].

pub mod command;
pub mod download;
pub mod fake;
pub mod normalize;

use crate::stage::StageKind;

/// The kinds a pipeline may name in `kind: "…"`.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![
        &download::DOWNLOAD,
        &normalize::NORMALIZE,
        &command::COMMAND,
        &command::COMMAND_GATHER,
        &fake::FAKE,
        &fake::FAKE_GATHER,
    ]
}
