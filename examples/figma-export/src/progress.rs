//! The terminal output: phases with a bar, lines that say why it waits.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters shared with the retry hooks.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) retried: AtomicU64,
}

/// The progress line that says why it waits.
#[derive(Clone)]
pub(crate) struct Progress {
    bar: Arc<Mutex<ProgressBar>>,
    quiet: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            bar: Arc::new(Mutex::new(ProgressBar::hidden())),
            quiet,
        }
    }

    pub(crate) fn phase(&self, label: &str, len: u64) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        };
        *self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bar.clone();
        bar
    }

    /// Why it waits: on the bar's message, and as a line of its own when
    /// there is no terminal to draw the bar on.
    pub(crate) fn say(&self, message: String) {
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.quiet && bar.is_hidden() {
            eprintln!("  ↻ {message}");
        }
        bar.set_message(message);
    }

    pub(crate) fn println(&self, line: String) {
        if self.quiet {
            return;
        }
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    }
}
