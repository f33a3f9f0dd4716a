//! The log entry format and what applying one answers.
//!
//! Everything here is serialized into Raft log entries and snapshots, so field names are part
//! of the on-disk format: add fields with `#[serde(default)]`, never rename them.

use serde::{Deserialize, Serialize};

use crate::b64;

/// Longest key accepted, in bytes. Keys are also path segments of the HTTP API, where a
/// kilobyte is already far beyond what any caller needs.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes. The registry holds coordination data, not blobs; every
/// value lives in memory on every node and in each snapshot.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most compares, and most ops per branch, in one transaction (etcd's default), so that one
/// log entry cannot stall the apply loop for long.
pub const MAX_TXN_OPS: usize = 128;

/// One key as stored; also the `kv` of API answers and watch events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(with = "b64::serde_bytes")]
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last deletion).
    pub create_revision: u64,
    /// Revision of the last change; for a delete event, the revision of the delete.
    pub mod_revision: u64,
    /// 1 on create, +1 per put; 0 in a delete event.
    pub version: u64,
    pub lease: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key, as a watcher sees it: `{"type","kv","revision"}`.
///
/// A delete event carries a tombstone like etcd's: the key, `mod_revision` = the delete's
/// revision, an empty value, zero create revision and version, no lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub kv: KeyValue,
    pub revision: u64,
}

/// A Raft log entry of the registry. Keep-alives are deliberately absent: lease deadlines
/// are leader-local memory ([`crate::LeaseClock`]), and expiry becomes a `LeaseRevoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Sets a key. `cas_mod_revision`: apply only if the key's current `mod_revision`
    /// equals it, where 0 means "the key must not exist".
    Put {
        key: String,
        #[serde(with = "b64::serde_bytes")]
        value: Vec<u8>,
        #[serde(default)]
        lease: Option<u64>,
        #[serde(default)]
        cas_mod_revision: Option<u64>,
    },
    /// Deletes `key`, or every key starting with `key` when `prefix` (so `""` + prefix
    /// deletes everything).
    Delete {
        key: String,
        #[serde(default)]
        prefix: bool,
    },
    Txn(Txn),
    /// Creates a lease; the id is chosen by the proposer so that the answer is known before
    /// commit and retries are recognised (a duplicate id is refused).
    LeaseGrant {
        id: u64,
        ttl_ms: u64,
    },
    /// Deletes the lease and every key attached to it, in one revision. Used both for an
    /// explicit revoke and for expiry decided by the leader.
    LeaseRevoke {
        id: u64,
    },
    /// Drops watch history at and below `revision`.
    Compact {
        revision: u64,
    },
    /// Commands proposed together as one log entry (the leader batches concurrent writes so
    /// that they share one fsync): applied in order, each with its own revision, exactly as
    /// if they were consecutive entries. A batch inside a batch is refused.
    Batch(Vec<Command>),
}

/// If all `compares` hold, apply `success`, else `failure`; the whole transaction is one
/// revision (or none when it changes nothing). Ops run in order and see earlier ops' effects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    #[serde(default)]
    pub compares: Vec<Compare>,
    #[serde(default)]
    pub success: Vec<Op>,
    #[serde(default)]
    pub failure: Vec<Op>,
}

/// `key`'s `target` attribute `op` the given value. For an absent key, revisions and version
/// compare as 0, `Exists` as false, and a `Value` compare is false whatever the op (etcd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    pub target: CompareTarget,
    pub op: CompareOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    Value(#[serde(with = "b64::serde_bytes")] Vec<u8>),
    Version(u64),
    ModRevision(u64),
    CreateRevision(u64),
    /// Orders false < true, so `Less`/`Greater` are well defined too.
    Exists(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    Eq,
    NotEq,
    Less,
    Greater,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Put {
        key: String,
        #[serde(with = "b64::serde_bytes")]
        value: Vec<u8>,
        /// A request may send the lease id as a string (see [`crate::id64`]); the log
        /// keeps the number.
        #[serde(default, deserialize_with = "crate::id64::option::deserialize")]
        lease: Option<u64>,
    },
    Delete {
        key: String,
        #[serde(default)]
        prefix: bool,
    },
    /// Reads inside the transaction, at its revision. `limit` 0 = no limit.
    Get {
        key: String,
        #[serde(default)]
        prefix: bool,
        #[serde(default)]
        limit: u64,
    },
}

/// What applying one command answered. `revision` is the store's revision after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub revision: u64,
    pub outcome: Outcome,
}

