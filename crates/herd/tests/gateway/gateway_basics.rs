//! Routing, weighting, forwarding headers, config errors and the admin API, through the
//! real binary.

use herd_testkit::prelude::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_3_to_1_over_4000_requests() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = Gateway::start(&simple_config(&format!(
        "policy = \"round_robin\"\n{}",
        servers(&[(&a, 3), (&b, 1)])
    )));
    let c = client();
    let counts = tally(&c, &gw.url("/"), 4000).await;
    let share_a = counts["a"] as f64 / 4000.0;
    assert!(
        (share_a - 0.75).abs() <= 0.03,
        "a got {share_a:.3} of requests, want 0.75 ± 0.03 ({counts:?})"
    );
    assert_eq!(counts["a"] + counts["b"], 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_accept_language() {
    let zh = Backend::start("zh");
    let en = Backend::start("en");
    let img = Backend::start("img");
    let gw = Gateway::start(&format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[routes]]
host = "*.img.example.com"
path_prefix = "/static/"
backend = "images"

[[routes]]
headers = {{ "Accept-Language" = "^zh" }}
backend = "chinese"

[[routes]]
methods = ["GET"]
backend = "english"

[backends.images]
servers = [{{ addr = "{}" }}]
[backends.chinese]
servers = [{{ addr = "{}" }}]
[backends.english]
servers = [{{ addr = "{}" }}]
"#,
        img.addr, zh.addr, en.addr
    ));
    let c = client();
    let r = get_with(
        &c,
        &gw.url("/static/a.png"),
        &[("host", "CDN.img.example.com")],
    )
    .await
    .unwrap();
    assert_eq!(r.body, "img");
    let r = get_with(&c, &gw.url("/"), &[("accept-language", "zh-CN,zh;q=0.9")])
        .await
        .unwrap();
    assert_eq!(r.body, "zh");
    let r = get_with(&c, &gw.url("/"), &[("accept-language", "en-US,en")])
        .await
        .unwrap();
    assert_eq!(r.body, "en");
    // No route matches a POST without Chinese: 404 that says so.
    let r = post(&c, &gw.url("/"), "x").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_route_header_edits() {
    let a = Backend::start("a");
    let gw = Gateway::start(&format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[routes]]
backend = "app"
add_request_headers = {{ "X-Env" = "test" }}
remove_request_headers = ["X-Secret"]
add_response_headers = {{ "X-Served-By" = "herd" }}
remove_response_headers = ["X-Backend"]

[backends.app]
servers = [{{ addr = "{}" }}]
"#,
        a.addr
    ));
    let c = client();
    let r = get_with(
        &c,
        &gw.url("/headers"),
        &[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-secret", "s3cr3t"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "must-not-pass"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some("herd"));
    assert_eq!(r.header("x-backend"), None);
    let seen: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen["host"], "shop.example.com");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(
        seen["forwarded"],
        "for=127.0.0.1;proto=http;host=shop.example.com"
    );
    assert_eq!(seen["x-env"], "test");
    assert!(seen.get("x-secret").is_none());
    assert!(seen.get("x-hop").is_none());
}

/// SIGTERM the moment the gateway says it is ready still drains and exits 0: the signal
/// handlers exist before the announcement. (They were installed just after it, and a
/// supervisor's quick SIGTERM killed the process outright about one time in eight.)
#[test]
fn sigterm_right_after_ready_stops_cleanly() {
    for attempt in 0..50 {
        let mut gw = Gateway::start(
            "[gateway]\ndrain_timeout = \"1s\"\n\n[[listeners]]\nname = \"web\"\n\
             bind = \"127.0.0.1:0\"\n\n[[routes]]\nbackend = \"app\"\n\n\
             [backends.app]\nservers = [{ addr = \"127.0.0.1:1\" }]\n",
        );
        gw.signal("TERM");
        let code = gw.wait_exit(Duration::from_secs(10));
        assert_eq!(
            code,
            Some(0),
            "attempt {attempt}: exit {code:?}, stderr:\n{}",
            gw.stderr()
        );
    }
}

