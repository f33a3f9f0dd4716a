//! Distributed locks, the etcd concurrency recipe over plain keys.
//!
//! Each contender creates the waiter key `locks/<name>/<lease:016x>` attached to its lease;
//! the lock belongs to the waiter with the lowest `create_revision`, so contenders are served
//! in arrival (FIFO) order. Releasing is deleting the key, and a holder that dies releases by
//! lease expiry. The owner's `create_revision` is its fencing token: a later owner's key was
//! necessarily created later, so tokens strictly increase from one owner to the next, and a
//! resource that remembers the highest token it saw can refuse a stale holder.

use crate::catalog::{validate_name, NameError};
use crate::command::{Command, Compare, CompareOp, CompareTarget, KeyValue, Op, Txn};
use crate::store::Store;

/// Every lock key starts with this.
pub const LOCKS_PREFIX: &str = "locks/";

/// `locks/<name>/`: all waiters of lock `name`.
pub fn lock_prefix(name: &str) -> Result<String, NameError> {
    validate_name(name)?;
    Ok(format!("{LOCKS_PREFIX}{name}/"))
}

/// `locks/<name>/<lease:016x>`: fixed-width hex so keys sort like lease ids.
pub fn lock_waiter_key(name: &str, lease: u64) -> Result<String, NameError> {
    Ok(format!("{}{lease:016x}", lock_prefix(name)?))
}

/// The transaction that joins the queue of lock `name` for `lease`: create the waiter key if
/// it does not exist yet (a retry after a lost answer must not move it back in the queue),
/// and in both branches read all waiters, so the answer tells at that very revision whether
/// this lease holds the lock ([`lock_owner_of`]) or whom to wait for ([`lock_wait_target`]).
pub fn lock_acquire_txn(name: &str, lease: u64) -> Result<Txn, NameError> {
    let key = lock_waiter_key(name, lease)?;
    let prefix = lock_prefix(name)?;
    let read_waiters = Op::Get {
        key: prefix,
        prefix: true,
        limit: 0,
    };
    Ok(Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: CompareTarget::CreateRevision(0),
            op: CompareOp::Eq,
        }],
        success: vec![
            Op::Put {
                key,
                value: Vec::new(),
                lease: Some(lease),
            },
            read_waiters.clone(),
        ],
        failure: vec![read_waiters],
    })
}

/// The command that leaves the queue (or releases the lock) for `lease`.
pub fn lock_release_command(name: &str, lease: u64) -> Result<Command, NameError> {
    Ok(Command::Delete {
        key: lock_waiter_key(name, lease)?,
        prefix: false,
    })
}

/// The waiter with the lowest create revision among `waiters`: (key, fencing token).
pub fn lock_owner_of(waiters: &[KeyValue]) -> Option<(String, u64)> {
    waiters
        .iter()
        .min_by_key(|kv| kv.create_revision)
        .map(|kv| (kv.key.clone(), kv.create_revision))
}

/// The current owner of lock `name` in `store`: (key, fencing token). `None` when nobody
/// holds it or the name is invalid.
pub fn lock_owner(store: &Store, name: &str) -> Option<(String, u64)> {
    let prefix = lock_prefix(name).ok()?;
    lock_owner_of(&store.range(&prefix, 0).0)
}

/// The waiter just ahead of `my_key` (highest create revision below its own), whose deletion
/// `my_key`'s holder should watch for; `None` when `my_key` owns the lock or is not waiting.
/// Watching only the predecessor avoids waking every waiter on each release.
pub fn lock_wait_target(waiters: &[KeyValue], my_key: &str) -> Option<String> {
    let mine = waiters.iter().find(|kv| kv.key == my_key)?.create_revision;
    waiters
        .iter()
        .filter(|kv| kv.create_revision < mine)
        .max_by_key(|kv| kv.create_revision)
        .map(|kv| kv.key.clone())
}

#[cfg(test)]
mod tests;
