//! The registry (`herd server`) through the real binary: KV semantics with exact
//! revisions, leases, watches, bad requests, durability across kill -9, a 3-node cluster
//! losing its leader, snapshot catch-up, watch resume across nodes, and auth.

use herd_testkit::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENT_WAIT: Duration = Duration::from_secs(5);

fn rev(r: &Reply) -> u64 {
    r.json()["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no revision in {}", r.text()))
}

// ---------------------------------------------------------------- a. KV semantics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_semantics_with_exact_revisions() {
    let dir = TestDir::new("kv");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;

    assert_eq!(rev(&api.put(a, "a", "hello").await.unwrap()), 1);
    let binary: Vec<u8> = b"\x00\xffbin\nary".to_vec();
    assert_eq!(rev(&api.put(a, "a", binary.clone()).await.unwrap()), 2);

    let r = api.kv_get(a, "a", "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let kv = r.json();
    assert_eq!(kv["key"], "a");
    assert_eq!(kv["value"], b64(&binary));
    assert_eq!(unb64(kv["value"].as_str().unwrap()), binary);
    assert_eq!(kv["create_revision"], 1);
    assert_eq!(kv["mod_revision"], 2);
    assert_eq!(kv["version"], 2);
    assert_eq!(kv["lease"], Value::Null);

    let r = api.kv_get(a, "a", "?raw").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes.as_ref(), binary.as_slice());

    assert_eq!(rev(&api.put(a, "b", "bee").await.unwrap()), 3);

    // Range over everything: sorted, at the current revision.
    let r = api.get(a, "/v1/kv/?prefix").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["revision"], 3);
    let keys: Vec<&str> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(v["kvs"][1]["value"], b64(b"bee"));
    assert_eq!(v["more"], false);

    let v = api.get(a, "/v1/kv/?prefix&limit=1").await.unwrap().json();
    assert_eq!(v["kvs"].as_array().unwrap().len(), 1);
    assert_eq!(v["kvs"][0]["key"], "a");
    assert_eq!(v["more"], true);
    assert_eq!(v["revision"], 3);

    // Deleting nothing changes nothing.
    let r = api.delete(a, "missing", "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"revision": 3, "deleted": 0}));

    let r = api.delete(a, "a", "").await.unwrap();
    assert_eq!(r.json(), json!({"revision": 4, "deleted": 1}));
    let r = api.kv_get(a, "a", "").await.unwrap();
    let msg = error_message(&r, 404);
    assert!(msg.contains("\"a\""), "{msg}");

    // Compare-and-swap on mod_revision.
    let r = api.put_q(a, "b", "?cas=2", "wrong").await.unwrap();
    error_message(&r, 412);
    assert_eq!(r.json()["mod_revision"], 3, "{}", r.text());
    let r = api.put_q(a, "b", "?cas=0", "exists").await.unwrap();
    error_message(&r, 412);
    assert_eq!(r.json()["mod_revision"], 3, "{}", r.text());
    let r = api.put_q(a, "b", "?cas=3", "bee2").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rev(&r), 5);
    let kv = api.kv_get(a, "b", "").await.unwrap().json();
    assert_eq!(
        (&kv["create_revision"], &kv["mod_revision"], &kv["version"]),
        (&json!(3), &json!(5), &json!(2))
    );
    // ?cas=0 creates an absent key.
    assert_eq!(rev(&api.put_q(a, "c", "?cas=0", "sea").await.unwrap()), 6);

    // Transaction whose compare holds: the success branch, one revision.
    let t = json!({
        "compares": [{"key": "b", "target": {"version": 2}, "op": "eq"}],
        "success": [
            {"put": {"key": "d", "value": b64(b"dee")}},
            {"get": {"key": "b"}}
        ],
        "failure": [{"put": {"key": "e", "value": b64(b"eee")}}]
    });
    let r = api.txn(a, &t).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["revision"], 7, "{v}");
    assert_eq!(v["succeeded"], true, "{v}");
    assert_eq!(v["results"][0]["put"]["prev_kv"], Value::Null, "{v}");
    assert_eq!(
        v["results"][1]["get"]["kvs"][0]["value"],
        b64(b"bee2"),
        "{v}"
    );
    let kv = api.kv_get(a, "d", "").await.unwrap().json();
    assert_eq!(kv["value"], b64(b"dee"));
    assert_eq!(kv["create_revision"], 7);
    assert_eq!(api.kv_get(a, "e", "").await.unwrap().status, 404);

    // Compare fails: the failure branch.
    let t = json!({
        "compares": [{"key": "b", "target": {"version": 99}, "op": "eq"}],
        "success": [{"put": {"key": "d", "value": b64(b"changed")}}],
        "failure": [{"put": {"key": "e", "value": b64(b"eee")}}]
    });
    let v = api.txn(a, &t).await.unwrap().json();
    assert_eq!(v["succeeded"], false, "{v}");
    assert_eq!(v["revision"], 8, "{v}");
    assert_eq!(
        api.kv_get(a, "d", "").await.unwrap().json()["mod_revision"],
        7
    );
    assert_eq!(
        api.kv_get(a, "e", "?raw").await.unwrap().bytes.as_ref(),
        b"eee"
    );

    // A read-only transaction does not bump the revision.
    let t = json!({
        "compares": [{"key": "zz", "target": {"exists": true}, "op": "eq"}],
        "failure": [{"get": {"key": "", "prefix": true}}]
    });
    let v = api.txn(a, &t).await.unwrap().json();
    assert_eq!(v["succeeded"], false, "{v}");
    assert_eq!(v["revision"], 8, "{v}");
    let keys: Vec<&str> = v["results"][0]["get"]["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["b", "c", "d", "e"]);

    assert_eq!(api.revision(a).await, 8);
}

