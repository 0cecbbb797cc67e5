//! One quota shared by many processes and machines, held in Redis (feature
//! `redis`).
//!
//! [`RedisLimiter`] implements [`Limiter`]: a drop-in for
//! [`TokenBucket`] behind the tower layer or the
//! middleware. Every worker that uses the same Redis and the same `name`
//! shares one GCRA timeline.
//!
//! * **GCRA in one Lua script per call**, run by `EVALSHA` (reloaded when
//!   the server answers `NOSCRIPT`, after a restart or `SCRIPT FLUSH`), on
//!   the server's clock (`TIME`) unless [`Builder::client_time`] is set. Keys
//!   carry a Cluster hash tag (`steadfast:{name}:tat`, `steadfast:{name}:state`)
//!   and expire once idle.
//! * **Reservations, not polling:** a waiter books its slot in one round
//!   trip and sleeps once until it; when it wakes it confirms that no pause
//!   was set meanwhile (a second round trip, only for waiters). A waiter
//!   dropped before its slot hands it back if no one booked after it (a
//!   slot whose booking was still on the wire is lost, never doubled).
//! * **Leases** ([`Builder::lease`]): `k` consecutive slots per round trip.
//!   A lease is not cut by another worker's pause or throttle until it is
//!   used up, so each worker may send up to `k` permits the shared state
//!   no longer allows: the overshoot is at most `k × workers`.
//! * **Shared adaptation:** a throttle seen by one worker cuts the shared
//!   rate (×0.7; throttles of requests sent before the last cut are
//!   stale), a `Retry-After` or an exhausted quota sets one pause-until for
//!   every worker; recovery (+10 % per quiet second or ten intervals) is
//!   shared too. Simpler than the local bracketing controller: no probing.
//! * **A store that is down or slow** ([`FailurePolicy`]): fail closed (a
//!   typed [`AcquireError::Backend`]), fail open, or fall back to a local
//!   bucket at `rate / share`. Round trips time out ([`Builder::timeout`]),
//!   the connection is re-established in the background, and after a
//!   failure the store is left alone for [`Builder::retry_after`] before the
//!   next try. A request is admitted by the store or by the fallback, never
//!   both.
//! * [`Limiter::status`] shows the shared state as last seen: the
//!   effective rate, the pause and who set it, whether the store is
//!   reachable and what the fallback is doing.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::ConnectionManager;
use ::redis::{Script, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bucket::TokenBucket;
use crate::limiter::{
    AcquireError, Admission, BackendError, BackendErrorKind, Feedback, LimitFuture, Limiter,
    Outcome, TryAcquireError,
};
use crate::rate::Rate;
use crate::status::{PauseCause, RateSource, Status, StoreStatus};

const TARGET: &str = "steadfast_ratelimit::redis";
const STORE: &str = "redis";

/// What a [`RedisLimiter`] does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse: acquisitions fail with [`AcquireError::Backend`]. Nothing is
    /// sent that the shared quota did not allow. The default.
    FailClosed,
    /// Admit everything, unlimited, until the store is back (for traffic
    /// where a 429 costs less than a stop).
    FailOpen,
    /// Limit with a bucket in this process at `rate / share` (`share`: the
    /// number of workers that usually share the quota), so the workers
    /// together stay near the quota.
    LocalBucket {
        /// The divisor of the configured rate (at least 1).
        share: u32,
    },
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailClosed => f.write_str("fail closed"),
            Self::FailOpen => f.write_str("fail open"),
            Self::LocalBucket { share: 0 | 1 } => f.write_str("local bucket at the full rate"),
            Self::LocalBucket { share } => write!(f, "local bucket at 1/{share} of the rate"),
        }
    }
}

/// How a [`RedisLimiter`] tells time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// Redis's `TIME`: one clock for every worker.
    Server,
    /// This machine's wall clock: every worker's clock must agree.
    Client,
}

/// Settings of a [`RedisLimiter`]; from [`RedisLimiter::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    url: String,
    name: String,
    rate: Rate,
    prefix: String,
    clock: Clock,
    lease: u32,
    policy: FailurePolicy,
    timeout: Duration,
    retry_after: Duration,
    worker: Option<String>,
    max_wait: Option<Duration>,
    max_pause: Duration,
    adaptive: bool,
    floor: Option<Rate>,
    idle_ttl: Duration,
}

