//! A folder sealed with the blake3 of each of its files, the seal written last: a reader
//! can tell a whole folder from one damaged since (a flipped byte keeps size and mtime, so
//! nothing else would show it). Checkpoints in `scratch/` are sealed; a damaged one is
//! discarded rather than resumed, and `pipe verify` checks every seal in `scratch/`.

use std::collections::BTreeMap;
use std::path::Path;

/// The seal, beside the files it names.
pub const FILE: &str = "SEAL.json";

/// Writes `dir`'s seal: every file in it (not in sub-folders) with its blake3.
pub fn seal(dir: &Path) -> anyhow::Result<()> {
    let mut sums = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_file() && name != FILE {
            sums.insert(
                name,
                blake3::hash(&std::fs::read(e.path())?).to_hex().to_string(),
            );
        }
    }
    crate::stage::replace_file(&dir.join(FILE), serde_json::to_vec_pretty(&sums)?)
}

/// Whether `dir` is as sealed: `Err` names the first file that differs, or why the seal
/// cannot be read.
pub fn check(dir: &Path) -> Result<(), String> {
    let seal = std::fs::read(dir.join(FILE)).map_err(|_| format!("{FILE} is missing"))?;
    let sums: BTreeMap<String, String> =
        serde_json::from_slice(&seal).map_err(|_| format!("{FILE} does not parse"))?;
    for (name, sum) in &sums {
        match std::fs::read(dir.join(name)) {
            Err(e) => return Err(format!("{name} cannot be read ({e})")),
            Ok(b) if blake3::hash(&b).to_hex().as_str() != sum => {
                return Err(format!("{name} is damaged (its blake3 no longer matches)"))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_folder_checks_until_a_byte_of_it_changes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.bin"), b"weights").unwrap();
        std::fs::write(d.path().join("state.json"), b"{}").unwrap();
        assert!(check(d.path()).unwrap_err().contains("missing"));
        seal(d.path()).unwrap();
        assert_eq!(check(d.path()), Ok(()));
        std::fs::write(d.path().join("model.bin"), b"weighTs").unwrap();
        assert_eq!(
            check(d.path()),
            Err("model.bin is damaged (its blake3 no longer matches)".into())
        );
        std::fs::remove_file(d.path().join("model.bin")).unwrap();
        assert!(check(d.path())
            .unwrap_err()
            .starts_with("model.bin cannot be read"));
    }
}
