//! Unit tests of the store, read like a Raft log: each command applied at its index with
//! the exact revisions, versions and events it must produce. Long because each case is a
//! log written out in full.

use super::*;
use crate::command::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// A store plus the log index of the next entry, so tests read like a log.
struct Log {
    store: Store,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            store: Store::new(),
            index: 0,
        }
    }

    fn apply(&mut self, cmd: Command) -> (Response, Vec<Event>) {
        self.index += 1;
        self.store.apply(self.index, &cmd)
    }

    fn put(&mut self, key: &str, value: &str) -> (Response, Vec<Event>) {
        self.apply(put(key, value, None))
    }
}

fn put(key: &str, value: &str, lease: Option<u64>) -> Command {
    Command::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease,
        cas_mod_revision: None,
    }
}

fn cas(key: &str, value: &str, cas_mod_revision: u64) -> Command {
    Command::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease: None,
        cas_mod_revision: Some(cas_mod_revision),
    }
}

fn del(key: &str, prefix: bool) -> Command {
    Command::Delete {
        key: key.into(),
        prefix,
    }
}

fn kv(key: &str, value: &str, create: u64, modr: u64, version: u64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modr,
        version,
        lease: None,
    }
}

fn put_event(kv: KeyValue) -> Event {
    Event {
        kind: EventKind::Put,
        revision: kv.mod_revision,
        kv,
    }
}

fn rejected(store: &Store, err: CommandError) -> Response {
    Response {
        revision: store.revision(),
        outcome: Outcome::Rejected(err),
    }
}

#[test]
fn revisions_versions_and_events_follow_etcd() {
    let mut log = Log::new();
    let (r, ev) = log.put("a", "1");
    assert_eq!(r.revision, 1);
    assert_eq!(r.outcome, Outcome::Put { prev_kv: None });
    assert_eq!(ev, vec![put_event(kv("a", "1", 1, 1, 1))]);
    assert_eq!(log.store.get("a"), Some(kv("a", "1", 1, 1, 1)));

    let (r, _) = log.put("a", "2");
    assert_eq!(r.revision, 2);
    assert_eq!(
        r.outcome,
        Outcome::Put {
            prev_kv: Some(kv("a", "1", 1, 1, 1))
        }
    );
    assert_eq!(log.store.get("a"), Some(kv("a", "2", 1, 2, 2)));

    let (r, _) = log.put("b", "x");
    assert_eq!(r.revision, 3);
    assert_eq!(log.store.get("b"), Some(kv("b", "x", 3, 3, 1)));

    // Deleting a missing key changes nothing, so the revision stays.
    let (r, ev) = log.apply(del("zz", false));
    assert_eq!(r.revision, 3);
    assert_eq!(
        r.outcome,
        Outcome::Delete {
            deleted: 0,
            prev_kvs: vec![]
        }
    );
    assert!(ev.is_empty());

    // Prefix "" names every key: two deletes, one revision, two events in key order.
    let (r, ev) = log.apply(del("", true));
    assert_eq!(r.revision, 4);
    assert_eq!(
        r.outcome,
        Outcome::Delete {
            deleted: 2,
            prev_kvs: vec![kv("a", "2", 1, 2, 2), kv("b", "x", 3, 3, 1)]
        }
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].kind, EventKind::Delete);
    assert_eq!(ev[0].kv.key, "a");
    assert_eq!(ev[0].kv.mod_revision, 4);
    assert_eq!(ev[0].kv.version, 0);
    assert_eq!(ev[1].kv.key, "b");
    assert_eq!((ev[0].revision, ev[1].revision), (4, 4));
    assert!(log.store.is_empty());

    // Re-created: version and create revision start over.
    log.put("a", "3");
    assert_eq!(log.store.get("a"), Some(kv("a", "3", 5, 5, 1)));
    assert_eq!(log.store.last_applied_index(), 6);
}

#[test]
fn cas_put() {
    let mut log = Log::new();
    // 0 = must not exist.
    assert_eq!(log.apply(cas("a", "1", 0)).0.revision, 1);
    let (r, ev) = log.apply(cas("a", "2", 0));
    assert_eq!(
        r,
        rejected(
            &log.store,
            CommandError::CasFailed {
                current_mod_revision: 1
            }
        )
    );
    assert!(ev.is_empty());
    assert_eq!(log.apply(cas("a", "2", 1)).0.revision, 2);
    assert_eq!(
        log.apply(cas("a", "3", 1)).0.error(),
        Some(&CommandError::CasFailed {
            current_mod_revision: 2
        })
    );
    assert_eq!(
        log.apply(cas("nope", "3", 7)).0.error(),
        Some(&CommandError::CasFailed {
            current_mod_revision: 0
        })
    );
    assert_eq!(log.store.revision(), 2);
    assert_eq!(log.store.get("a"), Some(kv("a", "2", 1, 2, 2)));
}

