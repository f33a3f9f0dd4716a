//! Tracing end to end (SPEC §5): a real `herd server` receives spans over OTLP/HTTP; a real
//! gateway starts or continues W3C trace context, passes it on naming its own span, and
//! exports its spans; small services propagate `traceparent` by hand and report their own
//! spans. The server's answers — one trace's tree, TOP N, the call graph with its cycles —
//! must match the calls made, exactly.

use herd_testkit::prelude::*;
use herd_testkit::raw_server::{Answer, RawServer};
use serde_json::Value;
use std::time::Duration;

fn config(server: &ServerProc, routes: &[(&str, &TracedService)], extra: &str) -> String {
    let mut c = format!(
        "[tracing]\notlp_endpoint = \"http://{}/v1/traces\"\n{extra}\n\
         [[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n",
        server.addr
    );
    for (prefix, svc) in routes {
        c.push_str(&format!(
            "[[routes]]\npath_prefix = \"/{prefix}\"\nbackend = \"{}\"\n\n",
            svc.name
        ));
    }
    for (_, svc) in routes {
        c.push_str(&format!(
            "[backends.{}]\nservers = [{{ addr = \"{}\" }}]\n\n",
            svc.name, svc.addr
        ));
    }
    c
}

async fn json(client: &Client, url: &str) -> Value {
    let r = get(client, url).await.unwrap();
    assert_eq!(r.status, 200, "{url}: {}", r.text());
    r.json()
}

