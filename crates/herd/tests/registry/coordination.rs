//! Locks and IDs through real `herd server` processes: mutual exclusion among contending
//! clients with strictly increasing fencing tokens, a waiter that outlives its TTL keeps
//! its place, and snowflake IDs from three nodes never collide.

use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn acquire(api: &Api, addr: std::net::SocketAddr, name: &str, body: &str) -> Value {
    let r = api
        .request(
            "POST",
            addr,
            &format!("/v1/lock/{name}"),
            body.as_bytes().to_vec(),
        )
        .await
        .unwrap_or_else(|e| panic!("acquire {name}: {e}"));
    assert_eq!(r.status, 200, "acquire {name}: {}", r.text());
    r.json()
}

async fn release(api: &Api, addr: std::net::SocketAddr, name: &str, lease: u64) {
    let r = api
        .request(
            "DELETE",
            addr,
            &format!("/v1/lock/{name}?lease={lease}"),
            Vec::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("release {name}: {e}"));
    assert_eq!(r.status, 200, "release {name}: {}", r.text());
}

/// 8 clients, 5 rounds each, on one lock: never two holders at once, and every grant's
/// fencing token is larger than the one before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_eight_contenders_with_increasing_fencing_tokens() {
    let dir = TestDir::new("locks");
    let api = Api::new(None).with_timeout(Duration::from_secs(60));
    let n = single_node(&dir, &api).await;
    let addr = n.addr;
    let holders = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, holders, tokens) = (api.clone(), holders.clone(), tokens.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let got =
                        acquire(&api, addr, "db-migrate", r#"{"ttl_s": 10, "wait_s": 60}"#).await;
                    let inside = holders.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(inside, 0, "two clients held the lock at once");
                    tokens
                        .lock()
                        .unwrap()
                        .push(got["fencing_token"].as_u64().expect("fencing_token"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    release(
                        &api,
                        addr,
                        "db-migrate",
                        got["lease"]
                            .as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .expect("lease"),
                    )
                    .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 40);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens in grant order must strictly increase: {tokens:?}"
    );
}

/// A waiter whose wait is longer than its ttl_s keeps its place: the server keeps its
/// lease alive while the request waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_waiter_outlives_its_ttl_and_gets_the_lock() {
    let dir = TestDir::new("lock-wait");
    let api = Api::new(None).with_timeout(Duration::from_secs(30));
    let n = single_node(&dir, &api).await;
    let addr = n.addr;
    let first = acquire(&api, addr, "slow", r#"{"ttl_s": 30, "wait_s": 5}"#).await;
    let waiter = {
        let api = api.clone();
        tokio::spawn(
            async move { acquire(&api, addr, "slow", r#"{"ttl_s": 1, "wait_s": 20}"#).await },
        )
    };
    // Hold for three of the waiter's TTLs, then hand over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter got the lock while it was held"
    );
    release(
        &api,
        addr,
        "slow",
        first["lease"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap(),
    )
    .await;
    let second = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was never granted the lock")
        .unwrap();
    assert!(second["fencing_token"].as_u64() > first["fencing_token"].as_u64());
}

/// 100,000 IDs, drawn concurrently from the three nodes of a cluster: all distinct, and
/// increasing within each call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_three_nodes_never_collide() {
    let dir = TestDir::new("ids");
    let nodes = start_cluster(&dir, 3, None);
    let api = Api::new(None).with_timeout(Duration::from_secs(30));
    wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (api, addr) = (api.clone(), nodes[i % 3].addr);
            tokio::spawn(async move {
                let r = api
                    .request("POST", addr, "/v1/ids?count=10000", Vec::new())
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                let ids: Vec<u64> = r.json()["ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .expect("an id is a u64 written as a decimal string")
                    })
                    .collect();
                assert!(
                    ids.windows(2).all(|w| w[0] < w[1]),
                    "ids of one call increase"
                );
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 100_000);
}

/// A member removed from a 3-node cluster leaves the membership; the two that remain keep
/// accepting writes (a majority of 2), and removing it again is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_leaves_the_cluster_and_writes_go_on() {
    let dir = TestDir::new("remove");
    let mut nodes = start_cluster(&dir, 3, None);
    let api = Api::new(None).with_timeout(Duration::from_secs(15));
    let leader = wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    let (v, o) = ((leader + 1) % 3, (leader + 2) % 3);
    let (victim_id, other) = (nodes[v].id, nodes[o].addr);
    // Ask a non-leader: it forwards to the leader (once it has heard from one: until
    // then it answers 503 and nothing changed, so asking again is safe).
    let path = format!("/v1/cluster/members/{victim_id}");
    eventually(
        "the removal through a follower",
        Duration::from_secs(10),
        || async {
            let r = api.request("DELETE", other, &path, Vec::new()).await.ok()?;
            match r.status {
                200 => Some(()),
                503 => None,
                s => panic!("removal answered {s}: {}", r.text()),
            }
        },
    )
    .await;
    let leader_addr = nodes[leader].addr;
    let ids = eventually(
        "the membership without the removed node",
        Duration::from_secs(10),
        || async {
            let c = api.cluster(leader_addr).await.ok()?;
            let ids: Vec<u64> = c["members"]
                .as_array()?
                .iter()
                .filter_map(|m| m["id"].as_u64())
                .collect();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    assert!(!ids.contains(&victim_id), "{ids:?}");
    // As the docs say, a removed node is then stopped (left running without heartbeats it
    // would call elections); the other two go on.
    nodes[v].kill9();
    eventually(
        "a write through the remaining two",
        Duration::from_secs(10),
        || async {
            let r = api.put(other, "after-remove", "x").await.ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await;
    let r = api
        .request(
            "DELETE",
            leader_addr,
            &format!("/v1/cluster/members/{victim_id}"),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
}
