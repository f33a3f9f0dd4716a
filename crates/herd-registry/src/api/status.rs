//! A node's own state: `/status`, `/metrics` and `GET /v1/cluster`.

use crate::api::error::{ok, ApiResult};
use crate::raft::node::RegistryNode;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use herd_api::wire::{ClusterAnswer, Member, NodeStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

pub async fn cluster(State(node): State<Shared>) -> ApiResult {
    let leader = node.leader().map(|(id, _)| id);
    let members: Vec<Member> = node
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
            Member {
                id,
                addr,
                role: role.into(),
            }
        })
        .collect();
    ok(ClusterAnswer { leader, members })
}

pub async fn status(State(node): State<Shared>) -> ApiResult {
    let m = node.raft.metrics().borrow().clone();
    let (revision, keys, leases) = node.store_counts();
    ok(NodeStatus {
        role_name: "server".into(),
        id: node.id,
        addr: node.addr.clone(),
        process_id: node.process_id.clone(),
        role: node.role().into(),
        term: m.current_term,
        leader: m.current_leader,
        commit_index: node.committed.load(Ordering::Relaxed),
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        log_entries: node.log.file_entries(),
        revision,
        keys: keys as u64,
        leases: leases as u64,
        uptime_s: node.started.elapsed().as_secs(),
    })
}

pub async fn metrics(State(node): State<Shared>) -> Response {
    crate::api::metrics::render(&node).into_response()
}
