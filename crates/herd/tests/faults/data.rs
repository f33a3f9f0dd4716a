//! The registry under faults, in network namespaces: real `herd server` processes, one
//! per namespace, hit with kill -9, SIGSTOP/SIGCONT and nftables partitions while clients
//! write, count, read, hold leases and watch. Each property comes from docs/registry.md's
//! promises. Skipped with "skipped: <reason>" where the machine cannot build the lab
//! (not root, no iproute2/nftables); see docs/RELIABILITY.md.

use herd_testkit::faults::http::{b64, Line, Watch};
use herd_testkit::faults::netns::Lab;
use herd_testkit::faults::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

fn addrs(lab: &Lab) -> Vec<SocketAddr> {
    lab.nodes.iter().map(|n| n.addr).collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Outcome of one client call that changes state.
enum Outcome {
    Acked(u64),
    /// The change certainly did not happen (a failed compare).
    Refused,
    /// No answer, or an error that does not say whether the write was applied.
    Unknown,
}

fn write_outcome(r: Result<herd_testkit::faults::http::Resp, String>, what: &str) -> Outcome {
    match r {
        Ok(r) if r.status == 200 => match r.json()["revision"].as_u64() {
            Some(rev) if r.json()["succeeded"] != false => Outcome::Acked(rev),
            Some(_) => Outcome::Refused,
            None => panic!("{what}: 200 without a revision: {}", r.text()),
        },
        // A 4xx for a well-formed request is a bug, not a fault outcome.
        Ok(r) if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 => {
            panic!("{what}: {} {}", r.status, r.text())
        }
        _ => Outcome::Unknown,
    }
}

// ------------------------------------------------------- 1. acknowledged writes survive

#[test]
fn kill9_of_leader_and_of_all_nodes_loses_no_acknowledged_write() {
    let Some((mut lab, mut rng)) = lab("kill9", 3) else {
        return;
    };
    start_cluster(&mut lab);
    let addrs = addrs(&lab);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (mut kills, mut results) = (0, Vec::new());
    thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (addrs, stop) = (&addrs, &stop);
                s.spawn(move || {
                    let (mut acked, mut unknown) = (Vec::new(), 0u64);
                    let mut node = w;
                    for seq in 0..200_000u64 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let key = format!("w/{w}/{seq:06}");
                        let r = put(
                            addrs[node % addrs.len()],
                            &format!("/v1/kv/{key}"),
                            format!("v{seq}").as_bytes(),
                        );
                        match write_outcome(r, &key) {
                            Outcome::Acked(_) => acked.push(key),
                            Outcome::Refused => unreachable!("a plain put has no compare"),
                            Outcome::Unknown => {
                                unknown += 1;
                                node += 1;
                                thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                    (acked, unknown)
                })
            })
            .collect();
        let end = Instant::now() + secs(fault_seconds());
        while Instant::now() < end {
            thread::sleep(rng.ms(500, 1500));
            let l = wait_leader(&lab, |_| true);
            lab.nodes[l].kill9();
            kills += 1;
            thread::sleep(rng.ms(300, 1500));
            lab.nodes[l].start(None);
        }
        // Then every node at once, writes still in flight.
        thread::sleep(rng.ms(300, 1000));
        for n in &mut lab.nodes {
            n.kill9();
        }
        stop.store(true, Ordering::SeqCst);
        results = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect();
    });
    for n in &mut lab.nodes {
        n.start(None);
    }
    let l = wait_leader(&lab, |_| true);
    let mut present = BTreeMap::new();
    for w in 0..4 {
        present.extend(all_keys(lab.nodes[l].addr, &format!("w/{w}/")).expect("read back"));
    }
    let acked: Vec<&String> = results.iter().flat_map(|(a, _)| a).collect();
    let unknown: u64 = results.iter().map(|(_, u)| u).sum();
    let lost: Vec<&&String> = acked
        .iter()
        .filter(|k| !present.contains_key(**k))
        .collect();
    eprintln!(
        "kill9: {} s, {kills} leader kills + 1 kill of all nodes, acknowledged {}, unknown {unknown}, present {}, lost {}",
        started.elapsed().as_secs(),
        acked.len(),
        present.len(),
        lost.len()
    );
    assert!(
        acked.len() > 100,
        "too few writes acknowledged to mean anything: {}",
        acked.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    for k in &acked {
        let seq = k
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim_start_matches('0');
        let want = format!("v{}", if seq.is_empty() { "0" } else { seq });
        assert_eq!(present[*k], want, "value of {k}");
    }
    // Each key was tried once, so a key present but not acknowledged is an unknown one.
    assert!(
        present.len() as u64 <= acked.len() as u64 + unknown,
        "more keys ({}) than acknowledged ({}) + unknown ({unknown}) writes",
        present.len(),
        acked.len()
    );
}

