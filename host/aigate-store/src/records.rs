//! What the repositories take and return.

use aigate_core::{KeyHash, KeyId, ModelScope, Money, OrgId, OrgName, TokenUsage};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::StoreError;

/// An organisation (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: OrgId,
    pub name: OrgName,
    /// Added to every billed cost, in basis points (1500 = +15 %).
    pub markup_bps: u32,
    /// Spending cap per calendar month (UTC).
    pub monthly_budget: Option<Money>,
    /// The currency `monthly_budget` counts; `None` for budgets set before
    /// budgets had one: the gateway's billing currency.
    pub monthly_budget_currency: Option<String>,
    /// The models every key of the org may call (`None`: all).
    pub allowed_models: Option<ModelScope>,
    pub created_at: OffsetDateTime,
}

/// A monthly spending cap and the one currency it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub amount: Money,
    /// ISO 4217.
    pub currency: String,
}

/// A key to insert: the material from [`aigate_core::ApiKey`] and its settings.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub org_id: OrgId,
    /// A label for people ("ci", "alice's laptop"); free text, at most 200 characters.
    pub name: String,
    pub prefix: String,
    pub hash: KeyHash,
    pub expires_at: Option<OffsetDateTime>,
    /// Requests per minute allowed for this key (`None`: no key-level limit).
    pub rpm_limit: Option<u32>,
    /// Tokens per minute allowed for this key (`None`: no key-level limit).
    pub tpm_limit: Option<u64>,
    /// The models this key may call (`None`: all).
    pub allowed_models: Option<ModelScope>,
}

/// A stored key, with its org's name so authentication needs one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub org_id: OrgId,
    pub org_name: String,
    pub name: String,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u64>,
    /// The models this key may call (`None`: all).
    pub allowed_models: Option<ModelScope>,
    /// The models every key of its org may call (`None`: all).
    pub org_allowed_models: Option<ModelScope>,
    /// The `created_at` of the key's latest ledger row (`None`: never used).
    /// Set when usage is written, so it lags a call by the writer's batching.
    pub last_used_at: Option<OffsetDateTime>,
}

/// Whether a key may be used at a given moment, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked { at: OffsetDateTime },
    Expired { at: OffsetDateTime },
}

impl KeyRecord {
    /// Revocation wins over expiry when both apply. A key expires at the
    /// instant `expires_at` (`now >= expires_at` is expired); a revocation
    /// takes effect at once, whatever `revoked_at` says.
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        if let Some(at) = self.revoked_at {
            return KeyStatus::Revoked { at };
        }
        match self.expires_at {
            Some(at) if now >= at => KeyStatus::Expired { at },
            _ => KeyStatus::Active,
        }
    }
}

/// A cost reported by the provider, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawCost {
    /// Exact decimal text as reported (`"0.000123"`).
    pub amount: String,
    pub currency: String,
}

/// One usage record: one attempt that reached a provider, whatever its outcome.
/// `(request_id, attempt)` is unique: writing the same entry twice counts it once.
/// A request the router retried or sent to a fallback has one entry per
/// attempt; every attempt but the last has outcome [`RETRIED`] and is not
/// counted as a request in the rollups (its tokens and cost are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The gateway's own id for the call: the ledger key.
    pub request_id: String,
    /// 1 for the first provider call of the request, 2 for the next (a retry
    /// or a fallback), and so on.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The inbound API the request came in through (`chat_completions`, `messages`,
    /// `responses`).
    #[serde(default = "chat_completions")]
    pub api: String,
    /// The id the client sent, for correlation only (not unique). Stored
    /// when it is a [`client_request_id`]; anything else is dropped, never
    /// a reason to refuse the entry.
    #[serde(default)]
    pub client_request_id: Option<String>,
    pub org_id: OrgId,
    pub key_id: KeyId,
    pub provider: String,
    pub model: String,
    pub stream: bool,
    pub usage: TokenUsage,
    /// HTTP status the client got.
    pub status: u16,
    /// How the call ended (`completed`, `provider_error`, `cancelled`, `failed`).
    pub outcome: String,
    pub latency_ms: u64,
    /// Streams: time to the first chunk with content.
    pub ttft_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    pub raw_cost: Option<RawCost>,
    /// What the org is charged for this call, markup included.
    pub billed_cost: Money,
    /// The call had tokens but neither a price rule nor a provider-reported
    /// cost: `billed_cost` is 0 and usage reports say so.
    #[serde(default)]
    pub unpriced: bool,
    /// Currency of `billed_cost` (ISO 4217).
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub(crate) const MAX_REQUEST_ID_CHARS: usize = 200;

