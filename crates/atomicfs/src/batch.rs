//! Many atomic writes committed together, with one directory flush per
//! directory.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Op};
use crate::file::{
    parent, settle, sync_dir_step, AtomicFile, Backup, Durability, Existing, Faults, Options,
};

/// Stages many files, possibly in several directories, and commits them
/// with one directory flush per directory instead of one per file.
///
/// Each staged file is an ordinary [`AtomicFile`] (a temp file in its
/// target's directory). [`commit`](Batch::commit) then flushes every file,
/// renames each over its target in the order they were staged, and flushes
/// each directory once. The batch as a whole is not atomic (no file system
/// offers that), but each file is, and a partial failure says exactly which
/// files were committed. Dropping a batch without committing removes every
/// temp file.
///
/// ```
/// use steadfast_atomicfs::Batch;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-batch-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let mut batch = Batch::new();
/// for i in 0..3 {
///     batch.add(dir.join(format!("icon-{i}.svg")), b"<svg/>")?;
/// }
/// let committed = batch.commit()?; // 3 file flushes, 1 directory flush
/// assert_eq!(committed.len(), 3);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct Batch {
    options: Options,
    files: Vec<AtomicFile>,
    faults: Option<Faults>,
}

impl Batch {
    /// An empty batch with the default [`Options`] (full durability).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch whose files use `options`. An expected size set there
    /// applies to files staged with [`file`](Batch::file); [`add`](Batch::add)
    /// checks each payload's own size.
    #[must_use]
    pub fn with_options(options: Options) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn with_faults(options: Options, faults: Option<Faults>) -> Self {
        Self {
            options,
            files: Vec::new(),
            faults,
        }
    }

    /// Stages `bytes` for `path`: checks the space, creates the temp file
    /// and writes it. Staging the same path twice commits both, in order,
    /// so the later one wins.
    ///
    /// # Errors
    ///
    /// As [`AtomicFile::with_options`] and [`AtomicFile::write_bytes`]; the
    /// failed file is not staged, the others stay staged.
    pub fn add(&mut self, path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
        let bytes = bytes.as_ref();
        let options = self
            .options
            .clone()
            .expected_size(bytes.len() as u64)
            .space_margin(0);
        let mut file = AtomicFile::start(path.as_ref(), options, self.faults.clone())?;
        file.write_bytes(bytes)?;
        self.files.push(file);
        Ok(())
    }

    /// Stages an empty file for `path` and hands it out for writing.
    ///
    /// # Errors
    ///
    /// As [`AtomicFile::with_options`].
    pub fn file(&mut self, path: impl AsRef<Path>) -> Result<&mut AtomicFile, Error> {
        let file = AtomicFile::start(path.as_ref(), self.options.clone(), self.faults.clone())?;
        self.files.push(file);
        let last = self.files.len() - 1;
        Ok(&mut self.files[last])
    }

