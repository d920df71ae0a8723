//! Rate limits: requests per minute (RPM) and tokens per minute (TPM), per API key and per
//! organisation.
//!
//! # Algorithm: GCRA, burst = the per-minute limit
//!
//! Each (scope, id, kind) is one GCRA bucket (in its leaky-bucket form, see `gcra.rs`): it
//! holds up to `limit` units and drains continuously at `limit` units per minute. A request
//! costs 1 unit of every RPM bucket and `estimated_tokens` units of every TPM bucket that
//! applies to it, and is admitted only if it fits into all of them; then all are charged,
//! otherwise none (one mutex section in process, one Lua script on Redis).
//!
//! Why GCRA rather than a sliding window: O(1) state per bucket (one number and a
//! timestamp, no per-request log), an exact `retry_after` (the time until the request would
//! fit), smooth refill instead of a cliff at window edges, and reservations with arbitrary
//! token costs and later corrections are just additions to the level.
//!
//! ## Error bound
//!
//! GCRA never admits more than `limit + d × limit / 60 s` units in any interval of length `d`:
//! the full burst plus what drained meanwhile. So:
//!
//! - a burst that arrives within `d` seconds is admitted up to `limit + ⌊d × limit / 60⌋`
//!   requests (for rpm = 60 and a burst lasting under a second: exactly 60). Tokens obey the
//!   same bound on the charged amounts, with one exception below (estimates above the limit);
//!   it bounds what is admitted, not what the provider then uses: `settle` charges overruns
//!   after the fact, and later requests pay for them;
//! - over any sliding 60 s window the count can reach `2 × limit` (a full bucket spent at the
//!   start of the window, refilled during it); the long-run rate is exactly `limit` per minute.
//!   A sliding-window log would hold that at `limit` but costs O(limit) memory per bucket.
//! - Time comes from the caller (`now`). Replicas whose clocks differ by `δ` can together
//!   admit up to `δ × limit / 60 s` extra units (keep replicas on NTP; a `now` behind the
//!   stored one drains nothing, it never runs time backwards).
//! - Resolution: levels are IEEE doubles, timestamps integer microseconds; rounding is below
//!   1e-9 units per operation.
//!
//! ## Token estimates larger than the limit
//!
//! A request whose estimate exceeds the whole TPM limit (e.g. a large `max_tokens`) is not
//! refused forever: it is admitted when the token bucket is empty and charged in full, so the
//! following requests wait until the over-full bucket drains (or until `settle` refunds the
//! unused part). The long-run rate bound still holds.

pub(crate) mod gcra;
pub(crate) mod memory;
pub(crate) mod redis;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{BoxFuture, LimitError};

/// The period of every limit: rpm and tpm are per minute.
pub const PERIOD: Duration = Duration::from_secs(60);

/// A rate-limit store shared by all gateway replicas.
///
/// # Contract
///
/// - [`acquire`](Self::acquire) checks every limit in `keys` and either charges all of them
///   (1 request to each RPM bucket, `estimated_tokens` to each TPM bucket) and returns
///   [`Admission::Granted`], or charges nothing and returns [`Admission::Denied`] naming the
///   limit that must be waited for longest. The check-and-charge is atomic across replicas.
/// - `now` is the caller's wall clock (inject it in tests and benchmarks). It only needs to be
///   roughly monotonic; see the module docs for what clock skew costs.
/// - Limits are passed with every call (they live in the key and org records, not here), so a
///   changed limit applies from the next call; the bucket keeps its level.
/// - A `None` limit is not checked. A limit of 0 denies everything (retry after a period).
/// - The same (scope, id) listed twice is checked once with the smaller limit.
/// - Nothing here knows about budgets or HTTP: the server maps `Denied` to a 429 with
///   [`RateSnapshot::headers`] and [`retry_after_headers`], and decides what a
///   [`LimitError::RedisUnavailable`] means (fail open or closed).
///
/// # After the call
///
/// The [`Reservation`] must be settled with the actual token usage once it is known (after the
/// response, or at the end of a stream). Dropping it keeps the estimate charged.
pub trait RateLimiter: Send + Sync {
    /// Checks and charges all `keys` at once; see the trait docs.
    fn acquire<'a>(
        &'a self,
        keys: &'a [LimitKey],
        estimated_tokens: u32,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Admission, LimitError>>;
}

