//! `POST /v1/deployments/<name>/rollback`: the service back to the version it had at an
//! earlier cluster revision, and with it every dependent whose `depends_on` its older
//! version would break (herd-agent-core's plan), each to its own version of that revision,
//! each run from the manifest that version was applied with.

use super::{commit, current, entry, range, records, Shared};
use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{internal, ok, ApiError, ApiResult};
use crate::raft::node::now_ms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herd_agent_core::depends::plan_rollback;
use herd_agent_core::parse_manifest;
use herd_agent_core::revision::Architecture;
use herd_api::wire::{
    keys, DeploymentRecord, RevisionRecord, RollbackAnswer, RollbackRequest, RollbackStep,
};
use std::collections::BTreeMap;

fn manifest_of(
    node: &crate::raft::node::RegistryNode,
    service: &str,
    version: &str,
) -> Option<String> {
    let key = keys::manifest(service, version);
    let (_, kvs) = range(node, &key).ok()?;
    kvs.into_iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| String::from_utf8(kv.value).ok())
}

pub async fn rollback(
    State(node): State<Shared>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let req: RollbackRequest = parse_json(
        &body,
        Empty::AsObject,
        r#"{"to_revision": N (default: the version before this one), "dry_run": false}"#,
    )?;
    node.read_barrier().await?;
    let now = current(&node, &name)?;
    let (_, kvs) = range(&node, keys::REVISIONS)?;
    let revisions: Vec<RevisionRecord> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    let target = match req.to_revision {
        Some(rev) => revisions
            .iter()
            .find(|r| r.revision == rev)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no cluster revision {rev}; `herd history {name}` lists them"),
                )
            })?,
        None => revisions
            .iter()
            .rev()
            .filter(|r| r.revision < now.revision)
            .find(|r| {
                r.services
                    .get(&name)
                    .is_some_and(|s| s.version != now.version)
            })
            .ok_or_else(|| {
                ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "{name} has run no other version before {}; nothing to roll back to",
                        now.version
                    ),
                )
            })?,
    };
    if !target.services.contains_key(&name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{name} did not exist at revision {}; pick a revision from `herd history {name}`",
                target.revision
            ),
        ));
    }
    let (_, dkvs) = range(&node, keys::DEPLOYMENTS)?;
    let deployments = records(&dkvs);
    let mut current_arch = Architecture::default();
    for r in deployments.values() {
        if let Ok(m) = parse_manifest(&r.manifest, &r.name) {
            current_arch
                .services
                .insert(r.name.clone(), entry(&m, r.count));
        }
    }
    let mut target_arch = Architecture {
        revision: target.revision,
        ..Architecture::default()
    };
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for (svc, v) in &target.services {
        let Some(text) = manifest_of(&node, svc, &v.version) else {
            continue;
        };
        if let Ok(m) = parse_manifest(&text, svc) {
            target_arch.services.insert(svc.clone(), entry(&m, v.count));
            texts.insert(svc.clone(), text);
        }
    }
    if !texts.contains_key(&name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "the manifest {name} {} was applied with is not recorded; apply it again with herd apply",
                target.services[&name].version
            ),
        ));
    }
    let plan = plan_rollback(&current_arch, &target_arch, &name).map_err(|v| {
        let list: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        ApiError(
            StatusCode::CONFLICT,
            format!(
                "rolling {name} back to revision {} would leave depends_on broken: {}",
                target.revision,
                list.join("; ")
            ),
        )
    })?;
    let steps: Vec<RollbackStep> = plan
        .steps
        .iter()
        .map(|(s, from, to)| RollbackStep {
            service: s.clone(),
            from: from.to_string(),
            to: to.to_string(),
        })
        .collect();
    if req.dry_run || steps.is_empty() {
        return ok(RollbackAnswer {
            revision: 0,
            to_revision: target.revision,
            steps,
            dry_run: req.dry_run,
        });
    }
    let mut changes = Vec::new();
    for step in &steps {
        let (Some(text), Some(v)) = (texts.get(&step.service), target.services.get(&step.service))
        else {
            return Err(internal(format!(
                "no manifest for {} in the plan",
                step.service
            )));
        };
        let generation = deployments.get(&step.service).map_or(0, |d| d.generation);
        changes.push((
            step.service.clone(),
            Some(DeploymentRecord {
                name: step.service.clone(),
                version: v.version.clone(),
                manifest: text.clone(),
                count: v.count,
                revision: 0,
                applied_ms: now_ms(),
                generation,
                // A rollback goes back to something that ran: no canary stage.
                promoted: true,
                cause: "rollback".into(),
            }),
        ));
    }
    let what: Vec<String> = steps
        .iter()
        .map(|s| format!("{} {} -> {}", s.service, s.from, s.to))
        .collect();
    let revision = commit(
        &node,
        changes,
        format!(
            "rollback {name} to revision {}: {}",
            target.revision,
            what.join(", ")
        ),
        None,
    )
    .await?;
    ok(RollbackAnswer {
        revision,
        to_revision: target.revision,
        steps,
        dry_run: false,
    })
}
