//! Circuits shared by replicas: one Redis hash per deployment, `<prefix>cb:<id>`, with fields
//! `f` (consecutive failures), `o` (open until, ms) and `p` (probe in flight until, ms). The
//! hash expires a while after its last failure, so healthy deployments cost no keys.
//!
//! Reads are cached per replica for [`CircuitPolicy::sync`] (see the module docs of
//! `circuit`): a closed circuit is not re-read for that long, an open one not until its
//! cooldown ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::Script;
use redis::aio::ConnectionManager;

use super::{CircuitBreaker, CircuitPolicy, Gate, MAX_TRACKED, millis};
use crate::redis_conn::{RedisOptions, bounded};
use crate::{BoxFuture, LimitError};

/// KEYS[1]: the circuit. ARGV[1]: now (ms), ARGV[2]: probe timeout (ms).
/// Returns `{gate, until}`: 0 closed; 1 probe (this caller holds it); 2 open until `until`;
/// 3 another caller's probe is in flight until `until` at the latest.
const GATE_LUA: &str = r"
local now = tonumber(ARGV[1])
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0') or 0
if o == 0 then return {0, 0} end
if now < o then return {2, o} end
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0') or 0
if now < p then return {3, p} end
redis.call('HSET', KEYS[1], 'p', now + tonumber(ARGV[2]))
return {1, 0}
";

/// A failure. KEYS[1]: the circuit. ARGV[1]: now (ms), ARGV[2]: failures that open it,
/// ARGV[3]: cooldown (ms). Returns the time it is open until (0: still closed).
const FAILURE_LUA: &str = r"
local now = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[3])
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0') or 0
local until_ms = 0
if o > 0 or f >= tonumber(ARGV[2]) then
  until_ms = now + cooldown
  redis.call('HSET', KEYS[1], 'o', until_ms, 'f', 0)
  redis.call('HDEL', KEYS[1], 'p')
end
redis.call('PEXPIRE', KEYS[1], cooldown * 4 + 60000)
return until_ms
";

/// What this replica last read of one circuit.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Open (or probed by another caller) until then; 0 when closed.
    open_until: u64,
    /// When it was read: a closed circuit is trusted until `read_at + sync`.
    read_at: u64,
    /// This replica recorded failures there (or saw it open): a success must clear them.
    dirty: bool,
}

/// The shared [`CircuitBreaker`] for several replicas. Cheap to clone.
#[derive(Clone)]
pub struct RedisCircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    key_prefix: String,
    op_timeout: std::time::Duration,
    gate: Script,
    failure: Script,
    seen: Mutex<HashMap<String, Seen>>,
}

impl std::fmt::Debug for RedisCircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCircuitBreaker").field("key_prefix", &self.inner.key_prefix).finish_non_exhaustive()
    }
}

impl RedisCircuitBreaker {
    /// Circuits on `conn` (see [`crate::connection_manager`]); no I/O until the first call.
    pub fn new(conn: ConnectionManager, options: &RedisOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                key_prefix: options.key_prefix.clone(),
                op_timeout: options.op_timeout,
                gate: Script::new(GATE_LUA),
                failure: Script::new(FAILURE_LUA),
                seen: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    fn key(&self, id: &str) -> String {
        format!("{}cb:{id}", self.key_prefix)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, id: &str, seen: Seen) {
        let mut map = self.seen();
        if !map.contains_key(id) && map.len() >= MAX_TRACKED {
            map.clear();
        }
        map.insert(id.to_owned(), seen);
    }
}

impl CircuitBreaker for RedisCircuitBreaker {
    fn gate<'a>(
        &'a self,
        id: &'a str,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<Gate, LimitError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let cached = inner.seen().get(id).copied();
            if let Some(seen) = cached {
                if seen.open_until > now_ms {
                    return Ok(Gate::Open);
                }
                if seen.open_until == 0 && now_ms < seen.read_at.saturating_add(millis(policy.sync)) {
                    return Ok(Gate::Closed);
                }
            }
            let mut conn = inner.conn.clone();
            let mut invocation = inner.gate.prepare_invoke();
            invocation.key(inner.key(id)).arg(now_ms).arg(millis(policy.probe_timeout));
            let (gate, until): (u8, u64) = bounded(inner.op_timeout, invocation.invoke_async(&mut conn)).await?;
            let dirty = cached.is_some_and(|s| s.dirty);
            // What to assume locally until the next read: closed for `sync`; open until the
            // cooldown ends; while a probe runs (this caller's or another's), open for `sync`
            // only, so the probe's outcome is seen soon.
            let soon = now_ms.saturating_add(millis(policy.sync));
            let (gate, open_until) = match gate {
                0 => (Gate::Closed, 0),
                1 => (Gate::Probe, soon),
                2 => (Gate::Open, until),
                3 => (Gate::Open, until.min(soon)),
                other => return Err(LimitError::UnexpectedReply(format!("circuit gate {other}"))),
            };
            inner.remember(id, Seen { open_until, read_at: now_ms, dirty: dirty || gate != Gate::Closed });
            Ok(gate)
        })
    }

    fn record<'a>(
        &'a self,
        id: &'a str,
        ok: bool,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn.clone();
            if ok {
                let dirty = inner.seen().get(id).is_some_and(|s| s.dirty);
                if dirty {
                    let _: i64 =
                        bounded(inner.op_timeout, redis::cmd("DEL").arg(inner.key(id)).query_async(&mut conn)).await?;
                    inner.remember(id, Seen { open_until: 0, read_at: now_ms, dirty: false });
                }
                return Ok(());
            }
            let mut invocation = inner.failure.prepare_invoke();
            invocation.key(inner.key(id)).arg(now_ms).arg(policy.failures.max(1)).arg(millis(policy.cooldown));
            let open_until: u64 = bounded(inner.op_timeout, invocation.invoke_async(&mut conn)).await?;
            inner.remember(id, Seen { open_until, read_at: now_ms, dirty: true });
            Ok(())
        })
    }
}
