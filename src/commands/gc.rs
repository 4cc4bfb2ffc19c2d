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
    let swept = cache
        .gc(&keep, a.dry_run)
        .map_err(io("garbage collection failed"))?;
    if !a.dry_run {
        cache.save().map_err(io("cannot save the cache index"))?;
    }
    let entries = swept.entries.len();
    if a.json {
        let list: Vec<serde_json::Value> = swept
            .entries
            .iter()
            .map(|(key, stage)| serde_json::json!({"key": key, "stage": stage}))
            .collect();
        print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "entries_removed": entries,
            "entries": list,
            "bytes_freed": swept.bytes,
            "entries_kept": keep.len(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let mut named = swept.entries.clone();
    named.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    for (key, stage) in &named {
        let short = &key[..key.len().min(12)];
        match stage {
            Some(s) => println!("{verb} {s} (entry {short})"),
            None => println!("{verb} an unreadable entry {short}"),
        }
    }
    println!(
        "{verb} {entries} unreachable entr{}, {} {}; kept {}",
        if entries == 1 { "y" } else { "ies" },
        if a.dry_run { "would free" } else { "freed" },
        size(swept.bytes),
        keep.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Bytes as a person reads them, with the exact count: `3.2 MiB (3355443 bytes)`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}
