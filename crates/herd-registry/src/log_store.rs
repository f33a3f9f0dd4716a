//! The Raft log and vote, durable in redb.
//!
//! Why redb: a pure-Rust embedded B-tree with ACID transactions and an fsync per commit
//! (`Durability::Immediate`), no C toolchain (RocksDB) and a small compile cost.
//!
//! Group commit: `append` writes its entries in a transaction that is not synced
//! (`Durability::None`) and hands openraft's completion callback to the flusher thread.
//! The flusher takes every callback queued so far, makes them all durable with one synced
//! commit (redb persists the earlier unsynced commits with it), then reports them flushed.
//! openraft counts an entry as stored — for the leader's own vote in the quorum, and for
//! a follower's answer — only when its callback fires, so nothing is acknowledged before
//! its fsync, and 64 concurrent writers share one fsync instead of queueing for 64.
//!
//! Every operation runs on tokio's blocking pool, awaited before returning: openraft calls
//! the storage through `&mut self`, one call at a time, so the log stays ordered.

use crate::types::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";
const KEY_FLUSHES: &str = "flushes";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
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

impl LogStore {
    pub fn open(path: &Path) -> Result<LogStore, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOGS)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        let db = Arc::new(db);
        let (flusher, queue) = mpsc::channel();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("herd-log-flush".into())
            .spawn(move || flush_loop(&flush_db, &queue))
            .map_err(redb::Error::Io)?;
        Ok(LogStore {
            db,
            committed: Arc::new(AtomicU64::new(0)),
            flusher,
        })
    }

    async fn blocking<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StorageResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(io)?
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> StorageResult<Option<T>> {
        let txn = db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(db: &Database, key: &str, value: &T) -> StorageResult<()> {
        let bytes = serde_json::to_vec(value).map_err(io)?;
        let txn = db.begin_write().map_err(io)?;
        {
            let mut table = txn.open_table(META).map_err(io)?;
            table.insert(key, bytes.as_slice()).map_err(io)?;
        }
        txn.commit().map_err(io)
    }

    /// Bytes used by the log file, for /metrics and compaction tests.
    pub fn file_entries(&self) -> u64 {
        let Ok(txn) = self.db.begin_read() else {
            return 0;
        };
        txn.open_table(LOGS)
            .ok()
            .and_then(|t| t.len().ok())
            .unwrap_or(0)
    }
}

/// The flusher: one synced commit for every callback that is waiting when it starts. Runs
/// until the last LogStore clone is dropped.
fn flush_loop(db: &Database, queue: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    let mut flushes: u64 = 0;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        flushes += 1;
        let result = sync_commit(db, flushes);
        for callback in batch {
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

/// A synced commit: it makes every earlier unsynced commit durable too. It writes a
/// counter so the transaction is never empty.
fn sync_commit(db: &Database, flushes: u64) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(KEY_FLUSHES, flushes.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Bytes of stored entries (their JSON, about what goes on the wire) one AppendEntries
/// carries at most, unless a single entry is larger: openraft bounds each AppendEntries by
/// `heartbeat_interval`, and a follower's backlog of 1 MiB values would not fit in it.
pub const MAX_APPEND_BYTES: usize = 2 << 20;

impl RaftLogReader<TypeConfig> for LogStore {
    /// Entries from `start` while their stored size stays within [`MAX_APPEND_BYTES`];
    /// always at least one, so a single large entry still goes alone.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOGS).map_err(read_err)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for item in table.range(start..end).map_err(read_err)? {
                let (_, v) = item.map_err(read_err)?;
                let raw = v.value();
                if !out.is_empty() && bytes + raw.len() > MAX_APPEND_BYTES {
                    break;
                }
                bytes += raw.len();
                out.push(serde_json::from_slice(raw).map_err(read_err)?);
            }
            Ok(out)
        })
        .await
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(&s) => s,
            std::ops::Bound::Excluded(&s) => s + 1,
            std::ops::Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            std::ops::Bound::Included(&e) => Some(e),
            std::ops::Bound::Excluded(&e) => e.checked_sub(1),
            std::ops::Bound::Unbounded => None,
        };
        if matches!(range.end_bound(), std::ops::Bound::Excluded(&0)) {
            return Ok(Vec::new());
        }
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOGS).map_err(read_err)?;
            let iter = match end {
                Some(e) => table.range(start..=e),
                None => table.range(start..),
            }
            .map_err(read_err)?;
            let mut out = Vec::new();
            for item in iter {
                let (_, v) = item.map_err(read_err)?;
                out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        self.blocking(|db| {
            let last_purged: Option<LogId<NodeId>> = LogStore::get_meta(db, KEY_PURGED)?;
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOGS).map_err(read_err)?;
            let last = match table.last().map_err(read_err)? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> =
                        serde_json::from_slice(v.value()).map_err(read_err)?;
                    Some(e.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.blocking(move |db| LogStore::put_meta(db, KEY_VOTE, &vote))
            .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.blocking(|db| LogStore::get_meta(db, KEY_VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        // Not synced: the committed index only saves re-applying entries after a restart
        // (openraft recomputes it from a quorum otherwise); the next synced commit carries it.
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&committed).map_err(io)?;
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::None);
            {
                let mut table = txn.open_table(META).map_err(io)?;
                table.insert(KEY_COMMITTED, bytes.as_slice()).map_err(io)?;
            }
            txn.commit().map_err(io)
        })
        .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        self.blocking(|db| {
            Ok(LogStore::get_meta::<Option<LogId<NodeId>>>(db, KEY_COMMITTED)?.flatten())
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, serde_json::to_vec(&e).map_err(io)?));
        }
        let result = self
            .blocking(move |db| {
                let mut txn = db.begin_write().map_err(io)?;
                // Not synced here: the flusher syncs it, together with its neighbours.
                txn.set_durability(Durability::None);
                {
                    let mut table = txn.open_table(LOGS).map_err(io)?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice()).map_err(io)?;
                    }
                }
                txn.commit().map_err(io)
            })
            .await;
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
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            {
                let mut table = txn.open_table(LOGS).map_err(io)?;
                table.retain_in(log_id.index.., |_, _| false).map_err(io)?;
            }
            txn.commit().map_err(io)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&Some(log_id)).map_err(io)?;
            let mut txn = db.begin_write().map_err(io)?;
            // Not synced: openraft purges only what a durable snapshot covers, and a purge
            // lost in a crash just leaves entries that are purged again later. An fsync
            // here would stall Raft (it awaits the purge) for every compaction.
            txn.set_durability(Durability::None);
            {
                let mut meta = txn.open_table(META).map_err(io)?;
                meta.insert(KEY_PURGED, bytes.as_slice()).map_err(io)?;
                let mut table = txn.open_table(LOGS).map_err(io)?;
                table.retain_in(..=log_id.index, |_, _| false).map_err(io)?;
            }
            txn.commit().map_err(io)
        })
        .await
    }
}
