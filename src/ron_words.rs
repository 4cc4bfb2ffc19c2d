//! ron's errors in the words of whoever wrote the pipeline: the field, what was written,
//! what is expected. ron reports a fraction in a whole-number field as a missing comma
//! after its integer part, and an exponent as a bad digit; both name no field.

/// Rewords ron's errors where a hint helps: the closest field name, the allowed variants.
pub fn describe(code: &ron::Error) -> (String, Option<String>) {
    match code {
        ron::Error::NoSuchStructField {
            expected,
            found,
            outer,
        } => {
            let within = outer
                .as_ref()
                .map(|o| format!(" in `{o}`"))
                .unwrap_or_default();
            (
                format!("unknown field `{found}`{within}"),
                Some(did_you_mean(found, expected.iter().copied())),
            )
        }
        ron::Error::NoSuchEnumVariant {
            expected,
            found,
            outer,
        } => {
            let within = outer
                .as_ref()
                .map(|o| format!(" of `{o}`"))
                .unwrap_or_default();
            (
                format!("unknown variant `{found}`{within}"),
                Some(did_you_mean(found, expected.iter().copied())),
            )
        }
        ron::Error::MissingStructField { field, outer } => {
            let within = outer
                .as_ref()
                .map(|o| format!(" in `{o}`"))
                .unwrap_or_default();
            (
                format!("missing field `{field}`{within}"),
                Some(format!("add `{field}: …`")),
            )
        }
        ron::Error::DuplicateStructField { field, outer } => {
            let within = outer
                .as_ref()
                .map(|o| format!(" in `{o}`"))
                .unwrap_or_default();
            (
                format!("`{field}` is written twice{within}"),
                Some(format!("keep one `{field}: …`")),
            )
        }
        ron::Error::ExpectedFloat => (
            "expected a number".into(),
            Some("write a number such as `0.9`".into()),
        ),
        ron::Error::ExpectedInteger => (
            "expected a whole number".into(),
            Some("write a whole number such as `32`".into()),
        ),
        ron::Error::ExpectedBoolean => ("expected `true` or `false`".into(), None),
        ron::Error::ExpectedString | ron::Error::ExpectedStringEnd => (
            "expected text".into(),
            Some("write text in double quotes: `\"relu\"`".into()),
        ),
        ron::Error::ExpectedArray => (
            "expected a list".into(),
            Some("write a list in brackets: `[0.1, 0.9]`".into()),
        ),
        ron::Error::ExpectedMap => (
            "expected a map".into(),
            Some("write a map in braces: `{\"optimizer.lr\": [0.1]}`".into()),
        ),
        ron::Error::ExpectedStructLike | ron::Error::ExpectedNamedStructLike(_) => (
            "expected a structure".into(),
            Some("write fields in parentheses: `(lr: 0.01, momentum: 0.9)`".into()),
        ),
        ron::Error::ExpectedComma => (
            "expected a comma".into(),
            Some("separate fields and list items with `,`".into()),
        ),
        // ron's own text advises raising its limit and using serde_stacker: advice to the
        // programmer, not to whoever wrote the pipeline.
        ron::Error::ExceededRecursionLimit => (
            "values nested too deep (more than 128 levels of brackets)".into(),
            Some("a bracket opened here is probably never closed".into()),
        ),
        other => (other.to_string(), None),
    }
}

/// "did you mean `x`?" when a name is close, else the full list of valid names.
pub fn did_you_mean<'a>(found: &str, valid: impl IntoIterator<Item = &'a str>) -> String {
    let valid: Vec<&str> = valid.into_iter().collect();
    let best = valid
        .iter()
        .map(|v| (strsim::jaro_winkler(found, v), *v))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, v)) => format!("did you mean `{v}`?"),
        None if valid.is_empty() => "nothing is defined here".to_string(),
        None => format!(
            "expected one of {}",
            valid
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `k` names of `valid` closest to `found`: most words in common first (`momentum:train`
/// finds `linear:momentum`), then the most alike as strings.
pub fn closest<'a>(found: &str, valid: &[&'a str], k: usize) -> Vec<&'a str> {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let mine = words(found);
    let mut scored: Vec<(usize, f64, &str)> = valid
        .iter()
        .map(|v| {
            let shared = words(v).iter().filter(|w| mine.contains(w)).count();
            (shared, strsim::jaro_winkler(found, v), *v)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)));
    scored.dedup_by(|a, b| a.2 == b.2);
    scored.into_iter().take(k).map(|(_, _, v)| v).collect()
}

