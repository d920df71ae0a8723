//! Test databases and fixtures shared by the suites.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use aigate_core::{KeyId, Money, OrgId, OrgName, TokenUsage};
use aigate_store::{KeyRepo, KeySettings, LedgerEntry, OrgRepo, RawCost, Store, StoreOptions, issue_key};
use sqlx::Connection;
use time::OffsetDateTime;
use time::macros::datetime;

/// Runs each listed `async fn name(store: &Store)` against every backend: a
/// `sqlite::name` test (always) and a `postgres::name` test (with a fresh
/// database of its own when `DATABASE_URL` is set).
#[macro_export]
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite().await;
                    super::$name(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::support::TestDb::postgres().await else { return };
                    super::$name(&db.store).await;
                }
            )*
        }
    };
}

/// A migrated store on a database of its own, removed on drop (even when the
/// test panics).
pub struct TestDb {
    pub store: Store,
    /// Holds the SQLite file (and is the data folder of Postgres tests) until the end.
    pub _dir: tempfile::TempDir,
    /// Postgres: (server URL, database name) to drop.
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(None, &dir.path().join("data")).await.unwrap();
        store.migrate().await.unwrap();
        TestDb { store, _dir: dir, pg: None }
    }

    /// `None` (after saying so) when `DATABASE_URL` is unset, unless
    /// `AIGATE_REQUIRE_SERVICES=1` makes that a failure.
    pub async fn postgres() -> Option<TestDb> {
        let server = postgres_url()?;
        let name = format!("aigate_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(Some(url.as_str()), dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        Some(TestDb { store, _dir: dir, pg: Some((server, name)) })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else { return };
        let store = self.store.clone();
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                store.close().await;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut admin)
                        .await;
                }
            })
        })
        .join();
    }
}

/// The stored client request ids of an org's ledger rows, read with SQL of
/// the test's own (the repositories have no reader for them).
pub async fn stored_client_request_ids(store: &Store, org: OrgId) -> Vec<Option<String>> {
    let sql = "SELECT client_request_id FROM usage_ledger WHERE org_id = ";
    match store {
        Store::Sqlite(s) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql}?"))).bind(org.0).fetch_all(s.pool()).await.unwrap()
        }
        Store::Postgres(s) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql}$1"))).bind(org.0).fetch_all(s.pool()).await.unwrap()
        }
    }
}

pub fn postgres_url() -> Option<String> {
    match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => Some(url),
        None if std::env::var("AIGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("AIGATE_REQUIRE_SERVICES=1 but DATABASE_URL is unset: the Postgres suite must run")
        }
        None => {
            eprintln!("DATABASE_URL is unset: skipping the Postgres run of this test");
            None
        }
    }
}

/// A store whose Postgres server does not exist (a closed port): every query
/// fails with a retryable connection error.
pub async fn unreachable_store() -> Store {
    let options = StoreOptions {
        lazy: true,
        postgres: aigate_store::PgSettings {
            acquire_timeout: std::time::Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    Store::connect_with(Some("postgres://postgres@127.0.0.1:9/nowhere"), std::path::Path::new("."), &options)
        .await
        .unwrap()
}

pub fn org_name(s: &str) -> OrgName {
    OrgName::parse(s).unwrap()
}

pub fn money(s: &str) -> Money {
    Money::from_str(s).unwrap()
}

/// An org with `keys` keys.
pub async fn org_with_keys(store: &Store, name: &str, keys: usize) -> (OrgId, Vec<KeyId>) {
    let org = store.get_or_create_org(&org_name(name)).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..keys {
        let settings = KeySettings { name: format!("key {i}"), ..Default::default() };
        ids.push(issue_key(store, org.id, &settings).await.unwrap().record.id);
    }
    let listed = store.list_keys(org.id).await.unwrap();
    assert_eq!(listed.len(), keys);
    (org.id, ids)
}

pub const DAY0: OffsetDateTime = datetime!(2025-06-01 00:00 UTC);

/// Deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

pub fn request_id() -> String {
    format!("req-{}-{}", std::process::id(), REQUEST_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A random but valid ledger entry.
pub fn entry(rng: &mut Rng, org: OrgId, key: KeyId, request_id: String) -> LedgerEntry {
    let prompt = rng.below(50_000);
    let completion = rng.below(5_000);
    LedgerEntry {
        request_id,
        attempt: 1,
        api: "chat_completions".into(),
        // Some ill-formed (too long, non-ASCII, spaces): stored as NULL, never refused.
        client_request_id: match rng.below(5) {
            0 => None,
            1 => Some("c".repeat(129)),
            2 => Some("café-42".into()),
            3 => Some("same id".into()),
            _ => Some("client-id-shared-by-every-call".into()),
        },
        org_id: org,
        key_id: key,
        provider: rng.pick(&["qwen", "openai"]).to_string(),
        model: rng.pick(&["qwen-turbo", "qwen-plus", "gpt-x"]).to_string(),
        stream: rng.below(2) == 0,
        usage: TokenUsage { prompt, completion, cached: rng.below(prompt + 1), reasoning: rng.below(completion + 1) },
        status: *rng.pick(&[200, 200, 200, 429, 500]),
        outcome: rng.pick(&["completed", "provider_error", "cancelled"]).to_string(),
        latency_ms: rng.below(10_000),
        ttft_ms: (rng.below(2) == 0).then(|| rng.below(1_000)),
        idempotency_key: (rng.below(4) == 0).then(|| format!("idem-{}", rng.next())),
        raw_cost: (rng.below(3) == 0).then(|| RawCost { amount: "0.000123".into(), currency: "CNY".into() }),
        billed_cost: Money::from_nanos(rng.below(5_000_000) as i64),
        unpriced: rng.below(6) == 0,
        currency: rng.pick(&["USD", "USD", "USD", "EUR"]).to_string(),
        // Three UTC days, to the microsecond.
        created_at: DAY0 + time::Duration::microseconds(rng.below(3 * 86_400 * 1_000_000) as i64),
    }
}
