//! Step 3 of loading, the variants: a stage's base config, then one variant per `vary`
//! value and per `grid` combination, duplicates dropped, each labelled by the fields that
//! differ from the base as the kind re-serializes them (`0.90` and `0.9` are one variant).

use std::collections::HashSet;

use crate::ron_path::{locate, value_at, FieldPath};

use super::config::{splice_all, splice_combinations};
use super::error::Origin;
use super::files::{ConfigText, Draft};
use super::{Def, Loader, Variant};
use crate::stage::{Parsed, StageKind};

/// Cartesian product of index ranges: `[2, 3]` → `[0,0], [0,1], …, [1,2]`.
pub fn product(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &n in sizes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..n).map(move |i| {
                    let mut p = prefix.clone();
                    p.push(i);
                    p
                })
            })
            .collect();
    }
    out
}

impl Loader<'_> {
    /// Every grid point parsed in one splice of all its fields, where the fields are
    /// found in `canonical` and apart; `None` for a point (or all) that must go the slow
    /// way, field by field, to be reported.
    fn grid_at_once(
        &self,
        d: &Draft,
        kind: &dyn StageKind,
        canonical: &str,
        combos: &[Vec<usize>],
    ) -> Vec<Option<Parsed>> {
        let ranges: Option<Vec<(usize, usize)>> = d
            .grid
            .iter()
            .map(|(key, _)| locate(canonical, &FieldPath::parse(key)?).ok())
            .collect();
        let Some(ranges) = ranges else {
            return vec![None; combos.len()];
        };
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&g| ranges[g]);
        if order.windows(2).any(|w| ranges[w[0]].1 > ranges[w[1]].0) {
            return vec![None; combos.len()];
        }
        let sorted: Vec<(usize, usize)> = order.iter().map(|&g| ranges[g]).collect();
        let texts: Vec<Vec<&str>> = combos
            .iter()
            .map(|c| {
                order
                    .iter()
                    .map(|&g| self.text(d.file, d.grid[g].1[c[g]]))
                    .collect()
            })
            .collect();
        splice_combinations(kind, canonical, &sorted, &texts)
    }

    pub(super) fn build_def(
        &mut self,
        d: &Draft,
        parent: Option<&Def>,
        inputs: Vec<usize>,
    ) -> Option<Def> {
        let kind = self.find_kind(d, parent)?;
        let sp = d.place.whole();
        let mut base = match (parent, &d.config) {
            (Some(_), Some(_)) => {
                self.error_at(
                    d.file,
                    &d.place.field("config"),
                    "a stage that `extends` another cannot also give a whole `config`".into(),
                    Some("change fields with `set: {\"optimizer.lr\": 0.01}`".into()),
                );
                return None;
            }
            (Some(p), None) => p.variants[0].parsed.clone(),
            (None, Some(ConfigText::Written(span))) => match kind.parse(self.text(d.file, *span)) {
                Ok(p) => p,
                Err(e) => {
                    self.config_error(d.file, &d.place.field("config"), e, Origin::Written(*span));
                    return None;
                }
            },
            (None, Some(ConfigText::Made(text))) => match kind.parse(text) {
                Ok(p) => p,
                Err(e) => {
                    self.error_at(d.file, &d.place.field("config"), e.message, e.hint);
                    return None;
                }
            },
            (None, None) => match kind.parse("()") {
                Ok(p) => p,
                Err(e) => {
                    self.error_at(
                        d.file,
                        &sp,
                        format!(
                            "stage kind `{}` needs a `config`: {}",
                            kind.name(),
                            e.message
                        ),
                        e.hint,
                    );
                    return None;
                }
            },
        };
        // Every `set` entry is tried, so each wrong one is said, not only the first.
        let mut set_ok = true;
        for (key, value) in &d.set {
            let at = d.place.field("set").key(key);
            match self.apply(d, kind, &base, key, *value, &at) {
                Ok(b) => base = b,
                Err(_) => set_ok = false,
            }
        }
        if !set_ok {
            return None;
        }
        let written_config = parent.is_none() && d.set.is_empty();
        let at = if written_config {
            d.place.field("config")
        } else {
            d.place.field("set")
        };
        if !self.validate(d, &base, &at, written_config) {
            return None;
        }

        let varied: Vec<String> = d
            .vary
            .iter()
            .chain(&d.grid)
            .map(|(k, _)| k.clone())
            .collect::<indexmap::IndexSet<_>>()
            .into_iter()
            .collect();
        let mut variants = vec![Variant {
            label: "base".into(),
            coords: Vec::new(),
            parsed: base,
        }];
        let mut seen: HashSet<String> = HashSet::from([variants[0].parsed.canonical.clone()]);
        let mut ok = true;
        // An empty list would make no variant (an empty grid: none at all) without a word.
        for (field, list) in [("vary", &d.vary), ("grid", &d.grid)] {
            for (key, _) in list.iter().filter(|(_, v)| v.is_empty()) {
                self.error_at(
                    d.file,
                    &d.place.field(field).key(key),
                    format!("`{field}` gives `{key}` no values"),
                    Some("list at least one value, or remove the field".into()),
                );
                ok = false;
            }
        }
        for (key, values) in &d.vary {
            let base = variants[0].parsed.canonical.clone();
            let first = d.place.field("vary").key(key).index(0);
            let range = match self.field_range(d, kind, &base, key, &first) {
                Ok(r) => r,
                Err(_) => {
                    ok = false;
                    continue;
                }
            };
            let texts: Vec<&str> = values.iter().map(|v| self.text(d.file, *v)).collect();
            let attempts = splice_all(kind, &base, range, &texts);
            for (k, (value, attempt)) in values.iter().zip(attempts).enumerate() {
                let at = d.place.field("vary").key(key).index(k);
                match self.splice_report(d, &at, *value, attempt) {
                    Ok(p) if self.validate(d, &p, &at, false) => {
                        if seen.insert(p.canonical.clone()) {
                            variants.push(Variant {
                                label: String::new(),
                                coords: Vec::new(),
                                parsed: p,
                            });
                        }
                    }
                    _ => ok = false,
                }
            }
        }
        let grid_fits = self.grid_fits(d);
        ok &= grid_fits;
        if !d.grid.is_empty() && grid_fits {
            let sizes: Vec<usize> = d.grid.iter().map(|(_, v)| v.len()).collect();
            let combos = product(&sizes);
            let fast = self.grid_at_once(d, kind, &variants[0].parsed.canonical, &combos);
            for (combo, fast) in combos.iter().zip(fast) {
                if let Some(p) = fast {
                    if seen.insert(p.canonical.clone()) {
                        variants.push(Variant {
                            label: String::new(),
                            coords: Vec::new(),
                            parsed: p,
                        });
                    }
                    continue;
                }
                let mut cur = variants[0].parsed.clone();
                let mut good = true;
                for (g, &k) in combo.iter().enumerate() {
                    let (key, values) = &d.grid[g];
                    let at = d.place.field("grid").key(key).index(k);
                    match self.apply(d, kind, &cur, key, values[k], &at) {
                        Ok(p) if self.validate(d, &p, &at, false) => cur = p,
                        _ => {
                            good = false;
                            break;
                        }
                    }
                }
                if !good {
                    ok = false;
                    break;
                }
                if seen.insert(cur.canonical.clone()) {
                    variants.push(Variant {
                        label: String::new(),
                        coords: Vec::new(),
                        parsed: cur,
                    });
                }
            }
        }
        if !ok {
            return None;
        }
        // Coordinates and labels come from the re-serialized config, so `0.90` and `0.9`
        // are one variant with one label.
        let base_text = variants[0].parsed.canonical.clone();
        let paths: Vec<(FieldPath, Option<usize>)> = varied
            .iter()
            .map(|key| {
                let fp = FieldPath::parse(key).unwrap_or_default();
                let start = locate(&base_text, &fp).ok().map(|(s, _)| s);
                (fp, start)
            })
            .collect();
        for v in &mut variants {
            let text = &v.parsed.canonical;
            v.coords = varied
                .iter()
                .zip(&paths)
                .map(|(key, (fp, start))| {
                    let value = start
                        .and_then(|s| value_at(text, &base_text, s))
                        .or_else(|| locate(text, fp).ok().map(|(s, e)| &text[s..e]))
                        .unwrap_or_default();
                    (key.clone(), value.to_string())
                })
                .collect();
        }
        let base_coords = variants[0].coords.clone();
        for v in variants.iter_mut().skip(1) {
            let changed: Vec<String> = v
                .coords
                .iter()
                .zip(&base_coords)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| format!("{}={}", a.0, a.1))
                .collect();
            v.label = changed.join(",");
        }
        if !self.replicate(d, kind, &mut variants) {
            return None;
        }
        let deps =
            match &d.deps {
                Some(written) => {
                    for (j, dep) in written.iter().enumerate() {
                        if let Some(why) = refuse(self.root.as_deref(), dep) {
                            self.error_at(
                            d.file,
                            &d.place.field(&format!("deps[{j}]")),
                            why,
                            Some("deps are files or folders of the project, relative to its root: \
                                  `deps: [\"scripts/train.py\"]`".into()),
                        );
                        }
                    }
                    written.clone()
                }
                None => parent.map(|p| p.deps.clone()).unwrap_or_default(),
            };
        let f = &self.files[d.file];
        Some(Def {
            id: format!("{}:{}", f.ns, d.name),
            file: d.file,
            place: d.place.clone(),
            name: d.name.clone(),
            description: d.description.clone(),
            kind,
            inputs,
            deps,
            variants,
            target: d.target.clone(),
        })
    }
}

