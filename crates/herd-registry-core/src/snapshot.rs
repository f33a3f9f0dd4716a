//! Snapshots of the [`Store`]: what Raft ships to a lagging follower and what a node restarts
//! from before replaying the rest of its log.
//!
//! The watch history is included, so that a node restored from a snapshot is identical to
//! the nodes that applied the log (same `compacted_revision`, same answers to a later
//! `Compact`, same resumable watches). Its size is bounded by the history limit.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{check_key, check_value, Event, KeyValue};
use crate::history::History;
use crate::store::{Lease, Store};

/// Version of the snapshot layout written by [`Store::to_snapshot`].
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is not valid JSON of the expected shape: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("snapshot format {0} is not supported (expected {SNAPSHOT_FORMAT})")]
    Format(u32),
    #[error("snapshot is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct SnapshotLease {
    id: u64,
    ttl_ms: u64,
}

/// Borrowing twin of [`SnapshotOwned`], so writing a snapshot copies no value.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    revision: u64,
    compacted_revision: u64,
    last_applied_index: u64,
    history_limit: u64,
    /// Sorted by key. Lease membership is not stored: it is derived from each key's lease.
    kvs: Vec<&'a KeyValue>,
    leases: Vec<SnapshotLease>,
    history: Vec<&'a Event>,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    format: u32,
    revision: u64,
    compacted_revision: u64,
    last_applied_index: u64,
    history_limit: u64,
    kvs: Vec<KeyValue>,
    leases: Vec<SnapshotLease>,
    history: Vec<Event>,
}

impl Store {
    /// Serializes the whole state. Deterministic: equal stores give equal bytes.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let snap = SnapshotRef {
            format: SNAPSHOT_FORMAT,
            revision: self.revision,
            compacted_revision: self.history.compacted_revision(),
            last_applied_index: self.last_applied_index,
            history_limit: self.history.limit(),
            kvs: self.kvs.values().collect(),
            leases: self
                .leases
                .iter()
                .map(|(&id, l)| SnapshotLease {
                    id,
                    ttl_ms: l.ttl_ms,
                })
                .collect(),
            history: self.history.events().collect(),
        };
        // Strings, integers and sequences only: serde_json cannot fail on this shape.
        serde_json::to_vec(&snap).expect("snapshot serialization is infallible")
    }

    /// Loads a snapshot, checking every invariant that [`Store::apply`] relies on, so that a
    /// corrupt or hostile snapshot is refused instead of breaking later applies.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Store, SnapshotError> {
        let snap: SnapshotOwned = serde_json::from_slice(bytes)?;
        if snap.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format(snap.format));
        }
        let invalid = |msg: String| Err(SnapshotError::Invalid(msg));
        if snap.compacted_revision > snap.revision {
            return invalid(format!(
                "compacted revision {} above revision {}",
                snap.compacted_revision, snap.revision
            ));
        }
        let mut leases = BTreeMap::new();
        for l in &snap.leases {
            if l.id == 0 || l.ttl_ms == 0 {
                return invalid(format!("lease {} with ttl {} ms", l.id, l.ttl_ms));
            }
            let lease = Lease {
                ttl_ms: l.ttl_ms,
                keys: BTreeSet::new(),
            };
            if leases.insert(l.id, lease).is_some() {
                return invalid(format!("duplicate lease {}", l.id));
            }
        }
        let mut kvs = BTreeMap::new();
        for kv in snap.kvs {
            let checked = check_key(&kv.key).and_then(|()| check_value(&kv.value));
            if let Err(e) = checked {
                return invalid(format!("key {:?}: {e}", kv.key));
            }
            let revisions_ok = kv.create_revision >= 1
                && kv.create_revision <= kv.mod_revision
                && kv.mod_revision <= snap.revision
                && kv.version >= 1;
            if !revisions_ok {
                return invalid(format!("key {:?} has impossible revisions", kv.key));
            }
            if let Some(id) = kv.lease {
                match leases.get_mut(&id) {
                    Some(l) => {
                        l.keys.insert(kv.key.clone());
                    }
                    None => return invalid(format!("key {:?} on missing lease {id}", kv.key)),
                }
            }
            let key = kv.key.clone();
            if kvs.insert(key, kv).is_some() {
                return invalid("duplicate key".to_owned());
            }
        }
        let mut last = snap.compacted_revision;
        for e in &snap.history {
            if e.revision <= snap.compacted_revision
                || e.revision > snap.revision
                || e.revision < last
            {
                return invalid(format!(
                    "history event at revision {} out of order",
                    e.revision
                ));
            }
            last = e.revision;
        }
        Ok(Store {
            revision: snap.revision,
            last_applied_index: snap.last_applied_index,
            kvs: kvs.into(),
            leases: leases.into(),
            history: History::from_parts(snap.history_limit, snap.compacted_revision, snap.history),
        })
    }
}

#[cfg(test)]
mod tests;
