//! Circuit breakers: consecutive failures, error rate in a window, a dead server;
//! fallback while open, half-open probes, closing.

use super::*;

// ---------------------------------------------------------------- circuit breaker

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_serves_fallback_probes_and_closes() {
    let b = Backend::start("b1");
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n{}",
        listener("web", ""),
        backend_of(
            "app",
            &b,
            "passive = { consecutive_failures = 0 }\n\
             fallback = { status = 503, body = \"degraded: try later\" }\n\
             circuit_breaker = { consecutive_failures = 3, open_for = \"1s\", half_open_probes = 2 }"
        )
    ));
    let c = client();
    let fails = gw.url("/status?code=500");
    let rejected = Cell::new(0u32);

    // When the request that last opened the breaker was sent: it opened after that.
    let sent = Cell::new(Instant::now());
    for i in 0..3 {
        sent.set(Instant::now());
        let r = get(&c, &fails).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (500, "b1"), "failure {i}");
        if i < 2 {
            assert_eq!(breaker_state(&gw, &c, "app").await, "closed");
        }
    }
    let opened = sent.get();
    assert_eq!(breaker_state(&gw, &c, "app").await, "open");
    assert_eq!(
        metric_of(&gw, &c, "herd_backend_circuit_state{backend=\"app\"}").await,
        1.0
    );

    // Open: the fallback, and the server is not touched.
    for _ in 0..4 {
        let r = get(&c, &gw.url("/")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "degraded: try later"));
        rejected.set(rejected.get() + 1);
    }
    assert_eq!(b.requests(), 3);

    // After open_for one probe goes through; it fails, so the breaker opens again.
    eventually("a probe after open_for", IO_TIMEOUT, || async {
        sent.set(Instant::now());
        let r = get(&c, &fails).await.unwrap();
        if r.body == "degraded: try later" {
            rejected.set(rejected.get() + 1);
            return None;
        }
        assert_eq!(r.status, 500);
        Some(())
    })
    .await;
    let probed = opened.elapsed();
    assert!(
        probed >= Duration::from_millis(990),
        "probed after {probed:?}"
    );
    assert_eq!(b.requests(), 4);
    assert_eq!(breaker_state(&gw, &c, "app").await, "open");
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.body, "degraded: try later", "a failed probe must reopen");
    rejected.set(rejected.get() + 1);
    let reopened = sent.get();

    // Next rest: two probes must succeed; after the first it is half-open.
    eventually("a probe after the second rest", IO_TIMEOUT, || async {
        let r = get(&c, &gw.url("/")).await.unwrap();
        if r.body == "degraded: try later" {
            rejected.set(rejected.get() + 1);
            return None;
        }
        assert_eq!((r.status, r.body.as_str()), (200, "b1"));
        Some(())
    })
    .await;
    let probed = reopened.elapsed();
    assert!(
        probed >= Duration::from_millis(990),
        "probed after {probed:?}"
    );
    assert_eq!(breaker_state(&gw, &c, "app").await, "half_open");
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "b1"));
    assert_eq!(breaker_state(&gw, &c, "app").await, "closed");
    assert_eq!(b.requests(), 6);

    // Closed with a clean slate: one failure does not reopen it.
    assert_eq!(get(&c, &fails).await.unwrap().status, 500);
    assert_eq!(breaker_state(&gw, &c, "app").await, "closed");

    for (series, want) in [
        ("herd_backend_circuit_state{backend=\"app\"}", 0.0),
        (
            "herd_backend_circuit_transitions_total{backend=\"app\",to=\"open\"}",
            2.0,
        ),
        (
            "herd_backend_circuit_transitions_total{backend=\"app\",to=\"half_open\"}",
            2.0,
        ),
        (
            "herd_backend_circuit_transitions_total{backend=\"app\",to=\"closed\"}",
            1.0,
        ),
        (
            "herd_backend_circuit_rejected_total{backend=\"app\"}",
            f64::from(rejected.get()),
        ),
    ] {
        assert_eq!(metric_of(&gw, &c, series).await, want, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_error_rate_in_the_window() {
    let b = Backend::start("b1");
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n{}",
        listener("web", ""),
        backend_of(
            "app",
            &b,
            "passive = { consecutive_failures = 0 }\n\
             circuit_breaker = { consecutive_failures = 0, error_rate = 0.5, min_requests = 4, \
             window = \"1m\", open_for = \"1m\" }"
        )
    ));
    let c = client();
    // 1 of 2, then 1 of 3: under min_requests; 2 of 4 reaches the rate.
    for (path, want) in [
        ("/", 200),
        ("/status?code=502", 502),
        ("/", 200),
        ("/status?code=503", 503),
    ] {
        assert_eq!(breaker_state(&gw, &c, "app").await, "closed");
        assert_eq!(get(&c, &gw.url(path)).await.unwrap().status, want);
    }
    assert_eq!(breaker_state(&gw, &c, "app").await, "open");
    // No fallback configured: 503 saying why.
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("circuit open"), "{}", r.body);
    assert_eq!(b.requests(), 4);
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_backend_circuit_rejected_total{backend=\"app\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_fails_fast_for_a_dead_server_and_closes_when_it_returns() {
    let mut b = Backend::start("b1");
    let addr = b.addr;
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\nbackend = \"app\"\nfallback = {{ status = 200, body = \"cached page\" }}\n\n{}",
        listener("web", ""),
        backend_of(
            "app",
            &b,
            "retries = 0\npassive = { consecutive_failures = 0 }\n\
             circuit_breaker = { consecutive_failures = 2, open_for = \"1s\", half_open_probes = 1 }"
        )
    ));
    let c = client();
    assert_eq!(get(&c, &gw.url("/")).await.unwrap().body, "b1");
    b.kill();
    // A refused connect is a failure; the route's fallback answers each of them too.
    for _ in 0..2 {
        let r = get(&c, &gw.url("/")).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "cached page"));
    }
    assert_eq!(breaker_state(&gw, &c, "app").await, "open");
    // Open: failed fast, counted as rejected (no connect attempt is made).
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.body, "cached page");
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_backend_circuit_rejected_total{backend=\"app\"}"
        )
        .await,
        1.0
    );
    let _b = Backend::start_on("b1", addr);
    // Open for 1s whatever the server does; then one good probe closes it.
    let body = eventually("the server again", IO_TIMEOUT, || async {
        let r = get(&c, &gw.url("/")).await.unwrap();
        (r.body == "b1").then_some(r.body)
    })
    .await;
    assert_eq!(body, "b1");
    assert_eq!(breaker_state(&gw, &c, "app").await, "closed");
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_backend_circuit_transitions_total{backend=\"app\",to=\"closed\"}"
        )
        .await,
        1.0
    );
}
