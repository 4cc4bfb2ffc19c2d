//! `pipe outputs TARGET` and `pipe log TARGET`: a stage's output files and its log, from
//! the cache, so nobody reads `cache/entries/` by hand.

use std::process::ExitCode;

use super::results::{held, one, Held};
use super::{Error, Project};

/// The outputs the cache holds for `name`, saying on stderr when they are not current.
fn outputs_of(
    p: &Project,
    name: &str,
) -> Result<(usize, Held, crate::engine::cache::Cache), Error> {
    // A stage with variants has no one set of outputs: which one is asked, not the base's
    // handed out in silence.
    let several = (0..p.plan.nodes.len())
        .filter(|&n| p.plan.def(n).id == name)
        .count()
        > 1;
    if several {
        let listed = p.plan.variant_list(name).unwrap_or_default();
        return Err(Error::Usage(format!(
            "`{name}` has {listed}; name one (`{name}[base]` for the base)"
        )));
    }
    let n = one(p, name)?;
    let cache = p.cache()?;
    let Some((_, Some(h))) = held(p, &cache, &[n]).into_iter().next() else {
        return Err(Error::Usage(format!(
            "`{}` has not been built yet: `pipe build {}`",
            p.plan.nodes[n].id, p.plan.nodes[n].id
        )));
    };
    if h.stale {
        eprintln!(
            "note: these are the outputs of an earlier version of `{}` (it is stale: `pipe explain {}` says why)",
            p.plan.nodes[n].id, p.plan.nodes[n].id
        );
    }
    Ok((n, h, cache))
}

/// One line per output file: its name and the path of its bytes (read-only, shared by
/// every key that produced the same bytes).
pub(super) fn outputs(p: &Project, name: &str) -> Result<ExitCode, Error> {
    let (n, h, cache) = outputs_of(p, name)?;
    let cache = std::mem::ManuallyDrop::new(cache);
    // Whoever reads these paths reads past pipe: each is checked against its hash first,
    // and a damaged one is named instead of handed out.
    let damaged: Vec<String> = h
        .built
        .outputs
        .iter()
        .filter_map(|o| cache.intact(o).err())
        .collect();
    if !damaged.is_empty() {
        for d in &damaged {
            eprintln!("error: `{}`: {d}", p.plan.nodes[n].id);
        }
        eprintln!("{}", super::results::REMAKE);
        return Ok(ExitCode::from(1));
    }
    for o in &h.built.outputs {
        println!("{}\t{}", o.path, cache.object_path(&o.hash).display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn log(p: &Project, name: &str) -> Result<ExitCode, Error> {
    let (n, h, cache) = outputs_of(p, name)?;
    let cache = std::mem::ManuallyDrop::new(cache);
    match cache.load_entry(&h.built.key) {
        Some(e) if !e.log.is_empty() => print!("{}", e.log),
        Some(_) => eprintln!("`{}` logged nothing", p.plan.nodes[n].id),
        None => {
            return Err(Error::Io(format!(
                "the entry of `{}` cannot be read",
                p.plan.nodes[n].id
            )))
        }
    }
    Ok(ExitCode::SUCCESS)
}
