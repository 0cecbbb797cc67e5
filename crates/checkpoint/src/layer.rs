//! The tower middleware (feature `tower`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;
use crate::store::Store;

/// Skips work an earlier run finished, and records what this run finishes.
///
/// Each request carries a key (`key_of(&request)`). A key already recorded
/// is answered at once with [`Checkpointed::Skipped`], without calling the
/// inner service; otherwise the inner service runs and, when it succeeds
/// (so after a [`PersistLayer`](https://docs.rs/steadfast-atomicfs) below
/// it has written the file), the key is recorded, durably, on tokio's
/// blocking pool, before the response is handed on. A crash between the
/// write and the record redoes that one item; nothing is ever recorded
/// that was not done.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use steadfast_checkpoint::{config_hash, CheckpointLayer, Checkpointed, Config, FileStore, Opened};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let out = std::env::temp_dir().join(format!("sf-doc-ckpt-layer-{}", std::process::id()));
/// let config = Config::new(&out, "file-abc", config_hash(&["svg", "png"])?);
/// let Opened::Fresh(store) = FileStore::<()>::open(config)? else { unreachable!() };
/// let store = Arc::new(Mutex::new(store));
/// let layer = CheckpointLayer::new(Arc::clone(&store), |id: &String| id.clone());
/// let export = layer.layer(service_fn(|id: String| async move { Ok::<_, std::io::Error>(id.len()) }));
///
/// assert!(matches!(export.clone().oneshot("1:23".into()).await?, Checkpointed::Done(4)));
/// assert!(matches!(export.clone().oneshot("1:23".into()).await?, Checkpointed::Skipped));
/// # drop((export, layer));
/// # Arc::into_inner(store).unwrap().into_inner()?.remove()?;
/// # std::fs::remove_dir_all(&out)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CheckpointLayer<St, F> {
    store: Arc<Mutex<St>>,
    key_of: F,
}

impl<St, F: Clone> Clone for CheckpointLayer<St, F> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            key_of: self.key_of.clone(),
        }
    }
}

impl<St, F> CheckpointLayer<St, F> {
    /// Checkpoints through `store`, keying requests with `key_of`.
    pub fn new(store: Arc<Mutex<St>>, key_of: F) -> Self {
        Self { store, key_of }
    }
}

impl<S, St, F: Clone> Layer<S> for CheckpointLayer<St, F> {
    type Service = Checkpoint<S, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Checkpoint {
            inner,
            store: Arc::clone(&self.store),
            key_of: self.key_of.clone(),
        }
    }
}

/// The service of a [`CheckpointLayer`].
#[derive(Debug)]
pub struct Checkpoint<S, St, F> {
    inner: S,
    store: Arc<Mutex<St>>,
    key_of: F,
}

impl<S: Clone, St, F: Clone> Clone for Checkpoint<S, St, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: Arc::clone(&self.store),
            key_of: self.key_of.clone(),
        }
    }
}

/// The answer of a [`Checkpoint`] service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpointed<R> {
    /// An earlier run (or an earlier request) finished this key.
    Skipped,
    /// Done now, and recorded.
    Done(R),
}

/// The inner service failed, or recording its success did.
#[derive(Debug)]
pub enum CheckpointError<E> {
    /// The inner service's error, untouched; nothing was recorded.
    Service(E),
    /// The work was done but could not be recorded: it will be redone by
    /// a resumed run.
    Record(Error),
}

impl<E: fmt::Display> fmt::Display for CheckpointError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(e) => e.fmt(f),
            Self::Record(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CheckpointError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Service(e) => Some(e),
            Self::Record(e) => Some(e),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, St, F, Req> Service<Req> for Checkpoint<S, St, F>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    St: Store,
    F: Fn(&Req) -> String,
{
    type Response = Checkpointed<S::Response>;
    type Error = CheckpointError<S::Error>;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CheckpointError::Service)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key_of)(&request);
        let done = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_done(&key);
        if done {
            return Box::pin(std::future::ready(Ok(Checkpointed::Skipped)));
        }
        let call = self.inner.call(request);
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let response = call.await.map_err(CheckpointError::Service)?;
            let recorded = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(&[key.as_str()])
            })
            .await
            .unwrap_or_else(|join| {
                Err(Error::Io {
                    what: "record",
                    path: std::path::PathBuf::from("checkpoint"),
                    source: io::Error::other(join),
                })
            });
            recorded.map_err(CheckpointError::Record)?;
            Ok(Checkpointed::Done(response))
        })
    }
}
