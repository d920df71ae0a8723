//! [`UsageWriter`]: takes usage records off the request path and gets every
//! one of them into the ledger, batched, surviving database outages.
//!
//! # Guarantees
//!
//! - **Never blocks the caller on the database.** [`UsageWriter::submit`] puts
//!   the entry in a bounded in-memory queue and returns.
//! - **Bounded memory.** When the queue is full (the database is much slower
//!   than traffic), `submit` writes the entry to the spool synchronously (one
//!   small file, one fsync, on the caller's thread) instead of dropping it or
//!   growing memory. That is the only case where `submit` touches the disk;
//!   the same happens for entries submitted after shutdown began.
//! - **Nothing is lost while the database is down.** A batch the database
//!   does not take (connection refused, pool timeout, server restarting,
//!   SQLite busy, ...) is committed to the durable spool (see
//!   [`crate::spool`] for the file format and commit protocol). While the
//!   database is down, new batches go straight to the spool; the database is
//!   retried with exponential backoff (`retry_initial` doubling up to
//!   `retry_max`). When it answers, spooled batches are written oldest first,
//!   before any newer batch.
//! - **Exactly once.** Replays and retries may deliver an entry twice; the
//!   ledger keeps one row per request id and counts it once in the rollups.
//! - **Restart.** [`UsageWriter::start`] replays whatever a previous process
//!   left in the spool (including salvaged half-written batches).
//! - **Shutdown drains.** [`UsageWriter::shutdown`] stops intake and writes
//!   every entry still in memory to the database or, if it is down, to the
//!   spool, before returning.
//! - **Poison rows do not block the rest.** If the database refuses a batch
//!   for good (a constraint: an unknown key id, say), the batch is retried
//!   row by row and the refused rows are kept in `<spool>/rejected/` with the
//!   reason, for an operator. They are not retried automatically (a row
//!   re-rejected during a later replay may appear there twice; its request
//!   id tells).
//!
//! The boundary of durability: an entry is safe once it is in the ledger or
//! in a committed spool file. Entries still in the in-memory queue are lost
//! if the process is killed without a graceful shutdown (SIGKILL, power
//! loss); a graceful shutdown (SIGTERM handled by calling `shutdown`) loses
//! nothing. The one case that can still lose entries is the database *and*
//! the spool's disk failing at the same time; every such entry is logged at
//! error level with its request id (and `submit` returns it to the caller).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::StoreError;
use crate::records::LedgerEntry;
use crate::repo::UsageRepo;
use crate::spool::{ReadError, Spool};

