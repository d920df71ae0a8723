//! Operator actions, shared by the CLI (`aigate keys|prices|usage|orgs`) and
//! the admin HTTP API (`/admin/*`, enabled by `AIGATE_ADMIN_TOKEN`).
//!
//! Each action is one function over the [`Store`] returning a serialisable
//! result, so the CLI and the HTTP API cannot drift apart.

use std::path::Path;
use std::sync::Arc;

use aigate_core::{ModelScope, Money, OrgName, PriceRule};
use aigate_plugins::PluginStatus;
use aigate_store::{
    AttemptRow, Budget, KeyRecord, KeyRepo, KeySettings, OrgRepo, PriceRepo, RequestFilter, Seeded, Store, UsageFilter,
    UsageRepo, UsageSummary,
};
use axum::Json;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorSource};
use crate::server::AppState;

/// Longest key lifetime `expires_in_days` accepts (about 100 years).
pub const MAX_EXPIRES_IN_DAYS: u32 = 36_500;
/// Largest markup accepted: +1000 %.
pub const MAX_MARKUP_BPS: u32 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] aigate_store::StoreError),
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::Invalid(m) => ApiError::invalid_request(m),
            AdminError::NotFound(m) => ApiError::not_found(m),
            AdminError::Store(e) if e.is_retryable() => ApiError::store_unavailable(e.to_string()),
            AdminError::Store(e) => ApiError::invalid_request(e.to_string()),
        }
    }
}

fn org_name(name: &str) -> Result<OrgName, AdminError> {
    OrgName::parse(name).map_err(|e| AdminError::Invalid(format!("invalid org name `{name}`: {e}")))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub org: String,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<String>,
    /// The key itself: shown once, never stored.
    pub key: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub org: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u64>,
    /// The models the key may call: names or patterns, comma-separated (`qwen:*,smart`);
    /// unset or blank: every model.
    #[serde(default)]
    pub models: Option<String>,
}

/// The model names a scope pattern can match on this gateway: routes, aliases and the listed
/// models of configured providers; a provider that takes any model (no list, or `"*"`)
/// matches any `provider:…`. A pattern that matches none of them is a typo, refused when the
/// scope is set.
#[derive(Debug, Default)]
pub struct KnownModels {
    names: Vec<String>,
    open_providers: Vec<String>,
    /// Checks syntax only (callers with no config at hand: tests, the dev key).
    any: bool,
}

impl KnownModels {
    /// Accepts every well-formed pattern.
    pub fn any() -> Self {
        KnownModels { any: true, ..KnownModels::default() }
    }

    pub fn of(config: &crate::config::Config, table: &crate::reload::RouteTable) -> Self {
        let mut known = KnownModels::default();
        known.names.extend(table.routes.keys().cloned());
        known.names.extend(table.aliases.keys().cloned());
        for (name, p) in config.providers.iter().filter(|(_, p)| p.enabled) {
            match &p.models {
                Some(list) if !list.iter().any(|m| m == "*") => {
                    known.names.extend(list.iter().map(|m| format!("{name}:{m}")));
                }
                _ => known.open_providers.push(name.clone()),
            }
        }
        known
    }

    fn matches_something(&self, pattern: &str) -> bool {
        use aigate_core::scope::glob;
        if self.any || self.names.iter().any(|n| glob(pattern, n)) {
            return true;
        }
        match pattern.split_once(':') {
            Some((provider, _)) => self.open_providers.iter().any(|p| glob(provider, p)),
            None => pattern.contains('*') && self.open_providers.iter().any(|p| glob(pattern, &format!("{p}:"))),
        }
    }

