//! Rate limits and budgets on the request path.
//!
//! Requests and tokens per minute are checked for the key and for its org in
//! one atomic step (`aigate-admission`: GCRA, in-process or on Redis). Token
//! limits reserve an estimate before the call (prompt estimate + max_tokens,
//! or `limits.default_completion_tokens`) and settle on the actual usage
//! after it. Every response carries OpenAI's `x-ratelimit-*` headers for the
//! tightest limit; a refusal is a 429 with `Retry-After` and `retry-after-ms`.
//!
//! Budgets: an org's monthly spend (from the ledger's daily rollups, cached
//! for `limits.budget_cache_ms`) at or over its cap refuses new calls with 429
//! `budget_exceeded`. 429 rather than 402 because clients already back off on
//! 429, and OpenAI signals an exhausted quota the same way (`insufficient_quota`).
//! Error bound: calls already running, records not yet written by the batched
//! writer (≤ ~200 ms) and the spend cache can let spend pass the cap by the
//! cost of the calls admitted in that window.

use std::sync::Arc;
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
    spend: Cache<i64, Money>,
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
        Limits { limiter, config, store, currency, spend }
    }

    /// The token estimate reserved before a call.
    pub fn estimate(&self, prompt_tokens: u32, max_tokens: Option<u32>) -> u32 {
        prompt_tokens.saturating_add(max_tokens.unwrap_or(self.config.default_completion_tokens))
    }

    pub async fn admit(&self, tenant: &Tenant, estimate: u32) -> Result<Admitted, ApiError> {
        self.check_budget(tenant).await?;
        let keys = [
            LimitKey::key(tenant.key_id.0.to_string(), tenant.rpm_limit.or(self.config.key_rpm), tenant.tpm_limit.or(self.config.key_tpm).map(clamp_u32)),
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
        let Some(budget) = tenant.monthly_budget else {
            return Ok(());
        };
        let spend = match self.spend.get(&tenant.org_id.0) {
            Some(s) => s,
            None => {
                let today = time::OffsetDateTime::now_utc().date();
                let month_start = today.replace_day(1).unwrap_or(today);
                match self.store.spend_since(tenant.org_id, &self.currency, month_start).await {
                    Ok(s) => {
                        self.spend.insert(tenant.org_id.0, s);
                        s
                    }
                    Err(e) => return Err(ApiError::store_unavailable(format!("The budget cannot be checked right now ({e}).")) ),
                }
            }
        };
        if spend >= budget {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind::RATE_LIMIT,
                Some("budget_exceeded"),
                format!(
                    "Organisation `{}` has spent {spend} {} of its monthly budget of {budget}; calls resume next month or when the operator raises it.",
                    tenant.org_name, self.currency
                ),
                ErrorSource::Client,
            ));
        }
        Ok(())
    }

    /// Corrects the token charge to what the call used (in the background:
    /// the response does not wait for it).
    pub fn settle(reservation: Option<Reservation>, actual_tokens: u32) {
        if let Some(r) = reservation {
            tokio::spawn(async move {
                if let Err(e) = r.settle(actual_tokens, SystemTime::now()).await {
                    tracing::warn!("token reservation not settled: {e}");
                }
            });
        }
    }
}
