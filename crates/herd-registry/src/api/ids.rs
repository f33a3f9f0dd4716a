//! `POST /v1/ids`: cluster-unique 64-bit IDs, from this node's snowflake generator.

use crate::api::error::{bad, ApiError, ApiResult};
use crate::raft::ids::IdError;
use crate::raft::node::{now_ms, RegistryNode};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herd_api::wire::IdsAnswer;
use std::collections::HashMap;
use std::sync::Arc;

const MAX_IDS_PER_CALL: u64 = 10_000;

pub async fn ids(
    State(node): State<Arc<RegistryNode>>,
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
    let out = node.ids.take(count, now_ms()).map_err(|e| {
        let status = match e {
            IdError::Poisoned => StatusCode::INTERNAL_SERVER_ERROR,
            IdError::NodeTooLarge(_) | IdError::Clock(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    })?;
    Ok(axum::Json(IdsAnswer {
        ids: out,
        node: node.id,
    })
    .into_response())
}