fn compare(key: &str, target: CompareTarget, op: CompareOp) -> Compare {
    Compare {
        key: key.into(),
        target,
        op,
    }
}

fn op_put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease: None,
    }
}

fn op_get(key: &str, prefix: bool) -> Op {
    Op::Get {
        key: key.into(),
        prefix,
        limit: 0,
    }
}

#[test]
fn txn_is_one_revision() {
    let mut log = Log::new();
    log.put("a", "1");
    log.put("a", "2");
    log.put("b", "x");
    log.apply(del("", true));
    log.put("a", "1");
    log.put("a", "2");
    assert_eq!(log.store.revision(), 6);
    let txn = Txn {
        compares: vec![compare("a", CompareTarget::Version(2), CompareOp::Eq)],
        success: vec![
            op_put("a", "3"),
            op_put("c", "c"),
            Op::Delete {
                key: "a".into(),
                prefix: false,
            },
            op_get("", true),
        ],
        failure: vec![op_put("failed", "1")],
    };
    let (r, ev) = log.apply(Command::Txn(txn.clone()));
    assert_eq!(r.revision, 7);
    let Outcome::Txn { succeeded, results } = r.outcome else {
        panic!("not a txn outcome: {r:?}");
    };
    assert!(succeeded);
    assert_eq!(
        results,
        vec![
            OpResult::Put {
                prev_kv: Some(kv("a", "2", 5, 6, 2))
            },
            OpResult::Put { prev_kv: None },
            OpResult::Delete {
                deleted: 1,
                prev_kvs: vec![kv("a", "3", 5, 7, 3)]
            },
            // Later ops see earlier ones.
            OpResult::Get {
                kvs: vec![kv("c", "c", 7, 7, 1)],
                more: false
            },
        ]
    );
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| e.revision == 7));

    // Same txn again: version(a) is now 0, so the failure branch runs, still one revision.
    let (r, _) = log.apply(Command::Txn(txn));
    assert_eq!(r.revision, 8);
    assert!(matches!(
        r.outcome,
        Outcome::Txn {
            succeeded: false,
            ..
        }
    ));
    assert_eq!(log.store.get("failed"), Some(kv("failed", "1", 8, 8, 1)));

    // A read-only txn changes nothing.
    let read_only = Txn {
        compares: vec![],
        success: vec![op_get("c", false)],
        failure: vec![],
    };
    let (r, ev) = log.apply(Command::Txn(read_only));
    assert_eq!(r.revision, 8);
    assert!(ev.is_empty());
}

#[test]
fn compares_on_every_target() {
    let mut log = Log::new();
    log.put("a", "m");
    log.put("a", "m");
    let s = &log.store;
    let check = |key: &str, t: CompareTarget, op: CompareOp| s.compare(&compare(key, t, op));
    use CompareOp::*;
    use CompareTarget::*;
    assert!(check("a", Value(b"m".to_vec()), Eq));
    assert!(check("a", Value(b"a".to_vec()), Greater));
    assert!(check("a", Value(b"z".to_vec()), Less));
    assert!(check("a", Version(2), Eq));
    assert!(check("a", ModRevision(2), Eq));
    assert!(check("a", CreateRevision(1), Eq));
    assert!(check("a", CreateRevision(2), Less));
    assert!(check("a", Exists(true), Eq));
    assert!(check("a", Exists(false), Greater));
    assert!(check("zz", Exists(false), Eq));
    assert!(check("zz", Version(0), Eq));
    assert!(check("zz", CreateRevision(0), Eq));
    assert!(check("zz", ModRevision(1), Less));
    // A value compare on a missing key is false whatever the op (etcd).
    assert!(!check("zz", Value(vec![]), Eq));
    assert!(!check("zz", Value(vec![]), NotEq));
}