    /// Parses `text` as a scope (blank: none) and refuses patterns that match no model here.
    pub fn scope(&self, field: &str, text: Option<&str>) -> Result<Option<ModelScope>, AdminError> {
        let Some(text) = text else { return Ok(None) };
        let scope = ModelScope::parse(text).map_err(|e| AdminError::Invalid(format!("`{field}`: {e}")))?;
        if let Some(scope) = &scope {
            let unmatched: Vec<&str> =
                scope.patterns().iter().map(String::as_str).filter(|p| !self.matches_something(p)).collect();
            if !unmatched.is_empty() {
                return Err(AdminError::Invalid(format!(
                    "`{field}`: {} match(es) no model of this gateway (its routes, aliases and providers' models); \
                     check the spelling, e.g. `qwen:*` or a route name",
                    unmatched.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(scope)
    }
}

/// Creates the org if needed, then a key. The plaintext is returned once.
/// `value` within `range`, or an error naming the field, its value and the range.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, AdminError> {
    match value {
        Some(v) if !range.contains(&v) => Err(AdminError::Invalid(format!(
            "`{field}` = {v} is out of range: it must be from {} to {}",
            range.start(),
            range.end()
        ))),
        other => Ok(other),
    }
}

pub async fn create_key(store: &Store, req: &CreateKey) -> Result<CreatedKey, AdminError> {
    create_key_in(store, req, &KnownModels::any()).await
}

/// [`create_key`], refusing scope patterns that match nothing in `known`.
pub async fn create_key_in(store: &Store, req: &CreateKey, known: &KnownModels) -> Result<CreatedKey, AdminError> {
    let name = org_name(&req.org)?;
    let allowed_models = known.scope("models", req.models.as_deref())?;
    let days = in_range("expires_in_days", req.expires_in_days, 0..=MAX_EXPIRES_IN_DAYS)?;
    in_range("rpm", req.rpm, 1..=u32::MAX)?;
    // Stored as a signed 64-bit integer.
    in_range("tpm", req.tpm, 1..=i64::MAX.unsigned_abs())?;
    let org = store.get_or_create_org(&name).await?;
    let expires_at = days.map(|d| OffsetDateTime::now_utc() + time::Duration::days(i64::from(d)));
    let settings = KeySettings {
        name: req.name.clone().unwrap_or_else(|| "default".to_owned()),
        expires_at,
        rpm_limit: req.rpm,
        tpm_limit: req.tpm,
        allowed_models,
    };
    let issued = aigate_store::issue_key(store, org.id, &settings).await?;
    Ok(CreatedKey {
        org: org.name.as_str().to_owned(),
        name: issued.record.name.clone(),
        prefix: issued.record.prefix.clone(),
        expires_at: issued.record.expires_at.map(rfc3339),
        key: issued.key.plaintext().to_owned(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub prefix: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// The key's model scope (`null`: every model).
    pub models: Option<String>,
    /// When its latest metered call was made (`null`: never). Written with the call's usage,
    /// so it trails the call by the usage writer's batching (about a second).
    pub last_used_at: Option<String>,
}

pub async fn list_keys(store: &Store, org: &str) -> Result<Vec<KeyInfo>, AdminError> {
    let name = org_name(org)?;
    let org = store.org_by_name(&name).await?.ok_or_else(|| AdminError::NotFound(format!("no org named `{org}`")))?;
    Ok(store
        .list_keys(org.id)
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            prefix: k.prefix,
            name: k.name,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            rpm: k.rpm_limit,
            tpm: k.tpm_limit,
            models: k.allowed_models.as_ref().map(ModelScope::to_text),
            last_used_at: k.last_used_at.map(rfc3339),
        })
        .collect())
}

/// The key with visible prefix `prefix`, which must belong to `org` when one is given.
async fn key_of(store: &Store, prefix: &str, org: Option<&aigate_store::Org>) -> Result<KeyRecord, AdminError> {
    let key = store.key_by_prefix(prefix).await?;
    match (key, org) {
        (Some(key), Some(org)) if key.org_id != org.id => {
            Err(AdminError::NotFound(format!("org `{}` has no key with prefix `{prefix}`", org.name)))
        }
        (Some(key), _) => Ok(key),
        (None, _) => Err(AdminError::NotFound(format!("no key with prefix `{prefix}`"))),
    }
}

/// An org by name, or 404.
async fn existing_org(store: &Store, name: &str) -> Result<aigate_store::Org, AdminError> {
    let parsed = org_name(name)?;
    store.org_by_name(&parsed).await?.ok_or_else(|| AdminError::NotFound(format!("no org named `{name}`")))
}

/// A filter's value: absent or blank means no filter (a form's empty field).
fn filter_value(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

pub async fn revoke_key(store: &Store, prefix: &str) -> Result<(), AdminError> {
    if store.revoke_key(prefix, OffsetDateTime::now_utc()).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("no active key with prefix `{prefix}`")))
    }
}

/// Seeds a price file, or without one the price files shipped in the
/// binary (`prices/*.toml`). Never overrides a model that has a global rule.
pub async fn seed_prices(store: &Store, file: Option<&Path>) -> Result<Seeded, AdminError> {
    Ok(match file {
        Some(file) => store.seed_from_file(file).await?,
        None => store.seed_shipped().await?,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPrice {
    pub provider: String,
    pub model: String,
    /// Per million tokens, decimal text (e.g. "0.40").
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cached_input: Option<String>,
    #[serde(default)]
    pub reasoning_output: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub effective_from: Option<String>,
}

fn money(field: &str, text: &str) -> Result<Money, AdminError> {
    Money::parse(text).map_err(|e| AdminError::Invalid(format!("`{field}` = `{text}`: {e}")))
}

pub async fn set_price(store: &Store, req: &SetPrice, default_currency: &str) -> Result<PriceRule, AdminError> {
    let org = match &req.org {
        None => None,
        Some(o) => {
            let name = org_name(o)?;
            Some(store.org_by_name(&name).await?.ok_or_else(|| AdminError::NotFound(format!("no org named `{o}`")))?.id)
        }
    };
    let effective_from = match &req.effective_from {
        None => OffsetDateTime::now_utc(),
        Some(t) => OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| AdminError::Invalid(format!("`effective_from` = `{t}` is not RFC 3339: {e}")))?,
    };
    let rule = PriceRule {
        provider: req.provider.clone(),
        model: req.model.clone(),
        org,
        input_per_million: money("input", &req.input)?,
        output_per_million: money("output", &req.output)?,
        cached_input_per_million: req.cached_input.as_deref().map(|t| money("cached_input", t)).transpose()?,
        reasoning_output_per_million: req
            .reasoning_output
            .as_deref()
            .map(|t| money("reasoning_output", t))
            .transpose()?,
        effective_from,
        currency: req.currency.clone().unwrap_or_else(|| default_currency.to_owned()),
    };
    rule.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
    store.upsert_price_rule(&rule).await?;
    Ok(rule)
}

/// A price rule as listed: the rule, and the name of its org (`null` for a global rule), which
/// is what `SetPrice` and the CLI take.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceInfo {
    #[serde(flatten)]
    pub rule: PriceRule,
    pub org_name: Option<String>,
}

pub async fn list_prices(store: &Store) -> Result<Vec<PriceInfo>, AdminError> {
    let rules = store.list_price_rules().await?;
    let orgs: std::collections::HashMap<_, _> = if rules.iter().any(|r| r.org.is_some()) {
        store.list_orgs().await?.into_iter().map(|o| (o.id, o.name)).collect()
    } else {
        Default::default()
    };
    Ok(rules
        .into_iter()
        .map(|rule| {
            let org_name = rule.org.and_then(|id| orgs.get(&id)).map(|n| n.as_str().to_owned());
            PriceInfo { rule, org_name }
        })
        .collect())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    pub org: String,
    /// First day (YYYY-MM-DD), default 30 days ago.
    #[serde(default)]
    pub from: Option<String>,
    /// Day after the last (YYYY-MM-DD), default tomorrow.
    #[serde(default)]
    pub to: Option<String>,
    /// Only this key's usage: its prefix, as listed (a key of the org; blank: every key).
    #[serde(default)]
    pub key: Option<String>,
    /// Only this model's usage: its exact name as metered (`qwen-turbo`; blank: every model).
    #[serde(default)]
    pub model: Option<String>,
}

fn day(field: &str, text: &str) -> Result<Date, AdminError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).map_err(|e| AdminError::Invalid(format!("`{field}` = `{text}` is not YYYY-MM-DD: {e}")))
}

/// The days `from..to` (half-open) a usage query asks for: defaults, and
/// the checks that make an empty or reversed range an error.
fn usage_range(q: &UsageQuery) -> Result<(Date, Date), AdminError> {
    let today = OffsetDateTime::now_utc().date();
    let from = match &q.from {
        Some(t) => day("from", t)?,
        None => today - time::Duration::days(30),
    };
    let to = match &q.to {
        Some(t) => day("to", t)?,
        None => today.next_day().unwrap_or(today),
    };
    if to <= from {
        return Err(AdminError::Invalid(format!(
            "`to` ({to}) must be after `from` ({from}): `to` is the day after the last day counted \
             (e.g. from 2026-11-01 to 2026-12-01 for November)"
        )));
    }
    Ok((from, to))
}

/// `GET /admin/usage`: an org's usage per day, provider and model, and its totals per currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub org: String,
    /// First day counted (YYYY-MM-DD).
    pub from: String,
    /// The day after the last one counted.
    pub to: String,
    /// Calls no price rule priced (billed 0), and the command that prices them.
    pub warnings: Vec<String>,
    pub rows: Vec<UsageRow>,
    /// One per currency billed.
    pub totals: Vec<aigate_store::UsageTotals>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    pub day: String,
    pub provider: String,
    pub model: String,
    #[serde(flatten)]
    pub totals: aigate_store::UsageTotals,
}

/// An org's usage over days from the rollups (never the ledger), optionally of one key or
/// one model.
pub async fn usage(store: &Store, q: &UsageQuery) -> Result<UsageReport, AdminError> {
    org_name(&q.org)?;
    let (from, to) = usage_range(q)?;
    let org = existing_org(store, &q.org).await?;
    let key = match filter_value(q.key.as_deref()) {
        Some(prefix) => Some(key_of(store, prefix, Some(&org)).await?.id),
        None => None,
    };
    let filter = UsageFilter { key, model: filter_value(q.model.as_deref()).map(str::to_owned) };
    let summary: UsageSummary = store.usage_series(org.id, from, to, &filter).await?;
    let mut unpriced: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for r in summary.rows.iter().filter(|r| r.totals.unpriced_requests > 0) {
        *unpriced.entry((r.provider.as_str(), r.model.as_str())).or_default() += r.totals.unpriced_requests;
    }
    let warnings: Vec<String> = unpriced
        .iter()
        .map(|((provider, model), n)| {
            format!(
                "{n} call(s) to `{provider}:{model}` had no price rule and were billed 0: add one with \
                 `aigate prices set --provider {provider} --model {model} --input <price> --output <price>`"
            )
        })
        .collect();
    Ok(UsageReport {
        org: org.name.as_str().to_owned(),
        from: from.to_string(),
        to: to.to_string(),
        warnings,
        rows: summary
            .rows
            .into_iter()
            .map(|r| UsageRow { day: r.day.to_string(), provider: r.provider, model: r.model, totals: r.totals })
            .collect(),
        totals: summary.totals,
    })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    #[serde(default)]
    pub markup_bps: Option<u32>,
    /// Monthly budget, decimal text; "" or "none" removes it.
    #[serde(default)]
    pub monthly_budget: Option<String>,
    /// The currency the budget counts (ISO 4217); default `[billing] currency`.
    #[serde(default)]
    pub budget_currency: Option<String>,
    /// The models every key of the org may call (`qwen:*,smart`); "" allows every model.
    #[serde(default)]
    pub models: Option<String>,
}

/// Changes an org's markup and budget (creating the org if needed).
///
/// A budget counts one currency and there are no exchange rates, so a budget
/// is refused when the org was already billed in another currency this month
/// (that spend could not be counted); calls priced in another currency are
/// refused later, on the request path.
/// An org's settings after `POST /admin/orgs/{org}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgInfo {
    pub org: String,
    pub markup_bps: u32,
    pub monthly_budget: Option<Money>,
    pub budget_currency: Option<String>,
    pub models: Option<String>,
}

