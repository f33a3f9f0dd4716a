//! `/v1/lock`: distributed locks with fencing tokens — a FIFO queue of waiter keys on
//! leases; the holder is the oldest, its key's create revision the token. Elections wait
//! their turn the same way.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{bad, internal, ApiError, ApiResult};
use crate::api::lease::{grant, ttl_ms};
use crate::raft::node::RegistryNode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herd_api::wire::{Kv, LockAnswer, LockReleaseAnswer, LockRequest, LockStatus};
use herd_registry_core::{lock, Command, Event, EventKind, KeyValue, OpResult, Outcome};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

type Shared = Arc<RegistryNode>;

/// Acquire: join the FIFO queue with a new lease, then wait until every earlier waiter has
/// gone. The answer's fencing token is the waiter key's create revision.
pub async fn lock_acquire(
    State(node): State<Shared>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let req: LockRequest = parse_json(&body, Empty::AsObject, r#"{"ttl_s": 10, "wait_s": 30}"#)?;
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
        Ok(mine) => Ok(axum::Json(LockAnswer {
            name,
            fencing_token: mine.create_revision,
            lease,
            key: my_key,
        })
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
pub fn waiters_read(resp: herd_registry_core::Response) -> Result<Vec<KeyValue>, ApiError> {
    match resp.outcome {
        Outcome::Txn { results, .. } => Ok(results
            .into_iter()
            .find_map(|r| match r {
                OpResult::Get { kvs, .. } => Some(kvs),
                _ => None,
            })
            .unwrap_or_default()),
        Outcome::Rejected(e) => Err(bad(e.to_string())),
        other => Err(internal(format!("{other:?}"))),
    }
}

/// Why [`wait_for_turn`] ended without reaching the head of the queue.
#[derive(Debug)]
pub enum TurnError {
    TimedOut,
    /// The waiter's own key is gone: its lease expired or was revoked, or it left.
    Vanished,
}

/// The FIFO queue of the lock and election recipes: wait until `my_key` is the key with the
/// lowest create revision under `prefix`, and answer it. `waiters` is what the enqueueing
/// transaction read, and `events` must have been subscribed before that transaction, so that
/// no delete in between is missed. With `keep_alive`, the lease is heartbeaten while waiting
/// (the waiter stays in line as long as its request is open).
pub async fn wait_for_turn(
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
        _ => Ok(axum::Json(LockReleaseAnswer {
            released: name,
            revision: resp.revision,
        })
        .into_response()),
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
    Ok(axum::Json(LockStatus {
        name,
        fencing_token: owner.as_ref().map(|(_, t)| *t),
        owner: owner.map(|(k, _)| k),
        waiters: waiters.iter().map(Kv::from).collect(),
    })
    .into_response())
}
