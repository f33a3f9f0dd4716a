//! The HTTP/JSON API under /v1/ (curl-able), the node's /status and /metrics, and the
//! internal /raft/ endpoints peers use: the router, authentication, and one module per
//! resource. Every error is `{"error": "..."}` with a 4xx/5xx status and a message that
//! says what to send instead. Handlers call down into `raft`; nothing there calls up here.

mod alerts;
mod auth;
mod body;
mod catalog;
mod cluster;
mod deployments;
mod election;
mod error;
mod ids;
mod kv;
mod lease;
mod lock;
mod metrics;
mod peer;
mod query;
mod status;
mod telemetry;
mod txn;
mod ui;
mod watch;

pub use body::{MAX_RAFT_BODY_BYTES, MAX_REQUEST_BYTES};

use crate::raft::node::RegistryNode;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

/// The API's router. `read_token`: a token that may only read (see `auth`).
pub fn router(
    node: Shared,
    traces: crate::telemetry::Telemetry,
    read_token: Option<String>,
) -> Router {
    Router::new()
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::page))
        .route("/ui/snapshot", get(ui::snapshot_json))
        .route("/ui/events", get(ui::events))
        .route("/ui/{file}", get(ui::file))
        .route("/v1/alerts", get(alerts::list))
        .route(
            "/v1/alerts/rules",
            get(alerts::get_rules).put(alerts::put_rules),
        )
        .route("/v1/traces", post(telemetry::ingest))
        .route("/v1/telemetry/top", get(telemetry::top))
        .route("/v1/telemetry/graph", get(telemetry::graph))
        .route("/v1/telemetry/latency", get(telemetry::latency))
        .route("/v1/telemetry/series", get(telemetry::series))
        .route("/v1/telemetry/traces", get(telemetry::traces))
        .route("/v1/telemetry/traces/{id}", get(telemetry::one_trace))
        .route("/v1/telemetry/aggregates", get(telemetry::aggregates))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status::status))
        .route("/metrics", get(status::metrics))
        .route(
            "/v1/kv/{*key}",
            get(kv::kv_get).put(kv::kv_put).delete(kv::kv_delete),
        )
        .route("/v1/kv/", get(kv::kv_get_root).delete(kv::kv_delete_root))
        .route("/v1/txn", post(txn::txn))
        .route("/v1/watch/{*key}", get(watch::watch))
        .route("/v1/lease", post(lease::lease_grant))
        .route(
            "/v1/lease/{id}",
            get(lease::lease_get).delete(lease::lease_revoke),
        )
        .route("/v1/lease/{id}/keepalive", post(lease::lease_keepalive))
        .route("/v1/services", get(catalog::list_services))
        .route("/v1/services/{service}", get(catalog::list_instances))
        .route(
            "/v1/services/{service}/instances/{id}",
            axum::routing::put(catalog::register).delete(catalog::deregister),
        )
        .route(
            "/v1/lock/{name}",
            post(lock::lock_acquire)
                .delete(lock::lock_release)
                .get(lock::lock_status),
        )
        .route("/v1/election/{name}", get(election::leader))
        .route("/v1/election/{name}/campaign", post(election::campaign))
        .route("/v1/election/{name}/proclaim", post(election::proclaim))
        .route(
            "/v1/election/{name}/{lease}",
            axum::routing::delete(election::resign),
        )
        .route("/v1/ids", post(ids::ids))
        .route("/v1/deployments", get(deployments::read::list))
        .route(
            "/v1/deployments/{name}",
            get(deployments::read::get)
                .put(deployments::apply)
                .delete(deployments::stop),
        )
        .route("/v1/deployments/{name}/scale", post(deployments::scale))
        .route("/v1/deployments/{name}/restart", post(deployments::restart))
        .route("/v1/deployments/{name}/promote", post(deployments::promote))
        .route(
            "/v1/deployments/{name}/rollback",
            post(deployments::rollback::rollback),
        )
        .route(
            "/v1/deployments/{name}/history",
            get(deployments::read::history),
        )
        .route("/v1/nodes", get(deployments::read::nodes))
        .route("/v1/revisions", get(deployments::read::revisions))
        .route("/v1/revisions/{rev}", get(deployments::read::revision))
        .route("/v1/cluster", get(status::cluster))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::remove_member),
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::Extension(traces))
        .layer(axum::Extension(ui::UiHub::new()))
        .merge(
            Router::new()
                .route("/raft/append", post(peer::raft_append))
                .route("/raft/vote", post(peer::raft_vote))
                .route("/raft/snapshot", post(peer::raft_snapshot))
                .route("/raft/write", post(peer::raft_write))
                .route("/raft/read-index", post(peer::raft_read_index))
                .route("/raft/keepalive/{id}", post(peer::raft_keepalive))
                .route("/raft/node-id", post(cluster::allocate_node_id))
                .route(
                    "/raft/remove-member/{id}",
                    post(cluster::remove_member_internal),
                )
                // Peers send AppendEntries batches and snapshot chunks: bounded by what we
                // send (log_store::MAX_APPEND_BYTES, the snapshot chunk size), not by the
                // client limit.
                .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES)),
        )
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/registry.md (e.g. GET /v1/kv/<key>, GET /status)"
                    .into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            auth::AuthState {
                node: node.clone(),
                read_token: read_token.map(Arc::from),
            },
            auth::auth,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(node)
}

/// Every error answer is `{"error": "..."}`, also those axum writes itself: a 405 for a
/// method a path does not take (naming the ones it does), and the plain-text rejections of
/// a path or query it cannot decode (a key that is not UTF-8).
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    // axum adds the Allow header after this layer has seen the answer, so name it instead.
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!(
            "{method} is not allowed on {path}; the Allow header lists the methods it takes \
             (see docs/registry.md)"
        )
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let body = serde_json::to_vec(&herd_api::wire::ErrorBody::new(message)).unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
