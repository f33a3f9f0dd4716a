//! Traffic control through the real binary: rate limits (per client IP, per header value,
//! per route) with exact 429 counts and Retry-After, max_conns_per_server with its bounded
//! queue, circuit breakers (consecutive failures, error rate, dead server; fallback while
//! open, half-open probes, closing), listener and route ACLs (403 on http, a closed
//! connection on tcp), time windows, max_conns_per_ip, body size limits (Content-Length
//! and chunked), and the header-read timeout against slowloris. Every rule's counters in
//! /metrics are checked against what the client saw. This file holds the helpers; the
//! rules are in `limits` (rate limits, connection queue), `breaker` and `access` (ACLs,
//! hours, per-IP connections, body size, timeouts).

mod access;
mod breaker;
mod limits;

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
