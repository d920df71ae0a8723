//! [`Store`]: the backend `DATABASE_URL` chose, behind the repository traits.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use aigate_core::{ApiKey, KeyHash, ModelScope, Money, OrgId, OrgName, PriceRule};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use time::{Date, OffsetDateTime};

use crate::StoreError;
use crate::postgres::{PgSettings, PgStore};
use crate::records::{
    AttemptRow, Budget, InsertOutcome, KeyRecord, LedgerEntry, NewKey, Org, OrgSpend, RequestFilter, RequestRow,
    UsageFilter, UsageSummary, UsageTotals,
};
use crate::repo::{KeyRepo, OrgRepo, PriceRepo, UsageRepo};
use crate::sqlite::{SqliteSettings, SqliteStore};

/// File name of the embedded database inside the data folder.
pub const SQLITE_FILE_NAME: &str = "aigate.db";

/// Tuning of [`Store::connect_with`]; the defaults suit the gateway.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub sqlite: SqliteSettings,
    pub postgres: PgSettings,
    /// Postgres only: do not connect now, connect on first use. An
    /// unreachable server then shows up as retryable errors on each query
    /// instead of an error here. Tests of the usage spool use it.
    pub lazy: bool,
}

/// The store: SQLite (embedded default) or Postgres (production). Cheap to
/// clone (a pool handle). Implements every repository trait by forwarding
/// to the backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store `database_url` names:
    /// - `None` (or empty): the SQLite file `<data_dir>/aigate.db`, created
    ///   with its folder if missing;
    /// - `postgres://…` / `postgresql://…`: a Postgres pool;
    /// - `sqlite:…`: that SQLite database (created if missing).
    ///
    /// An unreachable database is [`StoreError::Connect`], naming the target
    /// without its password; the caller prints it and exits non-zero.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        Store::connect_with(database_url, data_dir, &StoreOptions::default()).await
    }

    pub async fn connect_with(
        database_url: Option<&str>,
        data_dir: &Path,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let url = database_url.map(str::trim).filter(|u| !u.is_empty());
        match url {
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|source| StoreError::DataDir { path: data_dir.to_path_buf(), source })?;
                let file = data_dir.join(SQLITE_FILE_NAME);
                let opts = SqliteConnectOptions::new().filename(&file);
                Ok(Store::Sqlite(SqliteStore::open(opts, &options.sqlite).await?))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::invalid("DATABASE_URL", format!("{e} (in `{}`)", redact(url))))?;
                let target =
                    format!("postgres://{}:{}/{}", opts.get_host(), opts.get_port(), opts.get_database().unwrap_or(""));
                if options.lazy {
                    return Ok(Store::Postgres(PgStore::connect_lazy(opts, &options.postgres)));
                }
                Ok(Store::Postgres(PgStore::connect(opts, &options.postgres, target).await?))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::invalid("DATABASE_URL", format!("{e} (in `{url}`)")))?;
                Ok(Store::Sqlite(SqliteStore::open(opts, &options.sqlite).await?))
            }
            Some(url) => Err(StoreError::UnsupportedUrl(redact(url))),
        }
    }

    /// Applies pending migrations; running it again is a no-op.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }

    /// One round trip to the database: readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// `"sqlite"` or `"postgres"`, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// The scheme of a URL we will not use, without anything that may be a secret.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => url.chars().take_while(|&c| c != ':' && c != '@').take(20).collect(),
    }
}

/// A key just created: the plaintext, to show once, and its stored record.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub record: KeyRecord,
}

/// Settings of a key to issue.
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    pub name: String,
    pub expires_at: Option<OffsetDateTime>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u64>,
    pub allowed_models: Option<ModelScope>,
}

