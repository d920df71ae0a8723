//! AIGate storage: the only crate that speaks SQL (an architecture invariant).
//!
//! - [`Store`]: SQLite (the embedded default, one file in the data folder) or
//!   Postgres (production), chosen by `DATABASE_URL`; [`Store::migrate`]
//!   applies the migrations of `migrations/sqlite` or `migrations/postgres`.
//! - The repository traits, one per concern ([`OrgRepo`], [`KeyRepo`],
//!   [`PriceRepo`], [`UsageRepo`]), implemented by each backend
//!   ([`SqliteStore`], [`PgStore`]) from one body of SQL (`sql.rs`; each
//!   backend adds only its dialect) and by [`Store`].
//! - [`UsageWriter`]: the batched, durable writer the server hands usage
//!   records to, with a local spool for database outages ([`spool`]).
//! - Price files ([`seed`]) with the default price rules.
//!
//! Money is stored as integer nano-units (BIGINT) everywhere, never as a
//! float; see `aigate_core::pricing` for the rounding rule.

mod error;
mod postgres;
mod records;
mod repo;
mod shared;
mod sql;
mod sqlite;
mod store;
mod writer;

pub mod seed;
pub mod spool;

pub use error::StoreError;
pub use postgres::{PgSettings, PgStore};
pub use records::{
    AttemptRow, Budget, InsertOutcome, KeyRecord, KeyStatus, LedgerEntry, MAX_CLIENT_REQUEST_ID_CHARS, NewKey, Org,
    OrgSpend, RETRIED, RawCost, RequestFilter, RequestRow, UsageFilter, UsageRow, UsageSummary, UsageTotals,
    client_request_id,
};
pub use repo::{KeyRepo, OrgRepo, PriceRepo, UsageRepo};
pub use seed::Seeded;
pub use sqlite::{SqliteSettings, SqliteStore};
pub use store::{IssuedKey, KeySettings, SQLITE_FILE_NAME, Store, StoreOptions, issue_key, sqlite_path};
pub use writer::{SubmitError, UsageWriter, WriterOptions, WriterStats};
