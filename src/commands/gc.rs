//! `pipe gc`: remove what no current pipeline reaches.

use std::collections::HashSet;
use std::process::ExitCode;

use super::{io, print_json, Error, Project};
use crate::cli::GcArgs;
use crate::engine::assess::{assess, Freshness};

pub(super) fn run(p: &Project, a: &GcArgs) -> Result<ExitCode, Error> {
    let cache = p.cache()?;
    let all: Vec<usize> = (0..p.plan.nodes.len()).collect();
    // Reached: the current key of every fresh stage, and the last build of every current
    // stage (so a stage waiting on an edited input keeps its previous result until rebuilt).
    let mut keep: HashSet<String> = HashSet::new();
    for (n, s) in assess(&p.plan, &cache, &p.root, &all, &HashSet::new()) {
        if let Freshness::Fresh(e) = s {
            keep.insert(e.key);
        }
        if let Some(k) = cache.last(&p.plan.nodes[n].id) {
            keep.insert(k);
        }
    }
    let (entries, bytes) = cache
        .gc(&keep, a.dry_run)
        .map_err(io("garbage collection failed"))?;
    if !a.dry_run {
        cache.save().map_err(io("cannot save the cache index"))?;
    }
    if a.json {
        print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "entries_removed": entries,
            "bytes_freed": bytes,
            "entries_kept": keep.len(),
        }));
    } else {
        println!(
            "{} {entries} unreachable entr{}, {} {bytes} bytes; kept {}",
            if a.dry_run { "would remove" } else { "removed" },
            if entries == 1 { "y" } else { "ies" },
            if a.dry_run { "would free" } else { "freed" },
            keep.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
