//! The client: several registry nodes, failover to the next on a transport error or a
//! 502/503, answers decoded into [`crate::wire`] types, and watch streams.

use crate::tls::{TlsError, TlsMaterial};
use crate::wire::{Event, Instance, WatchLine};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// "https" when the client was given the cluster's CA, else "http".
    scheme: &'static str,
    timeout: Duration,
    /// The node that answered last, tried first next time (shared by clones): a node that
    /// hangs (paused, cut off without a reset) then costs one timeout, not one per call.
    preferred: Arc<AtomicUsize>,
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
    /// A client over plain HTTP.
    pub fn new(servers: Vec<String>, token: Option<String>) -> RegistryClient {
        RegistryClient::build(servers, token, crate::tls::no_tls_config(), "http")
    }

    /// A client over TLS: the servers must present certificates the material's CA signed,
    /// and the client presents its own when it has one.
    pub fn with_tls(
        servers: Vec<String>,
        token: Option<String>,
        tls: &Arc<TlsMaterial>,
    ) -> Result<RegistryClient, TlsError> {
        Ok(RegistryClient::build(
            servers,
            token,
            tls.client_config()?,
            "https",
        ))
    }

    /// [`RegistryClient::with_tls`] when there is TLS material, else [`RegistryClient::new`].
    pub fn maybe_tls(
        servers: Vec<String>,
        token: Option<String>,
        tls: Option<&Arc<TlsMaterial>>,
    ) -> Result<RegistryClient, TlsError> {
        match tls {
            Some(tls) => RegistryClient::with_tls(servers, token, tls),
            None => Ok(RegistryClient::new(servers, token)),
        }
    }

    fn build(
        servers: Vec<String>,
        token: Option<String>,
        config: rustls::ClientConfig,
        scheme: &'static str,
    ) -> RegistryClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        // "https://host:port" and "host:port" name the same server; the scheme follows
        // whether the client has the CA.
        let servers = servers
            .into_iter()
            .map(|s| {
                s.strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"))
                    .unwrap_or(&s)
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        RegistryClient {
            servers,
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
            scheme,
            timeout: Duration::from_secs(30),
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same client (and connections), giving each node at most `timeout` to answer
    /// before the next is tried: for a call that must land within a deadline, like a
    /// lease's renewal, and is safe to send twice.
    pub fn with_timeout(&self, timeout: Duration) -> RegistryClient {
        RegistryClient {
            timeout,
            ..self.clone()
        }
    }

    /// The nodes in the order to try them: the one that answered last first.
    fn in_order(&self) -> impl Iterator<Item = (usize, &String)> {
        let n = self.servers.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |k| {
            let i = (start + k) % n;
            (i, &self.servers[i])
        })
    }

    fn answered(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// A failed connection in words, with what to do when TLS is the cause.
    fn explain(&self, e: &(dyn std::error::Error + 'static)) -> String {
        let reason = crate::tls::error_chain(e);
        match crate::tls::hint(&reason, self.scheme == "https") {
            Some(h) => format!("{reason} ({h})"),
            None => reason,
        }
    }

    fn request(
        &self,
        server: &str,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<http::Request<Full<Bytes>>, ApiError> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}://{server}{path_and_query}", self.scheme));
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
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
        self.call_as(method, path_and_query, body, "application/json")
            .await
    }

    /// [`RegistryClient::call`] with a body that is not JSON (a TOML manifest or rule file).
    pub async fn call_as(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<Answer, ApiError> {
        let body = body.into();
        let mut last = None;
        for (i, server) in self.in_order() {
            let req = self.request(
                server,
                method.clone(),
                path_and_query,
                body.clone(),
                content_type,
            )?;
            let resp = match tokio::time::timeout(self.timeout, self.http.request(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: self.explain(&e),
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
                let message = error_message(&bytes);
                // A node that has no leader right now may be the minority side: try another.
                if status == 503 || status == 502 {
                    last = Some(ApiError::Status {
                        addr: server.clone(),
                        status,
                        message,
                    });
                    continue;
                }
                self.answered(i);
                return Err(ApiError::Status {
                    addr: server.clone(),
                    status,
                    message,
                });
            }
            self.answered(i);
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

    /// Send a typed request body and read a typed answer: the one way a client speaks the
    /// `/v1/` wire (see [`crate::wire`]).
    pub async fn send<Req: Serialize, Ans: DeserializeOwned>(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: &Req,
    ) -> Result<Ans, ApiError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiError::Decode {
            addr: String::new(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        self.call(method, path_and_query, body).await?.json()
    }

    /// A call without a body, with a typed answer.
    pub async fn get<Ans: DeserializeOwned>(
        &self,
        method: http::Method,
        path_and_query: &str,
    ) -> Result<Ans, ApiError> {
        self.call(method, path_and_query, Bytes::new())
            .await?
            .json()
    }

    /// The instances of a service and the revision they were read at.
    pub async fn instances(&self, service: &str) -> Result<(u64, Vec<Instance>), ApiError> {
        let l: crate::wire::InstanceList = self
            .get(http::Method::GET, &format!("/v1/services/{service}"))
            .await?;
        Ok((l.revision, l.instances))
    }

    /// Send to the first node that accepts the connection, with no limit on the answer's
    /// time (a campaign waiting for leadership, a leader watch); a 4xx/5xx answer is an
    /// error carrying the registry's message. The body is the caller's to read.
    pub async fn open(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> Result<(String, http::Response<hyper::body::Incoming>), ApiError> {
        let body = body.into();
        let mut last = None;
        for (i, server) in self.in_order() {
            let req = self.request(
                server,
                method.clone(),
                path_and_query,
                body.clone(),
                "application/json",
            )?;
            match self.http.request(req).await {
                Ok(resp) if resp.status().is_success() => {
                    self.answered(i);
                    return Ok((server.clone(), resp));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    return Err(ApiError::Status {
                        addr: server.clone(),
                        status,
                        message: error_message(&bytes),
                    });
                }
                Err(e) => {
                    last = Some(ApiError::Unreachable {
                        addr: server.clone(),
                        reason: self.explain(&e),
                    })
                }
            }
        }
        Err(last.unwrap_or(ApiError::Unreachable {
            addr: String::new(),
            reason: "no address given".into(),
        }))
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
        for (i, server) in self.in_order() {
            let req = self.request(server, http::Method::GET, &q, Bytes::new(), "")?;
            match tokio::time::timeout(Duration::from_secs(5), self.http.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    self.answered(i);
                    return Ok(Watch {
                        body: resp.into_body(),
                        buf: Vec::new(),
                        server: server.clone(),
                    });
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
                        reason: self.explain(&e),
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

/// The registry's `{"error": ...}` text, else the answer as it came.
fn error_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<crate::wire::ErrorBody>(bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}

fn parse_line(line: &[u8]) -> Option<WatchItem> {
    match serde_json::from_slice::<WatchLine>(line).ok()? {
        WatchLine::Error { error } => Some(WatchItem::Error(error)),
        WatchLine::Progress(p) => Some(WatchItem::Progress(p.revision)),
        WatchLine::Event(e) => Some(WatchItem::Event(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    #[test]
    fn watch_lines_parse() {
        let put = br#"{"type":"put","kv":{"key":"a","value":"aGk=","create_revision":1,"mod_revision":1,"version":1,"lease":"18014398509481985"},"revision":1}"#;
        match parse_line(put) {
            Some(WatchItem::Event(e)) => {
                assert_eq!(e.kind, EventKind::Put);
                assert_eq!(e.kv.value, b"hi");
                assert_eq!(e.revision, 1);
                assert_eq!(
                    e.kv.lease,
                    Some((1 << 54) + 1),
                    "a lease id above 2^53 is exact"
                );
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
