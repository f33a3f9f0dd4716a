//! Large values and many concurrent writes through a registry cluster: 1 MiB values
//! committed, caught up by a restarted follower, and write batching that keeps every
//! writer's own revision and answer.

use crate::rev;
use herd_testkit::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------- large values

/// Values up to 1 MiB are accepted; in a cluster one must replicate and commit, and so must
/// a few written at once (which Raft batches into one AppendEntries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commits_large_values() {
    let dir = TestDir::new("large");
    let nodes = start_cluster(&dir, 3, None);
    let api = Api::new(None).with_timeout(Duration::from_secs(15));
    let leader = wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let la = nodes[leader].addr;
    // One alone first.
    let r = api.put(la, "big/one", vec![b'z'; 1 << 20]).await;
    let r = r.unwrap_or_else(|e| panic!("put big/one: {e}"));
    assert_eq!(r.status, 200, "put big/one: {}", r.text());
    let mut tasks = Vec::new();
    for i in 0..4u8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let r = api
                .put(la, &format!("big/{i}"), vec![b'a' + i; 1 << 20])
                .await;
            (i, r.map(|r| (r.status, r.text())))
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        let (status, body) = r.unwrap_or_else(|e| panic!("put big/{i}: {e}"));
        assert_eq!(status, 200, "put big/{i}: {body}");
    }
    for n in &nodes {
        for i in 0..4u8 {
            let r = api
                .kv_get(n.addr, &format!("big/{i}"), "?raw")
                .await
                .unwrap();
            assert_eq!(r.status, 200, "big/{i} on {}", n.addr);
            assert_eq!(r.bytes.len(), 1 << 20);
        }
    }
}

/// A follower that was down while many large values were written catches up on them from
/// the log: the leader must cut its AppendEntries to what fits in one RPC timeout instead
/// of resending the whole backlog forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_on_large_values() {
    let dir = TestDir::new("large-catch-up");
    let mut nodes = start_cluster(&dir, 3, None);
    let api = Api::new(None).with_timeout(Duration::from_secs(15));
    let leader = wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let la = nodes[leader].addr;
    let f = (leader + 1) % 3;
    nodes[f].kill9();
    const BIG: usize = 8;
    for i in 0..BIG {
        let r = api
            .put(la, &format!("big/{i}"), vec![b'a' + i as u8; 1 << 20])
            .await
            .unwrap_or_else(|e| panic!("put big/{i}: {e}"));
        assert_eq!(r.status, 200, "put big/{i}: {}", r.text());
    }
    let rev = api.revision(la).await;
    nodes[f].restart();
    let fa = nodes[f].addr;
    eventually(
        "the restarted follower has applied every large value",
        Duration::from_secs(30),
        || async { (api.status(fa).await.ok()?["revision"].as_u64()? == rev).then_some(()) },
    )
    .await;
    for i in 0..BIG {
        let r = api
            .kv_get(fa, &format!("big/{i}"), "?raw&serializable")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "big/{i} on the restarted follower");
        assert_eq!(r.bytes.as_ref(), vec![b'a' + i as u8; 1 << 20].as_slice());
    }
}

// ---------------------------------------------------------------- write batching

/// Concurrent writes share Raft entries (the leader batches them), yet each keeps its own
/// revision and answer: 64 puts get exactly the revisions 1..=64, each the mod_revision
/// its key now has; 16 racing create-only puts on one key let exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_their_own_revisions_and_answers() {
    let dir = TestDir::new("batch");
    let api = Arc::new(Api::default());
    let n = single_node(&dir, &api).await;
    let a = n.addr;

    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                (
                    i,
                    rev(&api
                        .put(a, &format!("b/{i:02}"), format!("v{i}"))
                        .await
                        .unwrap()),
                )
            })
        })
        .collect();
    let mut revisions = BTreeMap::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        revisions.insert(r, i);
    }
    assert_eq!(revisions.len(), 64, "two writers got the same revision");
    assert_eq!(
        revisions.keys().copied().collect::<Vec<_>>(),
        (1..=64).collect::<Vec<u64>>()
    );
    for (r, i) in &revisions {
        let kv = api
            .kv_get(a, &format!("b/{i:02}"), "")
            .await
            .unwrap()
            .json();
        assert_eq!(kv["mod_revision"], *r, "{kv}");
        assert_eq!(
            unb64(kv["value"].as_str().unwrap()),
            format!("v{i}").into_bytes()
        );
    }

    let racers: Vec<_> = (0..16)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                (
                    i,
                    api.put_q(a, "race", "?cas=0", format!("w{i}"))
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in racers {
        let (i, r) = t.await.unwrap();
        match r.status {
            200 => winners.push((i, rev(&r))),
            412 => {}
            other => panic!("create-only put answered {other}: {}", r.text()),
        }
    }
    assert_eq!(winners.len(), 1, "create-only puts that won: {winners:?}");
    let kv = api.kv_get(a, "race", "").await.unwrap().json();
    assert_eq!(
        unb64(kv["value"].as_str().unwrap()),
        format!("w{}", winners[0].0).into_bytes()
    );
    assert_eq!(kv["mod_revision"], winners[0].1);
    assert_eq!(kv["version"], 1);
}