/// The outcome of an attempt the router followed with another one.
pub const RETRIED: &str = "retried";

fn first_attempt() -> u32 {
    1
}

fn chat_completions() -> String {
    "chat_completions".to_owned()
}

/// One ledger row of a request, as `UsageRepo::request_attempts` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub attempt: u32,
    pub api: String,
    pub provider: String,
    pub model: String,
    pub outcome: String,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub billed_cost: Money,
    pub currency: String,
    pub latency_ms: u64,
}

/// The longest client-chosen request id kept.
pub const MAX_CLIENT_REQUEST_ID_CHARS: usize = 128;

/// `text` as a client request id worth keeping: 1 to
/// [`MAX_CLIENT_REQUEST_ID_CHARS`] visible ASCII characters (no spaces or
/// controls), else `None`.
pub fn client_request_id(text: &str) -> Option<&str> {
    let ok =
        !text.is_empty() && text.len() <= MAX_CLIENT_REQUEST_ID_CHARS && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(text)
}
pub(crate) const MAX_KEY_NAME_CHARS: usize = 200;

impl LedgerEntry {
    /// What the database would refuse, found before it is asked.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |message: String| StoreError::invalid(format!("usage record {:?}", self.request_id), message);
        if self.request_id.is_empty() || self.request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(invalid(format!("the request id must have 1 to {MAX_REQUEST_ID_CHARS} characters")));
        }
        if self.attempt == 0 || i32::try_from(self.attempt).is_err() {
            return Err(invalid("the attempt number must be between 1 and 2^31-1".into()));
        }
        let texts = [
            Some(self.request_id.as_str()),
            Some(self.provider.as_str()),
            Some(self.model.as_str()),
            Some(self.outcome.as_str()),
            Some(self.api.as_str()),
            self.idempotency_key.as_deref(),
            self.raw_cost.as_ref().map(|c| c.amount.as_str()),
            self.raw_cost.as_ref().map(|c| c.currency.as_str()),
        ];
        if texts.into_iter().flatten().any(crate::shared::has_nul) {
            return Err(invalid("text fields must not contain NUL characters".into()));
        }
        if self.provider.is_empty() || self.model.is_empty() {
            return Err(invalid("provider and model must not be empty".into()));
        }
        if self.billed_cost.is_negative() {
            return Err(invalid(format!("billed cost {} is negative", self.billed_cost)));
        }
        if !aigate_core::pricing::is_currency_code(&self.currency) {
            return Err(invalid(format!("currency `{}` is not an ISO 4217 code", self.currency)));
        }
        let u = &self.usage;
        let big = [u.prompt, u.completion, u.cached, u.reasoning, self.latency_ms, self.ttft_ms.unwrap_or(0)];
        if big.iter().any(|&v| i64::try_from(v).is_err()) {
            return Err(invalid("a token count or duration is out of range".into()));
        }
        Ok(())
    }

    /// The client's id as stored: kept only when it is well-formed.
    pub fn stored_client_request_id(&self) -> Option<&str> {
        self.client_request_id.as_deref().and_then(client_request_id)
    }

    /// The UTC day this entry is counted on in the rollups.
    pub fn day(&self) -> Date {
        self.created_at.to_offset(time::UtcOffset::UTC).date()
    }
}

/// What one [`crate::UsageRepo::insert_usage`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// New ledger rows (each also counted in the rollups).
    pub inserted: u64,
    /// Entries whose request id was already in the ledger (or twice in the batch): skipped.
    pub duplicates: u64,
}

