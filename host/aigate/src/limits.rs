//! Rate limits and budgets on the request path.
//!
//! Requests and tokens per minute are checked for the key and for its org in
//! one atomic step (`aigate-admission`: GCRA, in-process or on Redis). Token
//! limits reserve an estimate before the call (prompt estimate + max_tokens,
//! or `limits.default_completion_tokens`) and settle on the actual usage
//! after it. Every response carries OpenAI's `x-ratelimit-*` headers for the
//! tightest limit; a refusal is a 429 with `Retry-After` and `retry-after-ms`.
//!
//! Concurrent streams: at most `limits.key_concurrent_streams` per key and
//! `limits.org_concurrent_streams` per org, per replica (the plugin instance
//! slots and upstream connections they hold are per replica too), so one
//! tenant cannot take every slot; past either, 429 `concurrent_streams_exceeded`
//! naming the cap.
//!
//! Budgets: an org's monthly spend (from the ledger's daily rollups, cached
//! for `limits.budget_cache_ms`) at or over its cap refuses new calls with 429
//! `budget_exceeded`. A budget counts one currency: calls priced in another
//! are refused before they start (`Billing::check`), and spend found in
//! another currency refuses new calls (400 `budget_currency_mismatch`), so no
//! spend escapes a budget because of its currency. 429 rather than 402
//! because clients already back off on 429, and OpenAI signals an exhausted quota the same way (`insufficient_quota`).
//! Error bound: calls already running, records not yet written by the batched
//! writer (≤ ~200 ms) and the spend cache can let spend pass the cap by the
//! cost of the calls admitted in that window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aigate_admission::{Admission, LimitKey, LimitKind, RateLimiter, Reservation, Scope, retry_after_headers};
use aigate_core::Money;
use aigate_store::{Store, UsageRepo};
use axum::http::StatusCode;
use moka::sync::Cache;

use crate::auth::Tenant;
use crate::config::LimitsConfig;
use crate::error::{ApiError, ErrorSource, kind};

pub struct Limits {
    limiter: Arc<dyn RateLimiter>,
    config: LimitsConfig,
    store: Store,
    currency: String,
    /// Org id → this month's billed spend per currency.
    spend: Cache<i64, Arc<[(String, Money)]>>,
    streams: Arc<StreamSlots>,
}

/// Streams open on this replica, per key and per org. Per replica because
/// what they protect, plugin instance slots and upstream connections, are.
struct StreamSlots {
    open: Mutex<HashMap<Holder, u32>>,
    key_max: u32,
    org_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    Key(i64),
    Org(i64),
}

/// One open stream of a key and its org; the slots free when it is dropped.
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    key: Holder,
    org: Holder,
}

impl StreamSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Holder, u32>> {
        // Each change is one map operation: the map is consistent after a panic.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(self: &Arc<Self>, tenant: &Tenant) -> Result<StreamPermit, ApiError> {
        let (key, org) = (Holder::Key(tenant.key_id.0), Holder::Org(tenant.org_id.0));
        let mut open = self.lock();
        let held = |h: &Holder| open.get(h).copied().unwrap_or(0);
        let refused = if held(&key) >= self.key_max {
            Some((format!("API key {}…", tenant.key_prefix), self.key_max, "limits.key_concurrent_streams"))
        } else if held(&org) >= self.org_max {
            Some((format!("organisation `{}`", tenant.org_name), self.org_max, "limits.org_concurrent_streams"))
        } else {
            None
        };
        if let Some((who, max, setting)) = refused {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind::RATE_LIMIT,
                Some("concurrent_streams_exceeded"),
                format!("{who} already has {max} streams open on this gateway ({setting}). Retry when one of them has finished."),
                ErrorSource::Client,
            )
            .retryable()
            .with_retry_after(Duration::from_secs(1)));
        }
        *open.entry(key).or_insert(0) += 1;
        *open.entry(org).or_insert(0) += 1;
        Ok(StreamPermit { slots: self.clone(), key, org })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        for holder in [self.key, self.org] {
            if let Some(n) = open.get_mut(&holder) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&holder);
                }
            }
        }
    }
}

