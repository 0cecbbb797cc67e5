//! Requests that can be sent again.

/// A request that can be copied for another attempt.
///
/// The tower [`Retry`](crate::Retry) service keeps one copy of each request
/// it may retry. A type that can only sometimes be copied (a body that is a
/// stream, say) returns `None`; a transient failure of such a request then
/// ends with [`ErrorKind::NotRetried`](crate::ErrorKind::NotRetried)`(`[`NoRetry::NotReplayable`](crate::NoRetry::NotReplayable)`)`
/// instead of being silently left unretried.
///
/// Implemented for `http::Request<B>` with a cloneable body (`Bytes`,
/// `String`, `Full<Bytes>`, ...), for strings, byte vectors, integers and
/// `Arc`s.
pub trait Replay: Sized {
    /// A copy to send again, or `None` if this request cannot be copied.
    fn replay(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($t:ty),* $(,)?) => {$(
        impl Replay for $t {
            fn replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    String,
    Vec<u8>,
    &'static str,
    &'static [u8],
);

impl<T: ?Sized> Replay for std::sync::Arc<T> {
    fn replay(&self) -> Option<Self> {
        Some(std::sync::Arc::clone(self))
    }
}

#[cfg(feature = "http")]
impl<B: Clone> Replay for http::Request<B> {
    /// Copies method, URI, version, headers, extensions and body.
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}
