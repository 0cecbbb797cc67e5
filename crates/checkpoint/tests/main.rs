//! Integration tests of steadfast-checkpoint, on the real file system.

#![cfg(unix)]

mod crash;
mod flow;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steadfast_checkpoint::{config_hash, Config};

/// A fresh output directory under the target dir (on the real disk),
/// removed when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A settable clock (Unix seconds).
#[derive(Clone)]
pub(crate) struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub(crate) fn at(secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(secs)))
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    pub(crate) fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    pub(crate) fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// A config for the export job "file-abc" with `formats` as its settings.
pub(crate) fn config(dir: &Path, formats: &[&str], clock: &TestClock) -> Config {
    let clock = clock.clone();
    Config::new(dir, "file-abc", config_hash(formats).expect("hash"))
        .tool("figma-export", "0.1.0")
        .clock(move || clock.now())
}
