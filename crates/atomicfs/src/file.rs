//! The atomic file: temp file in the target's directory, then fsync,
//! rename, directory fsync.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Op};
use crate::platform;
use crate::temp;

/// How hard [`AtomicFile::commit`] works to make the new bytes survive a
/// crash or a power cut.
///
/// Every level is atomic: a reader (or a process that crashes and looks
/// again) sees the old file or the new one, never a mix. They differ in
/// what a *power cut* or kernel crash can undo:
///
/// | level | flushes | after a power cut |
/// |---|---|---|
/// | `None` | nothing | the old file, or the new one, or (on some file systems) a new file that is empty |
/// | `File` | the temp file, data and metadata (`fsync`), before the rename | the old file or the complete new one with its final mode; the rename may be lost |
/// | `Full` | that, then the directory after the rename | once `commit` returns: the complete new file |
///
/// On Windows the directory cannot be flushed and the rename is
/// `MoveFileExW(MOVEFILE_REPLACE_EXISTING)` without write-through: writes
/// are atomic, and the file's bytes are flushed, but whether the rename
/// survives a power cut rests on NTFS's journal; `Full` is `File` there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// No flush.
    None,
    /// Flush the temp file (data and metadata, so its final mode too)
    /// before the rename.
    File,
    /// Also flush the directory after the rename. The default.
    #[default]
    Full,
}

/// How the temp file is flushed before the rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    None,
    /// `fsync`: data and metadata. The final mode is set just before with
    /// `fchmod`, a metadata change that `fdatasync` would not flush.
    All,
}

impl Durability {
    pub(crate) fn flush(self) -> Flush {
        match self {
            Self::None => Flush::None,
            Self::File | Self::Full => Flush::All,
        }
    }
}

/// Settings of an atomic write.
#[derive(Clone, Debug)]
pub struct Options {
    durability: Durability,
    mode: Option<u32>,
    expected_size: Option<u64>,
    space_margin: u64,
}

/// The default free space kept on top of an expected size: 1 MiB.
pub const DEFAULT_SPACE_MARGIN: u64 = 1 << 20;

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            mode: None,
            expected_size: None,
            space_margin: DEFAULT_SPACE_MARGIN,
        }
    }
}

impl Options {
    /// The defaults: full durability, the replaced file's mode kept, no
    /// space check.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How hard to flush (default [`Durability::Full`]).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The new file's permission bits (Unix; e.g. `0o644`). Without it a
    /// replaced file keeps its mode and a new file gets `0o666` less the
    /// process's umask, as `File::create` would give it.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// The size the file will have: before creating the temp file, the
    /// space available to this user is checked against it plus the margin,
    /// and a shortfall fails with [`ErrorKind::InsufficientSpace`](crate::ErrorKind::InsufficientSpace).
    #[must_use]
    pub fn expected_size(mut self, bytes: u64) -> Self {
        self.expected_size = Some(bytes);
        self
    }

    pub(crate) fn durability_level(&self) -> Durability {
        self.durability
    }

    /// Free space to keep on top of the expected size (default 1 MiB): the
    /// old and new files coexist until the rename, and the file system
    /// needs room for its own metadata.
    #[must_use]
    pub fn space_margin(mut self, bytes: u64) -> Self {
        self.space_margin = bytes;
        self
    }
}

/// A file that replaces its target atomically when committed, and vanishes
/// when dropped without a commit.
///
/// The temp file lives in the target's own directory (so the rename never
/// crosses file systems), is created exclusively (`O_CREAT | O_EXCL`, which
/// never follows a symlink, plus `O_NOFOLLOW` and close-on-exec), is
/// readable by its owner only until the commit, and is locked (`flock`) by
/// its writer so [`cleanup_orphans`](crate::cleanup_orphans) can tell a
/// live writer's file from a dead one's.
///
/// ```
/// use std::io::Write;
/// use steadfast_atomicfs::AtomicFile;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("colors.json");
/// let mut file = AtomicFile::create(&path)?;
/// file.write_all(br##"{"primary": "#0af"}"##)?;
/// file.commit()?; // fsync, rename over colors.json, fsync the directory
/// assert_eq!(std::fs::read(&path)?, br##"{"primary": "#0af"}"##);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    options: Options,
    written: u64,
    faults: Option<Faults>,
}

