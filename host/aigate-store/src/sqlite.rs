//! The SQLite backend: the embedded default, one file, one machine.
//!
//! Its queries are those of every SQL backend (`sql.rs`); this module holds
//! what is SQLite's own: opening the file (WAL, `synchronous = FULL`, the
//! busy timeout), its migrations, and its [`Dialect`]:
//! - timestamps are TEXT in one fixed UTC shape (`2025-01-02T03:04:05.123456Z`)
//!   so that text order is time order in comparisons and indexes; days are
//!   `YYYY-MM-DD`;
//! - integers are INTEGER (`i64`), whatever their declared width;
//! - write transactions start with `BEGIN IMMEDIATE`, taking the write lock
//!   up front, so they wait on the busy timeout instead of failing on a lock
//!   upgrade.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::StoreError;
use crate::shared;
use crate::sql::{Dialect, sql_backend};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

const TS_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const DAY_FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Settings of the embedded database.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// How long a writer waits for another connection's write lock.
    pub busy_timeout: Duration,
    pub max_connections: u32,
}

impl Default for SqliteSettings {
    fn default() -> SqliteSettings {
        SqliteSettings { busy_timeout: Duration::from_secs(5), max_connections: 4 }
    }
}

/// The SQLite implementation of every repository.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database described by `options`, with
    /// WAL journaling, `synchronous = FULL` (a committed ledger row survives
    /// a power cut), foreign keys on and the busy timeout of `settings`.
    pub async fn open(options: SqliteConnectOptions, settings: &SqliteSettings) -> Result<SqliteStore, StoreError> {
        let target = options.get_filename().display().to_string();
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.busy_timeout + Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { target, source })?;
        Ok(SqliteStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

impl Dialect for SqliteStore {
    type Db = Sqlite;
    type Timestamp = String;
    type Day = String;
    type Int4 = i64;

    fn timestamp(t: OffsetDateTime) -> Result<String, StoreError> {
        shared::utc_micros(t).format(TS_FORMAT).map_err(|e| StoreError::invalid("timestamp", e))
    }

    fn read_timestamp(what: &str, stored: String) -> Result<OffsetDateTime, StoreError> {
        PrimitiveDateTime::parse(&stored, TS_FORMAT)
            .map(PrimitiveDateTime::assume_utc)
            .map_err(|e| StoreError::corrupt(what, format!("timestamp `{stored}`: {e}")))
    }

    fn day(d: Date) -> Result<String, StoreError> {
        d.format(DAY_FORMAT).map_err(|e| StoreError::invalid("day", e))
    }

    fn read_day(stored: String) -> Result<Date, StoreError> {
        Date::parse(&stored, DAY_FORMAT).map_err(|e| StoreError::corrupt("usage day", format!("`{stored}`: {e}")))
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

sql_backend!(SqliteStore);
