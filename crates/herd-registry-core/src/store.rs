//! The registry state machine: applies committed commands in log order.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::command::{
    check_delete, check_key, check_value, Command, CommandError, Compare, CompareOp, CompareTarget,
    Event, EventKind, KeyValue, Op, OpResult, Outcome, Response, Txn, MAX_TXN_OPS,
};
use crate::history::{Compacted, History, DEFAULT_HISTORY_REVISIONS};

/// A lease as the state machine knows it: no deadline here, because time is leader-local
/// ([`crate::LeaseClock`]); only the TTL (so a new leader can restart the countdown) and the
/// attached keys (so a revoke deletes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) ttl_ms: u64,
    pub(crate) keys: BTreeSet<String>,
}

/// One lease as listed by [`Store::leases`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: u64,
    pub ttl_ms: u64,
    /// Attached keys, sorted.
    pub keys: Vec<String>,
}

/// The replicated state: the key space, the leases and the watch history.
///
/// Revisions follow etcd: the revision counts changes of the key space. A command that puts
/// or deletes at least one key moves it up by exactly 1 (a transaction too, whatever its op
/// count); a command that changes no key (a refused command, a delete of a missing key, a
/// read-only transaction, a lease grant, a revoke of a lease without keys, a compaction)
/// leaves it unchanged. Hence every revision above `compacted_revision` has at least one
/// event in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub(crate) revision: u64,
    pub(crate) last_applied_index: u64,
    pub(crate) kvs: imbl::OrdMap<String, KeyValue>,
    pub(crate) leases: imbl::OrdMap<u64, Lease>,
    pub(crate) history: History,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// Collects the events of the command being applied, all at revision `rev`.
struct Changes {
    rev: u64,
    events: Vec<Event>,
}

impl Store {
    /// An empty store keeping [`DEFAULT_HISTORY_REVISIONS`] revisions of watch history.
    pub fn new() -> Self {
        Store::with_history_limit(DEFAULT_HISTORY_REVISIONS)
    }

