//! Rate limits (per client IP, per header value, per route) and max_conns_per_server with
//! its bounded queue.

use super::*;

// ---------------------------------------------------------------- rate limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_client_ip_passes_the_burst_then_429_then_refills() {
    let b = Backend::start("b1");
    // One token every 2 s: the burst is spent long before a token comes back.
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\
         rate_limit = {{ per_second = 0.5, burst = 5 }}\n\n{}",
        listener("web", ""),
        backend_of("app", &b, "")
    ));
    let c = client();
    let mut statuses = Vec::new();
    let limited = Cell::new(0u32);
    for _ in 0..8 {
        let r = get(&c, &gw.url("/")).await.unwrap();
        if r.status == 429 {
            limited.set(limited.get() + 1);
            let after: u64 = r
                .header("retry-after")
                .expect("429 without Retry-After")
                .parse()
                .expect("Retry-After in whole seconds");
            assert!((1..=2).contains(&after), "Retry-After {after}");
            assert!(r.body.contains("rate limit"), "{}", r.body);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(b.requests(), 5, "a limited request reached the server");

    // A token comes back within Retry-After; exactly one request spends it.
    let started = Instant::now();
    eventually("a token after the refill interval", IO_TIMEOUT, || async {
        let r = get(&c, &gw.url("/")).await.unwrap();
        if r.status == 429 {
            limited.set(limited.get() + 1);
            None
        } else {
            Some(r.status)
        }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refill took {:?}",
        started.elapsed()
    );
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(
        r.status, 429,
        "a second request passed on one refilled token"
    );
    limited.set(limited.get() + 1);
    assert_eq!(b.requests(), 6);

    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_rate_limited_total{listener=\"web\",route=\"0:app\"}"
        )
        .await,
        f64::from(limited.get())
    );
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_requests_total{listener=\"web\",route=\"0:app\",class=\"4xx\"}"
        )
        .await,
        f64::from(limited.get())
    );
    let s = gw.status(&c).await;
    let route = &s["traffic"]["routes"][0];
    assert_eq!(route["rate_limited"], limited.get());
    assert_eq!(route["rate_limit"]["key"], "client_ip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_by_header_keeps_a_bucket_per_value_and_by_route_shares_one() {
    let b = Backend::start("b1");
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\npath_prefix = \"/keyed\"\nbackend = \"app\"\n\
         rate_limit = {{ key = \"header:X-Api-Key\", per_second = 0.1, burst = 2 }}\n\n\
         [[routes]]\nlistener = \"web\"\npath_prefix = \"/shared\"\nbackend = \"app\"\n\
         rate_limit = {{ key = \"route\", per_second = 0.1, burst = 3 }}\n\n{}",
        listener("web", ""),
        backend_of("app", &b, "")
    ));
    let c = client();
    let status = |path: &'static str, key: Option<&'static str>| {
        let (c, url) = (c.clone(), gw.url(path));
        async move {
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
            get_with(&c, &url, &headers).await.unwrap().status
        }
    };

    // Each key value has its own two tokens; no header means "by client IP".
    for key in [Some("alice"), Some("bob"), None] {
        let got = [
            status("/keyed", key).await,
            status("/keyed", key).await,
            status("/keyed", key).await,
        ];
        assert_eq!(got, [200, 200, 429], "key {key:?}");
    }
    // Alice is still out while bob's and carol's buckets are their own.
    assert_eq!(status("/keyed", Some("alice")).await, 429);
    assert_eq!(status("/keyed", Some("carol")).await, 200);

    // key = "route": one bucket whatever the header says.
    let got = [
        status("/shared", Some("alice")).await,
        status("/shared", Some("bob")).await,
        status("/shared", None).await,
        status("/shared", Some("dave")).await,
        status("/shared", Some("erin")).await,
    ];
    assert_eq!(got, [200, 200, 200, 429, 429]);
    assert_eq!(b.requests(), 6 + 1 + 3);

    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_rate_limited_total{listener=\"web\",route=\"0:app\"}"
        )
        .await,
        4.0
    );
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_rate_limited_total{listener=\"web\",route=\"1:app\"}"
        )
        .await,
        2.0
    );
}

