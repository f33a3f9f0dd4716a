//! Real HTTP backends on 127.0.0.1: each on its own thread and runtime, so that killing one
//! closes every socket it holds, as a crashed process would; and streamed bodies.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A real HTTP server on its own thread and runtime, so that killing it closes every
/// socket it holds, as a crashed process would.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    runtime: Option<tokio::runtime::Runtime>,
}

pub struct BackendState {
    pub healthy: AtomicBool,
    pub requests: AtomicU64,
    pub health_checks: AtomicU64,
    pub active: AtomicUsize,
    /// Last request headers seen on a non-health path.
    pub last_headers: std::sync::Mutex<Option<http::HeaderMap>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Start on a given address (to bring a killed server back on its port).
    pub fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let state = Arc::new(BackendState {
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            last_headers: std::sync::Mutex::new(None),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = bind_retry(addr);
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let name_owned = name.to_string();
        let st = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = name_owned.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| backend_handle(name.clone(), st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    pub fn set_healthy(&self, v: bool) {
        self.state.healthy.store(v, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Die like a crashed process: the listener and every connection close at once.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn bind_retry(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// Endpoints: /healthz (200 or 503 by `healthy`), /slow?ms=N, /headers (request headers
/// as JSON), /echo (streams the request body back), /bytes?n=N (streams N bytes),
/// /set-cookie?name=..&value=..; anything else answers "<name>".
async fn backend_handle(
    name: String,
    st: Arc<BackendState>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        st.health_checks.fetch_add(1, Ordering::SeqCst);
        let ok = st.healthy.load(Ordering::SeqCst);
        let mut r = Response::new(full(if ok { "ok" } else { "sick" }));
        *r.status_mut() = if ok {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok(r);
    }
    st.requests.fetch_add(1, Ordering::SeqCst);
    st.active.fetch_add(1, Ordering::SeqCst);
    *st.last_headers.lock().unwrap() = Some(req.headers().clone());
    let q = query(&req);
    let resp = match path.as_str() {
        "/slow" => {
            let ms: u64 = q.get("ms").and_then(|v| v.parse().ok()).unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(name.clone()))
        }
        "/headers" => {
            let map: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or("").to_string()),
                    )
                })
                .collect();
            let mut r = Response::new(full(Value::Object(map).to_string()));
            r.headers_mut().insert("x-backend", name.parse().unwrap());
            r
        }
        "/echo" => {
            let body = req.into_body().map_err(std::io::Error::other).boxed();
            Response::new(body)
        }
        "/bytes" => {
            let n: u64 = q.get("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            Response::new(repeat_body(n).boxed())
        }
        "/set-cookie" => {
            let mut r = Response::new(full(name.clone()));
            let cname = q.get("name").cloned().unwrap_or_else(|| "SESSION".into());
            let value = q.get("value").cloned().unwrap_or_else(|| "v1".into());
            r.headers_mut().insert(
                "set-cookie",
                format!("{cname}={value}; Path=/").parse().unwrap(),
            );
            r
        }
        "/status" => {
            let code: u16 = q.get("code").and_then(|v| v.parse().ok()).unwrap_or(200);
            let mut r = Response::new(full(name.clone()));
            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
            r
        }
        _ => Response::new(full(name.clone())),
    };
    st.active.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

/// N bytes of 'x', produced 64 KiB at a time as the client reads: never all in memory.
pub struct RepeatBody {
    remaining: u64,
    chunk: Bytes,
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let len = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= len as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..len)))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

pub fn repeat_body(n: u64) -> RepeatBody {
    RepeatBody {
        remaining: n,
        chunk: Bytes::from(vec![b'x'; 64 * 1024]),
    }
}

/// `method path` to `addr` on a fresh HTTP/1.1 connection, with a streamed request body of
/// `upload` bytes of 'x' (see `repeat_body`), counting the response body's bytes as they
/// arrive: neither direction is ever held in memory whole. Returns (status, bytes received).
pub async fn stream_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    upload: u64,
) -> Result<(u16, u64), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-length", upload.to_string())
        .body(repeat_body(upload))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e:?}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body after {received} bytes: {e:?}"))?;
        if let Some(d) = frame.data_ref() {
            received += d.len() as u64;
        }
    }
    Ok((status, received))
}