    /// How many files are staged.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Commits every staged file and returns their paths.
    ///
    /// 1. Each file gets its final mode and is flushed (several at a time,
    ///    on scoped threads, for larger batches). A failure here commits
    ///    nothing: every temp file is removed and every target keeps its
    ///    old bytes.
    /// 2. Each file is renamed over its target, in staging order. A failure
    ///    stops there: the files before it are committed (their
    ///    directories are still flushed), the rest are discarded.
    /// 3. Each directory is flushed once. If that fails, the files renamed
    ///    into it are put back as they were (as [`AtomicFile::commit`]
    ///    does) and reported as failed.
    ///
    /// # Errors
    ///
    /// A [`BatchError`] saying which files were committed, which failed
    /// and why, and which were discarded without being tried.
    pub fn commit(self) -> Result<Vec<PathBuf>, BatchError> {
        let Self {
            options,
            files,
            faults,
        } = self;
        let durability = options.durability_level();

        // 1. Flush every file, several at a time: the device and the
        //    file system's journal serve overlapping flushes together.
        let outcomes = prepare_all(&files, durability);
        let mut prepared = Vec::with_capacity(files.len());
        let mut failed = Vec::new();
        let mut not_attempted = Vec::new();
        for (file, outcome) in files.into_iter().zip(outcomes) {
            match outcome {
                Ok(existing) => prepared.push((file, existing)),
                Err(error) => failed.push((file.target().to_path_buf(), error)),
            }
        }
        if !failed.is_empty() {
            not_attempted.extend(prepared.iter().map(|(f, _)| f.target().to_path_buf()));
            return Err(BatchError {
                committed: Vec::new(),
                failed,
                not_attempted,
            });
        }

        // 2. Rename, in order, until the first failure.
        let mut renamed: Vec<(PathBuf, Backup)> = Vec::with_capacity(prepared.len());
        let mut rest = prepared.into_iter();
        for (mut file, existing) in rest.by_ref() {
            match file.install(existing) {
                Ok(backup) => {
                    // Renamed: closing the file now leaves nothing for its
                    // `Drop` to remove.
                    drop(file.take_file());
                    renamed.push((file.target().to_path_buf(), backup));
                }
                Err(error) => {
                    failed.push((file.target().to_path_buf(), error));
                    break;
                }
            }
        }
        for (file, _) in rest {
            not_attempted.push(file.target().to_path_buf());
        }

        // 3. One flush per directory; a failed one undoes its renames.
        let mut committed = Vec::with_capacity(renamed.len());
        if durability == Durability::Full {
            let mut dirs: Vec<&Path> = renamed.iter().map(|(path, _)| parent(path)).collect();
            dirs.sort_unstable();
            dirs.dedup();
            let outcomes: Vec<(PathBuf, Option<io::Error>)> = dirs
                .into_iter()
                .map(|dir| {
                    let outcome = sync_dir_step(&faults, dir);
                    (dir.to_path_buf(), outcome.err())
                })
                .collect();
            for (target, backup) in renamed {
                let dir = parent(&target);
                let outcome = outcomes
                    .iter()
                    .find(|(d, _)| d == dir)
                    .and_then(|(_, e)| e.as_ref());
                let synced = match outcome {
                    None => Ok(()),
                    Some(e) => Err(Error::io(Op::SyncDir, dir, copy(e))),
                };
                match settle(&target, backup, synced, &faults) {
                    Ok(()) => committed.push(target),
                    Err(error) => failed.push((target, error)),
                }
            }
        } else {
            committed.extend(renamed.into_iter().map(|(path, _)| path));
        }

        if failed.is_empty() {
            Ok(committed)
        } else {
            Err(BatchError {
                committed,
                failed,
                not_attempted,
            })
        }
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("options", &self.options)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// How many files one flushing thread takes at least.
const FILES_PER_THREAD: usize = 8;
/// The most flushing threads a batch starts.
const MAX_THREADS: usize = 8;

/// Prepares (mode, flush) every file; with flushes to do and enough files,
/// on up to [`MAX_THREADS`] scoped threads.
fn prepare_all(files: &[AtomicFile], durability: Durability) -> Vec<Result<Existing, Error>> {
    let prepare = |file: &AtomicFile| file.prepare(file.file());
    let threads = (files.len() / FILES_PER_THREAD).clamp(1, MAX_THREADS);
    if durability == Durability::None || threads == 1 {
        return files.iter().map(prepare).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(prepare).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .zip(files.chunks(chunk))
            .flat_map(|(handle, part)| match handle.join() {
                Ok(outcomes) => outcomes,
                // A panicking flush (none is expected) fails its files.
                Err(_) => part
                    .iter()
                    .map(|f| {
                        Err(Error::io(
                            Op::Sync,
                            f.temp_path(),
                            io::Error::other("flush thread panicked"),
                        ))
                    })
                    .collect(),
            })
            .collect()
    })
}

/// The same error again (an `io::Error` is not `Clone`).
fn copy(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// A batch commit that did not commit everything.
#[derive(Debug)]
pub struct BatchError {
    committed: Vec<PathBuf>,
    failed: Vec<(PathBuf, Error)>,
    not_attempted: Vec<PathBuf>,
}

impl BatchError {
    /// A report for a [`FileSink`](crate::FileSink) implementation.
    /// `failed` must not be empty: a batch with no failure is `Ok`.
    pub fn new(
        committed: Vec<PathBuf>,
        failed: Vec<(PathBuf, Error)>,
        not_attempted: Vec<PathBuf>,
    ) -> Self {
        debug_assert!(
            !failed.is_empty(),
            "a BatchError reports at least one failure"
        );
        Self {
            committed,
            failed,
            not_attempted,
        }
    }

    /// The files now durably at their targets (for the batch's
    /// durability), in staging order.
    pub fn committed(&self) -> &[PathBuf] {
        &self.committed
    }

    /// The files that failed, each with its error; their targets keep
    /// their old bytes (see [`Error::is_in_place`]).
    pub fn failed(&self) -> &[(PathBuf, Error)] {
        &self.failed
    }

    /// The files discarded without being tried because an earlier one
    /// failed; their targets keep their old bytes.
    pub fn not_attempted(&self) -> &[PathBuf] {
        &self.not_attempted
    }

    /// The first failure.
    pub fn first_error(&self) -> Option<&Error> {
        self.failed.first().map(|(_, error)| error)
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.committed.len() + self.failed.len() + self.not_attempted.len();
        write!(
            f,
            "batch commit stopped: {} of {total} files committed, {} failed, {} not tried",
            self.committed.len(),
            self.failed.len(),
            self.not_attempted.len(),
        )?;
        match self.first_error() {
            Some(error) => write!(f, "; first failure: {error}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.first_error().map(|e| e as _)
    }
}
