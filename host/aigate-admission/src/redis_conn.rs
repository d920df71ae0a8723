//! The Redis connection both Redis backends share, and the timeout every call runs under.

use std::future::Future;
use std::io;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, RedisResult};

/// Settings for the Redis backends.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prepended to every key, so several deployments (or parallel tests) share one Redis.
    pub key_prefix: String,
    /// Upper bound for one admission call on Redis (a script round trip, or waiting for a
    /// reconnect). Past it the call fails with `RedisUnavailable`; a script may still run on
    /// the server after the client gave up (see the error docs for what that leaves behind).
    pub op_timeout: Duration,
    /// Upper bound for one TCP connect attempt while (re)connecting.
    pub connect_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "aigate:".to_owned(),
            op_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        }
    }
}

impl RedisOptions {
    /// Default options with another key prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self { key_prefix: prefix.into(), ..Self::default() }
    }
}

/// A lazily connecting [`ConnectionManager`] for `url`, tuned for the request path: short
/// connect timeouts and few, quick reconnect retries, because a request would rather get
/// `RedisUnavailable` now than wait for a long backoff. No I/O happens here, so the gateway can
/// start while Redis is down; the first call connects. Clone it to share one multiplexed
/// connection between the rate limiter and the idempotency store.
pub fn connection_manager(url: &str, options: &RedisOptions) -> RedisResult<ConnectionManager> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.op_timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// One `PING` under the operation timeout: readiness checks.
pub async fn ping(conn: &ConnectionManager, options: &RedisOptions) -> RedisResult<()> {
    let mut conn = conn.clone();
    bounded(options.op_timeout, redis::cmd("PING").query_async::<()>(&mut conn)).await
}

/// Runs one Redis call under the operation timeout. A timeout becomes an I/O `TimedOut`
/// error, so it is classified as an outage like any other connectivity failure.
pub(crate) async fn bounded<T>(op_timeout: Duration, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(op_timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(io::Error::new(
            io::ErrorKind::TimedOut,
            "redis call exceeded the admission operation timeout",
        ))),
    }
}
