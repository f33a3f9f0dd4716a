//! `herd server` from the outside: the real binary on fixed 127.0.0.1 ports (a node's
//! address must survive restarts, peers know it), a small client for its API, watch
//! streams, and the cluster chores tests share. Everything a test starts is killed when its
//! handle drops; a test that panics keeps its data directory and prints the tail of each
//! node's stderr.

use crate::dirs::{free_port, TestDir};
use crate::http::Reply;
use crate::{eventually, herd_bin};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------- the server process

/// One real `herd server` process.
pub struct ServerProc {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub addr: SocketAddr,
    pub join: Option<SocketAddr>,
    pub token: Option<String>,
    /// Raft node id from the ready line.
    pub id: u64,
    pub ready: Value,
    pub stderr_path: PathBuf,
}

impl ServerProc {
    /// Start a node on `127.0.0.1:port` with its data in `data_dir` and stderr appended to
    /// `<data_dir>.stderr.log` beside it; wait (30 s) for its ready line.
    pub fn start(
        data_dir: &Path,
        port: u16,
        join: Option<SocketAddr>,
        token: Option<&str>,
    ) -> ServerProc {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into());
        let parent = data_dir.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(parent).unwrap();
        let mut p = ServerProc {
            child: None,
            data_dir: data_dir.to_path_buf(),
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            join,
            token: token.map(str::to_string),
            id: 0,
            ready: Value::Null,
            stderr_path: parent.join(format!("{name}.stderr.log")),
        };
        p.spawn(join);
        p
    }

    fn spawn(&mut self, join: Option<SocketAddr>) {
        assert!(
            self.child.is_none(),
            "node {} is already running",
            self.addr
        );
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let mut cmd = Command::new(herd_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string());
        if let Some(j) = join {
            cmd.arg("--join").arg(j.to_string());
        }
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        let mut child = cmd
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_DATA_DIR")
            .env_remove("HERD_LISTEN")
            .env("HERD_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start herd server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herd server {} did not become ready within 30 s; stderr:\n{}",
                    self.addr,
                    self.stderr()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line {line:?} is not JSON: {e}"));
        assert_eq!(ready["event"], "ready", "{ready}");
        assert_eq!(ready["role"], "server", "{ready}");
        assert_eq!(ready["addr"], self.addr.to_string(), "{ready}");
        self.id = ready["id"].as_u64().expect("ready line has an id");
        self.ready = ready;
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// Die like a crash: SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again with the same data dir and port (node.json remembers membership).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(None);
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last `n` lines of stderr, for failure messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- stderr of node {} ({}), last lines:\n{}",
                self.id,
                self.addr,
                self.stderr_tail(40)
            );
        }
    }
}

/// `n` nodes: the first alone, the others `--join` it, one after the other.
pub fn start_cluster(dir: &TestDir, n: usize, token: Option<&str>) -> Vec<ServerProc> {
    let mut nodes: Vec<ServerProc> = Vec::new();
    for i in 0..n {
        let join = nodes.first().map(|f| f.addr);
        nodes.push(ServerProc::start(
            &dir.node(&format!("n{}", i + 1)),
            free_port(),
            join,
            token,
        ));
    }
    nodes
}

pub type HyperClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A small JSON/HTTP client for the registry API. Every call takes the node's address, so
/// a test can keep talking to the survivors when one dies.
#[derive(Clone)]
pub struct Api {
    client: HyperClient,
    pub token: Option<String>,
    pub timeout: Duration,
}

impl Default for Api {
    fn default() -> Self {
        Api::new(None)
    }
}

