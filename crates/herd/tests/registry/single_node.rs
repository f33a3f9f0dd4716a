//! One registry node (`herd server`) through the real binary: KV semantics with exact
//! revisions, leases, watches, bad requests, durability across kill -9.

use herd_testkit::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::{rev, summary, EVENT_WAIT};

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