/// A hook consulted before each step: `Some(error)` makes the step fail
/// with that error instead of running (the `testing` feature's
/// fault-injecting sink).
pub(crate) type Faults = Arc<dyn Fn(Op, &Path) -> Option<io::Error> + Send + Sync>;

/// Runs `step` unless the fault hook fails it first.
pub(crate) fn step<T>(
    faults: &Option<Faults>,
    op: Op,
    path: &Path,
    step: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    if let Some(error) = faults.as_ref().and_then(|inject| inject(op, path)) {
        return Err(error);
    }
    step()
}

impl AtomicFile {
    /// Starts an atomic write of `path` with the default [`Options`].
    ///
    /// # Errors
    ///
    /// [`Op::Create`] if the temp file cannot be created (the directory is
    /// missing or not writable).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::with_options(path, Options::default())
    }

    /// Starts an atomic write of `path`.
    ///
    /// # Errors
    ///
    /// [`Op::CheckSpace`] when an expected size does not fit;
    /// [`Op::Create`] if the temp file cannot be created.
    pub fn with_options(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        Self::start(path.as_ref(), options, None)
    }

    pub(crate) fn start(
        path: &Path,
        options: Options,
        faults: Option<Faults>,
    ) -> Result<Self, Error> {
        let target = path.to_path_buf();
        let dir = parent(&target);
        if let Some(size) = options.expected_size {
            let needed = size.saturating_add(options.space_margin);
            let available = platform::available_space(dir)
                .map_err(|e| Error::io(Op::CheckSpace, dir, e).for_target(&target))?;
            if available < needed {
                return Err(Error::insufficient_space(
                    Op::CheckSpace,
                    &target,
                    needed,
                    available,
                ));
            }
        }
        let name = target.file_name().unwrap_or(OsStr::new("file"));
        let (file, temp) = create_temp(dir, name, &faults).map_err(|e| e.for_target(&target))?;
        Ok(Self {
            file: Some(file),
            temp,
            target,
            options,
            written: 0,
            faults,
        })
    }

    /// The path that `commit` replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp file's path, in the target's directory.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The open temp file, e.g. to `set_len` or seek.
    pub fn file(&self) -> &File {
        self.file_ref()
    }

    fn file_ref(&self) -> &File {
        match &self.file {
            Some(file) => file,
            None => {
                unreachable!("the file is only taken by commit and discard, which consume self")
            }
        }
    }

    /// Makes the written bytes the target's, atomically: readers see the
    /// old file or the new one, never a mix.
    ///
    /// Steps, by [`Durability`]: give the temp file its final mode, flush it
    /// with `fsync` (`File`, `Full`), rename it over the target, flush the directory
    /// (`Full`). A symlink at the target is replaced by the new file, not
    /// followed.
    ///
    /// # Errors
    ///
    /// The step that failed, with the temp file removed and the target
    /// holding exactly its old bytes. That includes a failed directory
    /// flush ([`Op::SyncDir`]), which comes after the rename: with `Full`
    /// durability the old file is kept as a hard link until the directory
    /// is flushed, and put back if the flush fails (where hard links are
    /// not supported, the new bytes stay in place and the error says so).
    /// A failed flush is never retried: the kernel may already have dropped
    /// the data.
    pub fn commit(mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let prepared = self.prepare(&file);
        drop(file);
        let result = prepared.and_then(|existing| {
            let backup = self.install(existing)?;
            if self.options.durability == Durability::Full {
                let dir = parent(&self.target);
                let synced = sync_dir_step(&self.faults, dir)
                    .map_err(|e| Error::io(Op::SyncDir, dir, e).for_target(&self.target));
                settle(&self.target, backup, synced, &self.faults)?;
            }
            Ok(())
        });
        if let Err(error) = &result {
            // After a failed roll-back the temp name may hold the only copy
            // of the old bytes: never delete that.
            if error.kept_old_file() != Some(self.temp.as_path()) {
                let _ = fs::remove_file(&self.temp);
            }
        }
        result
    }

    /// Everything before the rename: look at the target, give the temp
    /// file its final mode, flush it. Changes nothing outside the temp
    /// file.
    pub(crate) fn prepare(&self, file: &File) -> Result<Existing, Error> {
        let temp = &self.temp;
        let existing = fs::symlink_metadata(&self.target).ok();
        platform::set_final_mode(file, existing.as_ref(), self.options.mode)
            .map_err(|e| Error::io(Op::SetPermissions, temp, e).for_target(&self.target))?;
        if self.options.durability.flush() == Flush::All {
            step(&self.faults, Op::Sync, temp, || file.sync_all())
                .map_err(|e| self.space_aware(Error::io(Op::Sync, temp, e)))?;
        }
        Ok(match existing {
            None => Existing::Absent,
            Some(meta) if meta.is_dir() => Existing::Other,
            Some(_) => Existing::File,
        })
    }

    /// Puts the temp file at the target. With `Full` durability, keeps
    /// what was there until the directory flush succeeds: an existing file
    /// is swapped with the temp file in one atomic step
    /// (`RENAME_EXCHANGE`), or where that is not supported hard-linked
    /// under a fresh temp name before the rename.
    pub(crate) fn install(&self, existing: Existing) -> Result<Backup, Error> {
        let fail = |e| Error::io(Op::Rename, &self.target, e);
        let full = self.options.durability == Durability::Full;
        if full && existing == Existing::File {
            let swapped = step(&self.faults, Op::Rename, &self.target, || {
                platform::exchange(&self.temp, &self.target)
            })
            .map_err(fail)?;
            if swapped {
                return Ok(Backup::Swapped(self.temp.clone()));
            }
            let backup = Backup::link(&self.target);
            return match platform::rename_replace(&self.temp, &self.target) {
                Ok(()) => Ok(backup),
                Err(e) => {
                    backup.forget();
                    Err(fail(e))
                }
            };
        }
        step(&self.faults, Op::Rename, &self.target, || {
            platform::rename_replace(&self.temp, &self.target)
        })
        .map_err(fail)?;
        Ok(match existing {
            Existing::Absent if full => Backup::Absent,
            _ => Backup::Unknown,
        })
    }

    /// Takes the open temp file out, so that dropping `self` removes
    /// nothing (the batch commit drives the steps itself).
    pub(crate) fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Adds the sizes to an out-of-space error.
    fn space_aware(&self, error: Error) -> Error {
        let error = error.for_target(&self.target);
        if error.kind() != crate::ErrorKind::InsufficientSpace {
            return error;
        }
        let needed = self.options.expected_size.unwrap_or(self.written);
        let available = platform::available_space(parent(&self.target)).unwrap_or(0);
        error.with_space(needed, available)
    }

    /// Removes the temp file and leaves the target as it was.
    ///
    /// # Errors
    ///
    /// [`Op::Remove`] if the temp file could not be removed (it is then an
    /// orphan for [`cleanup_orphans`](crate::cleanup_orphans)).
    pub fn discard(mut self) -> Result<(), Error> {
        drop(self.file.take());
        fs::remove_file(&self.temp)
            .map_err(|e| Error::io(Op::Remove, &self.temp, e).for_target(&self.target))
    }

    /// Writes all of `bytes`, mapping a failure to an [`Error`] that names
    /// the temp file (and, when out of space, the sizes).
    ///
    /// # Errors
    ///
    /// [`Op::Write`].
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        // One check of the fault hook per call, even for an empty payload.
        if let Err(e) = step(&self.faults, Op::Write, &self.temp, || Ok(())) {
            return Err(self.space_aware(Error::io(Op::Write, &self.temp, e)));
        }
        self.write_all(bytes)
            .map_err(|e| self.space_aware(Error::io(Op::Write, &self.temp, e)))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = step(&self.faults, Op::Write, &self.temp, || {
            self.file_ref().write(buf)
        })?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file_ref().flush()
    }
}

