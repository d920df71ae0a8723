//! The repositories of both SQL backends, written once.
//!
//! [`SqliteStore`](crate::SqliteStore) and [`PgStore`](crate::PgStore) run
//! the same queries: every SQL text, every bound value and every row decoder
//! lives here, in [`sql_backend!`], which each backend module expands
//! for its store type. A query added here is compiled against both databases
//! and run on both by the shared test suite (`tests/it`, `store_suite!`).
//!
//! The text is portable on purpose:
//! - placeholders are `$1`, `$2`, …, which Postgres requires and sqlx's
//!   SQLite driver binds by number;
//! - upserts are `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE SET … =
//!   excluded.…` and inserts use `RETURNING`, which both databases know;
//! - sums are `CAST(SUM(…) AS BIGINT)`: Postgres sums BIGINT into NUMERIC,
//!   so the cast brings them back (an overflow is an error, never a rounded
//!   value); on SQLite, whose sums of integers are already integers, the cast
//!   changes nothing.
//!
//! What really differs is the [`Dialect`] of each backend: the column types
//! of timestamps (TEXT on SQLite, TIMESTAMPTZ on Postgres), of days (TEXT,
//! DATE) and of 32-bit integer columns, and how a write transaction starts
//! (SQLite takes the write lock up front). Connecting, pool settings and
//! migrations stay in `sqlite.rs` and `postgres.rs`; validation and value
//! conversions that involve no SQL are in `shared.rs`.
//!
//! Why a macro and not code generic over `sqlx::Database`: sqlx implements
//! `Encode` for `Option<T>`, `IntoArguments` and the executors once per
//! database, so a generic body needs a dozen `where` bounds (`Option<i64>:
//! Encode<'q, DB>`, `&str: ColumnIndex<DB::Row>`, …) that Rust does not carry
//! from a trait to its users: they would be repeated on every impl and
//! helper. Expanded for a concrete store, the same body needs none.

use std::future::Future;

use time::{Date, OffsetDateTime};

use crate::StoreError;

/// What differs between the SQL backends, behind the one body of
/// [`sql_backend!`].
pub(crate) trait Dialect {
    /// sqlx's database type.
    type Db: sqlx::Database;
    /// How a timestamp is bound and read back.
    type Timestamp;
    /// How a UTC day (the rollups' `day`) is bound and read back.
    type Day;
    /// How a 32-bit integer column (`markup_bps`, `status`, `attempt`) is
    /// bound and read back: Postgres INT is `i32`, SQLite INTEGER is `i64`.
    type Int4: From<i32> + Into<i64>;

    /// `t` as stored: UTC, truncated to microseconds.
    fn timestamp(t: OffsetDateTime) -> Result<Self::Timestamp, StoreError>;

    /// A stored timestamp; `what` names it in the error if it is corrupt.
    fn read_timestamp(what: &str, stored: Self::Timestamp) -> Result<OffsetDateTime, StoreError>;

    fn day(d: Date) -> Result<Self::Day, StoreError>;

    fn read_day(stored: Self::Day) -> Result<Date, StoreError>;