#[test]
fn invalid_txn_branch_changes_nothing() {
    let mut log = Log::new();
    log.put("a", "1");
    let txn = Txn {
        compares: vec![],
        success: vec![
            op_put("b", "1"),
            Op::Put {
                key: "c".into(),
                value: vec![],
                lease: Some(9),
            },
        ],
        failure: vec![],
    };
    let before = log.store.clone();
    let (r, ev) = log.apply(Command::Txn(txn));
    assert_eq!(r.error(), Some(&CommandError::LeaseNotFound { id: 9 }));
    assert!(ev.is_empty());
    // Only the applied index moved.
    assert_eq!(log.store.kvs, before.kvs);
    assert_eq!(log.store.revision(), 1);

    let too_many = Txn {
        compares: vec![],
        success: vec![op_get("a", false); MAX_TXN_OPS + 1],
        failure: vec![],
    };
    assert_eq!(
        log.apply(Command::Txn(too_many)).0.error(),
        Some(&CommandError::TooManyOps { len: 129 })
    );
}

#[test]
fn leases_attach_and_revoke() {
    let mut log = Log::new();
    let (r, ev) = log.apply(Command::LeaseGrant {
        id: 7,
        ttl_ms: 5000,
    });
    assert_eq!(
        r.outcome,
        Outcome::LeaseGranted {
            id: 7,
            ttl_ms: 5000
        }
    );
    assert_eq!(r.revision, 0, "a lease grant changes no key");
    assert!(ev.is_empty());
    assert_eq!(
        log.apply(Command::LeaseGrant { id: 7, ttl_ms: 1 })
            .0
            .error(),
        Some(&CommandError::LeaseExists { id: 7 })
    );
    assert_eq!(
        log.apply(Command::LeaseGrant { id: 0, ttl_ms: 1 })
            .0
            .error(),
        Some(&CommandError::InvalidLeaseId)
    );
    assert_eq!(
        log.apply(Command::LeaseGrant { id: 8, ttl_ms: 0 })
            .0
            .error(),
        Some(&CommandError::InvalidTtl)
    );
    // Attaching to a missing lease is refused and changes nothing.
    let (r, _) = log.apply(put("k", "v", Some(8)));
    assert_eq!(
        r,
        rejected(&log.store, CommandError::LeaseNotFound { id: 8 })
    );
    assert!(log.store.get("k").is_none());

    log.apply(put("k", "v", Some(7)));
    log.apply(put("j", "v", Some(7)));
    log.apply(put("free", "v", None));
    // Re-put without a lease detaches, like etcd.
    log.apply(put("j", "w", None));
    assert_eq!(log.store.revision(), 4);
    assert_eq!(
        log.store.leases(),
        vec![LeaseInfo {
            id: 7,
            ttl_ms: 5000,
            keys: vec!["k".into()]
        }]
    );
    assert_eq!(log.store.get("k").unwrap().lease, Some(7));

    let (r, ev) = log.apply(Command::LeaseRevoke { id: 7 });
    assert_eq!(r.revision, 5);
    assert_eq!(r.outcome, Outcome::LeaseRevoked { id: 7, deleted: 1 });
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Delete);
    assert_eq!(ev[0].kv.key, "k");
    assert_eq!(ev[0].revision, 5);
    assert!(log.store.get("k").is_none());
    assert!(log.store.leases().is_empty());
    assert_eq!(
        log.apply(Command::LeaseRevoke { id: 7 }).0.error(),
        Some(&CommandError::LeaseNotFound { id: 7 })
    );
    // A lease without keys is revoked without a revision.
    log.apply(Command::LeaseGrant { id: 3, ttl_ms: 10 });
    let (r, ev) = log.apply(Command::LeaseRevoke { id: 3 });
    assert_eq!((r.revision, ev.len()), (5, 0));
}

#[test]
fn deleting_a_leased_key_detaches_it() {
    let mut log = Log::new();
    log.apply(Command::LeaseGrant { id: 1, ttl_ms: 10 });
    log.apply(put("a", "1", Some(1)));
    log.apply(put("b", "1", Some(1)));
    log.apply(del("a", false));
    assert_eq!(log.store.lease(1).unwrap().keys, vec!["b".to_owned()]);
    let (r, ev) = log.apply(Command::LeaseRevoke { id: 1 });
    assert_eq!((r.revision, ev.len()), (4, 1));
}

#[test]
fn range_is_sorted_and_limited() {
    let mut log = Log::new();
    for k in ["svc/b", "svc/a", "svd/x", "svc/c", "sv"] {
        log.put(k, k);
    }
    let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    let (kvs, more) = log.store.range("svc/", 0);
    assert_eq!(keys(kvs), vec!["svc/a", "svc/b", "svc/c"]);
    assert!(!more);
    let (kvs, more) = log.store.range("svc/", 2);
    assert_eq!(keys(kvs), vec!["svc/a", "svc/b"]);
    assert!(more);
    let (kvs, more) = log.store.range("svc/", 3);
    assert_eq!((kvs.len(), more), (3, false));
    assert_eq!(log.store.range("", 0).0.len(), 5);
    assert_eq!(log.store.range("zzz", 0), (vec![], false));
}

