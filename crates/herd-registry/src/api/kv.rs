//! `/v1/kv/`: get, range, put (with lease and compare-and-swap), delete; and the JSON shape
//! of a key and of an event that watches share.

use crate::api::body::RequestBody;
use crate::api::error::{bad, command_error, internal, ok, ApiError, ApiResult};
use crate::api::query::{flag, number, read_barrier, Params};
use crate::raft::node::RegistryNode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herd_api::wire::{DeleteAnswer, ErrorBody, Kv, KvRange, PutAnswer};
use herd_registry_core::{Command, CommandError, Outcome, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

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

pub async fn kv_get(
    State(node): State<Shared>,
    Path(key): Path<String>,
    Query(q): Params,
) -> ApiResult {
    read_barrier(&node, &q).await?;
    let applied = node
        .state
        .applied
        .read()
        .map_err(|_| internal("state lock poisoned"))?;
    if flag(&q, "prefix") {
        let limit = number(&q, "limit")?.unwrap_or(0) as usize;
        let (kvs, more) = applied.store.range(&key, limit);
        return ok(KvRange {
            revision: applied.store.revision(),
            kvs: kvs.iter().map(Kv::from).collect(),
            more,
        });
    }
    check_key(&key)?;
    match applied.store.get(&key) {
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("key \"{key}\" not found"),
        )),
        Some(kv) if flag(&q, "raw") => Ok(kv.value.into_response()),
        Some(kv) => ok(Kv::from(&kv)),
    }
}

/// `/v1/kv/?prefix` names the empty prefix: every key.
pub async fn kv_get_root(node: State<Shared>, q: Params) -> ApiResult {
    kv_get(node, Path(String::new()), q).await
}

pub async fn kv_delete_root(node: State<Shared>, q: Params) -> ApiResult {
    kv_delete(node, Path(String::new()), q).await
}

pub async fn kv_put(
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
                axum::Json(ErrorBody {
                    error: e.to_string(),
                    mod_revision: Some(*current_mod_revision),
                }),
            )
                .into_response();
        }
        return Ok(err);
    }
    ok(PutAnswer {
        revision: resp.revision,
    })
}

pub async fn kv_delete(
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
        Outcome::Delete { deleted, .. } => ok(DeleteAnswer {
            revision: resp.revision,
            deleted: *deleted,
        }),
        Outcome::Rejected(e) => Err(command_error(e)),
        other => Err(internal(format!("unexpected answer {other:?}"))),
    }
}