/// Sums over some usage, in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    pub currency: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub billed_cost: Money,
    /// Calls billed 0 because nothing priced them (see [`LedgerEntry::unpriced`]).
    pub unpriced_requests: u64,
}

impl UsageTotals {
    pub(crate) fn zero(currency: &str) -> UsageTotals {
        UsageTotals {
            currency: currency.to_owned(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            billed_cost: Money::ZERO,
            unpriced_requests: 0,
        }
    }

    pub(crate) fn add(&mut self, other: &UsageTotals) -> Result<(), StoreError> {
        let overflow = || StoreError::corrupt("usage totals", "sum out of range");
        self.requests = self.requests.checked_add(other.requests).ok_or_else(overflow)?;
        self.prompt_tokens = self.prompt_tokens.checked_add(other.prompt_tokens).ok_or_else(overflow)?;
        self.completion_tokens = self.completion_tokens.checked_add(other.completion_tokens).ok_or_else(overflow)?;
        self.cached_tokens = self.cached_tokens.checked_add(other.cached_tokens).ok_or_else(overflow)?;
        self.reasoning_tokens = self.reasoning_tokens.checked_add(other.reasoning_tokens).ok_or_else(overflow)?;
        self.billed_cost = self.billed_cost.checked_add(other.billed_cost).map_err(|_| overflow())?;
        self.unpriced_requests = self.unpriced_requests.checked_add(other.unpriced_requests).ok_or_else(overflow)?;
        Ok(())
    }
}

/// Usage of one provider/model on one day, from the daily rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub provider: String,
    pub model: String,
    pub day: Date,
    pub totals: UsageTotals,
}

/// An org's usage over a range of days.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSummary {
    /// Ordered by day, provider, model, currency.
    pub rows: Vec<UsageRow>,
    /// One entry per currency, ordered by currency.
    pub totals: Vec<UsageTotals>,
}

impl UsageSummary {
    pub(crate) fn from_rows(rows: Vec<UsageRow>) -> Result<UsageSummary, StoreError> {
        let mut totals: std::collections::BTreeMap<String, UsageTotals> = Default::default();
        for row in &rows {
            totals
                .entry(row.totals.currency.clone())
                .or_insert_with(|| UsageTotals::zero(&row.totals.currency))
                .add(&row.totals)?;
        }
        Ok(UsageSummary { rows, totals: totals.into_values().collect() })
    }
}

/// What [`crate::UsageRepo::usage_series`] narrows an org's rollups to; the
/// default is everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this key's usage.
    pub key: Option<KeyId>,
    /// Only this model (the exact name, as the ledger records it).
    pub model: Option<String>,
}

/// What one org was billed in one currency over some days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSpend {
    pub org_id: OrgId,
    pub currency: String,
    pub billed_cost: Money,
}

/// Which requests [`crate::UsageRepo::recent_requests`] lists; every filter
/// is optional and they combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFilter {
    pub org: Option<OrgId>,
    pub key: Option<KeyId>,
    /// The model of the final attempt (the exact name, as the ledger records it).
    pub model: Option<String>,
    /// The HTTP statuses of the final attempt (half-open: `500..600` is 5xx).
    pub status: Option<std::ops::Range<u16>>,
    /// At most this many requests (at least 1 is read).
    pub limit: u32,
}

impl Default for RequestFilter {
    fn default() -> RequestFilter {
        RequestFilter { org: None, key: None, model: None, status: None, limit: 50 }
    }
}

/// One request as the recent-requests list shows it: its final attempt's
/// ledger row (where it went, how it ended, its latency and time to first
/// token, both measured from the request's start), and how many attempts it
/// took. Tokens and cost are the final attempt's; an earlier attempt (a
/// retry or fallback, made only before any content reached the client) is in
/// [`crate::UsageRepo::request_attempts`]. No prompt or completion text: the
/// ledger has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub org_name: String,
    pub key_prefix: String,
    pub api: String,
    pub provider: String,
    pub model: String,
    pub stream: bool,
    pub status: u16,
    pub outcome: String,
    /// The final attempt's number: 1 when the first call answered.
    pub attempts: u32,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub usage: TokenUsage,
    pub billed_cost: Money,
    pub currency: String,
}
