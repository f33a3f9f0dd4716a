//! Who may come in and how much: listener and route ACLs, time windows, connections per
//! client IP, body size limits, idle keep-alive and header-read (slowloris) timeouts.

use super::*;

// ---------------------------------------------------------------- ACLs and hours

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_denies_with_403_on_http_and_closes_tcp_connections() {
    let b = Backend::start("b1");
    let echo = SideServer::echo();
    let tcp = |name: &str, acl: &str| {
        format!(
            "[[listeners]]\nname = \"{name}\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
             backend = \"echo\"\n{acl}\n\n"
        )
    };
    let gw = Gateway::start(&format!(
        "{}{}{}{}{}\
         [[routes]]\nlistener = \"web\"\npath_prefix = \"/private\"\nbackend = \"app\"\n\
         allow = [\"10.0.0.0/8\", \"::1\"]\n\n\
         [[routes]]\nbackend = \"app\"\n\n{}\
         [backends.echo]\nservers = [{{ addr = \"{}\" }}]\n",
        listener("web", ""),
        listener("closed", "deny = [\"127.0.0.0/8\"]"),
        listener(
            "allowed",
            "allow = [\"127.0.0.1/32\"]\ndeny = [\"10.0.0.0/8\"]"
        ),
        tcp("tcp_closed", "deny = [\"127.0.0.1\"]"),
        tcp("tcp_open", "allow = [\"127.0.0.0/8\"]"),
        backend_of("app", &b, ""),
        echo.addr
    ));
    let c = client();

    let r = get(&c, &gw.url("/private/x")).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("may not use this route"), "{}", r.body);
    assert_eq!(get(&c, &gw.url("/public")).await.unwrap().status, 200);
    for _ in 0..3 {
        let r = get(&c, &gw.listener_url("closed", "/")).await.unwrap();
        assert_eq!(r.status, 403);
        assert!(r.body.contains("may not use this listener"), "{}", r.body);
    }
    assert_eq!(
        get(&c, &gw.listener_url("allowed", "/"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(b.requests(), 2, "a denied request reached the server");

    let mut s = connect(gw.listeners["tcp_closed"]).await;
    let _ = s.write_all(b"hello").await;
    let got = read_to_close(&mut s, IO_TIMEOUT).await;
    assert_eq!(got.as_deref(), Some(""), "a denied tcp client got bytes");
    let mut s = connect(gw.listeners["tcp_open"]).await;
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(&back, b"hello");
    assert_eq!(echo.hits(), 1, "the denied tcp client reached the server");

    for (series, want) in [
        ("herd_listener_denied_total{listener=\"closed\"}", 3.0),
        ("herd_listener_denied_total{listener=\"web\"}", 0.0),
        ("herd_listener_denied_total{listener=\"tcp_closed\"}", 1.0),
        ("herd_listener_denied_total{listener=\"tcp_open\"}", 0.0),
        (
            "herd_route_refused_total{listener=\"web\",route=\"0:app\",reason=\"forbidden\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric_of(&gw, &c, series).await, want, "{series}");
    }
}

/// "HH:MM" of `minutes` after midnight (any integer, taken modulo a day).
fn hhmm(minutes: i64) -> String {
    let m = minutes.rem_euclid(1440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_outside_the_window_are_403_inside_are_served() {
    let b = Backend::start("b1");
    let utc_min = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60) as i64;
    let local = utc_min + 5 * 60 + 30; // at +05:30
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\npath_prefix = \"/closed\"\nbackend = \"app\"\n\
         hours = {{ from = \"{}\", to = \"{}\" }}\n\n\
         [[routes]]\nlistener = \"web\"\npath_prefix = \"/open\"\nbackend = \"app\"\n\
         hours = {{ from = \"{}\", to = \"{}\", utc_offset = \"+05:30\" }}\n\n\
         [[routes]]\nlistener = \"web\"\npath_prefix = \"/shifted\"\nbackend = \"app\"\n\
         hours = {{ from = \"{}\", to = \"{}\", utc_offset = \"+05:30\" }}\n\n{}",
        listener("web", ""),
        hhmm(utc_min + 180),
        hhmm(utc_min + 300),
        hhmm(local - 90),
        hhmm(local + 90),
        // The same window as /open read as UTC would include now; at +05:30 it does not.
        hhmm(utc_min - 90),
        hhmm(utc_min + 90),
        backend_of("app", &b, "")
    ));
    let c = client();
    let r = get(&c, &gw.url("/closed")).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("closed at this time of day"), "{}", r.body);
    assert_eq!(get(&c, &gw.url("/open")).await.unwrap().status, 200);
    assert_eq!(get(&c, &gw.url("/shifted")).await.unwrap().status, 403);
    assert_eq!(b.requests(), 1);
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_refused_total{listener=\"web\",route=\"0:app\",reason=\"outside_hours\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_route_refused_total{listener=\"web\",route=\"2:app\",reason=\"outside_hours\"}"
        )
        .await,
        1.0
    );
}

