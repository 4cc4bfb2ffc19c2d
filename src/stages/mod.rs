//! Every stage kind, one module each. Adding a kind means a module and a line in [`all`].

pub mod command;
pub mod fake;

use crate::stage::StageKind;

/// The kinds a pipeline may name in `kind: "…"`.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![
        &command::COMMAND,
        &command::COMMAND_GATHER,
        &fake::FAKE,
        &fake::FAKE_GATHER,
    ]
}
