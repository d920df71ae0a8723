//! In-process idempotency store: a mutex-protected map with bounded expiry sweeping.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Claim, ClaimGuard, ClaimOwner, Fingerprint, IdempotencyStore, OwnedClaim};
use crate::expiry::ExpiryMap;
use crate::{BoxFuture, IdempotencyError, StoredResponse};

/// Expired records removed per call at most.
const SWEEP_BUDGET: usize = 8;

/// The embedded [`IdempotencyStore`]. Clones share state; records are lost on restart.
/// Memory is bounded by the records alive within their lease or TTL (expired ones are swept
/// a few per call).
#[derive(Clone, Default)]
pub struct MemoryIdempotencyStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .finish_non_exhaustive()
    }
}

enum Record {
    InFlight {
        fingerprint: Fingerprint,
        token: [u8; 16],
    },
    Completed {
        fingerprint: Fingerprint,
        response: StoredResponse,
    },
}

struct Inner {
    records: Mutex<ExpiryMap<String, Record, Instant>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            records: Mutex::new(ExpiryMap::new()),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, ExpiryMap<String, Record, Instant>> {
        // Every mutation is a single map call, so the map is consistent after any panic.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` if `claim` still owns its record.
    fn if_owner(
        &self,
        claim: &OwnedClaim,
        op: impl FnOnce(&mut ExpiryMap<String, Record, Instant>, Instant),
    ) -> Result<(), IdempotencyError> {
        let now = Instant::now();
        let mut records = self.lock();
        records.sweep(now, SWEEP_BUDGET);
        match records.get(&claim.record, now) {
            Some((Record::InFlight { token, .. }, _)) if *token == claim.token => {
                op(&mut records, now);
                Ok(())
            }
            _ => Err(IdempotencyError::ClaimLost),
        }
    }
}

impl MemoryIdempotencyStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn claim_sync(
        &self,
        org: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Claim {
        let now = Instant::now();
        let record = super::record_name(org, key);
        let mut records = self.inner.lock();
        records.sweep(now, SWEEP_BUDGET);
        match records.get(&record, now) {
            Some((
                Record::InFlight {
                    fingerprint: stored,
                    ..
                },
                deadline,
            )) => {
                if stored != fingerprint {
                    Claim::Mismatch
                } else {
                    super::in_progress(deadline.saturating_duration_since(now))
                }
            }
            Some((
                Record::Completed {
                    fingerprint: stored,
                    response,
                },
                _,
            )) => {
                if stored != fingerprint {
                    Claim::Mismatch
                } else {
                    Claim::Completed(response.clone())
                }
            }
            None => {
                let token = super::new_token();
                let in_flight = Record::InFlight {
                    fingerprint: *fingerprint,
                    token,
                };
                records.insert(record.clone(), in_flight, deadline(now, lease), now);
                drop(records);
                let claim = OwnedClaim {
                    record,
                    token,
                    fingerprint: *fingerprint,
                    ttl,
                };
                Claim::Acquired(ClaimGuard::new(self.inner.clone(), claim))
            }
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn claim<'a>(
        &'a self,
        org: &'a str,
        key: &'a str,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, IdempotencyError>> {
        let claim = self.claim_sync(org, key, fingerprint, lease, ttl);
        Box::pin(async move { Ok(claim) })
    }
}

impl ClaimOwner for Inner {
    fn complete<'a>(
        &'a self,
        claim: &'a OwnedClaim,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |records, now| {
            let completed = Record::Completed {
                fingerprint: claim.fingerprint,
                response: response.clone(),
            };
            records.insert(
                claim.record.clone(),
                completed,
                deadline(now, claim.ttl),
                now,
            );
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, claim: &'a OwnedClaim) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |records, _| records.remove(&claim.record));
        Box::pin(async move { result })
    }

    fn renew<'a>(
        &'a self,
        claim: &'a OwnedClaim,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |records, now| {
            let in_flight = Record::InFlight {
                fingerprint: claim.fingerprint,
                token: claim.token,
            };
            records.insert(claim.record.clone(), in_flight, deadline(now, lease), now);
        });
        Box::pin(async move { result })
    }
}
