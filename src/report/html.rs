//! A report as one self-contained HTML page (its markdown rendered by pulldown-cmark, every
//! image inlined as a data URI, so the page can be mailed or handed in alone), and the
//! index of every built report: one row per study with its headline figures.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};
use serde::{Deserialize, Serialize};

/// Beside a report's figures: what the index shows of it.
pub const HEADLINE: &str = "headline.json";

/// A report's headline: its base against its best variant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Headline {
    pub title: String,
    pub family: String,
    pub variants: usize,
    /// The fewest seeds of any variant.
    pub seeds: usize,
    pub base: Option<Figure>,
    /// The best variant that learned, by mean best validation accuracy.
    pub best: Option<Figure>,
    /// Variants with a seed that diverged or did not learn.
    #[serde(default)]
    pub failures: Vec<Failed>,
}

/// A variant with failed seeds: how many of how many.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Failed {
    pub label: String,
    pub seeds_failed: usize,
    pub seeds: usize,
}

/// A variant's best validation accuracy, over its seeds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Figure {
    pub label: String,
    /// As the report's table writes it (`33.9% ± 1.6`).
    pub best_val_acc: String,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5;color:#222}img{max-width:100%;height:auto}\
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem;display:block;overflow-x:auto}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}th{background:#f3f3f3}\
code{background:#f6f6f6;padding:0 .2rem}h1{font-size:1.6rem}h2{margin-top:2rem}";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

fn mime(path: &str) -> Option<&'static str> {
    let ext = path.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        _ => return None,
    })
}

/// The page of the markdown `md`, whose relative image paths are under `dir`. An image that
/// cannot be read is an error: a page that silently lost a figure is not the report.
pub fn page(md: &str, title: &str, dir: &Path) -> anyhow::Result<String> {
    let mut failed: Option<anyhow::Error> = None;
    let events = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !dest_url.contains(':') => {
            let inline = mime(&dest_url)
                .ok_or_else(|| anyhow::anyhow!("image `{dest_url}` is of no known type"))
                .and_then(|m| {
                    let bytes = std::fs::read(dir.join(dest_url.as_ref()))
                        .map_err(|e| anyhow::anyhow!("image `{dest_url}`: {e}"))?;
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    Ok(format!("data:{m};base64,{data}"))
                });
            let dest_url = match inline {
                Ok(uri) => CowStr::from(uri),
                Err(e) => {
                    failed.get_or_insert(e);
                    dest_url
                }
            };
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        // A link to another report goes to its page.
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !dest_url.contains(':') && dest_url.ends_with(".md") => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::from(format!("{}.html", &dest_url[..dest_url.len() - 3])),
            title,
            id,
        }),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, events);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(document(title, &body))
}

/// One built report for the index: its page's path relative to the index, and headline.
pub struct Entry {
    pub href: String,
    pub headline: Headline,
}

/// `reports/index.html`: every built study, grouped by family in the order given.
pub fn index(entries: &[Entry]) -> String {
    let mut body = String::from("<h1>Studies</h1>\n");
    let _ = writeln!(
        body,
        "<p>{} built report{}. Each row compares the base model with the best variant that \
         learned, by best validation accuracy (mean ± sd over seeds where there are several); \
         the report says whether a difference is significant, or untested with one seed.</p>",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    body.push_str(
        "<table>\n<thead><tr><th>family</th><th>study</th><th>base: best val acc</th>\
         <th>best variant: best val acc</th><th>variants</th><th>seeds</th><th>status</th>\
         </tr></thead>\n<tbody>\n",
    );
    for e in entries {
        let h = &e.headline;
        let figure = |f: &Option<Figure>, label: bool| match f {
            None => "—".to_string(),
            Some(f) if label => format!(
                "<code>{}</code>: {}",
                escape(&f.label),
                escape(&f.best_val_acc)
            ),
            Some(f) => escape(&f.best_val_acc),
        };
        let status = if h.failures.is_empty() {
            "all learned".to_string()
        } else {
            let names: Vec<String> = h
                .failures
                .iter()
                .map(|f| {
                    format!(
                        "<code>{}</code>: {} of {} seed{} failed",
                        escape(&f.label),
                        f.seeds_failed,
                        f.seeds,
                        if f.seeds == 1 { "" } else { "s" }
                    )
                })
                .collect();
            names.join("; ")
        };
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&h.family),
            escape(&e.href),
            escape(&h.title),
            figure(&h.base, false),
            figure(&h.best, true),
            h.variants,
            h.seeds,
            status
        );
    }
    body.push_str("</tbody>\n</table>\n");
    document("Studies", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_inlined_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/a.svg"), "<svg/>").unwrap();
        let html = page(
            "# T & U\n\n![a](s/a.svg)\n\n| x |\n|---|\n| 1 |\n",
            "T & U",
            dir.path(),
        )
        .unwrap();
        assert!(html.contains("<title>T &amp; U</title>"), "{html}");
        assert!(
            html.contains("src=\"data:image/svg+xml;base64,PHN2Zy8+\""),
            "{html}"
        );
        assert!(html.contains("<table>"), "{html}");
        let linked = page(
            "[m](mlp/momentum.md) [w](https://x.org/a.md)",
            "T",
            dir.path(),
        )
        .unwrap();
        assert!(linked.contains("href=\"mlp/momentum.html\""), "{linked}");
        assert!(linked.contains("href=\"https://x.org/a.md\""), "{linked}");
        let e = page("![b](s/b.svg)", "T", dir.path()).unwrap_err();
        assert!(e.to_string().contains("image `s/b.svg`"), "{e}");
    }
}