// ---------------------------------------------------------------- max_conns_per_server

fn queue_config(b: &Backend, timeout: &str) -> String {
    format!(
        "{}[[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n{}",
        listener("web", ""),
        backend_of(
            "app",
            b,
            &format!("max_conns_per_server = 1\nqueue = {{ max = 1, timeout = \"{timeout}\" }}")
        )
    )
}

async fn queue_waiting(gw: &Gateway, c: &Client) -> u64 {
    gw.status(c).await["backends"]["app"]["traffic"]["queue"]["waiting"]
        .as_u64()
        .expect("queue.waiting in /status")
}

/// Start GET `path` in the background; resolves to (status, body, time taken, end).
fn spawn_get(c: &Client, url: String) -> tokio::task::JoinHandle<(u16, String, Duration, Instant)> {
    let c = c.clone();
    tokio::spawn(async move {
        let t = Instant::now();
        let r = get(&c, &url).await.unwrap();
        (r.status, r.body, t.elapsed(), Instant::now())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxconn_queue_times_out_with_503_and_overflow_is_refused_at_once() {
    let b = Backend::start("b1");
    let gw = Gateway::start(&queue_config(&b, "500ms"));
    let c = client();

    let holder = spawn_get(&client(), gw.url("/slow?ms=5000"));
    eventually("the first request at the server", IO_TIMEOUT, || async {
        (b.state.active.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let queued = spawn_get(&client(), gw.url("/slow?ms=10"));
    eventually("the second request in the queue", IO_TIMEOUT, || async {
        (queue_waiting(&gw, &c).await == 1).then_some(())
    })
    .await;

    // Queue full: refused at once, while the holder still has the slot.
    let t = Instant::now();
    let r = get(&client(), &gw.url("/slow?ms=10")).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("queue is full"), "{}", r.body);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );

    // The queued one waits its timeout, not for the slot.
    let (status, body, took, _) = queued.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no server slot came free in time"), "{body}");
    assert!(took >= Duration::from_millis(450), "gave up after {took:?}");
    assert!(
        !holder.is_finished(),
        "the holder ended before the queue timeout"
    );
    assert!(took < Duration::from_millis(4500), "waited {took:?}");

    let (status, _, _, _) = holder.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(b.requests(), 1, "a refused request reached the server");

    // The slot is free again: served at once.
    assert_eq!(get(&c, &gw.url("/slow?ms=1")).await.unwrap().status, 200);
    assert_eq!(queue_waiting(&gw, &c).await, 0);
    for (series, want) in [
        ("herd_backend_queue_timeouts_total{backend=\"app\"}", 1.0),
        ("herd_backend_queue_full_total{backend=\"app\"}", 1.0),
        ("herd_backend_queue_waiting{backend=\"app\"}", 0.0),
    ] {
        assert_eq!(metric_of(&gw, &c, series).await, want, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxconn_queued_request_is_served_when_the_slot_frees() {
    let b = Backend::start("b1");
    let gw = Gateway::start(&queue_config(&b, "20s"));
    let c = client();

    let holder = spawn_get(&client(), gw.url("/slow?ms=1500"));
    eventually("the first request at the server", IO_TIMEOUT, || async {
        (b.state.active.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let queued = spawn_get(&client(), gw.url("/slow?ms=10"));
    eventually("the second request in the queue", IO_TIMEOUT, || async {
        (queue_waiting(&gw, &c).await == 1).then_some(())
    })
    .await;
    let r = get(&client(), &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 503, "overflow: {}", r.body);

    let (s1, _, _, held_until) = holder.await.unwrap();
    let (s2, body, _, queued_until) = queued.await.unwrap();
    assert_eq!((s1, s2), (200, 200), "{body}");
    // A 10 ms request that ends after a 1.5 s one waited for its slot.
    assert!(
        queued_until >= held_until,
        "the queued request did not wait"
    );
    assert_eq!(b.requests(), 2);
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_backend_queue_timeouts_total{backend=\"app\"}"
        )
        .await,
        0.0
    );
    assert_eq!(
        metric_of(&gw, &c, "herd_backend_queue_full_total{backend=\"app\"}").await,
        1.0
    );
}
