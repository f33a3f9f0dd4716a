//! The HTTP/JSON API under /v1/ (curl-able), the node's /status and /metrics, and the
//! internal /raft/ endpoints peers use. Every error is `{"error": "..."}` with a 4xx/5xx
//! status and a message that says what to send instead.

use crate::node::{NodeError, RegistryNode};
use crate::types::{NodeId, TypeConfig};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use herd_registry_core::{
    b64, Command, CommandError, Event, KeyValue, Outcome, Txn, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;
type Params = Query<HashMap<String, String>>;

/// Largest request body the client API (`/v1/`) reads: one value of
/// [`MAX_VALUE_BYTES`] raw, or a transaction's JSON (values in base64) up to this size.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Largest body a peer may send on `/raft/`: a log entry is at most a client request
/// re-encoded, an AppendEntries batch is cut at `MAX_APPEND_BYTES` (or is one entry), and
/// a snapshot chunk is `SNAPSHOT_CHUNK_BYTES`.
pub const MAX_RAFT_BODY_BYTES: usize = 64 << 20;

/// A `/v1/` request body; one beyond [`MAX_REQUEST_BYTES`] is a JSON 413 naming the limits.
pub struct RequestBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RequestBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the limit of {MAX_REQUEST_BYTES} bytes; a value may have at most {MAX_VALUE_BYTES} bytes (1 MiB)"
                ),
            )),
            Err(e) => Err(bad(format!("could not read the request body: {e}"))),
        }
    }
}

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match e {
            NodeError::NoLeader => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Forward { .. } => StatusCode::BAD_GATEWAY,
            NodeError::Raft(_) | NodeError::NoQuorum(_) => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Remote { status, .. } => StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY),
        };
        ApiError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn command_error(e: &CommandError) -> ApiError {
    let status = match e {
        CommandError::LeaseNotFound { .. } => StatusCode::NOT_FOUND,
        CommandError::CasFailed { .. } => StatusCode::PRECONDITION_FAILED,
        CommandError::AlreadyCompacted { .. } => StatusCode::GONE,
        CommandError::LeaseExists { .. } => StatusCode::CONFLICT,
        CommandError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/kv/", get(kv_get_root).delete(kv_delete_root))
        .route("/v1/txn", post(txn))
        .route("/v1/watch/{*key}", get(crate::watch::watch))
        .route("/v1/lease", post(lease_grant))
        .route("/v1/lease/{id}", get(lease_get).delete(lease_revoke))
        .route("/v1/lease/{id}/keepalive", post(lease_keepalive))
        .route("/v1/services", get(crate::coord::list_services))
        .route("/v1/services/{service}", get(crate::coord::list_instances))
        .route(
            "/v1/services/{service}/instances/{id}",
            axum::routing::put(crate::coord::register).delete(crate::coord::deregister),
        )
        .route(
            "/v1/lock/{name}",
            post(crate::coord::lock_acquire)
                .delete(crate::coord::lock_release)
                .get(crate::coord::lock_status),
        )
        .route("/v1/election/{name}", get(crate::election::leader))
        .route(
            "/v1/election/{name}/campaign",
            post(crate::election::campaign),
        )
        .route(
            "/v1/election/{name}/proclaim",
            post(crate::election::proclaim),
        )
        .route(
            "/v1/election/{name}/{lease}",
            axum::routing::delete(crate::election::resign),
        )
        .route("/v1/ids", post(crate::coord::ids))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/members", post(crate::cluster::add_member))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(crate::cluster::remove_member),
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .merge(
            Router::new()
                .route("/raft/append", post(raft_append))
                .route("/raft/vote", post(raft_vote))
                .route("/raft/snapshot", post(raft_snapshot))
                .route("/raft/write", post(raft_write))
                .route("/raft/read-index", post(raft_read_index))
                .route("/raft/keepalive/{id}", post(raft_keepalive))
                .route("/raft/node-id", post(crate::cluster::allocate_node_id))
                .route(
                    "/raft/remove-member/{id}",
                    post(crate::cluster::remove_member_internal),
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
        .layer(axum::middleware::from_fn_with_state(node.clone(), auth))
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
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn auth(
    State(node): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &node.token {
        let path = req.uri().path();
        let presented = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if path != "/healthz" && presented != Some(token.as_str()) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token; send Authorization: Bearer <token>".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

pub fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": kv.key,
        "value": b64::encode(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

pub fn event_json(e: &Event) -> Value {
    json!({ "type": e.kind, "kv": kv_json(&e.kv), "revision": e.revision })
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(bad("empty key; use /v1/kv/<key>"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "key of {} bytes exceeds {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("?{name}={v} is not a non-negative integer"))),
    }
}

async fn read_barrier(node: &RegistryNode, q: &HashMap<String, String>) -> Result<(), ApiError> {
    if flag(q, "serializable") {
        node.counters.reads.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    Ok(node.read_barrier().await?)
}

async fn kv_get(
    State(node): State<Shared>,
    Path(key): Path<String>,
    Query(q): Params,
) -> ApiResult {
    read_barrier(&node, &q).await?;
    let applied = node.state.applied.read().map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state lock poisoned".into(),
        )
    })?;
    if flag(&q, "prefix") {
        let limit = number(&q, "limit")?.unwrap_or(0) as usize;
        let (kvs, more) = applied.store.range(&key, limit);
        return ok(json!({
            "revision": applied.store.revision(),
            "kvs": kvs.iter().map(kv_json).collect::<Vec<_>>(),
            "more": more,
        }));
    }
    check_key(&key)?;
    match applied.store.get(&key) {
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("key \"{key}\" not found"),
        )),
        Some(kv) if flag(&q, "raw") => Ok(kv.value.into_response()),
        Some(kv) => ok(kv_json(&kv)),
    }
}

/// `/v1/kv/?prefix` names the empty prefix: every key.
async fn kv_get_root(node: State<Shared>, q: Params) -> ApiResult {
    kv_get(node, Path(String::new()), q).await
}

async fn kv_delete_root(node: State<Shared>, q: Params) -> ApiResult {
    kv_delete(node, Path(String::new()), q).await
}

async fn kv_put(
    State(node): State<Shared>,
    Path(key): Path<String>,
    Query(q): Params,
    RequestBody(body): RequestBody,
) -> ApiResult {
    check_key(&key)?;
    if body.len() > MAX_VALUE_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes (1 MiB)",
                body.len()
            ),
        ));
    }
    for k in q.keys() {
        if !matches!(k.as_str(), "lease" | "cas") {
            return Err(bad(format!(
                "unknown parameter ?{k}; PUT takes ?lease=ID and ?cas=MOD_REVISION"
            )));
        }
    }
    let cmd = Command::Put {
        key,
        value: body.to_vec(),
        lease: number(&q, "lease")?.filter(|l| *l != 0),
        cas_mod_revision: number(&q, "cas")?,
    };
    let resp = node.write(cmd).await?;
    if let Some(e) = resp.error() {
        let mut err = command_error(e).into_response();
        if let CommandError::CasFailed {
            current_mod_revision,
        } = e
        {
            err = (
                StatusCode::PRECONDITION_FAILED,
                axum::Json(json!({"error": e.to_string(), "mod_revision": current_mod_revision})),
            )
                .into_response();
        }
        return Ok(err);
    }
    ok(json!({ "revision": resp.revision }))
}

