//! Membership: nodes join as learners, catch up (from a snapshot if the log was
//! compacted), then become voters; any node accepts the call and forwards it to the leader.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::ApiError;
use crate::raft::node::{NodeError, RegistryNode};
use crate::raft::types::{Node, NodeId};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::wire::{JoinAnswer, JoinRequest, RemoveAnswer};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static RESERVED: AtomicU64 = AtomicU64::new(0);

fn not_leader_forward(node: &RegistryNode) -> Result<Option<(NodeId, String)>, ApiError> {
    if node.is_leader() {
        return Ok(None);
    }
    node.leader()
        .map(Some)
        .ok_or_else(|| ApiError::from(NodeError::NoLeader))
}

pub async fn allocate_node_id(State(node): State<Arc<RegistryNode>>) -> Result<Response, ApiError> {
    if let Some((leader, addr)) = not_leader_forward(&node)? {
        let id: NodeId = node.post(leader, &addr, "/raft/node-id", &()).await?;
        return Ok(axum::Json(id).into_response());
    }
    let max_member = node.members().keys().copied().max().unwrap_or(0);
    let id = RESERVED
        .fetch_max(max_member, Ordering::SeqCst)
        .max(max_member)
        + 1;
    RESERVED.store(id, Ordering::SeqCst);
    Ok(axum::Json(id).into_response())
}

pub async fn add_member(
    State(node): State<Arc<RegistryNode>>,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let req: JoinRequest = parse_json(
        &body,
        Empty::Refuse,
        r#"{"addr": "host:port", "id": N (optional)}"#,
    )?;
    if req
        .addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("addr \"{}\" is not host:port", req.addr),
        ));
    }
    if let Some((leader, addr)) = not_leader_forward(&node)? {
        let v: JoinAnswer = node
            .post(leader, &addr, "/v1/cluster/members", &req)
            .await?;
        return Ok(axum::Json(v).into_response());
    }
    let id = match req.id {
        Some(id) => id,
        None => {
            let max_member = node.members().keys().copied().max().unwrap_or(0);
            RESERVED
                .fetch_max(max_member, Ordering::SeqCst)
                .max(max_member)
                + 1
        }
    };
    let raft_err = |e: String| ApiError(StatusCode::SERVICE_UNAVAILABLE, e);
    node.raft
        .add_learner(
            id,
            Node {
                addr: req.addr.clone(),
            },
            true,
        )
        .await
        .map_err(|e| raft_err(format!("adding node {id} as learner failed: {e}")))?;
    let mut voters: BTreeSet<NodeId> = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters.insert(id);
    node.raft
        .change_membership(voters, false)
        .await
        .map_err(|e| raft_err(format!("promoting node {id} to voter failed: {e}")))?;
    tracing::info!(node = id, addr = %req.addr, "node joined the cluster");
    Ok(axum::Json(JoinAnswer { id, addr: req.addr }).into_response())
}

pub async fn remove_member(
    State(node): State<Arc<RegistryNode>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: NodeId = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("node id \"{id}\" is not a number"),
        )
    })?;
    if let Some((leader, addr)) = not_leader_forward(&node)? {
        // Forward as the same DELETE would be: reuse the POST-based forwarder on an
        // internal path is not possible for DELETE, so ask the leader directly.
        let v: RemoveAnswer = node
            .post(leader, &addr, &format!("/raft/remove-member/{id}"), &())
            .await?;
        return Ok(axum::Json(v).into_response());
    }
    remove_on_leader(&node, id).await
}

pub async fn remove_on_leader(node: &RegistryNode, id: NodeId) -> Result<Response, ApiError> {
    let members = node.members();
    if !members.contains_key(&id) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("node {id} is not a member"),
        ));
    }
    let voters: BTreeSet<NodeId> = members
        .iter()
        .filter(|(m, (_, voter))| **m != id && *voter)
        .map(|(m, _)| *m)
        .collect();
    if voters.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "cannot remove the last voter".into(),
        ));
    }
    node.raft
        .change_membership(voters, false)
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("removing node {id} failed: {e}"),
            )
        })?;
    tracing::info!(node = id, "node removed from the cluster");
    Ok(axum::Json(RemoveAnswer { removed: id }).into_response())
}

pub async fn remove_member_internal(
    State(node): State<Arc<RegistryNode>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: NodeId = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("node id \"{id}\" is not a number"),
        )
    })?;
    remove_on_leader(&node, id).await
}
