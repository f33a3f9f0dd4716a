//! A small client for the registry's HTTP API, as a user's script would speak it: every
//! call names the node, so a test keeps talking to the survivors when one dies; watch
//! streams line by line; base64 written independently of herd's own.

use crate::http::Reply;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

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