pub async fn update_org(
    store: &Store,
    org: &str,
    s: &OrgSettings,
    default_currency: &str,
) -> Result<OrgInfo, AdminError> {
    update_org_in(store, org, s, default_currency, &KnownModels::any()).await
}

/// [`update_org`], refusing scope patterns that match nothing in `known`.
pub async fn update_org_in(
    store: &Store,
    org: &str,
    s: &OrgSettings,
    default_currency: &str,
    known: &KnownModels,
) -> Result<OrgInfo, AdminError> {
    let name = org_name(org)?;
    let models = match s.models.as_deref() {
        None => None,
        Some(text) => Some(known.scope("models", Some(text))?),
    };
    in_range("markup_bps", s.markup_bps, 0..=MAX_MARKUP_BPS)?;
    let budget = match s.monthly_budget.as_deref() {
        None => None,
        Some("" | "none") => Some(None),
        Some(b) => {
            let currency = s.budget_currency.clone().unwrap_or_else(|| default_currency.to_owned());
            if !aigate_core::pricing::is_currency_code(&currency) {
                return Err(AdminError::Invalid(format!(
                    "`budget_currency` = `{currency}` is not an ISO 4217 code like USD"
                )));
            }
            Some(Some(Budget { amount: money("monthly_budget", b)?, currency }))
        }
    };
    if s.budget_currency.is_some() && !matches!(budget, Some(Some(_))) {
        return Err(AdminError::Invalid("`budget_currency` needs `monthly_budget` (an amount) with it".into()));
    }
    let org = store.get_or_create_org(&name).await?;
    if let Some(Some(b)) = &budget {
        refuse_foreign_spend(store, &org, &b.currency).await?;
    }
    if let Some(bps) = s.markup_bps {
        store.set_markup(org.id, bps).await?;
    }
    if let Some(b) = &budget {
        store.set_monthly_budget(org.id, b.as_ref()).await?;
    }
    if let Some(scope) = &models {
        store.set_allowed_models(org.id, scope.as_ref()).await?;
    }
    let org = store.org_by_id(org.id).await?.ok_or_else(|| AdminError::NotFound("org vanished".into()))?;
    let currency = org.monthly_budget.map(|_| org.monthly_budget_currency.as_deref().unwrap_or(default_currency));
    Ok(OrgInfo {
        org: org.name.as_str().to_owned(),
        markup_bps: org.markup_bps,
        monthly_budget: org.monthly_budget,
        budget_currency: currency.map(str::to_owned),
        models: org.allowed_models.as_ref().map(ModelScope::to_text),
    })
}