/// The coordinate and label part that marks a seed replicate: a report averages the
/// variants that differ only by it.
pub const SEED: &str = "seed";

/// The most replicates `seeds` may ask for.
pub const MAX_SEEDS: u64 = 1000;

/// The most nodes one stage may expand to (its variants times its seeds):
/// `PIPE_MAX_VARIANTS`, or 50,000 (a 200 × 200 grid plans in 0.6 s). Three lists of 100 in
/// a grid are a million nodes, which no machine plans in reasonable time: refused where the
/// grid is written.
pub const MAX_VARIANTS_VAR: &str = "PIPE_MAX_VARIANTS";

pub fn max_variants() -> usize {
    std::env::var(MAX_VARIANTS_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(50_000)
}

impl Loader<'_> {
    /// Whether the grid's product is within [`max_variants`]; says so at `grid` if not,
    /// before a single combination is made.
    fn grid_fits(&mut self, d: &Draft) -> bool {
        let combos = d
            .grid
            .iter()
            .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
            .unwrap_or(usize::MAX);
        let most = max_variants();
        if d.grid.is_empty() || combos <= most {
            return true;
        }
        let sizes: Vec<String> = d.grid.iter().map(|(_, v)| v.len().to_string()).collect();
        self.error_at(
            d.file,
            &d.place.field("grid"),
            format!(
                "`grid` makes {combos} combinations ({}), over the limit of {most} variants a stage",
                sizes.join(" × ")
            ),
            Some(format!("vary one field at a time, or {MAX_VARIANTS_VAR}=<n> raises the limit")),
        );
        false
    }

    /// `seeds: N`: every variant trained N times, with seeds `seed`, `seed + 1`, …; the first
    /// is the variant as it was (same config, same key, same cache entry), the others are
    /// labelled `…,seed=43`.
    /// (A larger count is a typo: each replicate is a full training run.)
    fn replicate(&mut self, d: &Draft, kind: &dyn StageKind, variants: &mut Vec<Variant>) -> bool {
        let at = d.place.field("seeds");
        let n = match d.seeds {
            None | Some(1) => return true,
            Some(0) => {
                self.error_at(d.file, &at, "`seeds` must be at least 1".into(), None);
                return false;
            }
            Some(n) if n > MAX_SEEDS => {
                self.error_at(
                    d.file,
                    &at,
                    format!("`seeds: {n}` is more than {MAX_SEEDS} replicates of every variant"),
                    Some("3 to 10 seeds are what a test over seeds needs".into()),
                );
                return false;
            }
            Some(n) => n,
        };
        let nodes = variants.len().saturating_mul(n as usize);
        if nodes > max_variants() {
            self.error_at(
                d.file,
                &at,
                format!(
                    "`seeds: {n}` over {} variants makes {nodes} runs, over the limit of {} a stage",
                    variants.len(),
                    max_variants()
                ),
                Some(format!("{MAX_VARIANTS_VAR}=<n> raises the limit")),
            );
            return false;
        }
        let originals = variants.len();
        let mut seen: HashSet<String> = variants
            .iter()
            .map(|v| v.parsed.canonical.clone())
            .collect();
        for i in 0..originals {
            let canonical = variants[i].parsed.canonical.clone();
            let Ok(range) = self.field_range(d, kind, &canonical, SEED, &at) else {
                return false;
            };
            let Ok(first) = canonical[range.0..range.1].trim().parse::<u64>() else {
                self.error_at(
                    d.file,
                    &at,
                    format!(
                        "`seeds` needs a whole-number `seed`, found `{}`",
                        &canonical[range.0..range.1]
                    ),
                    None,
                );
                return false;
            };
            let texts: Vec<String> = (1..n).map(|r| first.wrapping_add(r).to_string()).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (text, attempt) in texts.iter().zip(splice_all(kind, &canonical, range, &refs)) {
                let Ok(parsed) = attempt else {
                    self.error_at(d.file, &at, format!("cannot set `seed: {text}`"), None);
                    return false;
                };
                if !seen.insert(parsed.canonical.clone()) {
                    continue;
                }
                let v = &variants[i];
                let mut coords = v.coords.clone();
                coords.push((SEED.to_string(), text.clone()));
                let label = match v.label.as_str() {
                    "base" => format!("{SEED}={text}"),
                    l => format!("{l},{SEED}={text}"),
                };
                variants.push(Variant {
                    label,
                    coords,
                    parsed,
                });
            }
        }
        true
    }
}

/// Why `dep`, as written in `deps`, cannot be a dependency; `None` when it can. Without a
/// project root (pipelines loaded from text) only its form is checked.
fn refuse(root: Option<&std::path::Path>, dep: &str) -> Option<String> {
    use std::path::{Component, Path};
    let p = Path::new(dep);
    if dep.is_empty() {
        return Some("an empty path".into());
    }
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some(format!("`{dep}` is outside the project"));
    }
    match root {
        Some(root) if !root.join(p).exists() => {
            Some(format!("`{dep}` does not exist in the project"))
        }
        _ => None,
    }
}
