//! `/v1/txn`: compares, then the success or the failure ops, as one revision.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{command_error, internal, ok, ApiResult};
use crate::raft::node::RegistryNode;
use axum::extract::State;
use herd_api::wire::{TxnAnswer, TxnResult};
use herd_registry_core::{Command, Outcome, Txn};
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
        Outcome::Txn { succeeded, results } => ok(TxnAnswer {
            revision: resp.revision,
            succeeded,
            results: results.iter().map(TxnResult::from).collect(),
        }),
        Outcome::Rejected(e) => Err(command_error(&e)),
        other => Err(internal(format!("unexpected answer {other:?}"))),
    }
}
