//! The tower middleware (feature `tower`).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;
use crate::group::GroupQueue;
use crate::store::Store;

/// Skips work an earlier run finished, and records what this run finishes.
///
/// Each request carries a key (`key_of(&request)`). A key already recorded
/// is answered at once with [`Checkpointed::Skipped`], without calling the
/// inner service; otherwise the inner service runs and, when it succeeds
/// (so after a [`PersistLayer`](https://docs.rs/steadfast-atomicfs) below
/// it has written the file), the key is recorded, durably, before the
/// response is handed on. A crash between the write and the record redoes
/// that one item; nothing is ever recorded that was not done.
///
/// **Group commit.** Records are written by one writer on tokio's blocking
/// pool: the keys of every request that finished while the previous group
/// was being flushed go into the next [`Store::record`] call together, one
/// journal append and one flush for the lot. "Already done?" is answered
/// from memory for keys this layer recorded, and from the store otherwise,
/// without ever waiting on a flush on an async worker (while the writer
/// holds the store, the question goes to the blocking pool).
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
    shared: Arc<Shared<St>>,
    key_of: F,
}

impl<St, F: Clone> Clone for CheckpointLayer<St, F> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            key_of: self.key_of.clone(),
        }
    }
}

impl<St, F> CheckpointLayer<St, F> {
    /// Checkpoints through `store`, keying requests with `key_of`. Every
    /// service made by this layer (and its clones) shares one writer.
    pub fn new(store: Arc<Mutex<St>>, key_of: F) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                recorded: Mutex::default(),
                queue: GroupQueue::new(),
            }),
            key_of,
        }
    }
}

impl<S, St, F: Clone> Layer<S> for CheckpointLayer<St, F> {
    type Service = Checkpoint<S, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Checkpoint {
            inner,
            shared: Arc::clone(&self.shared),
            key_of: self.key_of.clone(),
        }
    }
}

/// The service of a [`CheckpointLayer`].
#[derive(Debug)]
pub struct Checkpoint<S, St, F> {
    inner: S,
    shared: Arc<Shared<St>>,
    key_of: F,
}

impl<S: Clone, St, F: Clone> Clone for Checkpoint<S, St, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
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

/// What the layer's clones share: the store, the keys recorded through
/// this layer, and the queue of keys waiting for the writer.
struct Shared<St> {
    store: Arc<Mutex<St>>,
    recorded: Mutex<HashSet<String>>,
    queue: GroupQueue<(String, oneshot::Sender<Result<(), Error>>)>,
}

impl<St> fmt::Debug for Shared<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<St: Store> Shared<St> {
    /// Whether `key` is done, if that can be told without waiting.
    fn is_done_now(&self, key: &str) -> Option<bool> {
        if lock(&self.recorded).contains(key) {
            return Some(true);
        }
        match self.store.try_lock() {
            Ok(store) => Some(store.is_done(key)),
            Err(TryLockError::Poisoned(store)) => Some(store.into_inner().is_done(key)),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Queues `key` for the writer (starting one if none runs) and waits
    /// until it is durably recorded.
    async fn record(self: Arc<Self>, key: String) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if self.queue.push((key, tx)) {
            let shared = Arc::clone(&self);
            tokio::task::spawn_blocking(move || shared.write_groups());
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::io(
                "record",
                "checkpoint",
                io::Error::other("the checkpoint writer stopped (a panic in the store?)"),
            ))
        })
    }

    /// The writer: records what is waiting, one group per flush, until
    /// nothing is. It lets go of the shared state *before* answering the
    /// last group, so that once every response is in, the caller can take
    /// the store back (`Arc::into_inner`) without racing the writer.
    fn write_groups(self: Arc<Self>) {
        let mut group = self.queue.first();
        loop {
            let (keys, waiters): (Vec<String>, Vec<_>) = group.into_iter().unzip();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let result = lock(&self.store).record(&refs);
            if result.is_ok() {
                lock(&self.recorded).extend(keys);
            }
            match self.queue.next() {
                None => {
                    drop(self);
                    answer(waiters, result);
                    return;
                }
                Some(more) => {
                    answer(waiters, result);
                    group = more;
                }
            }
        }
    }
}

/// Tells a group's waiters how their record went. On failure none of the
/// group is recorded: the first waiter gets the error itself, the others a
/// copy of its message.
fn answer(waiters: Vec<oneshot::Sender<Result<(), Error>>>, result: Result<(), Error>) {
    match result {
        Ok(()) => {
            for tx in waiters {
                let _ = tx.send(Ok(()));
            }
        }
        Err(error) => {
            let mut waiters = waiters.into_iter();
            let first = waiters.next();
            for tx in waiters {
                let copy = io::Error::other(error.to_string());
                let _ = tx.send(Err(Error::io("record", "checkpoint", copy)));
            }
            if let Some(tx) = first {
                let _ = tx.send(Err(error));
            }
        }
    }
}

impl<S, St, F, Req> Service<Req> for Checkpoint<S, St, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
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
        let shared = Arc::clone(&self.shared);
        match shared.is_done_now(&key) {
            Some(true) => Box::pin(std::future::ready(Ok(Checkpointed::Skipped))),
            Some(false) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await.map_err(CheckpointError::Service)?;
                    shared.record(key).await.map_err(CheckpointError::Record)?;
                    Ok(Checkpointed::Done(response))
                })
            }
            None => {
                // The writer holds the store: ask on the blocking pool,
                // and call the inner service only if the key is not done.
                // The instance polled ready goes into the future.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let store = Arc::clone(&shared.store);
                    let probe = key.clone();
                    let done = tokio::task::spawn_blocking(move || lock(&store).is_done(&probe))
                        .await
                        .unwrap_or(false);
                    if done {
                        return Ok(Checkpointed::Skipped);
                    }
                    let response = inner
                        .call(request)
                        .await
                        .map_err(CheckpointError::Service)?;
                    shared.record(key).await.map_err(CheckpointError::Record)?;
                    Ok(Checkpointed::Done(response))
                })
            }
        }
    }
}
