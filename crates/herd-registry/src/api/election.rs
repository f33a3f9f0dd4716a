//! Leader election, etcd's recipe on the lock's FIFO queue: each candidate puts
//! `elections/<name>/<lease:016x>` (value = what it proclaims, e.g. its address) on its
//! lease; the leader is the candidate with the lowest create revision, which is also its
//! fencing token. Leadership ends when the key goes: resign, lease revoked or expired.

use crate::api::body::{json_line, parse_json, ChannelBody, Empty, RequestBody};
use crate::api::error::{bad, internal, ApiError};
use crate::api::lease::{grant, ttl_ms};
use crate::api::lock::{wait_for_turn, waiters_read, TurnError};
use crate::raft::node::RegistryNode;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::wire::{
    CampaignRequest, Leader, LeaderAnswer, LeaderLine, ProclaimAnswer, ProclaimRequest,
    ResignAnswer,
};
use herd_registry_core::catalog::validate_name;
use herd_registry_core::{
    Command, Compare, CompareOp, CompareTarget, KeyValue, Op, Outcome, Txn, MAX_VALUE_BYTES,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

type Shared = Arc<RegistryNode>;
type ApiResult = Result<Response, ApiError>;

/// Every election key starts with this.
pub const ELECTIONS_PREFIX: &str = "elections/";
/// Longest a campaign may wait for leadership in one request.
const MAX_TIMEOUT_S: f64 = 3600.0;

fn prefix(name: &str) -> Result<String, ApiError> {
    validate_name(name).map_err(|e| bad(format!("election name: {e}")))?;
    Ok(format!("{ELECTIONS_PREFIX}{name}/"))
}

fn candidate_key(name: &str, lease: u64) -> Result<String, ApiError> {
    Ok(format!("{}{lease:016x}", prefix(name)?))
}

/// `{"key","value","lease","revision"}`: the revision is the fencing token.
fn candidates(node: &RegistryNode, prefix: &str) -> Result<Vec<KeyValue>, ApiError> {
    node.state
        .applied
        .read()
        .map(|a| a.store.range(prefix, 0).0)
        .map_err(|_| internal("state lock poisoned"))
}

fn leader_of(candidates: &[KeyValue]) -> Option<&KeyValue> {
    candidates.iter().min_by_key(|kv| kv.create_revision)
}

fn check_value(value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------ campaign

/// Removes a candidate that gave up or whose request was dropped (client gone), so it
/// never becomes leader with nobody behind it. Disarmed once the campaign is won.
struct Candidacy {
    node: Shared,
    key: String,
    /// The lease was granted for this campaign: revoke it rather than delete the key.
    own_lease: Option<u64>,
    armed: bool,
}

impl Candidacy {
    fn withdraw_command(&self) -> Command {
        match self.own_lease {
            Some(id) => Command::LeaseRevoke { id },
            None => Command::Delete {
                key: self.key.clone(),
                prefix: false,
            },
        }
    }
}

impl Drop for Candidacy {
    fn drop(&mut self) {
        if self.armed {
            let (node, cmd) = (self.node.clone(), self.withdraw_command());
            tokio::spawn(async move {
                let _ = node.write(cmd).await;
            });
        }
    }
}

/// Join the election's queue, then wait (FIFO, like a lock) until this candidate leads.
pub async fn campaign(
    State(node): State<Shared>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let req: CampaignRequest = parse_json(
        &body,
        Empty::AsObject,
        r#"{"value": "<e.g. 10.0.0.7:9000>", "lease": <id, optional>, "ttl_s": 10, "timeout_s": 30}"#,
    )?;
    let prefix = prefix(&name)?;
    check_value(&req.value)?;
    let timeout = req.timeout_s.unwrap_or(30.0);
    if !(0.0..=MAX_TIMEOUT_S).contains(&timeout) {
        return Err(bad(format!(
            "timeout_s {timeout} is out of range; use 0 to {MAX_TIMEOUT_S}"
        )));
    }
    let (lease, own_lease, beat) = match req.lease {
        Some(_) if req.ttl_s.is_some() => {
            return Err(bad(
                "send either \"lease\" (yours, already granted) or \"ttl_s\" (for a new lease), not both",
            ))
        }
        Some(l) => (l, None, None),
        None => {
            let ttl = ttl_ms(req.ttl_s.unwrap_or(10.0))?;
            let lease = grant(&node, ttl).await?;
            // Heartbeat our own lease while the request waits, 3 times per TTL.
            (lease, Some(lease), Some((lease, Duration::from_millis(ttl / 3))))
        }
    };
    let key = candidate_key(&name, lease)?;
    let mut candidacy = Candidacy {
        node: node.clone(),
        key: key.clone(),
        own_lease,
        armed: true,
    };
    // Subscribe before enqueueing so that no resignation between the two is missed.
    let mut events = node.state.events.subscribe();
    let value = req.value.into_bytes();
    let put = Op::Put {
        key: key.clone(),
        value,
        lease: Some(lease),
    };
    let read = Op::Get {
        key: prefix.clone(),
        prefix: true,
        limit: 0,
    };
    // A candidate that campaigns again on the same lease keeps its place (and its create
    // revision); only its value changes.
    let txn = Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: CompareTarget::CreateRevision(0),
            op: CompareOp::Eq,
        }],
        success: vec![put.clone(), read.clone()],
        failure: vec![put, read],
    };
    let resp = node.write(Command::Txn(txn)).await?;
    if let Some(e) = resp.error() {
        candidacy.armed = false;
        let status = match e {
            herd_registry_core::CommandError::LeaseNotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        return Err(ApiError(status, format!("campaign for \"{name}\": {e}")));
    }
    let waiters = waiters_read(resp)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
    match wait_for_turn(&node, &prefix, &key, waiters, &mut events, deadline, beat).await {
        Ok(me) => {
            candidacy.armed = false;
            Ok(axum::Json(LeaderAnswer {
                leader: Leader::from(&me),
            })
            .into_response())
        }
        Err(TurnError::TimedOut) => {
            candidacy.armed = false;
            let _ = node.write(candidacy.withdraw_command()).await;
            Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "election \"{name}\" still has another leader after {timeout} s; this candidate withdrew, campaign again"
                ),
            ))
        }
        Err(TurnError::Vanished) => {
            // Dropping `candidacy` revokes our own lease, should it still exist.
            Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "candidate {key} vanished while waiting (lease {lease} revoked or expired, or it resigned); campaign again"
                ),
            ))
        }
    }
}

