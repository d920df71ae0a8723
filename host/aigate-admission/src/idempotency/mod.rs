//! Idempotency-Key claims and stored responses (IETF httpapi "The Idempotency-Key HTTP Header
//! Field" draft, with Stripe's practice where the draft leaves room).

pub(crate) mod key;
pub(crate) mod memory;
pub(crate) mod record;
pub(crate) mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::{BoxFuture, IdempotencyError, StoredResponse};

/// SHA-256 of a request's method, path and canonical body (see [`crate::fingerprint`]).
pub type Fingerprint = [u8; 32];

/// How long completed records are kept unless the caller says otherwise (Stripe: 24 h).
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest [`Claim::InProgress::retry_after`]: a client told to come back after the whole
/// lease would wait far longer than a typical call takes.
pub const IN_PROGRESS_RETRY_HINT: Duration = Duration::from_secs(1);

/// Claims on idempotency keys, shared by all gateway replicas.
///
/// # Contract
///
/// - A key is scoped by `org`: the same key in two organisations names two records.
/// - [`claim`](Self::claim) is atomic across replicas. Its outcome, in order of precedence:
///   - no live record: the caller now owns the key for `lease` and gets
///     [`Claim::Acquired`]; it must finish with [`ClaimGuard::complete`] or
///     [`ClaimGuard::release`];
///   - a record (in flight or completed) with another fingerprint: [`Claim::Mismatch`]
///     (the draft's 422), whatever its state;
///   - an in-flight record with the same fingerprint: [`Claim::InProgress`] (409). The store
///     does not wait for the first request to finish: holding a connection for the length of
///     an LLM call, on a key the client is retrying, only ties up both sides;
///   - a completed record with the same fingerprint: [`Claim::Completed`] with the stored
///     response, to replay without calling the provider or billing again.
/// - An in-flight record lives for its lease: if the owner crashes, the key is free again
///   after the lease. A long call should [`ClaimGuard::renew`] its lease rather than take a
///   huge one, so a crashed replica blocks the key only briefly.
/// - A completed record lives for the `ttl` given to `claim` ([`DEFAULT_RECORD_TTL`]), then
///   the key can be claimed afresh.
/// - What to store is the caller's choice; the intended rule (from the issue): responses that
///   came from the provider are completed and stored, failures before the provider was
///   called and gateway-side 5xx or timeouts are released so the client can retry.
/// - Time is the backend's own clock (Redis' for the Redis store), since expiry must be
///   consistent across replicas.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `org`; see the trait docs.
    fn claim<'a>(
        &'a self,
        org: &'a str,
        key: &'a str,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, IdempotencyError>>;
}

/// The outcome of [`IdempotencyStore::claim`].
#[derive(Debug)]
#[must_use = "an acquired claim must be completed or released"]
pub enum Claim {
    /// The caller owns the key: run the call, then complete or release the guard.
    Acquired(ClaimGuard),
    /// Another request with the same key and body is in flight (409).
    InProgress {
        /// The remaining lease, capped at [`IN_PROGRESS_RETRY_HINT`]: for `Retry-After`.
        retry_after: Duration,
        /// The remaining lease of the request in flight.
        lease_remaining: Duration,
    },
    /// The key was used with a different request (422).
    Mismatch,
    /// The key's request already finished: replay this response.
    Completed(StoredResponse),
}

/// Ownership of an idempotency key while its request runs.
///
/// Dropping it without `complete` or `release` leaves the key in flight until the lease
/// expires, the same as a crash: a dropped guard means the outcome is unknown (the provider
/// may have been called), so the key must not be free for an immediate retry.
#[must_use = "complete or release the claim; dropping it keeps the key in flight until the lease expires"]
pub struct ClaimGuard {
    owner: Arc<dyn ClaimOwner>,
    claim: OwnedClaim,
}

impl std::fmt::Debug for ClaimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimGuard").field("record", &self.claim.record).finish_non_exhaustive()
    }
}

impl ClaimGuard {
    pub(crate) fn new(owner: Arc<dyn ClaimOwner>, claim: OwnedClaim) -> Self {
        Self { owner, claim }
    }

    /// Stores `response` as the outcome of this key for the record TTL and ends the claim.
    /// [`IdempotencyError::ClaimLost`] if the lease had expired: nothing is stored then.
    pub async fn complete(self, response: StoredResponse) -> Result<(), IdempotencyError> {
        self.owner.complete(&self.claim, &response).await
    }

    /// Frees the key so the client can retry (nothing stored). `ClaimLost` if the lease had
    /// already expired.
    pub async fn release(self) -> Result<(), IdempotencyError> {
        self.owner.release(&self.claim).await
    }

    /// Extends the lease to `lease` from now, for calls that outlive it. `ClaimLost` if the
    /// lease had already expired.
    pub async fn renew(&self, lease: Duration) -> Result<(), IdempotencyError> {
        self.owner.renew(&self.claim, lease).await
    }
}

/// What a guard needs to prove ownership.
#[derive(Debug)]
pub(crate) struct OwnedClaim {
    /// The backend's record key (org and idempotency key combined).
    pub(crate) record: String,
    pub(crate) token: [u8; 16],
    pub(crate) fingerprint: Fingerprint,
    pub(crate) ttl: Duration,
}

/// The backend side of [`ClaimGuard`]: every method checks the token first, so a stale owner
/// (lease expired, key claimed again) can never overwrite or free someone else's claim.
pub(crate) trait ClaimOwner: Send + Sync {
    fn complete<'a>(
        &'a self,
        claim: &'a OwnedClaim,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>>;

    fn release<'a>(&'a self, claim: &'a OwnedClaim) -> BoxFuture<'a, Result<(), IdempotencyError>>;

    fn renew<'a>(&'a self, claim: &'a OwnedClaim, lease: Duration) -> BoxFuture<'a, Result<(), IdempotencyError>>;
}

/// One record key for (org, key): length-prefixed so no org/key pair can collide with
/// another, whatever characters they hold.
pub(crate) fn record_name(org: &str, key: &str) -> String {
    format!("{}:{org}:{key}", org.len())
}

pub(crate) fn new_token() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

pub(crate) fn in_progress(lease_remaining: Duration) -> Claim {
    Claim::InProgress { retry_after: lease_remaining.min(IN_PROGRESS_RETRY_HINT), lease_remaining }
}
