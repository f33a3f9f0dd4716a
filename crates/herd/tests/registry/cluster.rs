//! Registry clusters through the real binary: three nodes losing their leader, snapshot
//! catch-up, watch resume across nodes, auth.

use crate::{rev, EVENT_WAIT};
use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- f. 3-node cluster

async fn assert_cluster_of_three(api: &Api, nodes: &[ServerProc]) {
    let ids: BTreeSet<u64> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]), "node ids");
    for n in nodes {
        eventually(
            &format!("{} lists 3 members, one leader", n.addr),
            Duration::from_secs(5),
            || async {
                let c = api.cluster(n.addr).await.ok()?;
                let members = c["members"].as_array()?;
                let leaders = members.iter().filter(|m| m["role"] == "leader").count();
                let addrs: BTreeSet<String> = members
                    .iter()
                    .map(|m| m["addr"].as_str().unwrap_or("").to_string())
                    .collect();
                let want: BTreeSet<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
                (members.len() == 3 && leaders == 1 && addrs == want && c["leader"].is_u64())
                    .then_some(())
            },
        )
        .await;
    }
}

/// Every key under `prefix` on `addr` (linearizable range), key → value.
async fn all_keys(
    api: &Api,
    addr: std::net::SocketAddr,
    prefix: &str,
) -> BTreeMap<String, Vec<u8>> {
    let r = api
        .get(addr, &format!("/v1/kv/{prefix}?prefix"))
        .await
        .expect("range");
    assert_eq!(r.status, 200, "range on {addr}: {}", r.text());
    r.json()["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_string(),
                unb64(kv["value"].as_str().unwrap()),
            )
        })
        .collect()
}

