use super::*;
use crate::command::{Command, Compare, CompareOp, CompareTarget, Op, Txn};

fn workload() -> Vec<Command> {
    let put = |key: &str, value: &str, lease: Option<u64>| Command::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease,
        cas_mod_revision: None,
    };
    vec![
        Command::LeaseGrant {
            id: 5,
            ttl_ms: 3000,
        },
        put("services/api/a", "{}", Some(5)),
        put("services/api/b", "{}", Some(5)),
        put("config/x", "1", None),
        put("config/x", "2", None),
        Command::Delete {
            key: "services/api/b".into(),
            prefix: false,
        },
        Command::Compact { revision: 2 },
        Command::LeaseGrant { id: 6, ttl_ms: 100 },
    ]
}

fn more_commands() -> Vec<Command> {
    vec![
        Command::Txn(Txn {
            compares: vec![Compare {
                key: "config/x".into(),
                target: CompareTarget::Version(2),
                op: CompareOp::Eq,
            }],
            success: vec![Op::Put {
                key: "config/y".into(),
                value: vec![0xff, 0],
                lease: Some(6),
            }],
            failure: vec![],
        }),
        Command::LeaseRevoke { id: 5 },
        Command::Compact { revision: 3 },
        Command::Delete {
            key: "config/".into(),
            prefix: true,
        },
    ]
}

fn build() -> Store {
    let mut s = Store::new();
    for (i, c) in workload().iter().enumerate() {
        s.apply(i as u64 + 1, c);
    }
    s
}

#[test]
fn round_trip_is_identical_and_stays_identical() {
    let original = build();
    assert_eq!(original.revision(), 5);
    assert_eq!(original.compacted_revision(), 2);
    let bytes = original.to_snapshot();
    let mut restored = Store::from_snapshot(&bytes).unwrap();
    assert_eq!(restored, original);
    assert_eq!(restored.to_snapshot(), bytes);
    assert_eq!(restored.last_applied_index(), 8);
    assert_eq!(
        restored.lease(5).unwrap().keys,
        vec!["services/api/a".to_owned()]
    );

    let mut original = original;
    for (i, c) in more_commands().iter().enumerate() {
        let index = 9 + i as u64;
        assert_eq!(original.apply(index, c), restored.apply(index, c));
    }
    assert_eq!(original.revision(), 8);
    assert_eq!(original.to_snapshot(), restored.to_snapshot());
    assert_eq!(
        original.events_since(3, "", true),
        restored.events_since(3, "", true)
    );
}

#[test]
fn snapshot_bytes_are_the_documented_shape() {
    let mut s = Store::with_history_limit(2);
    s.apply(
        1,
        &Command::Put {
            key: "k".into(),
            value: b"hi".to_vec(),
            lease: None,
            cas_mod_revision: None,
        },
    );
    assert_eq!(
        String::from_utf8(s.to_snapshot()).unwrap(),
        concat!(
            r#"{"format":1,"revision":1,"compacted_revision":0,"last_applied_index":1,"#,
            r#""history_limit":2,"kvs":[{"key":"k","value":"aGk=","create_revision":1,"#,
            r#""mod_revision":1,"version":1,"lease":null}],"leases":[],"history":[{"type":"put","#,
            r#""kv":{"key":"k","value":"aGk=","create_revision":1,"mod_revision":1,"version":1,"#,
            r#""lease":null},"revision":1}]}"#
        )
    );
}