// ------------------------------------------------------------------------ observe

/// The leader now, or with `?watch` an NDJSON stream of `{"leader": ...}` lines: the
/// current one first, then one per change (a new leader, or a proclaimed value).
pub async fn leader(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let prefix = prefix(&name)?;
    for k in q.keys() {
        if k != "watch" {
            return Err(bad(format!(
                "unknown parameter ?{k}; GET /v1/election/<name> takes only ?watch"
            )));
        }
    }
    if q.contains_key("watch") {
        return watch(node, prefix).await;
    }
    node.read_barrier().await?;
    match leader_of(&candidates(&node, &prefix)?) {
        Some(kv) => Ok(axum::Json(LeaderAnswer {
            leader: Leader::from(kv),
        })
        .into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no leader".into())),
    }
}

fn line(leader: Option<&KeyValue>) -> Bytes {
    json_line(&LeaderLine {
        leader: leader.map(Leader::from),
    })
}

async fn watch(node: Shared, prefix: String) -> ApiResult {
    // Subscribe first: a change after the first read is then seen as an event.
    let mut live = node.state.events.subscribe();
    node.read_barrier().await?;
    let first = leader_of(&candidates(&node, &prefix)?).cloned();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        // What identifies a leadership state: who leads (key and token) and its value.
        let ident = |kv: &Option<KeyValue>| {
            kv.as_ref()
                .map(|kv| (kv.key.clone(), kv.create_revision, kv.value.clone()))
        };
        let mut last = ident(&first);
        if tx.send(line(first.as_ref())).await.is_err() {
            return;
        }
        let mut progress = tokio::time::interval(Duration::from_secs(15));
        progress.tick().await;
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(batch) if !batch.iter().any(|e| e.kv.key.starts_with(&prefix)) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = progress.tick() => {
                    // Keeps idle connections (and proxies) from timing the stream out.
                    if tx.send(Bytes::from_static(b"\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = tx.closed() => return,
            }
            let Ok(now) = candidates(&node, &prefix) else {
                return;
            };
            let now = leader_of(&now).cloned();
            if ident(&now) != last {
                last = ident(&now);
                if tx.send(line(now.as_ref())).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::new(ChannelBody(rx)),
    )
        .into_response())
}

// ------------------------------------------------------------------------ proclaim

/// The leader changes its value, keeping its place and token; 412 from anyone else.
pub async fn proclaim(
    State(node): State<Shared>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let req: ProclaimRequest = parse_json(
        &body,
        Empty::AsObject,
        r#"{"lease": <the leader's lease>, "value": "..."}"#,
    )?;
    let prefix = prefix(&name)?;
    let key = candidate_key(&name, req.lease)?;
    check_value(&req.value)?;
    node.read_barrier().await?;
    let all = candidates(&node, &prefix)?;
    let not_leader = || {
        ApiError(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "lease {} is not the leader of election \"{name}\"; only the leader may proclaim",
                req.lease
            ),
        )
    };
    let Some(me) = leader_of(&all).filter(|kv| kv.key == key) else {
        return Err(not_leader());
    };
    // Keys created later sort after ours: while our key keeps its create revision we lead.
    let txn = Txn {
        compares: vec![Compare {
            key: key.clone(),
            target: CompareTarget::CreateRevision(me.create_revision),
            op: CompareOp::Eq,
        }],
        success: vec![
            Op::Put {
                key: key.clone(),
                value: req.value.into_bytes(),
                lease: me.lease,
            },
            Op::Get {
                key: key.clone(),
                prefix: false,
                limit: 0,
            },
        ],
        failure: vec![],
    };
    let resp = node.write(Command::Txn(txn)).await?;
    let revision = resp.revision;
    match &resp.outcome {
        Outcome::Txn {
            succeeded: true, ..
        } => {}
        Outcome::Txn { .. } => return Err(not_leader()),
        Outcome::Rejected(e) => return Err(bad(e.to_string())),
        other => return Err(internal(format!("{other:?}"))),
    }
    let updated = waiters_read(resp)?;
    let kv = updated
        .first()
        .ok_or_else(|| internal("proclaimed key not read back"))?;
    Ok(axum::Json(ProclaimAnswer {
        leader: Leader::from(kv),
        revision,
    })
    .into_response())
}

// ------------------------------------------------------------------------ resign

/// Remove a candidate's key (leader or waiter); the next in line leads. The lease stays:
/// revoke it too when it served nothing else.
pub async fn resign(
    State(node): State<Shared>,
    Path((name, lease)): Path<(String, String)>,
) -> ApiResult {
    let lease: u64 = lease.parse().map_err(|_| {
        bad(format!(
            "lease \"{lease}\" is not a number; use DELETE /v1/election/<name>/<lease from the campaign answer>"
        ))
    })?;
    let key = candidate_key(&name, lease)?;
    let resp = node.write(Command::Delete { key, prefix: false }).await?;
    match resp.outcome {
        Outcome::Delete { deleted: 0, .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {lease} is no candidate in election \"{name}\""),
        )),
        Outcome::Delete { .. } => Ok(axum::Json(ResignAnswer {
            resigned: name,
            lease,
            revision: resp.revision,
        })
        .into_response()),
        Outcome::Rejected(e) => Err(bad(e.to_string())),
        other => Err(internal(format!("{other:?}"))),
    }
}
