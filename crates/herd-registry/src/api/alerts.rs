//! `/v1/alerts`: store the alert rules (checked whole first, like a gateway config), and
//! list the alerts firing now. The controller evaluates the rules and keeps the alerts.

use crate::api::body::RequestBody;
use crate::api::error::{bad, command_error, internal, ok, ApiError, ApiResult};
use crate::raft::node::RegistryNode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herd_api::wire::alerts::{ACTIVE, RULES_KEY};
use herd_api::wire::{AlertList, AlertRecord, RulesAnswer};
use herd_registry_core::Command;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

pub async fn put_rules(State(node): State<Shared>, RequestBody(body): RequestBody) -> ApiResult {
    let text = std::str::from_utf8(&body).map_err(|_| bad("the rules must be UTF-8 TOML text"))?;
    let rules =
        herd_config::parse_alert_rules(text, "alert rules").map_err(|e| bad(e.to_string()))?;
    let resp = node
        .write(Command::Put {
            key: RULES_KEY.into(),
            value: body.to_vec(),
            lease: None,
            cas_mod_revision: None,
        })
        .await?;
    if let Some(e) = resp.error() {
        return Err(command_error(e));
    }
    ok(RulesAnswer {
        rules: rules.rules.len() as u64,
        revision: resp.revision,
    })
}

pub async fn get_rules(State(node): State<Shared>) -> ApiResult {
    node.read_barrier().await?;
    let applied = node
        .state
        .applied
        .read()
        .map_err(|_| internal("state lock poisoned"))?;
    match applied.store.get(RULES_KEY) {
        Some(kv) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/toml")],
            kv.value,
        )
            .into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no alert rules; store some with PUT /v1/alerts/rules (herd alerts apply -f FILE)"
                .into(),
        )),
    }
}

pub async fn list(State(node): State<Shared>) -> ApiResult {
    node.read_barrier().await?;
    let applied = node
        .state
        .applied
        .read()
        .map_err(|_| internal("state lock poisoned"))?;
    let rules = applied
        .store
        .get(RULES_KEY)
        .and_then(|kv| String::from_utf8(kv.value).ok())
        .and_then(|t| herd_config::parse_alert_rules(&t, "alert rules").ok())
        .map_or(0, |r| r.rules.len() as u64);
    let mut alerts: Vec<AlertRecord> = applied
        .store
        .range(ACTIVE, 0)
        .0
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    alerts
        .sort_by(|a, b| (a.fired_ms, &a.rule, &a.subject).cmp(&(b.fired_ms, &b.rule, &b.subject)));
    ok(AlertList { alerts, rules })
}
