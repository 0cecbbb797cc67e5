#![doc = include_str!("../README.md")]

mod error;
#[cfg(feature = "tower")]
mod group;
mod hash;
#[cfg(feature = "tower")]
mod layer;
mod store;

pub use error::{Error, Holder, Rejection};
pub use hash::config_hash;
#[cfg(feature = "tower")]
pub use layer::{Checkpoint, CheckpointError, CheckpointLayer, Checkpointed};
pub use store::{
    Clock, Config, FileStore, Opened, Rejected, Store, Torn, DEFAULT_MAX_AGE, DIR_NAME,
    FORMAT_VERSION,
};
