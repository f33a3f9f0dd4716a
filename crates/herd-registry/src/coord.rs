//! Coordination built on the KV: the service catalog, locks with fencing tokens, and
//! snowflake IDs. Each is a thin layer: the catalog and locks are keys and transactions
//! that go through Raft like any write; IDs are node-local (the node id is in every ID).

use crate::api::{kv_json, ApiError, RequestBody};
use crate::node::{now_ms, RegistryNode};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_registry_core::catalog::{self, Instance};
use herd_registry_core::{lock, Command, Event, EventKind, KeyValue, OpResult, Outcome, Snowflake};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

type Shared = Arc<RegistryNode>;
type ApiResult = Result<Response, ApiError>;

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|e| bad(format!("empty body ({e}); expected {shape}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("invalid JSON body ({e}); expected {shape}")))
}

pub(crate) fn ttl_ms(ttl_s: f64) -> Result<u64, ApiError> {
    if !(0.1..=604_800.0).contains(&ttl_s) {
        return Err(bad(format!(
            "ttl_s {ttl_s} is out of range; use 0.1 to 604800"
        )));
    }
    Ok((ttl_s * 1000.0).round() as u64)
}

pub(crate) async fn grant(node: &RegistryNode, ttl_ms: u64) -> Result<u64, ApiError> {
    // Two grants in the same millisecond can be handed the same id (next_lease_id sets the
    // low bit, so sequence numbers 2k and 2k+1 collide): the store refuses the duplicate,
    // and the next id drawn differs.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let id = node.next_lease_id();
        let resp = node.write(Command::LeaseGrant { id, ttl_ms }).await?;
        match resp.outcome {
            Outcome::LeaseGranted { id, .. } => return Ok(id),
            Outcome::Rejected(herd_registry_core::CommandError::LeaseExists { .. })
                if attempts < 8 => {}
            other => {
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("lease grant answered {other:?}"),
                ))
            }
        }
    }
}

// ------------------------------------------------------------------------ catalog

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    address: String,
    port: u16,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    ttl_s: Option<f64>,
    /// Reuse a lease the caller already heartbeats (several instances, one lease).
    #[serde(default)]
    lease: Option<u64>,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
}

pub async fn register(
    State(node): State<Shared>,
    Path((service, id)): Path<(String, String)>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let r: Register = parse(
        &body,
        r#"{"address": "10.0.0.1", "port": 9000, "weight": 1-100, "ttl_s": 10, "zone", "version", "tags": [], "meta": {}}"#,
    )?;
    let weight = r.weight.unwrap_or(1);
    if !(1..=100).contains(&weight) {
        return Err(bad(format!("weight {weight} is out of range; use 1-100")));
    }
    let inst = Instance {
        service,
        id,
        address: r.address,
        port: r.port,
        weight,
        zone: r.zone,
        version: r.version,
        tags: r.tags,
        meta: r.meta,
    };
    inst.validate().map_err(|e| bad(e.to_string()))?;
    let key = inst.key().map_err(|e| bad(e.to_string()))?;
    let ttl = ttl_ms(r.ttl_s.unwrap_or(10.0))?;
    let lease = match r.lease {
        Some(l) => l,
        None => grant(&node, ttl).await?,
    };
    let resp = node
        .write(Command::Put {
            key,
            value: inst.to_value(),
            lease: Some(lease),
            cas_mod_revision: None,
        })
        .await?;
    if let Some(e) = resp.error() {
        return Err(ApiError(StatusCode::NOT_FOUND, e.to_string()));
    }
    Ok(axum::Json(json!({
        "revision": resp.revision,
        "lease": lease,
        "ttl_s": ttl as f64 / 1000.0,
        "keepalive": format!("/v1/lease/{lease}/keepalive"),
    }))
    .into_response())
}

pub async fn deregister(
    State(node): State<Shared>,
    Path((service, id)): Path<(String, String)>,
) -> ApiResult {
    let key = catalog::instance_key(&service, &id).map_err(|e| bad(e.to_string()))?;
    let resp = node.write(Command::Delete { key, prefix: false }).await?;
    match resp.outcome {
        Outcome::Delete { deleted: 0, .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("service \"{service}\" has no instance \"{id}\""),
        )),
        Outcome::Delete { deleted, .. } => {
            Ok(axum::Json(json!({"revision": resp.revision, "deleted": deleted})).into_response())
        }
        Outcome::Rejected(e) => Err(bad(e.to_string())),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{other:?}"),
        )),
    }
}

fn serializable(q: &HashMap<String, String>) -> bool {
    q.contains_key("serializable")
}