#[test]
fn limits_and_stale_indexes_never_panic() {
    let mut log = Log::new();
    let big_key = "k".repeat(MAX_KEY_BYTES + 1);
    assert_eq!(
        log.apply(put(&big_key, "v", None)).0.error(),
        Some(&CommandError::KeyTooLarge { len: 1025 })
    );
    assert_eq!(
        log.apply(put(&"k".repeat(MAX_KEY_BYTES), "v", None))
            .0
            .revision,
        1
    );
    let big_value = Command::Put {
        key: "k".into(),
        value: vec![0; MAX_VALUE_BYTES + 1],
        lease: None,
        cas_mod_revision: None,
    };
    assert_eq!(
        log.apply(big_value).0.error(),
        Some(&CommandError::ValueTooLarge {
            len: MAX_VALUE_BYTES + 1
        })
    );
    assert_eq!(
        log.apply(put("", "v", None)).0.error(),
        Some(&CommandError::EmptyKey)
    );
    assert_eq!(
        log.apply(del("", false)).0.error(),
        Some(&CommandError::EmptyKey)
    );
    assert_eq!(
        log.apply(del(&big_key, true)).0.error(),
        Some(&CommandError::KeyTooLarge { len: 1025 })
    );
    assert_eq!(log.store.last_applied_index(), 6);
    let (r, ev) = log.store.apply(6, &put("x", "1", None));
    assert_eq!(
        r.error(),
        Some(&CommandError::StaleIndex {
            index: 6,
            last_applied: 6
        })
    );
    assert!(ev.is_empty());
    assert!(log.store.get("x").is_none());
    log.store.note_applied(10);
    log.store.note_applied(8);
    assert_eq!(log.store.last_applied_index(), 10);
}

#[test]
fn watch_history_resumes_and_compacts() {
    let mut log = Log::new();
    log.put("a", "1"); // 1
    log.put("b", "1"); // 2
    log.put("a", "2"); // 3
    log.apply(del("a", false)); // 4
    let revs = |evs: Vec<Event>| evs.iter().map(|e| e.revision).collect::<Vec<_>>();
    assert_eq!(
        revs(log.store.events_since(0, "a", false).unwrap()),
        vec![1, 3, 4]
    );
    assert_eq!(
        revs(log.store.events_since(2, "", true).unwrap()),
        vec![2, 3, 4]
    );
    assert_eq!(
        revs(log.store.events_since(5, "", true).unwrap()),
        Vec::<u64>::new()
    );

    let (r, _) = log.apply(Command::Compact { revision: 2 });
    assert_eq!(
        r.outcome,
        Outcome::Compacted {
            compacted_revision: 2
        }
    );
    assert_eq!(r.revision, 4);
    assert_eq!(
        log.store.events_since(2, "", true),
        Err(Compacted {
            compacted_revision: 2
        })
    );
    assert_eq!(
        log.store.events_since(0, "", true),
        Err(Compacted {
            compacted_revision: 2
        })
    );
    assert_eq!(
        revs(log.store.events_since(3, "", true).unwrap()),
        vec![3, 4]
    );
    assert_eq!(
        log.apply(Command::Compact { revision: 2 }).0.error(),
        Some(&CommandError::AlreadyCompacted {
            revision: 2,
            compacted_revision: 2
        })
    );
    assert_eq!(
        log.apply(Command::Compact { revision: 5 }).0.error(),
        Some(&CommandError::CompactFuture {
            revision: 5,
            current: 4
        })
    );
}