impl Builder {
    /// Key prefix (default `steadfast:`); keys are `{prefix}{{name}}:tat`
    /// and `{prefix}{{name}}:state`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Tell time by this machine's clock instead of the server's `TIME`
    /// (every worker's clock must then agree).
    #[must_use]
    pub fn client_time(mut self) -> Self {
        self.clock = Clock::Client;
        self
    }

    /// Take `k` consecutive slots per round trip (default 1: none). See the
    /// module docs for the overshoot this allows.
    #[must_use]
    pub fn lease(mut self, k: u32) -> Self {
        self.lease = k.max(1);
        self
    }

    /// What to do while the store cannot be reached (default
    /// [`FailurePolicy::FailClosed`]).
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The longest a round trip may take before it counts as a failure
    /// (default 500 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After a failure, how long to use the failure policy before trying
    /// the store again (default 1 s).
    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// This worker's name in the shared state ("who set the pause");
    /// default `pid <pid>`.
    #[must_use]
    pub fn worker(mut self, name: impl Into<String>) -> Self {
        self.worker = Some(name.into());
        self
    }

    /// Refuse ([`AcquireError::WaitTooLong`]) instead of booking a slot
    /// further away than `max`.
    #[must_use]
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// The longest pause a `Retry-After` may set (default 5 min).
    #[must_use]
    pub fn max_pause(mut self, max: Duration) -> Self {
        self.max_pause = max;
        self
    }

    /// Whether throttles cut the shared rate (default on; pauses apply
    /// either way).
    #[must_use]
    pub fn adaptive(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }

    /// The lowest rate adaptation may cut to (default 1/20 of the rate).
    #[must_use]
    pub fn floor(mut self, floor: Rate) -> Self {
        self.floor = Some(floor);
        self
    }

    /// How long the shared state outlives the last call (default 1 h).
    #[must_use]
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = ttl;
        self
    }

    /// Makes the limiter. The connection is made on first use, and
    /// re-made after a failure, so this succeeds while Redis is down (the
    /// failure policy then applies; [`RedisLimiter::ping`] checks).
    ///
    /// # Errors
    ///
    /// A [`BackendError`] of kind [`BackendErrorKind::Invalid`] when the URL
    /// is not a Redis URL, or when called outside a tokio runtime.
    pub fn build(self) -> Result<RedisLimiter, BackendError> {
        let client = ::redis::Client::open(self.url.as_str()).map_err(|e| {
            BackendError::new(
                STORE,
                BackendErrorKind::Invalid,
                format!(
                    "{:?} is not a Redis URL ({e}); use redis://host:port/db",
                    self.url
                ),
            )
        })?;
        // The connection manager and the feedback task live on the runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(BackendError::new(
                STORE,
                BackendErrorKind::Invalid,
                "RedisLimiter::build was called outside a tokio runtime; build it inside one \
                 (in an async fn, or within Runtime::block_on / Handle::enter)",
            ));
        };
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.retry_after);
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            BackendError::new(STORE, BackendErrorKind::Invalid, e.to_string()).with_source(e)
        })?;
        let interval_us = micros_per_permit(self.rate.per_second());
        let floor = self
            .floor
            .map_or(self.rate.per_second() / 20.0, |f| f.per_second())
            .min(self.rate.per_second());
        let fallback = match self.policy {
            FailurePolicy::LocalBucket { share } => {
                let per_second = self.rate.per_second() / f64::from(share.max(1));
                Some(TokenBucket::new(rate_near(per_second, self.rate.burst())))
            }
            _ => None,
        };
        let (feedback, queue) = mpsc::unbounded_channel();
        let worker = self
            .worker
            .unwrap_or_else(|| format!("pid {}", std::process::id()));
        let shared = Arc::new(Shared {
            manager,
            tat_key: format!("{}{{{}}}:tat", self.prefix, self.name),
            state_key: format!("{}{{{}}}:state", self.prefix, self.name),
            configured: self.rate,
            interval_us,
            slowest_us: micros_per_permit(floor),
            burst: self.rate.burst(),
            clock: self.clock,
            lease: self.lease,
            policy: self.policy,
            timeout: self.timeout,
            retry_after: self.retry_after,
            worker,
            max_wait: self.max_wait,
            max_pause: self.max_pause,
            adaptive: self.adaptive,
            idle_ttl_ms: u64::try_from(self.idle_ttl.as_millis()).unwrap_or(u64::MAX),
            fallback,
            seen: Mutex::new(Seen::default()),
            down_until: Mutex::new(None),
            reachable: AtomicBool::new(true),
            leases: tokio::sync::Mutex::new(Lease::default()),
            feedback,
            admitted: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            scripts: Scripts::new(),
        });
        // Feedback goes out in the background, in order; the task ends when
        // the last handle is dropped.
        runtime.spawn(send_feedback(Arc::downgrade(&shared), queue));
        Ok(RedisLimiter { shared })
    }
}

