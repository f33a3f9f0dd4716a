//! `/raft/`: what peers send each other — Raft RPCs, writes and read-index requests
//! forwarded to the leader, keep-alives relayed to it.

use crate::api::body::{parse_json, Empty};
use crate::api::error::{bad, ok, ApiError, ApiResult};
use crate::api::lease::lease_id;
use crate::raft::node::RegistryNode;
use crate::raft::types::{NodeId, TypeConfig};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herd_registry_core::Command;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

pub async fn raft_append(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> =
        parse_json(&body, Empty::Refuse, "an AppendEntries RPC")?;
    let r = node.raft.append_entries(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

pub async fn raft_vote(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc: openraft::raft::VoteRequest<NodeId> = parse_json(&body, Empty::Refuse, "a Vote RPC")?;
    let r = node.raft.vote(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

pub async fn raft_snapshot(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let rpc = crate::raft::network::decode_snapshot_chunk(&body)
        .map_err(|e| bad(format!("{e}; expected an InstallSnapshot chunk")))?;
    let r = node.raft.install_snapshot(rpc).await;
    ok(serde_json::to_value(r).map_err(|e| bad(e.to_string()))?)
}

pub async fn raft_write(State(node): State<Shared>, body: Bytes) -> ApiResult {
    let cmd: Command = parse_json(&body, Empty::Refuse, "a registry command")?;
    let resp = node.write(cmd).await?;
    ok(serde_json::to_value(resp).map_err(|e| bad(e.to_string()))?)
}

pub async fn raft_read_index(State(node): State<Shared>) -> ApiResult {
    let index = node.leader_read_index().await?;
    ok(index)
}

pub async fn raft_keepalive(State(node): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = lease_id(&id)?;
    if !node.is_leader() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not the leader".into(),
        ));
    }
    let ttl = node.keep_alive(id).await?;
    ok(ttl)
}
