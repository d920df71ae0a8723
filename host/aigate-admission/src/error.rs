//! The two error types of this crate. `RedisUnavailable` is the outage case in both; the
//! server chooses fail-open or fail-closed from it.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A rate-limit check or settle could not be done. The in-process backend never fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Redis refused the connection, dropped it, did not answer within the operation timeout,
    /// or is loading / read-only. Transient: the connection manager reconnects by itself.
    #[error("rate-limit store unavailable")]
    RedisUnavailable(#[source] RedisError),
    /// Redis answered with an error that is not an outage (a script error, a wrong type under
    /// our key). A bug or a misconfiguration, not something a retry fixes.
    #[error("rate-limit store failed")]
    Redis(#[source] RedisError),
    /// The limit script answered with something this version does not understand.
    #[error("rate-limit store returned an unexpected reply: {0}")]
    UnexpectedReply(String),
}

impl LimitError {
    /// True for the outage case, where the server applies its fail-open/closed policy.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::RedisUnavailable(_))
    }
}

/// An idempotency operation could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// As [`LimitError::RedisUnavailable`]. For a `claim`, the outcome is unknown: the claim may
    /// have been taken and will then expire with its lease.
    #[error("idempotency store unavailable")]
    RedisUnavailable(#[source] RedisError),
    /// As [`LimitError::Redis`].
    #[error("idempotency store failed")]
    Redis(#[source] RedisError),
    /// A stored record could not be decoded (written by an incompatible version, or not ours).
    #[error("idempotency record is corrupt: {0}")]
    Corrupt(&'static str),
    /// `complete`, `release` or `renew` found that this guard no longer owns the claim: its
    /// lease expired (and another request may have claimed the key since). Nothing was
    /// written; the response of this call is not stored.
    #[error("idempotency claim was lost (lease expired)")]
    ClaimLost,
    /// The in-process store holds its maximum of records, all of them in flight: a new claim
    /// would pass the bound. Transient: claims end within their lease.
    #[error("the in-process idempotency store is full ({0} records in flight)")]
    Full(usize),
    /// `complete` was given a response larger than the whole in-process store may hold; it
    /// was not stored and the claim was released.
    #[error("the response ({0} bytes) is larger than the in-process idempotency store holds")]
    TooLarge(usize),
}

impl IdempotencyError {
    /// True for the outage case.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::RedisUnavailable(_))
    }
}

/// Whether a Redis error means "Redis is not reachable or not serving" rather than "Redis
/// rejected what we sent".
pub(crate) fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

impl From<RedisError> for LimitError {
    fn from(e: RedisError) -> Self {
        if is_outage(&e) { Self::RedisUnavailable(e) } else { Self::Redis(e) }
    }
}

impl From<RedisError> for IdempotencyError {
    fn from(e: RedisError) -> Self {
        if is_outage(&e) { Self::RedisUnavailable(e) } else { Self::Redis(e) }
    }
}
