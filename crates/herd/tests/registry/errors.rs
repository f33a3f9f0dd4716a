//! The registry's error answers, from docs/registry.md's promise that every error is
//! `{"error": "..."}` with the status that says what went wrong: a follower passes the
//! leader's answer on unchanged (not a 503 a client would retry), axum's own 405 and
//! decoding rejections are JSON too, and a request the leader is bound to refuse is refused
//! before it enters the log (the commit index does not move on any node).

use herd_testkit::prelude::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The error message of a JSON error answer; fails unless the body is exactly that shape
/// and the message is plain text (not a JSON document encoded inside it).
fn error_of(r: &Reply, what: &str) -> String {
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}: content-type of {} {:?}",
        r.status,
        r.text()
    );
    let v = r.json();
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
    let msg = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no \"error\" string in {v}"))
        .to_string();
    assert!(!msg.is_empty(), "{what}: empty message");
    assert!(
        !msg.trim_start().starts_with('{'),
        "{what}: JSON encoded inside the message: {msg}"
    );
    msg
}

async fn commit_indexes(api: &Api, nodes: &[InProcNode]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in nodes {
        let s = api.status(n.addr).await.expect("status");
        out.push(s["commit_index"].as_u64().expect("commit_index"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_and_followers_pass_the_leaders_answer_on() {
    let dir = TestDir::new("reg-errors");
    // In-process nodes: this test needs a cluster's answers, not its processes.
    let nodes = inproc_cluster(&dir, 3);
    let api = Api::default();
    let addrs: Vec<Option<SocketAddr>> = nodes.iter().map(|n| Some(n.addr)).collect();
    let l = leader_index(&api, &addrs).await;
    let leader = nodes[l].addr;
    let follower = nodes[(l + 1) % 3].addr;
    // A committed write everyone has applied, so followers know the leader and its state.
    let rev = api.put_ok(leader, "seed", "1").await;
    for n in &nodes {
        eventually(
            "followers applied the seed",
            std::time::Duration::from_secs(10),
            || async { (api.revision(n.addr).await >= rev).then_some(()) },
        )
        .await;
    }

    // Answered by the leader and relayed by a follower: same status, same message.
    let on = |addr: SocketAddr, method: &'static str, path: &'static str| {
        let api = api.clone();
        async move {
            api.request(method, addr, path, Vec::new())
                .await
                .expect(path)
        }
    };
    for (method, path, status) in [
        ("DELETE", "/v1/cluster/members/99", 404),
        ("DELETE", "/v1/lease/12345", 404),
    ] {
        let at_leader = on(leader, method, path).await;
        let at_follower = on(follower, method, path).await;
        assert_eq!(
            at_leader.status,
            status,
            "{method} {path} at the leader: {}",
            at_leader.text()
        );
        assert_eq!(
            at_follower.status,
            status,
            "{method} {path} at a follower: {}",
            at_follower.text()
        );
        assert_eq!(
            error_of(&at_follower, path),
            error_of(&at_leader, path),
            "{method} {path}: the follower changed the leader's message"
        );
    }

    // axum's own answers are JSON too.
    let r = on(leader, "POST", "/v1/kv/a").await;
    assert_eq!(r.status, 405);
    let msg = error_of(&r, "POST /v1/kv/a");
    assert!(msg.contains("POST") && msg.contains("/v1/kv/a"), "{msg}");
    let allow = r
        .headers
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for m in ["GET", "PUT", "DELETE"] {
        assert!(
            allow.contains(m),
            "405 lists what the path takes: {allow:?}"
        );
    }
    let r = on(leader, "PATCH", "/v1/lease/1").await;
    assert_eq!(r.status, 405);
    error_of(&r, "PATCH /v1/lease/1");
    let r = on(leader, "GET", "/v1/kv/%FF%FE").await;
    assert_eq!(r.status, 400, "{}", r.text());
    error_of(&r, "a key that is not UTF-8");
    let r = on(leader, "GET", "/v1/nothing-here").await;
    assert_eq!(r.status, 404);
    error_of(&r, "unknown endpoint");

    // Refused before the log: no node's commit index moves, at the leader or via a follower.
    let before = commit_indexes(&api, &nodes).await;
    let long_key = "k".repeat(1025);
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"put": {"key": format!("t/{i}"), "value": "eA=="}}))
        .collect();
    for addr in [leader, follower] {
        let r = api
            .request("PUT", addr, &format!("/v1/kv/{long_key}"), "v")
            .await
            .unwrap();
        assert_eq!(r.status, 400, "1,025-byte key: {}", r.text());
        assert!(error_of(&r, "long key").contains("1025"), "{}", r.text());

        let r = api
            .request("PUT", addr, "/v1/kv/big", vec![b'x'; 2 << 20])
            .await
            .unwrap();
        assert_eq!(r.status, 413, "2 MiB value: {}", r.text());
        error_of(&r, "2 MiB value");

        let r = api.txn(addr, &json!({"success": many})).await.unwrap();
        assert_eq!(r.status, 400, "1,000-op txn: {}", r.text());
        assert!(error_of(&r, "1,000 ops").contains("1000"), "{}", r.text());

        let r = api
            .txn(
                addr,
                &json!({"failure": [{"put": {"key": long_key.clone(), "value": "eA=="}}]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "long key in a branch: {}", r.text());

        let r = api
            .request("PUT", addr, "/v1/kv/leased?lease=424242", "v")
            .await
            .unwrap();
        assert_eq!(r.status, 404, "unknown lease: {}", r.text());
        assert!(error_of(&r, "unknown lease").contains("424242"));

        let r = api
            .request(
                "PUT",
                addr,
                "/v1/services/web/instances/w1",
                json!({"address": "999.1.1.1", "port": 9000}).to_string(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "999.1.1.1: {}", r.text());
        assert!(error_of(&r, "bad address").contains("999.1.1.1"));
    }
    assert_eq!(
        commit_indexes(&api, &nodes).await,
        before,
        "a refused request entered the log"
    );
    // And a good one still does.
    api.put_ok(follower, "after", "1").await;
}