// ------------------------------------------------------- 2. CAS counter

#[test]
fn cas_counter_equals_acknowledged_increments_under_kill_pause_partition() {
    let Some((mut lab, mut rng)) = lab("cas-counter", 3) else {
        return;
    };
    start_cluster(&mut lab);
    let addrs = addrs(&lab);
    assert!(matches!(
        write_outcome(put(addrs[0], "/v1/kv/counter", b"0"), "init"),
        Outcome::Acked(_)
    ));
    let stop = AtomicBool::new(false);
    let (acked, unknown, refused) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let mut faults_done = Vec::new();
    thread::scope(|s| {
        for c in 0..3usize {
            let (addrs, stop, acked, unknown, refused) =
                (&addrs, &stop, &acked, &unknown, &refused);
            s.spawn(move || {
                let mut node = c;
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let a = addrs[node % addrs.len()];
                    let Ok(Some((v, rev))) = read_kv(a, "counter") else {
                        node += 1;
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let v: u64 = v.parse().unwrap_or_else(|_| panic!("counter holds {v:?}"));
                    let txn = json!({
                        "compares": [{"key": "counter", "target": {"mod_revision": rev}, "op": "eq"}],
                        "success": [{"put": {"key": "counter", "value": b64((v + 1).to_string().as_bytes())}}],
                        "failure": []
                    });
                    match write_outcome(post(a, "/v1/txn", &txn.to_string()), "increment") {
                        Outcome::Acked(_) => acked.fetch_add(1, Ordering::SeqCst),
                        Outcome::Refused => refused.fetch_add(1, Ordering::SeqCst),
                        Outcome::Unknown => {
                            node += 1;
                            unknown.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            });
        }
        let end = Instant::now() + secs(fault_seconds());
        // Round-robin from a random start, so a short run still sees all three.
        let (offset, mut k) = (rng.below(3), 0);
        while Instant::now() < end {
            thread::sleep(rng.ms(300, 1000));
            let l = wait_leader(&lab, |_| true);
            let kind = (offset + k) % 3;
            k += 1;
            match kind {
                0 => {
                    lab.nodes[l].kill9();
                    thread::sleep(rng.ms(300, 1500));
                    lab.nodes[l].start(None);
                    faults_done.push("kill -9");
                }
                1 => {
                    lab.nodes[l].pause();
                    thread::sleep(rng.ms(1000, 3000));
                    lab.nodes[l].resume();
                    faults_done.push("SIGSTOP");
                }
                _ => {
                    lab.partition(l);
                    thread::sleep(rng.ms(1500, 4000));
                    lab.heal(l);
                    faults_done.push("partition");
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    let l = wait_leader(&lab, |_| true);
    let final_value: u64 = eventually("the counter", secs(10), || {
        read_kv(lab.nodes[l].addr, "counter").ok().flatten()
    })
    .0
    .parse()
    .expect("counter is a number");
    let (acked, unknown, refused) = (
        acked.into_inner(),
        unknown.into_inner(),
        refused.into_inner(),
    );
    eprintln!(
        "cas-counter: faults {faults_done:?}; acknowledged {acked}, refused {refused}, unknown {unknown}, final {final_value}"
    );
    assert!(acked > 20, "too few increments acknowledged: {acked}");
    assert!(
        acked <= final_value && final_value <= acked + unknown,
        "final counter {final_value} outside [acknowledged {acked}, acknowledged + unknown {}]",
        acked + unknown
    );
}

// ------------------------------------------------------- 3. no stale linearizable read

/// Counts a stale read and keeps the first few for the failure message.
fn note_stale(stale: &Mutex<(u64, Vec<String>)>, what: String) {
    let mut s = stale.lock().unwrap_or_else(|e| e.into_inner());
    s.0 += 1;
    if s.1.len() < 10 {
        s.1.push(what);
    }
}

#[test]
fn isolated_leader_never_serves_a_stale_linearizable_read() {
    let Some((mut lab, mut rng)) = lab("stale-read", 3) else {
        return;
    };
    start_cluster(&mut lab);
    let addrs = addrs(&lab);
    let floor = AtomicU64::new(0);
    let isolated = AtomicUsize::new(usize::MAX);
    let stop = AtomicBool::new(false);
    let stale = Mutex::new((0u64, Vec::new()));
    let (reads_ok, reads_err, writes) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    // Two isolations in CI; one more for every 4 s of HERD_FAULT_SECONDS beyond that.
    let rounds = (fault_seconds() / 4).max(2);
    thread::scope(|s| {
        // One writer through whichever nodes are not isolated; `floor` is the highest
        // revision acknowledged so far, published before a read that must see it starts.
        {
            let (addrs, floor, isolated, stop, writes) =
                (&addrs, &floor, &isolated, &stop, &writes);
            s.spawn(move || {
                for i in 0..100_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut node = i as usize % addrs.len();
                    if node == isolated.load(Ordering::SeqCst) {
                        node = (node + 1) % addrs.len();
                    }
                    let r = put(addrs[node], "/v1/kv/lin", i.to_string().as_bytes());
                    match write_outcome(r, "put lin") {
                        Outcome::Acked(rev) => {
                            floor.fetch_max(rev, Ordering::SeqCst);
                            writes.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => thread::sleep(Duration::from_millis(50)),
                    }
                }
            });
        }
        // Readers on every node, the isolated one included.
        for r in 0..addrs.len() {
            let (addrs, floor, stop, stale, reads_ok, reads_err) =
                (&addrs, &floor, &stop, &stale, &reads_ok, &reads_err);
            s.spawn(move || {
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let must_see = floor.load(Ordering::SeqCst);
                    match read_kv(addrs[r], "lin") {
                        Ok(Some((_, rev))) => {
                            reads_ok.fetch_add(1, Ordering::SeqCst);
                            if rev < must_see {
                                note_stale(
                                    stale,
                                    format!(
                                    "node {}: mod_revision {rev} after {must_see} was acknowledged",
                                    r + 1
                                ),
                                );
                            }
                        }
                        Ok(None) if must_see > 0 => {
                            note_stale(
                                stale,
                                format!(
                                "node {}: key missing after revision {must_see} was acknowledged",
                                r + 1
                            ),
                            );
                        }
                        _ => {
                            reads_err.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
        for _ in 0..rounds {
            thread::sleep(secs(1));
            let l = wait_leader(&lab, |_| true);
            isolated.store(l, Ordering::SeqCst);
            let before = writes.load(Ordering::SeqCst);
            lab.partition(l);
            let new_leader = wait_leader(&lab, |i| i != l);
            thread::sleep(rng.ms(2000, 4000));
            let during = writes.load(Ordering::SeqCst) - before;
            lab.heal(l);
            isolated.store(usize::MAX, Ordering::SeqCst);
            eprintln!(
                "stale-read: node {} isolated, node {} took over, {during} writes acknowledged meanwhile",
                l + 1,
                new_leader + 1
            );
            assert!(
                during > 0,
                "the majority made no progress while node {} was cut off",
                l + 1
            );
        }
        thread::sleep(secs(1));
        stop.store(true, Ordering::SeqCst);
    });
    let stale = stale.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "stale-read: {} writes, {} reads answered, {} refused or timed out, {} stale",
        writes.into_inner(),
        reads_ok.into_inner(),
        reads_err.into_inner(),
        stale.0
    );
    assert_eq!(
        stale.0, 0,
        "stale linearizable reads, the first: {:?}",
        stale.1
    );
}

// ------------------------------------------------------- 5. watch resume across kills

#[test]
fn watch_resumes_across_node_kills_without_gap_or_duplicate() {
    let Some((mut lab, mut rng)) = lab("watch-resume", 3) else {
        return;
    };
    start_cluster(&mut lab);
    let addrs = addrs(&lab);
    let first = match write_outcome(put(addrs[0], "/v1/kv/wr/start", b"0"), "start") {
        Outcome::Acked(rev) => rev,
        _ => panic!("the first write was not acknowledged"),
    };
    let stop_writing = AtomicBool::new(false);
    let watched = AtomicUsize::new(0);
    let last_rev = AtomicU64::new(0);
    let final_rev = AtomicU64::new(u64::MAX);
    let acked: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
    let (mut kills, mut events, mut resumes) = (0, Vec::new(), 0);
    thread::scope(|s| {
        {
            let (addrs, stop, acked) = (&addrs, &stop_writing, &acked);
            s.spawn(move || {
                let mut node = 1;
                for i in 0..100_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let key = format!("wr/{i:06}");
                    let r = put(addrs[node % addrs.len()], &format!("/v1/kv/{key}"), b"x");
                    match write_outcome(r, &key) {
                        Outcome::Acked(rev) => acked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((key, rev)),
                        _ => {
                            node += 1;
                            thread::sleep(Duration::from_millis(50));
                        }
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            });
        }
        // The watcher: on each end of stream, resume on the next node from the last
        // revision seen + 1, as docs/registry.md tells a client to.
        let watcher = {
            let (addrs, watched, last_rev, final_rev) = (&addrs, &watched, &last_rev, &final_rev);
            s.spawn(move || {
                let (mut seen, mut resumes) = (Vec::new(), 0u32);
                let mut node = 0usize;
                let give_up = Instant::now() + secs(60 + 4 * fault_seconds());
                'outer: while Instant::now() < give_up {
                    let from = last_rev.load(Ordering::SeqCst).max(first - 1) + 1;
                    let i = node % addrs.len();
                    watched.store(i, Ordering::SeqCst);
                    let path = format!("/v1/watch/wr/?prefix&from_revision={from}");
                    let mut w = match Watch::open(addrs[i], &path, REQ) {
                        Ok(w) => w,
                        Err(_) => {
                            node += 1;
                            thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    };
                    resumes += 1;
                    loop {
                        if last_rev.load(Ordering::SeqCst) >= final_rev.load(Ordering::SeqCst) {
                            break 'outer;
                        }
                        match w.next(Duration::from_millis(500)) {
                            Line::Json(v) if v["type"] == "progress" => {}
                            Line::Json(v) => {
                                let rev = v["revision"]
                                    .as_u64()
                                    .unwrap_or_else(|| panic!("watch line without revision: {v}"));
                                let key = v["kv"]["key"].as_str().unwrap_or_default().to_string();
                                seen.push((key, rev));
                                last_rev.store(rev, Ordering::SeqCst);
                            }
                            Line::TimedOut => {}
                            Line::Ended(_) => {
                                node += 1;
                                break;
                            }
                        }
                    }
                }
                (seen, resumes)
            })
        };
        let end = Instant::now() + secs(fault_seconds());
        while Instant::now() < end {
            thread::sleep(rng.ms(700, 1500));
            // Kill the node being watched, so the stream breaks mid-flow.
            let i = watched.load(Ordering::SeqCst);
            lab.nodes[i].kill9();
            kills += 1;
            thread::sleep(rng.ms(300, 1200));
            lab.nodes[i].start(None);
        }
        stop_writing.store(true, Ordering::SeqCst);
        let l = wait_leader(&lab, |_| true);
        let rev = eventually("the final revision", secs(10), || {
            get(lab.nodes[l].addr, "/v1/kv/wr/?prefix&limit=1")
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.json()["revision"].as_u64())
        });
        final_rev.store(rev, Ordering::SeqCst);
        (events, resumes) = watcher.join().expect("watcher");
    });
    let final_rev = final_rev.into_inner();
    let acked = acked.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "watch-resume: {kills} kills of the watched node, {resumes} watch connections, {} events, revisions {first}..={final_rev}, {} writes acknowledged",
        events.len(),
        acked.len()
    );
    // Only this test writes, each write one key under wr/: the events must be every
    // revision from the first to the last exactly once, in order. The last may be past the
    // final revision read: a write in flight when the writers were told to stop (or one
    // whose answer was lost) can commit after that read.
    let revs: Vec<u64> = events.iter().map(|(_, r)| *r).collect();
    let top = revs.last().copied().unwrap_or(0).max(final_rev);
    let want: Vec<u64> = (first..=top).collect();
    if revs != want {
        let got: BTreeSet<u64> = revs.iter().copied().collect();
        let missing: Vec<u64> = want.iter().filter(|r| !got.contains(r)).copied().collect();
        let dups = revs.len() - got.len();
        panic!(
            "watch events are not exactly revisions {first}..={top} (final revision read: {final_rev}): {} events, missing {missing:?}, {dups} duplicates, out of order: {}",
            revs.len(),
            revs.windows(2).any(|w| w[0] >= w[1])
        );
    }
    let by_rev: BTreeMap<u64, &str> = events.iter().map(|(k, r)| (*r, k.as_str())).collect();
    for (key, rev) in &acked {
        assert_eq!(
            by_rev.get(rev),
            Some(&key.as_str()),
            "acknowledged write {key} at revision {rev}"
        );
    }
    assert!(kills > 0 && resumes >= 2, "the watch never had to resume");
}
