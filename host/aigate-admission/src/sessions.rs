//! Operator console sessions (`aigate::console`): which session ids are signed in, each with
//! its CSRF token and its end. In process, a session lives on the replica that opened it; on
//! Redis every replica sees it, so a console behind a load balancer needs no sticky sessions.
//!
//! The store never sees a session id: callers key it by a digest of the id (the console uses
//! SHA-256, hex), so neither a memory dump nor a `KEYS` on Redis yields a usable cookie.
//!
//! Redis keys: `<prefix>console:<digest>` → the CSRF token, with the session's lifetime as the
//! key's expiry (`SET … PX`); a lookup reads the token and the time left in one round trip.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::BoxFuture;
use crate::error::is_outage;
use crate::redis_conn::{RedisOptions, bounded};

/// A session store operation could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// As [`crate::LimitError::RedisUnavailable`].
    #[error("console session store unavailable")]
    RedisUnavailable(#[source] redis::RedisError),
    /// As [`crate::LimitError::Redis`].
    #[error("console session store failed")]
    Redis(#[source] redis::RedisError),
}

impl From<redis::RedisError> for SessionError {
    fn from(e: redis::RedisError) -> Self {
        if is_outage(&e) { Self::RedisUnavailable(e) } else { Self::Redis(e) }
    }
}

/// A live session: its CSRF token and how long it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub csrf: String,
    pub expires_in: Duration,
}

/// Where console sessions are kept, by the digest of their id.
pub trait SessionStore: Send + Sync {
    /// Keeps the session `key` with its `csrf` token for `ttl`.
    fn put<'a>(&'a self, key: &'a str, csrf: &'a str, ttl: Duration) -> BoxFuture<'a, Result<(), SessionError>>;

    /// The live session `key`, if any (an expired one is gone).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<StoredSession>, SessionError>>;

    /// Ends the session `key` (nothing happens when there is none).
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), SessionError>>;
}

/// The sessions of one replica, in memory, at most `max` (one more ends the one closest to
/// its end): a restart signs everyone out.
#[derive(Debug)]
pub struct MemorySessionStore {
    max: usize,
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl MemorySessionStore {
    pub fn new(max: usize) -> Self {
        MemorySessionStore { max: max.max(1), open: Mutex::new(HashMap::new()) }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        // Every change is one call on the map: a panic elsewhere cannot leave it half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sessions are kept (expired ones included until the next `put`).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    fn put<'a>(&'a self, key: &'a str, csrf: &'a str, ttl: Duration) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut table = self.table();
            table.retain(|_, (_, ends)| *ends > now);
            while table.len() >= self.max {
                let Some(first) = table.iter().min_by_key(|(_, (_, ends))| *ends).map(|(k, _)| k.clone()) else {
                    break;
                };
                table.remove(&first);
            }
            table.insert(key.to_owned(), (csrf.to_owned(), now + ttl));
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<StoredSession>, SessionError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut table = self.table();
            match table.get(key) {
                Some((csrf, ends)) if *ends > now => {
                    Ok(Some(StoredSession { csrf: csrf.clone(), expires_in: ends.saturating_duration_since(now) }))
                }
                Some(_) => {
                    table.remove(key);
                    Ok(None)
                }
                None => Ok(None),
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            self.table().remove(key);
            Ok(())
        })
    }
}

/// The sessions every replica sees, on Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: ConnectionManager,
    key_prefix: String,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore").field("key_prefix", &self.key_prefix).finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    /// Sessions on `conn` (see [`crate::connection_manager`]); no I/O until the first call.
    pub fn new(conn: ConnectionManager, options: &RedisOptions) -> Self {
        RedisSessionStore { conn, key_prefix: options.key_prefix.clone(), op_timeout: options.op_timeout }
    }

    fn key(&self, key: &str) -> String {
        format!("{}console:{key}", self.key_prefix)
    }
}

impl SessionStore for RedisSessionStore {
    fn put<'a>(&'a self, key: &'a str, csrf: &'a str, ttl: Duration) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut set = redis::cmd("SET");
            set.arg(self.key(key)).arg(csrf).arg("PX").arg(ms);
            Ok(bounded(self.op_timeout, set.query_async::<()>(&mut conn)).await?)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<StoredSession>, SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let redis_key = self.key(key);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("GET").arg(&redis_key).cmd("PTTL").arg(&redis_key);
            let (csrf, left_ms): (Option<String>, i64) = bounded(self.op_timeout, pipe.query_async(&mut conn)).await?;
            // PTTL: -2 gone (it expired between the two), -1 no expiry (never written so).
            Ok(match (csrf, u64::try_from(left_ms)) {
                (Some(csrf), Ok(ms)) if ms > 0 => Some(StoredSession { csrf, expires_in: Duration::from_millis(ms) }),
                _ => None,
            })
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut del = redis::cmd("DEL");
            del.arg(self.key(key));
            Ok(bounded(self.op_timeout, del.query_async::<()>(&mut conn)).await?)
        })
    }
}
