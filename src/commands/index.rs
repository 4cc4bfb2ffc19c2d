//! `reports/index.html`: every report of the pipelines that is built, with its headline
//! (one index per top folder that report targets are in). Rewritten after each build and
//! clean from what is on disk, so it links exactly the pages that exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Project;
use crate::engine::cache::write_atomic;
use crate::report::html::{index, Entry, Headline, HEADLINE};

const FILE: &str = "index.html";

/// Rewrites the index of every folder holding a report target; a failure is said, not
/// fatal: the index is made from the reports, which are in place.
pub(super) fn refresh(p: &Project) {
    let mut folders: BTreeMap<PathBuf, Vec<Entry>> = BTreeMap::new();
    for (target, n) in p.plan.targets() {
        if !["report", "conclusions"].contains(&p.plan.def(n).kind.name()) {
            continue;
        }
        let t = Path::new(target);
        let Some(top) = t.components().next().map(|c| PathBuf::from(c.as_os_str())) else {
            continue;
        };
        let entries = folders.entry(top.clone()).or_default();
        let page = t.with_extension("html");
        let headline = p.root.join(t.with_extension("")).join(HEADLINE);
        if !p.root.join(&page).is_file() {
            continue;
        }
        let Some(headline) = std::fs::read(&headline)
            .ok()
            .and_then(|b| serde_json::from_slice::<Headline>(&b).ok())
        else {
            continue;
        };
        let href = page.strip_prefix(&top).unwrap_or(&page);
        entries.push(Entry {
            href: href.to_string_lossy().replace('\\', "/"),
            headline,
        });
    }
    for (top, mut entries) in folders {
        let path = p.root.join(&top).join(FILE);
        // A report named `index.md` in that folder has this page already.
        if entries.iter().any(|e| e.href == FILE) {
            continue;
        }
        if entries.is_empty() {
            // Nothing built there (any more): no page that links nothing.
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: cannot remove {}: {e}", path.display());
                }
            }
            continue;
        }
        entries.sort_by(|a, b| a.href.cmp(&b.href));
        if let Err(e) = write_atomic(&path, index(&entries).as_bytes()) {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
}