// ---------------------------------------------------------------- connections per IP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_per_ip_closes_the_connection_over_the_limit() {
    let b = Backend::start("b1");
    let gw = web_gateway("max_conns_per_ip = 2", &b);
    let addr = gw.listeners["web"];
    let c = client();
    // Served, so accepted and counted.
    let mut first = open_http(addr).await;
    let mut second = open_http(addr).await;
    assert_eq!(get_on(&mut first, "/").await.unwrap().0, 200);
    assert_eq!(get_on(&mut second, "/").await.unwrap().0, 200);

    let got = exchange(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(got, "", "the third connection was served");
    assert_eq!(get_on(&mut second, "/").await.unwrap().0, 200);
    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_listener_per_ip_rejected_total{listener=\"web\"}"
        )
        .await,
        1.0
    );
    assert_eq!(b.requests(), 3);

    // One closed is one free again (the gateway notices the close, then counts it out).
    drop(first);
    let status = eventually("a connection after one closed", IO_TIMEOUT, || async {
        let raw = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        (!raw.is_empty()).then(|| status_of(&raw))
    })
    .await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------- body size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_size_is_413_by_length_and_by_chunks() {
    let b = Backend::start("b1");
    let sink = SideServer::sink();
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nlistener = \"web\"\npath_prefix = \"/tiny\"\nbackend = \"app\"\n\
         max_body_size = 10\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"sink\"\n\n{}\
         [backends.sink]\nservers = [{{ addr = \"{}\" }}]\n",
        listener("web", "max_body_size = \"1KiB\""),
        backend_of("app", &b, ""),
        sink.addr
    ));
    let addr = gw.listeners["web"];
    let c = client();

    // The listener's 1 KiB: exactly 1024 passes, 1025 does not.
    let raw = exchange(addr, &sized_request("/up", 1024)).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.ends_with("received 1024"), "{raw}");
    let raw = exchange(addr, &sized_request("/up", 1025)).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert!(raw.contains("request body too large"), "{raw}");
    assert_eq!(
        sink.hits(),
        1,
        "a declared-too-large body reached the server"
    );

    // Chunked: counted as it streams.
    let raw = exchange(addr, &chunked_request("/up", 4, 256)).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.ends_with("received 1024"), "{raw}");
    let raw = exchange(addr, &chunked_request("/up", 6, 500)).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert!(raw.contains("request body too large"), "{raw}");
    // Whether the server saw the head before the body was cut off is a race; it never
    // answered (that would be a 200 "received ...").
    assert!((2..=3).contains(&sink.hits()), "{} requests", sink.hits());

    // A route's own limit wins over the listener's.
    let raw = exchange(addr, &sized_request("/tiny", 10)).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let raw = exchange(addr, &sized_request("/tiny", 11)).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert_eq!(b.requests(), 1);

    // Bodiless requests are untouched.
    assert_eq!(get(&c, &gw.url("/tiny")).await.unwrap().status, 200);
    for (series, want) in [
        (
            "herd_route_refused_total{listener=\"web\",route=\"1:sink\",reason=\"too_large\"}",
            2.0,
        ),
        (
            "herd_route_refused_total{listener=\"web\",route=\"0:app\",reason=\"too_large\"}",
            1.0,
        ),
        (
            "herd_route_requests_total{listener=\"web\",route=\"1:sink\",class=\"4xx\"}",
            2.0,
        ),
    ] {
        assert_eq!(metric_of(&gw, &c, series).await, want, "{series}");
    }
}

