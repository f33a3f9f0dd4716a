//! Traffic control through the real binary: rate limits (per client IP, per header value,
//! per route) with exact 429 counts and Retry-After, max_conns_per_server with its bounded
//! queue, circuit breakers (consecutive failures, error rate, dead server; fallback while
//! open, half-open probes, closing), listener and route ACLs (403 on http, a closed
//! connection on tcp), time windows, max_conns_per_ip, body size limits (Content-Length
//! and chunked), and the header-read timeout against slowloris. Every rule's counters in
//! /metrics are checked against what the client saw.

use bytes::Bytes;
use herd_testkit::prelude::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- local helpers

/// A server on its own thread and runtime, running `serve` for each connection; stopped
/// when dropped. `hits` counts connections (tcp) or requests (http) as `serve` decides.
struct SideServer {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SideServer {
    fn start<F, Fut>(serve: F) -> SideServer
    where
        F: Fn(TcpStream, Arc<AtomicU64>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let serve = Arc::new(serve);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, h.clone()));
            }
        });
        SideServer {
            addr,
            hits,
            runtime: Some(runtime),
        }
    }

    /// TCP echo; `hits` counts connections.
    fn echo() -> SideServer {
        SideServer::start(|mut stream: TcpStream, hits: Arc<AtomicU64>| async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    }

    /// HTTP server that reads the whole request body before answering "received N":
    /// a request body cut short never gets an answer. `hits` counts requests.
    fn sink() -> SideServer {
        SideServer::start(|stream: TcpStream, hits: Arc<AtomicU64>| async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let (status, text) = match req.into_body().collect().await {
                        Ok(b) => (200, format!("received {}", b.to_bytes().len())),
                        Err(e) => (400, format!("body failed: {e}")),
                    };
                    let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        })
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for SideServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The value of one series in /metrics, e.g. `herd_x_total{backend="app"}`; None if absent.
async fn metric(gw: &Gateway, c: &Client, series: &str) -> Option<f64> {
    let text = get(c, &gw.admin_url("/metrics")).await.ok()?.body;
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Like `metric`, but the series must be there.
async fn metric_of(gw: &Gateway, c: &Client, series: &str) -> f64 {
    match metric(gw, c, series).await {
        Some(v) => v,
        None => panic!(
            "no series {series} in /metrics:\n{}",
            get(c, &gw.admin_url("/metrics")).await.unwrap().body
        ),
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Write `request` whole on a fresh connection, then read until the gateway closes it.
/// Returns what was read (a reset after some bytes keeps those bytes).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr).await;
    let _ = s.write_all(request).await;
    read_to_close(&mut s, IO_TIMEOUT)
        .await
        .expect("the gateway neither answered nor closed")
}

/// Everything read until EOF or a reset; None if the connection is still open at `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status code of a raw HTTP/1.1 response.
fn status_of(raw: &str) -> u16 {
    raw.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"))
}

/// A request with a Content-Length body of `n` bytes.
fn sized_request(path: &str, n: usize) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {n}\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', n));
    r
}

/// A request with a chunked body: `chunks` chunks of `size` bytes.
fn chunked_request(path: &str, chunks: usize, size: usize) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        r.extend(format!("{size:x}\r\n").into_bytes());
        r.extend(std::iter::repeat_n(b'x', size));
        r.extend(b"\r\n");
    }
    r.extend(b"0\r\n\r\n");
    r
}

/// One HTTP/1.1 connection held open by a hyper client connection.
async fn open_http(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connect(addr).await))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> Result<(u16, String), String> {
    let req = hyper::Request::get(path)
        .header("host", "t")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(IO_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn listener(name: &str, extra: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n{extra}\n\n")
}

/// A gateway with one http listener `web` (with `extra` settings) routing everything to
/// backend `app`, which is `b`.
fn web_gateway(extra: &str, b: &Backend) -> Gateway {
    Gateway::start(&format!(
        "{}[[routes]]\nbackend = \"app\"\n\n{}",
        listener("web", extra),
        backend_of("app", b, "")
    ))
}

fn backend_of(name: &str, b: &Backend, extra: &str) -> String {
    format!(
        "[backends.{name}]\nservers = [{{ addr = \"{}\" }}]\n{extra}\n\n",
        b.addr
    )
}

async fn breaker_state(gw: &Gateway, c: &Client, backend: &str) -> String {
    let s = gw.status(c).await;
    s["backends"][backend]["traffic"]["circuit_breaker"]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no breaker state for {backend} in {s}"))
        .to_string()
}

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
