#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup must stop the test"
)]

//! Integration tests of aigate-store: one binary (see STYLE.md). Most tests
//! are backend suites written once and run against SQLite and Postgres
//! (`store_suite!`); set `DATABASE_URL` to a Postgres server to run the
//! latter (each test creates and drops its own database).

mod support;

mod connect;
mod keys;
mod million;
mod orgs;
mod prices;
mod usage;
mod writer;