// ---------------------------------------------------------------- idle keep-alive

/// A kept-alive connection is closed after `idle_timeout` of silence counted from its last
/// answer: requests closer together than that keep it open however long it lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_counts_from_the_last_answer() {
    let b = Backend::start("b1");
    let gw = web_gateway("idle_timeout = \"800ms\"", &b);
    let mut s = connect(gw.listeners["web"]).await;
    let opened = Instant::now();
    let mut answered = Instant::now();
    // Five requests 500 ms apart: 2 s in all, more than twice the timeout.
    for i in 0..5 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"b1") {
            let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(
                n > 0,
                "request {i} found the connection closed after {:?}",
                opened.elapsed()
            );
            got.extend_from_slice(&buf[..n]);
        }
        answered = Instant::now();
        assert_eq!(status_of(&String::from_utf8_lossy(&got)), 200);
    }
    // Then silence: the gateway closes it once the timeout has passed, and soon after.
    let rest = read_to_close(&mut s, Duration::from_secs(10)).await;
    let after = answered.elapsed();
    assert_eq!(rest.as_deref(), Some(""), "closed without another answer");
    assert!(
        after >= Duration::from_millis(780) && after < Duration::from_secs(4),
        "closed {after:?} after the last answer, idle_timeout is 800 ms"
    );
}

// ---------------------------------------------------------------- slowloris

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_closes_slow_heads_not_idle_or_normal_clients() {
    let b = Backend::start("b1");
    let gw = web_gateway(
        "header_read_timeout = \"500ms\"\nidle_timeout = \"30s\"",
        &b,
    );
    let addr = gw.listeners["web"];
    let c = client();
    let mut idle = open_http(addr).await;
    let idle_since = Instant::now();

    // Half a head, then silence.
    let stalled = tokio::spawn(async move {
        let mut s = connect(addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        let t = Instant::now();
        let got = read_to_close(&mut s, Duration::from_secs(20)).await;
        (got, t.elapsed())
    });
    // One byte every 100 ms: never silent for long, never done.
    let dribbling = tokio::spawn(async move {
        let s = connect(addr).await;
        let (mut rd, mut wr) = s.into_split();
        let t = Instant::now();
        let writer = tokio::spawn(async move {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            for _ in 0..40 {
                head.extend_from_slice(b"X-Pad: a\r\n");
            }
            for byte in head {
                if wr.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = [0u8; 1024];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
            }
        };
        writer.abort();
        (closed, t.elapsed())
    });
    // A client that starts the HTTP/2 preface and stops.
    let half_preface = tokio::spawn(async move {
        let mut s = connect(addr).await;
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let t = Instant::now();
        let got = read_to_close(&mut s, Duration::from_secs(20)).await;
        (got, t.elapsed())
    });

    // Meanwhile a normal client is served.
    for _ in 0..3 {
        assert_eq!(get(&c, &gw.url("/")).await.unwrap().status, 200);
    }

    let (got, took) = stalled.await.unwrap();
    assert_eq!(got.as_deref(), Some(""), "a stalled head: {took:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "stalled head closed after {took:?}"
    );
    let (closed, took) = dribbling.await.unwrap();
    assert!(closed, "a dribbled head was kept open");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "dribbled head closed after {took:?}"
    );
    let (got, took) = half_preface.await.unwrap();
    assert_eq!(got.as_deref(), Some(""), "half an HTTP/2 preface: {took:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "half preface closed after {took:?}"
    );

    // Waiting for a head is bound by idle_timeout only: a new connection and a kept-alive
    // one are both still served after 3× the header-read timeout of silence.
    if let Some(rest) = Duration::from_millis(1500).checked_sub(idle_since.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert_eq!(get_on(&mut idle, "/").await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get_on(&mut idle, "/").await.unwrap().0, 200);

    assert_eq!(
        metric_of(
            &gw,
            &c,
            "herd_listener_header_timeouts_total{listener=\"web\"}"
        )
        .await,
        3.0
    );
}