/// A limiter whose state lives in Redis, shared by every worker that uses
/// the same server and name. A cheap clonable handle.
///
/// ```no_run
/// use steadfast_ratelimit::redis::{FailurePolicy, RedisLimiter};
/// use steadfast_ratelimit::{Limiter, RateLimitLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisLimiter::builder("redis://127.0.0.1:6379/0", "figma-api", "100/min".parse()?)
///     .failure_policy(FailurePolicy::LocalBucket { share: 4 })
///     .build()?;
/// limiter.acquire(1).await?;
/// let layer = RateLimitLayer::new(limiter.clone());
/// # drop(layer);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    manager: ConnectionManager,
    tat_key: String,
    state_key: String,
    configured: Rate,
    interval_us: u64,
    slowest_us: u64,
    burst: u32,
    clock: Clock,
    lease: u32,
    policy: FailurePolicy,
    timeout: Duration,
    retry_after: Duration,
    worker: String,
    max_wait: Option<Duration>,
    max_pause: Duration,
    adaptive: bool,
    idle_ttl_ms: u64,
    fallback: Option<TokenBucket>,
    /// The shared state as last seen.
    seen: Mutex<Seen>,
    /// While the store is considered down: when to try it again.
    down_until: Mutex<Option<Instant>>,
    reachable: AtomicBool,
    leases: tokio::sync::Mutex<Lease>,
    feedback: mpsc::UnboundedSender<Report>,
    admitted: AtomicU64,
    waited: AtomicU64,
    throttled: AtomicU64,
    /// Callers asleep until their slot.
    waiting: AtomicU64,
    scripts: Scripts,
}

struct Scripts {
    acquire: Script,
    cancel: Script,
    feedback: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            acquire: Script::new(concat!(
                include_str!("prelude.lua"),
                include_str!("acquire.lua")
            )),
            cancel: Script::new(include_str!("cancel.lua")),
            feedback: Script::new(concat!(
                include_str!("prelude.lua"),
                include_str!("feedback.lua")
            )),
        }
    }
}

/// The shared state as last seen, with the local instant it was seen at.
#[derive(Default)]
struct Seen {
    /// Server time (µs) and the local instant of the last reply.
    sync: Option<(u64, Instant)>,
    interval_us: u64,
    pause_until_us: u64,
    set_by: Option<Arc<str>>,
    pause_cause: Option<PauseCause>,
    last_error: Option<Arc<str>>,
}

/// Slots leased and not yet used. Slot `i` ends the arrival time at
/// `base + (i + 1) × interval`: GCRA allows it from `tolerance` before that,
/// and it goes stale `tolerance` after (using it later would bunch
/// requests beyond the burst).
#[derive(Default)]
struct Lease {
    base: Option<Instant>,
    interval: Duration,
    tolerance: Duration,
    taken: u32,
    total: u32,
}

impl Lease {
    /// The next slot's earliest instant, unless none is left or it is stale.
    fn take(&mut self, now: Instant) -> Option<Instant> {
        let base = self.base?;
        while self.taken < self.total {
            let end = base + self.interval * (self.taken + 1);
            self.taken += 1;
            if end + self.tolerance >= now {
                return Some(end.checked_sub(self.tolerance).unwrap_or(now));
            }
        }
        None
    }
}

/// Feedback on its way to the store.
struct Report {
    outcome: Outcome,
    sent_at: Option<Instant>,
    pause: Option<(Duration, PauseCause)>,
}

/// The acquire script's reply.
#[derive(Clone, Copy, Debug)]
struct Reply {
    code: i64,
    wait_us: u64,
    now_us: u64,
    interval_us: u64,
    pause_until_us: u64,
    tat_us: u64,
}

/// What [`RedisLimiter::try_at`] and [`RedisLimiter::reserve_at`] found:
/// the script's decision, in the script's microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Granted now (`try_at`) or booked (`reserve_at`).
    pub admitted: bool,
    /// How long until the permits are allowed (zero: now).
    pub wait_us: u64,
    /// The arrival time the script left at the key.
    pub tat_us: u64,
}

