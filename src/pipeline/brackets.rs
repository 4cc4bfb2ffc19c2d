//! Bracket matching over RON text, for what ron's parser cannot say: where a bracket that
//! is never closed was opened. ron meets the damage later, where the text stops making
//! sense (often lines further on, at the next stage), and names no field; a missing `)` is
//! at its opener, which this finds. It also splits a file's `stages` list into its items,
//! so each stage can be parsed on its own and every broken stage reported at once.

/// A bracket pair: the offsets of its opener and closer, the opener, and how many pairs
/// enclose it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    pub open: usize,
    pub close: usize,
    pub ch: u8,
    pub depth: usize,
}

/// What is wrong with the brackets: an offset and a message (and a hint).
#[derive(Debug, PartialEq)]
pub struct Unbalanced {
    pub at: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Every bracket pair of `text`, in the order they close, skipping strings, raw strings,
/// characters and comments; or where the first imbalance is.
pub fn groups(text: &str) -> Result<Vec<Group>, Unbalanced> {
    let b = text.as_bytes();
    let mut stack: Vec<(usize, u8)> = Vec::new();
    let mut out = Vec::new();
    let mut i = 0;
    let at_ident = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                let mut depth = 0;
                loop {
                    if i + 1 >= b.len() {
                        return Err(Unbalanced {
                            at: start,
                            message: "this comment is never closed".into(),
                            hint: Some("a `/*` comment ends with `*/`".into()),
                        });
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'r' if !at_ident(i) && matches!(b.get(i + 1), Some(b'#') | Some(b'"')) => {
                let start = i;
                let mut j = i + 1;
                while b.get(j) == Some(&b'#') {
                    j += 1;
                }
                if b.get(j) == Some(&b'"') {
                    let hashes = j - i - 1;
                    let mut close = String::from("\"");
                    close.push_str(&"#".repeat(hashes));
                    match text[j + 1..].find(&close) {
                        Some(k) => i = j + 1 + k + close.len(),
                        None => return Err(unclosed_string(start)),
                    }
                    continue;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(unclosed_string(start)),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'\'' => {
                // A character: 'a', '\n', '\'', '\u{1F600}'.
                let mut j = i + 1;
                if b.get(j) == Some(&b'\\') {
                    j += 2;
                    while j < b.len() && b[j] != b'\'' && j - i < 12 {
                        j += 1;
                    }
                } else if let Some(c) = text[j.min(b.len())..].chars().next() {
                    j += c.len_utf8();
                }
                if b.get(j) == Some(&b'\'') {
                    i = j;
                }
            }
            c @ (b'(' | b'[' | b'{') => stack.push((i, c)),
            c @ (b')' | b']' | b'}') => {
                let want = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match stack.pop() {
                    Some((open, o)) if o == want => out.push(Group {
                        open,
                        close: i,
                        ch: o,
                        depth: stack.len(),
                    }),
                    Some((open, o)) => {
                        let outer = stack.iter().rev().find(|(_, s)| *s == want);
                        return Err(Unbalanced {
                            at: open,
                            message: format!("this `{}` is never closed", o as char),
                            hint: Some(match outer {
                                Some(&(at, _)) => format!(
                                    "the `{}` at {} closes the `{}` at {}; close this one before it",
                                    c as char,
                                    place(text, i),
                                    want as char,
                                    place(text, at)
                                ),
                                None => format!(
                                    "the `{}` at {} comes where this one should close",
                                    c as char,
                                    place(text, i)
                                ),
                            }),
                        });
                    }
                    None => {
                        return Err(Unbalanced {
                            at: i,
                            message: format!("this `{}` closes nothing", c as char),
                            hint: Some("remove it, or open what it should close".into()),
                        })
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    match stack.last() {
        Some(&(open, o)) => Err(Unbalanced {
            at: open,
            message: format!("this `{}` is never closed", o as char),
            hint: Some("the file ends before it".into()),
        }),
        None => Ok(out),
    }
}

fn unclosed_string(at: usize) -> Unbalanced {
    Unbalanced {
        at,
        message: "this string is never closed".into(),
        hint: Some("a string ends with `\"` on the same or a later line".into()),
    }
}

fn place(text: &str, offset: usize) -> String {
    let (line, col) = crate::ron_path::line_col(text, offset);
    format!("{line}:{col}")
}

/// The byte ranges of the items of the file's `stages: [...]` list: each top-level `( … )`
/// inside it, with a `Stage` name before it if one is written.
pub fn stage_items(text: &str, groups: &[Group]) -> Vec<(usize, usize)> {
    let Some(list) = groups.iter().find(|g| {
        g.ch == b'[' && g.depth == 1 && {
            let before = text[..g.open].trim_end();
            before
                .strip_suffix(':')
                .is_some_and(|b| b.trim_end().ends_with("stages"))
        }
    }) else {
        return Vec::new();
    };
    let mut items: Vec<(usize, usize)> = groups
        .iter()
        .filter(|g| g.ch == b'(' && g.depth == 2 && g.open > list.open && g.close < list.close)
        .map(|g| {
            let name = text[..g.open]
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
                .len();
            (name, g.close + 1)
        })
        .collect();
    items.sort();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (String, String) {
        let e = groups(text).unwrap_err();
        (place(text, e.at), e.message)
    }

    #[test]
    fn a_missing_paren_is_found_at_its_opener_not_where_the_parser_stumbles() {
        let text =
            "Pipeline(stages: [\n    (name: \"a\", config: (lr: 0.1),\n    (name: \"b\"),\n])\n";
        assert_eq!(err(text), ("2:5".into(), "this `(` is never closed".into()));
        let e = groups(text).unwrap_err();
        assert!(e
            .hint
            .unwrap()
            .contains("the `]` at 4:1 closes the `[` at 1:18"));
    }

    #[test]
    fn brackets_in_strings_comments_and_chars_do_not_count() {
        let text = "Pipeline( // ( [\n /* ) /* ] */ */ description: \"(]\\\"\", x: r#\"\")\"#, c: ')', stages: [])";
        let g = groups(text).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!((g[1].ch, g[1].open), (b'(', 8));
    }

    #[test]
    fn the_file_ending_early_and_a_stray_closer_are_named() {
        assert_eq!(
            err("Pipeline(stages: [\n]"),
            ("1:9".into(), "this `(` is never closed".into())
        );
        assert_eq!(
            err("Pipeline(stages: [])\n)"),
            ("2:1".into(), "this `)` closes nothing".into())
        );
        assert_eq!(
            err("Pipeline(description: \"abc)"),
            ("1:23".into(), "this string is never closed".into())
        );
        assert_eq!(
            err("Pipeline(/* x )"),
            ("1:10".into(), "this comment is never closed".into())
        );
    }

    #[test]
    fn stage_items_are_the_parenthesized_items_of_the_stages_list() {
        let text = "Pipeline(uses: [\"a\"], stages: [\n (name: \"a\", vary: {\"x\": [(1)]}),\n Stage(name: \"b\"),\n])";
        let g = groups(text).unwrap();
        let items: Vec<&str> = stage_items(text, &g)
            .iter()
            .map(|&(a, b)| &text[a..b])
            .collect();
        assert_eq!(
            items,
            vec!["(name: \"a\", vary: {\"x\": [(1)]})", "Stage(name: \"b\")"]
        );
    }
}