impl Api {
    pub fn new(token: Option<&str>) -> Api {
        Api {
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
            token: token.map(str::to_string),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn with_timeout(mut self, t: Duration) -> Api {
        self.timeout = t;
        self
    }

    fn build(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body))).unwrap()
    }

    /// Any request; Err on connection failure or timeout (never on a 4xx/5xx).
    pub async fn request_with(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Result<Reply, String> {
        let req = self.build(method, addr, path, headers, body.into());
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{method} {path} on {addr}: {e:?}"))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {path} on {addr}: body: {e}"))?
                .to_bytes();
            Ok(Reply::new(status, headers, body))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("{method} {path} on {addr}: timed out"))?
    }

    pub async fn request(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Reply, String> {
        self.request_with(method, addr, path, &[], body).await
    }

    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<Reply, String> {
        self.request("GET", addr, path, Vec::new()).await
    }

    /// `PUT /v1/kv/<key><query>` (query like "" or "?lease=5").
    pub async fn put_q(
        &self,
        addr: SocketAddr,
        key: &str,
        query: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<Reply, String> {
        self.request("PUT", addr, &format!("/v1/kv/{key}{query}"), value)
            .await
    }

    pub async fn put(
        &self,
        addr: SocketAddr,
        key: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<Reply, String> {
        self.put_q(addr, key, "", value).await
    }

    /// Put that must succeed; returns the revision.
    pub async fn put_ok(&self, addr: SocketAddr, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        let r = self.put(addr, key, value).await.expect("put");
        assert_eq!(r.status, 200, "put {key}: {}", r.text());
        r.json()["revision"].as_u64().expect("revision")
    }

    /// `GET /v1/kv/<key><query>`.
    pub async fn kv_get(&self, addr: SocketAddr, key: &str, query: &str) -> Result<Reply, String> {
        self.get(addr, &format!("/v1/kv/{key}{query}")).await
    }

    pub async fn delete(&self, addr: SocketAddr, key: &str, query: &str) -> Result<Reply, String> {
        self.request("DELETE", addr, &format!("/v1/kv/{key}{query}"), Vec::new())
            .await
    }

    pub async fn txn(&self, addr: SocketAddr, txn: &Value) -> Result<Reply, String> {
        self.request("POST", addr, "/v1/txn", txn.to_string()).await
    }

    /// `POST /v1/lease {"ttl_s": ttl_s}`.
    pub async fn lease_grant(&self, addr: SocketAddr, ttl_s: f64) -> Result<Reply, String> {
        self.request(
            "POST",
            addr,
            "/v1/lease",
            serde_json::json!({ "ttl_s": ttl_s }).to_string(),
        )
        .await
    }

    /// A lease that must be granted; returns its id.
    pub async fn lease_ok(&self, addr: SocketAddr, ttl_s: f64) -> u64 {
        let r = self.lease_grant(addr, ttl_s).await.expect("lease grant");
        assert_eq!(r.status, 200, "lease grant: {}", r.text());
        r.json()["id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .expect("lease id (a decimal string)")
    }

    pub async fn lease_keepalive(&self, addr: SocketAddr, id: u64) -> Result<Reply, String> {
        self.request(
            "POST",
            addr,
            &format!("/v1/lease/{id}/keepalive"),
            Vec::new(),
        )
        .await
    }

    pub async fn lease_revoke(&self, addr: SocketAddr, id: u64) -> Result<Reply, String> {
        self.request("DELETE", addr, &format!("/v1/lease/{id}"), Vec::new())
            .await
    }

    pub async fn status(&self, addr: SocketAddr) -> Result<Value, String> {
        let r = self.get(addr, "/status").await?;
        if r.status != 200 {
            return Err(format!("/status on {addr}: {} {}", r.status, r.text()));
        }
        serde_json::from_slice(&r.bytes).map_err(|e| format!("/status on {addr}: {e}"))
    }

    pub async fn cluster(&self, addr: SocketAddr) -> Result<Value, String> {
        let r = self.get(addr, "/v1/cluster").await?;
        if r.status != 200 {
            return Err(format!("/v1/cluster on {addr}: {} {}", r.status, r.text()));
        }
        serde_json::from_slice(&r.bytes).map_err(|e| format!("/v1/cluster on {addr}: {e}"))
    }

    /// The store revision a node reports in /status.
    pub async fn revision(&self, addr: SocketAddr) -> u64 {
        self.status(addr).await.expect("status")["revision"]
            .as_u64()
            .expect("revision in /status")
    }

    /// Open `GET /v1/watch/<key><query>`; Err if it cannot be opened or is not a 200.
    pub async fn watch(
        &self,
        addr: SocketAddr,
        key: &str,
        query: &str,
    ) -> Result<WatchStream, Reply> {
        let path = format!("/v1/watch/{key}{query}");
        let req = self.build("GET", addr, &path, &[], Vec::new());
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("watch {path} on {addr}: {e:?}"),
            Err(_) => panic!(
                "watch {path} on {addr}: no answer within {:?}",
                self.timeout
            ),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status != 200 {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Reply::new(status, headers, body));
        }
        Ok(WatchStream {
            body: resp.into_body(),
            buf: Vec::new(),
            ended: false,
        })
    }
}

/// An NDJSON watch stream, read a line at a time as bytes arrive.
pub struct WatchStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    ended: bool,
}

/// What `WatchStream::next_line` saw.
#[derive(Debug)]
pub enum WatchItem {
    Line(Value),
    /// The stream ended (cleanly or with an error, e.g. the node died).
    Ended(String),
    TimedOut,
}

impl WatchStream {
    /// The next JSON line within `within`.
    pub async fn next_line(&mut self, within: Duration) -> WatchItem {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if text.trim().is_empty() {
                    continue;
                }
                let v = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("watch line {text:?} is not JSON: {e}"));
                return WatchItem::Line(v);
            }
            if self.ended {
                return WatchItem::Ended("stream ended".into());
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return WatchItem::TimedOut,
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => {
                    self.ended = true;
                    if self.buf.is_empty() {
                        return WatchItem::Ended(format!("stream error: {e}"));
                    }
                }
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        self.buf.extend_from_slice(d);
                    }
                }
            }
        }
    }

    /// The next event (`"type"` put or delete), skipping progress lines; panics on an
    /// error line, on the end of the stream, or when none comes within `within`.
    pub async fn next_event(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                WatchItem::Line(v) if v["type"] == "progress" => continue,
                WatchItem::Line(v) => {
                    assert!(v.get("error").is_none(), "watch error line: {v}");
                    return v;
                }
                WatchItem::Ended(why) => panic!("watch ended while waiting for an event: {why}"),
                WatchItem::TimedOut => panic!("no watch event within {within:?}"),
            }
        }
    }

    /// Like `next_event`, but None on timeout or end instead of panicking.
    pub async fn try_next_event(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                WatchItem::Line(v) if v["type"] == "progress" => continue,
                WatchItem::Line(v) => {
                    assert!(v.get("error").is_none(), "watch error line: {v}");
                    return Some(v);
                }
                WatchItem::Ended(_) | WatchItem::TimedOut => return None,
            }
        }
    }
}

