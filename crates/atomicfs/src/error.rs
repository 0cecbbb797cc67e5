//! Errors that name the operation and the path, and say what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The step of an atomic write that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Checking the free space before writing.
    CheckSpace,
    /// Creating the temp file.
    Create,
    /// Writing the temp file.
    Write,
    /// Flushing the temp file to the device (`fsync`).
    Sync,
    /// Giving the temp file its final permissions.
    SetPermissions,
    /// Renaming the temp file over the target.
    Rename,
    /// Flushing the directory, so the rename survives a crash.
    SyncDir,
    /// Removing a temp file.
    Remove,
    /// Listing a directory for orphaned temp files.
    ReadDir,
    /// Putting the old file back after a failed directory flush.
    Restore,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CheckSpace => "check free space for",
            Self::Create => "create temp file",
            Self::Write => "write",
            Self::Sync => "flush to disk",
            Self::SetPermissions => "set permissions of",
            Self::Rename => "rename into place",
            Self::SyncDir => "flush directory",
            Self::Remove => "remove",
            Self::ReadDir => "list directory",
            Self::Restore => "restore the old file at",
        })
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not enough space (or quota) on the file system: checked before
    /// writing, or `ENOSPC` / `EDQUOT` met while writing, flushing or
    /// closing.
    InsufficientSpace,
    /// Flushing to the device failed. After such an error the kernel may
    /// have dropped the data, so the write is abandoned, never retried.
    SyncFailed,
    /// Permission denied.
    PermissionDenied,
    /// The directory does not exist.
    NotFound,
    /// Any other I/O error.
    Other,
}

/// A failed atomic write: which step, on which path, and why.
///
/// Whatever the step, the target still holds exactly its old bytes (or
/// still does not exist); the one exception is reported by
/// [`is_in_place`](Error::is_in_place).
#[derive(Debug)]
pub struct Error {
    op: Op,
    path: PathBuf,
    target: Option<PathBuf>,
    kind: ErrorKind,
    space: Option<(u64, u64)>,
    in_place: bool,
    kept: Option<PathBuf>,
    source: Option<io::Error>,
}

