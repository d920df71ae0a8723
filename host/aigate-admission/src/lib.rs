//! Admission state that every gateway replica must share: rate limits, idempotency claims and
//! the circuit breakers of provider deployments.
//!
//! Four concerns, one small trait each, two backends each:
//!
//! | concern     | trait                 | in-process (embedded default) | Redis (`REDIS_URL` set)  |
//! |-------------|-----------------------|-------------------------------|--------------------------|
//! | rate limits | [`RateLimiter`]       | [`MemoryRateLimiter`]         | [`RedisRateLimiter`]     |
//! | idempotency | [`IdempotencyStore`]  | [`MemoryIdempotencyStore`]    | [`RedisIdempotencyStore`]|
//! | circuits    | [`CircuitBreaker`]    | [`MemoryCircuitBreaker`]      | [`RedisCircuitBreaker`]  |
//! | console sessions | [`SessionStore`] | [`MemorySessionStore`]        | [`RedisSessionStore`]    |
//!
//! Limits and idempotency follow "reserve before, settle after": the check hands out a `#[must_use]`
//! guard ([`Reservation`], [`ClaimGuard`]) that the caller settles once the outcome is known.
//! On Redis every check and every settle is one Lua script (no GET-then-SET), so any number of
//! replicas behave like one gateway.
//!
//! The traits return boxed futures so the server can hold `Arc<dyn RateLimiter>`,
//! `Arc<dyn IdempotencyStore>` and `Arc<dyn CircuitBreaker>` and pick the backend at start. The in-process futures complete
//! on first poll (one mutex, no I/O), which keeps them cheap to call in a micro-benchmark loop;
//! time is always passed in (`now`) or read from the backend's own clock, never slept on.
//!
//! What this crate does not decide: how the server maps outcomes to HTTP (429, 409, 422, 503),
//! and whether a [`LimitError::RedisUnavailable`] fails open or closed. Errors only make the
//! cases distinguishable (see `redis_conn` below for the outage behaviour).
//!
//! # Redis outage behaviour
//!
//! Every Redis call is bounded by [`RedisOptions::op_timeout`]. A refused connection, a dropped
//! connection, a timeout, or a server that is loading or read-only surfaces as
//! `RedisUnavailable` (both error types); any other Redis failure (a script error, an unexpected
//! reply) is a different variant, so the server can log it as a bug rather than an outage. The
//! shared [`redis::aio::ConnectionManager`] reconnects on its own: the first call after Redis
//! is back succeeds or triggers the reconnect that the next call uses. Redis state is not
//! persistent in our deployment: after a Redis restart, limits start from full buckets and
//! in-flight or completed idempotency records are gone.

mod circuit;
mod error;
mod expiry;
mod idempotency;
mod limits;
mod redis_conn;
mod sessions;

pub use circuit::memory::MemoryCircuitBreaker;
pub use circuit::redis::RedisCircuitBreaker;
pub use circuit::{CircuitBreaker, CircuitPolicy, Gate};
pub use error::{IdempotencyError, LimitError};
pub use idempotency::key::{KeyError, fingerprint, parse_idempotency_key};
pub use idempotency::memory::MemoryIdempotencyStore;
pub use idempotency::record::{BodyKind, SseEvents, StoredResponse};
pub use idempotency::redis::RedisIdempotencyStore;
pub use idempotency::{Claim, ClaimGuard, DEFAULT_RECORD_TTL, Fingerprint, IN_PROGRESS_RETRY_HINT, IdempotencyStore};
pub use limits::memory::MemoryRateLimiter;
pub use limits::redis::RedisRateLimiter;
pub use limits::{
    Admission, LimitHit, LimitKey, LimitKind, PERIOD, RateLimiter, RateSnapshot, Reservation, Scope, WindowState,
    retry_after_headers,
};
pub use redis::aio::ConnectionManager;
pub use redis_conn::{RedisOptions, connection_manager, ping as redis_ping};
pub use sessions::{MemorySessionStore, RedisSessionStore, SessionError, SessionStore, StoredSession};

/// The future every trait method returns: boxed so the traits stay object safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
