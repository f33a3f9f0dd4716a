//! The Raft log and vote, durable on disk: entries in our segmented write-ahead log
//! (`wal.rs`, under `raft-log/`), the vote and the purge point in `raft-log/meta.json`.
//!
//! Group commit: `append` writes its entries to the page cache and hands openraft's
//! completion callback to the flusher thread. The flusher takes every callback queued so
//! far, fsyncs the segment files written before it looked, then reports them all flushed.
//! openraft counts an entry as stored — for the leader's own vote in the quorum, and for a
//! follower's answer — only when its callback fires, so nothing is acknowledged before its
//! fsync, and 64 concurrent writers share one fsync instead of queueing for 64.
//!
//! Small appends and reads run on the calling task: they are one `pwrite` or `pread` to
//! the page cache, a few microseconds, where a hop to the blocking pool and back costs
//! more and sits in every write's latency. Large ones, and everything that fsyncs (vote,
//! purge, truncate), run on the blocking pool. openraft calls the storage through
//! `&mut self`, one call at a time, so the log stays ordered.
//!
//! The committed log id is only a hint (openraft recomputes it from a quorum): it rides
//! along as a WAL marker with the next append instead of costing a write of its own.

use crate::raft::types::{NodeId, TypeConfig};
use crate::raft::wal::{self, Wal, WalError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

const LOG_DIR: &str = "raft-log";
const META_FILE: &str = "meta.json";
/// Segment size: big enough that rotation is rare, small enough that a purge frees disk
/// soon after a snapshot.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Appends and reads up to this size run on the calling task.
const INLINE_BYTES: usize = 64 << 10;

/// Bytes of stored entries (their JSON, about what goes on the wire) one AppendEntries
/// carries at most, unless a single entry is larger: openraft bounds each AppendEntries by
/// `heartbeat_interval`, and a follower's backlog of 1 MiB values would not fit in it.
pub const MAX_APPEND_BYTES: usize = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("migrating the log from {path}: {reason}")]
    Migrate { path: PathBuf, reason: String },
}

/// What must survive a crash besides the entries.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    wal: Wal,
    meta: Meta,
    /// The committed log id as JSON, to be written as a marker with the next append.
    committed_marker: Option<Vec<u8>>,
    /// The committed log id found on open.
    recovered_committed: Option<LogId<NodeId>>,
}

#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    dir: PathBuf,
    /// Highest committed index openraft reported, for /status (openraft's metrics omit it).
    pub committed: Arc<AtomicU64>,
    /// Callbacks of appended-but-unsynced entries, in append order, for the flusher.
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io<E: std::fmt::Display>(e: E) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::Logs,
        ErrorVerb::Write,
        std::io::Error::other(e.to_string()),
    )
}

fn read_err<E: std::fmt::Display>(e: E) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::Logs,
        ErrorVerb::Read,
        std::io::Error::other(e.to_string()),
    )
}

fn lock(inner: &Mutex<Inner>) -> StorageResult<MutexGuard<'_, Inner>> {
    inner.lock().map_err(|_| io("log store lock poisoned"))
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogStoreError + '_ {
    move |e| LogStoreError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `meta.json` durably: a temporary file, fsynced, renamed, the directory fsynced.
fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    let tmp = dir.join("meta.json.tmp");
    let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut &f, &bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(META_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn read_meta(dir: &Path) -> Result<Option<Meta>, LogStoreError> {
    let path = dir.join(META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LogStoreError::File {
                path,
                reason: format!("not valid JSON ({e}); restore it from a backup"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(&path)(e)),
    }
}

impl LogStore {
    /// Opens the log under `data_dir`, moving a log kept by an older herd in
    /// `raft.redb` over first.
    pub fn open(data_dir: &Path) -> Result<LogStore, LogStoreError> {
        let dir = data_dir.join(LOG_DIR);
        std::fs::create_dir_all(&dir).map_err(file_err(&dir))?;
        let old = data_dir.join("raft.redb");
        if old.exists() {
            migrate::from_redb(&old, &dir)?;
        }
        let meta = read_meta(&dir)?.unwrap_or_default();
        let (wal, recovered) = Wal::open(&dir, meta.last_purged.map(|l| l.index), SEGMENT_BYTES)?;
        if recovered.dropped_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                bytes = recovered.dropped_bytes,
                "the log ended in a record that was never completely written (a crash mid-write); \
                 it and what followed were removed: none of it had been acknowledged"
            );
        }
        let recovered_committed = recovered
            .marker
            .and_then(|m| serde_json::from_slice::<Option<LogId<NodeId>>>(&m).ok())
            .flatten()
            // A hint: never past what this log holds.
            .filter(|c| wal.last_index().is_some_and(|last| c.index <= last));
        let inner = Arc::new(Mutex::new(Inner {
            wal,
            meta,
            committed_marker: None,
            recovered_committed,
        }));
        let (flusher, queue) = mpsc::channel();
        let flush_inner = inner.clone();
        std::thread::Builder::new()
            .name("herd-log-flush".into())
            .spawn(move || flush_loop(&flush_inner, &queue))
            .map_err(file_err(&dir))?;
        Ok(LogStore {
            inner,
            dir,
            committed: Arc::new(AtomicU64::new(0)),
            flusher,
        })
    }

    /// Entries held on disk, for /status and compaction tests.
    pub fn file_entries(&self) -> u64 {
        self.inner.lock().map_or(0, |g| g.wal.len())
    }

    /// Entries `start..end` (as far as the log holds them), stopping before `max_bytes`
    /// of stored JSON unless it is the first.
    async fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let pieces = lock(&self.inner)?.wal.plan_read(start, end, max_bytes);
        let raw = if wal::planned_bytes(&pieces) <= INLINE_BYTES {
            wal::read_pieces(&pieces).map_err(read_err)?
        } else {
            tokio::task::spawn_blocking(move || wal::read_pieces(&pieces))
                .await
                .map_err(read_err)?
                .map_err(read_err)?
        };
        raw.iter()
            .map(|bytes| serde_json::from_slice(bytes).map_err(read_err))
            .collect()
    }

    /// Runs `f` on the blocking pool: it fsyncs.
    async fn blocking<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Mutex<Inner>, &Path) -> StorageResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || f(&inner, &dir))
            .await
            .map_err(io)?
    }
}

