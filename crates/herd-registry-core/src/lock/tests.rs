use super::*;
use crate::command::{OpResult, Outcome};

/// Applies with consecutive log indexes.
struct Node {
    store: Store,
    index: u64,
}

impl Node {
    fn apply(&mut self, cmd: Command) -> Outcome {
        self.index += 1;
        self.store.apply(self.index, &cmd).0.outcome
    }

    /// Runs the acquire transaction and returns the waiters it read.
    fn acquire(&mut self, name: &str, lease: u64) -> Vec<KeyValue> {
        match self.apply(Command::Txn(lock_acquire_txn(name, lease).unwrap())) {
            Outcome::Txn { results, .. } => match results.last() {
                Some(OpResult::Get { kvs, .. }) => kvs.clone(),
                other => panic!("no waiters read: {other:?}"),
            },
            other => panic!("acquire refused: {other:?}"),
        }
    }
}

#[test]
fn keys() {
    assert_eq!(lock_prefix("db").unwrap(), "locks/db/");
    assert_eq!(
        lock_waiter_key("db", 0xab).unwrap(),
        "locks/db/00000000000000ab"
    );
    assert!(lock_waiter_key("a/b", 1).is_err());
    assert_eq!(
        lock_release_command("db", 1).unwrap(),
        Command::Delete {
            key: "locks/db/0000000000000001".into(),
            prefix: false
        }
    );
}

#[test]
fn fifo_handover_with_increasing_fencing_tokens() {
    let mut n = Node {
        store: Store::new(),
        index: 0,
    };
    // Lease ids chosen so that key order (by lease) differs from arrival order.
    for id in [30, 10, 20] {
        assert!(matches!(
            n.apply(Command::LeaseGrant { id, ttl_ms: 10_000 }),
            Outcome::LeaseGranted { .. }
        ));
    }
    // Some unrelated write first, so revisions are not trivially 1, 2, 3.
    n.apply(Command::Put {
        key: "x".into(),
        value: vec![],
        lease: None,
        cas_mod_revision: None,
    });
    let k30 = lock_waiter_key("db", 30).unwrap();
    let k10 = lock_waiter_key("db", 10).unwrap();
    let k20 = lock_waiter_key("db", 20).unwrap();

    let w = n.acquire("db", 30);
    assert_eq!(lock_owner_of(&w), Some((k30.clone(), 2)));
    assert_eq!(lock_wait_target(&w, &k30), None);
    let w = n.acquire("db", 10);
    assert_eq!(lock_owner_of(&w), Some((k30.clone(), 2)));
    assert_eq!(lock_wait_target(&w, &k10), Some(k30.clone()));
    let w = n.acquire("db", 20);
    assert_eq!(lock_wait_target(&w, &k20), Some(k10.clone()));
    assert_eq!(n.store.revision(), 4);

    // Retrying an acquire does not requeue: the key keeps its create revision.
    let w = n.acquire("db", 30);
    assert_eq!(w.len(), 3);
    assert_eq!(n.store.revision(), 4);
    assert_eq!(lock_owner(&n.store, "db"), Some((k30.clone(), 2)));

    // Release by delete hands it to the second arrival.
    n.apply(lock_release_command("db", 30).unwrap());
    assert_eq!(lock_owner(&n.store, "db"), Some((k10.clone(), 3)));
    // Release by lease revoke (expiry) hands it to the third.
    n.apply(Command::LeaseRevoke { id: 10 });
    assert_eq!(lock_owner(&n.store, "db"), Some((k20.clone(), 4)));
    // The first holder comes back: it queues behind, with a higher token.
    n.acquire("db", 30);
    n.apply(Command::LeaseRevoke { id: 20 });
    assert_eq!(lock_owner(&n.store, "db"), Some((k30, 7)));
    // Tokens seen by successive owners: 2, 3, 4, 7.
    n.apply(lock_release_command("db", 30).unwrap());
    assert_eq!(lock_owner(&n.store, "db"), None);
    assert_eq!(lock_owner(&n.store, "bad/name"), None);
}

#[test]
fn acquire_on_missing_lease_is_refused() {
    let mut n = Node {
        store: Store::new(),
        index: 0,
    };
    let out = n.apply(Command::Txn(lock_acquire_txn("db", 99).unwrap()));
    assert_eq!(
        out,
        Outcome::Rejected(crate::CommandError::LeaseNotFound { id: 99 })
    );
    assert_eq!(n.store.revision(), 0);
}