// ---------------------------------------------------------------- b. leases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keepalive_expiry_and_revoke() {
    let dir = TestDir::new("lease");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    let mut w = api.watch(a, "l/", "?prefix").await.expect("watch");

    // Granting a lease changes no key: no revision.
    let r = api.lease_grant(a, 1.0).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json();
    let id = g["id"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("id");
    assert_eq!(g["ttl_s"], 1.0);
    assert_eq!(g["revision"], 0);
    assert_eq!(api.revision(a).await, 0);

    let r = api
        .put_q(a, "l/k", &format!("?lease={id}"), "v")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rev(&r), 1);
    assert_eq!(
        api.kv_get(a, "l/k", "").await.unwrap().json()["lease"],
        id.to_string()
    );

    // Kept alive for twice its TTL, it stays.
    let started = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(2) && count < 20 {
        let r = api.lease_keepalive(a, id).await.unwrap();
        last_keepalive = Instant::now();
        assert_eq!(r.status, 200, "keepalive: {}", r.text());
        assert_eq!(r.json()["ttl_s"], 1.0);
        count += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = api.kv_get(a, "l/k", "").await.unwrap();
    assert_eq!(r.status, 200, "key vanished while kept alive: {}", r.text());

    // Left alone, it goes within TTL + 1 s of the last keepalive.
    let deadline = last_keepalive + Duration::from_secs(2);
    loop {
        let r = api.kv_get(a, "l/k", "").await.unwrap();
        if r.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "key with an expired 1 s lease still there {:?} after the last keepalive",
            last_keepalive.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = w.next_event(EVENT_WAIT).await;
    assert_eq!(
        (&e["type"], &e["kv"]["key"], &e["revision"]),
        (&json!("put"), &json!("l/k"), &json!(1)),
        "{e}"
    );
    assert_eq!(e["kv"]["lease"], id.to_string());
    let e = w.next_event(EVENT_WAIT).await;
    assert_eq!(
        (&e["type"], &e["kv"]["key"], &e["revision"]),
        (&json!("delete"), &json!("l/k"), &json!(2)),
        "{e}"
    );
    let r = api.lease_keepalive(a, id).await.unwrap();
    error_message(&r, 404);
    error_message(&api.get(a, &format!("/v1/lease/{id}")).await.unwrap(), 404);

    // Revoking a lease deletes its keys at once, in one revision.
    let id2 = api.lease_ok(a, 30.0).await;
    for k in ["l/x", "l/y"] {
        let r = api
            .put_q(a, k, &format!("?lease={id2}"), "v")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let info = api
        .get(a, &format!("/v1/lease/{id2}"))
        .await
        .unwrap()
        .json();
    assert_eq!(info["keys"], json!(["l/x", "l/y"]), "{info}");
    let r = api.lease_revoke(a, id2).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"revision": 5, "deleted": 2}));
    for k in ["l/x", "l/y"] {
        assert_eq!(api.kv_get(a, k, "").await.unwrap().status, 404, "{k}");
    }
    let seen: Vec<(String, String, u64)> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let e = w.next_event(EVENT_WAIT).await;
            v.push((
                e["type"].as_str().unwrap().to_string(),
                e["kv"]["key"].as_str().unwrap().to_string(),
                e["revision"].as_u64().unwrap(),
            ));
        }
        v
    };
    let want: Vec<(String, String, u64)> = [
        ("put", "l/x", 3),
        ("put", "l/y", 4),
        ("delete", "l/x", 5),
        ("delete", "l/y", 5),
    ]
    .iter()
    .map(|(t, k, r)| (t.to_string(), k.to_string(), *r))
    .collect();
    assert_eq!(seen, want);

    error_message(&api.lease_keepalive(a, 12345).await.unwrap(), 404);
    error_message(&api.lease_keepalive(a, id2).await.unwrap(), 404);
    error_message(&api.lease_revoke(a, 12345).await.unwrap(), 404);
    assert_eq!(api.revision(a).await, 5);
}