impl Drop for AtomicFile {
    /// Removes the temp file of an uncommitted write, best effort: never
    /// panics, never blocks on anything but the `unlink`.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Err(error) = fs::remove_file(&self.temp) {
                tracing::debug!(target: "steadfast_atomicfs", path = %self.temp.display(), %error, "could not remove temp file");
            }
        }
    }
}

impl fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicFile")
            .field("target", &self.target)
            .field("temp", &self.temp)
            .field("options", &self.options)
            .field("written", &self.written)
            .finish()
    }
}

/// The directory a path lives in (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates and locks a fresh temp file for `name` in `dir`.
fn create_temp(
    dir: &Path,
    name: &OsStr,
    faults: &Option<Faults>,
) -> Result<(File, PathBuf), Error> {
    let mut last = None;
    for _ in 0..8 {
        let temp = dir.join(temp::name(name));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        platform::private_no_follow(&mut options);
        match step(faults, Op::Create, &temp, || options.open(&temp)) {
            Ok(file) => {
                // Best effort: a file system without locks still works,
                // and clean-up then relies on the writer's pid and age.
                let _ = file.try_lock();
                return Ok((file, temp));
            }
            // Someone holds that name (or planted a symlink there): never
            // touch it, pick another.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((temp, e)),
            Err(e) => return Err(Error::io(Op::Create, temp, e)),
        }
    }
    let (temp, e) =
        last.unwrap_or_else(|| (dir.to_path_buf(), io::ErrorKind::AlreadyExists.into()));
    Err(Error::io(Op::Create, temp, e))
}

