//! Redis idempotency store.
//!
//! Key layout: `<prefix>idem:<len(org)>:<org>:<key>`, one string per record, expiring with
//! PX (the lease while in flight, the TTL once completed), so Redis does all the expiry:
//!
//! - in flight: `'P' | fingerprint (32 bytes) | claim token (16 bytes)`
//! - completed: `'D' | fingerprint (32 bytes) | encoded response` (see `record.rs`)
//!
//! `claim` is `SET NX PX` inside a script that, when the key exists, returns its value and
//! remaining TTL in the same round trip (no GET-after-SET race). `complete`, `release` and
//! `renew` are scripts that act only if the record is still in flight with the guard's token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::record::{decode, encode};
use super::{Claim, ClaimGuard, ClaimOwner, Fingerprint, IdempotencyStore, OwnedClaim};
use crate::redis_conn::{RedisOptions, bounded};
use crate::{BoxFuture, IdempotencyError, StoredResponse};

/// ARGV[1]: in-flight value, ARGV[2]: lease (ms). `{1}` if claimed, else `{0, value, pttl}`.
const CLAIM_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {0, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
";

/// The ownership check shared by the scripts below: in flight, with our token.
const OWNED_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 1) ~= 'P' or string.sub(v, 34, 49) ~= ARGV[1] then
  return 0
end
";

/// ARGV[1]: token, ARGV[2]: completed value, ARGV[3]: TTL (ms).
const COMPLETE_LUA: &str = "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\nreturn 1";
/// ARGV[1]: token.
const RELEASE_LUA: &str = "redis.call('DEL', KEYS[1])\nreturn 1";
/// ARGV[1]: token, ARGV[2]: lease (ms).
const RENEW_LUA: &str = "redis.call('PEXPIRE', KEYS[1], ARGV[2])\nreturn 1";

const FP_END: usize = 33;

/// The shared [`IdempotencyStore`] for several replicas. Cheap to clone.
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore").field("key_prefix", &self.inner.key_prefix).finish_non_exhaustive()
    }
}

struct Inner {
    conn: ConnectionManager,
    key_prefix: String,
    op_timeout: Duration,
    claim: Script,
    complete: Script,
    release: Script,
    renew: Script,
}

impl RedisIdempotencyStore {
    /// A store on `conn` (see [`crate::connection_manager`]); no I/O until the first call.
    pub fn new(conn: ConnectionManager, options: &RedisOptions) -> Self {
        let owned = |body: &str| Script::new(&format!("{OWNED_LUA}{body}"));
        Self {
            inner: Arc::new(Inner {
                conn,
                key_prefix: options.key_prefix.clone(),
                op_timeout: options.op_timeout,
                claim: Script::new(CLAIM_LUA),
                complete: owned(COMPLETE_LUA),
                release: owned(RELEASE_LUA),
                renew: owned(RENEW_LUA),
            }),
        }
    }
}

/// Milliseconds for PX/PEXPIRE: at least 1 (0 is an error there), at most ~100 years (Redis
/// refuses expiry times that overflow its clock).
fn millis(d: Duration) -> u64 {
    const MAX_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
    u64::try_from(d.as_millis()).unwrap_or(MAX_MS).clamp(1, MAX_MS)
}

impl Inner {
    fn key(&self, record: &str) -> String {
        format!("{}idem:{record}", self.key_prefix)
    }

    async fn owned_call(&self, script: &Script, claim: &OwnedClaim, args: &[&[u8]]) -> Result<(), IdempotencyError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.key(&claim.record)).arg(&claim.token[..]);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        let done: i64 = bounded(self.op_timeout, invocation.invoke_async(&mut conn)).await?;
        if done == 1 { Ok(()) } else { Err(IdempotencyError::ClaimLost) }
    }
}

impl IdempotencyStore for RedisIdempotencyStore {
    fn claim<'a>(
        &'a self,
        org: &'a str,
        key: &'a str,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, IdempotencyError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let record = super::record_name(org, key);
            let token = super::new_token();
            let mut value = Vec::with_capacity(1 + 32 + 16);
            value.push(b'P');
            value.extend_from_slice(fingerprint);
            value.extend_from_slice(&token);
            let mut invocation = inner.claim.prepare_invoke();
            invocation.key(inner.key(&record)).arg(value).arg(millis(lease));
            let mut conn = inner.conn.clone();
            let reply: Vec<Value> = bounded(inner.op_timeout, invocation.invoke_async(&mut conn)).await?;
            let mut reply = reply.into_iter();
            match (reply.next(), reply.next(), reply.next()) {
                (Some(Value::Int(1)), None, None) => {
                    let claim = OwnedClaim { record, token, fingerprint: *fingerprint, ttl };
                    Ok(Claim::Acquired(ClaimGuard::new(self.inner.clone(), claim)))
                }
                (Some(Value::Int(0)), Some(Value::BulkString(stored)), pttl) => {
                    let pttl = match pttl {
                        Some(Value::Int(ms)) => ms,
                        _ => 0,
                    };
                    existing(Bytes::from(stored), fingerprint, pttl)
                }
                _ => Err(IdempotencyError::Corrupt("unexpected reply from the claim script")),
            }
        })
    }
}

/// The outcome for a key that is already taken.
fn existing(stored: Bytes, fingerprint: &Fingerprint, pttl: i64) -> Result<Claim, IdempotencyError> {
    let (Some(&state), Some(stored_fp)) = (stored.first(), stored.get(1..FP_END)) else {
        return Err(IdempotencyError::Corrupt("record is truncated"));
    };
    if stored_fp != fingerprint.as_slice() {
        return Ok(Claim::Mismatch);
    }
    match state {
        b'P' => {
            // PTTL is -1 without an expiry (never written so) and -2 if gone (not within the
            // script): both read as "no time left".
            let ms = u64::try_from(pttl).unwrap_or(0);
            Ok(super::in_progress(Duration::from_millis(ms)))
        }
        b'D' => Ok(Claim::Completed(decode(stored.slice(FP_END..))?)),
        _ => Err(IdempotencyError::Corrupt("unknown record state")),
    }
}

impl ClaimOwner for Inner {
    fn complete<'a>(
        &'a self,
        claim: &'a OwnedClaim,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        Box::pin(async move {
            let mut value = Vec::with_capacity(FP_END + 16 + response.body.len());
            value.push(b'D');
            value.extend_from_slice(&claim.fingerprint);
            encode(response, &mut value);
            let ttl = millis(claim.ttl).to_string();
            self.owned_call(&self.complete, claim, &[&value, ttl.as_bytes()]).await
        })
    }

    fn release<'a>(&'a self, claim: &'a OwnedClaim) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        Box::pin(async move { self.owned_call(&self.release, claim, &[]).await })
    }

    fn renew<'a>(&'a self, claim: &'a OwnedClaim, lease: Duration) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        Box::pin(async move {
            let lease = millis(lease).to_string();
            self.owned_call(&self.renew, claim, &[lease.as_bytes()]).await
        })
    }
}