// ---------------------------------------------------------------- cluster helpers

/// Index (in `nodes`) of the running node whose /status says "leader", polling for up to
/// 10 s. When two claim it (an old leader not yet told), the higher term wins.
pub async fn wait_for_leader(api: &Api, nodes: &[&ServerProc]) -> usize {
    eventually(
        "a leader among the running nodes",
        Duration::from_secs(10),
        || async {
            let mut best: Option<(u64, usize)> = None;
            for (i, n) in nodes.iter().enumerate() {
                if !n.is_running() {
                    continue;
                }
                if let Ok(s) = api.status(n.addr).await {
                    if s["role"] == "leader" {
                        let term = s["term"].as_u64().unwrap_or(0);
                        if best.is_none_or(|(t, _)| term > t) {
                            best = Some((term, i));
                        }
                    }
                }
            }
            best.map(|(_, i)| i)
        },
    )
    .await
}

/// `n` puts of `<prefix><i:05>` = `v<i>`, from `writers` concurrent tasks, through `addr`.
/// Every put must succeed (retried on 503 while a leader is elected); returns the highest
/// revision acknowledged.
pub async fn bulk_put(api: &Api, addr: SocketAddr, prefix: &str, n: usize, writers: usize) -> u64 {
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (api, next, prefix) = (api.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut max_rev = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return max_rev;
                }
                let key = format!("{prefix}{i:05}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match api.put(addr, &key, format!("v{i}")).await {
                        Ok(r) if r.status == 200 => {
                            max_rev = max_rev.max(r.json()["revision"].as_u64().unwrap());
                            break;
                        }
                        other if attempts < 20 => {
                            let _ = other;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("put {key} failed 20 times, last: {other:?}"),
                    }
                }
            }
        }));
    }
    let mut max_rev = 0;
    for t in tasks {
        max_rev = max_rev.max(t.await.expect("writer task"));
    }
    max_rev
}

// ---------------------------------------------------------------- base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64, as the API shows values.
pub fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64; panics on anything else.
pub fn unb64(text: &str) -> Vec<u8> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("bad base64 {text:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// One node, started alone, once it has elected itself.
pub async fn single_node(dir: &TestDir, api: &Api) -> ServerProc {
    let n = ServerProc::start(&dir.node("n1"), free_port(), None, None);
    wait_for_leader(api, &[&n]).await;
    n
}

/// A 4xx answer with a JSON `{"error": "<non-empty message>"}`; returns the message.
pub fn error_message(r: &Reply, status: u16) -> String {
    assert_eq!(
        r.status,
        status,
        "want {status}, got {}: {}",
        r.status,
        r.text()
    );
    let msg = r.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"error\" string in {}", r.text()))
        .to_string();
    assert!(!msg.is_empty(), "empty error message");
    msg
}
