//! What differs between platforms: permissions, rename, directory flush,
//! free space, process liveness.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::OnceLock;

    /// Owner-only until commit; never follow a symlink.
    pub(crate) fn private_no_follow(options: &mut OpenOptions) {
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }

    /// The mode to give the new file: the caller's, else the replaced
    /// regular file's, else `0o666` less the umask.
    pub(crate) fn set_final_mode(
        file: &File,
        existing: Option<&Metadata>,
        mode: Option<u32>,
    ) -> io::Result<()> {
        let mode = match (mode, existing) {
            (Some(mode), _) => mode,
            (None, Some(meta)) if meta.file_type().is_file() => meta.permissions().mode() & 0o7777,
            _ => 0o666 & !umask(),
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// The process's umask, read once from `/proc/self/status` (Linux 4.7+),
    /// since reading it with `umask(2)` means changing it, which races with
    /// other threads. Assumed `022` where it cannot be read.
    fn umask() -> u32 {
        static UMASK: OnceLock<u32> = OnceLock::new();
        *UMASK.get_or_init(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
                    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
                })
                .unwrap_or(0o022)
        })
    }

    /// `rename(2)`: atomic, replaces the target (a symlink there is
    /// replaced, not followed).
    pub(crate) fn rename_replace(from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Swaps `from` and `to` atomically (`renameat2(RENAME_EXCHANGE)`,
    /// Linux 3.15+). `Ok(false)` where the system or the file system cannot.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn exchange(from: &Path, to: &Path) -> io::Result<bool> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        use rustix::io::Errno;
        match renameat_with(CWD, from, CWD, to, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// No atomic exchange here.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn exchange(_from: &Path, _to: &Path) -> io::Result<bool> {
        Ok(false)
    }

    /// `fsync` on the directory, so the new entry survives a crash.
    pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Whether a directory flush failed only because the file system
    /// cannot flush directories.
    pub(crate) fn dir_sync_unsupported(e: &io::Error) -> bool {
        use rustix::io::Errno;
        e.raw_os_error().is_some_and(|code| {
            let errno = Errno::from_raw_os_error(code);
            errno == Errno::INVAL || errno == Errno::BADF || errno == Errno::ISDIR
        })
    }

    /// Bytes available to this (unprivileged) user: `f_bavail × f_frsize`.
    pub(crate) fn available_space(dir: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Whether a process with this pid exists (it may belong to another
    /// user, or be a new process that reused the pid).
    pub(crate) fn process_alive(pid: u32) -> bool {
        let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        match rustix::process::test_kill_process(pid) {
            Ok(()) => true,
            Err(e) => e != rustix::io::Errno::SRCH,
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::*;

    /// Windows has no mode bits; `create_new` never follows a link.
    pub(crate) fn private_no_follow(_options: &mut OpenOptions) {}

    /// Only the read-only flag exists; a replaced file's is kept.
    pub(crate) fn set_final_mode(
        file: &File,
        existing: Option<&Metadata>,
        _mode: Option<u32>,
    ) -> io::Result<()> {
        match existing {
            Some(meta) if meta.is_file() => file.set_permissions(meta.permissions()),
            _ => Ok(()),
        }
    }

    /// No atomic exchange on Windows.
    pub(crate) fn exchange(_from: &Path, _to: &Path) -> io::Result<bool> {
        Ok(false)
    }

    /// `MoveFileExW(MOVEFILE_REPLACE_EXISTING)` through std, with POSIX
    /// semantics where the system supports them. Atomic, but without
    /// `MOVEFILE_WRITE_THROUGH`: the rename's durability is not promised
    /// on Windows (see `Durability`).
    pub(crate) fn rename_replace(from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Windows cannot flush a directory; the rename's durability rests on
    /// NTFS's journal.
    pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
        Ok(())
    }

    /// Windows reports no such case (it never flushes a directory).
    pub(crate) fn dir_sync_unsupported(_e: &io::Error) -> bool {
        false
    }

    /// Not checked on Windows.
    pub(crate) fn available_space(_dir: &Path) -> io::Result<u64> {
        Ok(u64::MAX)
    }

    /// Unknown on Windows: treated as alive, so only age removes orphans.
    pub(crate) fn process_alive(_pid: u32) -> bool {
        true
    }
}