impl Response {
    /// The refusal, if the command was refused (and so changed nothing).
    pub fn error(&self) -> Option<&CommandError> {
        match &self.outcome {
            Outcome::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `prev_kv` is the replaced key, moved out of the store (no copy is made).
    Put {
        prev_kv: Option<KeyValue>,
    },
    /// The deleted keys in key order, moved out of the store.
    Delete {
        deleted: u64,
        prev_kvs: Vec<KeyValue>,
    },
    Txn {
        succeeded: bool,
        results: Vec<OpResult>,
    },
    LeaseGranted {
        id: u64,
        ttl_ms: u64,
    },
    LeaseRevoked {
        id: u64,
        deleted: u64,
    },
    Compacted {
        compacted_revision: u64,
    },
    /// One response per command of a `Batch`, in order.
    Batch {
        responses: Vec<Response>,
    },
    /// Refused: the store is unchanged (except `last_applied_index`).
    Rejected(CommandError),
}

/// One op's result in a transaction, in op order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    Put {
        prev_kv: Option<KeyValue>,
    },
    Delete {
        deleted: u64,
        prev_kvs: Vec<KeyValue>,
    },
    Get {
        kvs: Vec<KeyValue>,
        more: bool,
    },
}

/// Why a command was refused. Refusals are deterministic (they depend only on the state and
/// the command), so every node refuses the same entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    #[error("empty key")]
    EmptyKey,
    #[error("a batch may not contain another batch")]
    NestedBatch,
    #[error("key of {len} bytes exceeds the limit of {MAX_KEY_BYTES}")]
    KeyTooLarge { len: usize },
    #[error("value of {len} bytes exceeds the limit of {MAX_VALUE_BYTES}")]
    ValueTooLarge { len: usize },
    #[error("transaction has {len} compares or ops in one list; the limit is {MAX_TXN_OPS}")]
    TooManyOps { len: usize },
    #[error("lease {id} not found")]
    LeaseNotFound { id: u64 },
    #[error("lease {id} already exists")]
    LeaseExists { id: u64 },
    #[error("lease id 0 is reserved for \"no lease\"")]
    InvalidLeaseId,
    #[error("lease TTL must be positive")]
    InvalidTtl,
    #[error("compare-and-swap failed: current mod_revision is {current_mod_revision}")]
    CasFailed { current_mod_revision: u64 },
    #[error("cannot compact to revision {revision}: current revision is {current}")]
    CompactFuture { revision: u64, current: u64 },
    #[error("revision {revision} is already compacted (compacted up to {compacted_revision})")]
    AlreadyCompacted {
        revision: u64,
        compacted_revision: u64,
    },
    #[error("log index {index} already applied (last applied {last_applied})")]
    StaleIndex { index: u64, last_applied: u64 },
}

impl Command {
    /// The refusals that need no state: key and value sizes, transaction lengths, lease ids
    /// and TTLs. The store makes the same checks when it applies a command; making them
    /// before proposing keeps a command that is bound to be refused out of the log (no
    /// replication, no fsync on every node).
    pub fn check_shape(&self) -> Result<(), CommandError> {
        match self {
            Command::Put { key, value, .. } => {
                check_key(key)?;
                check_value(value)
            }
            Command::Delete { key, prefix } => check_delete(key, *prefix),
            Command::Txn(txn) => {
                for len in [txn.compares.len(), txn.success.len(), txn.failure.len()] {
                    if len > MAX_TXN_OPS {
                        return Err(CommandError::TooManyOps { len });
                    }
                }
                for op in txn.success.iter().chain(&txn.failure) {
                    match op {
                        Op::Put { key, value, .. } => {
                            check_key(key)?;
                            check_value(value)?;
                        }
                        Op::Delete { key, prefix } => check_delete(key, *prefix)?,
                        Op::Get { .. } => {}
                    }
                }
                Ok(())
            }
            Command::LeaseGrant { id, ttl_ms } => {
                if *id == 0 {
                    Err(CommandError::InvalidLeaseId)
                } else if *ttl_ms == 0 {
                    Err(CommandError::InvalidTtl)
                } else {
                    Ok(())
                }
            }
            Command::LeaseRevoke { .. } | Command::Compact { .. } => Ok(()),
            Command::Batch(cmds) => {
                for c in cmds {
                    if matches!(c, Command::Batch(_)) {
                        return Err(CommandError::NestedBatch);
                    }
                    c.check_shape()?;
                }
                Ok(())
            }
        }
    }
}

/// Checks the key of a delete: an empty prefix is allowed (it names every key).
pub(crate) fn check_delete(key: &str, prefix: bool) -> Result<(), CommandError> {
    if prefix {
        if key.len() > MAX_KEY_BYTES {
            return Err(CommandError::KeyTooLarge { len: key.len() });
        }
        Ok(())
    } else {
        check_key(key)
    }
}

/// Checks a key that a command would write or delete.
pub(crate) fn check_key(key: &str) -> Result<(), CommandError> {
    if key.is_empty() {
        Err(CommandError::EmptyKey)
    } else if key.len() > MAX_KEY_BYTES {
        Err(CommandError::KeyTooLarge { len: key.len() })
    } else {
        Ok(())
    }
}

pub(crate) fn check_value(value: &[u8]) -> Result<(), CommandError> {
    if value.len() > MAX_VALUE_BYTES {
        Err(CommandError::ValueTooLarge { len: value.len() })
    } else {
        Ok(())
    }
}