#[test]
fn bad_config_exits_non_zero_naming_file_field_and_reason() {
    let dir = temp_dir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nbackend = \"app\"\n\
         [backends.app]\nservers = [{ addr = \"127.0.0.1:1\", weight = 500 }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["gateway", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("backends.app.servers[0].weight"), "{err}");
    assert!(err.contains("1-100"), "{err}");
    assert!(out.stdout.is_empty(), "nothing may be bound or announced");

    let check = std::process::Command::new(herd_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_healthz_status_metrics() {
    let a = Backend::start("a");
    let gw = Gateway::start(&simple_config(&servers(&[(&a, 1)])));
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);
    }
    let h = get(&c, &gw.admin_url("/healthz")).await.unwrap();
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));

    let s = gw.status(&c).await;
    let pid = gw.child.id();
    let process_id = s["process_id"].as_str().unwrap();
    let parts: Vec<&str> = process_id.split(':').collect();
    assert_eq!(parts.len(), 4, "{process_id}");
    assert_eq!(parts[3], pid.to_string());
    assert_eq!(parts[1], gw.listeners["web"].port().to_string());
    assert_eq!(s["config_revision"], 1);
    let server = gw.server_status(&c, "app", a.addr).await;
    assert_eq!(server["requests"], 5);
    assert_eq!(server["healthy"], true);
    assert_eq!(server["weight"], 1);

    let m = get(&c, &gw.admin_url("/metrics")).await.unwrap();
    assert_eq!(m.status, 200);
    let line = format!(
        "herd_server_requests_total{{backend=\"app\",server=\"{}\",class=\"2xx\"}} 5",
        a.addr
    );
    assert!(m.body.contains(&line), "missing {line} in\n{}", m.body);
    assert!(m.body.contains("herd_server_latency_seconds_bucket"));
    assert!(m
        .body
        .contains("herd_route_requests_total{listener=\"web\",route=\"0:app\",class=\"2xx\"} 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_server_gives_503_naming_the_backend_or_the_fallback() {
    let gw = Gateway::start(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/degraded/"
backend = "gone"
fallback = { status = 503, body = "busy, try later" }

[[routes]]
backend = "gone"

[backends.gone]
servers = [{ addr = "127.0.0.1:1" }]
retries = 0
passive = { consecutive_failures = 1, cooldown = "1m" }
"#,
    );
    let c = client();
    // First request: connect refused, 502, and the server is ejected.
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.body);
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("\"gone\""), "{}", r.body);
    let r = get(&c, &gw.url("/degraded/x")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (503, "busy, try later"));
    let m = get(&c, &gw.admin_url("/metrics")).await.unwrap();
    assert!(
        m.body
            .contains("herd_backend_no_server_total{backend=\"gone\"} 2"),
        "{}",
        m.body
    );
}

/// Round robin over three equal servers with one drained, in maintenance or ejected:
/// the other two share its turns evenly, as nginx's smooth weighted round robin over
/// usable peers does (before, the one after it in the sequence took them all: 2:1).
#[tokio::test]
async fn round_robin_spreads_a_missing_servers_share_evenly() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let gw = Gateway::start(&format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\npolicy = \"round_robin\"\n{}\n",
        servers(&[(&a, 1), (&b, 1), (&c, 1)])
    ));
    let client = client();
    for action in ["maint", "drain"] {
        let r = post(
            &client,
            &gw.admin_url(&format!("/backends/app/servers/{}/{action}", a.addr)),
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let counts = tally(&client, &gw.url("/"), 300).await;
        assert_eq!(counts.get("a"), None, "{action}: {counts:?}");
        assert_eq!(counts.get("b"), Some(&150), "{action}: {counts:?}");
        assert_eq!(counts.get("c"), Some(&150), "{action}: {counts:?}");
        let r = post(
            &client,
            &gw.admin_url(&format!("/backends/app/servers/{}/enable", a.addr)),
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }
}