async fn kv_delete(
    State(node): State<Shared>,
    Path(key): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let prefix = flag(&q, "prefix");
    if !prefix {
        check_key(&key)?;
    }
    let resp = node.write(Command::Delete { key, prefix }).await?;
    match &resp.outcome {
        Outcome::Delete { deleted, .. } => {
            ok(json!({"revision": resp.revision, "deleted": deleted}))
        }
        Outcome::Rejected(e) => Err(command_error(e)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("invalid JSON body ({e}); expected {shape}")))
}

async fn txn(State(node): State<Shared>, RequestBody(body): RequestBody) -> ApiResult {
    let txn: Txn = parse_json(
        &body,
        r#"{"compares":[{"key","target":{"version":N}|{"value":"<base64>"}|{"mod_revision":N}|{"create_revision":N}|{"exists":bool},"op":"eq|not_eq|less|greater"}],"success":[ops],"failure":[ops]}"#,
    )?;
    let resp = node.write(Command::Txn(txn)).await?;
    match resp.outcome {
        Outcome::Txn { succeeded, results } => {
            let results: Vec<Value> = results
                .iter()
                .map(|r| match r {
                    herd_registry_core::OpResult::Put { prev_kv } => {
                        json!({"put": {"prev_kv": prev_kv.as_ref().map(kv_json)}})
                    }
                    herd_registry_core::OpResult::Delete { deleted, .. } => {
                        json!({"delete": {"deleted": deleted}})
                    }
                    herd_registry_core::OpResult::Get { kvs, more } => {
                        json!({"get": {"kvs": kvs.iter().map(kv_json).collect::<Vec<_>>(), "more": more}})
                    }
                })
                .collect();
            ok(json!({"revision": resp.revision, "succeeded": succeeded, "results": results}))
        }
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    ttl_s: f64,
}

const MAX_TTL_S: f64 = 7.0 * 24.0 * 3600.0;

async fn lease_grant(State(node): State<Shared>, RequestBody(body): RequestBody) -> ApiResult {
    let req: LeaseRequest = parse_json(&body, r#"{"ttl_s": <seconds, 0.1 to 604800>}"#)?;
    if !(0.1..=MAX_TTL_S).contains(&req.ttl_s) {
        return Err(bad(format!(
            "ttl_s {} is out of range; use 0.1 to 604800",
            req.ttl_s
        )));
    }
    let id = node.next_lease_id();
    let ttl_ms = (req.ttl_s * 1000.0).round() as u64;
    let resp = node.write(Command::LeaseGrant { id, ttl_ms }).await?;
    match resp.outcome {
        Outcome::LeaseGranted { id, ttl_ms } => {
            ok(json!({"id": id, "ttl_s": ttl_ms as f64 / 1000.0, "revision": resp.revision}))
        }
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

fn lease_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| bad(format!("lease id \"{text}\" is not a number")))
}

async fn lease_get(
    State(node): State<Shared>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let id = lease_id(&id)?;
    read_barrier(&node, &q).await?;
    let info = node
        .state
        .applied
        .read()
        .ok()
        .and_then(|a| a.store.lease(id));
    match info {
        Some(l) => ok(json!({"id": l.id, "ttl_s": l.ttl_ms as f64 / 1000.0, "keys": l.keys})),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {id} not found"),
        )),
    }
}

