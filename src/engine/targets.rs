//! Writing a target's files into the project, and remembering what was written: a target's
//! outputs change from build to build (a variant removed takes its plot with it), so each
//! materialization removes what the previous one of that target wrote and no longer
//! produces, and `pipe clean` removes all of it. The record is a manifest per target in
//! `cache/targets/`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::{write_atomic, Built, Cache};

#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    target: String,
    /// Paths relative to the project root.
    files: BTreeSet<String>,
}

fn manifest_path(cache: &Cache, target: &str) -> PathBuf {
    let name = blake3::hash(target.as_bytes()).to_hex();
    cache
        .dir
        .join("targets")
        .join(format!("{}.json", &name[..32]))
}

fn read_manifest(cache: &Cache, target: &str) -> Manifest {
    fs::read(manifest_path(cache, target))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The folder a target's outputs are laid out in: the target's own folder.
fn base(root: &Path, target: &str) -> PathBuf {
    root.join(target)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf())
}

/// Refuses a path under `root` that passes through a symbolic link (or is one): a target
/// is written inside the project, never wherever a link points.
fn no_symlink(root: &Path, path: &Path) -> io::Result<()> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| io::Error::other(format!("`{}` is outside the project", path.display())))?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(io::Error::other(format!(
                "`{}` is a symbolic link; targets are not written through links",
                at.strip_prefix(root).unwrap_or(&at).display()
            )));
        }
    }
    Ok(())
}

/// Removes `rel` (under `root`) and then its parent folders as long as they are empty, up to
/// `stop`.
fn remove_with_empty_parents(root: &Path, rel: &str, stop: &Path) -> io::Result<bool> {
    let path = root.join(rel);
    let removed = match fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(removed)
}

/// Copies an entry's outputs next to `target` (a path under `root`), laid out relative to
/// the target's folder (files already identical are left alone), then removes the files the
/// previous materialization of `target` wrote that this one does not. A damaged object is
/// an error of kind `InvalidData`: the build drops it and rebuilds its stage.
pub fn materialize(
    cache: &Cache,
    entry: &Built,
    root: &Path,
    target: &str,
) -> io::Result<Vec<PathBuf>> {
    let base_dir = base(root, target);
    let mut written = Vec::new();
    let mut files = BTreeSet::new();
    for out in &entry.outputs {
        let to = base_dir.join(&out.path);
        no_symlink(root, &to)?;
        let same = fs::metadata(&to).is_ok_and(|m| m.len() == out.size)
            && cache.memo.hash_file(&to).is_ok_and(|h| h == out.hash);
        if !same {
            let bytes = fs::read(cache.object_path(&out.hash))?;
            // Read in full anyway: a damaged object is never copied into the project.
            if blake3::hash(&bytes).to_hex().as_str() != out.hash {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the cached object for `{}` is corrupt", out.path),
                ));
            }
            write_atomic(&to, &bytes)?;
            cache.memo.record(&to, &out.hash)?;
        }
        if let Ok(rel) = to.strip_prefix(root) {
            files.insert(rel.to_string_lossy().replace('\\', "/"));
        }
        written.push(to);
    }
    // Interrupted copies leave their temporary files beside the files they were writing.
    let dirs: BTreeSet<&Path> = written.iter().filter_map(|p| p.parent()).collect();
    for d in dirs {
        super::cache::remove_stale_tmp_files(d, &[], 1);
    }
    let old = read_manifest(cache, target);
    for stale in old.files.difference(&files) {
        remove_with_empty_parents(root, stale, &base_dir)?;
    }
    if old.files != files {
        let path = manifest_path(cache, target);
        fs::create_dir_all(path.parent().expect("manifest has a parent"))?;
        let manifest = Manifest {
            target: target.to_string(),
            files,
        };
        write_atomic(&path, &serde_json::to_vec_pretty(&manifest)?)?;
    }
    Ok(written)
}

/// Removes every file the last materialization of `target` wrote, and its record; returns
/// the paths removed.
/// The files the target's last materialization wrote that are still there: what
/// [`unmaterialize`] would remove (`clean --dry-run`).
pub fn materialized(cache: &Cache, root: &Path, target: &str) -> Vec<PathBuf> {
    read_manifest(cache, target)
        .files
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

pub fn unmaterialize(cache: &Cache, root: &Path, target: &str) -> io::Result<Vec<PathBuf>> {
    let old = read_manifest(cache, target);
    let base_dir = base(root, target);
    let mut removed = Vec::new();
    for f in &old.files {
        if remove_with_empty_parents(root, f, &base_dir)? {
            removed.push(root.join(f));
        }
    }
    match fs::remove_file(manifest_path(cache, target)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(removed)
}
