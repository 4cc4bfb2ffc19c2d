//! Step 3 of loading, for one stage: its kind and its base config, then one `path: value`
//! at a time spliced into the canonical text and re-parsed by the kind, so every override
//! is checked exactly as a written config is, and its errors point at the value written.

use crate::ron_path::{did_you_mean, locate, splice, FieldPath};
use crate::stage::{ConfigError, FieldError, Parsed, StageKind};

use super::error::Origin;
use super::files::Draft;
use super::{Def, Loader, Span};

/// starts in it.
pub(super) struct SpliceError(ConfigError, String, usize);

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
pub(super) fn splice_all(
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

/// `canonical` with every one of `ranges` (sorted, apart) replaced by its value in each
/// combination, parsed; `None` where that fails (the caller then applies the values one by
/// one, which says which is wrong). One splice and one parse per grid point, on every
/// core: a 200 × 200 grid parsed each point twice, one field at a time.
pub(super) fn splice_combinations(
    kind: &dyn StageKind,
    canonical: &str,
    ranges: &[(usize, usize)],
    combos: &[Vec<&str>],
) -> Vec<Option<Parsed>> {
    crate::par::map_chunks(combos, 64, |part| {
        part.iter()
            .map(|values| {
                let mut text = String::with_capacity(canonical.len() + 64);
                let mut from = 0;
                for (&(a, b), v) in ranges.iter().zip(values) {
                    text.push_str(&canonical[from..a]);
                    text.push_str(v);
                    from = b;
                }
                text.push_str(&canonical[from..]);
                kind.parse(&text)
                    .ok()
                    .filter(|p| p.config.validate().is_ok())
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

impl Loader<'_> {
    pub(super) fn find_kind(
        &mut self,
        d: &Draft,
        parent: Option<&Def>,
    ) -> Option<&'static dyn StageKind> {
        let path = d.place.whole();
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
    pub(super) fn apply(
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
    pub(super) fn field_range(
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
    pub(super) fn splice_report(
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

    pub(super) fn validate(
        &mut self,
        d: &Draft,
        parsed: &Parsed,
        at: &FieldPath,
        in_config: bool,
    ) -> bool {
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
}
