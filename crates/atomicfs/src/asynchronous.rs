//! Helpers for tokio: the blocking steps (write, fsync, rename) run on
//! tokio's blocking pool, never on the runtime's worker threads.

use std::io;
use std::path::PathBuf;

use crate::error::{Error, Op};
use crate::file::{write_with, Options};
use crate::orphans::{cleanup_orphans, Cleanup};

/// [`write_with`](crate::write_with) on tokio's blocking pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-async-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// use steadfast_atomicfs::{write_async, Options};
///
/// write_async(dir.join("image@2x.png"), b"\x89PNG\r\n\x1a\n".to_vec(), Options::new()).await?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`write`](crate::write()); if the blocking task itself fails (the
/// runtime is shutting down), an [`Op::Write`] error on `path`.
pub async fn write_async(
    path: impl Into<PathBuf>,
    bytes: impl Into<Vec<u8>>,
    options: Options,
) -> Result<(), Error> {
    let path = path.into();
    let bytes = bytes.into();
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_with(&path, bytes, options))
        .await
        .map_err(|join| Error::io(Op::Write, target, io::Error::other(join)))?
}

/// [`cleanup_orphans`](crate::cleanup_orphans) on tokio's blocking pool.
///
/// # Errors
///
/// As [`cleanup_orphans`](crate::cleanup_orphans).
pub async fn cleanup_orphans_async(dir: impl Into<PathBuf>) -> Result<Cleanup, Error> {
    let dir = dir.into();
    let listed = dir.clone();
    tokio::task::spawn_blocking(move || cleanup_orphans(&dir))
        .await
        .map_err(|join| Error::io(Op::ReadDir, listed, io::Error::other(join)))?
}