fn micros_per_permit(per_second: f64) -> u64 {
    (1e6 / per_second).ceil().clamp(1.0, u64::MAX as f64) as u64
}

/// A [`Rate`] of about `per_second` (exact for whole permits per second,
/// minute, hour or day).
fn rate_near(per_second: f64, burst: u32) -> Rate {
    let candidates = [
        (per_second, crate::rate::Per::Second),
        (per_second * 60.0, crate::rate::Per::Minute),
        (per_second * 3600.0, crate::rate::Per::Hour),
        (per_second * 86_400.0, crate::rate::Per::Day),
    ];
    for (permits, per) in candidates {
        if permits >= 1.0 && (permits.round() - permits).abs() < 1e-6 {
            if let Ok(rate) = Rate::new(permits.round() as u32, per) {
                return rate.with_burst(burst).unwrap_or(rate);
            }
        }
    }
    let per_day = (per_second * 86_400.0)
        .round()
        .clamp(1.0, f64::from(u32::MAX)) as u32;
    Rate::new(per_day, crate::rate::Per::Day).expect("a positive count is a valid rate")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn backend(error: &::redis::RedisError) -> BackendError {
    let kind = if error.is_timeout() {
        BackendErrorKind::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        BackendErrorKind::Unavailable
    } else {
        BackendErrorKind::Protocol
    };
    BackendError::new(STORE, kind, error.to_string()).with_source(error.clone())
}

fn int(value: &Value) -> Result<i64, BackendError> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol(format!("expected a number, got {value:?}"))),
        other => Err(protocol(format!("expected a number, got {other:?}"))),
    }
}

fn protocol(message: String) -> BackendError {
    BackendError::new(STORE, BackendErrorKind::Protocol, message)
}

fn unsigned(value: &Value) -> Result<u64, BackendError> {
    Ok(u64::try_from(int(value)?.max(0)).unwrap_or(0))
}

fn bytes(value: &Value) -> &[u8] {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(s) => s.as_bytes(),
        _ => &[],
    }
}

fn text(value: &Value) -> Option<Arc<str>> {
    let bytes = bytes(value);
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).as_ref().into())
}

/// Keeps `slot` as it is when `value` says the same (every reply carries
/// the worker that set the state: no allocation per round trip for it).
fn update_text(slot: &mut Option<Arc<str>>, value: &Value) {
    let new = bytes(value);
    if slot.as_deref().map_or(&[][..], str::as_bytes) != new {
        *slot = text(value);
    }
}

/// The pause cause the scripts store (the text `PauseCause` displays).
fn pause_cause(value: &Value) -> Option<PauseCause> {
    match text(value).as_deref() {
        Some("quota used up") => Some(PauseCause::QuotaExhausted),
        Some(_) => Some(PauseCause::RetryAfter),
        None => None,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RedisLimiter {
    /// A limiter at `rate` shared under `name` by everyone using the Redis
    /// at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>, name: impl Into<String>, rate: Rate) -> Builder {
        Builder {
            url: url.into(),
            name: name.into(),
            rate,
            prefix: "steadfast:".into(),
            clock: Clock::Server,
            lease: 1,
            policy: FailurePolicy::FailClosed,
            timeout: Duration::from_millis(500),
            retry_after: Duration::from_secs(1),
            worker: None,
            max_wait: None,
            max_pause: crate::DEFAULT_MAX_PAUSE,
            adaptive: true,
            floor: None,
            idle_ttl: Duration::from_secs(3600),
        }
    }

    /// The two keys this limiter uses (the arrival time, the shared state).
    pub fn keys(&self) -> (&str, &str) {
        (&self.shared.tat_key, &self.shared.state_key)
    }

    /// One round trip to the store.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] if it cannot be reached.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut connection = self.shared.manager.clone();
        let result = tokio::time::timeout(
            self.shared.timeout,
            ::redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.shared.error(&e)),
            Err(_) => Err(self.shared.timed_out()),
        }
    }

    /// The script's decision for `n` permits at `now_micros` (the caller's
    /// own clock, in microseconds), admitting them only if they are free
    /// then: GCRA exactly as [`gcra::decide`](crate::gcra::decide), for
    /// simulations and tests. Touches the same keys as the limiter.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] if the store fails.
    pub async fn try_at(&self, now_micros: u64, n: u32) -> Result<Decision, BackendError> {
        self.decide_at(now_micros, n, "try").await
    }

    /// As [`RedisLimiter::try_at`], but booking the slot however far it is
    /// ([`gcra::reserve`](crate::gcra::reserve)).
    ///
    /// # Errors
    ///
    /// The [`BackendError`] if the store fails.
    pub async fn reserve_at(&self, now_micros: u64, n: u32) -> Result<Decision, BackendError> {
        self.decide_at(now_micros, n, "reserve").await
    }

    async fn decide_at(&self, now: u64, n: u32, mode: &str) -> Result<Decision, BackendError> {
        let reply = self.shared.run_acquire(Some(now), n, mode).await?;
        Ok(Decision {
            admitted: reply.code == 1,
            wait_us: reply.wait_us,
            tat_us: reply.tat_us,
        })
    }
}

