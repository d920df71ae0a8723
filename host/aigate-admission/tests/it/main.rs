//! The shared backend suites (in-process and Redis) and the Redis outage test.
//!
//! Redis tests read `REDIS_URL`; without it they are skipped with a note on stderr, unless
//! `AIGATE_REQUIRE_SERVICES=1`, where they fail. Every Redis test uses its own random key
//! prefix, so tests run in parallel on one Redis. Each suite receives two handles on one
//! shared state ("replicas"): for Redis, two separate connection managers, as two gateway
//! processes would have; in process, two clones of one store.

// Helpers outside `#[test]` fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod circuit;
mod idempotency;
mod limits;
mod outage;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use aigate_admission::{
    CircuitBreaker, IdempotencyStore, MemoryCircuitBreaker, MemoryIdempotencyStore, MemoryRateLimiter,
    MemorySessionStore, RateLimiter, RedisCircuitBreaker, RedisIdempotencyStore, RedisOptions, RedisRateLimiter,
    RedisSessionStore, SessionStore, connection_manager,
};
use redis::aio::ConnectionManager;

/// Two handles on one shared state, as two gateway replicas would hold.
pub struct Replicas<T: ?Sized> {
    pub a: Arc<T>,
    pub b: Arc<T>,
}

/// Runs each named suite function against every backend: `memory::<name>` and
/// `redis::<name>`.
macro_rules! backend_suite {
    ($memory:path, $redis:path; $($test:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($memory()).await
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(replicas) = $redis().await else { return };
                    super::$test(replicas).await
                }
            )+
        }
    };
}
pub(crate) use backend_suite;

pub fn require_services() -> bool {
    std::env::var("AIGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (returns `None`) or fails, by `AIGATE_REQUIRE_SERVICES`.
pub fn skip_or_fail(what: &str) -> Option<std::convert::Infallible> {
    if require_services() {
        panic!("{what}, and AIGATE_REQUIRE_SERVICES=1");
    }
    eprintln!("skipped: {what}");
    None
}

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail("REDIS_URL is unset")?;
            None
        }
    }
}

/// Options with a fresh key prefix, so parallel tests never share keys.
pub fn test_options() -> RedisOptions {
    RedisOptions {
        key_prefix: format!("aigate-test:{}:", uuid::Uuid::new_v4().simple()),
        // Generous: the machine running the tests may be busy compiling.
        op_timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    }
}

/// Two independent connections to `REDIS_URL`, checked with a PING.
async fn redis_connections(options: &RedisOptions) -> Option<(ConnectionManager, ConnectionManager)> {
    let url = redis_url()?;
    let mut a = connection_manager(&url, options).unwrap();
    let mut b = connection_manager(&url, options).unwrap();
    for conn in [&mut a, &mut b] {
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("REDIS_URL={url} does not answer: {e}"));
        assert_eq!(pong, "PONG");
    }
    Some((a, b))
}

pub fn memory_limiters() -> Replicas<dyn RateLimiter> {
    let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
    Replicas { a: limiter.clone(), b: limiter }
}

pub async fn redis_limiters() -> Option<Replicas<dyn RateLimiter>> {
    let options = test_options();
    let (a, b) = redis_connections(&options).await?;
    Some(Replicas { a: Arc::new(RedisRateLimiter::new(a, &options)), b: Arc::new(RedisRateLimiter::new(b, &options)) })
}

pub fn memory_stores() -> Replicas<dyn IdempotencyStore> {
    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryIdempotencyStore::new());
    Replicas { a: store.clone(), b: store }
}

pub async fn redis_stores() -> Option<Replicas<dyn IdempotencyStore>> {
    let options = test_options();
    let (a, b) = redis_connections(&options).await?;
    Some(Replicas {
        a: Arc::new(RedisIdempotencyStore::new(a, &options)),
        b: Arc::new(RedisIdempotencyStore::new(b, &options)),
    })
}

pub fn memory_breakers() -> Replicas<dyn CircuitBreaker> {
    let breaker: Arc<dyn CircuitBreaker> = Arc::new(MemoryCircuitBreaker::new());
    Replicas { a: breaker.clone(), b: breaker }
}

pub async fn redis_breakers() -> Option<Replicas<dyn CircuitBreaker>> {
    let options = test_options();
    let (a, b) = redis_connections(&options).await?;
    Some(Replicas {
        a: Arc::new(RedisCircuitBreaker::new(a, &options)),
        b: Arc::new(RedisCircuitBreaker::new(b, &options)),
    })
}

pub fn memory_sessions() -> Replicas<dyn SessionStore> {
    let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::new(256));
    Replicas { a: store.clone(), b: store }
}

pub async fn redis_sessions() -> Option<Replicas<dyn SessionStore>> {
    let options = test_options();
    let (a, b) = redis_connections(&options).await?;
    Some(Replicas {
        a: Arc::new(RedisSessionStore::new(a, &options)),
        b: Arc::new(RedisSessionStore::new(b, &options)),
    })
}