async fn lease_keepalive(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    match node.keep_alive(id).await? {
        Some(ttl_ms) => ok(json!({"id": id, "ttl_s": ttl_ms as f64 / 1000.0})),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {id} not found (expired or revoked); grant a new one"),
        )),
    }
}

async fn lease_revoke(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    let resp = node.write(Command::LeaseRevoke { id }).await?;
    match resp.outcome {
        Outcome::LeaseRevoked { deleted, .. } => {
            ok(json!({"revision": resp.revision, "deleted": deleted}))
        }
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        )),
    }
}

pub fn role(node: &RegistryNode) -> &'static str {
    let m = node.raft.metrics().borrow().clone();
    match m.state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

async fn cluster(State(node): State<Shared>) -> ApiResult {
    let leader = node.leader().map(|(id, _)| id);
    let members: Vec<Value> = node
        .members()
        .into_iter()
        .map(|(id, (addr, voter))| {
            let role = if Some(id) == leader {
                "leader"
            } else if voter {
                "follower"
            } else {
                "learner"
            };
            json!({"id": id, "addr": addr, "role": role})
        })
        .collect();
    ok(json!({"leader": leader, "members": members}))
}

async fn status(State(node): State<Shared>) -> ApiResult {
    let m = node.raft.metrics().borrow().clone();
    let (revision, keys, leases) = node
        .state
        .applied
        .read()
        .map(|a| (a.store.revision(), a.store.len(), a.store.leases().len()))
        .unwrap_or_default();
    ok(json!({
        "role_name": "server",
        "id": node.id,
        "addr": node.addr,
        "process_id": node.process_id,
        "role": role(&node),
        "term": m.current_term,
        "leader": m.current_leader,
        "commit_index": node.committed.load(Ordering::Relaxed),
        "last_log_index": m.last_log_index,
        "applied_index": m.last_applied.map_or(0, |l| l.index),
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "log_entries": node.log.file_entries(),
        "revision": revision,
        "keys": keys,
        "leases": leases,
        "uptime_s": node.started.elapsed().as_secs(),
    }))
}

async fn metrics(State(node): State<Shared>) -> Response {
    crate::metrics::render(&node).into_response()
}

// ------------------------------------------------------------- internal, between nodes

async fn raft_append(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> =
        parse_json(&body, "an AppendEntries RPC")?;
    let r = node.raft.append_entries(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

async fn raft_vote(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc: openraft::raft::VoteRequest<NodeId> = parse_json(&body, "a Vote RPC")?;
    let r = node.raft.vote(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

async fn raft_snapshot(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc = crate::network::decode_snapshot_chunk(&body)
        .map_err(|e| bad(format!("{e}; expected an InstallSnapshot chunk")))?;
    let r = node.raft.install_snapshot(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

async fn raft_write(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let cmd: Command = parse_json(&body, "a registry command")?;
    let resp = node.write(cmd).await?;
    ok(serde_json::to_value(resp).map_err(|e| bad(e.to_string()))?)
}

async fn raft_read_index(State(node): State<Shared>) -> ApiResult {
    let index = node.leader_read_index().await?;
    ok(json!(index))
}

async fn raft_keepalive(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    if !node.is_leader() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not the leader".into(),
        ));
    }
    let ttl = node.keep_alive(id).await?;
    ok(json!(ttl))
}
