//! A fault-injecting [`FileSink`](crate::FileSink) for tests (feature `testing`).
//!
//! ```
//! use std::path::Path;
//! use steadfast_atomicfs::testing::{Fault, FaultySink};
//! use steadfast_atomicfs::{ErrorKind, FileSink, Op};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("sf-doc-faulty-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("colors.json");
//! std::fs::write(&path, b"old")?;
//! let sink = FaultySink::new(Op::Sync, Fault::NoSpace);
//! let error = sink.write(&path, b"new").unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::InsufficientSpace);
//! assert_eq!(std::fs::read(&path)?, b"old"); // untouched, no temp file left
//! assert_eq!(sink.injected(), 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::batch::{Batch, BatchError};
use crate::error::{Error, Op};
use crate::file::{AtomicFile, Faults, Options};
use crate::sink::stage_and_commit;

/// The error a [`FaultySink`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `ENOSPC`: the disk is full.
    NoSpace,
    /// `EIO`: the device failed.
    Io,
    /// `EACCES`: permission denied.
    PermissionDenied,
    /// Any OS error number.
    Os(i32),
}

impl Fault {
    /// The `io::Error` the step fails with, as the OS would report it.
    pub fn to_io_error(self) -> io::Error {
        #[cfg(unix)]
        {
            use rustix::io::Errno;
            let code = match self {
                Self::NoSpace => Errno::NOSPC.raw_os_error(),
                Self::Io => Errno::IO.raw_os_error(),
                Self::PermissionDenied => Errno::ACCESS.raw_os_error(),
                Self::Os(code) => code,
            };
            io::Error::from_raw_os_error(code)
        }
        #[cfg(not(unix))]
        match self {
            Self::NoSpace => io::ErrorKind::StorageFull.into(),
            Self::Io => io::Error::other("injected I/O error"),
            Self::PermissionDenied => io::ErrorKind::PermissionDenied.into(),
            Self::Os(code) => io::Error::from_raw_os_error(code),
        }
    }
}

#[derive(Debug)]
struct Plan {
    op: Op,
    fault: Fault,
    /// Fail only the n-th run of the step (1-based); every run when 0.
    nth: u64,
    runs: AtomicU64,
    injected: AtomicU64,
}

/// The real file system, except that chosen steps fail with chosen errors:
/// [`Op::Create`], [`Op::Write`], [`Op::Sync`], [`Op::Rename`],
/// [`Op::SyncDir`] or [`Op::Restore`] (other ops are never failed); a second
/// fault ([`also`](Self::also)) makes double faults, e.g. a failed
/// directory flush whose roll-back fails too. The step fails instead of
/// running, exactly where the real one would, so everything after it (the
/// clean-up, the roll-back, the error) is the crate's real code path.
///
/// Clones share the plan and the counters.
#[derive(Clone, Debug)]
pub struct FaultySink {
    options: Options,
    plan: Arc<Plan>,
    more: Vec<Arc<Plan>>,
}

impl FaultySink {
    /// Fails every run of `op` with `fault`.
    #[must_use]
    pub fn new(op: Op, fault: Fault) -> Self {
        Self {
            options: Options::new().space_margin(0),
            plan: Arc::new(Plan {
                op,
                fault,
                nth: 0,
                runs: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }),
            more: Vec::new(),
        }
    }

    /// Also fails every run of `op` with `fault`.
    #[must_use]
    pub fn also(mut self, op: Op, fault: Fault) -> Self {
        self.more.push(Arc::new(Plan {
            op,
            fault,
            nth: 0,
            runs: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }));
        self
    }

    /// Fails only the `n`-th run of the step (1-based, counted across
    /// clones); e.g. the third rename of a batch.
    #[must_use]
    pub fn on_run(self, n: u64) -> Self {
        Self {
            options: self.options,
            plan: Arc::new(Plan {
                op: self.plan.op,
                fault: self.plan.fault,
                nth: n.max(1),
                runs: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }),
            more: self.more,
        }
    }

    /// The options of each write (default: full durability).
    #[must_use]
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// How many times the faults fired (all of them).
    pub fn injected(&self) -> u64 {
        std::iter::once(&self.plan)
            .chain(&self.more)
            .map(|p| p.injected.load(Ordering::Relaxed))
            .sum()
    }

    /// How many times the first chosen step ran (or was failed).
    pub fn runs(&self) -> u64 {
        self.plan.runs.load(Ordering::Relaxed)
    }

    fn faults(&self) -> Faults {
        let plans: Vec<Arc<Plan>> = std::iter::once(&self.plan)
            .chain(&self.more)
            .cloned()
            .collect();
        Arc::new(move |op: Op, _path: &Path| {
            plans.iter().filter(|plan| plan.op == op).find_map(|plan| {
                let run = plan.runs.fetch_add(1, Ordering::Relaxed) + 1;
                (plan.nth == 0 || plan.nth == run).then(|| {
                    plan.injected.fetch_add(1, Ordering::Relaxed);
                    plan.fault.to_io_error()
                })
            })
        })
    }

    /// Starts an [`AtomicFile`] whose steps go through this sink's faults.
    ///
    /// # Errors
    ///
    /// As [`AtomicFile::with_options`], or the injected create failure.
    pub fn atomic_file(&self, path: &Path) -> Result<AtomicFile, Error> {
        AtomicFile::start(path, self.options.clone(), Some(self.faults()))
    }

    /// A [`Batch`] whose steps go through this sink's faults.
    pub fn batch(&self) -> Batch {
        Batch::with_faults(self.options.clone(), Some(self.faults()))
    }
}

impl crate::FileSink for FaultySink {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let options = self.options.clone().expected_size(bytes.len() as u64);
        let mut file = AtomicFile::start(path, options, Some(self.faults()))?;
        file.write_bytes(bytes)?;
        file.commit()
    }

    fn write_batch(&self, files: &[(&Path, &[u8])]) -> Result<Vec<PathBuf>, BatchError> {
        stage_and_commit(self.batch(), files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_become_the_os_errors_they_name() {
        let kinds = [
            (Fault::NoSpace, io::ErrorKind::StorageFull),
            (Fault::PermissionDenied, io::ErrorKind::PermissionDenied),
        ];
        for (fault, kind) in kinds {
            assert_eq!(fault.to_io_error().kind(), kind, "{fault:?}");
        }
        assert!(Fault::Io.to_io_error().raw_os_error().is_some());
    }

    #[test]
    fn on_run_fails_only_that_run() {
        let sink = FaultySink::new(Op::Rename, Fault::Io).on_run(2);
        let inject = sink.faults();
        let path = PathBuf::from("x");
        assert!(
            inject(Op::Create, &path).is_none(),
            "other steps never fail"
        );
        assert!(inject(Op::Rename, &path).is_none());
        assert!(inject(Op::Rename, &path).is_some());
        assert!(inject(Op::Rename, &path).is_none());
        assert_eq!((sink.runs(), sink.injected()), (3, 1));
    }
}