/// A number written where ron could not take it, reworded.
pub struct Number {
    /// Byte offset where the written number starts.
    pub start: usize,
    /// The field it was written for (`seed` in `seed: 1.5`), when one precedes it.
    pub field: Option<String>,
    pub message: String,
    pub hint: String,
}

/// Rewords ron's error at byte `at` of `text` when it is about a written number that the
/// field's type cannot hold: `1.5` or `1e12` for a whole number, `-3` for a count.
pub fn number(text: &str, at: usize, code: &ron::Error) -> Option<Number> {
    let at = at.min(text.len());
    let bytes = text.as_bytes();
    let literal_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-');
    let kind = match code {
        // ron stops a whole number at `.` or an exponent, then wants a comma.
        ron::Error::ExpectedComma
            if at > 0
                && bytes[at - 1].is_ascii_digit()
                && matches!(bytes.get(at), Some(b'.' | b'e' | b'E')) =>
        {
            Kind::Fraction
        }
        ron::Error::InvalidIntegerDigit {
            digit: 'e' | 'E' | '.',
            ..
        } => Kind::Fraction,
        ron::Error::IntegerOutOfBounds => Kind::Range,
        _ => return None,
    };
    let mut start = at;
    while start > 0 && literal_char(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < bytes.len() && literal_char(bytes[end]) {
        end += 1;
    }
    let written = text[start..end].trim_end_matches(['.', '_']);
    if written.is_empty()
        || !written
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let field = field_before(&text[..start]);
    let name = field
        .as_deref()
        .map(|f| format!("`{f}`"))
        .unwrap_or_else(|| "this value".into());
    let (message, hint) = match kind {
        Kind::Fraction => {
            let whole = written
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() < 1e18 && *v == v.trunc())
                .map(|v| format!("`{}`", v as i64));
            let round = written
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() < 1e18)
                .map(|v| format!("round it: `{}` or `{}`", v.floor() as i64, v.ceil() as i64));
            (
                format!("{name} must be a whole number, not `{written}`"),
                match whole {
                    Some(w) => format!("write the digits without a point or exponent: {w}"),
                    None => round.unwrap_or_else(|| "write a whole number such as `42`".into()),
                },
            )
        }
        Kind::Range if written.starts_with('-') => (
            format!("{name} cannot be negative (`{written}`)"),
            "write a whole number of 0 or more".into(),
        ),
        Kind::Range => (
            format!("{name} is too large for a whole number of its kind (`{written}`)"),
            "write a smaller whole number".into(),
        ),
    };
    Some(Number {
        start,
        field,
        message,
        hint,
    })
}

enum Kind {
    Fraction,
    Range,
}

/// The field name of `name: ` ending `before`, if that is what precedes a value.
fn field_before(before: &str) -> Option<String> {
    let b = before.trim_end().strip_suffix(':')?.trim_end();
    let name: String = b
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

#[cfg(test)]
mod tests {
    fn reword(text: &str) -> (String, String, Option<String>) {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct C {
            epochs: u64,
            seed: u64,
            lr: f64,
        }
        let e = crate::ron_path::parse_typed::<C>(text).unwrap_err();
        let at = crate::ron_path::offset_of(text, e.line, e.col);
        (text[at..].to_string(), e.path, Some(e.message))
    }

    #[test]
    fn a_fraction_or_exponent_for_a_whole_number_names_the_field_and_the_value() {
        let (rest, path, msg) = reword("(epochs: 5, seed: 1.5, lr: 0.1)");
        assert!(rest.starts_with("1.5"), "{rest}");
        assert_eq!(path, "seed");
        assert_eq!(msg.unwrap(), "`seed` must be a whole number, not `1.5`");

        let (rest, path, msg) = reword("(epochs: 1e12, seed: 1, lr: 0.1)");
        assert!(rest.starts_with("1e12"), "{rest}");
        assert_eq!(path, "epochs");
        assert_eq!(msg.unwrap(), "`epochs` must be a whole number, not `1e12`");

        let (_, path, msg) = reword("(epochs: -3, seed: 1, lr: 0.1)");
        assert_eq!(path, "epochs");
        assert_eq!(msg.unwrap(), "`epochs` cannot be negative (`-3`)");
    }

    #[test]
    fn other_errors_keep_ron_s_own_words() {
        let (_, _, msg) = reword("(epochs: 5 seed: 1, lr: 0.1)");
        assert_eq!(msg.unwrap(), "expected a comma");
    }
}