/// The flusher: one round of fsyncs for every callback that is waiting when it starts.
/// Runs until the last LogStore clone is dropped.
fn flush_loop(inner: &Mutex<Inner>, queue: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        // Taken after the callbacks: every append they stand for has written its bytes.
        let result = match inner.lock() {
            Ok(mut g) => Ok(g.wal.take_unsynced()),
            Err(_) => Err(std::io::Error::other("log store lock poisoned")),
        }
        .and_then(|unsynced| unsynced.sync());
        for callback in batch {
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    /// Entries from `start` while their stored size stays within [`MAX_APPEND_BYTES`];
    /// always at least one, so a single large entry still goes alone.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.read(start, end, MAX_APPEND_BYTES).await
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        self.read(start, end, usize::MAX).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let (last_purged, last) = {
            let g = lock(&self.inner)?;
            (g.meta.last_purged, g.wal.last_index())
        };
        let last_log_id = match last {
            Some(i) => self
                .read(i, i + 1, usize::MAX)
                .await?
                .pop()
                .map(|e| e.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.blocking(move |inner, dir| {
            // Only RaftCore writes the meta, one call at a time: the copy stays current.
            let meta = {
                let mut g = lock(inner)?;
                g.meta.vote = Some(vote);
                g.meta.clone()
            };
            write_meta(dir, &meta).map_err(io)
        })
        .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(lock(&self.inner)?.meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        let marker = serde_json::to_vec(&committed).map_err(io)?;
        lock(&self.inner)?.committed_marker = Some(marker);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(lock(&self.inner)?.recovered_committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut bytes = 0usize;
        for e in entries {
            let json = serde_json::to_vec(&e).map_err(io)?;
            bytes += json.len();
            encoded.push((e.log_id.index, json));
        }
        let inner = self.inner.clone();
        let write = move || -> StorageResult<()> {
            let mut g = lock(&inner)?;
            let marker = g.committed_marker.take();
            g.wal
                .append(
                    encoded.iter().map(|(i, b)| (*i, b.as_slice())),
                    marker.as_deref(),
                )
                .map_err(io)
        };
        let result = if bytes <= INLINE_BYTES {
            write()
        } else {
            tokio::task::spawn_blocking(write).await.map_err(io)?
        };
        match &result {
            Ok(()) => {
                if let Err(mpsc::SendError(callback)) = self.flusher.send(callback) {
                    callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
                }
            }
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |inner, _| lock(inner)?.wal.truncate(log_id.index).map_err(io))
            .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |inner, dir| {
            let meta = {
                let mut g = lock(inner)?;
                g.meta.last_purged = Some(log_id);
                g.meta.clone()
            };
            // The purge point is durable before any segment goes: a log that starts past
            // the recorded point would read as a hole.
            write_meta(dir, &meta).map_err(io)?;
            lock(inner)?.wal.purge(log_id.index).map_err(io)
        })
        .await
    }
}

/// herd before the WAL kept the log in a redb file; its contents move over once.
mod migrate {
    use super::{read_meta, write_meta, LogStoreError, Meta, SEGMENT_BYTES};
    use crate::raft::types::NodeId;
    use crate::raft::wal::Wal;
    use openraft::{LogId, Vote};
    use redb::{Database, ReadableTable, TableDefinition};
    use std::path::Path;

    const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
    const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

    /// Copies every entry, the vote and the purge point from `old` into `dir`, then renames
    /// `old` to `raft.redb.migrated`. `meta.json` is written last, so a move that stopped
    /// half way is redone from the start.
    pub fn from_redb(old: &Path, dir: &Path) -> Result<(), LogStoreError> {
        let fail = |reason: String| LogStoreError::Migrate {
            path: old.to_path_buf(),
            reason,
        };
        if read_meta(dir)?.is_none() {
            for item in std::fs::read_dir(dir).map_err(|e| fail(e.to_string()))? {
                let path = item.map_err(|e| fail(e.to_string()))?.path();
                if path.extension().is_some_and(|x| x == "wal") {
                    std::fs::remove_file(&path).map_err(|e| fail(e.to_string()))?;
                }
            }
            let db = Database::open(old).map_err(|e| fail(e.to_string()))?;
            let txn = db.begin_read().map_err(|e| fail(e.to_string()))?;
            let meta_table = txn.open_table(META).map_err(|e| fail(e.to_string()))?;
            let get = |key: &str| -> Result<Option<Vec<u8>>, LogStoreError> {
                Ok(meta_table
                    .get(key)
                    .map_err(|e| fail(e.to_string()))?
                    .map(|v| v.value().to_vec()))
            };
            fn parse<T: serde::de::DeserializeOwned>(
                bytes: Option<Vec<u8>>,
            ) -> Result<Option<T>, serde_json::Error> {
                bytes.map(|b| serde_json::from_slice(&b)).transpose()
            }
            let vote: Option<Vote<NodeId>> =
                parse(get("vote")?).map_err(|e| fail(format!("vote: {e}")))?;
            let last_purged: Option<Option<LogId<NodeId>>> =
                parse(get("last_purged")?).map_err(|e| fail(format!("last_purged: {e}")))?;
            let last_purged = last_purged.flatten();
            let committed = get("committed")?;
            let (mut wal, _) = Wal::open(dir, last_purged.map(|l| l.index), SEGMENT_BYTES)?;
            let logs = txn.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
            let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
            for item in logs.iter().map_err(|e| fail(e.to_string()))? {
                let (k, v) = item.map_err(|e| fail(e.to_string()))?;
                batch.push((k.value(), v.value().to_vec()));
                if batch.len() == 1024 {
                    wal.append(batch.iter().map(|(i, b)| (*i, b.as_slice())), None)?;
                    batch.clear();
                }
            }
            wal.append(
                batch.iter().map(|(i, b)| (*i, b.as_slice())),
                committed.as_deref(),
            )?;
            wal.take_unsynced()
                .sync()
                .map_err(|e| fail(e.to_string()))?;
            write_meta(dir, &Meta { vote, last_purged }).map_err(|e| fail(e.to_string()))?;
            tracing::info!(
                from = %old.display(),
                to = %dir.display(),
                entries = wal.len(),
                "moved the Raft log to the write-ahead log"
            );
        }
        let done = old.with_extension("redb.migrated");
        std::fs::rename(old, &done).map_err(|e| fail(e.to_string()))?;
        if let Some(parent) = old.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