/// Whose limit: an API key's or its organisation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    Org,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Org => "org",
        }
    }
}

/// Requests or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Requests => "rpm",
            Self::Tokens => "tpm",
        }
    }
}

/// The limits of one subject (an API key or an organisation) that apply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKey {
    pub scope: Scope,
    pub id: String,
    /// Requests per minute; `None` = unlimited.
    pub rpm: Option<u32>,
    /// Tokens per minute; `None` = unlimited.
    pub tpm: Option<u32>,
}

impl LimitKey {
    pub fn key(id: impl Into<String>, rpm: Option<u32>, tpm: Option<u32>) -> Self {
        Self { scope: Scope::Key, id: id.into(), rpm, tpm }
    }

    pub fn org(id: impl Into<String>, rpm: Option<u32>, tpm: Option<u32>) -> Self {
        Self { scope: Scope::Org, id: id.into(), rpm, tpm }
    }
}

/// The outcome of [`RateLimiter::acquire`].
#[derive(Debug)]
#[must_use = "a granted admission holds a reservation to settle"]
pub enum Admission {
    /// Every limit was charged; settle the reservation when the usage is known.
    Granted(Reservation),
    /// Nothing was charged (429).
    Denied {
        /// When the request would be admitted if nothing else is charged meanwhile.
        retry_after: Duration,
        /// The limit that must be waited for longest.
        which: LimitHit,
        /// The tightest limits as they stand (nothing was charged).
        snapshot: RateSnapshot,
    },
}

impl Admission {
    /// The header view of this outcome, granted or denied.
    pub fn snapshot(&self) -> &RateSnapshot {
        match self {
            Self::Granted(reservation) => &reservation.snapshot,
            Self::Denied { snapshot, .. } => snapshot,
        }
    }
}

/// The limit that denied a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    pub scope: Scope,
    pub id: String,
    pub kind: LimitKind,
    pub limit: u32,
}

/// One limit as the `x-ratelimit-*` headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub limit: u32,
    /// Whole units that would be admitted right now.
    pub remaining: u32,
    /// Time until the bucket is empty again ("fully reset").
    pub reset: Duration,
}

/// The tightest request limit and the tightest token limit (fewest remaining; on a tie, the
/// smaller limit) among those checked, for the `x-ratelimit-*` headers. A kind with no limit
/// configured is `None` and sends no headers.
///
/// This nests the six values of OpenAI's headers as two optional trios instead of six flat
/// fields, because a key can have an RPM limit and no TPM limit (or none at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSnapshot {
    pub requests: Option<WindowState>,
    pub tokens: Option<WindowState>,
}

