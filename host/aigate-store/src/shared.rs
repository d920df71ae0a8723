//! Logic both backends share: validation, batch preparation, rollup
//! aggregation and value conversions. Only the SQL differs per backend.

use std::collections::{BTreeMap, HashSet};

use aigate_core::{KeyId, Money, OrgId};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::StoreError;
use crate::records::{Budget, LedgerEntry, MAX_KEY_NAME_CHARS, NewKey};

/// Rows per multi-row `INSERT`: 21 parameters each stays far below both
/// SQLite's (32766) and Postgres' (65535) limits on bound parameters.
pub(crate) const INSERT_CHUNK: usize = 500;

/// A stored model scope (`None`: every model); text the gateway did not write is refused.
pub(crate) fn db_scope(text: Option<String>) -> Result<Option<aigate_core::ModelScope>, StoreError> {
    match text {
        None => Ok(None),
        Some(t) => aigate_core::ModelScope::parse(&t).map_err(|e| StoreError::invalid("stored model scope", e)),
    }
}

/// UTC, truncated to microseconds: what both databases keep.
pub(crate) fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    // Cannot fail: the value is below the current nanosecond.
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

/// The entries to insert: validated, first occurrence of each (request id,
/// attempt), sorted by them (so concurrent writers lock rows in the same order).
pub(crate) fn prepare_batch(entries: &[LedgerEntry]) -> Result<(Vec<&LedgerEntry>, u64), StoreError> {
    let mut seen = HashSet::with_capacity(entries.len());
    let mut unique = Vec::with_capacity(entries.len());
    for e in entries {
        e.validate()?;
        if seen.insert((e.request_id.as_str(), e.attempt)) {
            unique.push(e);
        }
    }
    let duplicates = (entries.len() - unique.len()) as u64;
    unique.sort_by(|a, b| (&a.request_id, a.attempt).cmp(&(&b.request_id, b.attempt)));
    Ok((unique, duplicates))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RollupKey {
    pub org_id: OrgId,
    pub day: Date,
    pub key_id: KeyId,
    pub provider: String,
    pub model: String,
    pub currency: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RollupSums {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub billed_cost_nanos: i64,
    pub unpriced_requests: i64,
}

/// Sums of the inserted entries per rollup row, in key order (one lock order
/// for every writer, so concurrent batches cannot deadlock on rollups).
pub(crate) fn aggregate<'a>(
    inserted: impl IntoIterator<Item = &'a LedgerEntry>,
) -> Result<BTreeMap<RollupKey, RollupSums>, StoreError> {
    let mut groups: BTreeMap<RollupKey, RollupSums> = BTreeMap::new();
    let overflow = || StoreError::invalid("usage batch", "token or cost sums out of range");
    for e in inserted {
        let key = RollupKey {
            org_id: e.org_id,
            day: e.day(),
            key_id: e.key_id,
            provider: e.provider.clone(),
            model: e.model.clone(),
            currency: e.currency.clone(),
        };
        let s = groups.entry(key).or_default();
        let add = |acc: i64, v: u64| i64::try_from(v).ok().and_then(|v| acc.checked_add(v)).ok_or_else(overflow);
        // An attempt the router followed with another is not a request of its own.
        s.requests = add(s.requests, u64::from(e.outcome != crate::records::RETRIED))?;
        s.prompt_tokens = add(s.prompt_tokens, e.usage.prompt)?;
        s.completion_tokens = add(s.completion_tokens, e.usage.completion)?;
        s.cached_tokens = add(s.cached_tokens, e.usage.cached)?;
        s.reasoning_tokens = add(s.reasoning_tokens, e.usage.reasoning)?;
        s.billed_cost_nanos = s.billed_cost_nanos.checked_add(e.billed_cost.nanos()).ok_or_else(overflow)?;
        s.unpriced_requests = add(s.unpriced_requests, u64::from(e.unpriced))?;
    }
    Ok(groups)
}

/// The latest `created_at` of each key among the inserted entries, in key
/// order (the order every writer locks key rows in): what `last_used_at`
/// moves forward to.
pub(crate) fn last_used<'a>(inserted: impl IntoIterator<Item = &'a LedgerEntry>) -> BTreeMap<KeyId, OffsetDateTime> {
    let mut latest: BTreeMap<KeyId, OffsetDateTime> = BTreeMap::new();
    for e in inserted {
        let at = latest.entry(e.key_id).or_insert(e.created_at);
        *at = (*at).max(e.created_at);
    }
    latest
}

