#![doc = include_str!("../README.md")]

#[cfg(feature = "tokio")]
mod asynchronous;
mod batch;
mod error;
mod file;
#[cfg(feature = "tower")]
mod layer;
mod orphans;
mod platform;
mod sink;
mod temp;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "tokio")]
pub use asynchronous::{cleanup_orphans_async, write_async};
pub use batch::{Batch, BatchError};
pub use error::{Error, ErrorKind, Op};
pub use file::{
    private_file_options, sync_dir, write, write_with, AtomicFile, Durability, Options,
    DEFAULT_SPACE_MARGIN,
};
#[cfg(feature = "tower")]
pub use layer::{Persist, PersistError, PersistFuture, PersistLayer, Persisted};
pub use orphans::{cleanup_orphans, cleanup_orphans_older_than, Cleanup, DEFAULT_MAX_AGE};
pub use sink::{Disk, FileSink};
