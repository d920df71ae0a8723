//! The repository traits: one per concern, each implemented for both
//! databases ([`crate::SqliteStore`], [`crate::PgStore`]) from one body of
//! SQL (`sql.rs`), and by [`crate::Store`], which forwards to whichever
//! backend `DATABASE_URL` chose.
//!
//! These traits are the boundary between the gateway and SQL: nothing outside
//! this crate writes a query (an architecture invariant). They speak the
//! domain types of `aigate-core` ([`OrgName`], [`Money`], [`PriceRule`],
//! [`KeyHash`]), so validation happens before a value gets here and no
//! caller ever handles nano-units, timestamps formats or SQL types.
//!
//! Conventions shared by every method:
//! - Every value reaches the database as a bound parameter, never spliced into
//!   SQL text: SQL-looking input is stored or looked up literally.
//! - Timestamps are stored in UTC with microsecond precision (what Postgres
//!   keeps); a value read back equals the value written, truncated to
//!   microseconds.
//! - Errors are [`StoreError`]s; [`StoreError::is_retryable`] tells an outage
//!   from a refusal.
//! - The returned futures are `Send`, so callers may hold them across
//!   `tokio::spawn`.

use std::future::Future;
use std::path::Path;

use aigate_core::{KeyHash, ModelScope, Money, OrgId, OrgName, PriceRule};
use time::{Date, OffsetDateTime};

use crate::StoreError;
use crate::records::{
    AttemptRow, Budget, InsertOutcome, KeyRecord, LedgerEntry, NewKey, Org, OrgSpend, RequestFilter, RequestRow,
    UsageFilter, UsageSummary, UsageTotals,
};
use crate::seed::Seeded;

/// Organisations (tenants).
///
/// Names are unique and validated by [`OrgName`] before they get here (1 to 64
/// ASCII letters, digits, `-`, `_`, `.`). Organisations are never deleted:
/// keys, prices and the ledger refer to them.
pub trait OrgRepo: Send + Sync {
    /// Creates an organisation. [`StoreError::Conflict`] if the name is taken.
    fn create_org(&self, name: &OrgName) -> impl Future<Output = Result<Org, StoreError>> + Send;

    /// The organisation of that name, created first if it does not exist.
    /// Safe under concurrency: two callers racing on one new name both get
    /// the same single row.
    fn get_or_create_org(&self, name: &OrgName) -> impl Future<Output = Result<Org, StoreError>> + Send;

    fn org_by_name(&self, name: &OrgName) -> impl Future<Output = Result<Option<Org>, StoreError>> + Send;

    fn org_by_id(&self, id: OrgId) -> impl Future<Output = Result<Option<Org>, StoreError>> + Send;

