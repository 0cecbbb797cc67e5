//! Clean-up of temp files left behind by writers that died.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Op};
use crate::{platform, temp};

/// The default age past which a temp file is removed whatever its lock
/// says (for file systems where locks do not work, such as some NFS
/// setups): one day.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// What [`cleanup_orphans`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Cleanup {
    /// Orphaned temp files removed.
    pub removed: Vec<PathBuf>,
    /// Temp files kept because their writer may still be running.
    pub kept: Vec<PathBuf>,
    /// Temp files that could not be inspected or removed, and why.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes the temp files that this crate's writers left in `dir` when they
/// died, with the default maximum age.
///
/// # Errors
///
/// [`Op::ReadDir`] if `dir` cannot be listed. Failures on single files are
/// reported in [`Cleanup::failed`].
pub fn cleanup_orphans(dir: impl AsRef<Path>) -> Result<Cleanup, Error> {
    cleanup_orphans_older_than(dir, DEFAULT_MAX_AGE)
}

/// Removes the temp files that this crate's writers left in `dir`.
///
/// Only regular files whose names carry this crate's marker are looked at;
/// nothing else is ever touched, and symlinks are never followed. One is
/// removed when its writer is gone: its lock can be taken *and* the pid in
/// its name is not running; or when it is older than `max_age`, whatever
/// the lock says. Anything else is kept.
///
/// # Errors
///
/// [`Op::ReadDir`] if `dir` cannot be listed. Failures on single files are
/// reported in [`Cleanup::failed`].
pub fn cleanup_orphans_older_than(
    dir: impl AsRef<Path>,
    max_age: Duration,
) -> Result<Cleanup, Error> {
    let dir = dir.as_ref();
    let mut report = Cleanup::default();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(Op::ReadDir, dir, e))?;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.failed.push((dir.to_path_buf(), e));
                continue;
            }
        };
        let Some(pid) = temp::parse(&entry.file_name()) else {
            continue;
        };
        let path = entry.path();
        // `file_type` does not follow symlinks: a link with our name is
        // not ours.
        match entry.file_type() {
            Ok(t) if t.is_file() => {}
            Ok(_) => continue,
            Err(e) => {
                report.failed.push((path, e));
                continue;
            }
        }
        match is_orphan(&path, pid, max_age) {
            Ok(false) => report.kept.push(path),
            Ok(true) => match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(target: "steadfast_atomicfs", path = %path.display(), "removed orphaned temp file");
                    report.removed.push(path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => report.failed.push((path, e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report.failed.push((path, e)),
        }
    }
    Ok(report)
}

/// When a temp name last changed: the later of the file's mtime and, on
/// Unix, its ctime. A commit's backup (the old file, swapped to a temp name
/// or hard-linked under one) keeps the *old file's* mtime, days old maybe,
/// but linking or renaming it sets its ctime: by the mtime alone another
/// process's clean-up would delete a live backup in the middle of a commit.
fn last_change(meta: &fs::Metadata) -> SystemTime {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = u64::try_from(meta.ctime())
            .ok()
            .map(|secs| {
                SystemTime::UNIX_EPOCH
                    + Duration::new(secs, u32::try_from(meta.ctime_nsec()).unwrap_or(0))
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        modified.max(changed)
    }
    #[cfg(not(unix))]
    {
        modified
    }
}

fn is_orphan(path: &Path, pid: u32, max_age: Duration) -> io::Result<bool> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let file = options.open(path)?;
    let age = SystemTime::now()
        .duration_since(last_change(&file.metadata()?))
        .unwrap_or_default();
    if age > max_age {
        return Ok(true);
    }
    let unlocked = match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        // No locks here: the pid alone decides.
        Err(std::fs::TryLockError::Error(_)) => true,
    };
    Ok(unlocked && !platform::process_alive(pid))
}
