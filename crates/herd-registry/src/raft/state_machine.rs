//! The replicated state machine as openraft sees it: herd-registry-core's `Store` in
//! memory, plus snapshots on disk.
//!
//! Durability contract: the Raft log (redb, fsync per batch) is the source of truth. The
//! store is rebuilt at start from the last snapshot file plus the log entries after it, so
//! applying an entry needs no fsync of its own (etcd's WAL + backend split). A snapshot is
//! written to a temporary file, fsynced and renamed, so a crash leaves the old one or the
//! new one, never half of either.

use crate::raft::types::{Node, NodeId, Reply, TypeConfig};
use herd_registry_core::{Event, Store};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn sm_err<E: std::fmt::Display>(e: E) -> StorageError<NodeId> {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        ErrorVerb::Write,
        std::io::Error::other(e.to_string()),
    )
}

/// What the API reads: the store and the Raft bookkeeping beside it.
pub struct Applied {
    pub store: Store,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
}

/// Shared between the state machine (writer, inside openraft) and the API (readers).
pub struct SharedState {
    pub applied: RwLock<Applied>,
    /// Every applied batch of events, in order, for live watchers.
    pub events: broadcast::Sender<Arc<Vec<Event>>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Node>,
    #[serde(with = "herd_registry_core::b64::serde_bytes")]
    store: Vec<u8>,
}

pub struct StateMachine {
    pub shared: Arc<SharedState>,
    dir: PathBuf,
    current: Option<SnapshotFile>,
}

impl StateMachine {
    /// Load the last snapshot from `dir`, if any.
    pub fn open(dir: PathBuf) -> Result<StateMachine, String> {
        let path = dir.join("snapshot.json");
        let (applied, current) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: corrupt snapshot: {e}", path.display()))?;
                let store = Store::from_snapshot(&file.store)
                    .map_err(|e| format!("{}: corrupt snapshot: {e}", path.display()))?;
                let applied = Applied {
                    store,
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                };
                (applied, Some(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Applied {
                    store: Store::new(),
                    last_applied: None,
                    membership: StoredMembership::default(),
                },
                None,
            ),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let (events, _) = broadcast::channel(4096);
        Ok(StateMachine {
            shared: Arc::new(SharedState {
                applied: RwLock::new(applied),
                events,
            }),
            dir,
            current,
        })
    }

    fn write_snapshot(&self, file: &SnapshotFile) -> StorageResult<()> {
        let bytes = serde_json::to_vec(file).map_err(sm_err)?;
        write_snapshot_bytes(&self.dir, &bytes)
    }
}

/// Writes a snapshot durably: a temporary file, fsynced, renamed over the old one, and the
/// directory fsynced, so a crash leaves the old snapshot or the new one, never half of one.
fn write_snapshot_bytes(dir: &std::path::Path, bytes: &[u8]) -> StorageResult<()> {
    let tmp = dir.join("snapshot.json.tmp");
    let dst = dir.join("snapshot.json");
    let mut f = std::fs::File::create(&tmp).map_err(sm_err)?;
    f.write_all(bytes).map_err(sm_err)?;
    f.sync_all().map_err(sm_err)?;
    std::fs::rename(&tmp, &dst).map_err(sm_err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A consistent copy of the state, taken under the read lock. Applies wait only for the
/// copy: serialising it (tens of milliseconds for 10,000 keys and their history, which
/// every write waited for when it happened under the lock) is done by the caller.
fn copy_state(shared: &SharedState) -> StorageResult<(SnapshotMeta<NodeId, Node>, Store)> {
    let applied = shared
        .applied
        .read()
        .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
    let last = applied.last_applied;
    let meta = SnapshotMeta {
        last_log_id: last,
        last_membership: applied.membership.clone(),
        snapshot_id: match last {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id.term,
                l.index,
                applied.store.revision()
            ),
            None => "empty".to_string(),
        },
    };
    Ok((meta, applied.store.clone()))
}

pub struct Builder(StateMachineSnapshotSource);

struct StateMachineSnapshotSource {
    shared: Arc<SharedState>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        let (meta, store) = copy_state(&self.0.shared)?;
        let copied = started.elapsed();
        // Serialising and fsyncing take tens of milliseconds on a large store: off the
        // async threads, which also run Raft and the API.
        let dir = self.0.dir.clone();
        let (file, data) = tokio::task::spawn_blocking(move || {
            let file = SnapshotFile {
                meta,
                store: store.to_snapshot(),
            };
            let data = serde_json::to_vec(&file).map_err(sm_err)?;
            write_snapshot_bytes(&dir, &data)?;
            Ok::<_, StorageError<NodeId>>((file, data))
        })
        .await
        .map_err(sm_err)??;
        tracing::info!(
            last_log_id = ?file.meta.last_log_id,
            bytes = data.len(),
            copy_ms = copied.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "snapshot written"
        );
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let a = self
            .shared
            .applied
            .read()
            .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        {
            let mut a = self
                .shared
                .applied
                .write()
                .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
            for entry in entries {
                a.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Reply(None)),
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        replies.push(Reply(None));
                    }
                    EntryPayload::Normal(cmd) => {
                        let (resp, evs) = a.store.apply(entry.log_id.index, &cmd);
                        events.extend(evs);
                        replies.push(Reply(Some(resp)));
                    }
                }
            }
        }
        if !events.is_empty() {
            // No receiver is fine: watchers come and go.
            let _ = self.shared.events.send(Arc::new(events));
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder(StateMachineSnapshotSource {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
        })
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let file: SnapshotFile = serde_json::from_slice(snapshot.get_ref()).map_err(sm_err)?;
        let store = Store::from_snapshot(&file.store).map_err(sm_err)?;
        self.write_snapshot(&file)?;
        {
            let mut a = self
                .shared
                .applied
                .write()
                .map_err(|_| sm_err(std::io::Error::other("state lock poisoned")))?;
            a.store = store;
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
        }
        self.current = Some(file);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        // The newest snapshot is the one on disk (a builder may have written it since).
        let path = self.dir.join("snapshot.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(sm_err)?;
                let meta = file.meta.clone();
                self.current = Some(file);
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(bytes)),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sm_err(e)),
        }
    }
}
