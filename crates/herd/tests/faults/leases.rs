//! Leases and locks across a leader pause and a partition longer than the TTL, with the
//! real `herd server` in network namespaces (see docs/RELIABILITY.md). Written from
//! docs/registry.md's promise "a failover never expires a lease early" and issue #12:
//! a lease kept alive through the majority survives (with its key and the lock it
//! holds), and a cut-off old leader never answers 200 to a keep-alive for a lease the
//! majority has already expired.

use herd_testkit::faults::http::request;
use herd_testkit::faults::netns::Lab;
use herd_testkit::faults::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const TTL_S: u64 = 3;
const NONE: usize = usize::MAX;

fn lease_id(r: &herd_testkit::faults::http::Resp, what: &str) -> u64 {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let v = r.json();
    v["lease"]
        .as_str()
        .or_else(|| v["id"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no lease id in {}", r.text()))
}

/// Answers from the majority side (any node but `avoid`), retried through elections;
/// None when no node answered anything but errors within 10 s.
fn majority_get(lab: &Lab, avoid: usize, path: &str) -> Option<herd_testkit::faults::http::Resp> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for n in lab.nodes.iter().filter(|n| n.idx != avoid && n.running()) {
            if let Ok(r) = get(n.addr, path) {
                if r.status < 500 {
                    return Some(r);
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A lease kept alive through the majority, a key on it, and a lock held on its own lease.
struct Held {
    lease: u64,
    key: String,
    lock: String,
    lock_lease: u64,
    lock_key: String,
}

fn hold(addr: std::net::SocketAddr, tag: &str) -> Held {
    let grant = post(addr, "/v1/lease", &format!(r#"{{"ttl_s": {TTL_S}}}"#)).expect("grant");
    let lease = lease_id(&grant, "grant");
    let key = format!("lk/{tag}");
    let r = put(addr, &format!("/v1/kv/{key}?lease={lease}"), b"held").expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
    let lock = format!("lk-{tag}");
    let body = format!(r#"{{"ttl_s": {TTL_S}, "wait_s": 5}}"#);
    let r = post(addr, &format!("/v1/lock/{lock}"), &body).expect("lock");
    let lock_lease = lease_id(&r, "lock");
    let lock_key = r.json()["key"].as_str().expect("lock key").to_string();
    Held {
        lease,
        key,
        lock,
        lock_lease,
        lock_key,
    }
}

/// What must hold after a fault: the kept-alive lease, its key, and the lock's owner.
fn check_survivors(lab: &Lab, avoid: usize, when: &str, h: &Held) -> Vec<String> {
    let show = |r: Option<herd_testkit::faults::http::Resp>| {
        r.map(|r| format!("{} {}", r.status, r.text()))
    };
    let mut failures = Vec::new();
    match majority_get(lab, avoid, &format!("/v1/lease/{}", h.lease)) {
        Some(r) if r.status == 200 => {}
        other => failures.push(format!(
            "{when}: lease {} kept alive through the majority is gone: {:?}",
            h.lease,
            show(other)
        )),
    }
    match majority_get(lab, avoid, &format!("/v1/kv/{}", h.key)) {
        Some(r) if r.status == 200 => {}
        other => failures.push(format!(
            "{when}: key {} on lease {} is gone: {:?}",
            h.key,
            h.lease,
            show(other)
        )),
    }
    match majority_get(lab, avoid, &format!("/v1/lock/{}", h.lock)) {
        Some(r) if r.status == 200 && r.json()["owner"] == h.lock_key.as_str() => {}
        other => failures.push(format!(
            "{when}: lock {} lost its owner {}: {:?}",
            h.lock,
            h.lock_key,
            show(other)
        )),
    }
    failures
}

#[test]
fn leases_and_locks_survive_leader_pause_and_partition_longer_than_ttl() {
    let Some((mut lab, mut rng)) = lab("leases", 3) else {
        return;
    };
    start_cluster(&mut lab);
    let addrs: Vec<_> = lab.nodes.iter().map(|n| n.addr).collect();
    let l = wait_leader(&lab, |_| true);
    let f = other(&lab, l, 0);

    let first = hold(addrs[f], "pause");
    let held = Mutex::new(vec![first.lease, first.lock_lease]);
    let avoid = AtomicUsize::new(NONE);
    let stop = AtomicBool::new(false);
    let early: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
    let (beats_ok, beats_err) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut info = Vec::new();
    thread::scope(|s| {
        // The holder: keep-alive both leases every 0.5 s through a node on the majority
        // side, as a client that fails over between nodes would.
        {
            let (addrs, avoid, stop, early, beats_ok, beats_err, held) =
                (&addrs, &avoid, &stop, &early, &beats_ok, &beats_err, &held);
            s.spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(300) {
                    let tick = Instant::now();
                    let ids = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    for id in ids {
                        let mut answered = false;
                        for _ in 0..addrs.len() {
                            k += 1;
                            let i = k % addrs.len();
                            if i == avoid.load(Ordering::SeqCst) {
                                continue;
                            }
                            match request(addrs[i], "POST", &format!("/v1/lease/{id}/keepalive"), b"", Duration::from_secs(1)) {
                                Ok(r) if r.status == 200 => {
                                    answered = true;
                                    break;
                                }
                                Ok(r) if r.status == 404 => {
                                    // The first 404 per lease says when it was lost.
                                    early.lock().unwrap_or_else(|e| e.into_inner()).entry(id).or_insert(format!(
                                        "keep-alive of lease {id} via node {} answered 404 at {:.1} s: {}",
                                        i + 1,
                                        started.elapsed().as_secs_f64(),
                                        r.text()
                                    ));
                                    answered = true;
                                    break;
                                }
                                _ => {}
                            }
                        }
                        if answered {
                            beats_ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            beats_err.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    thread::sleep(Duration::from_millis(500).saturating_sub(tick.elapsed()));
                }
            });
        }

        // Phase 1: the leader freezes for twice the TTL, then comes back with its stale
        // view of leadership and of every lease deadline.
        thread::sleep(Duration::from_secs(1));
        let l1 = wait_leader(&lab, |_| true);
        avoid.store(l1, Ordering::SeqCst);
        lab.nodes[l1].pause();
        let pause = Duration::from_secs(2 * TTL_S) + rng.ms(0, 1000);
        thread::sleep(pause);
        lab.nodes[l1].resume();
        thread::sleep(Duration::from_secs(TTL_S + 1));
        info.push(format!(
            "paused leader node {} for {:.1} s",
            l1 + 1,
            pause.as_secs_f64()
        ));
        failures.extend(check_survivors(&lab, l1, "after the pause", &first));

        // Phase 2: the leader is cut off for longer than the TTL. A second lease, kept
        // alive only through the cut-off node, must expire on the majority, and from then
        // on the cut-off node must not answer its keep-alives with 200.
        // A fresh lease, key and lock, so this phase is judged apart from the first.
        let l2 = wait_leader(&lab, |_| true);
        let second = hold(addrs[other(&lab, l2, 0)], "cut");
        held.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([second.lease, second.lock_lease]);
        let v = lease_id(
            &post(addrs[l2], "/v1/lease", &format!(r#"{{"ttl_s": {TTL_S}}}"#)).expect("grant"),
            "grant v",
        );
        avoid.store(l2, Ordering::SeqCst);
        lab.partition(l2);
        let cut_at = Instant::now();
        let expired_at: Mutex<Option<Instant>> = Mutex::new(None);
        let (false_ok, unconfirmed_ok, isolated_other) =
            (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let window = Duration::from_secs(3 * TTL_S) + rng.ms(0, 1000);
        thread::scope(|s2| {
            let (expired_at, false_ok, unconfirmed_ok, isolated_other) =
                (&expired_at, &false_ok, &unconfirmed_ok, &isolated_other);
            let addr = addrs[l2];
            s2.spawn(move || {
                while cut_at.elapsed() < window {
                    let sent = Instant::now();
                    let r = request(
                        addr,
                        "POST",
                        &format!("/v1/lease/{v}/keepalive"),
                        b"",
                        Duration::from_secs(1),
                    );
                    let expired_before = expired_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some_and(|t| t <= sent);
                    match r {
                        Ok(r) if r.status == 200 && expired_before => {
                            false_ok.fetch_add(1, Ordering::SeqCst)
                        }
                        Ok(r) if r.status == 200 => unconfirmed_ok.fetch_add(1, Ordering::SeqCst),
                        _ => isolated_other.fetch_add(1, Ordering::SeqCst),
                    };
                    thread::sleep(Duration::from_millis(500).saturating_sub(sent.elapsed()));
                }
            });
            while cut_at.elapsed() < window {
                let gone =
                    lab.nodes.iter().filter(|n| n.idx != l2).any(|n| {
                        get(n.addr, &format!("/v1/lease/{v}")).is_ok_and(|r| r.status == 404)
                    });
                if gone {
                    let mut at = expired_at.lock().unwrap_or_else(|e| e.into_inner());
                    at.get_or_insert_with(Instant::now);
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        lab.heal(l2);
        let expired_after = expired_at
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t - cut_at);
        info.push(format!(
            "cut off leader node {} for {:.1} s; the majority expired the unkept lease after {:?}; \
             keep-alives on the cut-off node: {} answered 200 before that, {} after it (false), {} errors/timeouts",
            l2 + 1,
            window.as_secs_f64(),
            expired_after,
            unconfirmed_ok.load(Ordering::SeqCst),
            false_ok.load(Ordering::SeqCst),
            isolated_other.load(Ordering::SeqCst)
        ));
        match expired_after {
            None => failures.push(format!(
                "the majority never expired lease {v} (kept alive only through the cut-off node) within {window:?}"
            )),
            Some(_) if false_ok.load(Ordering::SeqCst) > 0 => failures.push(format!(
                "the cut-off old leader answered 200 to {} keep-alive(s) of lease {v} after the majority had expired it",
                false_ok.load(Ordering::SeqCst)
            )),
            Some(_) => {}
        }
        thread::sleep(Duration::from_secs(TTL_S + 1));
        failures.extend(check_survivors(&lab, NONE, "after the partition", &second));
        stop.store(true, Ordering::SeqCst);
    });
    failures.extend(
        early
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_values(),
    );
    for line in &info {
        eprintln!("leases: {line}");
    }
    eprintln!(
        "leases: {} s, keep-alives through the majority: {} answered, {} without any answer",
        started.elapsed().as_secs(),
        beats_ok.into_inner(),
        beats_err.into_inner()
    );
    assert!(
        failures.is_empty(),
        "lease promises broken:\n{}",
        failures.join("\n")
    );
}
