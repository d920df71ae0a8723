//! Redis rate limiter: the GCRA of `gcra.rs` as two Lua scripts.
//!
//! Key layout: `<prefix>rl:<scope>:<id>:<rpm|tpm>`, a string `"<level> <at_us>"` (level as
//! `%.17g`, so the double survives the round trip; `at_us` as an integer). Each key expires
//! (PX) one second after its bucket would be empty, so idle subjects cost nothing.
//!
//! All keys of one request go into one script: a single Redis (or primary) is assumed, not
//! Redis Cluster, where the key and org buckets would need a shared hash tag.

use std::sync::Arc;
use std::time::SystemTime;

use redis::Script;
use redis::aio::ConnectionManager;

use super::gcra::PERIOD_US;
use super::{Admission, LimitKey, RateLimiter, SettleTokens, outcome, plan, unix_micros};
use crate::redis_conn::{RedisOptions, bounded};
use crate::{BoxFuture, LimitError};

/// Check every bucket; charge all or none. Mirrors `gcra::Bucket::drained` and `gcra::check`
/// operation for operation. Returns `{granted ('1'|'0'), level_1, ..., level_n}` with each
/// level after the charge when granted, before it (drained) otherwise.
///
/// KEYS[i]: bucket i. ARGV[1]: now (µs), ARGV[2]: period (µs), ARGV[1+2i], ARGV[2+2i]: limit
/// and cost of bucket i.
const ACQUIRE_LUA: &str = r"
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local n = #KEYS
local levels, ats = {}, {}
local granted = true
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local level, at = 0, now
  local raw = redis.call('GET', KEYS[i])
  if raw then
    local l, a = string.match(raw, '^(%S+) (%S+)$')
    level, at = tonumber(l or '') or 0, tonumber(a or '') or now
    if now > at then
      level = level - (now - at) * limit / period
      if level < 0 then level = 0 end
      at = now
    end
  end
  levels[i], ats[i] = level, at
  local admit = cost
  if admit > limit then admit = limit end
  if limit == 0 or level + admit - limit > 1e-9 then granted = false end
end
local out = {granted and '1' or '0'}
for i = 1, n do
  if granted then
    local limit = tonumber(ARGV[1 + 2 * i])
    levels[i] = levels[i] + tonumber(ARGV[2 + 2 * i])
    local ttl = math.ceil((ats[i] - now + levels[i] * period / limit) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.17g %.0f', levels[i], ats[i]), 'PX', ttl)
  end
  out[i + 1] = string.format('%.17g', levels[i])
end
return out
";

/// Add a signed token delta to each bucket, never below empty.
///
/// KEYS[i]: bucket i. ARGV[1]: now (µs), ARGV[2]: period (µs), ARGV[2+i]: limit of bucket i,
/// ARGV[3+n]: delta.
const SETTLE_LUA: &str = r"
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local n = #KEYS
local delta = tonumber(ARGV[3 + n])
for i = 1, n do
  local limit = tonumber(ARGV[2 + i])
  local level, at = 0, now
  local raw = redis.call('GET', KEYS[i])
  if raw then
    local l, a = string.match(raw, '^(%S+) (%S+)$')
    level, at = tonumber(l or '') or 0, tonumber(a or '') or now
    if now > at then
      level = level - (now - at) * limit / period
      if level < 0 then level = 0 end
      at = now
    end
  end
  level = level + delta
  if level > 0 then
    local ttl = math.ceil((at - now + level * period / limit) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.17g %.0f', level, at), 'PX', ttl)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
";

/// The shared [`RateLimiter`] for several replicas. Cheap to clone.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("key_prefix", &self.inner.key_prefix).finish_non_exhaustive()
    }
}

struct Inner {
    conn: ConnectionManager,
    key_prefix: String,
    op_timeout: std::time::Duration,
    acquire: Script,
    settle: Script,
}

impl RedisRateLimiter {
    /// A limiter on `conn` (see [`crate::connection_manager`]); no I/O until the first call.
    pub fn new(conn: ConnectionManager, options: &RedisOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                key_prefix: options.key_prefix.clone(),
                op_timeout: options.op_timeout,
                acquire: Script::new(ACQUIRE_LUA),
                settle: Script::new(SETTLE_LUA),
            }),
        }
    }
}

impl Inner {
    fn key(&self, bucket: &str) -> String {
        format!("{}rl:{bucket}", self.key_prefix)
    }
}

impl RateLimiter for RedisRateLimiter {
    fn acquire<'a>(
        &'a self,
        keys: &'a [LimitKey],
        estimated_tokens: u32,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Admission, LimitError>> {
        Box::pin(async move {
            let checks = plan(keys, estimated_tokens);
            if checks.is_empty() {
                return Ok(super::unlimited(estimated_tokens));
            }
            let inner = &self.inner;
            let mut invocation = inner.acquire.prepare_invoke();
            invocation.arg(unix_micros(now)).arg(PERIOD_US as u64);
            for check in &checks {
                invocation.key(inner.key(&check.bucket)).arg(check.limit).arg(check.cost);
            }
            let mut conn = inner.conn.clone();
            let reply: Vec<String> = bounded(inner.op_timeout, invocation.invoke_async(&mut conn)).await?;
            let (granted, levels) = match reply.split_first() {
                Some((flag, levels)) if levels.len() == checks.len() => (flag == "1", levels),
                _ => return Err(LimitError::UnexpectedReply(format!("{reply:?}"))),
            };
            let levels = levels
                .iter()
                .map(|l| l.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| LimitError::UnexpectedReply(format!("{reply:?}")))?;
            Ok(outcome(checks, &levels, granted, estimated_tokens, self.inner.clone()))
        })
    }
}

impl SettleTokens for Inner {
    fn settle<'a>(
        &'a self,
        buckets: &'a [(String, u32)],
        delta: i64,
        now_us: u64,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut invocation = self.settle.prepare_invoke();
            invocation.arg(now_us).arg(PERIOD_US as u64);
            for (bucket, limit) in buckets {
                invocation.key(self.key(bucket)).arg(*limit);
            }
            invocation.arg(delta);
            let mut conn = self.conn.clone();
            let _: i64 = bounded(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }
}
