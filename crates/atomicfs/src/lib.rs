#![doc = include_str!("../README.md")]

#[cfg(feature = "tokio")]
mod asynchronous;
mod error;
mod file;
mod orphans;
mod platform;
mod temp;

#[cfg(feature = "tokio")]
pub use asynchronous::{cleanup_orphans_async, write_async};
pub use error::{Error, ErrorKind, Op};
pub use file::{write, write_with, AtomicFile, Durability, Options, DEFAULT_SPACE_MARGIN};
pub use orphans::{cleanup_orphans, cleanup_orphans_older_than, Cleanup, DEFAULT_MAX_AGE};