/// Writes `bytes` to `path` atomically, with full durability.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-write-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// steadfast_atomicfs::write(dir.join("icon.svg"), b"<svg/>")?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The [`Error`] of the step that failed; the target then holds exactly its
/// old bytes.
pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
    let bytes = bytes.as_ref();
    write_with(
        path,
        bytes,
        Options::default()
            .expected_size(bytes.len() as u64)
            .space_margin(0),
    )
}

/// [`write()`] with [`Options`].
///
/// # Errors
///
/// As [`write()`].
pub fn write_with(
    path: impl AsRef<Path>,
    bytes: impl AsRef<[u8]>,
    options: Options,
) -> Result<(), Error> {
    let mut file = AtomicFile::with_options(path, options)?;
    file.write_bytes(bytes.as_ref())?;
    file.commit()
}

/// What is at the target before the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    Absent,
    /// A file or a symlink: something a rename replaces.
    File,
    /// A directory or something else we cannot put back.
    Other,
}

/// What was at the target before a `Full` commit, kept until the directory
/// flush says the new entry is durable.
#[derive(Debug)]
pub(crate) enum Backup {
    /// Nothing was there: undoing the rename means removing the target.
    Absent,
    /// The old file, swapped to the temp file's name.
    Swapped(PathBuf),
    /// The old file, hard-linked under a fresh temp name (an
    /// orphan-cleanable name, should the process die before removing it).
    Linked(PathBuf),
    /// Something we cannot put back (a directory, hard links unsupported),
    /// or nothing to put back (no directory flush).
    Unknown,
}

impl Backup {
    fn link(target: &Path) -> Self {
        let name = target.file_name().unwrap_or(OsStr::new("file"));
        let backup = parent(target).join(temp::name(name));
        match fs::hard_link(target, &backup) {
            Ok(()) => Self::Linked(backup),
            Err(_) => Self::Unknown,
        }
    }

    /// Drops a hard-link backup that is no longer needed because the
    /// rename never happened.
    fn forget(self) {
        if let Self::Linked(backup) = self {
            let _ = fs::remove_file(backup);
        }
    }
}