impl Shared {
    /// The client's error as a [`BackendError`]; its own timeouts say
    /// which timeout.
    fn error(&self, error: &::redis::RedisError) -> BackendError {
        if error.is_timeout() {
            self.timed_out().with_source(error.clone())
        } else {
            backend(error)
        }
    }

    fn timed_out(&self) -> BackendError {
        BackendError::new(
            STORE,
            BackendErrorKind::Timeout,
            format!("no answer within {:?}", self.timeout),
        )
    }

    fn now_arg(&self, explicit: Option<u64>) -> String {
        match (explicit, self.clock) {
            (Some(now), _) => now.to_string(),
            (None, Clock::Server) => String::new(),
            (None, Clock::Client) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, micros)
                .to_string(),
        }
    }

    /// Whether the store is considered down (after a failure, for
    /// `retry_after`).
    fn is_down(&self) -> bool {
        let mut down = lock(&self.down_until);
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }

    fn failed(&self, error: &BackendError) {
        if self.reachable.swap(false, Relaxed) {
            tracing::warn!(target: TARGET, %error, policy = %self.policy, "the shared limiter's store is unreachable");
        }
        lock(&self.seen).last_error = Some(error.to_string().into());
        *lock(&self.down_until) = Some(Instant::now() + self.retry_after);
    }

    fn succeeded(&self) {
        if !self.reachable.swap(true, Relaxed) {
            tracing::info!(target: TARGET, "the shared limiter's store is back");
        }
        lock(&self.seen).last_error = None;
    }

    async fn run_acquire(
        &self,
        now: Option<u64>,
        n: u32,
        mode: &str,
    ) -> Result<Reply, BackendError> {
        let max_wait = match (mode, self.max_wait) {
            ("reserve" | "lease", Some(max)) => i64::try_from(micros(max)).unwrap_or(i64::MAX),
            _ => -1,
        };
        let mut invocation = self.scripts.acquire.prepare_invoke();
        invocation
            .key(&self.tat_key)
            .key(&self.state_key)
            .arg(self.now_arg(now))
            .arg(n)
            .arg(self.interval_us)
            .arg(self.burst)
            .arg(max_wait)
            .arg(mode)
            .arg(1_000_u64);
        let mut connection = self.manager.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<Vec<Value>>(&mut connection),
        )
        .await;
        let values = match result {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                let error = self.error(&e);
                self.failed(&error);
                return Err(error);
            }
            Err(_) => {
                let error = self.timed_out();
                self.failed(&error);
                return Err(error);
            }
        };
        if values.len() < 8 {
            return Err(protocol(format!("the acquire script answered {values:?}")));
        }
        let reply = Reply {
            code: int(&values[0])?,
            wait_us: unsigned(&values[1])?,
            now_us: unsigned(&values[2])?,
            interval_us: unsigned(&values[3])?,
            pause_until_us: unsigned(&values[4])?,
            tat_us: unsigned(&values[5])?,
        };
        self.succeeded();
        let mut seen = lock(&self.seen);
        // The reply's `now` was read about halfway through the round trip.
        seen.sync = Some((reply.now_us, started + started.elapsed() / 2));
        seen.interval_us = reply.interval_us;
        seen.pause_until_us = reply.pause_until_us;
        update_text(&mut seen.set_by, &values[6]);
        seen.pause_cause = pause_cause(&values[7]);
        Ok(reply)
    }

    /// A local instant on the server's clock, from the last reply.
    fn server_micros(&self, at: Instant) -> Option<u64> {
        let (server, local) = lock(&self.seen).sync?;
        Some(if at >= local {
            server + micros(at - local)
        } else {
            server.saturating_sub(micros(local - at))
        })
    }

    /// The failure policy's answer to an acquisition the store could not
    /// serve.
    async fn fall_back(&self, n: u32, error: BackendError) -> Result<Admission, AcquireError> {
        let admission = match (&self.policy, &self.fallback) {
            (FailurePolicy::FailOpen, _) => Admission {
                waited: Duration::ZERO,
                at: Instant::now(),
            },
            (FailurePolicy::LocalBucket { .. }, Some(bucket)) => bucket.acquire(n).await?,
            _ => return Err(AcquireError::Backend(error)),
        };
        self.admitted.fetch_add(u64::from(n), Relaxed);
        Ok(admission)
    }

    async fn acquire(self: &Arc<Self>, n: u32) -> Result<Admission, AcquireError> {
        if self.is_down() {
            return self.fall_back(n, self.unreachable()).await;
        }
        if self.lease > 1 && n == 1 {
            return self.acquire_leased().await;
        }
        let start = Instant::now();
        let reply = match self.run_acquire(None, n, "reserve").await {
            Ok(reply) => reply,
            Err(error) => return self.fall_back(n, error).await,
        };
        match reply.code {
            -1 => {
                return Err(AcquireError::Insufficient {
                    requested: n,
                    burst: self.burst,
                })
            }
            0 => {
                return Err(AcquireError::WaitTooLong {
                    wait: Duration::from_micros(reply.wait_us),
                    max: self.max_wait.unwrap_or(Duration::MAX),
                })
            }
            _ => {}
        }
        if reply.wait_us > 0 {
            let mut guard = Booking {
                shared: Some(Arc::clone(self)),
                tat_us: reply.tat_us,
                cost_us: u64::from(n) * reply.interval_us,
            };
            let mut wait = Duration::from_micros(reply.wait_us);
            let _asleep = Asleep::new(&self.waiting);
            loop {
                tokio::time::sleep(wait).await;
                // A pause may have been set while we slept: confirm.
                match self.run_acquire(None, n, "confirm").await {
                    Ok(confirm) if confirm.wait_us > 0 => {
                        // Booked again, after the pause.
                        wait = Duration::from_micros(confirm.wait_us);
                        guard.tat_us = confirm.tat_us;
                        guard.cost_us = u64::from(n) * confirm.interval_us;
                    }
                    // Confirmed, or the store went away after booking: the
                    // slot was ours.
                    _ => break,
                }
            }
            guard.disarm();
            self.waited.fetch_add(1, Relaxed);
        }
        self.admitted.fetch_add(u64::from(n), Relaxed);
        Ok(Admission {
            waited: start.elapsed(),
            at: Instant::now(),
        })
    }

    async fn acquire_leased(self: &Arc<Self>) -> Result<Admission, AcquireError> {
        let start = Instant::now();
        let mut lease = self.leases.lock().await;
        let slot = loop {
            if let Some(slot) = lease.take(Instant::now()) {
                break slot;
            }
            let reply = match self.run_acquire(None, self.lease, "lease").await {
                Ok(reply) => reply,
                Err(error) => {
                    drop(lease);
                    return self.fall_back(1, error).await;
                }
            };
            if reply.code == 0 {
                return Err(AcquireError::WaitTooLong {
                    wait: Duration::from_micros(reply.wait_us),
                    max: self.max_wait.unwrap_or(Duration::MAX),
                });
            }
            // The booked slots start at `base` (server time): the script
            // left the arrival time at base + k × interval.
            let received = Instant::now();
            let interval = Duration::from_micros(reply.interval_us);
            let base_us = reply
                .tat_us
                .saturating_sub(u64::from(self.lease) * reply.interval_us);
            *lease = Lease {
                base: Some(received + Duration::from_micros(base_us.saturating_sub(reply.now_us))),
                interval,
                tolerance: interval * self.burst,
                taken: 0,
                total: self.lease,
            };
        };
        drop(lease);
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
            self.waited.fetch_add(1, Relaxed);
        }
        self.admitted.fetch_add(1, Relaxed);
        Ok(Admission {
            waited: start.elapsed(),
            at: Instant::now(),
        })
    }

    async fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        if self.is_down() {
            return self.try_fall_back(n, self.unreachable());
        }
        match self.run_acquire(None, n, "try").await {
            Ok(reply) => match reply.code {
                1 => {
                    self.admitted.fetch_add(u64::from(n), Relaxed);
                    Ok(())
                }
                -1 => Err(TryAcquireError::Insufficient {
                    requested: n,
                    burst: self.burst,
                }),
                _ => Err(TryAcquireError::Wait(Duration::from_micros(reply.wait_us))),
            },
            Err(error) => self.try_fall_back(n, error),
        }
    }

    fn unreachable(&self) -> BackendError {
        BackendError::new(
            STORE,
            BackendErrorKind::Unavailable,
            lock(&self.seen)
                .last_error
                .as_deref()
                .unwrap_or("unreachable")
                .to_owned(),
        )
    }

    fn try_fall_back(&self, n: u32, error: BackendError) -> Result<(), TryAcquireError> {
        match (&self.policy, &self.fallback) {
            (FailurePolicy::FailOpen, _) => Ok(()),
            (FailurePolicy::LocalBucket { .. }, Some(bucket)) => bucket.try_acquire(n),
            _ => Err(TryAcquireError::Backend(error)),
        }
    }

    fn feedback(&self, feedback: &Feedback) {
        if feedback.outcome == Outcome::Throttled {
            self.throttled.fetch_add(1, Relaxed);
        }
        let pause = match (feedback.quota, feedback.retry_after) {
            (Some((0, reset)), retry) => Some((
                retry.map_or(reset, |r| r.max(reset)),
                PauseCause::QuotaExhausted,
            )),
            (_, Some(delay)) => Some((delay, PauseCause::RetryAfter)),
            _ => None,
        }
        .map(|(delay, cause)| (delay.min(self.max_pause), cause));
        // The fallback learns only while it is in use (its own adaptation,
        // its own pauses); the shared state is the store's.
        if let Some(bucket) = self
            .fallback
            .as_ref()
            .filter(|_| !self.reachable.load(Relaxed))
        {
            bucket.feedback(feedback);
        }
        if feedback.outcome == Outcome::Throttled || pause.is_some() {
            // Our own lease no longer holds: the next permit asks the store.
            if let Ok(mut lease) = self.leases.try_lock() {
                *lease = Lease::default();
            }
        }
        // Successes matter only while the shared rate is cut.
        let worth_sending = match feedback.outcome {
            Outcome::Throttled => true,
            Outcome::Success => lock(&self.seen).interval_us > self.interval_us,
            Outcome::Neutral => false,
        } || pause.is_some();
        if worth_sending {
            let _ = self.feedback.send(Report {
                outcome: feedback.outcome,
                sent_at: feedback.sent_at,
                pause,
            });
        }
    }

    async fn send(&self, report: Report) -> Result<(), BackendError> {
        let kind = match report.outcome {
            Outcome::Throttled => "throttle",
            Outcome::Success => "success",
            Outcome::Neutral => "neutral",
        };
        let sent = report
            .sent_at
            .and_then(|at| self.server_micros(at))
            .map_or(-1, |us| i64::try_from(us).unwrap_or(i64::MAX));
        let (pause, cause) = match report.pause {
            Some((delay, cause)) => (
                i64::try_from(micros(delay)).unwrap_or(i64::MAX),
                match cause {
                    PauseCause::QuotaExhausted => "quota used up",
                    _ => "Retry-After",
                },
            ),
            None => (-1, ""),
        };
        let mut invocation = self.scripts.feedback.prepare_invoke();
        invocation
            .key(&self.state_key)
            .arg(self.now_arg(None))
            .arg(kind)
            .arg(sent)
            .arg(self.interval_us)
            .arg(self.slowest_us)
            .arg(pause)
            .arg(cause)
            .arg(&self.worker)
            .arg(self.idle_ttl_ms)
            .arg(if self.adaptive { "1" } else { "0" });
        let mut connection = self.manager.clone();
        let values = match tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<Vec<Value>>(&mut connection),
        )
        .await
        {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => return Err(self.error(&e)),
            Err(_) => return Err(self.timed_out()),
        };
        if values.len() >= 5 {
            let adapted = unsigned(&values[0])?;
            let mut seen = lock(&self.seen);
            seen.interval_us = adapted.max(self.interval_us);
            seen.pause_until_us = unsigned(&values[1])?;
            update_text(&mut seen.set_by, &values[3]);
            seen.pause_cause = pause_cause(&values[4]);
        }
        if kind == "throttle" {
            tracing::info!(target: TARGET, worker = %self.worker, "throttled by the server: shared rate cut");
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let seen = lock(&self.seen);
        let reachable = self.reachable.load(Relaxed);
        let interval_us = seen.interval_us.max(self.interval_us);
        let effective = 1e6 / interval_us as f64;
        let now_server = seen
            .sync
            .map(|(server, local)| server + micros(local.elapsed()));
        let paused_for = now_server
            .filter(|now| seen.pause_until_us > *now)
            .map(|now| Duration::from_micros(seen.pause_until_us - now));
        let fallback = (!reachable).then(|| Arc::<str>::from(self.policy.to_string()));
        let local = self.fallback.as_ref().map(TokenBucket::status);
        Status {
            configured: self.configured,
            effective,
            source: if interval_us > self.interval_us {
                RateSource::Adaptation
            } else {
                RateSource::Configuration
            },
            available: local.as_ref().map_or(0, |s| s.available),
            waiting: usize::try_from(self.waiting.load(Relaxed)).unwrap_or(usize::MAX),
            next_free: Duration::ZERO,
            paused_for,
            pause_cause: paused_for.and(seen.pause_cause),
            admitted: self.admitted.load(Relaxed),
            waited: self.waited.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            store: Some(StoreStatus {
                name: STORE,
                reachable,
                set_by: seen.set_by.clone(),
                fallback,
                last_error: seen.last_error.clone(),
            }),
        }
    }
}

