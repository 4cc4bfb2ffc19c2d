//! A stage's declared `deps`: files and folders of the project that its work reads but no
//! stage makes (the script a `command` stage runs, a lookup table). Their content is part
//! of the key, as DVC's `deps` and Bazel's `srcs`: an edit reruns the stage, a `touch` does
//! not (the memo re-hashes a file whose stamp changed and finds the same bytes).

use std::collections::BTreeMap;
use std::path::Path;

use crate::stage::KeyCtx;

/// Each file under `deps` (a file, or every file in a folder, recursively): its path from
/// the project root, with `/`, → its blake3.
pub fn hashes(
    ctx: &KeyCtx,
    root: &Path,
    deps: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for dep in deps {
        let path = root.join(dep);
        let meta =
            std::fs::metadata(&path).map_err(|e| format!("deps: `{dep}`: {}", missing(&e)))?;
        let files: Vec<std::path::PathBuf> = if meta.is_dir() {
            let mut v = Vec::new();
            for e in walkdir::WalkDir::new(&path)
                .into_iter()
                .filter_map(|e| e.ok())
            {
                if e.file_type().is_dir() {
                    // A file added to a folder, even an empty one, is a change the no-op
                    // shortcut must see.
                    ctx.memo.watch(e.path());
                } else if e.file_type().is_file() {
                    v.push(e.into_path());
                }
            }
            v.sort();
            v
        } else {
            vec![path]
        };
        for f in files {
            let rel = f
                .strip_prefix(root)
                .unwrap_or(&f)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let hash = ctx
                .hash_file(&f)
                .map_err(|e| format!("deps: cannot read `{rel}`: {e}"))?;
            out.insert(rel, hash);
        }
    }
    Ok(out)
}

fn missing(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "no such file or folder in the project".into()
    } else {
        e.to_string()
    }
}
