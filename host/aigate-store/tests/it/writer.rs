//! The durable usage writer and its spool.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aigate_core::{KeyId, Money, OrgId};
use aigate_store::{
    InsertOutcome, LedgerEntry, Store, StoreError, UsageRepo, UsageSummary, UsageTotals, UsageWriter, WriterOptions,
};
use time::{Date, OffsetDateTime};

use crate::store_suite;
use crate::support::{DAY0, Rng, entry, org_with_keys, request_id, unreachable_store};

fn options() -> WriterOptions {
    WriterOptions {
        batch_size: 50,
        flush_interval: Duration::from_millis(20),
        queue_capacity: 1_000,
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
    }
}

async fn ledger_count(store: &Store, org: OrgId) -> u64 {
    let totals = store.ledger_totals(org, DAY0, DAY0 + time::Duration::days(3)).await.unwrap();
    totals.iter().map(|t| t.requests).sum()
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl") || n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn batches_reach_the_ledger_and_shutdown_drains(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    // Nothing is flushed by time or size before shutdown: shutdown must drain it all.
    let slow = WriterOptions { batch_size: 10_000, flush_interval: Duration::from_secs(3600), ..options() };
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), slow).unwrap();
    let mut rng = Rng::new(1);
    for _ in 0..300 {
        writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    }
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 300);
    assert_eq!(writer.stats().inserted, 300);
    assert!(spool_files(spool.path()).is_empty());
    // The handle keeps the spool (submits after shutdown spill there): release it.
    drop(writer);

    // A second writer with normal timing writes without a shutdown too.
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    for _ in 0..120 {
        writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    }
    eventually("timed flushes", async || ledger_count(store, org).await == 420).await;
    writer.shutdown().await;
    writer.shutdown().await; // twice is fine
    join.await.unwrap();
}

/// The writer does not watch its queue while a partial batch waits for its flush time (one
/// wake-up per batch, not per record): a whole batch queued meanwhile must still go out at once,
/// not at the flush time.
async fn a_full_batch_goes_out_before_the_flush_time(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let hour = WriterOptions { batch_size: 50, flush_interval: Duration::from_secs(3600), ..options() };
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), hour).unwrap();
    let mut rng = Rng::new(9);
    // One record starts a batch that waits an hour for its flush time...
    writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    eventually("the writer to take the first record", async || writer.queue_len() == 0).await;
    // ...then a whole batch's worth more, in both ways of submitting.
    for i in 0..60 {
        let e = entry(&mut rng, org, keys[0], request_id());
        if i % 2 == 0 {
            writer.submit(e).unwrap();
        } else {
            writer.try_submit(e).unwrap();
        }
    }
    eventually("a full batch in the ledger", async || ledger_count(store, org).await >= 50).await;
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 61);
}

/// The database is unreachable (Postgres on a closed port): everything goes
/// to the spool. Then a writer on a working database replays it exactly once.
async fn spool_while_unreachable_then_replay_exactly_once(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 2).await;
    let spool = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    let mut entries: Vec<LedgerEntry> = (0..137).map(|i| entry(&mut rng, org, keys[i % 2], request_id())).collect();
    // Re-delivered duplicates (same request ids) must be counted once.
    entries.extend(entries[..10].to_vec());

    let down = unreachable_store().await;
    let (writer, join) = UsageWriter::start(down.clone(), spool.path(), options()).unwrap();
    for e in &entries {
        writer.submit(e.clone()).unwrap();
    }
    eventually("the first batches to be spooled", async || writer.stats().spooled > 0).await;
    assert!(writer.spool_pending());
    writer.shutdown().await;
    join.await.unwrap();
    let stats = writer.stats();
    assert_eq!(stats.inserted, 0);
    assert_eq!(stats.spooled + stats.spilled, entries.len() as u64, "{stats:?}");
    assert!(!spool_files(spool.path()).is_empty());
    drop(writer);

    // The database is back: a new process replays the spool at start.
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    eventually("the replay", async || spool_files(spool.path()).is_empty()).await;
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 137);
    let stats = writer.stats();
    assert_eq!((stats.inserted, stats.duplicates), (137, 10), "{stats:?}");
    drop(writer);

    // And again: nothing left to replay, nothing counted twice.
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(writer.stats().replayed_files, 0);
    assert_eq!(ledger_count(store, org).await, 137);
}