#[test]
fn history_ring_overflow_advances_compacted_revision() {
    let mut log = Log {
        store: Store::with_history_limit(3),
        index: 0,
    };
    for i in 0..5 {
        log.put("k", &i.to_string()); // revisions 1..=5
    }
    log.apply(del("", true)); // 6
    assert_eq!(log.store.compacted_revision(), 3);
    assert_eq!(
        log.store.events_since(3, "k", false),
        Err(Compacted {
            compacted_revision: 3
        })
    );
    let evs = log.store.events_since(4, "k", false).unwrap();
    assert_eq!(
        evs.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(evs[0].kv.value, b"3");

    let mut none = Log {
        store: Store::with_history_limit(0),
        index: 0,
    };
    none.put("k", "v");
    assert_eq!(none.store.compacted_revision(), 1);
    assert_eq!(none.store.events_since(2, "", true), Ok(vec![]));
}

#[test]
fn a_batch_applies_like_consecutive_entries_with_one_revision_each() {
    let mut log = Log::new();
    log.put("a", "0");
    let (resp, events) = log.apply(Command::Batch(vec![
        put("a", "1", None),
        cas("b", "x", 5), // refused: b does not exist at mod_revision 5
        put("b", "2", None),
        Command::Delete {
            key: "a".into(),
            prefix: false,
        },
        Command::Batch(vec![]),
    ]));
    let Outcome::Batch { responses } = resp.outcome else {
        panic!("not a batch answer: {resp:?}");
    };
    let revisions: Vec<u64> = responses.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, [2, 2, 3, 4, 4]);
    assert!(matches!(responses[1].outcome, Outcome::Rejected(_)));
    assert_eq!(
        responses[4].outcome,
        Outcome::Rejected(CommandError::NestedBatch)
    );
    assert_eq!(resp.revision, 4);
    let event_revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(event_revisions, [2, 3, 4]);
    assert_eq!(log.store.revision(), 4);
    // The index is spent once for the whole batch: replaying it is stale.
    let (stale, _) = log.store.apply(log.index, &put("c", "3", None));
    assert!(matches!(
        stale.outcome,
        Outcome::Rejected(CommandError::StaleIndex { .. })
    ));
}

/// Everything `precheck` refuses, the store refuses the same way when applying; what it
/// passes is left to the store (a compare, a lease in a transaction's branch).
#[test]
fn precheck_refuses_what_apply_would_refuse_without_changing_anything() {
    let mut log = Log::new();
    log.apply(Command::LeaseGrant {
        id: 7,
        ttl_ms: 1000,
    });
    let big_key = "k".repeat(MAX_KEY_BYTES + 1);
    let op_put = |key: &str| Op::Put {
        key: key.into(),
        value: b"v".to_vec(),
        lease: None,
    };
    let cases: Vec<(Command, CommandError)> = vec![
        (
            put(&big_key, "v", None),
            CommandError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
            },
        ),
        (put("", "v", None), CommandError::EmptyKey),
        (
            Command::Put {
                key: "k".into(),
                value: vec![0; MAX_VALUE_BYTES + 1],
                lease: None,
                cas_mod_revision: None,
            },
            CommandError::ValueTooLarge {
                len: MAX_VALUE_BYTES + 1,
            },
        ),
        (
            put("k", "v", Some(8)),
            CommandError::LeaseNotFound { id: 8 },
        ),
        (
            Command::LeaseRevoke { id: 8 },
            CommandError::LeaseNotFound { id: 8 },
        ),
        (
            Command::LeaseGrant { id: 0, ttl_ms: 5 },
            CommandError::InvalidLeaseId,
        ),
        (
            Command::LeaseGrant { id: 9, ttl_ms: 0 },
            CommandError::InvalidTtl,
        ),
        (
            Command::Txn(Txn {
                success: (0..MAX_TXN_OPS + 1)
                    .map(|i| op_put(&format!("k{i}")))
                    .collect(),
                ..Txn::default()
            }),
            CommandError::TooManyOps {
                len: MAX_TXN_OPS + 1,
            },
        ),
        (
            // The failure branch counts too, though the compares might never choose it.
            Command::Txn(Txn {
                failure: vec![op_put(&big_key)],
                ..Txn::default()
            }),
            CommandError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
            },
        ),
        (
            Command::Delete {
                key: big_key.clone(),
                prefix: true,
            },
            CommandError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
            },
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(log.store.precheck(&cmd), Err(want.clone()), "{cmd:?}");
        let before = log.store.revision();
        let (resp, events) = log.apply(cmd.clone());
        if !matches!(cmd, Command::Txn(ref t) if t.failure.len() == 1) {
            assert_eq!(resp.error(), Some(&want), "apply agrees: {cmd:?}");
        }
        assert!(events.is_empty());
        assert_eq!(log.store.revision(), before);
    }
    for fine in [
        put("k", "v", Some(7)),
        put("k", "v", None),
        Command::LeaseRevoke { id: 7 },
        Command::Delete {
            key: String::new(),
            prefix: true,
        },
        Command::Txn(Txn {
            success: (0..MAX_TXN_OPS).map(|i| op_put(&format!("k{i}"))).collect(),
            ..Txn::default()
        }),
    ] {
        assert_eq!(log.store.precheck(&fine), Ok(()), "{fine:?}");
    }
}
