//! The usage spool: where usage records wait, durably, while the database
//! cannot take them.
//!
//! # Layout
//!
//! ```text
//! <spool_dir>/
//!   spool.lock                               held (flock) by the one process using this spool
//!   00001732000000000000-0000004242-00000007.jsonl   one committed batch: LedgerEntry JSON, one per line
//!   …                                        names sort oldest first (unix nanos, pid, sequence)
//!   rejected/<batch>.jsonl + .reason.txt     entries the database refuses for good (dead letters)
//! ```
//!
//! # Commit protocol: one file per batch, the rename is the commit marker
//!
//! A batch is written to `<name>.jsonl.tmp`, flushed and `fsync`ed, then
//! renamed to `<name>.jsonl` and the directory is `fsync`ed. So a `.jsonl`
//! file is always complete: after a crash it is either there whole or not at
//! all. A `.tmp` left by a crash in the middle of a write is salvaged when
//! the spool is next opened: its complete lines become a new batch (a torn
//! last line is dropped with a warning: it was never acknowledged as durable).
//!
//! Replay reads a file, writes its entries to the ledger, and only then
//! deletes it. A crash between the two replays the file again later, which is
//! harmless: the ledger skips request ids it already has. Hence every entry
//! reaches the ledger exactly once.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::StoreError;
use crate::records::LedgerEntry;

const LOCK_FILE: &str = "spool.lock";
const REJECTED_DIR: &str = "rejected";
const BATCH_EXT: &str = "jsonl";
const TMP_SUFFIX: &str = ".jsonl.tmp";

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// Held open for the life of the spool: the exclusive lock lives with it.
    _lock: File,
    seq: AtomicU64,
    /// Set whenever a batch is committed; cleared by a replay before it lists
    /// the folder, so a batch committed during a replay is never missed.
    dirty: AtomicBool,
}

/// Why a committed batch could not be read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    /// Not JSON lines of ledger entries: moved aside, never retried.
    Corrupt(String),
}

impl Spool {
    /// Opens (creating) the spool folder, takes its lock and salvages
    /// half-written batches of a crashed process.
    pub(crate) fn open(dir: &Path) -> Result<Spool, StoreError> {
        let io_err = |source| StoreError::Spool { path: dir.to_path_buf(), source };
        fs::create_dir_all(dir).map_err(io_err)?;
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE)).map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::SpoolLocked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let spool =
            Spool { dir: dir.to_path_buf(), _lock: lock, seq: AtomicU64::new(0), dirty: AtomicBool::new(false) };
        spool.salvage_partial_writes()?;
        if !spool.pending().map_err(io_err)?.is_empty() {
            spool.dirty.store(true, Ordering::SeqCst);
        }
        Ok(spool)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Clears the flag before a replay lists the folder.
    pub(crate) fn clear_dirty(&self) {
        self.dirty.store(false, Ordering::SeqCst);
    }

    pub(crate) fn encode(entries: &[LedgerEntry]) -> Result<Vec<u8>, std::io::Error> {
        let mut bytes = Vec::with_capacity(entries.len() * 512);
        for e in entries {
            serde_json::to_writer(&mut bytes, e).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        Ok(bytes)
    }

    /// Commits one batch (see the module docs). Blocking: fsyncs twice.
    pub(crate) fn write(&self, entries: &[LedgerEntry]) -> Result<PathBuf, StoreError> {
        let bytes = Spool::encode(entries).map_err(|source| StoreError::Spool { path: self.dir.clone(), source })?;
        self.write_encoded(&bytes)
    }

    /// Commits one batch already encoded by [`Spool::encode`].
    pub(crate) fn write_encoded(&self, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos().max(0);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let name = format!("{nanos:020}-{:010}-{seq:08}", std::process::id());
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let path = self.dir.join(format!("{name}.{BATCH_EXT}"));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Spool { path: tmp, source });
        }
        self.mark_dirty();
        Ok(path)
    }

    /// Committed batches, oldest first.
    pub(crate) fn pending(&self) -> Result<Vec<PathBuf>, std::io::Error> {
        let mut files = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let path = item?.path();
            if path.is_file() && path.extension().is_some_and(|e| e == BATCH_EXT) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    pub(crate) fn read(path: &Path) -> Result<Vec<LedgerEntry>, ReadError> {
        let file = File::open(path).map_err(ReadError::Io)?;
        let mut entries = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(ReadError::Io)?;
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str(&line).map_err(|e| ReadError::Corrupt(format!("line {}: {e}", n + 1)))?;
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Deletes a batch that reached the ledger.
    pub(crate) fn remove(&self, path: &Path) -> Result<(), std::io::Error> {
        fs::remove_file(path)?;
        sync_dir(&self.dir)
    }

    /// Moves an unreadable batch file aside, with the reason next to it.
    pub(crate) fn reject_file(&self, path: &Path, reason: &str) -> Result<PathBuf, std::io::Error> {
        let rejected = self.dir.join(REJECTED_DIR);
        fs::create_dir_all(&rejected)?;
        let name = path.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("unnamed.jsonl"));
        let target = rejected.join(&name);
        fs::rename(path, &target)?;
        write_reason(&rejected, &name, reason)?;
        sync_dir(&rejected)?;
        sync_dir(&self.dir)?;
        Ok(target)
    }

    /// Keeps entries the database refuses for good in `rejected/`, with the
    /// reason: an operator can fix and re-import them; nothing is dropped.
    pub(crate) fn reject_entries(&self, entries: &[LedgerEntry], reason: &str) -> Result<PathBuf, std::io::Error> {
        let rejected = self.dir.join(REJECTED_DIR);
        fs::create_dir_all(&rejected)?;
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos().max(0);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let name = PathBuf::from(format!("{nanos:020}-{:010}-{seq:08}.{BATCH_EXT}", std::process::id()));
        let target = rejected.join(&name);
        let mut file = OpenOptions::new().write(true).create_new(true).open(&target)?;
        file.write_all(&Spool::encode(entries)?)?;
        file.sync_all()?;
        write_reason(&rejected, &name, reason)?;
        sync_dir(&rejected)?;
        Ok(target)
    }

    /// Turns `.tmp` files of a crashed write into committed batches of their
    /// complete lines.
    fn salvage_partial_writes(&self) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Spool { path: self.dir.clone(), source };
        for item in fs::read_dir(&self.dir).map_err(io_err)? {
            let path = item.map_err(io_err)?.path();
            if !path.to_string_lossy().ends_with(TMP_SUFFIX) {
                continue;
            }
            let text = fs::read(&path).map_err(io_err)?;
            let mut entries = Vec::new();
            let mut torn = 0;
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<LedgerEntry>(line) {
                    Ok(e) => entries.push(e),
                    Err(_) => torn += 1,
                }
            }
            if !entries.is_empty() {
                self.write(&entries)?;
            }
            tracing::warn!(
                target: "aigate::usage",
                file = %path.display(),
                salvaged = entries.len(),
                torn_lines = torn,
                "salvaged a usage spool batch left half-written by a crash"
            );
            fs::remove_file(&path).map_err(io_err)?;
        }
        Ok(())
    }
}

fn write_reason(dir: &Path, batch: &Path, reason: &str) -> Result<(), std::io::Error> {
    let mut name = batch.as_os_str().to_owned();
    name.push(".reason.txt");
    let mut file = File::create(dir.join(name))?;
    writeln!(file, "{reason}")?;
    file.sync_all()
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), std::io::Error> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