#[test]
fn corrupt_snapshots_are_refused() {
    assert!(matches!(
        Store::from_snapshot(b"not json"),
        Err(SnapshotError::Decode(_))
    ));
    let good = String::from_utf8(build().to_snapshot()).unwrap();
    let bad_format = good.replacen(r#""format":1"#, r#""format":2"#, 1);
    assert!(matches!(
        Store::from_snapshot(bad_format.as_bytes()),
        Err(SnapshotError::Format(2))
    ));
    // A key on a lease that the snapshot does not hold.
    let missing_lease = good.replacen(r#"{"id":5,"ttl_ms":3000},"#, "", 1);
    assert_ne!(missing_lease, good);
    assert!(matches!(
        Store::from_snapshot(missing_lease.as_bytes()),
        Err(SnapshotError::Invalid(_))
    ));
    let behind = good.replacen(r#""revision":5"#, r#""revision":1"#, 1);
    assert!(matches!(
        Store::from_snapshot(behind.as_bytes()),
        Err(SnapshotError::Invalid(_))
    ));
}

#[test]
fn commands_serialize_stably() {
    let cmd = Command::Put {
        key: "a".into(),
        value: b"v".to_vec(),
        lease: Some(3),
        cas_mod_revision: None,
    };
    let json = serde_json::to_string(&cmd).unwrap();
    assert_eq!(
        json,
        r#"{"put":{"key":"a","value":"dg==","lease":3,"cas_mod_revision":null}}"#
    );
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd);
    // Optional fields may be left out.
    let minimal: Command = serde_json::from_str(r#"{"put":{"key":"a","value":""}}"#).unwrap();
    assert!(matches!(
        minimal,
        Command::Put {
            lease: None,
            cas_mod_revision: None,
            ..
        }
    ));
    for c in workload().into_iter().chain(more_commands()) {
        let back: Command = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}

/// A tiny deterministic generator, so the random workload is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn random_command(r: &mut Lcg) -> Command {
    let key = ["a", "b", "ab", "c/1", "c/2", ""][r.next(6) as usize].to_owned();
    let lease = [None, Some(1), Some(2), Some(3)][r.next(4) as usize];
    match r.next(8) {
        0 | 1 => Command::Put {
            key,
            value: vec![r.next(256) as u8; r.next(4) as usize],
            lease,
            cas_mod_revision: [None, Some(0), Some(r.next(20))][r.next(3) as usize],
        },
        2 => Command::Delete {
            key,
            prefix: r.next(2) == 0,
        },
        3 => Command::LeaseGrant {
            id: r.next(4),
            ttl_ms: r.next(3),
        },
        4 => Command::LeaseRevoke { id: r.next(4) },
        5 => Command::Compact {
            revision: r.next(400),
        },
        _ => Command::Txn(Txn {
            compares: vec![Compare {
                key: key.clone(),
                target: CompareTarget::Version(r.next(3)),
                op: CompareOp::Greater,
            }],
            success: vec![
                Op::Put {
                    key: key.clone(),
                    value: vec![1],
                    lease,
                },
                Op::Delete {
                    key: "c/".into(),
                    prefix: true,
                },
            ],
            failure: vec![Op::Get {
                key,
                prefix: true,
                limit: r.next(3),
            }],
        }),
    }
}

#[test]
fn random_workload_is_deterministic_across_snapshots() {
    let mut r = Lcg(42);
    let cmds: Vec<Command> = (0..3000).map(|_| random_command(&mut r)).collect();
    let mut a = Store::with_history_limit(50);
    let mut b = None::<Store>;
    for (i, c) in cmds.iter().enumerate() {
        let index = i as u64 + 1;
        if i == 1500 {
            b = Some(Store::from_snapshot(&a.to_snapshot()).unwrap());
        }
        let out = a.apply(index, c);
        if let Some(b) = b.as_mut() {
            assert_eq!(b.apply(index, c), out, "command {i}: {c:?}");
        }
        // Lease membership always mirrors the keys' own lease field.
        for l in a.leases() {
            for k in &l.keys {
                assert_eq!(a.get(k).and_then(|kv| kv.lease), Some(l.id));
            }
        }
        for kv in a.range("", 0).0 {
            if let Some(id) = kv.lease {
                assert!(a.lease(id).unwrap().keys.contains(&kv.key));
            }
        }
        assert!(a.revision() - a.compacted_revision() <= 50);
    }
    let b = b.unwrap();
    assert_eq!(a.to_snapshot(), b.to_snapshot());
    assert!(a.revision() > 100, "workload too idle: {}", a.revision());
}
