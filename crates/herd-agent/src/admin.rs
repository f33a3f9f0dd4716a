//! The agent's own HTTP listener (SPEC §1: every long-running role has one): `/healthz`,
//! `/status`, `/metrics`, and the instances' output at `/v1/logs/<service>/<instance>` so
//! that `herd logs` works from any machine. With a token, everything but `/healthz` needs
//! it: a service's output often holds what strangers should not read.

use crate::logs;
use crate::process::Ledger;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Admin {
    pub node: String,
    pub dir: PathBuf,
    pub token: Option<String>,
    pub ledger: Arc<Ledger>,
    pub started_ms: u64,
}

type Shared = Arc<Admin>;

pub fn router(admin: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/logs/{service}/{instance}", get(logs_of))
        .with_state(admin)
}

/// Serve until the process ends, over TLS when given a configuration (the agent's own
/// certificate); the address it listens on.
pub async fn serve(
    listen: &str,
    admin: Shared,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(admin);
    let task = match tls {
        Some(config) => {
            let listener = herd_api::TlsListener::new(listener, config)?.tap_io(|_| {});
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            })
        }
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    };
    Ok((addr, task))
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// None when the call may go on; else the refusal.
fn check_token(a: &Admin, h: &HeaderMap) -> Option<Response> {
    let want = a.token.as_deref()?;
    let presented = h
        .get(header::AUTHORIZATION)
        .and_then(|v| herd_api::bearer(v.as_bytes()));
    match presented {
        Some(t) if herd_api::same_secret(t, want.as_bytes()) => None,
        Some(_) => Some(refused(StatusCode::UNAUTHORIZED, "wrong token")),
        None => Some(refused(
            StatusCode::UNAUTHORIZED,
            "this agent needs the cluster's token: send Authorization: Bearer <token>",
        )),
    }
}

async fn status(State(a): State<Shared>, h: HeaderMap) -> Response {
    if let Some(r) = check_token(&a, &h) {
        return r;
    }
    let processes: Vec<serde_json::Value> = a
        .ledger
        .entries()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "instance": r.instance,
                "pid": r.pid,
                "version": r.version,
                "ports": r.ports,
                "restarts": r.restarts,
            })
        })
        .collect();
    let body = serde_json::json!({
        "role": "agent",
        "node": a.node,
        "pid": std::process::id(),
        "started_ms": a.started_ms,
        "processes": processes,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(a): State<Shared>, h: HeaderMap) -> Response {
    if let Some(r) = check_token(&a, &h) {
        return r;
    }
    let entries = a.ledger.entries();
    let restarts: u64 = entries.iter().map(|r| u64::from(r.restarts)).sum();
    let text = format!(
        "# HELP herd_agent_processes Instance processes this agent runs now.\n\
         # TYPE herd_agent_processes gauge\n\
         herd_agent_processes {}\n\
         # HELP herd_agent_restarts Restarts of the instances running now, summed.\n\
         # TYPE herd_agent_restarts gauge\n\
         herd_agent_restarts {restarts}\n",
        entries.len()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(serde::Deserialize)]
struct LogQuery {
    stream: Option<String>,
    /// At most this many bytes of what is there already (the most recent).
    tail: Option<u64>,
    /// Keep the answer open and send what is written next.
    follow: Option<String>,
}

/// A name that is one path segment of ours: what an instance or service id can be.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

async fn logs_of(
    State(a): State<Shared>,
    Path((service, instance)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
    h: HeaderMap,
) -> Response {
    if let Some(r) = check_token(&a, &h) {
        return r;
    }
    if !plain_name(&service) || !plain_name(&instance) {
        return refused(
            StatusCode::BAD_REQUEST,
            "service and instance are names: lower-case letters, digits and '-'",
        );
    }
    let kind = match q.stream.as_deref() {
        None | Some("stdout") => "stdout",
        Some("stderr") => "stderr",
        Some(other) => {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("stream \"{other}\": use stdout or stderr"),
            )
        }
    };
    let (out, err) = logs::paths(&a.dir, &service, &instance);
    let path = if kind == "stdout" { out } else { err };
    if !path.exists() {
        return refused(
            StatusCode::NOT_FOUND,
            &format!("no {kind} of {service}/{instance} on node {}", a.node),
        );
    }
    let follow = q.follow.as_deref().is_some_and(|f| f != "false");
    let tail = q.tail;
    let read_path = path.clone();
    let Ok(Ok((so_far, at))) =
        tokio::task::spawn_blocking(move || logs::read_all(&read_path, tail)).await
    else {
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the log file",
        );
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow {
        return (headers, so_far).into_response();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(follow_file(path, at, so_far, tx));
    (headers, Body::new(ChannelBody(rx))).into_response()
}

/// Send what is already there, then what is appended (from the start again when the file
/// was emptied by a rotation), until the caller hangs up.
async fn follow_file(path: PathBuf, mut at: u64, first: Vec<u8>, tx: mpsc::Sender<Bytes>) {
    if tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tx.closed() => return,
        }
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
            let mut f = std::fs::File::open(&p)?;
            let len = f.metadata()?.len();
            let from = if len < at { 0 } else { at };
            f.seek(SeekFrom::Start(from))?;
            let mut buf = Vec::new();
            f.take(len - from).read_to_end(&mut buf)?;
            Ok((buf, len))
        })
        .await;
        let Ok(Ok((buf, len))) = read else {
            return;
        };
        at = len;
        if !buf.is_empty() && tx.send(Bytes::from(buf)).await.is_err() {
            return;
        }
    }
}

/// A response body fed by a channel: each message one chunk; it ends when the sender does.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|m| m.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn with_a_token_only_healthz_is_open_and_names_stay_inside_the_log_directory() {
        let dir = std::env::temp_dir().join(format!("herd-admin-test-{}", std::process::id()));
        let (out, _) = logs::paths(&dir, "web", "web-1");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, "hello\n").unwrap();
        let admin = Arc::new(Admin {
            node: "n".into(),
            dir: dir.clone(),
            token: Some("s3cret".into()),
            ledger: Arc::new(Ledger::open(&dir)),
            started_ms: 0,
        });
        let (addr, _task) = serve("127.0.0.1:0", admin, None).await.unwrap();
        assert!(ask(addr, "/healthz", None)
            .await
            .starts_with("HTTP/1.1 200"));
        for path in ["/status", "/metrics", "/v1/logs/web/web-1"] {
            assert!(
                ask(addr, path, None).await.starts_with("HTTP/1.1 401"),
                "{path}"
            );
            assert!(
                ask(addr, path, Some("wrong"))
                    .await
                    .starts_with("HTTP/1.1 401"),
                "{path}"
            );
        }
        let ok = ask(addr, "/v1/logs/web/web-1", Some("s3cret")).await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello\n"),
            "{ok}"
        );
        let up = ask(addr, "/v1/logs/web/..%2F..%2Fetc", Some("s3cret")).await;
        assert!(up.starts_with("HTTP/1.1 400"), "{up}");
        let none = ask(addr, "/v1/logs/web/web-2", Some("s3cret")).await;
        assert!(none.starts_with("HTTP/1.1 404"), "{none}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
