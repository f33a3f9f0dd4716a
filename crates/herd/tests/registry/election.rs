//! Leader election (`/v1/election/...`) through the real `herd server` binary: concurrent
//! candidates get exactly one leader and queue FIFO behind it, observers and watch streams
//! follow every change, resign and lease revocation hand leadership on, only the leader may
//! proclaim, and bad requests get a 4xx with a message.

use herd_testkit::prelude::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn campaign(api: &Api, a: SocketAddr, name: &str, body: Value) -> Reply {
    api.request(
        "POST",
        a,
        &format!("/v1/election/{name}/campaign"),
        body.to_string(),
    )
    .await
    .expect("campaign answered")
}

async fn leader(api: &Api, a: SocketAddr, name: &str) -> Reply {
    api.get(a, &format!("/v1/election/{name}"))
        .await
        .expect("leader answered")
}

async fn proclaim(api: &Api, a: SocketAddr, name: &str, lease: u64, value: &str) -> Reply {
    api.request(
        "POST",
        a,
        &format!("/v1/election/{name}/proclaim"),
        json!({"lease": lease, "value": value}).to_string(),
    )
    .await
    .expect("proclaim answered")
}

/// The candidate keys of election `name`, oldest (the leader) first.
async fn candidates(api: &Api, a: SocketAddr, name: &str) -> Vec<Value> {
    let r = api
        .get(a, &format!("/v1/kv/elections/{name}/?prefix"))
        .await
        .expect("range");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut kvs = r.json()["kvs"].as_array().cloned().unwrap_or_default();
    kvs.sort_by_key(|kv| kv["create_revision"].as_u64());
    kvs
}