/// A repository that fails with a retryable error while `down` is set.
#[derive(Clone)]
struct Flaky {
    store: Store,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        Ok(())
    }
}

impl UsageRepo for Flaky {
    async fn insert_usage(&self, entries: &[LedgerEntry]) -> Result<InsertOutcome, StoreError> {
        self.check()?;
        self.store.insert_usage(entries).await
    }
    async fn usage_series(
        &self,
        org: OrgId,
        from: Date,
        to: Date,
        filter: &aigate_store::UsageFilter,
    ) -> Result<UsageSummary, StoreError> {
        self.store.usage_series(org, from, to, filter).await
    }
    async fn spend_by_org(&self, from: Date, to: Date) -> Result<Vec<aigate_store::OrgSpend>, StoreError> {
        self.store.spend_by_org(from, to).await
    }
    async fn recent_requests(
        &self,
        filter: &aigate_store::RequestFilter,
    ) -> Result<Vec<aigate_store::RequestRow>, StoreError> {
        self.store.recent_requests(filter).await
    }
    async fn ledger_totals(
        &self,
        org: OrgId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        self.store.ledger_totals(org, from, to).await
    }
    async fn request_attempts(
        &self,
        org: OrgId,
        request_id: &str,
    ) -> Result<Vec<aigate_store::AttemptRow>, StoreError> {
        self.store.request_attempts(org, request_id).await
    }
    async fn prune_ledger(&self, older_than: OffsetDateTime, batch_size: u32) -> Result<u64, StoreError> {
        self.store.prune_ledger(older_than, batch_size).await
    }
    async fn spend_since(&self, org: OrgId, currency: &str, since: Date) -> Result<Money, StoreError> {
        self.store.spend_since(org, currency, since).await
    }
}

/// An outage in the middle of traffic: batches go to the spool, the writer
/// retries with backoff, and when the database returns everything arrives
/// exactly once, with no restart.
async fn outage_and_recovery_without_restart(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let repo = Flaky { store: store.clone(), down: down.clone() };
    let (writer, join) = UsageWriter::start(repo, spool.path(), options()).unwrap();
    let mut rng = Rng::new(4);
    let mut submit = |n: usize| {
        for _ in 0..n {
            writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
        }
    };
    submit(100);
    eventually("healthy writes", async || ledger_count(store, org).await == 100).await;

    down.store(true, Ordering::SeqCst);
    submit(200);
    eventually("spooling during the outage", async || writer.stats().spooled >= 200).await;
    assert_eq!(ledger_count(store, org).await, 100);
    assert!(!spool_files(spool.path()).is_empty());

    down.store(false, Ordering::SeqCst);
    submit(50);
    eventually("recovery", async || ledger_count(store, org).await == 350).await;
    eventually("an empty spool", async || spool_files(spool.path()).is_empty()).await;
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 350);
    assert_eq!(writer.stats().inserted, 350);
}

/// Shutdown while the database is down: memory drains into the spool.
async fn shutdown_during_outage_spools_everything(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let repo = Flaky { store: store.clone(), down: down.clone() };
    let slow = WriterOptions { batch_size: 10_000, flush_interval: Duration::from_secs(3600), ..options() };
    let (writer, join) = UsageWriter::start(repo, spool.path(), slow).unwrap();
    let mut rng = Rng::new(5);
    for _ in 0..75 {
        writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    }
    writer.shutdown().await;
    join.await.unwrap();
    // After shutdown, submit still keeps records: it spills to the spool.
    writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    assert_eq!(writer.stats().spooled + writer.stats().spilled, 76);
    drop(writer);

    down.store(false, Ordering::SeqCst);
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 76);
    assert!(spool_files(spool.path()).is_empty());
}

/// A full queue spills to the spool synchronously instead of dropping.
async fn full_queue_spills_instead_of_dropping(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let tiny = WriterOptions { queue_capacity: 4, batch_size: 4, ..options() };
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), tiny).unwrap();
    let mut rng = Rng::new(6);
    for _ in 0..200 {
        writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    }
    assert!(writer.stats().spilled > 0, "{:?}", writer.stats());
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 200);
    assert!(spool_files(spool.path()).is_empty());
}

