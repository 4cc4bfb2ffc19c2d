//! Field paths inside RON text: find where `stages[2].config.optimizer.momentum` is written,
//! splice a new value in at such a path, and parse typed values with positioned errors.
//!
//! The `ron` crate gives positions only for its own errors. Borrowed `RawValue`s are
//! sub-slices of the source, so walking a value with `deserialize_any` and borrowing each
//! child as raw text gives every child's exact byte range; that is all the locator needs.
//!
//! Both the pipeline language and each stage kind's config parse (through `stage.rs`) use
//! it, so it imports neither.

use std::fmt;

use ron::extensions::Extensions;
use ron::value::RawValue;

use crate::ron_words;
pub use crate::ron_words::did_you_mean;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A config that failed to parse: position relative to the parsed text (1-based).
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub line: usize,
    pub col: usize,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error about the config as a whole, not one position in it.
    pub fn whole(message: String) -> Self {
        ConfigError {
            line: 1,
            col: 1,
            path: String::new(),
            message,
            hint: None,
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path such as `optimizer.momentum` or `model.hidden[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// Parses the dotted form users write in `vary`/`set` keys: `a.b`, `a.b[1]` or `a.b.1`.
    pub fn parse(s: &str) -> Option<FieldPath> {
        let mut segs = Vec::new();
        for part in s.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if name.is_empty() && rest.is_empty() {
                return None;
            }
            if !name.is_empty() {
                segs.push(match name.parse::<usize>() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(name.to_string()),
                });
            }
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']')?;
                segs.push(Seg::Index(stripped[..end].parse().ok()?));
                rest = &stripped[end + 1..];
            }
            if !rest.is_empty() {
                return None;
            }
        }
        Some(FieldPath(segs))
    }

    pub fn key(mut self, k: &str) -> Self {
        self.0.push(Seg::Key(k.to_string()));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }
    pub fn join(mut self, other: &FieldPath) -> Self {
        self.0.extend(other.0.iter().cloned());
        self
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if k.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The children of one RON value, each as its raw source text.
enum Children<'a> {
    Fields(Vec<(String, &'a str)>),
    Items(Vec<&'a str>),
    Leaf,
}

struct ChildrenVisitor;

impl<'de> Visitor<'de> for ChildrenVisitor {
    type Value = Children<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any RON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<ron::Value>()? {
            let key = match k {
                ron::Value::String(s) => s,
                other => ron::to_string(&other).unwrap_or_default(),
            };
            let v: &'de RawValue = map.next_value()?;
            out.push((key, v.get_ron()));
        }
        Ok(Children::Fields(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            out.push(v.get_ron());
        }
        Ok(Children::Items(out))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ChildrenVisitor)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ChildrenVisitor)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_char<E>(self, _: char) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Children::Leaf)
    }
}

/// `IMPLICIT_SOME`: `Some(0.5)` may be written `0.5`; `UNWRAP_VARIANT_NEWTYPES`: a family
/// is written `Mlp(hidden: [512])`, not `Mlp((hidden: [512]))`.
fn options() -> ron::Options {
    ron::Options::default()
        .with_default_extension(Extensions::IMPLICIT_SOME | Extensions::UNWRAP_VARIANT_NEWTYPES)
}

/// The canonical RON of a value: every field written, in declaration order, readable back
/// with the same extensions.
pub fn to_canonical<T: serde::Serialize>(value: &T) -> Result<String, ron::Error> {
    options().to_string(value)
}

fn children(text: &str) -> Children<'_> {
    let Ok(mut de) = ron::Deserializer::from_str_with_options(text, &options()) else {
        return Children::Leaf;
    };
    (&mut de)
        .deserialize_any(ChildrenVisitor)
        .unwrap_or(Children::Leaf)
}

/// Byte offset of `inner` inside `outer`; `inner` must be a sub-slice of it.
fn offset_in(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// The first number in `text` (a RON value that parsed) that is NaN or infinite, with its
/// field path and byte offset. ron reads `NaN`, `inf` and overflowing literals (`1e999`);
/// JSON, which keys are made from, writes all three as `null`, so they must never get that
/// far. Enum variants with fields (`Normal(0, NaN)`) are looked into.
pub fn non_finite(text: &str) -> Option<(FieldPath, usize)> {
    if !may_be_non_finite(text) {
        return None;
    }
    fn walk<'a>(outer: &'a str, cur: &'a str, path: FieldPath) -> Option<(FieldPath, usize)> {
        let inner = |v: &'a str, p: FieldPath| walk(outer, v, p);
        match children(cur) {
            Children::Fields(fields) => fields
                .into_iter()
                .find_map(|(k, v)| inner(v, path.clone().key(&k))),
            Children::Items(items) => items
                .into_iter()
                .enumerate()
                .find_map(|(i, v)| inner(v, path.clone().index(i))),
            Children::Leaf => {
                let t = cur.trim();
                if t.parse::<f64>().is_ok_and(|x| !x.is_finite()) {
                    return Some((
                        path,
                        offset_in(outer, cur) + (cur.len() - cur.trim_start().len()),
                    ));
                }
                // `Variant(…)`: ron hands the whole of it over as one value.
                let open = t.find('(')?;
                let name = &t[..open];
                if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return None;
                }
                let start = cur.find('(')?;
                if name == "Some" {
                    // An option's value is the field's own value, not an item of it.
                    let end = cur.rfind(')')?;
                    return inner(&cur[start + 1..end], path);
                }
                inner(&cur[start..], path)
            }
        }
    }
    walk(text, text, FieldPath(Vec::new()))
}

/// Whether `text` could hold a non-finite number at all: a `nan` or `inf` (any case, as
/// Rust's float parser reads them), an exponent of three digits or more, or 300 digits in a
/// row. Nearly every config has none, and is spared the walk through its values (which
/// parses every level again: most of the loading time of a plan of 40,000 variants).
fn may_be_non_finite(text: &str) -> bool {
    let b = text.as_bytes();
    let word = |w: &[u8]| b.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w));
    if word(b"nan") || word(b"inf") {
        return true;
    }
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 300 {
                return true;
            }
            continue;
        }
        if (c == b'e' || c == b'E') && run > 0 {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+') | Some(b'-')) {
                j += 1;
            }
            let digits = b[j.min(b.len())..]
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .count();
            if digits >= 3 {
                return true;
            }
        }
        if c != b'.' {
            run = 0;
        }
    }
    false
}

/// Where a path failed to resolve: how many segments matched and what was there instead.
pub struct Miss {
    pub matched: usize,
    /// The byte range of the deepest value that was found.
    pub range: (usize, usize),
    /// Field names available at the failing level (for "did you mean" hints).
    pub known: Vec<String>,
}

/// Byte range of the value at `path` in `text`.
pub fn locate(text: &str, path: &FieldPath) -> Result<(usize, usize), Miss> {
    let mut cur: &str = text;
    let trimmed_start = text.len() - text.trim_start().len();
    let mut range = (trimmed_start, text.trim_end().len());
    for (i, seg) in path.0.iter().enumerate() {
        let next = match (children(cur), seg) {
            (Children::Fields(fields), Seg::Key(k)) => match fields.iter().find(|(n, _)| n == k) {
                Some((_, v)) => Ok(*v),
                None => Err(fields.into_iter().map(|(n, _)| n).collect()),
            },
            (Children::Fields(fields), Seg::Index(n)) => {
                let key = n.to_string();
                match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, v)) => Ok(*v),
                    None => Err(fields.into_iter().map(|(n, _)| n).collect()),
                }
            }
            (Children::Items(items), Seg::Index(n)) => items.get(*n).copied().ok_or_default(),
            _ => Err(Vec::new()),
        };
        match next {
            Ok(v) => {
                let start = offset_in(text, v);
                range = (start, start + v.len());
                cur = v;
            }
            Err(known) => {
                return Err(Miss {
                    matched: i,
                    range,
                    known,
                })
            }
        }
    }
    Ok(range)
}

trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, Vec<String>>;
}
impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, Vec<String>> {
        self.ok_or_else(Vec::new)
    }
}

/// The value written at byte `start` of `text`, when `text` agrees with `like` on every
/// byte before `start` and `start` is where a value begins in `like`: a parser reaches
/// `start` in the same state in both, so the value there sits at the same path. Re-serialized
/// variants of one config share the prefix before their varied field, so their coordinates
/// are read here without walking the path again; `None` sends the caller to [`locate`].
pub fn value_at<'t>(text: &'t str, like: &str, start: usize) -> Option<&'t str> {
    if start > text.len()
        || start > like.len()
        || text.as_bytes()[..start] != like.as_bytes()[..start]
    {
        return None;
    }
    let rest = text.get(start..)?;
    let mut de = ron::Deserializer::from_str_with_options(rest, &options()).ok()?;
    let raw = <&RawValue>::deserialize(&mut de).ok()?;
    Some(raw.get_ron().trim())
}

/// Where `path` is written in `text`; a path that is not written (a defaulted field) gives
/// the nearest enclosing value that is. For error positions.
pub fn offset_of_path(text: &str, path: &FieldPath) -> usize {
    match locate(text, path) {
        Ok((start, _)) => start,
        Err(miss) => miss.range.0,
    }
}

/// The values [`offset_of_path_in`] split, by byte range of one text: a file with many
/// errors is split once per value, not once per error (600 errors in a 200-study file took
/// 6 s of re-parsing the whole file for each).
#[derive(Default)]
pub struct Splits(std::collections::HashMap<(usize, usize), Split>);

enum Split {
    Fields(Vec<(String, (usize, usize))>),
    Items(Vec<(usize, usize)>),
    Leaf,
}

impl Splits {
    fn of(&mut self, text: &str, range: (usize, usize)) -> &Split {
        self.0.entry(range).or_insert_with(|| {
            let at = |v: &str| {
                let s = offset_in(text, v);
                (s, s + v.len())
            };
            match children(&text[range.0..range.1]) {
                Children::Fields(f) => {
                    Split::Fields(f.into_iter().map(|(n, v)| (n, at(v))).collect())
                }
                Children::Items(i) => Split::Items(i.into_iter().map(at).collect()),
                Children::Leaf => Split::Leaf,
            }
        })
    }
}

/// As [`offset_of_path`], with each value of `text` split once per `splits` (keep one per
/// text).
pub fn offset_of_path_in(text: &str, path: &FieldPath, splits: &mut Splits) -> usize {
    let mut range = (text.len() - text.trim_start().len(), text.trim_end().len());
    for seg in &path.0 {
        let next = match (splits.of(text, range), seg) {
            (Split::Fields(f), Seg::Key(k)) => f.iter().find(|(n, _)| n == k).map(|(_, r)| *r),
            (Split::Fields(f), Seg::Index(i)) => {
                let k = i.to_string();
                f.iter().find(|(n, _)| *n == k).map(|(_, r)| *r)
            }
            (Split::Items(items), Seg::Index(i)) => items.get(*i).copied(),
            _ => None,
        };
        match next {
            Some(r) => range = r,
            None => break,
        }
    }
    range.0
}

/// Replaces the byte range `(start, end)` of `text` (a value found by [`locate`]) with
/// `value` (RON text); returns the new text and where the value starts in it.
pub fn splice(text: &str, (start, end): (usize, usize), value: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + value.len());
    out.push_str(&text[..start]);
    out.push_str(value);
    out.push_str(&text[end..]);
    (out, start)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Byte offset of a 1-based line and column.
pub fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map(|(b, _)| b)
                    .unwrap_or(l.len());
        }
        offset += l.len();
    }
    text.len()
}

/// Parses typed RON, keeping the position and field path of the first error.
pub fn parse_typed<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ConfigError> {
    let mut de = ron::Deserializer::from_str_with_options(text, &options())
        .map_err(|e| from_spanned(text, &e, String::new()))?;
    let mut track = serde_path_to_error::Track::new();
    let result = T::deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    match result {
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(from_spanned(text, &de.span_error(e), String::new())),
        },
        Err(e) => {
            // serde_path_to_error writes `?` for a position it cannot name: drop those.
            let path = track.path().to_string();
            let path = path
                .split('.')
                .filter(|s| *s != "?" && !s.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            Err(from_spanned(text, &de.span_error(e), path))
        }
    }
}

fn from_spanned(text: &str, e: &ron::error::SpannedError, path: String) -> ConfigError {
    let at = offset_of(text, e.span.start.line, e.span.start.col);
    if let Some(n) = ron_words::number(text, at, &e.code) {
        let (line, col) = line_col(text, n.start);
        let path = match n.field {
            Some(f) if !path.ends_with(&f) => {
                if path.is_empty() {
                    f
                } else {
                    format!("{path}.{f}")
                }
            }
            _ => path,
        };
        return ConfigError {
            line,
            col,
            path,
            message: n.message,
            hint: Some(n.hint),
        };
    }
    let (message, hint) = ron_words::describe(&e.code);
    ConfigError {
        line: e.span.start.line,
        col: e.span.start.col,
        path,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "Pipeline(\n  uses: [\"a\"], // c\n  model: Mlp(hidden: [1, 2], act: Relu),\n  o: Some((x: 3)),\n)";

    #[test]
    fn a_path_is_found_where_it_is_written_with_or_without_the_splits_kept() {
        let text = "Pipeline(stages: [\n (name: \"a\", config: (x: 1)),\n (name: \"b\", config: (y: 2)),\n])";
        let mut splits = Splits::default();
        for path in [
            FieldPath::default()
                .key("stages")
                .index(1)
                .key("config")
                .key("y"),
            FieldPath::default().key("stages").index(0).key("name"),
            FieldPath::default().key("stages").index(1).key("missing"),
            FieldPath::default().key("nothing"),
        ] {
            assert_eq!(
                offset_of_path_in(text, &path, &mut splits),
                offset_of_path(text, &path),
                "{path}"
            );
        }
    }

    #[test]
    fn locates_nested_fields_items_and_options() {
        let at = |p: &str| {
            let (s, e) = locate(SRC, &FieldPath::parse(p).unwrap()).ok().unwrap();
            (&SRC[s..e], line_col(SRC, s))
        };
        assert_eq!(at("model.hidden[1]"), ("2", (3, 26)));
        assert_eq!(at("model.act"), ("Relu", (3, 35)));
        assert_eq!(at("o.x"), ("3", (4, 15)));
        assert_eq!(at("uses.0"), ("\"a\"", (2, 10)));
    }

    #[test]
    fn non_finite_numbers_are_found_with_their_path_and_position() {
        let at = |t: &str| non_finite(t).map(|(p, o)| (p.to_string(), line_col(t, o)));
        assert_eq!(at("(lr: 0.1, m: [1.0, 2.5])"), None);
        assert_eq!(at("(lr: NaN)"), Some(("lr".into(), (1, 6))));
        assert_eq!(
            at("(o: (eps: -inf), b: 1)"),
            Some(("o.eps".into(), (1, 11)))
        );
        assert_eq!(at("(h: [1.0,\n 1e999])"), Some(("h[1]".into(), (2, 2))));
        assert_eq!(
            at("(init: Normal(0.0, NaN))"),
            Some(("init[1]".into(), (1, 20)))
        );
        assert_eq!(
            at("(init: Uniform(min: inf, max: 1.0))"),
            Some(("init.min".into(), (1, 21)))
        );
        assert_eq!(at("(s: Some(inf))"), Some(("s".into(), (1, 10))));
        assert_eq!(
            at(&format!("(big: {}.0)", "9".repeat(400))),
            Some(("big".into(), (1, 7)))
        );
        assert_eq!(at("(x: 1.5E+400)"), Some(("x".into(), (1, 5))));
    }

    #[test]
    fn the_quick_look_for_non_finite_numbers_misses_none_and_passes_ordinary_configs() {
        for t in [
            "(lr: NaN)",
            "(a: -INF)",
            "(a: infinity)",
            "(x: 1e999)",
            "(x: 2.5E-400)",
        ] {
            assert!(may_be_non_finite(t), "{t}");
        }
        for t in [
            "(lr: 0.1, wd: 1e-5, m: [1.0, 2e10], s: \"Relu\", seed: 42)",
            "(name: \"x\")",
        ] {
            assert!(!may_be_non_finite(t), "{t}");
        }
    }

    #[test]
    fn deep_nesting_is_reported_without_rons_advice() {
        let text = format!("(a: {})", "[".repeat(300));
        let e = parse_typed::<ron::Value>(&text).err().unwrap();
        assert!(e.message.contains("nested too deep"), "{}", e.message);
        assert!(!e.message.contains("serde_stacker"));
    }

    #[test]
    fn missing_field_reports_known_names() {
        let miss = locate(SRC, &FieldPath::parse("model.hiden").unwrap())
            .err()
            .unwrap();
        assert_eq!(miss.matched, 1);
        assert_eq!(miss.known, vec!["hidden", "act"]);
        assert_eq!(
            did_you_mean("hiden", miss.known.iter().map(|s| s.as_str())),
            "did you mean `hidden`?"
        );
    }

    #[test]
    fn value_at_reads_what_locate_finds_in_a_text_with_the_same_prefix() {
        let path = FieldPath::parse("model.hidden").unwrap();
        let (start, _) = locate(SRC, &path).ok().unwrap();
        let (other, _) = splice(SRC, locate(SRC, &path).ok().unwrap(), "[7, 8]");
        assert_eq!(value_at(&other, SRC, start), Some("[7, 8]"));
        let (s, e) = locate(&other, &path).ok().unwrap();
        assert_eq!(&other[s..e], "[7, 8]");
        // A text that differs before the value is not read.
        let shifted = format!(" {SRC}");
        assert_eq!(value_at(&shifted, SRC, start), None);
    }

    #[test]
    fn splice_replaces_only_the_value() {
        let range = locate(SRC, &FieldPath::parse("model.hidden").unwrap())
            .ok()
            .unwrap();
        let (out, at) = splice(SRC, range, "[7]");
        assert!(out.contains("Mlp(hidden: [7], act: Relu)"));
        assert_eq!(&out[at..at + 3], "[7]");
    }

    #[test]
    fn path_display_round_trips() {
        let p = FieldPath::default()
            .key("stages")
            .index(2)
            .key("vary")
            .key("optimizer.lr")
            .index(0);
        assert_eq!(p.to_string(), "stages[2].vary[\"optimizer.lr\"][0]");
        assert_eq!(
            FieldPath::parse("a.b[3].c").unwrap().to_string(),
            "a.b[3].c"
        );
    }
}