/// Generates a key for `org` and stores it, generating again in the rare case
/// its visible prefix is already taken (five random characters: collisions
/// happen among tens of thousands of keys).
pub async fn issue_key<R: KeyRepo>(repo: &R, org: OrgId, settings: &KeySettings) -> Result<IssuedKey, StoreError> {
    let mut attempts = 0;
    loop {
        let key = ApiKey::generate().map_err(|e| StoreError::invalid("key", e))?;
        let new = NewKey {
            org_id: org,
            name: settings.name.clone(),
            prefix: key.prefix().to_owned(),
            hash: key.hash().clone(),
            expires_at: settings.expires_at,
            rpm_limit: settings.rpm_limit,
            tpm_limit: settings.tpm_limit,
            allowed_models: settings.allowed_models.clone(),
        };
        match repo.insert_key(&new).await {
            Ok(record) => return Ok(IssuedKey { key, record }),
            Err(StoreError::Conflict { .. }) if attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl OrgRepo for Store {
    async fn create_org(&self, name: &OrgName) -> Result<Org, StoreError> {
        forward!(self, s => s.create_org(name))
    }
    async fn get_or_create_org(&self, name: &OrgName) -> Result<Org, StoreError> {
        forward!(self, s => s.get_or_create_org(name))
    }
    async fn org_by_name(&self, name: &OrgName) -> Result<Option<Org>, StoreError> {
        forward!(self, s => s.org_by_name(name))
    }
    async fn org_by_id(&self, id: OrgId) -> Result<Option<Org>, StoreError> {
        forward!(self, s => s.org_by_id(id))
    }
    async fn set_markup(&self, id: OrgId, markup_bps: u32) -> Result<(), StoreError> {
        forward!(self, s => s.set_markup(id, markup_bps))
    }
    async fn set_monthly_budget(&self, id: OrgId, budget: Option<&Budget>) -> Result<(), StoreError> {
        forward!(self, s => s.set_monthly_budget(id, budget))
    }
    async fn set_allowed_models(&self, id: OrgId, scope: Option<&ModelScope>) -> Result<(), StoreError> {
        forward!(self, s => s.set_allowed_models(id, scope))
    }
    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        forward!(self, s => s.list_orgs())
    }
}

impl KeyRepo for Store {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, StoreError> {
        forward!(self, s => s.insert_key(key))
    }
    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        forward!(self, s => s.find_key_by_hash(hash))
    }
    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<KeyRecord>, StoreError> {
        forward!(self, s => s.key_by_prefix(prefix))
    }
    async fn list_keys(&self, org: OrgId) -> Result<Vec<KeyRecord>, StoreError> {
        forward!(self, s => s.list_keys(org))
    }
    async fn revoke_key(&self, prefix: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        forward!(self, s => s.revoke_key(prefix, at))
    }
}

impl PriceRepo for Store {
    async fn upsert_price_rule(&self, rule: &PriceRule) -> Result<(), StoreError> {
        forward!(self, s => s.upsert_price_rule(rule))
    }
    async fn effective_price_rule(
        &self,
        org: Option<OrgId>,
        provider: &str,
        model: &str,
        at: OffsetDateTime,
    ) -> Result<Option<PriceRule>, StoreError> {
        forward!(self, s => s.effective_price_rule(org, provider, model, at))
    }
    async fn list_price_rules(&self) -> Result<Vec<PriceRule>, StoreError> {
        forward!(self, s => s.list_price_rules())
    }
}

impl UsageRepo for Store {
    async fn insert_usage(&self, entries: &[LedgerEntry]) -> Result<InsertOutcome, StoreError> {
        forward!(self, s => s.insert_usage(entries))
    }
    async fn usage_series(
        &self,
        org: OrgId,
        from: Date,
        to: Date,
        filter: &UsageFilter,
    ) -> Result<UsageSummary, StoreError> {
        forward!(self, s => s.usage_series(org, from, to, filter))
    }
    async fn spend_by_org(&self, from: Date, to: Date) -> Result<Vec<OrgSpend>, StoreError> {
        forward!(self, s => s.spend_by_org(from, to))
    }
    async fn recent_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        forward!(self, s => s.recent_requests(filter))
    }
    async fn ledger_totals(
        &self,
        org: OrgId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        forward!(self, s => s.ledger_totals(org, from, to))
    }
    async fn request_attempts(&self, org: OrgId, request_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        forward!(self, s => s.request_attempts(org, request_id))
    }
    async fn prune_ledger(&self, older_than: OffsetDateTime, batch_size: u32) -> Result<u64, StoreError> {
        forward!(self, s => s.prune_ledger(older_than, batch_size))
    }
    async fn spend_since(&self, org: OrgId, currency: &str, since: Date) -> Result<Money, StoreError> {
        forward!(self, s => s.spend_since(org, currency, since))
    }
}

/// Where the embedded database lives for a data folder.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SQLITE_FILE_NAME)
}
