use super::*;
use crate::raft::state_machine::StateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload};
use std::sync::atomic::AtomicUsize;

fn tmp(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("herd-log-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Removes the data dir when a suite test is done with it.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder;
impl StoreBuilder<TypeConfig, LogStore, StateMachine, Cleanup> for Builder {
    async fn build(&self) -> StorageResult<(Cleanup, LogStore, StateMachine)> {
        let dir = tmp("suite");
        let log = LogStore::open(&dir).map_err(io)?;
        let sm = StateMachine::open(dir.clone()).map_err(io)?;
        Ok((Cleanup(dir), log, sm))
    }
}

/// openraft's own conformance tests for a log store (and state machine): purge, truncate,
/// limited reads, initial state and the rest, each on a fresh data dir.
#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Blank,
    }
}

#[tokio::test]
async fn vote_purge_point_and_entries_survive_reopen() {
    let dir = tmp("reopen");
    {
        let mut log = LogStore::open(&dir).expect("open");
        let vote = Vote::new(3, 1);
        log.save_vote(&vote).await.expect("vote");
        let raw = Wal::open(&dir.join(LOG_DIR), None, SEGMENT_BYTES)
            .expect("peek")
            .0;
        assert_eq!(raw.len(), 0);
        drop(raw);
        // Appends without the callback plumbing: straight to the WAL, then a sync.
        {
            let mut g = lock(&log.inner).expect("lock");
            for i in 1..=10u64 {
                let json = serde_json::to_vec(&blank(3, i)).expect("json");
                g.wal.append([(i, json.as_slice())], None).expect("append");
            }
            g.wal.take_unsynced().sync().expect("sync");
        }
        log.save_committed(Some(blank(3, 9).log_id))
            .await
            .expect("committed");
        // The marker rides with the next append.
        let json = serde_json::to_vec(&blank(3, 11)).expect("json");
        let marker = lock(&log.inner).expect("lock").committed_marker.take();
        lock(&log.inner)
            .expect("lock")
            .wal
            .append([(11, json.as_slice())], marker.as_deref())
            .expect("append");
        log.purge(blank(3, 4).log_id).await.expect("purge");
    }
    let mut log = LogStore::open(&dir).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(blank(3, 9).log_id)
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(blank(3, 4).log_id));
    assert_eq!(state.last_log_id, Some(blank(3, 11).log_id));
    let entries = log.try_get_log_entries(0..100).await.expect("read");
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (5..=11).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data dir written by herd before the WAL: the redb log moves over on first open.
#[tokio::test]
async fn a_redb_log_from_an_older_herd_is_migrated() {
    const LOGS: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("raft_log");
    const META: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("raft_meta");
    let dir = tmp("migrate");
    let old = dir.join("raft.redb");
    {
        let db = redb::Database::create(&old).expect("redb");
        let txn = db.begin_write().expect("txn");
        {
            let mut logs = txn.open_table(LOGS).expect("logs");
            for i in 6..=12u64 {
                let json = serde_json::to_vec(&blank(2, i)).expect("json");
                logs.insert(i, json.as_slice()).expect("insert");
            }
            let mut meta = txn.open_table(META).expect("meta");
            let vote = serde_json::to_vec(&Vote::<NodeId>::new(2, 1)).expect("json");
            meta.insert("vote", vote.as_slice()).expect("insert");
            let purged = serde_json::to_vec(&Some(blank(2, 5).log_id)).expect("json");
            meta.insert("last_purged", purged.as_slice())
                .expect("insert");
            let committed = serde_json::to_vec(&Some(blank(2, 11).log_id)).expect("json");
            meta.insert("committed", committed.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let mut log = LogStore::open(&dir).expect("open migrates");
    assert!(!old.exists());
    assert!(dir.join("raft.redb.migrated").exists());
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(blank(2, 11).log_id)
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(blank(2, 5).log_id));
    assert_eq!(state.last_log_id, Some(blank(2, 12).log_id));
    let entries = log.try_get_log_entries(6..=12).await.expect("read");
    assert_eq!(entries.len(), 7);
    drop(log);
    // A second open finds nothing left to move and the same log.
    let mut log = LogStore::open(&dir).expect("reopen");
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(blank(2, 12).log_id));
    let _ = std::fs::remove_dir_all(&dir);
}
