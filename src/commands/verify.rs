//! `pipe verify [--repair]`: re-hash the whole cache and say what is damaged.

use std::process::ExitCode;

use super::{io, Error, Project};
use crate::engine::verify::verify;

pub(super) fn run(p: &Project, repair: bool) -> Result<ExitCode, Error> {
    let cache = p.cache()?;
    let clock = std::time::Instant::now();
    let r = verify(&cache, repair);
    for d in &r.damage {
        let rel = d.path.strip_prefix(&p.root).unwrap_or(&d.path);
        println!("{}: {}", d.what, rel.display());
        for (stage, key, path) in &d.users {
            println!(
                "    used by {stage} ({path}, key {})",
                &key[..12.min(key.len())]
            );
        }
    }
    if repair {
        cache.save().map_err(io("cannot save the cache index"))?;
    }
    println!(
        "verified {} objects ({:.1} MB) and {} entries in {:.1} s: {} damaged{}",
        r.objects,
        r.bytes as f64 / 1e6,
        r.entries,
        clock.elapsed().as_secs_f64(),
        r.damage.len(),
        if repair && !r.damage.is_empty() {
            format!(
                "; removed {} files and entries, the next build rebuilds their stages",
                r.repaired
            )
        } else if !r.damage.is_empty() {
            "; `pipe verify --repair` drops them so the next build rebuilds their stages"
                .to_string()
        } else {
            String::new()
        }
    );
    Ok(if r.damage.is_empty() || repair {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
