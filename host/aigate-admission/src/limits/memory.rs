//! In-process rate limiter: one mutex around a map of GCRA buckets. For one gateway process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::gcra::{self, Bucket};
use super::{Admission, LimitKey, RateLimiter, SettleTokens, outcome, plan, unix_micros};
use crate::expiry::ExpiryMap;
use crate::{BoxFuture, LimitError};

/// Expired buckets removed per call at most.
const SWEEP_BUDGET: usize = 8;

/// The embedded [`RateLimiter`]: exact, never fails, state lost on restart. Clones share
/// state. Buckets are forgotten once drained (bounded sweep on every call), so memory follows
/// the number of subjects active in the last minute.
#[derive(Clone, Default)]
pub struct MemoryRateLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

struct Inner {
    /// Bucket name → state; deadlines in µs since the epoch of the callers' clock.
    buckets: Mutex<ExpiryMap<String, Bucket, u64>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self { buckets: Mutex::new(ExpiryMap::new()) }
    }
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn acquire_sync(&self, keys: &[LimitKey], estimated_tokens: u32, now: SystemTime) -> Admission {
        let checks = plan(keys, estimated_tokens);
        if checks.is_empty() {
            return super::unlimited(estimated_tokens);
        }
        let now_us = unix_micros(now);
        // The state is plain numbers, consistent after any panic: a poisoned lock is usable.
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets.sweep(now_us, SWEEP_BUDGET);
        let current: Vec<Bucket> = checks
            .iter()
            .map(|c| match buckets.get(&c.bucket, now_us) {
                Some((bucket, _)) => bucket.drained(now_us, c.limit),
                None => Bucket::empty(now_us),
            })
            .collect();
        let charged: Option<Vec<f64>> =
            checks.iter().zip(&current).map(|(c, b)| gcra::check(b.level, c.limit, c.cost).ok()).collect();
        let (levels, granted) = match charged {
            Some(levels) => {
                for ((c, b), &level) in checks.iter().zip(&current).zip(&levels) {
                    let bucket = Bucket { level, at_us: b.at_us };
                    buckets.insert(c.bucket.clone(), bucket, bucket.empty_at_us(c.limit), now_us);
                }
                (levels, true)
            }
            None => (current.iter().map(|b| b.level).collect(), false),
        };
        drop(buckets);
        outcome(checks, &levels, granted, estimated_tokens, self.inner.clone())
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn acquire<'a>(
        &'a self,
        keys: &'a [LimitKey],
        estimated_tokens: u32,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Admission, LimitError>> {
        let admission = self.acquire_sync(keys, estimated_tokens, now);
        Box::pin(async move { Ok(admission) })
    }
}

impl SettleTokens for Inner {
    fn settle<'a>(
        &'a self,
        settle: &'a [(String, u32)],
        delta: i64,
        now_us: u64,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, limit) in settle {
                let current = match buckets.get(name, now_us) {
                    Some((bucket, _)) => bucket.drained(now_us, *limit),
                    None => Bucket::empty(now_us),
                };
                let level = (current.level + delta as f64).max(0.0);
                let bucket = Bucket { level, at_us: current.at_us };
                if level > 0.0 {
                    buckets.insert(name.clone(), bucket, bucket.empty_at_us(*limit), now_us);
                } else {
                    buckets.remove(name);
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}
