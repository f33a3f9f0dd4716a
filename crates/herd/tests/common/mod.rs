//! Test harness (seed 001): the real `herd` binary against real HTTP servers on
//! 127.0.0.1, ephemeral ports, spoken to over the network like a user. Everything a test
//! starts is stopped when its handle drops.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A keep-alive HTTP/1.1 client, like a browser or a service's client library.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(client: &Client, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "request timed out".to_string())?
        .map_err(|e| format!("request failed: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub async fn get(client: &Client, url: &str) -> Result<Reply, String> {
    send(
        client,
        Request::get(url).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

pub async fn get_with(
    client: &Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn post(client: &Client, url: &str, body: &str) -> Result<Reply, String> {
    send(
        client,
        Request::post(url)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

pub async fn put(client: &Client, url: &str, body: &str) -> Result<Reply, String> {
    send(
        client,
        Request::put(url)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// Poll `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- backends

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

// ---------------------------------------------------------------- the gateway process

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system's temp dir, removed with everything in it when the
/// value is dropped (or handed over with `keep` to an owner that removes it).
pub fn temp_dir() -> TempDir {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("herd-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub struct TempDir(PathBuf);

impl TempDir {
    /// The path, no longer removed on drop: for an owner that removes it itself.
    pub fn keep(self) -> PathBuf {
        let mut me = std::mem::ManuallyDrop::new(self);
        std::mem::take(&mut me.0)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real `herd gateway` process.
pub struct Gateway {
    pub child: Child,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub ready: Value,
    pub stderr_path: PathBuf,
}

pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

impl Gateway {
    /// Start with this config text (use 127.0.0.1:0 binds; an [admin] section is added
    /// if missing). Panics with the process's stderr if it does not become ready.
    pub fn start(config: &str) -> Gateway {
        // Removed by Gateway's drop, after the process is stopped.
        let dir = temp_dir().keep();
        let config_path = dir.join("herd.toml");
        let config = if config.contains("[admin]") {
            config.to_string()
        } else {
            format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{config}")
        };
        std::fs::write(&config_path, config).unwrap();
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(herd_bin())
            .args(["gateway", "-c"])
            .arg(&config_path)
            .env("HERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start herd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so an access log on stdout never blocks the gateway.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herd did not become ready; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        let admin = ready["admin"].as_str().unwrap().parse().unwrap();
        let listeners = ready["listeners"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().parse().unwrap()))
            .collect();
        Gateway {
            child,
            dir,
            config_path,
            admin,
            listeners,
            ready,
            stderr_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.listener_url("web", path)
    }

    pub fn listener_url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.listeners[listener], path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub async fn status(&self, client: &Client) -> Value {
        let r = get(client, &self.admin_url("/status"))
            .await
            .expect("status");
        serde_json::from_str(&r.body).expect("status is JSON")
    }

    pub async fn server_status(&self, client: &Client, backend: &str, addr: SocketAddr) -> Value {
        let s = self.status(client).await;
        s["backends"][backend]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["addr"] == addr.to_string())
            .cloned()
            .expect("server in status")
    }

    pub fn write_config(&self, config: &str) {
        let config = if config.contains("[admin]") {
            config.to_string()
        } else {
            format!("[admin]\nlisten = \"{}\"\n\n{config}", self.admin)
        };
        std::fs::write(&self.config_path, config).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `servers = [...]` entries for backends, each with a weight.
pub fn servers(list: &[(&Backend, u32)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(b, w)| format!("{{ addr = \"{}\", weight = {w} }}", b.addr))
        .collect();
    format!("servers = [{}]", items.join(", "))
}

/// One http listener "web" with a catch-all route to backend "app".
pub fn simple_config(backend_body: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n[backends.app]\n{backend_body}\n"
    )
}

/// Count which backend answered each of `n` GETs to `url`.
pub async fn tally(client: &Client, url: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get(client, url).await.expect("request");
        assert_eq!(r.status, 200, "unexpected status {}: {}", r.status, r.body);
        *counts.entry(r.body).or_insert(0) += 1;
    }
    counts
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
