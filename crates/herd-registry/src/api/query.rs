//! Query parameters shared by the read endpoints: flags, numbers, and the read barrier
//! that `?serializable` skips.

use crate::api::error::{bad, ApiError};
use crate::raft::node::RegistryNode;
use axum::extract::Query;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

pub type Params = Query<HashMap<String, String>>;

pub fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

pub fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("?{name}={v} is not a non-negative integer"))),
    }
}

pub async fn read_barrier(
    node: &RegistryNode,
    q: &HashMap<String, String>,
) -> Result<(), ApiError> {
    if flag(q, "serializable") {
        node.counters.reads.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    Ok(node.read_barrier().await?)
}
