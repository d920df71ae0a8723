//! In-process idempotency store: a mutex-protected map with bounded expiry sweeping, and
//! bounds on the records and bytes it holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Claim, ClaimGuard, ClaimOwner, Fingerprint, IdempotencyStore, OwnedClaim};
use crate::expiry::ExpiryMap;
use crate::{BoxFuture, IdempotencyError, StoredResponse};

/// Expired records removed per call at most.
const SWEEP_BUDGET: usize = 8;

/// Records held by [`MemoryIdempotencyStore::new`] at most.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Bytes of stored responses held by [`MemoryIdempotencyStore::new`] at most.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The embedded [`IdempotencyStore`]. Clones share state; records are lost on restart.
///
/// Memory is bounded twice: by time (records live within their lease or TTL; expired ones are
/// swept a few per call) and by size (at most `max_entries` records and `max_bytes` of stored
/// responses). At a bound the oldest completed records are evicted first: a retry of an evicted
/// key calls the provider again, the price of a bounded store. Records in flight are never
/// evicted (that would let two calls run for one key); when they alone fill the store, new
/// claims fail with [`IdempotencyError::Full`] until some finish.
#[derive(Clone)]
pub struct MemoryIdempotencyStore {
    inner: Arc<Inner>,
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        Self::with_limits(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }
}

impl std::fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.max_bytes)
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
        /// Position in [`State::completed`].
        seq: u64,
    },
}

/// What a stored response costs the store, roughly: body, headers and bookkeeping.
fn cost(response: &StoredResponse) -> usize {
    let headers: usize = response.headers.iter().map(|(n, v)| n.len() + v.len() + 48).sum();
    response.body.len() + headers + 128
}

struct State {
    records: ExpiryMap<String, Record, Instant>,
    /// Sum of [`cost`] over the completed records held.
    bytes: usize,
    /// Completed records, oldest first (entries of records since gone are skipped).
    completed: VecDeque<(String, u64)>,
    next_seq: u64,
}

impl State {
    /// Accounts for a record that left the map.
    fn forget(&mut self, record: Option<Record>) {
        if let Some(Record::Completed { response, .. }) = record {
            self.bytes = self.bytes.saturating_sub(cost(&response));
        }
    }

    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.records.sweep_with(now, SWEEP_BUDGET, |record| {
            if let Record::Completed { response, .. } = record {
                freed += cost(&response);
            }
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// Evicts the oldest completed record; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.completed.pop_front() {
            if matches!(self.records.peek(&key), Some(Record::Completed { seq: s, .. }) if *s == seq) {
                let removed = self.records.remove(&key);
                self.forget(removed);
                return true;
            }
        }
        false
    }

    /// Makes room for one more record and `bytes` more bytes, evicting the oldest completed
    /// records as needed.
    fn make_room(&mut self, max_entries: usize, max_bytes: usize, bytes: usize) -> Result<(), IdempotencyError> {
        while self.records.len() >= max_entries || self.bytes + bytes > max_bytes {
            if !self.evict_oldest() {
                return Err(IdempotencyError::Full(self.records.len()));
            }
        }
        Ok(())
    }

    fn push_completed(&mut self, key: String, max_entries: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.completed.push_back((key, seq));
        // Entries of records that expired or were replaced are dropped now and then, so the
        // queue stays within a small multiple of the records held.
        if self.completed.len() > 2 * max_entries.max(8) {
            let records = &self.records;
            self.completed.retain(|(k, s)| matches!(records.peek(k), Some(Record::Completed { seq, .. }) if seq == s));
        }
        seq
    }
}

struct Inner {
    state: Mutex<State>,
    max_entries: usize,
    max_bytes: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves the state consistent between map calls, so it is usable after
        // any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` if `claim` still owns its record.
    fn if_owner(
        &self,
        claim: &OwnedClaim,
        op: impl FnOnce(&mut State, Instant) -> Result<(), IdempotencyError>,
    ) -> Result<(), IdempotencyError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(now);
        match state.records.get(&claim.record, now) {
            Some((Record::InFlight { token, .. }, _)) if *token == claim.token => op(&mut state, now),
            _ => Err(IdempotencyError::ClaimLost),
        }
    }
}

impl MemoryIdempotencyStore {
    /// A store with the default bounds ([`DEFAULT_MAX_ENTRIES`], [`DEFAULT_MAX_BYTES`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding at most `max_entries` records and `max_bytes` of stored responses.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        let state = State { records: ExpiryMap::new(), bytes: 0, completed: VecDeque::new(), next_seq: 0 };
        Self { inner: Arc::new(Inner { state: Mutex::new(state), max_entries: max_entries.max(1), max_bytes }) }
    }

    fn claim_sync(
        &self,
        org: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, IdempotencyError> {
        let now = Instant::now();
        let record = super::record_name(org, key);
        let mut state = self.inner.lock();
        state.sweep(now);
        Ok(match state.records.get(&record, now) {
            Some((Record::InFlight { fingerprint: stored, .. }, deadline)) => {
                if stored != fingerprint {
                    Claim::Mismatch
                } else {
                    super::in_progress(deadline.saturating_duration_since(now))
                }
            }
            Some((Record::Completed { fingerprint: stored, response, .. }, _)) => {
                if stored != fingerprint {
                    Claim::Mismatch
                } else {
                    Claim::Completed(response.clone())
                }
            }
            None => {
                state.make_room(self.inner.max_entries, self.inner.max_bytes, 0)?;
                let token = super::new_token();
                let in_flight = Record::InFlight { fingerprint: *fingerprint, token };
                let replaced = state.records.insert(record.clone(), in_flight, deadline(now, lease), now);
                state.forget(replaced);
                drop(state);
                let claim = OwnedClaim { record, token, fingerprint: *fingerprint, ttl };
                Claim::Acquired(ClaimGuard::new(self.inner.clone(), claim))
            }
        })
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))).unwrap_or(now)
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
        Box::pin(async move { claim })
    }
}

