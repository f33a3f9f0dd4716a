//! `/v1/txn`: compares, then the success or the failure ops, as one revision.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{command_error, internal, ok, ApiResult};
use crate::api::kv::kv_json;
use crate::raft::node::RegistryNode;
use axum::extract::State;
use herd_registry_core::{Command, Outcome, Txn};
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

pub async fn txn(State(node): State<Shared>, RequestBody(body): RequestBody) -> ApiResult {
    let txn: Txn = parse_json(
        &body,
        Empty::Refuse,
        r#"{"compares":[{"key","target":{"version":N}|{"value":"<base64>"}|{"mod_revision":N}|{"create_revision":N}|{"exists":bool},"op":"eq|not_eq|less|greater"}],"success":[ops],"failure":[ops]}"#,
    )?;
    let resp = node.write(Command::Txn(txn)).await?;
    match resp.outcome {
        Outcome::Txn { succeeded, results } => {
            let results: Vec<Value> = results
                .iter()
                .map(|r| match r {
                    herd_registry_core::OpResult::Put { prev_kv } => {
                        json!({"put": {"prev_kv": prev_kv.as_ref().map(kv_json)}})
                    }
                    herd_registry_core::OpResult::Delete { deleted, .. } => {
                        json!({"delete": {"deleted": deleted}})
                    }
                    herd_registry_core::OpResult::Get { kvs, more } => {
                        json!({"get": {"kvs": kvs.iter().map(kv_json).collect::<Vec<_>>(), "more": more}})
                    }
                })
                .collect();
            ok(json!({"revision": resp.revision, "succeeded": succeeded, "results": results}))
        }
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(internal(format!("unexpected answer {other:?}"))),
    }
}
