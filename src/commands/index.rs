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
/// fatal: the index is made from the reports, which are in place. Returns the index pages
/// it removed (nothing built there any more).
pub(super) fn refresh(p: &Project) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for (path, mut entries) in indexes(p, &|page| page.is_file()) {
        if entries.is_empty() {
            // Nothing built there (any more): no page that links nothing.
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("warning: cannot remove {}: {e}", path.display()),
            }
            continue;
        }
        entries.sort_by(|a, b| a.href.cmp(&b.href));
        if let Err(e) = write_atomic(&path, index(&entries).as_bytes()) {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
    removed
}

/// The index pages that [`refresh`] would remove once `gone` (files a clean removes) are
/// gone: what `clean -n` lists besides them.
pub(super) fn would_remove(p: &Project, gone: &[PathBuf]) -> Vec<PathBuf> {
    let exists = |page: &Path| page.is_file() && !gone.iter().any(|g| g == page);
    indexes(p, &exists)
        .into_iter()
        .filter(|(path, entries)| entries.is_empty() && path.is_file())
        .map(|(path, _)| path)
        .collect()
}

/// Each index page to write, with the built reports it links (`exists`: whether a report's
/// page is there); an index that a report named `index.md` stands for is left out.
fn indexes(p: &Project, exists: &dyn Fn(&Path) -> bool) -> Vec<(PathBuf, Vec<Entry>)> {
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
        if !exists(&p.root.join(&page)) {
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
    folders
        .into_iter()
        // A report named `index.md` in that folder has this page already.
        .filter(|(_, entries)| !entries.iter().any(|e| e.href == FILE))
        .map(|(top, entries)| (p.root.join(&top).join(FILE), entries))
        .collect()
}
