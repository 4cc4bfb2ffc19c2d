//! Every stage kind, one module each. Adding a kind means a module and a line in [`all`].

pub mod fake;

use crate::stage::StageKind;

/// The kinds a pipeline may name in `kind: "…"`.
pub fn all() -> Vec<&'static dyn StageKind> {
    vec![&fake::FAKE, &fake::FAKE_GATHER]
}