pub async fn list_instances(
    State(node): State<Shared>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let prefix = catalog::service_prefix(&service).map_err(|e| bad(e.to_string()))?;
    if !serializable(&q) {
        node.read_barrier().await?;
    }
    let (revision, instances) = {
        let a = node.state.applied.read().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state lock poisoned".into(),
            )
        })?;
        let (kvs, _) = a.store.range(&prefix, 0);
        (a.store.revision(), catalog::parse_instances(&kvs))
    };
    Ok(
        axum::Json(json!({"service": service, "revision": revision, "instances": instances}))
            .into_response(),
    )
}

pub async fn list_services(
    State(node): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    if !serializable(&q) {
        node.read_barrier().await?;
    }
    let (revision, names) = {
        let a = node.state.applied.read().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state lock poisoned".into(),
            )
        })?;
        let (kvs, _) = a.store.range(catalog::SERVICES_PREFIX, 0);
        (a.store.revision(), catalog::service_names(&kvs))
    };
    Ok(axum::Json(json!({"revision": revision, "services": names})).into_response())
}

// ------------------------------------------------------------------------ locks

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockRequest {
    #[serde(default)]
    ttl_s: Option<f64>,
    /// How long to queue for the lock before giving up (default 30 s, at most 300 s).
    #[serde(default)]
    wait_s: Option<f64>,
}

/// Acquire: join the FIFO queue with a new lease, then wait until every earlier waiter has
/// gone. The answer's fencing token is the waiter key's create revision.
pub async fn lock_acquire(
    State(node): State<Shared>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let req: LockRequest = parse(&body, r#"{"ttl_s": 10, "wait_s": 30}"#)?;
    lock::lock_prefix(&name).map_err(|e| bad(e.to_string()))?;
    let ttl = ttl_ms(req.ttl_s.unwrap_or(10.0))?;
    let wait = req.wait_s.unwrap_or(30.0);
    if !(0.0..=300.0).contains(&wait) {
        return Err(bad(format!("wait_s {wait} is out of range; use 0 to 300")));
    }
    let lease = grant(&node, ttl).await?;
    let my_key = lock::lock_waiter_key(&name, lease).map_err(|e| bad(e.to_string()))?;
    // Subscribe before enqueueing so that no release between the two is missed.
    let mut events = node.state.events.subscribe();
    let txn = lock::lock_acquire_txn(&name, lease).map_err(|e| bad(e.to_string()))?;
    let waiters = waiters_read(node.write(Command::Txn(txn)).await?)?;
    let prefix = lock::lock_prefix(&name).map_err(|e| bad(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
    // The lease is kept alive while the request waits, so a wait longer than ttl_s keeps
    // its place; once acquired, keeping it alive is the holder's job.
    let beat = Some((lease, Duration::from_millis((ttl / 3).max(50))));
    match wait_for_turn(&node, &prefix, &my_key, waiters, &mut events, deadline, beat).await {
        Ok(mine) => Ok(axum::Json(json!({
            "name": name,
            "fencing_token": mine.create_revision,
            "lease": lease,
            "key": my_key,
        }))
        .into_response()),
        Err(TurnError::TimedOut) => {
            let _ = node.write(Command::LeaseRevoke { id: lease }).await;
            Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "lock \"{name}\" still held by another owner after {wait} s; try again later"
                ),
            ))
        }
        Err(TurnError::Vanished) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "this waiter's place on lock \"{name}\" vanished (its lease {lease} ended while waiting: ttl_s shorter than the wait?); retry"
            ),
        )),
    }
}

/// The waiters a queue-joining transaction read: the `Get` result of its answer.
pub(crate) fn waiters_read(resp: herd_registry_core::Response) -> Result<Vec<KeyValue>, ApiError> {
    match resp.outcome {
        Outcome::Txn { results, .. } => Ok(results
            .into_iter()
            .find_map(|r| match r {
                OpResult::Get { kvs, .. } => Some(kvs),
                _ => None,
            })
            .unwrap_or_default()),
        Outcome::Rejected(e) => Err(bad(e.to_string())),
        other => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{other:?}"),
        )),
    }
}

/// Why [`wait_for_turn`] ended without reaching the head of the queue.
#[derive(Debug)]
pub(crate) enum TurnError {
    TimedOut,
    /// The waiter's own key is gone: its lease expired or was revoked, or it left.
    Vanished,
}