    /// Starts the transaction of a write batch.
    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

/// The columns an [`Org`](crate::Org) is read from.
pub(crate) const ORG_COLUMNS: &str =
    "SELECT id, name, markup_bps, monthly_budget_nanos, monthly_budget_currency, allowed_models, created_at FROM orgs";

/// The columns a [`KeyRecord`](crate::KeyRecord) is read from, with its org's name and scope.
pub(crate) const KEY_COLUMNS: &str = "SELECT k.id, k.org_id, o.name AS org_name, k.name, k.prefix, k.created_at,
            k.expires_at, k.revoked_at, k.rpm_limit, k.tpm_limit, k.allowed_models,
            o.allowed_models AS org_allowed_models, k.last_used_at
     FROM api_keys k JOIN orgs o ON o.id = k.org_id";

/// The columns a [`PriceRule`](aigate_core::PriceRule) is read from.
pub(crate) const PRICE_COLUMNS: &str =
    "SELECT provider, model, org_id, input_per_million_nanos, output_per_million_nanos,
            cached_input_per_million_nanos, reasoning_output_per_million_nanos, currency, effective_from
     FROM price_rules";

/// Implements [`OrgRepo`](crate::OrgRepo), [`KeyRepo`](crate::KeyRepo),
/// [`PriceRepo`](crate::PriceRepo) and [`UsageRepo`](crate::UsageRepo) for
/// `$store`, and the pool handle methods every backend has (`close`,
/// `ping`). `$store` implements [`Dialect`] and has a `pool` field, its
/// database's pool. Expanded once per backend module.
macro_rules! sql_backend {
    ($store:ty) => {
        impl $store {
            /// Closes the pool, waiting for connections in use to be returned.
            pub async fn close(&self) {
                self.pool.close().await;
            }

            /// One round trip to the database (`SELECT 1`).
            pub async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        // An anonymous scope, so the imports and row decoders stay out of the backend's module.
        const _: () = {
            use std::collections::HashSet;

            use aigate_core::{KeyHash, KeyId, ModelScope, Money, OrgId, OrgName, PriceRule, TokenUsage};
            use sqlx::{Database, QueryBuilder, Row};
            use time::{Date, OffsetDateTime};

            use $crate::StoreError;
            use $crate::records::{
                AttemptRow, Budget, InsertOutcome, KeyRecord, LedgerEntry, NewKey, Org, OrgSpend, RequestFilter,
                RequestRow, UsageFilter, UsageRow, UsageSummary, UsageTotals,
            };
            use $crate::repo::{KeyRepo, OrgRepo, PriceRepo, UsageRepo};
            use $crate::shared::{self, INSERT_CHUNK};
            use $crate::sql::{Dialect, KEY_COLUMNS, ORG_COLUMNS, PRICE_COLUMNS};

            type Db = <$store as Dialect>::Db;
            type DbRow = <Db as Database>::Row;
            type Timestamp = <$store as Dialect>::Timestamp;
            type Day = <$store as Dialect>::Day;
            type Int4 = <$store as Dialect>::Int4;

            fn now() -> Result<Timestamp, StoreError> {
                <$store>::timestamp(OffsetDateTime::now_utc())
            }

            fn read_timestamp(row: &DbRow, column: &str, what: &str) -> Result<OffsetDateTime, StoreError> {
                <$store>::read_timestamp(what, row.try_get::<Timestamp, _>(column)?)
            }

            fn read_opt_timestamp(
                row: &DbRow,
                column: &str,
                what: &str,
            ) -> Result<Option<OffsetDateTime>, StoreError> {
                row.try_get::<Option<Timestamp>, _>(column)?.map(|t| <$store>::read_timestamp(what, t)).transpose()
            }

            fn read_int4(row: &DbRow, column: &str) -> Result<i64, StoreError> {
                Ok(row.try_get::<Int4, _>(column)?.into())
            }

            fn org_from_row(row: &DbRow) -> Result<Org, StoreError> {
                Ok(Org {
                    id: OrgId(row.try_get("id")?),
                    name: shared::db_org_name(row.try_get("name")?)?,
                    markup_bps: shared::db_to_u32("markup", read_int4(row, "markup_bps")?)?,
                    monthly_budget: row
                        .try_get::<Option<i64>, _>("monthly_budget_nanos")?
                        .map(|n| shared::db_money("monthly budget", n))
                        .transpose()?,
                    monthly_budget_currency: row.try_get("monthly_budget_currency")?,
                    allowed_models: shared::db_scope(row.try_get("allowed_models")?)?,
                    created_at: read_timestamp(row, "created_at", "organisation created_at")?,
                })
            }

            /// `UPDATE … WHERE id = <org>` found nothing: the org does not exist.
            fn org_updated(id: OrgId, rows_affected: u64) -> Result<(), StoreError> {
                if rows_affected == 0 {
                    return Err(StoreError::NotFound { what: format!("organisation {id}") });
                }
                Ok(())
            }

            impl OrgRepo for $store {
                async fn create_org(&self, name: &OrgName) -> Result<Org, StoreError> {
                    let row = sqlx::query(
                        "INSERT INTO orgs (name, created_at) VALUES ($1, $2)
                         RETURNING id, name, markup_bps, monthly_budget_nanos, monthly_budget_currency,
                             allowed_models, created_at",
                    )
                    .bind(name.as_str())
                    .bind(now()?)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(shared::conflict_as(&format!("organisation `{name}`")))?;
                    org_from_row(&row)
                }

                async fn get_or_create_org(&self, name: &OrgName) -> Result<Org, StoreError> {
                    sqlx::query("INSERT INTO orgs (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                        .bind(name.as_str())
                        .bind(now()?)
                        .execute(&self.pool)
                        .await?;
                    self.org_by_name(name)
                        .await?
                        .ok_or_else(|| StoreError::NotFound { what: format!("organisation `{name}`") })
                }

                async fn org_by_name(&self, name: &OrgName) -> Result<Option<Org>, StoreError> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{ORG_COLUMNS} WHERE name = $1")))
                        .bind(name.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(org_from_row).transpose()
                }

                async fn org_by_id(&self, id: OrgId) -> Result<Option<Org>, StoreError> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{ORG_COLUMNS} WHERE id = $1")))
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(org_from_row).transpose()
                }

                async fn set_markup(&self, id: OrgId, markup_bps: u32) -> Result<(), StoreError> {
                    let done = sqlx::query("UPDATE orgs SET markup_bps = $1 WHERE id = $2")
                        .bind(shared::markup_to_db(markup_bps)?)
                        .bind(id.0)
                        .execute(&self.pool)
                        .await?;
                    org_updated(id, done.rows_affected())
                }

                async fn set_monthly_budget(&self, id: OrgId, budget: Option<&Budget>) -> Result<(), StoreError> {
                    let (nanos, currency) = shared::validate_budget(budget)?;
                    let done = sqlx::query(
                        "UPDATE orgs SET monthly_budget_nanos = $1, monthly_budget_currency = $2 WHERE id = $3",
                    )
                    .bind(nanos)
                    .bind(currency)
                    .bind(id.0)
                    .execute(&self.pool)
                    .await?;
                    org_updated(id, done.rows_affected())
                }

                async fn set_allowed_models(&self, id: OrgId, scope: Option<&ModelScope>) -> Result<(), StoreError> {
                    let done = sqlx::query("UPDATE orgs SET allowed_models = $1 WHERE id = $2")
                        .bind(scope.map(ModelScope::to_text))
                        .bind(id.0)
                        .execute(&self.pool)
                        .await?;
                    org_updated(id, done.rows_affected())
                }

                async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ORG_COLUMNS} ORDER BY name")))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(org_from_row).collect()
                }
            }

            fn key_from_row(row: &DbRow) -> Result<KeyRecord, StoreError> {
                Ok(KeyRecord {
                    id: KeyId(row.try_get("id")?),
                    org_id: OrgId(row.try_get("org_id")?),
                    org_name: row.try_get("org_name")?,
                    name: row.try_get("name")?,
                    prefix: row.try_get("prefix")?,
                    created_at: read_timestamp(row, "created_at", "key created_at")?,
                    expires_at: read_opt_timestamp(row, "expires_at", "key expires_at")?,
                    revoked_at: read_opt_timestamp(row, "revoked_at", "key revoked_at")?,
                    rpm_limit: row
                        .try_get::<Option<i64>, _>("rpm_limit")?
                        .map(|v| shared::db_to_u32("rpm limit", v))
                        .transpose()?,
                    tpm_limit: row
                        .try_get::<Option<i64>, _>("tpm_limit")?
                        .map(|v| shared::db_to_u64("tpm limit", v))
                        .transpose()?,
                    allowed_models: shared::db_scope(row.try_get("allowed_models")?)?,
                    org_allowed_models: shared::db_scope(row.try_get("org_allowed_models")?)?,
                    last_used_at: read_opt_timestamp(row, "last_used_at", "key last_used_at")?,
                })
            }

            impl KeyRepo for $store {
                async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, StoreError> {
                    shared::validate_new_key(key)?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO api_keys (org_id, name, prefix, hash, created_at, expires_at, rpm_limit,
                             tpm_limit, allowed_models)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    )
                    .bind(key.org_id.0)
                    .bind(&key.name)
                    .bind(&key.prefix)
                    .bind(key.hash.as_str())
                    .bind(now()?)
                    .bind(key.expires_at.map(<$store>::timestamp).transpose()?)
                    .bind(key.rpm_limit.map(i64::from))
                    .bind(key.tpm_limit.map(shared::u64_to_db))
                    .bind(key.allowed_models.as_ref().map(ModelScope::to_text))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(shared::conflict_as(&format!("key with prefix `{}`", key.prefix)))?;
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{KEY_COLUMNS} WHERE k.id = $1")))
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?;
                    key_from_row(&row)
                }

                async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{KEY_COLUMNS} WHERE k.hash = $1")))
                        .bind(hash.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(key_from_row).transpose()
                }

                async fn key_by_prefix(&self, prefix: &str) -> Result<Option<KeyRecord>, StoreError> {
                    if shared::has_nul(prefix) {
                        return Ok(None); // no stored prefix has one
                    }
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{KEY_COLUMNS} WHERE k.prefix = $1")))
                        .bind(prefix)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(key_from_row).transpose()
                }

                async fn list_keys(&self, org: OrgId) -> Result<Vec<KeyRecord>, StoreError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{KEY_COLUMNS} WHERE k.org_id = $1 ORDER BY k.created_at DESC, k.id DESC"
                    )))
                    .bind(org.0)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(key_from_row).collect()
                }

                async fn revoke_key(&self, prefix: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                    if shared::has_nul(prefix) {
                        return Ok(false); // no stored prefix has one
                    }
                    let done =
                        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL")
                            .bind(<$store>::timestamp(at)?)
                            .bind(prefix)
                            .execute(&self.pool)
                            .await?;
                    Ok(done.rows_affected() > 0)
                }
            }

            fn price_from_row(row: &DbRow) -> Result<PriceRule, StoreError> {
                let money = |col: &str| -> Result<Money, StoreError> { shared::db_money("price", row.try_get(col)?) };
                let opt_money = |col: &str| -> Result<Option<Money>, StoreError> {
                    row.try_get::<Option<i64>, _>(col)?.map(|n| shared::db_money("price", n)).transpose()
                };
                Ok(PriceRule {
                    provider: row.try_get("provider")?,
                    model: row.try_get("model")?,
                    org: row.try_get::<Option<i64>, _>("org_id")?.map(OrgId),
                    input_per_million: money("input_per_million_nanos")?,
                    output_per_million: money("output_per_million_nanos")?,
                    cached_input_per_million: opt_money("cached_input_per_million_nanos")?,
                    reasoning_output_per_million: opt_money("reasoning_output_per_million_nanos")?,
                    effective_from: read_timestamp(row, "effective_from", "price effective_from")?,
                    currency: row.try_get("currency")?,
                })
            }

            impl PriceRepo for $store {
                async fn upsert_price_rule(&self, rule: &PriceRule) -> Result<(), StoreError> {
                    rule.validate().map_err(|e| StoreError::invalid("price rule", e))?;
                    sqlx::query(
                        "INSERT INTO price_rules (provider, model, org_id, input_per_million_nanos,
                             output_per_million_nanos, cached_input_per_million_nanos,
                             reasoning_output_per_million_nanos, currency, effective_from)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (provider, model, COALESCE(org_id, 0), effective_from) DO UPDATE SET
                             input_per_million_nanos = excluded.input_per_million_nanos,
                             output_per_million_nanos = excluded.output_per_million_nanos,
                             cached_input_per_million_nanos = excluded.cached_input_per_million_nanos,
                             reasoning_output_per_million_nanos = excluded.reasoning_output_per_million_nanos,
                             currency = excluded.currency",
                    )
                    .bind(&rule.provider)
                    .bind(&rule.model)
                    .bind(rule.org.map(|o| o.0))
                    .bind(rule.input_per_million.nanos())
                    .bind(rule.output_per_million.nanos())
                    .bind(rule.cached_input_per_million.map(Money::nanos))
                    .bind(rule.reasoning_output_per_million.map(Money::nanos))
                    .bind(&rule.currency)
                    .bind(<$store>::timestamp(rule.effective_from)?)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn effective_price_rule(
                    &self,
                    org: Option<OrgId>,
                    provider: &str,
                    model: &str,
                    at: OffsetDateTime,
                ) -> Result<Option<PriceRule>, StoreError> {
                    if shared::has_nul(provider) || shared::has_nul(model) {
                        return Ok(None); // no stored rule has one
                    }
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{PRICE_COLUMNS}
                         WHERE provider = $1 AND model = $2 AND (org_id IS NULL OR org_id = $3)
                             AND effective_from <= $4
                         ORDER BY org_id IS NULL, effective_from DESC LIMIT 1"
                    )))
                    .bind(provider)
                    .bind(model)
                    .bind(org.map(|o| o.0))
                    .bind(<$store>::timestamp(at)?)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(price_from_row).transpose()
                }

                async fn list_price_rules(&self) -> Result<Vec<PriceRule>, StoreError> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{PRICE_COLUMNS} ORDER BY provider, model, org_id IS NOT NULL, org_id, effective_from"
                    )))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(price_from_row).collect()
                }
            }

            fn totals_from_row(row: &DbRow) -> Result<UsageTotals, StoreError> {
                let count =
                    |col: &str| -> Result<u64, StoreError> { shared::db_to_u64("usage sum", row.try_get(col)?) };
                Ok(UsageTotals {
                    currency: row.try_get("currency")?,
                    requests: count("requests")?,
                    prompt_tokens: count("prompt_tokens")?,
                    completion_tokens: count("completion_tokens")?,
                    cached_tokens: count("cached_tokens")?,
                    reasoning_tokens: count("reasoning_tokens")?,
                    billed_cost: shared::db_money("billed cost sum", row.try_get("billed_cost_nanos")?)?,
                    unpriced_requests: count("unpriced_requests")?,
                })
            }

            fn attempt_from_row(row: &DbRow) -> Result<AttemptRow, StoreError> {
                Ok(AttemptRow {
                    attempt: shared::db_to_u32("attempt", read_int4(row, "attempt")?)?,
                    api: row.try_get("api")?,
                    provider: row.try_get("provider")?,
                    model: row.try_get("model")?,
                    outcome: row.try_get("outcome")?,
                    status: u16::try_from(shared::db_to_u32("status", read_int4(row, "status")?)?)
                        .unwrap_or(u16::MAX),
                    prompt_tokens: shared::db_to_u64("prompt tokens", row.try_get("prompt_tokens")?)?,
                    completion_tokens: shared::db_to_u64("completion tokens", row.try_get("completion_tokens")?)?,
                    billed_cost: shared::db_money("billed cost", row.try_get("billed_cost_nanos")?)?,
                    currency: row.try_get("currency")?,
                    latency_ms: shared::db_to_u64("latency", row.try_get("latency_ms")?)?,
                })
            }

            fn request_from_row(row: &DbRow) -> Result<RequestRow, StoreError> {
                let count =
                    |col: &str| -> Result<u64, StoreError> { shared::db_to_u64(col, row.try_get(col)?) };
                Ok(RequestRow {
                    request_id: row.try_get("request_id")?,
                    client_request_id: row.try_get("client_request_id")?,
                    created_at: read_timestamp(row, "created_at", "ledger created_at")?,
                    org_name: row.try_get("org_name")?,
                    key_prefix: row.try_get("key_prefix")?,
                    api: row.try_get("api")?,
                    provider: row.try_get("provider")?,
                    model: row.try_get("model")?,
                    stream: row.try_get("stream")?,
                    status: u16::try_from(shared::db_to_u32("status", read_int4(row, "status")?)?)
                        .unwrap_or(u16::MAX),
                    outcome: row.try_get("outcome")?,
                    attempts: shared::db_to_u32("attempt", read_int4(row, "attempt")?)?,
                    latency_ms: count("latency_ms")?,
                    ttft_ms: row.try_get::<Option<i64>, _>("ttft_ms")?.map(|v| shared::db_to_u64("ttft_ms", v)).transpose()?,
                    usage: TokenUsage {
                        prompt: count("prompt_tokens")?,
                        completion: count("completion_tokens")?,
                        cached: count("cached_tokens")?,
                        reasoning: count("reasoning_tokens")?,
                    },
                    billed_cost: shared::db_money("billed cost", row.try_get("billed_cost_nanos")?)?,
                    currency: row.try_get("currency")?,
                })
            }

            impl UsageRepo for $store {
                async fn insert_usage(&self, entries: &[LedgerEntry]) -> Result<InsertOutcome, StoreError> {
                    let (unique, in_batch_duplicates) = shared::prepare_batch(entries)?;
                    if unique.is_empty() {
                        return Ok(InsertOutcome { inserted: 0, duplicates: in_batch_duplicates });
                    }
                    let mut tx = self.begin_write().await?;
                    let mut inserted_ids: HashSet<(String, i64)> = HashSet::new();
                    for chunk in unique.chunks(INSERT_CHUNK) {
                        let mut q = QueryBuilder::<Db>::new(
                            "INSERT INTO usage_ledger (request_id, org_id, key_id, provider, model, stream,
                                 prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, status, outcome,
                                 latency_ms, ttft_ms, idempotency_key, raw_cost_amount, raw_cost_currency,
                                 billed_cost_nanos, currency, created_at, client_request_id, unpriced, attempt,
                                 api) ",
                        );
                        let created = chunk
                            .iter()
                            .map(|e| <$store>::timestamp(e.created_at))
                            .collect::<Result<Vec<Timestamp>, StoreError>>()?;
                        q.push_values(chunk.iter().zip(created), |mut b, (e, created_at)| {
                            b.push_bind(&e.request_id)
                                .push_bind(e.org_id.0)
                                .push_bind(e.key_id.0)
                                .push_bind(&e.provider)
                                .push_bind(&e.model)
                                .push_bind(e.stream)
                                .push_bind(shared::u64_to_db(e.usage.prompt))
                                .push_bind(shared::u64_to_db(e.usage.completion))
                                .push_bind(shared::u64_to_db(e.usage.cached))
                                .push_bind(shared::u64_to_db(e.usage.reasoning))
                                .push_bind(Int4::from(i32::from(e.status)))
                                .push_bind(&e.outcome)
                                .push_bind(shared::u64_to_db(e.latency_ms))
                                .push_bind(e.ttft_ms.map(shared::u64_to_db))
                                .push_bind(&e.idempotency_key)
                                .push_bind(e.raw_cost.as_ref().map(|c| &c.amount))
                                .push_bind(e.raw_cost.as_ref().map(|c| &c.currency))
                                .push_bind(e.billed_cost.nanos())
                                .push_bind(&e.currency)
                                .push_bind(created_at)
                                .push_bind(e.stored_client_request_id())
                                .push_bind(e.unpriced)
                                // Validated: an attempt fits in 31 bits.
                                .push_bind(Int4::from(i32::try_from(e.attempt).unwrap_or(i32::MAX)))
                                .push_bind(&e.api);
                        });
                        q.push(" ON CONFLICT (request_id, attempt) DO NOTHING RETURNING request_id, attempt");
                        let ids: Vec<(String, Int4)> = q.build_query_as().fetch_all(&mut *tx).await?;
                        inserted_ids.extend(ids.into_iter().map(|(id, attempt)| (id, attempt.into())));
                    }
                    let inserted: Vec<&LedgerEntry> = unique
                        .iter()
                        .copied()
                        .filter(|e| inserted_ids.contains(&(e.request_id.clone(), i64::from(e.attempt))))
                        .collect();
                    let groups = shared::aggregate(inserted.iter().copied())?;
                    let group_list: Vec<_> = groups.into_iter().collect();
                    for chunk in group_list.chunks(INSERT_CHUNK) {
                        let days = chunk
                            .iter()
                            .map(|(k, _)| <$store>::day(k.day))
                            .collect::<Result<Vec<Day>, StoreError>>()?;
                        let mut q = QueryBuilder::<Db>::new(
                            "INSERT INTO usage_daily (org_id, day, key_id, provider, model, currency, requests,
                                 prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                                 billed_cost_nanos, unpriced_requests) ",
                        );
                        q.push_values(chunk.iter().zip(days), |mut b, ((k, s), day)| {
                            b.push_bind(k.org_id.0)
                                .push_bind(day)
                                .push_bind(k.key_id.0)
                                .push_bind(&k.provider)
                                .push_bind(&k.model)
                                .push_bind(&k.currency)
                                .push_bind(s.requests)
                                .push_bind(s.prompt_tokens)
                                .push_bind(s.completion_tokens)
                                .push_bind(s.cached_tokens)
                                .push_bind(s.reasoning_tokens)
                                .push_bind(s.billed_cost_nanos)
                                .push_bind(s.unpriced_requests);
                        });
                        q.push(
                            " ON CONFLICT (org_id, day, key_id, provider, model, currency) DO UPDATE SET
                                 requests = usage_daily.requests + excluded.requests,
                                 prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
                                 completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
                                 cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens,
                                 reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens,
                                 billed_cost_nanos = usage_daily.billed_cost_nanos + excluded.billed_cost_nanos,
                                 unpriced_requests = usage_daily.unpriced_requests + excluded.unpriced_requests",
                        );
                        q.build().execute(&mut *tx).await?;
                    }
                    for (key, at) in shared::last_used(inserted.iter().copied()) {
                        let at = <$store>::timestamp(at)?;
                        sqlx::query(
                            "UPDATE api_keys SET last_used_at = $1
                             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
                        )
                        .bind(&at)
                        .bind(key.0)
                        .bind(&at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    let inserted = inserted.len() as u64;
                    Ok(InsertOutcome { inserted, duplicates: entries.len() as u64 - inserted })
                }

                async fn usage_series(
                    &self,
                    org: OrgId,
                    from: Date,
                    to: Date,
                    filter: &UsageFilter,
                ) -> Result<UsageSummary, StoreError> {
                    if filter.model.as_deref().is_some_and(shared::has_nul) {
                        return Ok(UsageSummary::default()); // no stored model has one
                    }
                    // The primary key (org_id, day, …) is the index: one range of the org's days.
                    let mut q = QueryBuilder::<Db>::new(
                        "SELECT provider, model, day, currency, CAST(SUM(requests) AS BIGINT) AS requests,
                                CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
                                CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
                                CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
                                CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                                CAST(SUM(billed_cost_nanos) AS BIGINT) AS billed_cost_nanos,
                                CAST(SUM(unpriced_requests) AS BIGINT) AS unpriced_requests
                         FROM usage_daily WHERE org_id = ",
                    );
                    q.push_bind(org.0);
                    q.push(" AND day >= ").push_bind(<$store>::day(from)?);
                    q.push(" AND day < ").push_bind(<$store>::day(to)?);
                    if let Some(key) = filter.key {
                        q.push(" AND key_id = ").push_bind(key.0);
                    }
                    if let Some(model) = &filter.model {
                        q.push(" AND model = ").push_bind(model.clone());
                    }
                    q.push(" GROUP BY provider, model, day, currency ORDER BY day, provider, model, currency");
                    let rows = q.build().fetch_all(&self.pool).await?;
                    let rows = rows
                        .iter()
                        .map(|row| {
                            Ok(UsageRow {
                                provider: row.try_get("provider")?,
                                model: row.try_get("model")?,
                                day: <$store>::read_day(row.try_get::<Day, _>("day")?)?,
                                totals: totals_from_row(row)?,
                            })
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    UsageSummary::from_rows(rows)
                }

                async fn spend_by_org(&self, from: Date, to: Date) -> Result<Vec<OrgSpend>, StoreError> {
                    // Driven by the orgs, so each org's days are one range of the rollups' primary key.
                    let rows = sqlx::query(
                        "SELECT o.id AS org_id, d.currency,
                                CAST(SUM(d.billed_cost_nanos) AS BIGINT) AS billed_cost_nanos
                         FROM orgs o JOIN usage_daily d ON d.org_id = o.id
                         WHERE d.day >= $1 AND d.day < $2
                         GROUP BY o.id, d.currency ORDER BY o.id, d.currency",
                    )
                    .bind(<$store>::day(from)?)
                    .bind(<$store>::day(to)?)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(OrgSpend {
                                org_id: OrgId(row.try_get("org_id")?),
                                currency: row.try_get("currency")?,
                                billed_cost: shared::db_money("spend", row.try_get("billed_cost_nanos")?)?,
                            })
                        })
                        .collect()
                }

                async fn recent_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
                    if filter.model.as_deref().is_some_and(shared::has_nul) {
                        return Ok(Vec::new()); // no stored model has one
                    }
                    // A request's final attempt is its row with no later attempt: a probe of the
                    // (request_id, attempt) unique index per row read. The rows are read newest
                    // first from an index by time: the key's, the org's or the whole ledger's.
                    let mut q = QueryBuilder::<Db>::new(
                        "SELECT l.request_id, l.client_request_id, l.created_at, o.name AS org_name,
                                k.prefix AS key_prefix, l.api, l.provider, l.model, l.stream, l.status, l.outcome,
                                l.attempt, l.latency_ms, l.ttft_ms, l.prompt_tokens, l.completion_tokens,
                                l.cached_tokens, l.reasoning_tokens, l.billed_cost_nanos, l.currency
                         FROM usage_ledger l
                         JOIN orgs o ON o.id = l.org_id
                         JOIN api_keys k ON k.id = l.key_id
                         WHERE NOT EXISTS (SELECT 1 FROM usage_ledger later
                                           WHERE later.request_id = l.request_id AND later.attempt > l.attempt)",
                    );
                    if let Some(org) = filter.org {
                        q.push(" AND l.org_id = ").push_bind(org.0);
                    }
                    if let Some(key) = filter.key {
                        q.push(" AND l.key_id = ").push_bind(key.0);
                    }
                    if let Some(model) = &filter.model {
                        q.push(" AND l.model = ").push_bind(model.clone());
                    }
                    if let Some(status) = &filter.status {
                        q.push(" AND l.status >= ").push_bind(Int4::from(i32::from(status.start)));
                        q.push(" AND l.status < ").push_bind(Int4::from(i32::from(status.end)));
                    }
                    q.push(" ORDER BY l.created_at DESC, l.id DESC LIMIT ").push_bind(i64::from(filter.limit.max(1)));
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter().map(request_from_row).collect()
                }

                async fn ledger_totals(
                    &self,
                    org: OrgId,
                    from: OffsetDateTime,
                    to: OffsetDateTime,
                ) -> Result<Vec<UsageTotals>, StoreError> {
                    let rows = sqlx::query(
                        "SELECT currency,
                                CAST(SUM(CASE WHEN outcome = 'retried' THEN 0 ELSE 1 END) AS BIGINT) AS requests,
                                CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
                                CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
                                CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
                                CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                                CAST(SUM(billed_cost_nanos) AS BIGINT) AS billed_cost_nanos,
                                COUNT(*) FILTER (WHERE unpriced) AS unpriced_requests
                         FROM usage_ledger WHERE org_id = $1 AND created_at >= $2 AND created_at < $3
                         GROUP BY currency ORDER BY currency",
                    )
                    .bind(org.0)
                    .bind(<$store>::timestamp(from)?)
                    .bind(<$store>::timestamp(to)?)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(totals_from_row).collect()
                }

                async fn request_attempts(&self, org: OrgId, request_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
                    if shared::has_nul(request_id) {
                        return Ok(Vec::new()); // no stored id has one
                    }
                    let rows = sqlx::query(
                        "SELECT attempt, api, provider, model, outcome, status, prompt_tokens, completion_tokens,
                                billed_cost_nanos, currency, latency_ms
                         FROM usage_ledger WHERE org_id = $1 AND request_id = $2 ORDER BY attempt",
                    )
                    .bind(org.0)
                    .bind(request_id)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(attempt_from_row).collect()
                }

                async fn prune_ledger(&self, older_than: OffsetDateTime, batch_size: u32) -> Result<u64, StoreError> {
                    let cutoff = <$store>::timestamp(older_than)?;
                    let batch = i64::from(batch_size.max(1));
                    let mut total = 0;
                    loop {
                        let done = sqlx::query(
                            "DELETE FROM usage_ledger WHERE id IN
                                 (SELECT id FROM usage_ledger WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                        )
                        .bind(&cutoff)
                        .bind(batch)
                        .execute(&self.pool)
                        .await?;
                        total += done.rows_affected();
                        if done.rows_affected() < batch as u64 {
                            return Ok(total);
                        }
                    }
                }

                async fn spend_since(&self, org: OrgId, currency: &str, since: Date) -> Result<Money, StoreError> {
                    let nanos: i64 = sqlx::query_scalar(
                        "SELECT CAST(COALESCE(SUM(billed_cost_nanos), 0) AS BIGINT) FROM usage_daily
                         WHERE org_id = $1 AND currency = $2 AND day >= $3",
                    )
                    .bind(org.0)
                    .bind(currency)
                    .bind(<$store>::day(since)?)
                    .fetch_one(&self.pool)
                    .await?;
                    shared::db_money("spend", nanos)
                }
            }
        };
    };
}

pub(crate) use sql_backend;
