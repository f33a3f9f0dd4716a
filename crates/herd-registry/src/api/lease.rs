//! `/v1/lease`: grant, read, keep alive, revoke; and the lease helpers the catalog, locks
//! and elections grant their own leases with.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{bad, command_error, internal, ok, ApiError, ApiResult};
use crate::api::query::{read_barrier, Params};
use crate::raft::node::RegistryNode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use herd_api::wire::{
    seconds, DeleteAnswer, KeepAliveAnswer, LeaseAnswer, LeaseGrantRequest, LeaseInfo,
};
use herd_registry_core::{Command, Outcome};
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

/// A TTL in seconds from a request, checked (0.1 s to a week), in milliseconds.
pub fn ttl_ms(ttl_s: f64) -> Result<u64, ApiError> {
    if !(0.1..=604_800.0).contains(&ttl_s) {
        return Err(bad(format!(
            "ttl_s {ttl_s} is out of range; use 0.1 to 604800"
        )));
    }
    Ok((ttl_s * 1000.0).round() as u64)
}

pub async fn grant(node: &RegistryNode, ttl_ms: u64) -> Result<u64, ApiError> {
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
            other => return Err(internal(format!("lease grant answered {other:?}"))),
        }
    }
}

// ------------------------------------------------------------------------ catalog

pub async fn lease_grant(State(node): State<Shared>, RequestBody(body): RequestBody) -> ApiResult {
    let req: LeaseGrantRequest = parse_json(
        &body,
        Empty::Refuse,
        r#"{"ttl_s": <seconds, 0.1 to 604800>}"#,
    )?;
    let ttl_ms = ttl_ms(req.ttl_s)?;
    let id = node.next_lease_id();
    let resp = node.write(Command::LeaseGrant { id, ttl_ms }).await?;
    match resp.outcome {
        Outcome::LeaseGranted { id, ttl_ms } => ok(LeaseAnswer {
            id,
            ttl_s: seconds(ttl_ms),
            revision: resp.revision,
        }),
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(internal(format!("unexpected answer {other:?}"))),
    }
}

pub fn lease_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| bad(format!("lease id \"{text}\" is not a number")))
}

pub async fn lease_get(
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
        Some(l) => ok(LeaseInfo {
            id: l.id,
            ttl_s: seconds(l.ttl_ms),
            keys: l.keys,
        }),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {id} not found"),
        )),
    }
}

pub async fn lease_keepalive(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    match node.keep_alive(id).await? {
        Some(ttl_ms) => ok(KeepAliveAnswer {
            id,
            ttl_s: seconds(ttl_ms),
        }),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("lease {id} not found (expired or revoked); grant a new one"),
        )),
    }
}

pub async fn lease_revoke(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    let resp = node.write(Command::LeaseRevoke { id }).await?;
    match resp.outcome {
        Outcome::LeaseRevoked { deleted, .. } => ok(DeleteAnswer {
            revision: resp.revision,
            deleted,
        }),
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(internal(format!("unexpected answer {other:?}"))),
    }
}