/// The FIFO queue of the lock and election recipes: wait until `my_key` is the key with the
/// lowest create revision under `prefix`, and answer it. `waiters` is what the enqueueing
/// transaction read, and `events` must have been subscribed before that transaction, so that
/// no delete in between is missed. With `keep_alive`, the lease is heartbeaten while waiting
/// (the waiter stays in line as long as its request is open).
pub(crate) async fn wait_for_turn(
    node: &RegistryNode,
    prefix: &str,
    my_key: &str,
    mut waiters: Vec<KeyValue>,
    events: &mut broadcast::Receiver<Arc<Vec<Event>>>,
    deadline: tokio::time::Instant,
    keep_alive: Option<(u64, Duration)>,
) -> Result<KeyValue, TurnError> {
    let my_revision = waiters
        .iter()
        .find(|kv| kv.key == my_key)
        .map(|kv| kv.create_revision)
        .ok_or(TurnError::Vanished)?;
    // This node's revision when `waiters` was read: a follower may not have applied our own
    // enqueue yet, and an absent key means nothing until it has.
    let mut seen_revision = my_revision;
    let mut heartbeat = keep_alive.map(|(_, every)| tokio::time::interval(every));
    loop {
        match waiters.iter().min_by_key(|kv| kv.create_revision) {
            Some(first) if first.key == my_key => return Ok(first.clone()),
            _ if seen_revision >= my_revision && !waiters.iter().any(|kv| kv.key == my_key) => {
                return Err(TurnError::Vanished)
            }
            _ => {}
        }
        // Wait for a delete under the prefix, then look again.
        let released = async {
            loop {
                let beat = async {
                    match heartbeat.as_mut() {
                        Some(h) => {
                            h.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    r = events.recv() => match r {
                        Ok(batch) => {
                            if batch
                                .iter()
                                .any(|e| e.kind == EventKind::Delete && e.kv.key.starts_with(prefix))
                            {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    },
                    _ = beat => {
                        if let Some((lease, _)) = keep_alive {
                            // A lease the leader no longer knows shows up as the key's delete.
                            let _ = node.keep_alive(lease).await;
                        }
                    }
                }
            }
        };
        if tokio::time::timeout_at(deadline, released).await.is_err() {
            return Err(TurnError::TimedOut);
        }
        (waiters, seen_revision) = node
            .state
            .applied
            .read()
            .map(|a| (a.store.range(prefix, 0).0, a.store.revision()))
            .unwrap_or_default();
    }
}

pub async fn lock_release(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let lease: u64 = q
        .get("lease")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("say whose lock to release: DELETE /v1/lock/<name>?lease=<lease from the acquire answer>"))?;
    let cmd = lock::lock_release_command(&name, lease).map_err(|e| bad(e.to_string()))?;
    let resp = node.write(cmd).await?;
    // The lease only served this lock: revoke it so nothing else lingers.
    let _ = node.write(Command::LeaseRevoke { id: lease }).await;
    match resp.outcome {
        Outcome::Delete { deleted: 0, .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {lease} holds no place on lock \"{name}\""),
        )),
        _ => Ok(axum::Json(json!({"released": name, "revision": resp.revision})).into_response()),
    }
}

pub async fn lock_status(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let prefix = lock::lock_prefix(&name).map_err(|e| bad(e.to_string()))?;
    node.read_barrier().await?;
    let waiters = node
        .state
        .applied
        .read()
        .map(|a| a.store.range(&prefix, 0).0)
        .unwrap_or_default();
    let owner = lock::lock_owner_of(&waiters);
    Ok(axum::Json(json!({
        "name": name,
        "owner": owner.as_ref().map(|(k, _)| k),
        "fencing_token": owner.map(|(_, t)| t),
        "waiters": waiters.iter().map(kv_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

// ------------------------------------------------------------------------ ids

/// IDs count milliseconds from 2026-01-01T00:00:00Z: 41 bits last until about 2095.
pub const ID_EPOCH_MS: u64 = 1_767_225_600_000;
const MAX_IDS_PER_CALL: u64 = 10_000;

pub struct IdGenerator(Mutex<Option<Snowflake>>);

impl IdGenerator {
    pub fn new(node_id: u64) -> IdGenerator {
        let gen = u16::try_from(node_id)
            .ok()
            .and_then(|n| Snowflake::new(n, ID_EPOCH_MS).ok());
        IdGenerator(Mutex::new(gen))
    }
}

pub async fn ids(
    State(node): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let count: u64 = match q.get("count") {
        None => 1,
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("?count={v} is not a number")))?,
    };
    if !(1..=MAX_IDS_PER_CALL).contains(&count) {
        return Err(bad(format!(
            "count {count} is out of range; use 1-{MAX_IDS_PER_CALL}"
        )));
    }
    let mut out = Vec::with_capacity(count as usize);
    {
        let mut guard = node.ids.0.lock().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "id generator poisoned".into(),
            )
        })?;
        let Some(gen) = guard.as_mut() else {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node id {} does not fit the 10 bits of a snowflake id",
                    node.id
                ),
            ));
        };
        for _ in 0..count {
            out.push(
                gen.next(now_ms())
                    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
            );
        }
    }
    Ok(axum::Json(json!({"ids": out, "node": node.id})).into_response())
}
