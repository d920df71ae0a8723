//! The Postgres backend: production, shared by any number of gateway replicas.
//!
//! Its queries are those of every SQL backend (`sql.rs`); this module holds
//! what is Postgres' own: the pool, its migrations, and its [`Dialect`]:
//! timestamps are TIMESTAMPTZ, days DATE, `markup_bps`, `status` and
//! `attempt` INT (`i32`); money is BIGINT nano-units as everywhere.
//! Concurrent replicas writing usage lock ledger and rollup rows in one order
//! (sorted keys), so they cannot deadlock.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use time::{Date, OffsetDateTime};

use crate::StoreError;
use crate::shared::utc_micros;
use crate::sql::{Dialect, sql_backend};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Settings of the Postgres pool.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a query waits for a connection (including connecting): also
    /// how long the first attempt against an unreachable server may take.
    pub acquire_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> PgSettings {
        PgSettings { max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }
}

/// The Postgres implementation of every repository.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects, checking the server answers (one connection is opened now).
    pub async fn connect(
        options: PgConnectOptions,
        settings: &PgSettings,
        target: String,
    ) -> Result<PgStore, StoreError> {
        let pool = pool_options(settings)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { target, source })?;
        Ok(PgStore { pool })
    }

    /// A pool that connects on first use: nothing is checked now. For tests
    /// and tools that must start while the database is down.
    pub fn connect_lazy(options: PgConnectOptions, settings: &PgSettings) -> PgStore {
        PgStore { pool: pool_options(settings).connect_lazy_with(options) }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. Safe with several replicas starting at
    /// once: sqlx serialises migrators with an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

fn pool_options(settings: &PgSettings) -> PgPoolOptions {
    // test_before_acquire: after a server restart, dead pooled connections
    // are noticed and replaced instead of failing the next query.
    PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(true)
}

impl Dialect for PgStore {
    type Db = Postgres;
    type Timestamp = OffsetDateTime;
    type Day = Date;
    type Int4 = i32;

    fn timestamp(t: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
        Ok(utc_micros(t))
    }

    fn read_timestamp(_what: &str, stored: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
        Ok(stored)
    }

    fn day(d: Date) -> Result<Date, StoreError> {
        Ok(d)
    }

    fn read_day(stored: Date) -> Result<Date, StoreError> {
        Ok(stored)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

sql_backend!(PgStore);