    /// Sets the markup added to every billed cost of the org, in basis points
    /// (0 = none, 1500 = +15 %). Applies to calls metered from then on.
    /// [`StoreError::NotFound`] for an unknown org.
    fn set_markup(&self, id: OrgId, markup_bps: u32) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets (or with `None` removes) the monthly budget and its currency.
    /// Negative amounts and currencies that are not ISO 4217 codes are
    /// [`StoreError::Invalid`].
    fn set_monthly_budget(
        &self,
        id: OrgId,
        budget: Option<&Budget>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets (or with `None` removes) the models every key of the org may call.
    /// [`StoreError::NotFound`] for an unknown org.
    fn set_allowed_models(
        &self,
        id: OrgId,
        scope: Option<&ModelScope>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// All organisations, by name.
    fn list_orgs(&self) -> impl Future<Output = Result<Vec<Org>, StoreError>> + Send;
}

/// API key records. The plaintext key is never stored: only its SHA-256
/// ([`KeyHash`]) and its visible prefix (see `aigate_core::keys`).
pub trait KeyRepo: Send + Sync {
    /// Stores a new key. [`StoreError::Conflict`] when its prefix (or hash)
    /// is already taken: generate another key and try again, which
    /// [`crate::issue_key`] does for you.
    fn insert_key(&self, key: &NewKey) -> impl Future<Output = Result<KeyRecord, StoreError>> + Send;

    /// The key with that hash, **whatever its state**: revoked and expired
    /// keys are returned too, with `revoked_at` / `expires_at` set, so the
    /// caller can tell the client why it is refused
    /// ([`KeyRecord::status`]). `None`: no such key.
    ///
    /// This is the authentication lookup: one indexed read by hash, joined
    /// with the org's name. Callers cache the result briefly.
    fn find_key_by_hash(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// The key with that visible prefix, in whatever state (`None`: no such key).
    fn key_by_prefix(&self, prefix: &str) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// The org's keys, newest first, in every state.
    fn list_keys(&self, org: OrgId) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Revokes the key with that visible prefix, effective `at`. `true` if a
    /// key was revoked by this call; `false` if there is no such key or it
    /// was already revoked (its first revocation time is kept).
    fn revoke_key(&self, prefix: &str, at: OffsetDateTime) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Price rules: what a call costs, per provider and model, per million
/// tokens, globally or for one org, from a date on.
pub trait PriceRepo: Send + Sync {
    /// Stores a rule, replacing the one with the same provider, model, org
    /// (or global) and `effective_from`. The rule is validated first
    /// ([`PriceRule::validate`]): negative prices or a bad currency are
    /// [`StoreError::Invalid`]. Earlier rules are kept: history stays
    /// queryable and a rule can be scheduled ahead of time.
    fn upsert_price_rule(&self, rule: &PriceRule) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The rule that prices a call of `provider`/`model` by `org` made `at`:
    /// among rules with `effective_from <= at`, an org-specific rule beats
    /// any global one, and among those the latest `effective_from` wins.
    /// `None`: the call cannot be priced from rules.
    fn effective_price_rule(
        &self,
        org: Option<OrgId>,
        provider: &str,
        model: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<PriceRule>, StoreError>> + Send;

    /// Every rule, by provider, model, org (global first), effective date.
    fn list_price_rules(&self) -> impl Future<Output = Result<Vec<PriceRule>, StoreError>> + Send;

    /// Adds default (global) rules, **never overriding an operator's**: a
    /// rule is added only when its provider and model have no global rule
    /// at all yet; models that have one are kept as they are. Idempotent.
    fn seed_rules(&self, rules: &[PriceRule]) -> impl Future<Output = Result<Seeded, StoreError>> + Send {
        async move {
            let existing: std::collections::HashSet<(String, String)> = self
                .list_price_rules()
                .await?
                .into_iter()
                .filter(|r| r.org.is_none())
                .map(|r| (r.provider, r.model))
                .collect();
            let mut seeded = Seeded::default();
            for rule in rules {
                if existing.contains(&(rule.provider.clone(), rule.model.clone())) {
                    seeded.kept += 1;
                } else {
                    self.upsert_price_rule(rule).await?;
                    seeded.added += 1;
                }
            }
            Ok(seeded)
        }
    }

    /// Seeds the rules of a price file (see [`crate::seed`] for its format,
    /// and `prices/`) as [`PriceRepo::seed_rules`] does.
    fn seed_from_file(&self, path: &Path) -> impl Future<Output = Result<Seeded, StoreError>> + Send {
        async move {
            let rules = crate::seed::load_price_file(path).await?;
            self.seed_rules(&rules).await
        }
    }

    /// Seeds the price files shipped with the gateway ([`crate::seed::SHIPPED`]).
    fn seed_shipped(&self) -> impl Future<Output = Result<Seeded, StoreError>> + Send {
        async move { self.seed_rules(&crate::seed::shipped_rules()?).await }
    }
}

/// The usage ledger (one row per request id, the source of truth for
/// billing) and the daily rollups derived from it.
pub trait UsageRepo: Send + Sync {
    /// Writes a batch of usage records in **one transaction**: each new
    /// ledger row, and the upsert-increment of its daily rollup
    /// (org, day, key, provider, model, currency). Entries whose request id
    /// is already in the ledger, or repeated within the batch (the first
    /// wins), are skipped and counted in neither table. So re-delivering a
    /// batch (a retry after an ambiguous commit, a spool replay) never
    /// double counts, and rollups always equal ledger sums. In the same
    /// transaction, each key with new rows gets `last_used_at` = the latest
    /// `created_at` among them, unless it already holds a later one.
    ///
    /// All or nothing: on error nothing of the batch was written. An entry
    /// failing [`LedgerEntry::validate`], or refused by a constraint (an
    /// unknown org or key), fails the whole batch with a non-retryable error;
    /// callers that must keep going split the batch (the [`crate::UsageWriter`] does).
    fn insert_usage(&self, entries: &[LedgerEntry]) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// The org's usage from the rollups for the UTC days `from..to`
    /// (half-open: `to` is the day after the last, so consecutive ranges
    /// never count a day twice), narrowed by `filter` (one key, one model),
    /// grouped by provider, model, day and currency, with totals per
    /// currency. Reads only rollups, never the ledger: one index range of the
    /// org's days, however many requests they count, and it keeps working
    /// after the ledger is pruned.
    fn usage_series(
        &self,
        org: OrgId,
        from: Date,
        to: Date,
        filter: &UsageFilter,
    ) -> impl Future<Output = Result<UsageSummary, StoreError>> + Send;

    /// [`UsageRepo::usage_series`] of all the org's usage.
    fn usage_summary(
        &self,
        org: OrgId,
        from: Date,
        to: Date,
    ) -> impl Future<Output = Result<UsageSummary, StoreError>> + Send {
        async move { self.usage_series(org, from, to, &UsageFilter::default()).await }
    }

    /// What every org was billed on the UTC days `from..to` (half-open), per
    /// currency, from the rollups, in one query: one entry per org and
    /// currency with rows, ordered by org id and currency.
    fn spend_by_org(&self, from: Date, to: Date) -> impl Future<Output = Result<Vec<OrgSpend>, StoreError>> + Send;

    /// The latest requests matching `filter`, newest first (by `created_at`,
    /// then insertion order), one [`RequestRow`] per request: its final
    /// attempt (the highest `attempt` written). Walks a ledger index by time
    /// (the key's, the model's, the org's and model's, the org's or the
    /// global one), so a page reads about `limit` rows; a filter on status
    /// reads past the rows it skips.
    fn recent_requests(
        &self,
        filter: &RequestFilter,
    ) -> impl Future<Output = Result<Vec<RequestRow>, StoreError>> + Send;

    /// Totals per currency straight from the ledger rows created in
    /// `from..to` (half-open). For audits and for proving the rollups do not
    /// drift: over whole days not yet pruned, it equals
    /// [`UsageRepo::usage_summary`]'s totals exactly.
    fn ledger_totals(
        &self,
        org: OrgId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<UsageTotals>, StoreError>> + Send;

    /// The ledger rows of one request of `org`, by attempt (empty when unknown or pruned).
    fn request_attempts(
        &self,
        org: OrgId,
        request_id: &str,
    ) -> impl Future<Output = Result<Vec<AttemptRow>, StoreError>> + Send;

    /// Deletes ledger rows created before `older_than`, at most `batch_size`
    /// rows per statement (so no long lock and no huge transaction), until
    /// none is left. Rollups are not touched. Returns how many rows went.
    fn prune_ledger(
        &self,
        older_than: OffsetDateTime,
        batch_size: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// What the org was billed in `currency` on the UTC days from `since`
    /// (inclusive) until now, from the rollups: the budget check. Entries
    /// still queued in a [`crate::UsageWriter`] are not counted yet.
    fn spend_since(
        &self,
        org: OrgId,
        currency: &str,
        since: Date,
    ) -> impl Future<Output = Result<Money, StoreError>> + Send;
}