#[derive(Default)]
struct WriterLog {
    /// (key, acknowledged, started after the kill)
    attempts: Vec<(String, bool, bool)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forwards_writes_and_survives_leader_kill9() {
    let dir = TestDir::new("cluster");
    let mut nodes = start_cluster(&dir, 3, None);
    let api = Api::default();
    assert_cluster_of_three(&api, &nodes).await;

    // A write sent to a follower is forwarded, then readable everywhere (linearizably).
    let leader = wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let follower = (leader + 1) % 3;
    let r = api
        .put(nodes[follower].addr, "fwd", "through a follower")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for n in &nodes {
        let r = api.kv_get(n.addr, "fwd", "?raw").await.unwrap();
        assert_eq!(r.status, 200, "GET on {}: {}", n.addr, r.text());
        assert_eq!(r.bytes.as_ref(), b"through a follower");
    }

    // A writer doing sequential puts round-robin over all nodes, while the leader dies.
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let log = Arc::new(Mutex::new(WriterLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop, killed) = (log.clone(), stop.clone(), killed.clone());
        let api = Api::new(None).with_timeout(Duration::from_secs(3));
        tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst)
                && i < 20_000
                && started.elapsed() < Duration::from_secs(40)
            {
                let key = format!("f/{i:05}");
                let after_kill = killed.load(Ordering::SeqCst);
                let acked = matches!(
                    api.put(addrs[i % addrs.len()], &key, format!("v{i}")).await,
                    Ok(r) if r.status == 200
                );
                log.lock().unwrap().attempts.push((key, acked, after_kill));
                if !acked {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                i += 1;
            }
        })
    };
    let acked_count = |after_kill: bool| {
        log.lock()
            .unwrap()
            .attempts
            .iter()
            .filter(|(_, acked, after)| *acked && (*after || !after_kill))
            .count()
    };
    eventually(
        "30 acknowledged puts before the kill",
        Duration::from_secs(10),
        || async { (acked_count(false) >= 30).then_some(()) },
    )
    .await;
    let old_leader_id = nodes[leader].id;
    nodes[leader].kill9();
    killed.store(true, Ordering::SeqCst);

    let survivors: Vec<&ServerProc> = nodes.iter().filter(|n| n.is_running()).collect();
    let new_leader = wait_for_leader(&api, &survivors).await;
    let new_leader_addr = survivors[new_leader].addr;
    let s = api.status(new_leader_addr).await.unwrap();
    assert_ne!(s["id"], old_leader_id, "{s}");
    eventually(
        "30 acknowledged puts after the kill",
        Duration::from_secs(10),
        || async { (acked_count(true) >= 30).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    let attempts = std::mem::take(&mut log.lock().unwrap().attempts);
    let acked: Vec<&String> = attempts.iter().filter(|a| a.1).map(|a| &a.0).collect();
    let last_acked = acked.last().expect("some acknowledged put").to_string();
    eprintln!(
        "writer: {} attempts, {} acknowledged, {} acknowledged after the kill of node {old_leader_id}; new leader {}",
        attempts.len(),
        acked.len(),
        attempts.iter().filter(|a| a.1 && a.2).count(),
        s["id"]
    );
    for n in &survivors {
        let have = all_keys(&api, n.addr, "f/").await;
        for key in &acked {
            let i: usize = key[2..].parse().unwrap();
            assert_eq!(
                have.get(*key).map(Vec::as_slice),
                Some(format!("v{i}").as_bytes()),
                "acknowledged {key} missing on {} after the leader died ({} of {} attempts acknowledged)",
                n.addr,
                acked.len(),
                attempts.len()
            );
        }
    }

    // The old leader comes back and catches up.
    let old = nodes.iter().position(|n| !n.is_running()).unwrap();
    nodes[old].restart();
    let old_addr = nodes[old].addr;
    eventually(
        "the restarted node serves the last key",
        Duration::from_secs(15),
        || async {
            let r = api
                .kv_get(old_addr, &last_acked, "?serializable")
                .await
                .ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await;
    let leader_status = api.status(new_leader_addr).await.unwrap();
    let target = leader_status["applied_index"].as_u64().unwrap();
    eventually(
        &format!("the restarted node applies up to {target}"),
        Duration::from_secs(15),
        || async {
            let s = api.status(old_addr).await.ok()?;
            (s["applied_index"].as_u64()? >= target).then_some(())
        },
    )
    .await;
    let have = all_keys(&api, old_addr, "f/").await;
    for key in &acked {
        assert!(
            have.contains_key(*key),
            "{key} missing on the restarted node"
        );
    }

    // Every node dies at once (kill -9) and comes back: nothing acknowledged is lost.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.restart();
    }
    wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    for n in &nodes {
        let addr = n.addr;
        eventually(
            &format!("{addr} serves the last acknowledged key after the restart of all nodes"),
            Duration::from_secs(15),
            || async {
                let r = api.kv_get(addr, &last_acked, "?serializable").await.ok()?;
                (r.status == 200).then_some(())
            },
        )
        .await;
        let have = all_keys(&api, addr, "f/").await;
        for key in &acked {
            assert!(
                have.contains_key(*key),
                "acknowledged {key} lost on {addr} after kill -9 of every node"
            );
        }
    }
}

// ---------------------------------------------------------------- g. snapshot catch-up

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_catches_up_from_a_snapshot() {
    let dir = TestDir::new("snapshot");
    let mut nodes = start_cluster(&dir, 3, None);
    let api = Api::default();
    let leader = wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let leader_addr = nodes[leader].addr;
    let f = (leader + 1) % 3;
    nodes[f].kill9();

    const N: usize = 10_000;
    let t = Instant::now();
    // One writer: concurrent writes would share log entries (the leader batches them),
    // and this test needs the log to pass the 5,000-entry snapshot threshold.
    let max_rev = bulk_put(&api, leader_addr, "g/", N, 1).await;
    eprintln!("{N} puts through the leader in {:?}", t.elapsed());
    assert!(max_rev >= N as u64);
    // openraft snapshots when index 4999 (the 5,000th entry) is committed, in the
    // background; the follower, stopped after a handful of entries, must then need it.
    eventually(
        &format!("a snapshot and a compacted log after {N} entries"),
        Duration::from_secs(30),
        || async {
            let ls = api.status(leader_addr).await.ok()?;
            (ls["snapshot_index"].as_u64()? >= 4999 && ls["purged_index"].as_u64()? > 100)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "leader status after the writes: {}",
        api.status(leader_addr).await.unwrap()
    );

    nodes[f].restart();
    let fa = nodes[f].addr;
    let last = format!("g/{:05}", N - 1);
    let leader_rev = api.revision(leader_addr).await;
    eventually(
        "the restarted follower has the last key and the leader's revision",
        Duration::from_secs(20),
        || async {
            let r = api.kv_get(fa, &last, "?serializable").await.ok()?;
            if r.status != 200 || r.json()["value"] != b64(format!("v{}", N - 1).as_bytes()) {
                return None;
            }
            let s = api.status(fa).await.ok()?;
            (s["revision"].as_u64()? == leader_rev).then_some(())
        },
    )
    .await;
    let fs = api.status(fa).await.unwrap();
    eprintln!("follower status after catch-up: {fs}");
    assert!(
        fs["snapshot_index"].as_u64().is_some(),
        "the follower should have installed a snapshot: {fs}"
    );
    let have = all_keys(&api, fa, "g/").await;
    assert_eq!(have.len(), N);
}

/// A node that joins after the log was compacted gets the state as a learner from a
/// snapshot of several chunks (large values make it bigger than one), then votes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_compaction_catches_up_from_a_snapshot() {
    let dir = TestDir::new("snapshot-join");
    let api = Api::new(None).with_timeout(Duration::from_secs(15));
    let n1 = single_node(&dir, &api).await;
    let a = n1.addr;
    for i in 0..4u8 {
        let r = api
            .put(a, &format!("big/{i}"), vec![b'a' + i; 1 << 20])
            .await;
        let r = r.unwrap_or_else(|e| panic!("put big/{i}: {e}"));
        assert_eq!(r.status, 200, "put big/{i}: {}", r.text());
    }
    const N: usize = 5200;
    // One writer, so that each put is one log entry (see above).
    bulk_put(&api, a, "j/", N, 1).await;
    // The snapshot is built in the background once 5,000 entries are applied.
    eventually(
        "the leader took a snapshot and compacted its log",
        Duration::from_secs(30),
        || async { (api.status(a).await.ok()?["purged_index"].as_u64()? > 100).then_some(()) },
    )
    .await;
    let rev = api.revision(a).await;
    let snapshot_bytes = std::fs::metadata(dir.node("n1").join("snapshot.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        snapshot_bytes > 4 << 20,
        "the snapshot ({snapshot_bytes} bytes) should need more than one 4 MiB chunk"
    );

    let n2 = tokio::task::spawn_blocking({
        let (dir2, join) = (dir.node("n2"), Some(a));
        move || ServerProc::start(&dir2, free_port(), join, None)
    })
    .await
    .unwrap();
    let b = n2.addr;
    eventually(
        "the new node has applied the leader's revision",
        Duration::from_secs(30),
        || async { (api.status(b).await.ok()?["revision"].as_u64()? == rev).then_some(()) },
    )
    .await;
    let s = api.status(b).await.unwrap();
    assert!(
        s["snapshot_index"].as_u64().is_some(),
        "the new node should have installed a snapshot: {s}"
    );
    for i in 0..4u8 {
        let r = api
            .kv_get(b, &format!("big/{i}"), "?raw&serializable")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "big/{i} on the new node");
        assert_eq!(r.bytes.as_ref(), vec![b'a' + i; 1 << 20].as_slice());
    }
    assert_eq!(all_keys(&api, b, "j/").await.len(), N);
    let c = api.cluster(a).await.unwrap();
    let roles: Vec<&str> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles.len(), 2, "{c}");
    assert!(!roles.contains(&"learner"), "the new node is a voter: {c}");
}

// ---------------------------------------------------------------- h. watch resume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_on_another_node_without_gap_or_duplicate() {
    let dir = TestDir::new("watch-resume");
    let mut nodes = start_cluster(&dir, 3, None);
    let api = Api::default();
    wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let mut wa = api
        .watch(addrs[0], "h/", "?prefix")
        .await
        .expect("watch on A");

    // Writes through B and C (A is about to die), acknowledged revisions recorded.
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let api = Api::new(None).with_timeout(Duration::from_secs(3));
        let targets = [addrs[1], addrs[2]];
        tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst)
                && i < 20_000
                && started.elapsed() < Duration::from_secs(40)
            {
                let key = format!("h/{i:05}");
                match api.put(targets[i % 2], &key, "x").await {
                    Ok(r) if r.status == 200 => {
                        let rv = r.json()["revision"].as_u64().unwrap();
                        acked.lock().unwrap().push((key, rv));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                i += 1;
            }
        })
    };

    let mut events: Vec<Value> = Vec::new();
    while events.len() < 20 {
        events.push(wa.next_event(EVENT_WAIT).await);
    }
    nodes[0].kill9();
    // Whatever A had already sent still counts.
    while let Some(e) = wa.try_next_event(Duration::from_millis(500)).await {
        events.push(e);
    }
    let from_a = events.len();
    let last = events.last().unwrap()["revision"].as_u64().unwrap();
    let mut wb = api
        .watch(
            addrs[1],
            "h/",
            &format!("?prefix&from_revision={}", last + 1),
        )
        .await
        .expect("watch on B");
    let acked_at_kill = acked.lock().unwrap().len();
    eventually(
        "30 more acknowledged writes after A died",
        Duration::from_secs(15),
        || async { (acked.lock().unwrap().len() >= acked_at_kill + 30).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let max_acked = acked.iter().map(|a| a.1).max().unwrap();
    while events.last().unwrap()["revision"].as_u64().unwrap() < max_acked {
        events.push(wb.next_event(EVENT_WAIT).await);
    }

    eprintln!(
        "{from_a} events from A (last revision {last}), {} in all; {} writes acknowledged",
        events.len(),
        acked.len()
    );
    let revs: Vec<u64> = events
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    for (i, pair) in revs.windows(2).enumerate() {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "gap or duplicate at event {i} ({} from A, resumed on B from {}): {:?}",
            from_a,
            last + 1,
            &revs[i.saturating_sub(3)..(i + 4).min(revs.len())]
        );
    }
    let by_rev: BTreeMap<u64, &str> = events
        .iter()
        .map(|e| {
            (
                e["revision"].as_u64().unwrap(),
                e["kv"]["key"].as_str().unwrap(),
            )
        })
        .collect();
    let first = revs[0];
    for (key, r) in &acked {
        if *r >= first {
            assert_eq!(
                by_rev.get(r),
                Some(&key.as_str()),
                "acknowledged {key} at {r}"
            );
        }
    }
}