    /// An empty store keeping `revisions` revisions of watch history. Every node of a cluster
    /// must use the same limit, since it decides when `compacted_revision` advances.
    pub fn with_history_limit(revisions: u64) -> Self {
        Store {
            revision: 0,
            last_applied_index: 0,
            kvs: imbl::OrdMap::new(),
            leases: imbl::OrdMap::new(),
            history: History::new(revisions),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Watch history at or below this revision is gone.
    pub fn compacted_revision(&self) -> u64 {
        self.history.compacted_revision()
    }

    pub fn history_limit(&self) -> u64 {
        self.history.limit()
    }

    pub fn last_applied_index(&self) -> u64 {
        self.last_applied_index
    }

    /// Records that a log entry without a command (a blank or membership entry) was applied,
    /// so that `last_applied_index` follows the log. Never moves backwards.
    pub fn note_applied(&mut self, index: u64) {
        self.last_applied_index = self.last_applied_index.max(index);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.kvs.get(key).cloned()
    }

    /// Keys starting with `prefix`, sorted by key; at most `limit` of them (0 = no limit),
    /// and whether more exist.
    pub fn range(&self, prefix: &str, limit: usize) -> (Vec<KeyValue>, bool) {
        let mut iter = self.prefix_iter(prefix);
        let mut out = Vec::new();
        for kv in iter.by_ref() {
            if limit != 0 && out.len() == limit {
                return (out, true);
            }
            out.push(kv.clone());
        }
        (out, false)
    }

    /// Every lease, by id.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.leases
            .iter()
            .map(|(&id, l)| LeaseInfo {
                id,
                ttl_ms: l.ttl_ms,
                keys: l.keys.iter().cloned().collect(),
            })
            .collect()
    }

    pub fn lease(&self, id: u64) -> Option<LeaseInfo> {
        self.leases.get(&id).map(|l| LeaseInfo {
            id,
            ttl_ms: l.ttl_ms,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// Events at or after `from_revision` (0 = from the start of history) for `key`, or for
    /// every key starting with `key` when `prefix`, in revision then op order.
    pub fn events_since(
        &self,
        from_revision: u64,
        key: &str,
        prefix: bool,
    ) -> Result<Vec<Event>, Compacted> {
        self.history.since(from_revision, key, prefix)
    }

    /// Applies the committed entry at log `index`. Returns the answer for the proposer and the
    /// events it produced (also recorded in the history), in order.
    ///
    /// An index at or below `last_applied_index` is refused with `StaleIndex` and changes
    /// nothing, so that replaying a log over a newer snapshot cannot apply an entry twice.
    /// (Index 0 is accepted while nothing was applied: openraft may start its log there.)
    pub fn apply(&mut self, index: u64, cmd: &Command) -> (Response, Vec<Event>) {
        if index <= self.last_applied_index && self.last_applied_index != 0 {
            let err = CommandError::StaleIndex {
                index,
                last_applied: self.last_applied_index,
            };
            return (self.rejected(err), Vec::new());
        }
        self.last_applied_index = index;
        if let Command::Batch(cmds) = cmd {
            let mut responses = Vec::with_capacity(cmds.len());
            let mut events = Vec::new();
            for cmd in cmds {
                let (response, evs) = self.apply_one(cmd);
                responses.push(response);
                events.extend(evs);
            }
            let response = Response {
                revision: self.revision,
                outcome: Outcome::Batch { responses },
            };
            return (response, events);
        }
        self.apply_one(cmd)
    }

    /// One command, one revision (none if it changed nothing).
    fn apply_one(&mut self, cmd: &Command) -> (Response, Vec<Event>) {
        let mut ch = Changes {
            // Saturating: unreachable by counting, but a hostile snapshot must not panic us.
            rev: self.revision.saturating_add(1),
            events: Vec::new(),
        };
        let outcome = match self.apply_command(cmd, &mut ch) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Rejected(err),
        };
        if !ch.events.is_empty() {
            self.revision = ch.rev;
            self.history.record(&ch.events, ch.rev);
        }
        let response = Response {
            revision: self.revision,
            outcome,
        };
        (response, ch.events)
    }

    fn rejected(&self, err: CommandError) -> Response {
        Response {
            revision: self.revision,
            outcome: Outcome::Rejected(err),
        }
    }

    /// Every check happens before the first change, so an `Err` always means "unchanged".
    fn apply_command(&mut self, cmd: &Command, ch: &mut Changes) -> Result<Outcome, CommandError> {
        match cmd {
            Command::Put {
                key,
                value,
                lease,
                cas_mod_revision,
            } => {
                self.check_put(key, value, *lease)?;
                if let Some(expected) = *cas_mod_revision {
                    let current = self.kvs.get(key.as_str()).map_or(0, |kv| kv.mod_revision);
                    if current != expected {
                        return Err(CommandError::CasFailed {
                            current_mod_revision: current,
                        });
                    }
                }
                let prev_kv = self.put(key, value, *lease, ch);
                Ok(Outcome::Put { prev_kv })
            }
            Command::Delete { key, prefix } => {
                check_delete(key, *prefix)?;
                let prev_kvs = self.delete(key, *prefix, ch);
                Ok(Outcome::Delete {
                    deleted: prev_kvs.len() as u64,
                    prev_kvs,
                })
            }
            Command::Txn(txn) => self.txn(txn, ch),
            Command::LeaseGrant { id, ttl_ms } => {
                if *id == 0 {
                    return Err(CommandError::InvalidLeaseId);
                }
                if *ttl_ms == 0 {
                    return Err(CommandError::InvalidTtl);
                }
                if self.leases.contains_key(id) {
                    return Err(CommandError::LeaseExists { id: *id });
                }
                let lease = Lease {
                    ttl_ms: *ttl_ms,
                    keys: BTreeSet::new(),
                };
                self.leases.insert(*id, lease);
                Ok(Outcome::LeaseGranted {
                    id: *id,
                    ttl_ms: *ttl_ms,
                })
            }
            Command::LeaseRevoke { id } => {
                let lease = self
                    .leases
                    .remove(id)
                    .ok_or(CommandError::LeaseNotFound { id: *id })?;
                // Sorted key order, so events are the same on every node.
                for key in lease.keys {
                    if let Some(kv) = self.kvs.remove(key.as_str()) {
                        ch.events.push(tombstone(kv.key, ch.rev));
                    }
                }
                Ok(Outcome::LeaseRevoked {
                    id: *id,
                    deleted: ch.events.len() as u64,
                })
            }
            Command::Compact { revision } => {
                if *revision > self.revision {
                    return Err(CommandError::CompactFuture {
                        revision: *revision,
                        current: self.revision,
                    });
                }
                let compacted_revision = self.history.compacted_revision();
                if *revision <= compacted_revision {
                    return Err(CommandError::AlreadyCompacted {
                        revision: *revision,
                        compacted_revision,
                    });
                }
                self.history.compact_to(*revision);
                Ok(Outcome::Compacted {
                    compacted_revision: *revision,
                })
            }
            Command::Batch(_) => Err(CommandError::NestedBatch),
        }
    }

    /// The refusals that depend on state this store is sure of: a put on, or a revoke of,
    /// a lease it does not hold. Call it only on a store that has applied everything
    /// committed before the command (a leader that has applied an entry of its own term):
    /// a lagging store would refuse a lease that exists.
    pub fn precheck(&self, cmd: &Command) -> Result<(), CommandError> {
        cmd.check_shape()?;
        match cmd {
            Command::Put {
                lease: Some(id), ..
            }
            | Command::LeaseRevoke { id }
                if !self.leases.contains_key(id) =>
            {
                Err(CommandError::LeaseNotFound { id: *id })
            }
            Command::Batch(cmds) => cmds.iter().try_for_each(|c| self.precheck(c)),
            _ => Ok(()),
        }
    }

    fn check_put(&self, key: &str, value: &[u8], lease: Option<u64>) -> Result<(), CommandError> {
        check_key(key)?;
        check_value(value)?;
        match lease {
            Some(id) if !self.leases.contains_key(&id) => Err(CommandError::LeaseNotFound { id }),
            _ => Ok(()),
        }
    }

    fn txn(&mut self, txn: &Txn, ch: &mut Changes) -> Result<Outcome, CommandError> {
        for len in [txn.compares.len(), txn.success.len(), txn.failure.len()] {
            if len > MAX_TXN_OPS {
                return Err(CommandError::TooManyOps { len });
            }
        }
        let succeeded = txn.compares.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        // Validate the whole branch first: a transaction applies entirely or not at all.
        // Leases cannot appear or vanish inside a transaction, so checking them against the
        // state before the first op is exact.
        for op in ops {
            match op {
                Op::Put { key, value, lease } => self.check_put(key, value, *lease)?,
                Op::Delete { key, prefix } => check_delete(key, *prefix)?,
                Op::Get { .. } => {}
            }
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                Op::Put { key, value, lease } => OpResult::Put {
                    prev_kv: self.put(key, value, *lease, ch),
                },
                Op::Delete { key, prefix } => {
                    let prev_kvs = self.delete(key, *prefix, ch);
                    OpResult::Delete {
                        deleted: prev_kvs.len() as u64,
                        prev_kvs,
                    }
                }
                Op::Get { key, prefix, limit } => {
                    let (kvs, more) = if *prefix {
                        // A limit beyond usize is no limit at all.
                        self.range(key, usize::try_from(*limit).unwrap_or(0))
                    } else {
                        (self.get(key).into_iter().collect(), false)
                    };
                    OpResult::Get { kvs, more }
                }
            };
            results.push(result);
        }
        Ok(Outcome::Txn { succeeded, results })
    }

    fn compare(&self, c: &Compare) -> bool {
        let kv = self.kvs.get(c.key.as_str());
        let ord = match (&c.target, kv) {
            // etcd: a value compare on a missing key is false, whatever the op.
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CompareTarget::Version(v), kv) => kv.map_or(0, |kv| kv.version).cmp(v),
            (CompareTarget::ModRevision(v), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(v),
            (CompareTarget::CreateRevision(v), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(v),
            (CompareTarget::Exists(v), kv) => kv.is_some().cmp(v),
        };
        match c.op {
            CompareOp::Eq => ord.is_eq(),
            CompareOp::NotEq => ord.is_ne(),
            CompareOp::Less => ord.is_lt(),
            CompareOp::Greater => ord.is_gt(),
        }
    }

    /// Writes one checked key at `ch.rev`; returns the replaced key.
    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        lease: Option<u64>,
        ch: &mut Changes,
    ) -> Option<KeyValue> {
        let prev = self.kvs.get(key);
        let (create_revision, version) = prev.map_or((ch.rev, 1), |p| {
            (p.create_revision, p.version.saturating_add(1))
        });
        let old_lease = prev.and_then(|p| p.lease);
        // Like etcd, a put without a lease detaches the key from its old lease.
        if old_lease != lease {
            if let Some(l) = old_lease.and_then(|id| self.leases.get_mut(&id)) {
                l.keys.remove(key);
            }
            if let Some(l) = lease.and_then(|id| self.leases.get_mut(&id)) {
                l.keys.insert(key.to_owned());
            }
        }
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision,
            mod_revision: ch.rev,
            version,
            lease,
        };
        ch.events.push(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            revision: ch.rev,
        });
        self.kvs.insert(key.to_owned(), kv)
    }

    /// Deletes `key` (or the keys under prefix `key`) at `ch.rev`; returns them in key order.
    fn delete(&mut self, key: &str, prefix: bool, ch: &mut Changes) -> Vec<KeyValue> {
        let keys: Vec<String> = if prefix {
            self.prefix_iter(key).map(|kv| kv.key.clone()).collect()
        } else if self.kvs.contains_key(key) {
            vec![key.to_owned()]
        } else {
            Vec::new()
        };
        let mut prev_kvs = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(kv) = self.kvs.remove(k.as_str()) {
                if let Some(l) = kv.lease.and_then(|id| self.leases.get_mut(&id)) {
                    l.keys.remove(k.as_str());
                }
                ch.events.push(tombstone(k, ch.rev));
                prev_kvs.push(kv);
            }
        }
        prev_kvs
    }

    fn prefix_iter<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KeyValue> + 'a {
        self.kvs
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv)
    }
}

fn tombstone(key: String, rev: u64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: None,
        },
        revision: rev,
    }
}

#[cfg(test)]
mod tests;
