//! The page (`/ui/`) in a real browser: Debian's chromium, headless, driven over the
//! DevTools protocol. It must show the cluster as the API reports it — the server and its
//! role, the agent, a service's instances, a dependency cycle drawn in red, the alert it
//! raises — and follow a change live: an instance that stops answering its health check
//! turns unhealthy on the page with no reload. Screenshots go to
//! `target/tmp/ui-screenshots/`.

use super::*;
use herd_testkit::browser::{chromium_or_skip, until, Browser};
use serde_json::json;

/// Spans of one trace in which a calls b, b calls c and c calls a, as three services'
/// OpenTelemetry SDKs would report them.
fn ring_spans() -> String {
    let t = "4bf92f3577b34da6a3ce929d0e0e4736";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let t0 = now - 1_000_000_000;
    let span = |id: u8, parent: Option<u8>, kind: u8, name: &str| {
        json!({
            "traceId": t, "spanId": format!("{id:016x}"),
            "parentSpanId": parent.map(|p| format!("{p:016x}")).unwrap_or_default(),
            "name": name, "kind": kind,
            "startTimeUnixNano": (t0 + u64::from(id) * 1000).to_string(),
            "endTimeUnixNano": (t0 + 100_000_000 - u64::from(id) * 1000).to_string(),
        })
    };
    let service = |name: &str, spans: Vec<serde_json::Value>| {
        json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": name}}]},
            "scopeSpans": [{"spans": spans}]
        })
    };
    json!({"resourceSpans": [
        service("a", vec![span(1, None, 2, "GET /a"), span(2, Some(1), 3, "call b"),
                          span(7, Some(6), 2, "GET /a")]),
        service("b", vec![span(3, Some(2), 2, "GET /b"), span(4, Some(3), 3, "call c")]),
        service("c", vec![span(5, Some(4), 2, "GET /c"), span(6, Some(5), 3, "call a")]),
    ]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_cluster_and_follows_an_instance_turning_unhealthy_live() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let dir = TestDir::new("cluster-ui");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let _agent = AgentProc::start(
        server.addr,
        dir.node("agent-a"),
        "node-a",
        "zone=a",
        "23400-23449",
    );
    apply(&server, &dir.path, &demo_manifest("1.0.0", 2, ""));
    let s = all_run(&api, &server, "web", 2, "1.0.0").await;
    let r = api
        .request_with(
            "POST",
            server.addr,
            "/v1/traces",
            &[("content-type", "application/json")],
            ring_spans(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rules = "[[rules]]\nname = \"cycle\"\nkind = \"dependency_cycle\"\nwindow = \"1h\"\n";
    let r = api
        .request("PUT", server.addr, "/v1/alerts/rules", rules)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let mut b = Browser::launch(&bin).await;
    b.navigate(&format!("http://{}/ui/", server.addr)).await;
    until(
        &mut b,
        "the server as leader",
        "document.querySelector('#servers tr[data-server-id] td.role')?.textContent === 'leader'",
    )
    .await;
    until(
        &mut b,
        "the agent",
        "!!document.querySelector('#agents tr[data-node=\"node-a\"]')",
    )
    .await;
    until(&mut b, "web with 2 of 2 instances healthy",
        "document.querySelector('tr.service[data-service=\"web\"] td.instances')?.textContent === '2/2'").await;
    until(
        &mut b,
        "three red edges of the cycle a → b → c → a",
        "[...document.querySelectorAll('#graph .edge.cycle')].filter(e => \
         getComputedStyle(e).stroke === 'rgb(207, 34, 46)').length === 3",
    )
    .await;
    until(
        &mut b,
        "the cycle named in words",
        "document.querySelector('#cycles')?.textContent.includes('a → b → c → a')",
    )
    .await;
    until(
        &mut b,
        "the cycle alert",
        "!!document.querySelector('.alert[data-rule=\"cycle\"]')",
    )
    .await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    b.screenshot(&shots.join("cluster.png")).await;

    // One instance stops answering (paused): its health check fails; the page follows.
    assert_eq!(b.eval("window.__herd_marker = 42").await, json!(42));
    let victim = &s["instances"][0];
    let id = victim["id"].as_str().unwrap().to_string();
    let pid = victim["pid"].as_u64().unwrap() as i32;
    // SAFETY-free: a signal to a child process of the agent this test started.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    until(&mut b, "web with 1 of 2 instances healthy",
        "document.querySelector('tr.service[data-service=\"web\"] td.instances')?.textContent === '1/2'").await;
    until(&mut b, "the paused instance's health failing",
        &format!("document.querySelector('tr[data-instance=\"{id}\"] td.health')?.textContent === 'failing'")).await;
    assert_eq!(
        b.eval("window.__herd_marker").await,
        json!(42),
        "the page was reloaded: it must update in place"
    );
    b.screenshot(&shots.join("unhealthy.png")).await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
}

/// 1,000 services: the page shows 50 a page with a pager, and the search box finds one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_pages_and_searches_a_thousand_services() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let dir = TestDir::new("cluster-ui-1000");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    for i in 0..1000 {
        let m = named_manifest(&format!("svc-{i:04}"), "1.0.0", 1, "");
        let r = api
            .request(
                "PUT",
                server.addr,
                &format!("/v1/deployments/svc-{i:04}"),
                m,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut b = Browser::launch(&bin).await;
    b.navigate(&format!("http://{}/ui/", server.addr)).await;
    until(
        &mut b,
        "the pager over 1,000 services",
        "document.querySelector('#pager')?.textContent.startsWith('1000 of 1000 · page 1/20')",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('tr.service').length")
            .await,
        json!(50),
        "one page of 50"
    );
    // Folded by default at this size: one row per service, no instance tables.
    assert_eq!(
        b.eval("document.querySelectorAll('tr.instances').length")
            .await,
        json!(0)
    );
    b.eval("document.querySelector('#next').click()").await;
    until(
        &mut b,
        "page 2",
        "document.querySelector('tr.service')?.dataset.service === 'svc-0050'",
    )
    .await;
    b.eval(
        "const s = document.querySelector('#search'); s.value = 'svc-0999'; \
         s.dispatchEvent(new Event('input'))",
    )
    .await;
    until(
        &mut b,
        "the one service searched for",
        "document.querySelectorAll('tr.service').length === 1 && \
         document.querySelector('tr.service').dataset.service === 'svc-0999'",
    )
    .await;
    // The search holds across the live update that follows.
    let seen = b
        .eval("document.querySelector('#summary').textContent")
        .await;
    until(
        &mut b,
        "the next live update",
        &format!("document.querySelector('#summary').textContent !== {seen}"),
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('tr.service').length")
            .await,
        json!(1)
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    b.screenshot(&shots.join("thousand.png")).await;
}