/// One org in `GET /admin/orgs`: its settings and this month's spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgOverview {
    pub org: String,
    pub markup_bps: u32,
    pub monthly_budget: Option<Money>,
    /// The currency the budget counts (`null` without a budget).
    pub budget_currency: Option<String>,
    /// The models every key of the org may call (`null`: every model).
    pub models: Option<String>,
    /// The first day of this month (UTC, YYYY-MM-01): where `month_spend` starts.
    pub month_start: String,
    /// What the org was billed this month, per currency its calls were priced in (from the
    /// daily rollups; empty before its first call of the month).
    pub month_spend: Vec<MonthSpend>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthSpend {
    pub currency: String,
    pub billed_cost: Money,
}

/// Every org, by name, with its markup, budget and this month's spend (what the budget
/// burns): two queries whatever the number of orgs.
pub async fn orgs_overview(store: &Store, default_currency: &str) -> Result<Vec<OrgOverview>, AdminError> {
    let today = OffsetDateTime::now_utc().date();
    let month_start = today.replace_day(1).unwrap_or(today);
    let next_month = month_start.checked_add(time::Duration::days(31)).and_then(|d| d.replace_day(1).ok());
    let orgs = store.list_orgs().await?;
    let mut spend: std::collections::HashMap<aigate_core::OrgId, Vec<MonthSpend>> = Default::default();
    for s in store.spend_by_org(month_start, next_month.unwrap_or(Date::MAX)).await? {
        spend.entry(s.org_id).or_default().push(MonthSpend { currency: s.currency, billed_cost: s.billed_cost });
    }
    Ok(orgs
        .into_iter()
        .map(|org| OrgOverview {
            org: org.name.as_str().to_owned(),
            markup_bps: org.markup_bps,
            monthly_budget: org.monthly_budget,
            budget_currency: org
                .monthly_budget
                .map(|_| org.monthly_budget_currency.clone().unwrap_or_else(|| default_currency.to_owned())),
            models: org.allowed_models.as_ref().map(ModelScope::to_text),
            month_start: month_start.to_string(),
            month_spend: spend.remove(&org.id).unwrap_or_default(),
        })
        .collect())
}

