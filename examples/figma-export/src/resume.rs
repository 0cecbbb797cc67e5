//! The earlier run's checkpoint: continue it, discard it, or refuse.

use steadfast_checkpoint::{Config, FileStore, Opened};

use crate::error::ExportError;
use crate::export::Options;

/// What to do with an earlier run's checkpoint (`--resume`, `--resume=auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// Refuse to run over one, saying how to go on (the default).
    #[default]
    Off,
    /// Continue it (`--resume`); one that cannot be continued is refused.
    On,
    /// Continue it when valid, else start over, saying why (`--resume=auto`,
    /// for CI loops).
    Auto,
}

/// What became of an earlier run's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckpointUse {
    /// There was none.
    #[default]
    Fresh,
    /// It was continued: `done` items were already exported.
    Resumed {
        /// Items the earlier run finished.
        done: usize,
    },
    /// It was discarded (`--restart`, or `--resume=auto` on one that could
    /// not be continued).
    StartedOver {
        /// Why: "--restart", or the reason it could not be continued.
        reason: String,
    },
}

/// Opens the checkpoint as `--resume` / `--restart` say: every combination
/// of {none, valid, rejected} × {plain, `--resume`, `--resume=auto`,
/// `--restart`} ends here.
pub(crate) fn open_checkpoint(
    config: Config,
    options: &Options,
) -> Result<(FileStore<()>, CheckpointUse), ExportError> {
    let locked = |holder: Option<steadfast_checkpoint::Holder>| {
        let who = holder.map(|h| format!(" ({h})")).unwrap_or_default();
        ExportError::recoverable(format!(
            "✗ Another export{who} is writing to {}. Wait for it to finish, or use another --out.",
            options.out.display()
        ))
    };
    let open = |config: Config| match FileStore::<()>::open(config) {
        Err(steadfast_checkpoint::Error::Locked { holder, .. }) => Err(locked(holder)),
        Err(e) => Err(ExportError::recoverable(format!("✗ {e}"))),
        Ok(opened) => Ok(opened),
    };
    let discard_error = |e: steadfast_checkpoint::Error| {
        ExportError::recoverable(format!("✗ could not discard the earlier checkpoint: {e}"))
    };
    match open(config.clone())? {
        Opened::Fresh(store) => Ok((store, CheckpointUse::Fresh)),
        Opened::Resumed { store, .. } if options.restart => {
            // Discard it (snapshot, journal, lock) and take a fresh one.
            store.remove().map_err(discard_error)?;
            match open(config)? {
                Opened::Fresh(store) => Ok((
                    store,
                    CheckpointUse::StartedOver {
                        reason: "--restart discarded the earlier checkpoint".into(),
                    },
                )),
                _ => Err(ExportError::recoverable(
                    "✗ Another export recreated the checkpoint while this one discarded it; run again.",
                )),
            }
        }
        Opened::Resumed { store, .. } if options.resume != Resume::Off => {
            let done = store.completed().len();
            Ok((store, CheckpointUse::Resumed { done }))
        }
        Opened::Resumed { store, .. } => {
            let done = store.completed().len();
            Err(ExportError::usage(format!(
                "✗ An earlier export to {} stopped after {done} items. Run again with --resume to continue, --resume=auto to continue when possible, or --restart to start over.",
                options.out.display()
            )))
        }
        Opened::Rejected(rejected) if options.restart || options.resume == Resume::Auto => {
            let reason = if options.restart {
                "--restart discarded the earlier checkpoint".to_string()
            } else {
                format!(
                    "the earlier checkpoint cannot be continued ({})",
                    rejected.reason()
                )
            };
            Ok((
                rejected.discard().map_err(discard_error)?,
                CheckpointUse::StartedOver { reason },
            ))
        }
        Opened::Rejected(rejected) => Err(ExportError::usage(format!(
            "✗ Cannot resume: {}",
            rejected.reason()
        ))),
        _ => Err(ExportError::fatal("✗ unexpected checkpoint state")),
    }
}

impl CheckpointUse {
    /// Says what became of the earlier checkpoint, if there was one.
    pub(crate) fn announce(&self, progress: &crate::progress::Progress) {
        match self {
            Self::Fresh => {}
            Self::Resumed { done } => {
                progress.println(format!(
                    "Resuming: {done} items were done by an earlier run."
                ));
            }
            Self::StartedOver { reason } => progress.println(format!("Starting over: {reason}.")),
        }
    }
}
