//! What can go wrong, and what to do about it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The process holding a checkpoint's lock, as it wrote itself into the
/// lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
    /// When it took the lock.
    pub started_at: SystemTime,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write!(
            f,
            "pid {} on {} (since unix time {secs})",
            self.pid, self.host
        )
    }
}

/// A failed checkpoint operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another run holds the checkpoint's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, when the lock file says.
        holder: Option<Holder>,
    },
    /// Reading, appending or removing a checkpoint file failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a snapshot failed (atomically: the old one is intact).
    Persist(steadfast_atomicfs::Error),
    /// A configuration or state could not be serialized.
    Serialize(serde_json::Error),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn config(source: serde_json::Error) -> Self {
        Self::Serialize(source)
    }

    /// Whether trying again later may succeed: the other run finishes, the
    /// disk gets space. A state that does not serialize will not.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Locked { .. } | Self::Io { .. } => true,
            Self::Persist(e) => e.is_recoverable(),
            Self::Serialize(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked { path, holder: Some(holder) } => write!(
                f,
                "another run ({holder}) is using this checkpoint ({}); wait for it to finish, or stop it",
                path.display()
            ),
            Self::Locked { path, holder: None } => write!(
                f,
                "another run is using this checkpoint ({}); wait for it to finish, or stop it",
                path.display()
            ),
            Self::Io { what, path, source } => {
                write!(f, "could not {what} {}: {source}", path.display())
            }
            Self::Persist(e) => write!(f, "could not save the checkpoint: {e}"),
            Self::Serialize(e) => write!(f, "could not serialize the checkpoint's state: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Persist(e) => Some(e),
            Self::Serialize(e) => Some(e),
            Self::Locked { .. } => None,
        }
    }
}

impl From<steadfast_atomicfs::Error> for Error {
    fn from(e: steadfast_atomicfs::Error) -> Self {
        Self::Persist(e)
    }
}

/// Why a checkpoint on disk cannot be resumed. Nothing is deleted: the
/// caller decides (a `--restart` flag calls
/// [`Rejected::discard`](crate::Rejected::discard)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The configuration changed since the checkpoint was made.
    ConfigChanged {
        /// The hash in the checkpoint.
        saved: String,
        /// The hash of this run's configuration.
        current: String,
    },
    /// The checkpoint belongs to another job or tool.
    OtherJob {
        /// Tool and job in the checkpoint.
        saved: String,
        /// Tool and job of this run.
        current: String,
    },
    /// Not updated for longer than the limit.
    Expired {
        /// Time since the last update.
        age: Duration,
        /// The limit.
        limit: Duration,
    },
    /// Updated "in the future": the clock moved back, or the file is not
    /// what it claims.
    FromTheFuture {
        /// The checkpoint's last update.
        updated_at: SystemTime,
        /// This run's clock.
        now: SystemTime,
    },
    /// Written by a newer version of the format.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Unreadable: what is wrong and where.
    Corrupt {
        /// What is wrong.
        what: String,
        /// Which file, and where in it.
        location: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const OUT: &str = "start over (e.g. with --restart)";
        match self {
            Self::ConfigChanged { saved, current } => write!(
                f,
                "the checkpoint was made with another configuration ({saved}, now {current}); \
                 run with the same configuration to resume, or {OUT}"
            ),
            Self::OtherJob { saved, current } => write!(
                f,
                "the checkpoint belongs to {saved}, not {current}; use another output directory, or {OUT}"
            ),
            Self::Expired { age, limit } => write!(
                f,
                "the checkpoint is {:.1} h old, older than the {:.1} h limit; {OUT}",
                age.as_secs_f64() / 3600.0,
                limit.as_secs_f64() / 3600.0
            ),
            Self::FromTheFuture { updated_at, now } => {
                let ahead = updated_at.duration_since(*now).unwrap_or_default();
                write!(
                    f,
                    "the checkpoint was updated {:.0} s in the future (check the clock); {OUT}",
                    ahead.as_secs_f64()
                )
            }
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "the checkpoint has format version {found}, this build reads up to {supported}; \
                 resume with a newer build, or {OUT}"
            ),
            Self::Corrupt { what, location } => {
                write!(f, "the checkpoint is corrupt: {what} at {location}; {OUT}")
            }
        }
    }
}