/// The most requests `GET /admin/requests` lists at once.
pub const MAX_REQUESTS_LIMIT: u32 = 500;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// Only this org's requests (its name; blank: every org).
    #[serde(default)]
    pub org: Option<String>,
    /// Only this key's requests: its prefix, as listed (blank: every key).
    #[serde(default)]
    pub key: Option<String>,
    /// Only requests whose final attempt called this model: its exact name as metered.
    #[serde(default)]
    pub model: Option<String>,
    /// Only requests answered with this status: `2xx`, `4xx`, `5xx` or a code such as `429`.
    #[serde(default)]
    pub status: Option<String>,
    /// How many requests, newest first: 1 to 500, default 50.
    #[serde(default, deserialize_with = "limit_text")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `limit` from the query's text (blank: the default), refused with the range it must be in
/// (not serde's "invalid digit found in string", which names no field).
fn limit_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None); // a form's empty field: the default
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("`limit` = `{text}` is not a whole number from 1 to {MAX_REQUESTS_LIMIT}"))
    })
}

/// One request in `GET /admin/requests`: its final attempt (where it went, how it ended,
/// latency and time to first token from the request's start, tokens and cost) and how
/// many attempts it took; `GET /admin/requests/{id}` lists each attempt. Never any prompt
/// or completion text: the ledger has none.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestSummary {
    /// The gateway's request id (`x-request-id`).
    pub request_id: String,
    /// The id the client sent, if well-formed.
    pub client_request_id: Option<String>,
    /// When the final attempt ended (RFC 3339).
    pub created_at: String,
    pub org: String,
    pub key_prefix: String,
    /// The inbound API: `chat_completions`, `messages`, `responses` or `embeddings`.
    pub api: String,
    pub provider: String,
    pub model: String,
    pub stream: bool,
    /// The HTTP status the client got.
    pub status: u16,
    /// `completed`, `provider_error`, `cancelled` or `failed`.
    pub outcome: String,
    pub attempts: u32,
    pub latency_ms: u64,
    /// Streams: time to the first content (`null` otherwise, or when none came).
    pub ttft_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// What the final attempt was billed, markup included.
    pub billed_cost: Money,
    pub currency: String,
}

/// `status` as the half-open range of codes it selects.
fn status_filter(text: &str) -> Result<std::ops::Range<u16>, AdminError> {
    match text {
        "2xx" => Ok(200..300),
        "4xx" => Ok(400..500),
        "5xx" => Ok(500..600),
        code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => match code.parse::<u16>() {
            Ok(n) if (100..600).contains(&n) => Ok(n..n + 1),
            _ => Err(AdminError::Invalid(format!("`status` = `{code}` is not an HTTP status (100 to 599)"))),
        },
        other => Err(AdminError::Invalid(format!(
            "`status` = `{other}` is not accepted: use `2xx`, `4xx`, `5xx` or a 3-digit status code such as `429`"
        ))),
    }
}

