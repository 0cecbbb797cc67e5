//! A fake Figma REST API on 127.0.0.1: a realistic, seeded file, the
//! endpoints the exporter uses, its own rate limit answering 429 with
//! `Retry-After` and Figma's headers, and a seeded schedule of faults
//! (5xx, dropped connections, slow replies). It logs every request it
//! receives. `--demo` runs against it; so do the end-to-end tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

mod faults;
mod file;
mod routes;

pub use faults::{Faults, Rng};
pub use file::{render, FakeFile, FakeNode};
use routes::{handle, Reply, State};

/// The token the fake server accepts.
pub const TOKEN: &str = "figd_demo-token";
/// The file key it serves.
pub const FILE_KEY: &str = "DemoFileKey123";

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// When it arrived.
    pub at: Instant,
    /// Path and query.
    pub uri: String,
    /// What the server answered (0: dropped).
    pub status: u16,
    /// Whether it carried the token.
    pub with_token: bool,
}

/// A running fake server. It stops when the runtime that started it does.
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// Starts a server for `file` with `faults` on an ephemeral port of
    /// 127.0.0.1.
    ///
    /// # Errors
    ///
    /// The port could not be bound.
    pub async fn start(file: FakeFile, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            rng: Rng::new(faults.seed ^ 0xFA17),
            versions: vec![file.version.clone()],
            file,
            faults,
            log: Vec::new(),
            api_requests: 0,
            tat: None,
            addr,
        }));
        let server = Self {
            addr,
            state: Arc::clone(&state),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let (reply, delay) = handle(&state, &request);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        match reply {
                            Reply::Answer(response) => Ok(response),
                            Reply::Drop => Err(std::io::Error::other("dropped on purpose")),
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(server)
    }

    /// `http://127.0.0.1:port`: the `--api-url` to use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .clone()
    }

    /// Replaces the faults (e.g. a storm for the second half of a test).
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.rng = Rng::new(faults.seed ^ 0xFA17);
        state.faults = faults;
    }

    /// The file it serves.
    pub fn file(&self) -> FakeFile {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .clone()
    }
}