/// Tuning of a [`UsageWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rows per database transaction.
    pub batch_size: usize,
    /// Longest time an entry waits in memory for its batch to fill.
    pub flush_interval: Duration,
    /// Entries held in memory at most; beyond, `submit` spills to the spool.
    pub queue_capacity: usize,
    /// First wait before retrying a database that failed.
    pub retry_initial: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            batch_size: 256,
            flush_interval: Duration::from_millis(200),
            queue_capacity: 10_000,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// Counters since start, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// New ledger rows written (from memory or the spool).
    pub inserted: u64,
    /// Entries skipped because their request id was already in the ledger.
    pub duplicates: u64,
    /// Entries committed to the spool by the background task.
    pub spooled: u64,
    /// Entries `submit` spilled to the spool itself (queue full or closed).
    pub spilled: u64,
    /// Spool files written to the ledger and removed.
    pub replayed_files: u64,
    /// Entries the database refused for good, kept in `rejected/`.
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Counters {
    inserted: AtomicU64,
    duplicates: AtomicU64,
    spooled: AtomicU64,
    spilled: AtomicU64,
    replayed_files: AtomicU64,
    rejected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            inserted: self.inserted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            spilled: self.spilled.load(Ordering::Relaxed),
            replayed_files: self.replayed_files.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// `submit` could neither queue nor spool the entry (the disk failed): the
/// entry is handed back so the caller can at least log it.
#[derive(Debug, thiserror::Error)]
#[error("usage record {} could not be queued nor written to the spool: {source}", entry.request_id)]
pub struct SubmitError {
    pub entry: Box<LedgerEntry>,
    pub source: StoreError,
}

/// Handle to the background usage writer. Cheap to clone; every clone feeds
/// the same queue.
#[derive(Debug, Clone)]
pub struct UsageWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<LedgerEntry>,
    /// Told when a batch's worth of entries is queued: the task does not watch the queue while
    /// a batch waits for its flush time (`Task::run`).
    batch_ready: Arc<Notify>,
    batch_size: usize,
    spool: Arc<Spool>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl UsageWriter {
    /// Opens the spool in `spool_dir` (creating it; one process per folder,
    /// enforced by a lock file) and starts the background task on the current
    /// tokio runtime (outside one: [`StoreError::Invalid`]). The task first
    /// replays batches a previous process left in the spool. The join handle
    /// ends after [`UsageWriter::shutdown`], or once every handle is dropped
    /// and the queue is drained.
    pub fn start<R>(
        repo: R,
        spool_dir: &Path,
        options: WriterOptions,
    ) -> Result<(UsageWriter, JoinHandle<()>), StoreError>
    where
        R: UsageRepo + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::invalid("usage writer start", format!("needs a tokio runtime: {e}")))?;
        let spool = Arc::new(Spool::open(spool_dir)?);
        let options = WriterOptions {
            batch_size: options.batch_size.max(1),
            queue_capacity: options.queue_capacity.max(1),
            ..options
        };
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let batch_ready = Arc::new(Notify::new());
        let batch_size = options.batch_size;
        let task = Task {
            repo,
            spool: spool.clone(),
            rx,
            batch_ready: batch_ready.clone(),
            shutdown: shutdown_rx,
            done: done_tx,
            counters: counters.clone(),
            healthy: true,
            next_retry: Instant::now(),
            backoff: Duration::ZERO,
            options,
        };
        let join = runtime.spawn(task.run());
        let shared = Shared { tx, batch_ready, batch_size, spool, counters, shutdown: shutdown_tx, done: done_rx };
        Ok((UsageWriter { shared: Arc::new(shared) }, join))
    }

    /// Hands an entry to the writer without waiting for the database. See the
    /// module docs: queued in memory, or spilled to the spool synchronously
    /// when the queue is full or the writer is shutting down. Errors only if
    /// the spool's disk failed too.
    /// Queues the entry if the in-memory queue has room, without any I/O;
    /// hands it back when the queue is full or the writer stopped, so an
    /// async caller can [`UsageWriter::submit`] it from a blocking thread.
    #[allow(clippy::result_large_err, reason = "the entry goes back to the caller as it came, not boxed")]
    pub fn try_submit(&self, entry: LedgerEntry) -> Result<(), LedgerEntry> {
        match self.shared.tx.try_send(entry) {
            Ok(()) => {
                self.queued();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => Err(e),
        }
    }

    /// After an entry was queued: wakes the task when a whole batch waits.
    fn queued(&self) {
        if self.queue_len() >= self.shared.batch_size {
            self.shared.batch_ready.notify_one();
        }
    }

    pub fn submit(&self, entry: LedgerEntry) -> Result<(), SubmitError> {
        let entry = match self.shared.tx.try_send(entry) {
            Ok(()) => {
                self.queued();
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => e,
        };
        match self.shared.spool.write(std::slice::from_ref(&entry)) {
            Ok(_) => {
                let spilled = self.shared.counters.spilled.fetch_add(1, Ordering::Relaxed);
                if spilled.is_multiple_of(1000) {
                    tracing::warn!(
                        target: "aigate::usage",
                        spool = %self.shared.spool.dir().display(),
                        spilled_so_far = spilled + 1,
                        "usage queue full or closed: records are written to the spool directly"
                    );
                }
                Ok(())
            }
            Err(source) => {
                tracing::error!(
                    target: "aigate::usage",
                    request_id = %entry.request_id,
                    error = %source,
                    "usage record could not be queued nor spooled"
                );
                Err(SubmitError { entry: Box::new(entry), source })
            }
        }
    }

    /// Stops intake and waits until every entry held in memory is in the
    /// ledger or in the spool. Further `submit`s spill to the spool. Safe to
    /// call from any clone, more than once.
    pub async fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        let mut done = self.shared.done.clone();
        // An error means the task is gone (it panicked): nothing more to wait for.
        let _ = done.wait_for(|d| *d).await;
    }

    /// Entries waiting in the in-memory queue.
    pub fn queue_len(&self) -> usize {
        self.shared.tx.max_capacity().saturating_sub(self.shared.tx.capacity())
    }

    /// Batches in the spool waiting for the database (reads the spool folder).
    pub fn spool_files(&self) -> usize {
        self.shared.spool.pending().map_or(0, |files| files.len())
    }

    pub fn stats(&self) -> WriterStats {
        self.shared.counters.snapshot()
    }

    /// Whether batches are waiting in the spool (the database was down).
    /// Reads the spool folder: for health checks and tests, not hot paths.
    pub fn spool_pending(&self) -> bool {
        self.shared.spool.is_dirty() || self.shared.spool.pending().map_or(true, |files| !files.is_empty())
    }
}