/// The latest requests, newest first, filtered by org, key, model and status.
pub async fn recent_requests(store: &Store, q: &RequestsQuery) -> Result<Vec<RequestSummary>, AdminError> {
    let limit = in_range("limit", q.limit, 1..=MAX_REQUESTS_LIMIT)?.unwrap_or(RequestFilter::default().limit);
    let status = filter_value(q.status.as_deref()).map(status_filter).transpose()?;
    let org = match filter_value(q.org.as_deref()) {
        Some(name) => Some(existing_org(store, name).await?),
        None => None,
    };
    let key = match filter_value(q.key.as_deref()) {
        Some(prefix) => Some(key_of(store, prefix, org.as_ref()).await?.id),
        None => None,
    };
    let filter = RequestFilter {
        org: org.map(|o| o.id),
        key,
        model: filter_value(q.model.as_deref()).map(str::to_owned),
        status,
        limit,
    };
    Ok(store
        .recent_requests(&filter)
        .await?
        .into_iter()
        .map(|r| RequestSummary {
            request_id: r.request_id,
            client_request_id: r.client_request_id,
            created_at: rfc3339(r.created_at),
            org: r.org_name,
            key_prefix: r.key_prefix,
            api: r.api,
            provider: r.provider,
            model: r.model,
            stream: r.stream,
            status: r.status,
            outcome: r.outcome,
            attempts: r.attempts,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            prompt_tokens: r.usage.prompt,
            completion_tokens: r.usage.completion,
            cached_tokens: r.usage.cached,
            reasoning_tokens: r.usage.reasoning,
            billed_cost: r.billed_cost,
            currency: r.currency,
        })
        .collect())
}

/// Refuses a budget in `currency` for an org billed in another one this month.
async fn refuse_foreign_spend(store: &Store, org: &aigate_store::Org, currency: &str) -> Result<(), AdminError> {
    let today = OffsetDateTime::now_utc().date();
    let month = today.replace_day(1).unwrap_or(today);
    let summary = store.usage_summary(org.id, month, today.next_day().unwrap_or(today)).await?;
    match summary.totals.iter().find(|t| t.currency != currency && t.billed_cost > Money::ZERO) {
        Some(t) => Err(AdminError::Invalid(format!(
            "org `{}` was billed {} {} this month, which a budget in {currency} could not count (there are no \
             exchange rates): set the budget in {}, or price its models in {currency} and set it next month",
            org.name, t.billed_cost, t.currency, t.currency
        ))),
        None => Ok(()),
    }
}

/// On the dev setup ([`crate::Config::is_dev_setup`]: the embedded SQLite
/// database) with no organisation at all: creates org `dev` and one key,
/// returning its plaintext (the run command prints it once). Elsewhere
/// (Postgres) never: a live key is made only by an operator
/// (`aigate keys create`).
pub async fn ensure_dev_key(config: &crate::Config, store: &Store) -> Result<Option<CreatedKey>, AdminError> {
    if !config.is_dev_setup() || !store.list_orgs().await?.is_empty() {
        return Ok(None);
    }
    let key =
        create_key(store, &CreateKey { org: "dev".into(), name: Some("dev".into()), ..Default::default() }).await?;
    Ok(Some(key))
}

// ---- HTTP --------------------------------------------------------------------

/// The route layer in front of every `/admin/*` route (`server::router`): no handler runs
/// without the admin token. Admin routes answer 404 when no token is configured, as if they
/// did not exist. A request with an `Authorization` header is judged by it alone
/// ([`guard`]); one without may instead carry a signed-in operator console session
/// (`console::admit`): reads pass, changes need the session's CSRF token (403 without).
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let verdict = match guard(&state, request.headers()) {
        Err(e) if state.config.admin_token.is_some() && !request.headers().contains_key(header::AUTHORIZATION) => {
            crate::console::admit(&state, request.method(), request.headers()).await.unwrap_or(Err(e))
        }
        verdict => verdict,
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Checks `Authorization: Bearer <AIGATE_ADMIN_TOKEN>`.
pub(crate) fn guard(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.config.admin_token else {
        return Err(ApiError::not_found(
            "No such endpoint. Admin routes are off: set AIGATE_ADMIN_TOKEN to enable them.",
        ));
    };
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare digests: equal-length values, so the comparison time says nothing about the token.
    let ok =
        presented.is_some_and(|p| Sha256::digest(p.as_bytes()) == Sha256::digest(token.expose_secret().as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            crate::error::kind::AUTHENTICATION,
            Some("invalid_admin_token"),
            "Admin routes need `Authorization: Bearer <AIGATE_ADMIN_TOKEN>`.",
            ErrorSource::Client,
        ))
    }
}

type AdminResult = Result<Response, ApiError>;

/// Parses a JSON body; errors name the field (`rpm: invalid value: integer
/// \`-1\`, expected u32`), so an out-of-range number says which one.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let at = if field == "." { String::new() } else { format!("`{field}`: ") };
        ApiError::invalid_json(format!("Invalid JSON body: {at}{}.", e.inner()))
    })
}