// ---------------------------------------------------------------- c. watch

fn summary(e: &Value) -> (String, String, u64) {
    (
        e["type"].as_str().unwrap_or("?").to_string(),
        e["kv"]["key"].as_str().unwrap_or("?").to_string(),
        e["revision"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_events_in_order_and_replays_from_a_revision() {
    let dir = TestDir::new("watch");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    api.put_ok(a, "other", "x").await;

    let mut w = api.watch(a, "k", "?prefix").await.expect("watch");
    let mut want: Vec<(String, String, u64)> = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    for (i, key) in ["k/1", "k/2", "k/3", "k/1", "k/4"].iter().enumerate() {
        let value = format!("value {i}").into_bytes();
        let r = api.put_ok(a, key, value.clone()).await;
        want.push(("put".into(), key.to_string(), r));
        values.push(value);
        // A change outside the prefix between them: revisions then skip one.
        if i == 1 {
            api.put_ok(a, "x", "outside").await;
        }
    }
    let r = api.delete(a, "k/2", "").await.unwrap();
    want.push(("delete".into(), "k/2".into(), rev(&r)));

    let mut got = Vec::new();
    for i in 0..6 {
        let e = w.next_event(EVENT_WAIT).await;
        assert_eq!(e["kv"]["mod_revision"], e["revision"], "{e}");
        if let Some(value) = values.get(i) {
            assert_eq!(e["kv"]["value"], b64(value), "{e}");
        } else {
            assert_eq!(e["kv"]["version"], 0, "{e}");
        }
        if i == 3 {
            // k/1 again: version 2, created by the first put.
            assert_eq!(e["kv"]["version"], 2, "{e}");
            assert_eq!(e["kv"]["create_revision"], want[0].2, "{e}");
        }
        got.push(e);
    }
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), want);
    // Exactly those: the next event is the next change under the prefix.
    let r7 = api.put_ok(a, "k/5", "five").await;
    want.push(("put".into(), "k/5".into(), r7));
    assert_eq!(summary(&w.next_event(EVENT_WAIT).await), want[6]);

    // From the third event's revision: a replay of exactly the rest, then live events.
    let from = want[2].2;
    let mut w2 = api
        .watch(a, "k", &format!("?prefix&from_revision={from}"))
        .await
        .expect("watch from revision");
    for expected in &want[2..] {
        assert_eq!(&summary(&w2.next_event(EVENT_WAIT).await), expected);
    }
    let r8 = api.put_ok(a, "k/6", "six").await;
    assert_eq!(
        summary(&w2.next_event(EVENT_WAIT).await),
        ("put".to_string(), "k/6".to_string(), r8)
    );
    assert_eq!(
        summary(&w.next_event(EVENT_WAIT).await),
        ("put".to_string(), "k/6".to_string(), r8)
    );

    // Without ?prefix a watch sees only its own key.
    let mut w3 = api.watch(a, "k/1", "").await.expect("key watch");
    api.put_ok(a, "k/10", "not me").await;
    let r = api.put_ok(a, "k/1", "me").await;
    assert_eq!(
        summary(&w3.next_event(EVENT_WAIT).await),
        ("put".to_string(), "k/1".to_string(), r)
    );
}

/// Resuming with from_revision = last seen + 1 on a node that has not applied that far yet
/// (a lagging follower) must still start at from_revision, as etcd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_future_revision_starts_there() {
    let dir = TestDir::new("watch-future");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    let current = api.put_ok(a, "f/0", "x").await;
    let from = current + 3;
    let mut w = api
        .watch(a, "f/", &format!("?prefix&from_revision={from}"))
        .await
        .expect("watch");
    for i in 1..=4 {
        api.put_ok(a, &format!("f/{i}"), "x").await;
    }
    let e = w.next_event(EVENT_WAIT).await;
    assert_eq!(
        e["revision"], from,
        "first event of a watch from revision {from} is {e}"
    );
    let e = w.next_event(EVENT_WAIT).await;
    assert_eq!(e["revision"], from + 1, "{e}");
}

