//! The crate's generic trait: where atomic writes go.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{Batch, BatchError};
use crate::error::Error;
use crate::file::{AtomicFile, Options};

/// Something that writes whole files atomically: the real file system
/// ([`Disk`]), a fault-injecting one for tests (`testing::FaultySink`,
/// behind the `testing` feature), or your own (an in-memory map, an object
/// store).
///
/// The contract: after `Ok`, the file holds exactly `bytes`; after `Err`,
/// it holds exactly what it held before (unless the error says
/// [`is_in_place`](Error::is_in_place)). Methods block; from async code,
/// run them on a blocking pool (as [`PersistLayer`](crate::PersistLayer)
/// does).
pub trait FileSink: Send + Sync {
    /// Writes `bytes` to `path` atomically.
    ///
    /// # Errors
    ///
    /// The step that failed, naming the path.
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error>;

    /// Writes many files, returning the committed paths. The default writes
    /// them one by one and stops at the first failure; [`Disk`] flushes
    /// each directory once for the whole batch.
    ///
    /// # Errors
    ///
    /// Which files were committed, which failed, which were not tried.
    fn write_batch(&self, files: &[(&Path, &[u8])]) -> Result<Vec<PathBuf>, BatchError> {
        let mut committed = Vec::with_capacity(files.len());
        for (i, (path, bytes)) in files.iter().enumerate() {
            if let Err(error) = self.write(path, bytes) {
                let not_attempted = files[i + 1..].iter().map(|(p, _)| p.to_path_buf());
                return Err(BatchError::new(
                    committed,
                    vec![(path.to_path_buf(), error)],
                    not_attempted.collect(),
                ));
            }
            committed.push(path.to_path_buf());
        }
        Ok(committed)
    }
}

impl<S: FileSink + ?Sized> FileSink for Arc<S> {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        (**self).write(path, bytes)
    }

    fn write_batch(&self, files: &[(&Path, &[u8])]) -> Result<Vec<PathBuf>, BatchError> {
        (**self).write_batch(files)
    }
}

impl<S: FileSink + ?Sized> FileSink for &S {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        (**self).write(path, bytes)
    }

    fn write_batch(&self, files: &[(&Path, &[u8])]) -> Result<Vec<PathBuf>, BatchError> {
        (**self).write_batch(files)
    }
}

/// The real file system, through [`AtomicFile`] and [`Batch`].
///
/// ```
/// use steadfast_atomicfs::{Disk, FileSink};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-disk-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let sink = Disk::new();
/// sink.write(&dir.join("colors.json"), b"{}")?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Disk {
    options: Options,
}

impl Default for Disk {
    fn default() -> Self {
        Self::new()
    }
}

impl Disk {
    /// Full durability; each payload's size checked against the free space
    /// (no margin), like [`write`](crate::write()).
    #[must_use]
    pub fn new() -> Self {
        Self::with_options(Options::new().space_margin(0))
    }

    /// With these options (durability, mode, space margin); the expected
    /// size is each payload's.
    #[must_use]
    pub fn with_options(options: Options) -> Self {
        Self { options }
    }

    /// The options each write uses.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

impl FileSink for Disk {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let options = self.options.clone().expected_size(bytes.len() as u64);
        let mut file = AtomicFile::with_options(path, options)?;
        file.write_bytes(bytes)?;
        file.commit()
    }

    fn write_batch(&self, files: &[(&Path, &[u8])]) -> Result<Vec<PathBuf>, BatchError> {
        stage_and_commit(Batch::with_options(self.options.clone()), files)
    }
}

/// Stages every file (stopping at the first that cannot be staged) and
/// commits the batch.
pub(crate) fn stage_and_commit(
    mut batch: Batch,
    files: &[(&Path, &[u8])],
) -> Result<Vec<PathBuf>, BatchError> {
    for (i, (path, bytes)) in files.iter().enumerate() {
        if let Err(error) = batch.add(path, bytes) {
            let not_attempted = files.iter().enumerate().filter(|(j, _)| *j != i);
            return Err(BatchError::new(
                Vec::new(),
                vec![(path.to_path_buf(), error)],
                not_attempted.map(|(_, (p, _))| p.to_path_buf()).collect(),
            ));
        }
    }
    batch.commit()
}