impl ClaimOwner for Inner {
    fn complete<'a>(
        &'a self,
        claim: &'a OwnedClaim,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |state, now| {
            let size = cost(response);
            // The claim's own record is replaced, so it does not count against the entries.
            let held = state.records.remove(&claim.record);
            let room = if size > self.max_bytes {
                Err(IdempotencyError::TooLarge(size))
            } else {
                state.make_room(self.max_entries, self.max_bytes, size)
            };
            if let Err(e) = room {
                // Not stored: the key is released so the client can retry.
                state.forget(held);
                return Err(e);
            }
            let seq = state.push_completed(claim.record.clone(), self.max_entries);
            let completed = Record::Completed { fingerprint: claim.fingerprint, response: response.clone(), seq };
            state.bytes += size;
            state.records.insert(claim.record.clone(), completed, deadline(now, claim.ttl), now);
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, claim: &'a OwnedClaim) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |state, _| {
            let removed = state.records.remove(&claim.record);
            state.forget(removed);
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn renew<'a>(&'a self, claim: &'a OwnedClaim, lease: Duration) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        let result = self.if_owner(claim, |state, now| {
            let in_flight = Record::InFlight { fingerprint: claim.fingerprint, token: claim.token };
            state.records.insert(claim.record.clone(), in_flight, deadline(now, lease), now);
            Ok(())
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use bytes::Bytes;

    use super::*;
    use crate::BodyKind;

    const LEASE: Duration = Duration::from_secs(30);
    const TTL: Duration = Duration::from_secs(3600);

    fn response(body_bytes: usize) -> StoredResponse {
        StoredResponse {
            status: 200,
            headers: vec![],
            kind: BodyKind::Whole,
            body: Bytes::from(vec![b'x'; body_bytes]),
        }
    }

    async fn claim(store: &MemoryIdempotencyStore, key: &str) -> Result<Claim, IdempotencyError> {
        store.claim("org", key, &[7; 32], LEASE, TTL).await
    }

    async fn store_one(store: &MemoryIdempotencyStore, key: &str, body_bytes: usize) {
        match claim(store, key).await.unwrap() {
            Claim::Acquired(guard) => guard.complete(response(body_bytes)).await.unwrap(),
            other => panic!("{key}: {other:?}"),
        }
    }

    async fn is_stored(store: &MemoryIdempotencyStore, key: &str) -> bool {
        match claim(store, key).await.unwrap() {
            Claim::Completed(_) => true,
            Claim::Acquired(guard) => {
                guard.release().await.unwrap();
                false
            }
            other => panic!("{key}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_oldest_completed_records_make_room_for_new_ones() {
        let store = MemoryIdempotencyStore::with_limits(3, usize::MAX);
        for key in ["a", "b", "c", "d"] {
            store_one(&store, key, 10).await;
        }
        assert_eq!(store.inner.lock().records.len(), 3);
        assert!(!is_stored(&store, "a").await, "evicted: a retry runs again");
        for key in ["c", "d"] {
            assert!(is_stored(&store, key).await, "{key}");
        }
    }

    #[tokio::test]
    async fn stored_bytes_are_bounded() {
        let one = cost(&response(1000));
        let store = MemoryIdempotencyStore::with_limits(100, 2 * one);
        for key in ["a", "b", "c"] {
            store_one(&store, key, 1000).await;
        }
        assert!(store.inner.lock().bytes <= 2 * one);
        assert!(!is_stored(&store, "a").await);
        assert!(is_stored(&store, "b").await && is_stored(&store, "c").await);

        // Larger than the whole store: refused, and the key is free again.
        let Claim::Acquired(guard) = claim(&store, "huge").await.unwrap() else { panic!() };
        assert!(matches!(guard.complete(response(3 * one)).await, Err(IdempotencyError::TooLarge(_))));
        assert!(!is_stored(&store, "huge").await);
        assert!(store.inner.lock().bytes <= 2 * one);
    }

    #[tokio::test]
    async fn calls_in_flight_are_never_evicted() {
        let store = MemoryIdempotencyStore::with_limits(2, usize::MAX);
        let Claim::Acquired(a) = claim(&store, "a").await.unwrap() else { panic!() };
        let Claim::Acquired(b) = claim(&store, "b").await.unwrap() else { panic!() };
        assert!(matches!(claim(&store, "c").await, Err(IdempotencyError::Full(2))));
        assert!(matches!(claim(&store, "a").await.unwrap(), Claim::InProgress { .. }));
        a.release().await.unwrap();
        b.complete(response(1)).await.unwrap();
        assert!(matches!(claim(&store, "c").await.unwrap(), Claim::Acquired(_)));
    }
}