fn edge_calls(graph: &Value, from: &str, to: &str) -> u64 {
    graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
        .map_or(0, |e| e["calls"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_through_the_gateway_is_one_trace_and_the_graph_counts_every_call() {
    let dir = TestDir::new("trace-chain");
    let api = Api::new(None);
    let server = single_node(&dir, &api).await;
    let otlp = format!("http://{}/v1/traces", server.addr);
    let (a, b, c) = (
        TracedService::start("a", &otlp),
        TracedService::start("b", &otlp),
        TracedService::start("c", &otlp),
    );
    let gw = Gateway::start(&config(&server, &[("a", &a), ("b", &b), ("c", &c)], ""));
    a.set_next(&gw.url("/b"));
    b.set_next(&gw.url("/c"));
    let client = client();
    for _ in 0..5 {
        let r = get(&client, &gw.url("/a?hops=2")).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "a>b>c"));
    }

    // Every hop reached its service with a traceparent naming the gateway's span.
    for svc in [&a, &b, &c] {
        let got = svc.received_traceparents();
        assert_eq!(got.len(), 5, "{}: {got:?}", svc.name);
        assert!(
            got.iter().all(|t| t.len() == 55 && t.ends_with("-01")),
            "{got:?}"
        );
    }

    let graph = eventually(
        "the gateway's spans to be exported",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let url = server.url("/v1/telemetry/graph?window=5m");
            async move {
                let g = json(&client, &url).await;
                (edge_calls(&g, "herd-gateway", "a") == 5).then_some(g)
            }
        },
    )
    .await;
    assert_eq!(edge_calls(&graph, "a", "b"), 5, "{graph}");
    assert_eq!(edge_calls(&graph, "b", "c"), 5, "{graph}");
    assert_eq!(graph["edges"].as_array().unwrap().len(), 3, "{graph}");
    assert_eq!(graph["cycles"], serde_json::json!([]));
    assert_eq!(graph["nodes_answered"], serde_json::json!([server.id]));

    let top = json(
        &client,
        &server.url("/v1/telemetry/top?by=calls&window=5m&n=10"),
    )
    .await;
    let calls: Vec<(String, u64)> = top["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().to_string(),
                r["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [("herd-gateway", 15), ("a", 5), ("b", 5), ("c", 5)]
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    assert_eq!(calls, want, "{top}");

    // c's calls, as a distribution: every call in some bucket, the percentiles in order.
    let lat = json(
        &client,
        &server.url("/v1/telemetry/latency?service=c&window=5m"),
    )
    .await;
    assert_eq!(lat["calls"], 5, "{lat}");
    let in_buckets: u64 = lat["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 5, "{lat}");
    let (p50, p99) = (
        lat["p50_ms"].as_f64().unwrap(),
        lat["p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{lat}");
    let none = get(&client, &server.url("/v1/telemetry/latency?service=nobody"))
        .await
        .unwrap();
    assert_eq!(none.status, 404);

    // One trace: client → gateway → a → (a's call) → gateway → b → (b's call) → gateway → c.
    let list = json(
        &client,
        &server.url("/v1/telemetry/traces?service=c&limit=50"),
    )
    .await;
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 5, "{list}");
    let id = traces[0]["trace_id"].as_str().unwrap();
    let trace = eventually(
        "all eight spans of one trace",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let url = server.url(&format!("/v1/telemetry/traces/{id}"));
            async move {
                let t = json(&client, &url).await;
                (t["spans"].as_array().unwrap().len() == 8).then_some(t)
            }
        },
    )
    .await;
    let spans = trace["spans"].as_array().unwrap();
    let shape: Vec<(u64, &str, &str)> = spans
        .iter()
        .map(|s| {
            (
                s["depth"].as_u64().unwrap(),
                s["service"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, "herd-gateway", "server"),
            (1, "a", "server"),
            (2, "a", "client"),
            (3, "herd-gateway", "server"),
            (4, "b", "server"),
            (5, "b", "client"),
            (6, "herd-gateway", "server"),
            (7, "c", "server"),
        ],
        "{trace}"
    );
    // Each span's parent is the one before it, and the gateway's span is what c was told.
    for pair in spans.windows(2) {
        assert_eq!(pair[1]["parent_span_id"], pair[0]["span_id"], "{trace}");
    }
    assert!(spans[0].get("parent_span_id").is_none());
    let gw_span = &spans[6];
    let told_c = c.received_traceparents();
    assert!(
        told_c
            .iter()
            .any(|t| t == &format!("00-{id}-{}-01", gw_span["span_id"].as_str().unwrap())),
        "c was not told the gateway's span: {told_c:?}"
    );
    let attrs = &gw_span["attributes"];
    assert_eq!(attrs["herd.backend"], "c");
    assert_eq!(attrs["http.response.status_code"], 200);
    assert_eq!(attrs["url.path"], "/c");
    assert_eq!(attrs["http.route"], "/c");
    assert_eq!(attrs["herd.server"], c.addr.to_string());
    for phase in [
        "herd.time.queue_ms",
        "herd.time.connect_ms",
        "herd.time.ttfb_ms",
    ] {
        assert!(
            attrs[phase].as_f64().is_some_and(|v| v >= 0.0),
            "{phase}: {attrs}"
        );
    }
    assert_eq!(gw_span["name"], "GET /c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_services_is_listed_as_a_cycle() {
    let dir = TestDir::new("trace-ring");
    let api = Api::new(None);
    let server = single_node(&dir, &api).await;
    let otlp = format!("http://{}/v1/traces", server.addr);
    let (a, b, c) = (
        TracedService::start("a", &otlp),
        TracedService::start("b", &otlp),
        TracedService::start("c", &otlp),
    );
    let gw = Gateway::start(&config(&server, &[("a", &a), ("b", &b), ("c", &c)], ""));
    a.set_next(&gw.url("/b"));
    b.set_next(&gw.url("/c"));
    c.set_next(&gw.url("/a"));
    let client = client();
    // a → b → c → a: four hops, a is called twice.
    let r = get(&client, &gw.url("/a?hops=3")).await.unwrap();
    assert_eq!(r.text(), "a>b>c>a");
    let graph = eventually("the ring in the graph", Duration::from_secs(20), || {
        let client = client.clone();
        let url = server.url("/v1/telemetry/graph");
        async move {
            let g = json(&client, &url).await;
            (edge_calls(&g, "c", "a") == 1).then_some(g)
        }
    })
    .await;
    assert_eq!(
        graph["cycles"],
        serde_json::json!([["a", "b", "c"]]),
        "{graph}"
    );
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a")] {
        assert_eq!(edge_calls(&graph, from, to), 1, "{graph}");
        let e = graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .unwrap();
        assert_eq!(e["in_cycle"], true);
    }
    // The CLI prints the same graph, the ring flagged.
    let cli = std::process::Command::new(herd_bin())
        .args(["graph", "--server", &server.addr.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{text}");
    assert!(text.contains("dependency cycle: {a, b, c}"), "{text}");
    assert_eq!(text.matches("CYCLE").count(), 3, "{text}");
    let ingress = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == "herd-gateway")
        .unwrap();
    assert_eq!(ingress["in_cycle"], false, "{graph}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_parent_and_the_ratio_and_bad_context_starts_anew() {
    let dir = TestDir::new("trace-sampling");
    let api = Api::new(None);
    let server = single_node(&dir, &api).await;
    let otlp = format!("http://{}/v1/traces", server.addr);
    let a = TracedService::start("a", &otlp);
    // The gateway samples none of the traces it starts itself.
    let gw = Gateway::start(&config(&server, &[("a", &a)], "sample_ratio = 0.0"));
    let client = client();
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let unsampled = "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203331-00";
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "no context: a new trace, not sampled at ratio 0"),
        (
            &[("traceparent", parent)],
            "a sampled parent: continued and sampled",
        ),
        (
            &[("traceparent", unsampled)],
            "an unsampled parent: continued, not sampled",
        ),
        (
            &[
                (
                    "traceparent",
                    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
                ),
                ("tracestate", "k=v"),
            ],
            "upper-case hex is malformed: a new trace, its tracestate dropped",
        ),
        (
            &[("traceparent", parent), ("traceparent", unsampled)],
            "two traceparents: a new trace",
        ),
    ];
    for (headers, what) in cases {
        let r = get_with(&client, &gw.url("/a"), headers).await.unwrap();
        assert_eq!(r.status, 200, "{what}");
    }
    let got = a.received_traceparents();
    assert_eq!(got.len(), 5, "{got:?}");
    let trace_of = |t: &str| t[3..35].to_string();
    let parent_of = |t: &str| t[36..52].to_string();
    assert!(got[0].ends_with("-00"), "{}: {}", cases[0].1, got[0]);
    assert_eq!(
        trace_of(&got[1]),
        "0af7651916cd43dd8448eb211c80319c",
        "{}",
        cases[1].1
    );
    assert_ne!(
        parent_of(&got[1]),
        "b7ad6b7169203331",
        "the gateway names its own span"
    );
    assert!(got[1].ends_with("-01"), "{}", cases[1].1);
    assert_eq!(
        trace_of(&got[2]),
        "0af7651916cd43dd8448eb211c80319d",
        "{}",
        cases[2].1
    );
    assert!(got[2].ends_with("-00"), "{}", cases[2].1);
    assert_ne!(
        trace_of(&got[3]),
        "0af7651916cd43dd8448eb211c80319c",
        "{}",
        cases[3].1
    );
    assert!(got[3].ends_with("-00"));
    assert_eq!(
        a.received_tracestates()[3],
        None,
        "a malformed traceparent's tracestate reached the server"
    );
    assert_ne!(
        trace_of(&got[4]),
        "0af7651916cd43dd8448eb211c80319c",
        "{}",
        cases[4].1
    );
    assert_ne!(
        trace_of(&got[4]),
        "0af7651916cd43dd8448eb211c80319d",
        "{}",
        cases[4].1
    );

    // Exactly one trace was sampled: the one with a sampled parent.
    let list = eventually("the sampled trace", Duration::from_secs(20), || {
        let client = client.clone();
        let url = server.url("/v1/telemetry/traces?service=herd-gateway");
        async move {
            let l = json(&client, &url).await;
            (!l["traces"].as_array().unwrap().is_empty()).then_some(l)
        }
    })
    .await;
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{list}");
    assert_eq!(traces[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    let metrics = get(&client, &gw.admin_url("/metrics"))
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("herd_trace_spans_total{result=\"exported\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_endpoint_that_hangs_never_slows_requests_and_spans_are_dropped_and_counted() {
    // Accepts connections and never answers.
    let sink = RawServer::start(Answer::Paced(Vec::new(), Vec::new())).await;
    let backend = Backend::start("app");
    let config = format!(
        "[tracing]\notlp_endpoint = \"http://{}/v1/traces\"\nmax_queue = 1\n\n\
         [[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservers = [{{ addr = \"{}\" }}]\n",
        sink.addr, backend.addr
    );
    let gw = Gateway::start(&config);
    let client = client();
    assert_eq!(get(&client, &gw.url("/")).await.unwrap().status, 200);
    // Once the exporter is stuck sending the first batch, the queue (one span) fills.
    eventually(
        "the exporter to send its first batch",
        Duration::from_secs(10),
        || async { (!sink.requests().is_empty()).then_some(()) },
    )
    .await;
    for _ in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(2), get(&client, &gw.url("/")))
            .await
            .expect("a request waited for the exporter")
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let metrics = get(&client, &gw.admin_url("/metrics"))
        .await
        .unwrap()
        .text();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herd_trace_spans_total{result=\"dropped\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(dropped >= 19, "dropped {dropped}:\n{metrics}");
}

/// The Python interpreter with the OpenTelemetry SDK (`.ci/run` makes one and names it in
/// HERD_OTEL_PYTHON). Without it the test says so and passes outside CI; in CI it fails.
fn otel_python() -> Option<String> {
    if let Ok(p) = std::env::var("HERD_OTEL_PYTHON") {
        return Some(p);
    }
    assert!(
        std::env::var("CI").is_err(),
        "HERD_OTEL_PYTHON is not set: .ci/run installs the OpenTelemetry SDK and sets it"
    );
    eprintln!("skipped: set HERD_OTEL_PYTHON to a python with opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_using_the_opentelemetry_sdk_reports_to_herd_with_no_collector() {
    let Some(python) = otel_python() else {
        return;
    };
    let dir = TestDir::new("trace-otel-sdk");
    let api = Api::new(None);
    let server = single_node(&dir, &api).await;
    let otlp = format!("http://{}/v1/traces", server.addr);
    let a = TracedService::start("a", &otlp);
    let gw = Gateway::start(&config(&server, &[("a", &a)], ""));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/gateway/assets/otel_client.py"
    );
    let run = tokio::process::Command::new(&python)
        .args([script, &otlp, &gw.url("/a")])
        .output()
        .await
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let (trace_id, client_span) = (fields[0], fields[1]);
    assert_eq!(fields[2], "a");

    // The SDK's propagator told the gateway its client span; the gateway continued it.
    let told = a.received_traceparents();
    assert_eq!(told.len(), 1);
    assert_eq!(&told[0][3..35], trace_id, "{told:?}");

    let client = client();
    let trace = eventually(
        "the SDK's and the gateway's spans",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let url = server.url(&format!("/v1/telemetry/traces/{trace_id}"));
            async move {
                let r = get(&client, &url).await.ok()?;
                let t = r.json();
                (r.status == 200 && t["spans"].as_array()?.len() == 4).then_some(t)
            }
        },
    )
    .await;
    let shape: Vec<(u64, &str, &str)> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["depth"].as_u64().unwrap(),
                s["service"].as_str().unwrap(),
                s["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, "py-client", "GET /checkout"),
            (1, "py-client", "GET gateway"),
            (2, "herd-gateway", "GET /a"),
            (3, "a", "GET /a"),
        ],
        "{trace}"
    );
    assert_eq!(trace["spans"][2]["parent_span_id"], client_span);
    // The call is the SDK client's, through the gateway, to a.
    let graph = json(&client, &server.url("/v1/telemetry/graph")).await;
    assert_eq!(edge_calls(&graph, "py-client", "a"), 1, "{graph}");
    assert_eq!(graph["edges"].as_array().unwrap().len(), 1, "{graph}");
}
