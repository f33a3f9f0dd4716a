//! The registry's wire types and an HTTP client for them: what the gateway, the agent and
//! the CLI use to talk to `herd server`, exactly as any third-party client would.
//!
//! It must not depend on the registry's server code nor on the gateway: both sides meet
//! here. Types are re-exported from `herd-registry-core`, whose serde shapes are the API.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub use herd_registry_core::catalog::Instance;
pub use herd_registry_core::{b64, Event, EventKind, KeyValue};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the registry at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("registry at {addr} answered {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from {addr}: {reason}")]
    Decode { addr: String, reason: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A registry client. Holds several node addresses and moves to the next one when a node
/// does not answer, so a client survives the loss of any minority of nodes.
#[derive(Clone)]
pub struct RegistryClient {
    servers: Vec<String>,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// A successful answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub server: String,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode {
            addr: self.server.clone(),
            reason: e.to_string(),
        })
    }
}

impl RegistryClient {
    pub fn new(servers: Vec<String>, token: Option<String>) -> RegistryClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        RegistryClient {
            servers,
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout: Duration::from_secs(30),
        }
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    fn request(
        &self,
        server: &str,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, ApiError> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://{server}{path_and_query}"));
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body)).map_err(|e| ApiError::Decode {
            addr: server.to_string(),
            reason: e.to_string(),
        })
    }

    /// Send to the first node that answers; a 4xx/5xx answer is an error carrying the
    /// registry's own message.
    pub async fn call(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> Result<Answer, ApiError> {
        let body = body.into();
        let mut last = None;
        for server in &self.servers {
            let req = self.request(server, method.clone(), path_and_query, body.clone())?;
            let resp = match tokio::time::timeout(self.timeout, self.http.request(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
                Err(_) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: format!("no answer within {:?}", self.timeout),
                    });
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::Unreachable {
                    addr: server.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            if status >= 400 {
                let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                // A node that has no leader right now may be the minority side: try another.
                if status == 503 || status == 502 {
                    last = Some(ApiError::Status {
                        addr: server.clone(),
                        status,
                        message,
                    });
                    continue;
                }
                return Err(ApiError::Status {
                    addr: server.clone(),
                    status,
                    message,
                });
            }
            return Ok(Answer {
                status,
                body: bytes,
                server: server.clone(),
            });
        }
        Err(last.unwrap_or(ApiError::Unreachable {
            addr: String::new(),
            reason: "no registry address configured".into(),
        }))
    }

    /// The instances of a service and the revision they were read at.
    pub async fn instances(&self, service: &str) -> Result<(u64, Vec<Instance>), ApiError> {
        #[derive(serde::Deserialize)]
        struct List {
            revision: u64,
            instances: Vec<Instance>,
        }
        let a = self
            .call(
                http::Method::GET,
                &format!("/v1/services/{service}"),
                Bytes::new(),
            )
            .await?;
        let l: List = a.json()?;
        Ok((l.revision, l.instances))
    }

    /// Open a watch stream (newline-delimited JSON events) on a key or prefix.
    pub async fn watch(
        &self,
        key: &str,
        prefix: bool,
        from_revision: u64,
    ) -> Result<Watch, ApiError> {
        let mut q = format!("/v1/watch/{key}?from_revision={from_revision}");
        if prefix {
            q.push_str("&prefix");
        }
        let mut last = None;
        for server in &self.servers {
            let req = self.request(server, http::Method::GET, &q, Bytes::new())?;
            match tokio::time::timeout(Duration::from_secs(5), self.http.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    return Ok(Watch {
                        body: resp.into_body(),
                        buf: Vec::new(),
                        server: server.clone(),
                    })
                }
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let bytes = resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let err = ApiError::Status {
                        addr: server.clone(),
                        status,
                        message: String::from_utf8_lossy(&bytes).into_owned(),
                    };
                    if status == 410 {
                        return Err(err);
                    }
                    last = Some(err);
                }
                Ok(Err(e)) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: "watch not accepted within 5s".into(),
                    })
                }
            }
        }
        Err(last.unwrap_or(ApiError::Unreachable {
            addr: String::new(),
            reason: "no registry address configured".into(),
        }))
    }
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// The stream is alive and has seen everything up to this revision.
    Progress(u64),
    /// The server ended the stream with an error (e.g. history compacted).
    Error(String),
}

pub struct Watch {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    server: String,
}

impl Watch {
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The next item, or None when the stream ended (the caller resumes from its last
    /// revision + 1).
    pub async fn next(&mut self) -> Option<WatchItem> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if let Some(item) = parse_line(&line[..line.len() - 1]) {
                    return Some(item);
                }
                continue;
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Option<WatchItem> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(WatchItem::Error(e.to_string()));
    }
    if v.get("type").and_then(|t| t.as_str()) == Some("progress") {
        return Some(WatchItem::Progress(v.get("revision")?.as_u64()?));
    }
    serde_json::from_value(v).ok().map(WatchItem::Event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_parse() {
        let put = br#"{"type":"put","kv":{"key":"a","value":"aGk=","create_revision":1,"mod_revision":1,"version":1,"lease":null},"revision":1}"#;
        match parse_line(put) {
            Some(WatchItem::Event(e)) => {
                assert_eq!(e.kind, EventKind::Put);
                assert_eq!(e.kv.value, b"hi");
                assert_eq!(e.revision, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_line(br#"{"type":"progress","revision":7}"#),
            Some(WatchItem::Progress(7))
        );
        assert_eq!(
            parse_line(br#"{"error":"compacted"}"#),
            Some(WatchItem::Error("compacted".into()))
        );
        assert_eq!(parse_line(b"garbage"), None);
    }
}