impl RateSnapshot {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` as OpenAI sends them, the reset
    /// as a Go duration (`1s`, `6m0s`, `12ms`), rounded up to the millisecond.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(6);
        if let Some(w) = self.requests {
            headers.push(("x-ratelimit-limit-requests", w.limit.to_string()));
            headers.push(("x-ratelimit-remaining-requests", w.remaining.to_string()));
            headers.push(("x-ratelimit-reset-requests", go_duration(w.reset)));
        }
        if let Some(w) = self.tokens {
            headers.push(("x-ratelimit-limit-tokens", w.limit.to_string()));
            headers.push(("x-ratelimit-remaining-tokens", w.remaining.to_string()));
            headers.push(("x-ratelimit-reset-tokens", go_duration(w.reset)));
        }
        headers
    }
}

/// `Retry-After` (whole seconds, rounded up) and `retry-after-ms` (rounded up), the pair the
/// OpenAI SDKs read on a 429.
pub fn retry_after_headers(retry_after: Duration) -> [(&'static str, String); 2] {
    let ms = ceil_millis(retry_after);
    [("retry-after", ms.div_ceil(1000).to_string()), ("retry-after-ms", ms.to_string())]
}

fn ceil_millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Go's `time.Duration.String()` at millisecond resolution (rounded up): `0s`, `12ms`, `1s`,
/// `1.5s`, `6m0s`, `1h2m3.04s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (secs, frac) = (ms / 1000, ms % 1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    if frac > 0 {
        let digits = format!("{frac:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// A granted admission: the tokens charged on the estimate, to be corrected by
/// [`settle`](Self::settle).
///
/// Dropping it without settling keeps the estimate charged. That is deliberate: a drop means
/// the outcome is unknown (a panic, a cancelled task, a client that went away mid-stream), the
/// estimate (prompt + `max_tokens`) is an upper bound of what the provider can bill, and a
/// release would need I/O that `Drop` cannot await. Call `settle(0, ..)` to refund a call that
/// never reached the provider. The request itself stays counted either way.
#[must_use = "settle the reservation with the actual token usage; dropping it keeps the estimate charged"]
pub struct Reservation {
    snapshot: RateSnapshot,
    estimated_tokens: u32,
    /// The TPM buckets charged, with their limits; empty when no token limit applied.
    token_buckets: Vec<(String, u32)>,
    settler: Option<Arc<dyn SettleTokens>>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("snapshot", &self.snapshot)
            .field("estimated_tokens", &self.estimated_tokens)
            .field("token_buckets", &self.token_buckets)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The tightest limits right after this admission was charged.
    pub fn snapshot(&self) -> &RateSnapshot {
        &self.snapshot
    }

    pub fn estimated_tokens(&self) -> u32 {
        self.estimated_tokens
    }

    /// Corrects the token charge from the estimate to `actual_tokens`: refunds the difference
    /// or charges the extra, atomically on every TPM bucket that was charged. An extra charge
    /// may push a bucket over its limit; later requests then wait for it to drain. A refund
    /// never takes a bucket below empty. No I/O when there is nothing to correct.
    pub async fn settle(self, actual_tokens: u32, now: SystemTime) -> Result<(), LimitError> {
        let delta = i64::from(actual_tokens) - i64::from(self.estimated_tokens);
        match &self.settler {
            Some(settler) if delta != 0 && !self.token_buckets.is_empty() => {
                settler.settle(&self.token_buckets, delta, unix_micros(now)).await
            }
            _ => Ok(()),
        }
    }
}

/// The backend side of [`Reservation::settle`].
pub(crate) trait SettleTokens: Send + Sync {
    /// Adds `delta` tokens (negative: refund) to each bucket, never below empty.
    fn settle<'a>(
        &'a self,
        buckets: &'a [(String, u32)],
        delta: i64,
        now_us: u64,
    ) -> BoxFuture<'a, Result<(), LimitError>>;
}

/// One bucket to check for one request.
#[derive(Debug)]
pub(crate) struct Check {
    /// `<scope>:<id>:<rpm|tpm>`: unambiguous because scope and kind are fixed words.
    pub(crate) bucket: String,
    pub(crate) scope: Scope,
    pub(crate) id: String,
    pub(crate) kind: LimitKind,
    pub(crate) limit: u32,
    pub(crate) cost: u32,
}

/// The buckets a request must fit into, duplicates merged (the smaller limit wins).
pub(crate) fn plan(keys: &[LimitKey], estimated_tokens: u32) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::with_capacity(keys.len() * 2);
    for key in keys {
        let limits = [(LimitKind::Requests, key.rpm, 1), (LimitKind::Tokens, key.tpm, estimated_tokens)];
        for (kind, limit, cost) in limits {
            let Some(limit) = limit else { continue };
            let bucket = format!("{}:{}:{}", key.scope.as_str(), key.id, kind.suffix());
            match checks.iter_mut().find(|c| c.bucket == bucket) {
                Some(existing) => existing.limit = existing.limit.min(limit),
                None => checks.push(Check { bucket, scope: key.scope, id: key.id.clone(), kind, limit, cost }),
            }
        }
    }
    checks
}

/// Builds the outcome from each bucket's level: after the charge when `granted`, before it
/// otherwise. Shared by both backends so they report identically.
pub(crate) fn outcome(
    checks: Vec<Check>,
    levels: &[f64],
    granted: bool,
    estimated_tokens: u32,
    settler: Arc<dyn SettleTokens>,
) -> Admission {
    let mut snapshot = RateSnapshot::default();
    for (check, &level) in checks.iter().zip(levels) {
        let state = gcra::window(level, check.limit);
        let slot = match check.kind {
            LimitKind::Requests => &mut snapshot.requests,
            LimitKind::Tokens => &mut snapshot.tokens,
        };
        let tighter = slot.is_none_or(|current| (state.remaining, state.limit) < (current.remaining, current.limit));
        if tighter {
            *slot = Some(state);
        }
    }
    if granted {
        let token_buckets =
            checks.into_iter().filter(|c| c.kind == LimitKind::Tokens).map(|c| (c.bucket, c.limit)).collect();
        return Admission::Granted(Reservation { snapshot, estimated_tokens, token_buckets, settler: Some(settler) });
    }
    let mut worst: Option<(Duration, &Check)> = None;
    for (check, &level) in checks.iter().zip(levels) {
        if let Err(wait) = gcra::check(level, check.limit, check.cost)
            && worst.is_none_or(|(longest, _)| wait > longest)
        {
            worst = Some((wait, check));
        }
    }
    // The backends deny only when some check fails, so `worst` is set; the fallback keeps a
    // disagreement (which would be a bug) harmless: retry very soon.
    let (retry_after, check) = match worst {
        Some(found) => found,
        None => match checks.first() {
            Some(first) => (Duration::from_millis(1), first),
            None => {
                return Admission::Granted(Reservation {
                    snapshot,
                    estimated_tokens,
                    token_buckets: Vec::new(),
                    settler: None,
                });
            }
        },
    };
    let which = LimitHit { scope: check.scope, id: check.id.clone(), kind: check.kind, limit: check.limit };
    Admission::Denied { retry_after, which, snapshot }
}

/// A granted admission for a request with no limits at all.
pub(crate) fn unlimited(estimated_tokens: u32) -> Admission {
    Admission::Granted(Reservation {
        snapshot: RateSnapshot::default(),
        estimated_tokens,
        token_buckets: Vec::new(),
        settler: None,
    })
}

pub(crate) fn unix_micros(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_openai_examples() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(11_200)), "12ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(8640)), "8.64s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(3_723_040)), "1h2m3.04s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_nanos(1)), "1ms");
    }

    #[test]
    fn retry_after_rounds_up() {
        let [(a, secs), (b, ms)] = retry_after_headers(Duration::from_micros(1_000_001));
        assert_eq!((a, secs.as_str(), b, ms.as_str()), ("retry-after", "2", "retry-after-ms", "1001"));
    }

    #[test]
    fn headers_skip_unconfigured_kinds() {
        let snapshot = RateSnapshot {
            requests: Some(WindowState { limit: 60, remaining: 59, reset: Duration::from_secs(1) }),
            tokens: None,
        };
        assert_eq!(
            snapshot.headers(),
            vec![
                ("x-ratelimit-limit-requests", "60".to_owned()),
                ("x-ratelimit-remaining-requests", "59".to_owned()),
                ("x-ratelimit-reset-requests", "1s".to_owned()),
            ]
        );
    }

    #[test]
    fn plan_merges_duplicates_with_the_smaller_limit() {
        let keys = [LimitKey::key("k", Some(10), None), LimitKey::key("k", Some(5), Some(100))];
        let checks = plan(&keys, 7);
        assert_eq!(checks.len(), 2);
        assert_eq!((checks[0].bucket.as_str(), checks[0].limit), ("key:k:rpm", 5));
        assert_eq!((checks[1].bucket.as_str(), checks[1].cost), ("key:k:tpm", 7));
    }
}