/// Rows the database refuses for good are kept aside; the rest of their batch is written.
async fn refused_rows_are_kept_aside_and_do_not_block(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    let mut rng = Rng::new(7);
    for i in 0..30 {
        let key = if i == 13 { KeyId(555_555) } else { keys[0] };
        writer.submit(entry(&mut rng, org, key, request_id())).unwrap();
    }
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 29);
    assert_eq!(writer.stats().rejected, 1);
    let rejected = spool.path().join("rejected");
    let names: Vec<String> =
        std::fs::read_dir(&rejected).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let batch = names.iter().find(|n| n.ends_with(".jsonl")).unwrap();
    let kept = std::fs::read_to_string(rejected.join(batch)).unwrap();
    assert_eq!(kept.lines().count(), 1);
    assert!(kept.contains("555555"));
    let reason = names.iter().find(|n| n.ends_with(".reason.txt")).unwrap();
    assert!(!std::fs::read_to_string(rejected.join(reason)).unwrap().is_empty());
}

/// A batch half-written by a crash is salvaged: complete lines are kept, a torn one dropped.
async fn half_written_spool_batches_are_salvaged(store: &Store) {
    let (org, keys) = org_with_keys(store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(8);
    let a = entry(&mut rng, org, keys[0], request_id());
    let b = entry(&mut rng, org, keys[0], request_id());
    let mut text = format!("{}\n{}\n", serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    let torn = serde_json::to_string(&entry(&mut rng, org, keys[0], request_id())).unwrap();
    text.push_str(&torn[..torn.len() / 2]);
    std::fs::write(spool.path().join("00000000000000000001-0000000001-00000000.jsonl.tmp"), text).unwrap();
    // And a committed file that is not JSON at all: moved aside, not retried forever.
    std::fs::write(spool.path().join("00000000000000000002-0000000001-00000000.jsonl"), "garbage\n").unwrap();

    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(store, org).await, 2);
    assert!(spool_files(spool.path()).is_empty());
    assert!(spool.path().join("rejected").join("00000000000000000002-0000000001-00000000.jsonl").is_file());
}

store_suite!(
    a_full_batch_goes_out_before_the_flush_time,
    batches_reach_the_ledger_and_shutdown_drains,
    spool_while_unreachable_then_replay_exactly_once,
    outage_and_recovery_without_restart,
    shutdown_during_outage_spools_everything,
    full_queue_spills_instead_of_dropping,
    refused_rows_are_kept_aside_and_do_not_block,
    half_written_spool_batches_are_salvaged,
);

#[tokio::test]
async fn one_process_per_spool_folder() {
    let spool = tempfile::tempdir().unwrap();
    let store = unreachable_store().await;
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();
    let err = UsageWriter::start(store.clone(), spool.path(), options()).unwrap_err();
    assert!(matches!(err, StoreError::SpoolLocked(_)), "{err:?}");
    assert!(err.to_string().contains("another AIGate process"), "{err}");
    writer.shutdown().await;
    join.await.unwrap();
}

/// A real SQLite outage: another connection holds the write lock, so the
/// writer's transactions fail with SQLITE_BUSY; when the lock is released the
/// spooled rows arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lock_outage_is_ridden_out() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let options_store = aigate_store::StoreOptions {
        sqlite: aigate_store::SqliteSettings { busy_timeout: Duration::from_millis(50), max_connections: 2 },
        ..Default::default()
    };
    let store = Store::connect_with(None, &data, &options_store).await.unwrap();
    store.migrate().await.unwrap();
    let (org, keys) = org_with_keys(&store, "acme", 1).await;
    let spool = tempfile::tempdir().unwrap();
    let (writer, join) = UsageWriter::start(store.clone(), spool.path(), options()).unwrap();

    let url = format!("sqlite:{}", data.join("aigate.db").display());
    let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();

    let mut rng = Rng::new(9);
    for _ in 0..120 {
        writer.submit(entry(&mut rng, org, keys[0], request_id())).unwrap();
    }
    eventually("spooling while locked", async || writer.stats().spooled > 0).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();

    eventually("the rows after the lock", async || ledger_count(&store, org).await == 120).await;
    writer.shutdown().await;
    join.await.unwrap();
    assert_eq!(ledger_count(&store, org).await, 120);
    assert!(spool_files(spool.path()).is_empty());
}