fn parse_query<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::invalid_request(format!("Invalid query: {e}.")))
}

/// A list answer: `{"object": "list", "data": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn of(data: Vec<T>) -> Self {
        List { object: "list", data }
    }
}

/// The plugin files of the plugin folder: which version serves, and why a reload was refused.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The plugin files and their state.", body = List<PluginStatus>), crate::openapi::AdminErrors))]
pub async fn plugins(State(state): State<Arc<AppState>>) -> AdminResult {
    Ok(Json(List::of(state.registry.statuses())).into_response())
}

/// The ledger rows of one request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestAttempts {
    pub request_id: String,
    /// One per provider call, in order.
    pub attempts: Vec<AttemptRow>,
}

/// `GET /admin/requests/{id}?org=NAME`: the ledger rows of one request (its `x-request-id`),
/// one per attempt: where each went, how it ended, what it cost, and the inbound API.
#[utoipa::path(get, path = "/admin/requests/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The request's `x-request-id`."), OrgQuery),
    responses((status = 200, description = "One row per attempt.", body = RequestAttempts), crate::openapi::AdminErrors))]
pub async fn get_request(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    RawQuery(q): RawQuery,
) -> AdminResult {
    let q: OrgQuery = parse_query(q.as_deref())?;
    let name = org_name(&q.org)?;
    let org = state.store.org_by_name(&name).await.map_err(AdminError::from)?;
    let org = org.ok_or_else(|| AdminError::NotFound(format!("no org named `{}`", q.org)))?;
    let attempts = state.store.request_attempts(org.id, &id).await.map_err(AdminError::from)?;
    if attempts.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no ledger row for request `{id}` of org `{}` (unknown, not written yet, or pruned)",
            q.org
        ))
        .into());
    }
    Ok(Json(RequestAttempts { request_id: id, attempts }).into_response())
}

/// The latest requests, newest first, one per request (its final attempt), from the ledger:
/// filter by org, key, model and status.
#[utoipa::path(get, path = "/admin/requests", tag = "admin", security(("admin_token" = [])), params(RequestsQuery),
    responses((status = 200, description = "The latest requests, newest first.", body = List<RequestSummary>),
        crate::openapi::AdminErrors))]
pub async fn get_requests(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> AdminResult {
    let q: RequestsQuery = parse_query(q.as_deref())?;
    Ok(Json(List::of(recent_requests(&state.store, &q).await?)).into_response())
}

/// `GET /admin/routes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutesReport {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<RouteInfo>,
    /// Alias → the model or route it names.
    pub aliases: std::collections::BTreeMap<String, String>,
    pub reload: crate::reload::ReloadStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteInfo {
    pub name: String,
    /// `weighted` or `least-latency`.
    #[schema(value_type = String)]
    pub strategy: &'static str,
    pub fallbacks: Vec<String>,
    pub retries: u32,
    pub deployments: Vec<DeploymentInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentInfo {
    pub provider: String,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
    pub base_url: Option<String>,
    /// The environment variable holding its key (never the key).
    pub api_key_env: String,
}

/// The serving routes and aliases, and whether the last reload of the config file was refused
/// (the last good routes then keep serving).
#[utoipa::path(get, path = "/admin/routes", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The serving routes.", body = RoutesReport), crate::openapi::AdminErrors))]
pub async fn routes(State(state): State<Arc<AppState>>) -> AdminResult {
    let table = state.providers.table();
    let data = table
        .routes
        .iter()
        .map(|(name, r)| RouteInfo {
            name: name.clone(),
            strategy: match r.strategy {
                crate::config::Strategy::Weighted => "weighted",
                crate::config::Strategy::LeastLatency => "least-latency",
            },
            fallbacks: r.fallbacks.clone(),
            retries: r.retries.unwrap_or(state.config.routing.retries),
            deployments: r
                .deployments
                .iter()
                .map(|d| DeploymentInfo {
                    provider: d.provider.clone(),
                    model: d.model.clone(),
                    weight: d.weight,
                    priority: d.priority,
                    base_url: d.settings.base_url.as_ref().map(|u| u.as_str().to_owned()),
                    api_key_env: d.settings.api_key_env.clone(),
                })
                .collect(),
        })
        .collect();
    let reload = state.providers.reload_status().clone();
    let report = RoutesReport { object: "list", data, aliases: table.aliases.clone(), reload };
    Ok(Json(report).into_response())
}

/// Creates a key for an org (creating the org if needed). The key is in this answer only.
#[utoipa::path(post, path = "/admin/keys", tag = "admin", security(("admin_token" = [])), request_body = CreateKey,
    responses((status = 201, description = "The key, shown once.", body = CreatedKey), crate::openapi::AdminErrors))]
