//! Any server answers for the whole cluster: spans sent to two of three servers are
//! counted together by the third; a server that is down is named in the answer, never
//! silently left out. And `POST /v1/traces` refuses what is not OTLP, saying why.

use herd_testkit::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

/// An OTLP/JSON body: `n` root server spans of `service`, each its own trace.
fn spans(service: &str, first_trace: u8, n: u8) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let list: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "traceId": format!("{:032x}", u128::from(first_trace + i) + 1),
                "spanId": format!("{:016x}", u64::from(first_trace + i) + 1),
                "name": format!("GET /{service}"), "kind": 2,
                "startTimeUnixNano": (now - 2_000_000).to_string(),
                "endTimeUnixNano": now.to_string(),
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": list}]
    }]})
    .to_string()
}

async fn post(api: &Api, node: &ServerProc, body: String) -> Reply {
    api.request_with(
        "POST",
        node.addr,
        "/v1/traces",
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap()
}

fn calls(top: &Value, service: &str) -> u64 {
    top["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == service)
        .map_or(0, |r| r["calls"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_server_answers_for_the_cluster_and_names_a_server_that_did_not() {
    let dir = TestDir::new("telemetry-cluster");
    let api = Api::new(None);
    let mut nodes = start_cluster(&dir, 3, None);
    wait_for_leader(&api, &nodes.iter().collect::<Vec<_>>()).await;
    assert_eq!(post(&api, &nodes[0], spans("a", 0, 3)).await.status, 200);
    assert_eq!(post(&api, &nodes[1], spans("a", 10, 2)).await.status, 200);
    assert_eq!(post(&api, &nodes[1], spans("b", 20, 1)).await.status, 200);

    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let top = eventually(
        "the third server to count all six",
        Duration::from_secs(20),
        || async {
            let t = api
                .get(nodes[2].addr, "/v1/telemetry/top")
                .await
                .ok()?
                .json();
            (calls(&t, "a") == 5 && calls(&t, "b") == 1).then_some(t)
        },
    )
    .await;
    let mut answered: Vec<u64> = serde_json::from_value(top["nodes_answered"].clone()).unwrap();
    answered.sort_unstable();
    let mut all = ids.clone();
    all.sort_unstable();
    assert_eq!(answered, all, "{top}");
    assert_eq!(top["nodes_missing"], json!([]));
    let local = api
        .get(nodes[2].addr, "/v1/telemetry/top?scope=local")
        .await
        .unwrap()
        .json();
    assert_eq!(
        calls(&local, "a"),
        0,
        "the third server holds none itself: {local}"
    );
    let traces = api
        .get(nodes[2].addr, "/v1/telemetry/traces?service=a&limit=50")
        .await
        .unwrap()
        .json();
    assert_eq!(traces["traces"].as_array().unwrap().len(), 5, "{traces}");

    nodes[1].kill9();
    let top = eventually(
        "an answer without the dead server",
        Duration::from_secs(20),
        || async {
            let t = api
                .get(nodes[2].addr, "/v1/telemetry/top")
                .await
                .ok()?
                .json();
            (t["nodes_missing"] == json!([ids[1]])).then_some(t)
        },
    )
    .await;
    assert_eq!(calls(&top, "a"), 3, "{top}");
    assert_eq!(calls(&top, "b"), 0, "{top}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_otlp_is_refused_with_the_reason() {
    let dir = TestDir::new("telemetry-refusals");
    let api = Api::new(None);
    let node = single_node(&dir, &api).await;
    let send = |ctype: &'static str, enc: Option<&'static str>, body: &'static [u8]| {
        let api = &api;
        let addr = node.addr;
        async move {
            let mut h = vec![("content-type", ctype)];
            if let Some(e) = enc {
                h.push(("content-encoding", e));
            }
            api.request_with("POST", addr, "/v1/traces", &h, body.to_vec())
                .await
                .unwrap()
        }
    };
    let r = send("text/plain", None, b"hello").await;
    assert_eq!(r.status, 415);
    assert!(
        error_message(&r, 415).contains("application/x-protobuf"),
        "{}",
        r.text()
    );
    let r = send("application/x-protobuf", Some("br"), b"x").await;
    assert_eq!(r.status, 415);
    assert!(
        error_message(&r, 415).contains("gzip or none"),
        "{}",
        r.text()
    );
    let r = send("application/x-protobuf", Some("gzip"), b"\x1f\x8bnot gzip").await;
    assert_eq!(r.status, 400);
    // A gzip body (the OpenTelemetry Collector's default) is read; a bomb is refused.
    let gz = |data: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let spans = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"zipped"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET /z","kind":2}]}]}]}"#;
    let zipped = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let r = api
        .request_with("POST", node.addr, "/v1/traces", &zipped, gz(spans))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let top = api
        .get(node.addr, "/v1/telemetry/top?window=1h")
        .await
        .unwrap()
        .json();
    assert!(top["services"].to_string().contains("zipped"), "{top}");
    let bomb = gz(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let r = api
        .request_with("POST", node.addr, "/v1/traces", &zipped, bomb)
        .await
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    let r = send("application/x-protobuf", None, b"\xff\xff\xff\xff\xff").await;
    assert_eq!(r.status, 400);
    let r = send("application/json", None, b"{\"resourceSpans\": 7}").await;
    assert_eq!(r.status, 400);
    // A span with a bad id is refused alone; OTLP's partial success says how many and why.
    let r = send(
        "application/json",
        None,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"00000000000000000000000000000000","spanId":"0102030405060708","name":"zero"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"ok"}]}]}]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    assert!(v["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("\"zero\""));
    // Bad questions name the parameter.
    for (q, word) in [
        ("/v1/telemetry/top?by=fastest", "calls, p99 or errors"),
        ("/v1/telemetry/top?window=2h", "1h"),
        ("/v1/telemetry/traces?min_duration=soon", "min_duration"),
        ("/v1/telemetry/traces/xyz", "32 hex digits"),
    ] {
        let r = api.get(node.addr, q).await.unwrap();
        assert_eq!(r.status, 400, "{q}");
        assert!(error_message(&r, 400).contains(word), "{q}: {}", r.text());
    }
    let r = api
        .get(
            node.addr,
            "/v1/telemetry/traces/0102030405060708090a0b0c0d0e0f11",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_spans_bounds_the_spans_kept_not_the_calls_counted() {
    let dir = TestDir::new("telemetry-bound");
    std::fs::create_dir_all(&dir.path).unwrap();
    let mut child = std::process::Command::new(herd_bin())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--trace-spans",
            "2",
            "--data-dir",
        ])
        .arg(dir.node("data"))
        .env_remove("HERD_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let line = herd_testkit::ready_line(&mut child, Duration::from_secs(20)).expect("ready");
    let ready: Value = serde_json::from_str(&line).unwrap();
    let addr: std::net::SocketAddr = ready["addr"].as_str().unwrap().parse().unwrap();
    let api = Api::new(None);
    for i in 0..3u8 {
        let r = api
            .request_with(
                "POST",
                addr,
                "/v1/traces",
                &[("content-type", "application/json")],
                spans("kept", i * 10, 1),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let traces = api
        .get(addr, "/v1/telemetry/traces?limit=50")
        .await
        .unwrap()
        .json();
    assert_eq!(traces["traces"].as_array().unwrap().len(), 2, "{traces}");
    let top = api.get(addr, "/v1/telemetry/top").await.unwrap().json();
    assert_eq!(calls(&top, "kept"), 3, "{top}");
    let _ = child.kill();
    let _ = child.wait();
}