struct Task<R> {
    repo: R,
    spool: Arc<Spool>,
    rx: mpsc::Receiver<LedgerEntry>,
    batch_ready: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    done: watch::Sender<bool>,
    counters: Arc<Counters>,
    options: WriterOptions,
    /// Whether the last database attempt succeeded.
    healthy: bool,
    /// After a failure (database or spool): no retry before this instant.
    /// In the past while all is well.
    next_retry: Instant,
    backoff: Duration,
}

impl<R: UsageRepo> Task<R> {
    async fn run(mut self) {
        let mut buf: Vec<LedgerEntry> = Vec::with_capacity(self.options.batch_size);
        let mut flush_at: Option<Instant> = None;
        loop {
            let mut wake = flush_at;
            if self.spool.is_dirty() {
                // In the past unless a database or spool failure set a backoff.
                let retry_at = self.next_retry;
                wake = Some(wake.map_or(retry_at, |w| w.min(retry_at)));
            }
            let room = self.options.batch_size.saturating_sub(buf.len());
            // While a batch waits for its flush time the queue is not watched, so a submit
            // wakes nobody: one wake-up per batch, not one per request (each is a futex wake of
            // another thread). A whole batch queued wakes the task early (`batch_ready`).
            let waiting = flush_at.is_some();
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                n = self.rx.recv_many(&mut buf, room), if room > 0 && !waiting => {
                    if n == 0 {
                        break; // every handle dropped and the queue is empty
                    }
                    flush_at.get_or_insert_with(|| Instant::now() + self.options.flush_interval);
                }
                () = self.batch_ready.notified(), if waiting => {}
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            // What queued meanwhile, up to a batch.
            while buf.len() < self.options.batch_size {
                match self.rx.try_recv() {
                    Ok(entry) => buf.push(entry),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            let full = buf.len() >= self.options.batch_size;
            if !buf.is_empty() && (full || flush_at.is_some_and(|t| now >= t)) {
                let batch = std::mem::take(&mut buf);
                flush_at = None;
                if let Err(batch) = self.deliver(batch).await {
                    // Neither the database nor the disk took it: hold it and try
                    // again later; the full buffer stops intake meanwhile.
                    buf = batch;
                    flush_at = Some(self.next_retry.max(now + self.options.flush_interval));
                }
            }
            if self.spool.is_dirty() && Instant::now() >= self.next_retry {
                self.replay_spool().await;
            }
        }
        self.finish(buf).await;
    }

    /// Writes a batch to the database (after older spooled batches), or to
    /// the spool if the database is down. `Err` hands the batch back when
    /// neither worked.
    async fn deliver(&mut self, batch: Vec<LedgerEntry>) -> Result<(), Vec<LedgerEntry>> {
        let mut batch = batch;
        if self.healthy || Instant::now() >= self.next_retry {
            // Oldest first: spooled batches go before this one (unless the
            // spool itself is failing and backing off).
            if self.spool.is_dirty() && Instant::now() >= self.next_retry {
                self.replay_spool().await;
            }
            if self.healthy || !self.spool.is_dirty() {
                match self.write_db(batch).await {
                    Ok(()) => return Ok(()),
                    Err(rest) => batch = rest,
                }
            }
        }
        self.write_spool(batch).await
    }

    /// One database attempt for `batch`. `Err` carries the entries still to
    /// be stored after a retryable failure (the task is then unhealthy).
    async fn write_db(&mut self, batch: Vec<LedgerEntry>) -> Result<(), Vec<LedgerEntry>> {
        match self.repo.insert_usage(&batch).await {
            Ok(outcome) => {
                self.counters.inserted.fetch_add(outcome.inserted, Ordering::Relaxed);
                self.counters.duplicates.fetch_add(outcome.duplicates, Ordering::Relaxed);
                self.on_success();
                Ok(())
            }
            Err(e) if e.is_retryable() => {
                self.on_failure(&e);
                Err(batch)
            }
            Err(e) => {
                tracing::warn!(
                    target: "aigate::usage",
                    error = %e,
                    rows = batch.len(),
                    "the database refused a usage batch; writing it row by row"
                );
                let mut rows = batch.into_iter();
                while let Some(entry) = rows.next() {
                    match self.repo.insert_usage(std::slice::from_ref(&entry)).await {
                        Ok(outcome) => {
                            self.counters.inserted.fetch_add(outcome.inserted, Ordering::Relaxed);
                            self.counters.duplicates.fetch_add(outcome.duplicates, Ordering::Relaxed);
                        }
                        Err(e) if e.is_retryable() => {
                            self.on_failure(&e);
                            let mut rest = vec![entry];
                            rest.extend(rows);
                            return Err(rest);
                        }
                        Err(e) => {
                            if let Err(rest) = self.reject(entry, &e).await {
                                let mut rest = vec![rest];
                                rest.extend(rows);
                                return Err(rest);
                            }
                        }
                    }
                }
                self.on_success();
                Ok(())
            }
        }
    }

    async fn reject(&mut self, entry: LedgerEntry, error: &StoreError) -> Result<(), LedgerEntry> {
        let spool = self.spool.clone();
        let reason = error.to_string();
        let entries = vec![entry];
        let (entries, result) = tokio::task::spawn_blocking(move || {
            let r = spool.reject_entries(&entries, &reason);
            (entries, r)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), Err(std::io::Error::other(e.to_string()))));
        match result {
            Ok(path) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    target: "aigate::usage",
                    request_id = %entries.first().map_or("", |e| e.request_id.as_str()),
                    error = %error,
                    kept_in = %path.display(),
                    "the database refuses this usage record; kept aside for an operator"
                );
                Ok(())
            }
            Err(io) => {
                tracing::error!(target: "aigate::usage", error = %io, "cannot keep a refused usage record aside");
                self.on_failure(&StoreError::Spool { path: self.spool.dir().to_path_buf(), source: io });
                entries.into_iter().next().map_or(Ok(()), Err)
            }
        }
    }

    /// Commits a batch to the spool off the async threads.
    async fn write_spool(&mut self, batch: Vec<LedgerEntry>) -> Result<(), Vec<LedgerEntry>> {
        if batch.is_empty() {
            return Ok(());
        }
        let bytes = match Spool::encode(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(target: "aigate::usage", error = %e, "cannot encode usage records for the spool");
                return Err(batch);
            }
        };
        let spool = self.spool.clone();
        let result = tokio::task::spawn_blocking(move || spool.write_encoded(&bytes)).await.unwrap_or_else(|e| {
            Err(StoreError::Spool {
                path: self.spool.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        match result {
            Ok(_) => {
                self.counters.spooled.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    target: "aigate::usage",
                    error = %e,
                    rows = batch.len(),
                    "usage records can reach neither the database nor the spool; holding them in memory"
                );
                Err(batch)
            }
        }
    }

    /// Writes spooled batches to the database, oldest first, deleting each
    /// once written. Stops at the first retryable failure.
    async fn replay_spool(&mut self) {
        self.spool.clear_dirty();
        let spool = self.spool.clone();
        let files = match tokio::task::spawn_blocking(move || spool.pending()).await {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => return self.spool_failed("list", e),
            Err(e) => return self.spool_failed("list", std::io::Error::other(e.to_string())),
        };
        for path in files {
            let p = path.clone();
            let entries = match tokio::task::spawn_blocking(move || Spool::read(&p)).await {
                Ok(Ok(entries)) => entries,
                Ok(Err(ReadError::Corrupt(reason))) => {
                    let spool = self.spool.clone();
                    let p = path.clone();
                    let moved = tokio::task::spawn_blocking(move || spool.reject_file(&p, &reason)).await;
                    match moved {
                        Ok(Ok(target)) => tracing::error!(
                            target: "aigate::usage",
                            file = %target.display(),
                            "unreadable usage spool file moved aside"
                        ),
                        Ok(Err(e)) => return self.spool_failed("move aside", e),
                        Err(e) => return self.spool_failed("move aside", std::io::Error::other(e.to_string())),
                    }
                    continue;
                }
                Ok(Err(ReadError::Io(e))) => return self.spool_failed("read", e),
                Err(e) => return self.spool_failed("read", std::io::Error::other(e.to_string())),
            };
            let rows = entries.len();
            if self.write_db(entries).await.is_err() {
                // The file stays; rows already written are skipped next time.
                self.spool.mark_dirty();
                return;
            }
            let spool = self.spool.clone();
            let p = path.clone();
            match tokio::task::spawn_blocking(move || spool.remove(&p)).await {
                Ok(Ok(())) => {
                    self.counters.replayed_files.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "aigate::usage", file = %path.display(), rows, "spooled usage written");
                }
                Ok(Err(e)) => return self.spool_failed("delete", e),
                Err(e) => return self.spool_failed("delete", std::io::Error::other(e.to_string())),
            }
        }
    }

    fn spool_failed(&mut self, action: &str, e: std::io::Error) {
        tracing::error!(
            target: "aigate::usage",
            spool = %self.spool.dir().display(),
            error = %e,
            "cannot {action} a usage spool file; will retry"
        );
        self.spool.mark_dirty();
        self.backoff_more();
    }

    fn on_success(&mut self) {
        if !self.healthy {
            tracing::info!(target: "aigate::usage", "the database takes usage records again");
        }
        self.healthy = true;
        self.backoff = Duration::ZERO;
    }

    fn on_failure(&mut self, e: &StoreError) {
        if self.healthy {
            tracing::warn!(
                target: "aigate::usage",
                error = %e,
                spool = %self.spool.dir().display(),
                "the database does not take usage records; keeping them in the spool until it does"
            );
        } else {
            tracing::debug!(target: "aigate::usage", error = %e, "usage database still unavailable");
        }
        self.healthy = false;
        self.backoff_more();
    }

    fn backoff_more(&mut self) {
        self.backoff = if self.backoff.is_zero() {
            self.options.retry_initial
        } else {
            (self.backoff * 2).min(self.options.retry_max)
        };
        self.next_retry = Instant::now() + self.backoff;
    }

    /// Shutdown: close intake, then everything in memory goes to the database
    /// (one attempt, unless it is known to be down) or to the spool.
    async fn finish(mut self, mut buf: Vec<LedgerEntry>) {
        self.rx.close();
        while let Ok(entry) = self.rx.try_recv() {
            buf.push(entry);
        }
        let total = buf.len();
        let mut lost = 0;
        let mut rest = buf.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<LedgerEntry> = rest.by_ref().take(self.options.batch_size).collect();
            if let Err(batch) = self.deliver(batch).await {
                for e in &batch {
                    tracing::error!(
                        target: "aigate::usage",
                        request_id = %e.request_id,
                        "usage record lost at shutdown: neither the database nor the spool took it"
                    );
                }
                lost += batch.len();
            }
        }
        if self.healthy && self.spool.is_dirty() {
            self.replay_spool().await;
        }
        tracing::info!(
            target: "aigate::usage",
            drained = total - lost,
            spool_pending = self.spool.is_dirty(),
            "usage writer stopped"
        );
        let _ = self.done.send(true);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
