//! The store's one error type. Each variant says what to do about it, and
//! [`StoreError::is_retryable`] tells a transient outage (keep the data, try
//! again) from a request the database will refuse forever.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot connect to the database at {target}: {source}. Check DATABASE_URL and that the database server is running and reachable"
    )]
    Connect { target: String, source: sqlx::Error },

    #[error(
        "DATABASE_URL `{0}` is not supported: use postgres://user@host/db, sqlite:path/to/file.db, or leave it unset for the embedded SQLite file in the data folder"
    )]
    UnsupportedUrl(String),

    #[error("cannot create the data folder {path}: {source}. Fix its permissions or choose another data folder")]
    DataDir { path: PathBuf, source: std::io::Error },

    #[error(
        "database migration failed: {0}. The database may have been changed by hand or by a newer AIGate; restore it or run the matching version"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("{what} already exists")]
    Conflict { what: String },

    #[error("{what} does not exist")]
    NotFound { what: String },

    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    #[error("the database holds an unreadable {what}: {message}. It was changed outside AIGate; fix the row")]
    Corrupt { what: String, message: String },

    #[error("cannot read the price file {path}: {message}")]
    PriceFile { path: PathBuf, message: String },

    #[error(
        "cannot use the usage spool at {path}: {source}. Free disk space or fix permissions: while the database is down, usage can only be kept there"
    )]
    Spool { path: PathBuf, source: std::io::Error },

    #[error(
        "the usage spool at {0} is in use by another AIGate process; give each process its own data folder (or stop the other one)"
    )]
    SpoolLocked(PathBuf),
}

impl StoreError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl ToString) -> StoreError {
        StoreError::Invalid { what: what.into(), message: message.to_string() }
    }

    pub(crate) fn corrupt(what: impl Into<String>, message: impl ToString) -> StoreError {
        StoreError::Corrupt { what: what.into(), message: message.to_string() }
    }

    /// Whether the same operation may succeed later (the database is down,
    /// busy, restarting, or the disk is full). `false` means the database
    /// refuses this data for good (a constraint, a value out of range): retrying
    /// would loop forever. Unknown errors count as retryable, so data is kept
    /// rather than dropped.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(e) => sqlx_error_is_retryable(e),
            StoreError::Connect { .. } | StoreError::Spool { .. } | StoreError::SpoolLocked(_) => true,
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_error_is_retryable(e),
            StoreError::Migrate(_) => false,
            StoreError::UnsupportedUrl(_)
            | StoreError::DataDir { .. }
            | StoreError::Conflict { .. }
            | StoreError::NotFound { .. }
            | StoreError::Invalid { .. }
            | StoreError::Corrupt { .. }
            | StoreError::PriceFile { .. } => false,
        }
    }

    /// A unique constraint refused the row.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}

fn sqlx_error_is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            use sqlx::error::ErrorKind;
            if !matches!(db.kind(), ErrorKind::Other) {
                return false; // unique, foreign key, not null, check, exclusion
            }
            let Some(code) = db.code() else { return true };
            if let Ok(sqlite_code) = code.parse::<i32>() {
                // SQLite extended code; the primary code is the low byte.
                // TOOBIG 18, CONSTRAINT 19, MISMATCH 20, RANGE 25 are about the data.
                !matches!(sqlite_code & 0xff, 18 | 19 | 20 | 25)
            } else {
                // Postgres SQLSTATE: class 22 data exception, 23 integrity violation.
                !(code.starts_with("22") || code.starts_with("23"))
            }
        }
        // A value that cannot be encoded will never be.
        sqlx::Error::Encode(_) => false,
        _ => true,
    }
}
