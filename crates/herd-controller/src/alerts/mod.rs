//! Alerts (SPEC §5), evaluated by the controller that leads — so exactly one evaluator in
//! the cluster — every two seconds: read the rules (`herd/alerts/rules`), the cluster-wide
//! call aggregates and the deployments, decide (`evaluate`, `state`: pure), keep firing
//! alerts under `herd/alerts/active/` with fenced writes, and notify (`notify`).

pub mod evaluate;
pub mod notify;
pub mod state;

use herd_api::wire::alerts::{active_key, ACTIVE, RULES_KEY};
use herd_api::wire::{
    keys, AlertRecord, DeploymentRecord, InstanceReport, Kv, NodeReport, TelemetryDump, TxnAnswer,
};
use herd_api::{ApiError, RegistryClient};
use herd_config::AlertKind;
use herd_registry_core::{Compare, CompareOp, CompareTarget, Op, Txn};
use http::Method;
use state::{Change, Tracker};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;

const EVALUATE_EVERY: Duration = Duration::from_secs(2);

/// The fence of the leading controller: its election key and that key's create revision.
pub struct Fence {
    pub key: String,
    pub token: u64,
}

/// Evaluate while leading; returns when leadership is lost (or the fence refuses a write).
pub async fn run(client: RegistryClient, fence: Fence, mut lost: watch::Receiver<bool>) {
    let notifier = notify::Notifier::start();
    let mut tracker = Tracker::default();
    let mut known_nodes = BTreeSet::new();
    match crate::prefix::<AlertRecord>(&client, ACTIVE).await {
        Ok(firing) => {
            known_nodes.extend(
                firing
                    .iter()
                    .filter(|a| a.kind == AlertKind::NodeLost.as_str())
                    .map(|a| a.subject.clone()),
            );
            tracker.adopt(firing);
        }
        Err(e) => tracing::debug!(error = %e, "alerts: cannot read the firing alerts yet"),
    }
    let mut last_rules_error = String::new();
    loop {
        if *lost.borrow() {
            return;
        }
        match pass(&client, &fence, &notifier, &mut tracker, &mut known_nodes).await {
            Ok(true) => last_rules_error.clear(),
            Ok(false) => return,
            Err(e) => {
                let e = e.to_string();
                if e != last_rules_error {
                    tracing::warn!(error = %e, "alerts: this pass failed; trying again");
                    last_rules_error = e;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVALUATE_EVERY) => {}
            _ = lost.changed() => {}
        }
    }
}

/// One evaluation; Ok(false) when the fence refused (another controller leads).
async fn pass(
    client: &RegistryClient,
    fence: &Fence,
    notifier: &notify::Notifier,
    tracker: &mut Tracker,
    known_nodes: &mut BTreeSet<String>,
) -> Result<bool, ApiError> {
    let rules = match client
        .get::<Kv>(Method::GET, &format!("/v1/kv/{RULES_KEY}"))
        .await
    {
        Ok(kv) => String::from_utf8(kv.value)
            .ok()
            .and_then(|t| herd_config::parse_alert_rules(&t, "alert rules").ok()),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e),
    };
    let (webhook, rules) = rules.map_or((None, Vec::new()), |r| (r.webhook, r.rules));
    let windows: BTreeSet<u64> = rules
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                AlertKind::ErrorRatio | AlertKind::P99 | AlertKind::DependencyCycle
            )
        })
        .map(|r| r.window.as_secs().max(1))
        .collect();
    let mut calls = BTreeMap::new();
    for w in windows {
        let d: TelemetryDump = client
            .get(
                Method::GET,
                &format!("/v1/telemetry/aggregates?window={w}s"),
            )
            .await?;
        calls.insert(w, d);
    }
    let deployments: Vec<DeploymentRecord> = crate::prefix(client, keys::DEPLOYMENTS).await?;
    let instances: Vec<InstanceReport> = crate::prefix(client, keys::INSTANCES).await?;
    let nodes: Vec<NodeReport> = crate::prefix(client, keys::NODES).await?;
    known_nodes.extend(nodes.iter().map(|n| n.name.clone()));
    let seen = evaluate::observe(
        &rules,
        &evaluate::Inputs {
            calls: &calls,
            deployments: &deployments,
            instances: &instances,
            nodes: &nodes,
            known_nodes,
        },
    );
    let changes = tracker.step(crate::now_ms(), &rules, seen);
    if changes.is_empty() {
        return Ok(true);
    }
    let mut ops = Vec::new();
    for c in &changes {
        match c {
            Change::Fire(a) => ops.push(Op::Put {
                key: active_key(&a.rule, &a.subject),
                value: serde_json::to_vec(a).unwrap_or_default(),
                lease: None,
            }),
            Change::Resolve(a) => {
                if a.kind == AlertKind::NodeLost.as_str()
                    && !nodes.iter().any(|n| n.name == a.subject)
                {
                    // Its rule is gone while the node is still away: forget the node, so a
                    // rule added later does not report an old loss.
                    known_nodes.remove(&a.subject);
                }
                ops.push(Op::Delete {
                    key: active_key(&a.rule, &a.subject),
                    prefix: false,
                })
            }
        }
    }
    let txn = Txn {
        compares: vec![Compare {
            key: fence.key.clone(),
            target: CompareTarget::CreateRevision(fence.token),
            op: CompareOp::Eq,
        }],
        success: ops,
        failure: vec![],
    };
    let answer: TxnAnswer = client.send(Method::POST, "/v1/txn", &txn).await?;
    if !answer.succeeded {
        tracing::warn!("alerts: a write was refused by the fence: another controller leads");
        return Ok(false);
    }
    for c in &changes {
        match c {
            Change::Fire(a) | Change::Resolve(a) => notifier.send(webhook.as_deref(), a),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