/// Postgres text cannot hold NUL; SQLite can. Refusing it everywhere keeps
/// both backends answering alike.
pub(crate) fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

pub(crate) fn validate_new_key(key: &NewKey) -> Result<(), StoreError> {
    if has_nul(&key.name) {
        return Err(StoreError::invalid("key name", "contains a NUL character"));
    }
    if key.name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(StoreError::invalid("key name", format!("longer than {MAX_KEY_NAME_CHARS} characters")));
    }
    if key.rpm_limit == Some(0) || key.tpm_limit == Some(0) {
        return Err(StoreError::invalid("key limits", "a limit must be at least 1 (leave it unset for none)"));
    }
    if key.tpm_limit.is_some_and(|t| i64::try_from(t).is_err()) {
        return Err(StoreError::invalid("key limits", "tokens per minute out of range"));
    }
    if !key.prefix.starts_with(aigate_core::keys::KEY_PREFIX) {
        return Err(StoreError::invalid("key prefix", "does not come from aigate_core::ApiKey"));
    }
    Ok(())
}

/// The budget's columns (nanos, currency), validated.
pub(crate) fn validate_budget(budget: Option<&Budget>) -> Result<(Option<i64>, Option<&str>), StoreError> {
    match budget {
        None => Ok((None, None)),
        Some(b) if b.amount.is_negative() => {
            Err(StoreError::invalid("monthly budget", format!("{} is negative", b.amount)))
        }
        Some(b) if !aigate_core::pricing::is_currency_code(&b.currency) => {
            Err(StoreError::invalid("monthly budget", format!("currency `{}` is not an ISO 4217 code", b.currency)))
        }
        Some(b) => Ok((Some(b.amount.nanos()), Some(b.currency.as_str()))),
    }
}

pub(crate) fn markup_to_db(bps: u32) -> Result<i32, StoreError> {
    i32::try_from(bps).map_err(|_| StoreError::invalid("markup", format!("{bps} basis points is out of range")))
}

pub(crate) fn u64_to_db(v: u64) -> i64 {
    // Callers validated the range (LedgerEntry::validate, validate_new_key).
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn db_to_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(what, format!("negative value {v}")))
}

pub(crate) fn db_to_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::corrupt(what, format!("value {v} out of range")))
}

pub(crate) fn db_org_name(v: String) -> Result<aigate_core::OrgName, StoreError> {
    aigate_core::OrgName::parse(&v).map_err(|e| StoreError::corrupt("organisation name", e))
}

/// Money read back from a nanos column; negative amounts are refused on the
/// way in, so one here means the row was edited by hand.
pub(crate) fn db_money(what: &str, nanos: i64) -> Result<Money, StoreError> {
    if nanos < 0 {
        return Err(StoreError::corrupt(what, format!("negative amount {nanos} nanos")));
    }
    Ok(Money::from_nanos(nanos))
}

/// Maps a unique violation to [`StoreError::Conflict`].
pub(crate) fn conflict_as(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| {
        let e = StoreError::Database(e);
        if e.is_unique_violation() { StoreError::Conflict { what: what.to_owned() } } else { e }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_truncate_and_normalise_to_utc() {
        let t = time::macros::datetime!(2025-03-04 05:06:07.123456789 +02:00);
        let u = utc_micros(t);
        assert_eq!(u, time::macros::datetime!(2025-03-04 03:06:07.123456 UTC));
        assert_eq!(u.offset(), UtcOffset::UTC);
    }
}