impl Error {
    /// An error of `op` on `path`, classified from the I/O error.
    pub fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let kind = if is_out_of_space(&source) {
            ErrorKind::InsufficientSpace
        } else if matches!(op, Op::Sync | Op::SyncDir) {
            ErrorKind::SyncFailed
        } else {
            match source.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Other,
            }
        };
        Self {
            op,
            path: path.into(),
            target: None,
            kind,
            space: None,
            in_place: false,
            kept: None,
            source: Some(source),
        }
    }

    /// Not enough space to write `needed` bytes to `path`: `available` left.
    pub fn insufficient_space(
        op: Op,
        path: impl Into<PathBuf>,
        needed: u64,
        available: u64,
    ) -> Self {
        Self {
            op,
            path: path.into(),
            target: None,
            kind: ErrorKind::InsufficientSpace,
            space: Some((needed, available)),
            in_place: false,
            kept: None,
            source: None,
        }
    }

    pub(crate) fn with_space(mut self, needed: u64, available: u64) -> Self {
        self.space = Some((needed, available));
        self
    }

    /// Names the file the write was for, when the step worked on another
    /// path (the temp file, the directory).
    pub(crate) fn for_target(mut self, target: &Path) -> Self {
        if self.path != target {
            self.target = Some(target.to_path_buf());
        }
        self
    }

    /// Marks a failed directory flush that could not be undone: the new
    /// bytes are at the target.
    pub(crate) fn renamed(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Marks where the old bytes were kept when they could not be put back.
    pub(crate) fn kept_at(mut self, path: PathBuf) -> Self {
        self.kept = Some(path);
        self
    }

    /// Whether the new bytes ended up at the target despite the error.
    /// Only a failed directory flush whose rename could not be undone does
    /// that (hard links unsupported, or the roll-back itself failed); every
    /// other error leaves the target exactly as it was.
    pub fn is_in_place(&self) -> bool {
        self.in_place
    }

    /// Where the target's old bytes are, when the new bytes are in place
    /// and the old ones could not be put back: they are never deleted, and
    /// this is the only copy. Move it back by hand if you want them.
    pub fn kept_old_file(&self) -> Option<&Path> {
        self.kept.as_deref()
    }

    /// The file the write was for, when [`path`](Self::path) is another
    /// (the temp file, the directory).
    pub fn target(&self) -> Option<&Path> {
        self.target.as_deref()
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The step that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The file or directory the step was working on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For [`ErrorKind::InsufficientSpace`]: the bytes needed (payload plus
    /// margin) and the bytes available to this user, when known.
    pub fn space(&self) -> Option<(u64, u64)> {
        self.space
    }

    /// Whether trying again later may succeed: out of space (after freeing
    /// some) and passing I/O failures. A failed flush is not: the data may
    /// be lost, and the caller must produce it again.
    pub fn is_recoverable(&self) -> bool {
        matches!(self.kind, ErrorKind::InsufficientSpace | ErrorKind::Other)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What: the step and the file it was for; via which path; why.
        let what = match &self.target {
            Some(target) => format!(
                "{} {} (at {})",
                self.op,
                target.display(),
                self.path.display()
            ),
            None => format!("{} {}", self.op, self.path.display()),
        };
        let cause = match &self.source {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        match (self.kind, self.space) {
            (ErrorKind::InsufficientSpace, Some((needed, available))) => write!(
                f,
                "not enough space to {what}: {} needed, {} available; free some space or write elsewhere",
                Bytes(needed),
                Bytes(available)
            ),
            (ErrorKind::InsufficientSpace, None) => write!(
                f,
                "not enough space to {what}{cause}; free some space or write elsewhere"
            ),
            (ErrorKind::SyncFailed, _) if self.in_place => {
                write!(f, "could not {what}{cause}; the new file is in place but may not survive a power cut")?;
                if let Some(kept) = &self.kept {
                    write!(
                        f,
                        ", and the old file could not be put back: it is kept at {}",
                        kept.display()
                    )?;
                }
                f.write_str(" (check the device)")
            }
            (ErrorKind::SyncFailed, _) => write!(
                f,
                "could not {what}{cause}; the data may not be on disk, so the write was abandoned (check the device)"
            ),
            (ErrorKind::PermissionDenied, _) => write!(
                f,
                "could not {what}{cause}; check the directory's permissions"
            ),
            (ErrorKind::NotFound, _) => write!(
                f,
                "could not {what}{cause}; create the directory first"
            ),
            _ => write!(f, "could not {what}{cause}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        let kind = match error.kind {
            ErrorKind::InsufficientSpace => io::ErrorKind::StorageFull,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            _ => error
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, error)
    }
}

/// `ENOSPC` or `EDQUOT`.
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        return true;
    }
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        let errno = rustix::io::Errno::from_raw_os_error(code);
        return errno == rustix::io::Errno::NOSPC || errno == rustix::io::Errno::DQUOT;
    }
    false
}

/// Bytes for people: `512 B`, `4.0 KiB`, `1.2 GiB`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_recognised_at_any_step() {
        let e = Error::io(Op::Write, "/out/a.png", io::Error::from_raw_os_error(28));
        assert_eq!(e.kind(), ErrorKind::InsufficientSpace);
        assert!(e.is_recoverable());
        assert_eq!(
            e.to_string(),
            "not enough space to write /out/a.png: No space left on device (os error 28); free some space or write elsewhere"
        );
        let e = Error::insufficient_space(Op::CheckSpace, "/out/a.png", 3 << 30, 1536);
        assert_eq!(
            e.to_string(),
            "not enough space to check free space for /out/a.png: 3.0 GiB needed, 1.5 KiB available; free some space or write elsewhere"
        );
    }

    #[test]
    fn a_failed_flush_is_fatal() {
        let e = Error::io(Op::Sync, "/out/a.tmp", io::Error::from_raw_os_error(5));
        assert_eq!(e.kind(), ErrorKind::SyncFailed);
        assert!(!e.is_recoverable());
        assert!(e.to_string().contains("abandoned"), "{e}");
    }

    #[test]
    fn display_names_the_target_the_step_and_the_cause() {
        let e = Error::io(
            Op::Sync,
            "/out/.a.png.sfatomic-1-00.tmp",
            io::Error::from_raw_os_error(5),
        )
        .for_target(Path::new("/out/a.png"));
        assert_eq!(
            e.to_string(),
            "could not flush to disk /out/a.png (at /out/.a.png.sfatomic-1-00.tmp): Input/output error (os error 5); the data may not be on disk, so the write was abandoned (check the device)"
        );
        assert_eq!(e.target(), Some(Path::new("/out/a.png")));
        let e = Error::io(Op::Create, "/nope/a.png", io::ErrorKind::NotFound.into())
            .for_target(Path::new("/nope/a.png"));
        assert_eq!(e.target(), None, "the same path is not named twice");
        assert_eq!(
            e.to_string(),
            "could not create temp file /nope/a.png: entity not found; create the directory first"
        );
    }
}