/// A call let through: the reservation to settle and the headers to send.
pub struct Admitted {
    pub reservation: Option<Reservation>,
    pub headers: Vec<(&'static str, String)>,
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Limits {
    pub fn new(limiter: Arc<dyn RateLimiter>, config: LimitsConfig, store: Store, currency: String) -> Self {
        let spend = Cache::builder().time_to_live(config.budget_cache).max_capacity(100_000).build();
        let streams = Arc::new(StreamSlots {
            open: Mutex::new(HashMap::new()),
            key_max: config.key_concurrent_streams,
            org_max: config.org_concurrent_streams,
        });
        Limits { limiter, config, store, currency, spend, streams }
    }

    /// The token estimate reserved before a call.
    pub fn estimate(&self, prompt_tokens: u32, max_tokens: Option<u32>) -> u32 {
        prompt_tokens.saturating_add(max_tokens.unwrap_or(self.config.default_completion_tokens))
    }

    pub async fn admit(&self, tenant: &Tenant, estimate: u32) -> Result<Admitted, ApiError> {
        self.check_budget(tenant).await?;
        let keys = [
            LimitKey::key(
                tenant.key_id.0.to_string(),
                tenant.rpm_limit.or(self.config.key_rpm),
                tenant.tpm_limit.or(self.config.key_tpm).map(clamp_u32),
            ),
            LimitKey::org(tenant.org_id.0.to_string(), self.config.org_rpm, self.config.org_tpm.map(clamp_u32)),
        ];
        if keys.iter().all(|k| k.rpm.is_none() && k.tpm.is_none()) {
            return Ok(Admitted { reservation: None, headers: Vec::new() });
        }
        match self.limiter.acquire(&keys, estimate, SystemTime::now()).await {
            Ok(Admission::Granted(reservation)) => {
                let headers = reservation.snapshot().headers();
                Ok(Admitted { reservation: Some(reservation), headers })
            }
            Ok(Admission::Denied { retry_after, which, snapshot }) => {
                let scope = match which.scope {
                    Scope::Key => format!("API key {}…", tenant.key_prefix),
                    Scope::Org => format!("organisation `{}`", tenant.org_name),
                };
                let what = match which.kind {
                    LimitKind::Requests => "requests per minute",
                    LimitKind::Tokens => "tokens per minute",
                };
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    kind::RATE_LIMIT,
                    Some("rate_limit_exceeded"),
                    format!(
                        "Rate limit reached for {scope} on {what}: limit {}. Retry in {} ms.",
                        which.limit,
                        retry_after.as_millis()
                    ),
                    ErrorSource::Client,
                )
                .retryable();
                err.headers = snapshot.headers();
                err.headers.extend(retry_after_headers(retry_after));
                Err(err)
            }
            Err(e) if self.config.fail_open => {
                tracing::warn!("rate limits unavailable, admitting (limits.fail_open = true): {e}");
                Ok(Admitted { reservation: None, headers: Vec::new() })
            }
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                kind::SERVER,
                Some("limits_unavailable"),
                format!("Rate limits cannot be checked right now ({e}). Try again shortly."),
                ErrorSource::Internal,
            )
            .retryable()
            .with_retry_after(Duration::from_secs(1))),
        }
    }

    async fn check_budget(&self, tenant: &Tenant) -> Result<(), ApiError> {
        let Some((budget, currency)) = tenant.budget(&self.currency) else {
            return Ok(());
        };
        let spend = match self.spend.get(&tenant.org_id.0) {
            Some(s) => s,
            None => {
                let today = time::OffsetDateTime::now_utc().date();
                let month_start = today.replace_day(1).unwrap_or(today);
                let tomorrow = today.next_day().unwrap_or(today);
                match self.store.usage_summary(tenant.org_id, month_start, tomorrow).await {
                    Ok(s) => {
                        let spend: Arc<[(String, Money)]> =
                            s.totals.into_iter().map(|t| (t.currency, t.billed_cost)).collect();
                        self.spend.insert(tenant.org_id.0, spend.clone());
                        spend
                    }
                    Err(e) => {
                        return Err(ApiError::store_unavailable(format!(
                            "The budget cannot be checked right now ({e})."
                        )));
                    }
                }
            }
        };
        // Spend in another currency (e.g. a rule changed after the budget
        // was set) would escape the budget: no call passes until the month ends
        // or the operator fixes the prices or the budget.
        if let Some((other, amount)) = spend.iter().find(|(c, m)| c != currency && *m > Money::ZERO) {
            return Err(ApiError::budget_currency_mismatch(format!(
                "Organisation `{}` was billed {amount} {other} this month, which its monthly budget in {currency} cannot count \
                 (there are no exchange rates); calls resume next month, or when the operator sets the budget in {other} \
                 or removes it.",
                tenant.org_name
            )));
        }
        let spent = spend.iter().find(|(c, _)| c == currency).map_or(Money::ZERO, |(_, m)| *m);
        if spent >= budget {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind::RATE_LIMIT,
                Some("budget_exceeded"),
                format!(
                    "Organisation `{}` has spent {spent} {currency} of its monthly budget of {budget} {currency}; calls resume next month or when the operator raises it.",
                    tenant.org_name
                ),
                ErrorSource::Client,
            ));
        }
        Ok(())
    }

    /// Takes a stream slot of the tenant's key and org: 429
    /// `concurrent_streams_exceeded` when either has all of its own open.
    pub fn open_stream(&self, tenant: &Tenant) -> Result<StreamPermit, ApiError> {
        self.streams.open(tenant)
    }

    /// Corrects the token charge to what the call used (in the background:
    /// the response does not wait for it).
    pub fn settle(reservation: Option<Reservation>, actual_tokens: u32) {
        if let Some(r) = reservation
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = r.settle(actual_tokens, SystemTime::now()).await {
                    tracing::warn!("token reservation not settled: {e}");
                }
            });
        }
    }
}