/// An election watch (`GET /v1/election/<name>?watch`), read a line at a time.
struct LeaderStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl LeaderStream {
    async fn open(a: SocketAddr, name: &str) -> LeaderStream {
        let client: HyperClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let req = hyper::Request::get(format!("http://{a}/v1/election/{name}?watch"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .expect("watch answered in time")
            .expect("watch answered");
        assert_eq!(resp.status(), 200, "election watch");
        LeaderStream {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// The `leader` of the next line (null when nobody leads); panics after [`WAIT`].
    async fn next_leader(&mut self) -> Value {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("watch line {text:?} is not JSON: {e}"));
                assert!(v.get("leader").is_some(), "not a leader line: {v}");
                return v["leader"].clone();
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => panic!("no leader line within {WAIT:?}"),
                Ok(None) => panic!("election watch ended"),
                Ok(Some(Err(e))) => panic!("election watch failed: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        self.buf.extend_from_slice(d);
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidates_queue_fifo_and_leadership_moves_on_resign_and_revoke() {
    let dir = TestDir::new("election");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    let slow = Api::default().with_timeout(Duration::from_secs(60));

    let r = leader(&api, a, "db").await;
    assert_eq!(r.json(), json!({"error": "no leader"}), "{}", r.text());
    assert_eq!(r.status, 404);

    let mut w = LeaderStream::open(a, "db").await;
    assert_eq!(w.next_leader().await, Value::Null);

    // Three candidates at once: exactly one wins, the others wait in line.
    let mut tasks = Vec::new();
    for value in ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"] {
        let slow = slow.clone();
        tasks.push(tokio::spawn(async move {
            campaign(
                &slow,
                a,
                "db",
                json!({"value": value, "ttl_s": 30, "timeout_s": 50}),
            )
            .await
        }));
    }
    let queue = eventually("3 candidates queued, one of them leading", WAIT, || async {
        let c = candidates(&api, a, "db").await;
        let done = tasks.iter().filter(|t| t.is_finished()).count();
        (c.len() == 3 && done == 1).then_some(c)
    })
    .await;
    let mut tasks: Vec<_> = tasks.into_iter().collect();
    let first = tasks
        .iter()
        .position(|t| t.is_finished())
        .expect("a finished campaign");
    let won = tasks.remove(first).await.expect("campaign task");
    assert_eq!(won.status, 200, "{}", won.text());
    let l1 = won.json()["leader"].clone();
    assert_eq!(l1["key"], queue[0]["key"], "the oldest candidate leads");
    assert_eq!(l1["revision"], queue[0]["create_revision"]);
    let lease = |kv: &Value| {
        kv["lease"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .expect("lease")
    };
    assert_eq!(lease(&l1), lease(&queue[0]));
    assert!(tasks.iter().all(|t| !t.is_finished()), "only one leader");

    // Observers see it.
    let r = leader(&api, a, "db").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["leader"], l1);
    assert_eq!(w.next_leader().await, l1);

    // Only the leader may proclaim; its place and token stay.
    let r = proclaim(&api, a, "db", lease(&queue[1]), "usurper").await;
    let msg = error_message(&r, 412);
    assert!(msg.contains("not the leader"), "{msg}");
    let r = proclaim(&api, a, "db", lease(&l1), "10.0.0.1:9443").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let l1b = leader(&api, a, "db").await.json()["leader"].clone();
    assert_eq!(l1b["value"], "10.0.0.1:9443");
    assert_eq!(l1b["revision"], l1["revision"]);
    assert_eq!(l1b["key"], l1["key"]);
    assert_eq!(w.next_leader().await, l1b);
    assert!(tasks.iter().all(|t| !t.is_finished()), "still one leader");

    // The leader resigns: the next in line (FIFO) leads, and the watch says so.
    let r = api
        .request(
            "DELETE",
            a,
            &format!("/v1/election/db/{}", lease(&l1)),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let l2 = w.next_leader().await;
    assert_eq!(l2["key"], queue[1]["key"], "{l2}");
    assert_eq!(l2["revision"], queue[1]["create_revision"]);
    let second = eventually("the second campaign answers", WAIT, || async {
        tasks.iter().position(|t| t.is_finished())
    })
    .await;
    let won = tasks.remove(second).await.expect("campaign task");
    assert_eq!(won.status, 200, "{}", won.text());
    assert_eq!(won.json()["leader"], l2);
    assert!(
        l2["revision"].as_u64() > l1["revision"].as_u64(),
        "fencing tokens increase"
    );
    assert!(!tasks[0].is_finished(), "the third still waits");

    // The leader's lease is revoked: its key goes, the last candidate leads.
    let r = api.lease_revoke(a, lease(&l2)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let l3 = w.next_leader().await;
    assert_eq!(l3["key"], queue[2]["key"], "{l3}");
    let won = tasks.remove(0).await.expect("campaign task");
    assert_eq!(won.status, 200, "{}", won.text());
    assert_eq!(won.json()["leader"], l3);
    assert_eq!(leader(&api, a, "db").await.json()["leader"], l3);

    // A former leader can no longer proclaim.
    let r = proclaim(&api, a, "db", lease(&l2), "late").await;
    error_message(&r, 412);

    // The last one resigns: nobody leads.
    let r = api
        .request(
            "DELETE",
            a,
            &format!("/v1/election/db/{}", lease(&l3)),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(w.next_leader().await, Value::Null);
    error_message(&leader(&api, a, "db").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_on_own_lease_times_out_and_withdraws() {
    let dir = TestDir::new("election-timeout");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;

    let mine = api.lease_ok(a, 30.0).await;
    let r = campaign(&api, a, "jobs", json!({"value": "a", "lease": mine})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["leader"]["lease"], mine.to_string());
    assert_eq!(r.json()["leader"]["value"], "a");

    // A second candidate gives up after its timeout, and leaves no key behind.
    let other = api.lease_ok(a, 30.0).await;
    let r = campaign(
        &api,
        a,
        "jobs",
        json!({"value": "b", "lease": other, "timeout_s": 0.5}),
    )
    .await;
    let msg = error_message(&r, 408);
    assert!(msg.contains("jobs"), "{msg}");
    let c = candidates(&api, a, "jobs").await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["lease"], mine.to_string());
    // The caller's own lease is not revoked by the withdrawal.
    let r = api.lease_keepalive(a, other).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Campaigning again on the same lease keeps the place and changes the value.
    let r = campaign(&api, a, "jobs", json!({"value": "a2", "lease": mine})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let l = r.json()["leader"].clone();
    assert_eq!(l["value"], "a2");
    assert_eq!(l["revision"], c[0]["create_revision"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_election_requests_get_4xx_with_a_message() {
    let dir = TestDir::new("election-bad");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;
    let before = api.revision(a).await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("e", json!({"value": "x", "color": "red"}), 400, "color"),
        ("e", json!({"value": "x", "ttl_s": 0}), 400, "ttl_s"),
        ("e", json!({"value": "x", "ttl_s": "ten"}), 400, "ttl_s"),
        (
            "e",
            json!({"value": "x", "timeout_s": -1}),
            400,
            "timeout_s",
        ),
        ("e", json!({"ttl_s": 5}), 400, "value"),
        (
            "e",
            json!({"value": "x", "lease": 7, "ttl_s": 5}),
            400,
            "lease",
        ),
        ("bad!name", json!({"value": "x"}), 400, "name"),
        ("e", json!({"value": "x", "lease": 12345}), 404, "12345"),
    ];
    for (name, body, status, needle) in cases {
        let r = campaign(&api, a, name, body.clone()).await;
        let msg = error_message(&r, status);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = api
        .request("POST", a, "/v1/election/e/campaign", "not json")
        .await
        .unwrap();
    error_message(&r, 400);

    let r = proclaim(&api, a, "e", 1, "x").await;
    error_message(&r, 412);
    let r = api
        .request("POST", a, "/v1/election/e/proclaim", r#"{"value":"x"}"#)
        .await
        .unwrap();
    let msg = error_message(&r, 400);
    assert!(msg.contains("lease"), "{msg}");

    let r = api
        .request("DELETE", a, "/v1/election/e/abc", Vec::new())
        .await
        .unwrap();
    let msg = error_message(&r, 400);
    assert!(msg.contains("abc"), "{msg}");
    let r = api
        .request("DELETE", a, "/v1/election/e/99", Vec::new())
        .await
        .unwrap();
    error_message(&r, 404);

    let r = api.get(a, "/v1/election/e?wach").await.unwrap();
    let msg = error_message(&r, 400);
    assert!(msg.contains("wach"), "{msg}");
    let r = leader(&api, a, "e").await;
    assert_eq!(r.json(), json!({"error": "no leader"}));

    // Nothing was written: no key, and only no-op revisions.
    assert!(candidates(&api, a, "e").await.is_empty());
    assert_eq!(api.revision(a).await, before, "bad requests changed state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_campaigns_get_distinct_leases_and_a_dropped_one_withdraws() {
    let dir = TestDir::new("election-many");
    let api = Api::default();
    let n = single_node(&dir, &api).await;
    let a = n.addr;

    // Lease ids drawn in the same millisecond used to collide (a 500 for one campaign).
    let mut tasks = Vec::new();
    for i in 0..16 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            campaign(&api, a, &format!("e{i}"), json!({"value": format!("v{i}")})).await
        }));
    }
    let mut leases = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("campaign task");
        assert_eq!(r.status, 200, "{}", r.text());
        leases.insert(
            r.json()["leader"]["lease"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .expect("lease"),
        );
    }
    assert_eq!(leases.len(), 16, "leases shared: {leases:?}");

    // A waiting candidate whose client goes away is withdrawn, not left to lead later.
    let waiting = tokio::spawn({
        let api = api.clone().with_timeout(Duration::from_secs(60));
        async move { campaign(&api, a, "e0", json!({"value": "gone", "ttl_s": 60})).await }
    });
    eventually("the second candidate queued", WAIT, || async {
        (candidates(&api, a, "e0").await.len() == 2).then_some(())
    })
    .await;
    assert!(!waiting.is_finished(), "only one leader");
    waiting.abort(); // drops the request's connection
    eventually("the dropped candidate withdrawn", WAIT, || async {
        (candidates(&api, a, "e0").await.len() == 1).then_some(())
    })
    .await;
}