// ---------------------------------------------------------------- i. auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_except_for_healthz() {
    let dir = TestDir::new("auth");
    let n = ServerProc::start(&dir.node("n1"), free_port(), None, Some("s3cret"));
    let a = n.addr;
    let anon = Api::default();
    let authed = Api::new(Some("s3cret"));
    let wrong = Api::new(Some("nope"));
    eventually(
        "the node elects itself",
        Duration::from_secs(10),
        || async {
            let s = authed.status(a).await.ok()?;
            (s["role"] == "leader").then_some(())
        },
    )
    .await;

    for r in [
        anon.put(a, "k", "v").await.unwrap(),
        anon.kv_get(a, "k", "").await.unwrap(),
        anon.get(a, "/status").await.unwrap(),
        anon.get(a, "/v1/cluster").await.unwrap(),
        wrong.put(a, "k", "v").await.unwrap(),
        anon.request_with("GET", a, "/v1/kv/k", &[("authorization", "s3cret")], "")
            .await
            .unwrap(),
    ] {
        let msg = error_message(&r, 401);
        assert!(msg.contains("Bearer"), "{msg}");
    }
    let r = anon.get(a, "/healthz").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let r = authed.put(a, "k", "v").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rev(&r), 1, "the unauthorized puts wrote nothing");
    let r = authed.kv_get(a, "k", "?raw").await.unwrap();
    assert_eq!((r.status, r.bytes.as_ref()), (200, b"v".as_slice()));
    assert_eq!(authed.status(a).await.unwrap()["revision"], 1);
}