/// After the directory flush: drop the backup on success; on failure put
/// the old file back (or remove the new one) so the target keeps exactly
/// its old state. When putting back fails too, the error says the new
/// bytes are in place and where the old ones are kept; they are never
/// deleted.
pub(crate) fn settle(
    target: &Path,
    backup: Backup,
    synced: Result<(), Error>,
    faults: &Option<Faults>,
) -> Result<(), Error> {
    let restore = |what: &dyn Fn() -> io::Result<()>| step(faults, Op::Restore, target, what);
    match (synced, backup) {
        (Ok(()), Backup::Linked(backup) | Backup::Swapped(backup)) => {
            if let Err(error) = fs::remove_file(&backup) {
                tracing::debug!(target: "steadfast_atomicfs", path = %backup.display(), %error, "could not remove backup link");
            }
            Ok(())
        }
        (Ok(()), _) => Ok(()),
        (Err(error), Backup::Swapped(backup)) => {
            // Swap back: the old file returns, the new one goes back to
            // the temp name, which the caller removes. Else move the old
            // file back over the new one.
            let swapped = restore(&|| match platform::exchange(&backup, target) {
                Ok(true) => Ok(()),
                Ok(false) => Err(io::ErrorKind::Unsupported.into()),
                Err(e) => Err(e),
            });
            if swapped.is_ok() {
                // The new bytes are back at the temp name: drop them.
                let _ = fs::remove_file(&backup);
                return Err(error);
            }
            match restore(&|| platform::rename_replace(&backup, target)) {
                Ok(()) => Err(error),
                Err(e) => Err(lost_rollback(error, target, backup, &e)),
            }
        }
        (Err(error), Backup::Linked(backup)) => {
            match restore(&|| platform::rename_replace(&backup, target)) {
                Ok(()) => Err(error),
                Err(e) => Err(lost_rollback(error, target, backup, &e)),
            }
        }
        (Err(error), Backup::Absent) => match restore(&|| fs::remove_file(target)) {
            Ok(()) => Err(error),
            Err(e) => {
                tracing::warn!(target: "steadfast_atomicfs", path = %target.display(), error = %e, "could not remove the new file after a failed directory flush");
                Err(error.renamed())
            }
        },
        (Err(error), Backup::Unknown) => Err(error.renamed()),
    }
}

/// The error for a roll-back that failed: the new bytes are at `target`,
/// the old ones at `kept`.
fn lost_rollback(error: Error, target: &Path, kept: PathBuf, cause: &io::Error) -> Error {
    tracing::warn!(target: "steadfast_atomicfs", path = %target.display(), kept = %kept.display(), error = %cause, "could not put the old file back after a failed directory flush");
    error.renamed().kept_at(kept)
}

/// The directory flush of a commit, through the fault hook. `EINVAL`,
/// `EBADF` and `EISDIR` mean the file system cannot flush directories (FUSE,
/// vboxsf, some network file systems): that is "not supported here", as
/// coreutils and PostgreSQL treat it, not a failure; a `debug` event says so
/// once per process.
pub(crate) fn sync_dir_step(faults: &Option<Faults>, dir: &Path) -> io::Result<()> {
    match step(faults, Op::SyncDir, dir, || platform::sync_dir(dir)) {
        Err(e) if platform::dir_sync_unsupported(&e) => {
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!(target: "steadfast_atomicfs", dir = %dir.display(), error = %e, "this file system cannot flush directories; renames are atomic but their durability rests on it");
            }
            Ok(())
        }
        other => other,
    }
}

/// Flushes a directory, so that entries created or renamed in it survive a
/// crash: `fsync` on the directory. A file system that cannot flush
/// directories (`EINVAL`, `EBADF`, `EISDIR`: FUSE, vboxsf, some network file
/// systems) is not an error. A no-op on Windows, which cannot flush a
/// directory.
///
/// # Errors
///
/// The I/O error of opening or flushing the directory.
pub fn sync_dir(dir: impl AsRef<Path>) -> io::Result<()> {
    sync_dir_step(&None, dir.as_ref())
}

/// Options for a new owner-only file (mode `0o600` on Unix) that is never
/// opened through a symlink: what this crate creates its temp files with.
/// Add `.write(true).create_new(true)` or whatever the file needs.
pub fn private_file_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    platform::private_no_follow(&mut options);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_mode_is_flushed_with_the_data() {
        // Before, `File` and `Full` used `fdatasync` right after the
        // `fchmod` of the final mode, which may leave the mode unflushed.
        assert_eq!(Durability::None.flush(), Flush::None);
        assert_eq!(Durability::File.flush(), Flush::All);
        assert_eq!(Durability::Full.flush(), Flush::All);
    }
}
