//! `pipe clean`: remove targets' materialized files and cache entries, so they rebuild.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{io, print_json, Error, Project};
use crate::cli::CleanArgs;

fn remove_file(path: &Path, removed: &mut Vec<PathBuf>, dry_run: bool) -> Result<(), Error> {
    if dry_run {
        if path.symlink_metadata().is_ok() && !removed.iter().any(|r| r == path) {
            removed.push(path.to_path_buf());
        }
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot remove {}: {e}", path.display()))),
    }
}

pub(super) fn run(p: &Project, a: &CleanArgs) -> Result<ExitCode, Error> {
    let chosen = p.select_or_targets(&a.targets)?;
    let cache = p.cache()?;
    let dry = a.dry_run;
    let mut removed = Vec::new();
    let mut entries = 0;
    for n in chosen {
        let node = &p.plan.nodes[n];
        if let Some(t) = &p.plan.def(n).target {
            // Everything its materializations wrote, files of variants since removed included.
            if dry {
                removed.extend(crate::engine::targets::materialized(&cache, &p.root, t));
            } else {
                removed.extend(
                    crate::engine::targets::unmaterialize(&cache, &p.root, t)
                        .map_err(|e| Error::Io(format!("cannot clean target {t}: {e}")))?,
                );
            }
        }
        let Some(key) = cache.last(&node.id) else {
            continue;
        };
        if let Some(t) = &p.plan.def(n).target {
            let base = p
                .root
                .join(t)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| p.root.clone());
            if let Some(entry) = cache.load_entry(&key) {
                for out in &entry.built.outputs {
                    remove_file(&base.join(&out.path), &mut removed, dry)?;
                }
            }
            remove_file(&p.root.join(t), &mut removed, dry)?;
        }
        let gone = if dry {
            cache.load_entry(&key).is_some()
        } else {
            cache
                .remove_entry(&key)
                .map_err(io("cannot remove a cache entry"))?
        };
        if gone {
            entries += 1;
        }
    }
    // The reports' index goes with the last report it links: listed as what it removes.
    if dry {
        let index = super::index::would_remove(p, &removed);
        removed.extend(index);
    } else {
        cache.save().map_err(io("cannot save the cache index"))?;
        removed.extend(super::index::refresh(p));
    }
    if a.json {
        print_json(&serde_json::json!({
            "dry_run": dry,
            "files": removed,
            "entries": entries,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry { "would remove" } else { "removed" };
    for r in &removed {
        println!("{verb} {}", r.display());
    }
    println!(
        "{} {} file(s) and {entries} cache entr{}",
        if dry { "would clean" } else { "cleaned" },
        removed.len(),
        if entries == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}
