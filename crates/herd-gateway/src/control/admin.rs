//! The admin listener: health, status, metrics, the gateway's page (`/ui/`), reload, and the runtime API that drains,
//! enables and re-weights a server without a reload (like HAProxy's runtime API).
//!
//! Runtime changes last until the next reload or restart: the file stays the source of truth.

use crate::clock;
use crate::control::admin_auth;
use crate::observe::metrics;
use crate::state::shared::Shared;
use crate::state::snapshot::AdminState;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn spawn(shared: Arc<Shared>, socket: std::net::TcpListener) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(socket)?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    reply(status, "application/json", text)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json_reply(status, &json!({ "error": msg.into() }))
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let snap = shared.snapshot.load();
    let token = shared.admin_token.load();
    let (token_for_reads, allowed_hosts) =
        snap.config.admin.as_ref().map_or((false, &[][..]), |a| {
            (a.token_for_reads, &a.allowed_hosts[..])
        });
    let policy = admin_auth::Policy {
        token: token.as_deref(),
        token_for_reads,
        allowed_hosts,
    };
    if let Err(admin_auth::Refused(status, why)) =
        admin_auth::check(&method, &path, req.headers(), &policy)
    {
        tracing::warn!(%method, %path, status = status.as_u16(), reason = why, "admin call refused");
        let mut r = error(status, why);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"herd admin\""),
            );
        }
        return r;
    }
    drop(snap);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, ["ui", rest @ ..]) if rest.len() <= 1 => {
            match herd_dashboard::gateway_asset(rest.first().copied().unwrap_or("")) {
                Some(a) => reply(StatusCode::OK, a.content_type, a.body),
                None => error(StatusCode::NOT_FOUND, format!("no page file {path}")),
            }
        }
        (&Method::GET, ["status"]) => json_reply(StatusCode::OK, &metrics::status(shared)),
        (&Method::GET, ["metrics"]) => reply(
            StatusCode::OK,
            herd_telemetry::CONTENT_TYPE,
            metrics::render(shared),
        ),
        (&Method::POST, ["reload"]) => match shared.reload() {
            Ok(rev) => json_reply(StatusCode::OK, &json!({ "revision": rev })),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        (_, ["backends", backend, "servers", addr, action]) => {
            let (backend, addr, action) = (backend.to_string(), addr.to_string(), action.to_string());
            server_action(shared, &method, &backend, &addr, &action, req).await
        }
        (_, ["healthz" | "status" | "metrics"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} answers GET only"))
        }
        (_, ["reload"]) => error(StatusCode::METHOD_NOT_ALLOWED, "/reload answers POST only"),
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no admin endpoint {method} {path}; try GET /healthz, /status, /metrics, /ui/, POST /reload, \
                 POST /backends/<backend>/servers/<addr>/(drain|maint|enable), \
                 PUT /backends/<backend>/servers/<addr>/weight {{\"weight\": N}}"
            ),
        ),
    }
}

async fn server_action(
    shared: &Shared,
    method: &Method,
    backend: &str,
    addr: &str,
    action: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let snap = shared.snapshot.load_full();
    let Some((group, server)) = snap.group_server(backend, addr) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("backend \"{backend}\" has no server \"{addr}\" (see GET /status)"),
        );
    };
    match (method, action) {
        (&Method::POST, "drain") => server.set_admin(AdminState::Drain),
        (&Method::POST, "maint" | "disable") => server.set_admin(AdminState::Maint),
        (&Method::POST, "enable" | "ready") => server.set_admin(AdminState::Ready),
        (&Method::PUT | &Method::POST, "weight") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
            };
            let weight = match serde_json::from_slice::<Value>(&body) {
                Ok(v) => v.get("weight").and_then(Value::as_u64),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("body is not JSON ({e}); send {{\"weight\": N}} with N in 0-100"),
                    )
                }
            };
            match weight {
                Some(w @ 0..=100) => {
                    server.weight.store(w as u32, Ordering::Relaxed);
                    group.rebuild_balancer();
                }
                _ => return error(
                    StatusCode::BAD_REQUEST,
                    "send {\"weight\": N} with N in 0-100 (0 takes the server out of balancing)",
                ),
            }
        }
        (_, "drain" | "maint" | "disable" | "enable" | "ready") => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{action} answers POST only"),
            )
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action \"{action}\"; use drain, maint, enable or weight"),
            )
        }
    }
    let now = clock::now_ms();
    server.refresh_usable(now);
    tracing::info!(backend, server = addr, action, "runtime change");
    json_reply(StatusCode::OK, &metrics::server_json(&server, now))
}
