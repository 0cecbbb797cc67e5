//! Why an export stopped, with its exit code and what to do.

use std::fmt;

use bytes::Bytes;
use http::Response;
use steadfast_atomicfs::PersistError;
use steadfast_backoff::{ErrorKind as RetryKind, RetryError};
use steadfast_checkpoint::CheckpointError;
use steadfast_ratelimit::RateLimitError;
use tower::BoxError;

use crate::export::Summary;
use crate::figma::{check_status, figma_limits, verdict};
use crate::stack::DownloadError;

/// What kind of stop an [`ExportError`] is: its exit code, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit 2: bad flags, or a checkpoint that needs `--resume` or `--restart`.
    Usage,
    /// Exit 3: try again later, or with `--resume`.
    Recoverable,
    /// Exit 4: fix the token, the file key or the output path.
    Fatal,
}

/// Why an export stopped, with its exit code.
#[derive(Debug)]
pub struct ExportError {
    /// 2 usage, 3 recoverable (resume later), 4 fatal.
    pub code: i32,
    /// What to tell the user, with the next step.
    pub message: String,
    /// What the export itself can act on.
    pub(crate) cause: Option<Cause>,
}

/// Failures the export reacts to, rather than only reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `/v1/images` gave up rendering the batch in time: split it.
    RenderTimeout,
}

impl ExportError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
            cause: None,
        }
    }

    pub(crate) fn recoverable(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
            cause: None,
        }
    }

    pub(crate) fn because(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// What kind of stop this is (the exit code, typed).
    pub fn kind(&self) -> ExitKind {
        match self.code {
            2 => ExitKind::Usage,
            3 => ExitKind::Recoverable,
            _ => ExitKind::Fatal,
        }
    }

    pub(crate) fn fatal(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
            cause: None,
        }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) const RESUME_HINT: &str = "Try again later, or run again with --resume";

/// The checkpoint is kept (every finished item is already recorded): say
/// how far it got.
pub(crate) fn stopped(error: ExportError, summary: &Summary) -> ExportError {
    if error.kind() == ExitKind::Recoverable {
        ExportError::recoverable(format!(
            "{}\n  {} files written before stopping; the checkpoint is saved.",
            error.message, summary.exported
        ))
    } else {
        error
    }
}

/// A request the retry layer gave up on.
pub(crate) fn api_failure(
    error: &RetryError<Response<Bytes>, RateLimitError<BoxError>>,
) -> ExportError {
    let figma = match error.last() {
        Ok(response) => figma_limits(response),
        Err(_) => String::new(),
    };
    match error.kind() {
        RetryKind::RetryAfterTooLong => ExportError::recoverable(format!(
            "✗ Export failed: rate limited; Figma asks to wait {}, more than --max-retry-after allows.{figma}\n  {RESUME_HINT} once the wait is over.",
            error
                .retry_after()
                .map(|d| steadfast_backoff::HumanDuration(d).to_string())
                .unwrap_or_else(|| "long".into())
        )),
        RetryKind::Fatal => match error.last() {
            Ok(response) => check_status(response)
                .err()
                .unwrap_or_else(|| ExportError::fatal(format!("✗ Export failed: {error}"))),
            Err(e) => ExportError::fatal(format!("✗ Export failed: {e}")),
        },
        _ => match error.last() {
            Ok(response) if verdict(response).is_throttled() => ExportError::recoverable(format!(
                "✗ Export failed: rate limited after {} retries.{figma}\n  {RESUME_HINT}",
                error.retries()
            )),
            Ok(response) if response.status().is_client_error() => check_status(response)
                .err()
                .unwrap_or_else(|| ExportError::fatal(format!("✗ Export failed: {error}"))),
            _ => ExportError::recoverable(format!("✗ Export failed: {error}, or run again with --resume")),
        },
    }
}

pub(crate) fn write_failure(error: &steadfast_atomicfs::Error) -> ExportError {
    if error.is_recoverable() {
        ExportError::recoverable(format!("✗ Export failed: {error}. {RESUME_HINT}"))
    } else {
        ExportError::fatal(format!("✗ Export failed: {error}"))
    }
}

pub(crate) fn download_failure(
    error: CheckpointError<PersistError<RetryError<Bytes, DownloadError>>>,
) -> ExportError {
    match error {
        CheckpointError::Service(PersistError::Service(e)) => {
            ExportError::recoverable(format!("✗ Export failed: {e}. {RESUME_HINT}"))
        }
        CheckpointError::Service(PersistError::Persist(e)) => write_failure(&e),
        CheckpointError::Record(e) => {
            ExportError::recoverable(format!("✗ Export failed: {e}. {RESUME_HINT}"))
        }
        #[allow(unreachable_patterns)]
        _ => ExportError::recoverable(format!("✗ Export failed. {RESUME_HINT}")),
    }
}
