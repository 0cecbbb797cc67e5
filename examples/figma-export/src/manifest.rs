//! What the last complete export wrote, so that the next one can remove
//! what it no longer writes (renamed or deleted icons) and nothing else.
//!
//! `<out>/.figma-export-manifest.json`: `{"files": ["icons/a.svg", ...]}`,
//! relative paths, written atomically after a complete export. Only paths
//! listed there are ever removed, only if they are still regular files, and
//! never one this run wrote.

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The manifest's name in the output directory.
pub const MANIFEST: &str = ".figma-export-manifest.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    files: BTreeSet<PathBuf>,
}

/// What an earlier complete export wrote: nothing when there is no
/// manifest. A manifest that cannot be read, or a listed path that is not a
/// plain relative path inside `out`, is ignored (and said so), never
/// trusted.
pub fn read(out: &Path) -> (BTreeSet<PathBuf>, Option<String>) {
    let path = out.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (BTreeSet::new(), None),
        Err(e) => {
            return (
                BTreeSet::new(),
                Some(format!("cannot read {}: {e}", path.display())),
            )
        }
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(manifest) => {
            let (safe, unsafe_): (BTreeSet<PathBuf>, BTreeSet<PathBuf>) = manifest
                .files
                .into_iter()
                .partition(|p| is_plain_relative(p));
            let warning = (!unsafe_.is_empty()).then(|| {
                format!(
                    "{} ignores {} paths that are not inside the output directory",
                    path.display(),
                    unsafe_.len()
                )
            });
            (safe, warning)
        }
        Err(e) => (
            BTreeSet::new(),
            Some(format!(
                "{} is not a manifest ({e}); nothing stale is removed",
                path.display()
            )),
        ),
    }
}

/// Writes the manifest of a complete export, atomically.
///
/// # Errors
///
/// The atomic write's.
pub fn write(out: &Path, files: &BTreeSet<PathBuf>) -> Result<(), steadfast_atomicfs::Error> {
    let manifest = Manifest {
        files: files.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    steadfast_atomicfs::write(out.join(MANIFEST), bytes)
}

/// Removes the files the earlier export wrote that this one did not:
/// regular files only (a directory or a link the user put there is left).
/// Returns what was removed, and what could not be.
pub fn remove_stale(
    out: &Path,
    earlier: &BTreeSet<PathBuf>,
    now: &BTreeSet<PathBuf>,
) -> (Vec<PathBuf>, Vec<(PathBuf, io::Error)>) {
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    for stale in earlier.difference(now) {
        let path = out.join(stale);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed.push(stale.clone());
                    // An emptied folder the export made goes too (never
                    // `out` itself, never a folder with anything left).
                    let mut dir = stale.parent();
                    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                        if std::fs::remove_dir(out.join(d)).is_err() {
                            break;
                        }
                        dir = d.parent();
                    }
                }
                Err(e) => failed.push((stale.clone(), e)),
            },
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => failed.push((stale.clone(), e)),
        }
    }
    (removed, failed)
}

fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_trusted() {
        assert!(is_plain_relative(Path::new("icons/a.svg")));
        for bad in ["", "/etc/passwd", "../x", "icons/../../x", "./a"] {
            assert!(!is_plain_relative(Path::new(bad)), "{bad}");
        }
    }
}