/// A booked slot; dropped before its time (the waiter left), it is handed
/// back in the background if no one booked after it.
struct Booking {
    /// `None` once the slot was used.
    shared: Option<Arc<Shared>>,
    tat_us: u64,
    cost_us: u64,
}

impl Booking {
    fn disarm(mut self) {
        self.shared = None;
    }
}

impl Drop for Booking {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tat, cost) = (self.tat_us, self.cost_us);
        runtime.spawn(async move {
            let mut invocation = shared.scripts.cancel.prepare_invoke();
            invocation.key(&shared.tat_key).arg(tat).arg(cost);
            let mut connection = shared.manager.clone();
            let _ = tokio::time::timeout(
                shared.timeout,
                invocation.invoke_async::<i64>(&mut connection),
            )
            .await;
        });
    }
}

/// Counts a caller asleep until its slot, for `status().waiting`.
struct Asleep<'a>(&'a AtomicU64);

impl<'a> Asleep<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Relaxed);
        Self(count)
    }
}

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn send_feedback(
    shared: std::sync::Weak<Shared>,
    mut queue: mpsc::UnboundedReceiver<Report>,
) {
    while let Some(report) = queue.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = shared.send(report).await {
            tracing::debug!(target: TARGET, %error, "feedback not delivered to the store");
            shared.failed(&error);
        }
    }
}

