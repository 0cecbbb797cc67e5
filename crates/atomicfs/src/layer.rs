//! A tower layer that writes what its inner service produces to a file,
//! atomically (feature `tower`).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Op};
use crate::sink::FileSink;

/// Wraps a service that produces bytes (`AsRef<[u8]>`: a `Vec<u8>`,
/// `Bytes`, a `String`) so that each response is written atomically to the
/// path `path_of(&request)` through a [`FileSink`], on tokio's blocking
/// pool. The service answers with [`Persisted`] once the file is committed.
///
/// ```
/// use std::path::PathBuf;
/// use steadfast_atomicfs::{Disk, PersistLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("sf-doc-persist-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let out = dir.clone();
/// let layer = PersistLayer::new(Disk::new(), move |name: &String| out.join(name));
/// let render = service_fn(|name: String| async move {
///     Ok::<_, std::convert::Infallible>(format!("<svg id=\"{name}\"/>"))
/// });
/// let saved = layer.layer(render).oneshot("star.svg".to_string()).await?;
/// assert_eq!(saved.bytes, 20);
/// assert_eq!(std::fs::read_to_string(dir.join("star.svg"))?, "<svg id=\"star.svg\"/>");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PersistLayer<K, F> {
    sink: K,
    path_of: F,
}

impl<K, F> PersistLayer<K, F> {
    /// Writes through `sink` to the path `path_of` derives from each
    /// request.
    pub fn new(sink: K, path_of: F) -> Self {
        Self { sink, path_of }
    }
}

impl<S, K: Clone, F: Clone> Layer<S> for PersistLayer<K, F> {
    type Service = Persist<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Persist {
            inner,
            sink: self.sink.clone(),
            path_of: self.path_of.clone(),
        }
    }
}

/// The service of a [`PersistLayer`].
#[derive(Clone, Debug)]
pub struct Persist<S, K, F> {
    inner: S,
    sink: K,
    path_of: F,
}

/// A response written to disk.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Persisted {
    /// Where it was written.
    pub path: PathBuf,
    /// How many bytes.
    pub bytes: u64,
}

/// The inner service failed, or the write did.
#[derive(Debug)]
pub enum PersistError<E> {
    /// The inner service's own error, untouched; nothing was written.
    Service(E),
    /// The bytes could not be written; the file keeps its old bytes.
    Persist(Error),
}

impl<E: fmt::Display> fmt::Display for PersistError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(e) => e.fmt(f),
            Self::Persist(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PersistError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Service(e) => Some(e),
            Self::Persist(e) => Some(e),
        }
    }
}

impl<S, K, F, Req> Service<Req> for Persist<S, K, F>
where
    S: Service<Req>,
    S::Response: AsRef<[u8]> + Send + 'static,
    K: FileSink + Clone + 'static,
    F: Fn(&Req) -> PathBuf,
{
    type Response = Persisted;
    type Error = PersistError<S::Error>;
    type Future = PersistFuture<S::Future, S::Response, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PersistError::Service)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let path = (self.path_of)(&request);
        PersistFuture {
            state: State::Calling {
                future: self.inner.call(request),
                write: Some((path, self.sink.clone())),
            },
        }
    }
}

pin_project! {
    /// The future of [`Persist`]: the inner call, then the write.
    pub struct PersistFuture<Fut, T, K> {
        #[pin]
        state: State<Fut, T, K>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, T, K> {
        Calling { #[pin] future: Fut, write: Option<(PathBuf, K)> },
        Writing { task: JoinHandle<Result<u64, Error>>, path: Option<PathBuf>, _body: std::marker::PhantomData<fn() -> T> },
    }
}

impl<Fut, T, E, K> Future for PersistFuture<Fut, T, K>
where
    Fut: Future<Output = Result<T, E>>,
    T: AsRef<[u8]> + Send + 'static,
    K: FileSink + 'static,
{
    type Output = Result<Persisted, PersistError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, write } => {
                    let body = ready!(future.poll(cx)).map_err(PersistError::Service)?;
                    let Some((path, sink)) = write.take() else {
                        unreachable!("the write is taken once, when the call completes")
                    };
                    let target = path.clone();
                    let task = tokio::task::spawn_blocking(move || {
                        let bytes = body.as_ref();
                        sink.write(&target, bytes).map(|()| bytes.len() as u64)
                    });
                    this.state.set(State::Writing {
                        task,
                        path: Some(path),
                        _body: std::marker::PhantomData,
                    });
                }
                StateProj::Writing { task, path, .. } => {
                    let joined = ready!(Pin::new(task).poll(cx));
                    let path = path.take().unwrap_or_default();
                    let written = match joined {
                        Ok(written) => written,
                        // The runtime is shutting down (or the sink
                        // panicked): the file keeps its old bytes.
                        Err(join) => Err(Error::io(Op::Write, &path, io::Error::other(join))),
                    };
                    return Poll::Ready(match written {
                        Ok(bytes) => Ok(Persisted { path, bytes }),
                        Err(error) => Err(PersistError::Persist(error)),
                    });
                }
            }
        }
    }
}

impl<Fut, T, K> fmt::Debug for PersistFuture<Fut, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistFuture").finish_non_exhaustive()
    }
}