pub async fn post_key(State(state): State<Arc<AppState>>, body: Bytes) -> AdminResult {
    let req: CreateKey = parse_body(&body)?;
    let known = KnownModels::of(&state.config, &state.providers.table());
    let key = create_key_in(&state.store, &req, &known).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgQuery {
    /// The org's name.
    pub org: String,
}

/// An org's keys (never the key values).
#[utoipa::path(get, path = "/admin/keys", tag = "admin", security(("admin_token" = [])), params(OrgQuery),
    responses((status = 200, description = "The org's keys.", body = List<KeyInfo>), crate::openapi::AdminErrors))]
pub async fn get_keys(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> AdminResult {
    let q: OrgQuery = parse_query(q.as_deref())?;
    Ok(Json(List::of(list_keys(&state.store, &q.org).await?)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// The prefix of the key revoked.
    pub revoked: String,
}

/// Revokes a key: its next call is refused on every replica once their key caches expire.
#[utoipa::path(post, path = "/admin/keys/{prefix}/revoke", tag = "admin", security(("admin_token" = [])),
    params(("prefix" = String, Path, description = "The key's prefix, as listed.")),
    responses((status = 200, description = "Revoked.", body = Revoked), crate::openapi::AdminErrors))]
pub async fn post_revoke(State(state): State<Arc<AppState>>, UrlPath(prefix): UrlPath<String>) -> AdminResult {
    revoke_key(&state.store, &prefix).await?;
    // The key's next call on this replica is refused at once; other replicas refuse it once
    // their cached copy expires (`auth.key_cache_ttl_ms`).
    state.auth.forget_all();
    Ok(Json(Revoked { revoked: prefix }).into_response())
}

/// The price rules in force, global and per org.
#[utoipa::path(get, path = "/admin/prices", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The price rules.", body = List<PriceInfo>), crate::openapi::AdminErrors))]
pub async fn get_prices(State(state): State<Arc<AppState>>) -> AdminResult {
    Ok(Json(List::of(list_prices(&state.store).await?)).into_response())
}

/// Adds a price rule, in force from now; it serves at once on this replica.
#[utoipa::path(post, path = "/admin/prices", tag = "admin", security(("admin_token" = [])), request_body = SetPrice,
    responses((status = 201, description = "The rule added.", body = PriceRule), crate::openapi::AdminErrors))]
pub async fn post_price(State(state): State<Arc<AppState>>, body: Bytes) -> AdminResult {
    let req: SetPrice = parse_body(&body)?;
    let rule = set_price(&state.store, &req, &state.config.billing.currency).await?;
    if let Err(e) = state.billing.prices.reload(&state.store).await {
        tracing::warn!("price rules not reloaded: {e}");
    }
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// Adds the shipped list prices for models that have no global rule yet.
#[utoipa::path(post, path = "/admin/prices/seed", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "What seeding did.", body = Seeded), crate::openapi::AdminErrors))]
pub async fn post_seed(State(state): State<Arc<AppState>>) -> AdminResult {
    let seeded = seed_prices(&state.store, None).await?;
    let _ = state.billing.prices.reload(&state.store).await;
    Ok(Json(seeded).into_response())
}

/// An org's usage from the daily rollups.
#[utoipa::path(get, path = "/admin/usage", tag = "admin", security(("admin_token" = [])), params(UsageQuery),
    responses((status = 200, description = "Usage per day, provider and model.", body = UsageReport), crate::openapi::AdminErrors))]
pub async fn get_usage(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> AdminResult {
    let q: UsageQuery = parse_query(q.as_deref())?;
    Ok(Json(usage(&state.store, &q).await?).into_response())
}

/// Every org, by name: markup, budget, model scope and this month's spend per currency.
#[utoipa::path(get, path = "/admin/orgs", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The orgs, by name.", body = List<OrgOverview>), crate::openapi::AdminErrors))]
pub async fn get_orgs(State(state): State<Arc<AppState>>) -> AdminResult {
    Ok(Json(List::of(orgs_overview(&state.store, &state.config.billing.currency).await?)).into_response())
}

/// Sets an org's markup, monthly budget and model scope (creating the org if needed).
#[utoipa::path(post, path = "/admin/orgs/{org}", tag = "admin", security(("admin_token" = [])),
    params(("org" = String, Path, description = "The org's name.")), request_body = OrgSettings,
    responses((status = 200, description = "The org's settings now.", body = OrgInfo), crate::openapi::AdminErrors))]
pub async fn post_org(State(state): State<Arc<AppState>>, UrlPath(org): UrlPath<String>, body: Bytes) -> AdminResult {
    let s: OrgSettings = parse_body(&body)?;
    let known = KnownModels::of(&state.config, &state.providers.table());
    let info = update_org_in(&state.store, &org, &s, &state.config.billing.currency, &known).await?;
    state.auth.forget_all();
    Ok(Json(info).into_response())
}