// ---------------------------------------------------------------- d. bad requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_with_a_message_and_change_nothing() {
    let dir = TestDir::new("bad");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    assert_eq!(api.put_ok(a, "keep", "v").await, 1);

    let lease = |body: &'static str| {
        let api = api.clone();
        async move { api.request("POST", a, "/v1/lease", body).await.unwrap() }
    };
    let msg = error_message(&lease(r#"{"ttl": 5}"#).await, 400);
    assert!(msg.contains("ttl_s"), "should name the right field: {msg}");
    let msg = error_message(&lease(r#"{"ttl_s": 0}"#).await, 400);
    assert!(msg.contains("ttl_s"), "{msg}");
    error_message(&lease(r#"{"ttl_s": -1}"#).await, 400);
    error_message(&lease(r#"{"ttl_s": 1e9}"#).await, 400);
    error_message(&lease(r#"{"ttl_s": "#).await, 400);
    error_message(&lease("").await, 400);

    error_message(
        &api.request("POST", a, "/v1/txn", "{not json")
            .await
            .unwrap(),
        400,
    );
    let bad_b64 = json!({"success": [{"put": {"key": "keep", "value": "!!!"}}]});
    error_message(&api.txn(a, &bad_b64).await.unwrap(), 400);
    let unknown_op = json!({"success": [{"upsert": {"key": "keep"}}]});
    error_message(&api.txn(a, &unknown_op).await.unwrap(), 400);

    let big = vec![b'x'; (1 << 20) + 1];
    let msg = error_message(&api.put(a, "keep", big).await.unwrap(), 413);
    assert!(msg.contains("exceeds") && msg.contains("1048576"), "{msg}");
    // Beyond the request body limit too: still a JSON 413 that names the value limit.
    let huge = vec![b'x'; 5 << 20];
    let msg = error_message(&api.put(a, "keep", huge).await.unwrap(), 413);
    assert!(msg.contains("1048576"), "{msg}");
    let too_big_in_txn =
        json!({"success": [{"put": {"key": "keep", "value": b64(&vec![b'y'; (1 << 20) + 1])}}]});
    let msg = error_message(&api.txn(a, &too_big_in_txn).await.unwrap(), 413);
    assert!(msg.contains("1048576"), "{msg}");
    let msg = error_message(
        &api.put_q(a, "keep", "?lease=999", "v2").await.unwrap(),
        404,
    );
    assert!(msg.contains("999"), "{msg}");
    let msg = error_message(&api.put_q(a, "keep", "?ttl=5", "v2").await.unwrap(), 400);
    assert!(msg.contains("ttl"), "{msg}");
    error_message(
        &api.put_q(a, "keep", "?lease=abc", "v2").await.unwrap(),
        400,
    );
    error_message(&api.put_q(a, "keep", "?cas=-1", "v2").await.unwrap(), 400);
    let long_key = "k".repeat(1025);
    error_message(&api.put(a, &long_key, "v").await.unwrap(), 400);
    error_message(&api.get(a, "/v1/nope").await.unwrap(), 404);
    error_message(
        &api.request("POST", a, "/v1/lease/abc/keepalive", "")
            .await
            .unwrap(),
        400,
    );
    error_message(
        &api.get(a, "/v1/watch/k?from_revision=x").await.unwrap(),
        400,
    );
    error_message(
        &api.kv_get(a, "keep", "?prefix&limit=x").await.unwrap(),
        400,
    );

    let s = api.status(a).await.unwrap();
    assert_eq!(s["revision"], 1, "{s}");
    assert_eq!(s["keys"], 1, "{s}");
    assert_eq!(s["leases"], 0, "{s}");
    let kv = api.kv_get(a, "keep", "").await.unwrap().json();
    assert_eq!(
        (&kv["value"], &kv["version"]),
        (&json!(b64(b"v")), &json!(1))
    );

    // The largest value accepted is exactly 1 MiB.
    let max = vec![b'y'; 1 << 20];
    let r = api.put(a, "big", max.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rev(&r), 2);
    assert_eq!(
        api.kv_get(a, "big", "?raw").await.unwrap().bytes.len(),
        1 << 20
    );
}

// ---------------------------------------------------------------- e. durability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill9() {
    let dir = TestDir::new("durable");
    let api = Api::default();
    let mut n = single_node(&dir, &api).await;
    let max_rev = bulk_put(&api, n.addr, "d/", 300, 16).await;
    assert_eq!(max_rev, 300);
    n.kill9();
    n.restart();
    wait_for_leader(&api, &[&n]).await;
    let v = api.get(n.addr, "/v1/kv/d/?prefix").await.unwrap().json();
    assert_eq!(v["revision"], 300);
    let got: BTreeMap<String, Vec<u8>> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_string(),
                unb64(kv["value"].as_str().unwrap()),
            )
        })
        .collect();
    for i in 0..300 {
        let key = format!("d/{i:05}");
        assert_eq!(
            got.get(&key).map(Vec::as_slice),
            Some(format!("v{i}").as_bytes()),
            "acknowledged {key} lost or wrong after kill -9"
        );
    }
    assert_eq!(got.len(), 300);
}

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
