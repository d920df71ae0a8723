//! Bearer API keys → the tenant a request acts for.
//!
//! Keys are looked up by their SHA-256 hash (the plaintext is never stored
//! nor logged). Lookups are cached in memory for `auth.key_cache_ttl_ms`
//! (default 10 s), unknown keys included, so the hot path does not reach the
//! database on every request; a key revoked on any replica stops working on
//! every replica within that TTL.

use std::sync::Arc;
use std::time::Duration;

use aigate_core::{KeyHash, KeyId, ModelScope, Money, OrgId};
use aigate_store::{KeyRepo, OrgRepo, Store};
use axum::http::{HeaderMap, StatusCode, header};
use moka::sync::Cache;
use time::OffsetDateTime;

use crate::error::{ApiError, ErrorSource};

/// The organisation and key a request is authenticated as.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org_id: OrgId,
    pub org_name: String,
    pub key_id: KeyId,
    pub key_prefix: String,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u64>,
    pub markup_bps: u32,
    pub monthly_budget: Option<Money>,
    /// The currency the budget counts; `None`: the billing currency.
    pub monthly_budget_currency: Option<String>,
    /// The models this key may call (`None`: all).
    pub key_models: Option<ModelScope>,
    /// The models every key of the org may call (`None`: all).
    pub org_models: Option<ModelScope>,
}

impl Tenant {
    /// The org's monthly budget and its currency (`default_currency` for
    /// budgets set before budgets had one).
    pub fn budget<'a>(&'a self, default_currency: &'a str) -> Option<(Money, &'a str)> {
        let currency = self.monthly_budget_currency.as_deref().unwrap_or(default_currency);
        self.monthly_budget.map(|b| (b, currency))
    }

    /// Whether this key may call `model` (the name as the client or a route's fallback list
    /// writes it): allowed by the key's scope and by its org's.
    pub fn may_call(&self, model: &str) -> bool {
        self.key_models.as_ref().is_none_or(|s| s.allows(model))
            && self.org_models.as_ref().is_none_or(|s| s.allows(model))
    }

    /// The 403 for a model outside the scope.
    pub fn not_allowed(&self, model: &str) -> ApiError {
        let scopes: Vec<String> =
            [&self.key_models, &self.org_models].into_iter().flatten().map(ModelScope::to_text).collect();
        ApiError::model_not_allowed(model, &scopes.join(" and "))
    }
}

/// The caller of a `/v1/*` route, authenticated from its `Authorization` header. As an
/// extractor it runs before the handler, which cannot be reached without it (a 401 otherwise).
#[derive(Debug, Clone)]
pub struct Authed(pub Arc<Tenant>);

impl axum::extract::FromRequestParts<Arc<crate::server::AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<crate::server::AppState>,
    ) -> Result<Self, ApiError> {
        let auth = state.auth.authenticate(&parts.headers);
        tracing::Instrument::instrument(auth, crate::telemetry::step("auth")).await.map(Authed)
    }
}

/// A presented key worth looking up: 1 to 256 visible ASCII characters, trimmed.
fn well_formed(key: &str) -> Option<&str> {
    let key = key.trim();
    (!key.is_empty() && key.len() <= 256 && key.bytes().all(|b| b.is_ascii_graphic())).then_some(key)
}

/// Resolves API keys, with a TTL cache in front of the store.
pub struct Authenticator {
    store: Store,
    /// hash → tenant, or `None` for a key the store does not know.
    cache: Cache<String, Option<Arc<Tenant>>>,
}

fn unauthorized(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        crate::error::kind::AUTHENTICATION,
        Some(code),
        message,
        ErrorSource::Client,
    )
}

impl Authenticator {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Authenticator { store, cache: Cache::builder().time_to_live(ttl).max_capacity(100_000).build() }
    }

    /// Drops every cached lookup (after a change made through this replica;
    /// other replicas see it within the TTL).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// The tenant of the request's `Authorization: Bearer <key>`, or a 401
    /// that says what is wrong (503 when the store cannot be reached).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Tenant>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing_api_key",
                "Missing API key. Send `Authorization: Bearer <key>`; `aigate keys create --org NAME` makes one.",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .and_then(well_formed);
        let Some(presented) = presented else {
            return Err(unauthorized(
                "invalid_api_key",
                "Malformed Authorization header. Send `Authorization: Bearer <key>`.",
            ));
        };
        self.tenant_of(presented).await
    }

    /// The tenant of a key presented in another header (Anthropic's `x-api-key`).
    pub async fn authenticate_key(&self, presented: &str) -> Result<Arc<Tenant>, ApiError> {
        let Some(presented) = well_formed(presented) else {
            return Err(unauthorized("invalid_api_key", "Malformed API key. Send the gateway key as `x-api-key`."));
        };
        self.tenant_of(presented).await
    }

    async fn tenant_of(&self, presented: &str) -> Result<Arc<Tenant>, ApiError> {
        let hash = KeyHash::of(presented);
        let tenant = match self.cache.get(hash.as_str()) {
            Some(cached) => cached,
            None => {
                let loaded = self.load(&hash).await?;
                self.cache.insert(hash.as_str().to_owned(), loaded.clone());
                loaded
            }
        };
        let Some(tenant) = tenant else {
            return Err(unauthorized(
                "invalid_api_key",
                "Incorrect API key provided. Check the key, or create one with `aigate keys create`.",
            ));
        };
        // Checked per request from the cached dates, so an expiry takes effect
        // on time even while the entry is cached.
        let now = OffsetDateTime::now_utc();
        if tenant.revoked_at.is_some() {
            return Err(unauthorized(
                "api_key_revoked",
                format!("API key {}… has been revoked. Use another key.", tenant.key_prefix),
            ));
        }
        if tenant.expires_at.is_some_and(|at| now >= at) {
            return Err(unauthorized(
                "api_key_expired",
                format!("API key {}… has expired. Use another key.", tenant.key_prefix),
            ));
        }
        Ok(tenant)
    }

    async fn load(&self, hash: &KeyHash) -> Result<Option<Arc<Tenant>>, ApiError> {
        let unavailable = |e: aigate_store::StoreError| {
            ApiError::store_unavailable(format!("API keys cannot be checked right now ({e}). Try again shortly."))
        };
        let Some(key) = self.store.find_key_by_hash(hash).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let org = self.store.org_by_id(key.org_id).await.map_err(unavailable)?;
        let (markup_bps, monthly_budget, monthly_budget_currency) =
            org.map_or((0, None, None), |o| (o.markup_bps, o.monthly_budget, o.monthly_budget_currency));
        Ok(Some(Arc::new(Tenant {
            org_id: key.org_id,
            org_name: key.org_name,
            key_id: key.id,
            key_prefix: key.prefix,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            rpm_limit: key.rpm_limit,
            tpm_limit: key.tpm_limit,
            markup_bps,
            monthly_budget,
            monthly_budget_currency,
            key_models: key.allowed_models,
            org_models: key.org_allowed_models,
        })))
    }
}