impl Limiter for RedisLimiter {
    fn acquire(&self, n: u32) -> LimitFuture<'_, Result<Admission, AcquireError>> {
        LimitFuture::boxed(self.shared.acquire(n))
    }

    fn acquire_owned(
        self: Arc<Self>,
        n: u32,
    ) -> LimitFuture<'static, Result<Admission, AcquireError>> {
        let shared = Arc::clone(&self.shared);
        LimitFuture::boxed(async move { shared.acquire(n).await })
    }

    fn try_acquire(&self, n: u32) -> LimitFuture<'_, Result<(), TryAcquireError>> {
        LimitFuture::boxed(self.shared.try_acquire(n))
    }

    fn feedback(&self, feedback: &Feedback) {
        self.shared.feedback(feedback);
    }

    fn status(&self) -> Status {
        self.shared.status()
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("keys", &self.keys())
            .field("rate", &self.shared.configured)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_rate_is_exact_where_a_unit_allows() {
        assert_eq!(rate_near(10.0, 1).to_string(), "10/s");
        assert_eq!(rate_near(2.5, 3).to_string(), "150/min burst 3");
        assert_eq!(rate_near(10.0 / 60.0 / 4.0, 1).to_string(), "150/h");
        // No whole count per any unit: the nearest per day.
        assert_eq!(rate_near(1.0 / 7.0, 1).to_string(), "12343/day");
    }

    #[test]
    fn intervals_round_up_so_the_rate_is_never_exceeded() {
        assert_eq!(micros_per_permit(3.0), 333_334);
        assert_eq!(micros_per_permit(1e9), 1);
    }
}
