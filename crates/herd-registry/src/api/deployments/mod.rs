//! `/v1/deployments`, `/v1/nodes`, `/v1/revisions`: cluster management's state as the
//! operator changes and reads it. An apply, scale or stop validates the manifest (the same
//! rules as `herd apply --dry-run`), checks every `depends_on` range across the services,
//! and writes the deployment and a new cluster revision in one transaction. Acting on it is
//! the controller's job (it watches these keys); this module only records and reports.

use crate::api::body::RequestBody;
use crate::api::error::{bad, command_error, internal, ok, ApiError, ApiResult};
use crate::api::query::{flag, read_barrier, Params};
use crate::raft::node::{now_ms, RegistryNode};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use herd_agent_core::depends::violations;
use herd_agent_core::revision::ServiceEntry;
use herd_agent_core::{parse_manifest, Manifest};
use herd_api::wire::{
    keys, ChangeAnswer, DeploymentRecord, RevisionRecord, ScaleRequest, ServiceVersion,
};
use herd_registry_core::{Command, Compare, CompareOp, CompareTarget, KeyValue, Op, Outcome, Txn};
use std::collections::BTreeMap;
use std::sync::Arc;

pub mod read;
pub mod rollback;

pub(super) type Shared = Arc<RegistryNode>;

/// The counter of cluster revisions (its value is the last revision, in decimal).
const REVISION_COUNTER: &str = "herd/revision";

pub(super) fn range(node: &RegistryNode, prefix: &str) -> Result<(u64, Vec<KeyValue>), ApiError> {
    let a = node
        .state
        .applied
        .read()
        .map_err(|_| internal("state lock poisoned"))?;
    Ok((a.store.revision(), a.store.range(prefix, 0).0))
}

pub(super) fn records(kvs: &[KeyValue]) -> BTreeMap<String, DeploymentRecord> {
    kvs.iter()
        .filter_map(|kv| serde_json::from_slice::<DeploymentRecord>(&kv.value).ok())
        .map(|r| (r.name.clone(), r))
        .collect()
}

pub(super) fn entry(m: &Manifest, count: u32) -> ServiceEntry {
    ServiceEntry {
        version: m.version.clone(),
        count,
        depends_on: m.depends_on.clone(),
    }
}

/// Every service's entry, for the `depends_on` check.
fn architecture(records: &BTreeMap<String, DeploymentRecord>) -> BTreeMap<String, ServiceEntry> {
    records
        .values()
        .filter_map(|r| {
            let m = parse_manifest(&r.manifest, &r.name).ok()?;
            Some((r.name.clone(), entry(&m, r.count)))
        })
        .collect()
}

/// Write the `changes` (a record, or None: remove that service), each applied version's
/// manifest, and a new cluster revision, atomically; retried when another change won the
/// race for the revision counter.
/// `?fence_key=K&fence_revision=R`: write only while key K still has create revision R —
/// the controller's election key and its token, so a deposed controller's revert or
/// autoscale cannot land (the same fence as its assignments).
pub(super) fn fence_of(
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<Fence>, ApiError> {
    match (q.get("fence_key"), q.get("fence_revision")) {
        (None, None) => Ok(None),
        (Some(key), Some(rev)) => Ok(Some(Fence {
            key: key.clone(),
            revision: rev.parse().map_err(|_| {
                bad(format!(
                    "?fence_revision={rev} is not a revision (a non-negative integer)"
                ))
            })?,
        })),
        _ => Err(bad("?fence_key and ?fence_revision go together")),
    }
}

pub(super) struct Fence {
    pub key: String,
    pub revision: u64,
}

pub(super) async fn commit(
    node: &RegistryNode,
    changes: Vec<(String, Option<DeploymentRecord>)>,
    what: String,
    fence: Option<&Fence>,
) -> Result<u64, ApiError> {
    for _ in 0..8 {
        read_barrier_all(node).await?;
        let (counter, deployments) = {
            let a = node
                .state
                .applied
                .read()
                .map_err(|_| internal("state lock poisoned"))?;
            (
                a.store.get(REVISION_COUNTER),
                records(&a.store.range(keys::DEPLOYMENTS, 0).0),
            )
        };
        let last: u64 = counter
            .as_ref()
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())
            .unwrap_or(0);
        let rev = last + 1;
        let mut services = deployments.clone();
        let mut ops = vec![Op::Put {
            key: REVISION_COUNTER.into(),
            value: rev.to_string().into_bytes(),
            lease: None,
        }];
        for (name, change) in &changes {
            match change {
                Some(r) => {
                    let mut r = r.clone();
                    r.revision = rev;
                    ops.push(Op::Put {
                        key: keys::deployment(name),
                        value: serde_json::to_vec(&r).map_err(|e| internal(e.to_string()))?,
                        lease: None,
                    });
                    ops.push(Op::Put {
                        key: keys::manifest(name, &r.version),
                        value: r.manifest.clone().into_bytes(),
                        lease: None,
                    });
                    services.insert(name.to_string(), r);
                }
                None => {
                    ops.push(Op::Delete {
                        key: keys::deployment(name),
                        prefix: false,
                    });
                    services.remove(name);
                }
            }
        }
        let record = RevisionRecord {
            revision: rev,
            at_ms: now_ms(),
            change: what.clone(),
            services: services
                .values()
                .map(|r| {
                    (
                        r.name.clone(),
                        ServiceVersion {
                            version: r.version.clone(),
                            count: r.count,
                        },
                    )
                })
                .collect(),
        };
        ops.push(Op::Put {
            key: keys::revision(rev),
            value: serde_json::to_vec(&record).map_err(|e| internal(e.to_string()))?,
            lease: None,
        });
        let mut compares = vec![Compare {
            key: REVISION_COUNTER.into(),
            target: CompareTarget::ModRevision(counter.map_or(0, |kv| kv.mod_revision)),
            op: CompareOp::Eq,
        }];
        if let Some(f) = fence {
            compares.push(Compare {
                key: f.key.clone(),
                target: CompareTarget::CreateRevision(f.revision),
                op: CompareOp::Eq,
            });
        }
        let txn = Txn {
            compares,
            success: ops,
            failure: vec![],
        };
        let resp = node.write(Command::Txn(txn)).await?;
        match resp.outcome {
            Outcome::Txn {
                succeeded: true, ..
            } => return Ok(rev),
            Outcome::Txn { .. } => {
                if let Some(f) = fence {
                    let held = {
                        let a = node
                            .state
                            .applied
                            .read()
                            .map_err(|_| internal("state lock poisoned"))?;
                        a.store.get(&f.key).map(|kv| kv.create_revision)
                    };
                    if held != Some(f.revision) {
                        return Err(ApiError(
                            StatusCode::CONFLICT,
                            format!(
                                "fenced: {} no longer has create revision {} (the caller no longer leads); nothing changed",
                                f.key, f.revision
                            ),
                        ));
                    }
                }
                continue;
            }
            Outcome::Rejected(e) => return Err(command_error(&e)),
            other => return Err(internal(format!("unexpected answer {other:?}"))),
        }
    }
    Err(ApiError(
        StatusCode::CONFLICT,
        "other changes kept winning the race for the next cluster revision; retry".into(),
    ))
}

async fn read_barrier_all(node: &RegistryNode) -> Result<(), ApiError> {
    Ok(node.read_barrier().await?)
}

fn check_depends(
    deployments: &BTreeMap<String, DeploymentRecord>,
    name: &str,
    next: Option<ServiceEntry>,
) -> Result<(), ApiError> {
    let mut arch = architecture(deployments);
    match next {
        Some(e) => {
            arch.insert(name.to_string(), e);
        }
        None => {
            arch.remove(name);
        }
    }
    let v = violations(&arch);
    if v.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = v.iter().map(|v| v.to_string()).collect();
    Err(ApiError(
        StatusCode::CONFLICT,
        format!(
            "refused: it would break depends_on: {}; change the dependent first, or apply versions that satisfy it",
            list.join("; ")
        ),
    ))
}

/// `PUT /v1/deployments/<name>[?dry_run]`, the manifest as the body: TOML, or JSON with
/// the same keys when the content type says `application/json` (kept as TOML).
pub async fn apply(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Params,
    headers: axum::http::HeaderMap,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let converted;
    let (text, file) = if json {
        converted = herd_agent_core::manifest::json_to_toml(&body, &format!("{name}.json"))
            .map_err(|e| bad(format!("manifest refused:\n{e}")))?;
        (converted.as_str(), format!("{name}.json"))
    } else {
        let text = std::str::from_utf8(&body).map_err(|_| {
            bad("the manifest is not UTF-8 text; send the TOML file as the body, or JSON with Content-Type: application/json")
        })?;
        (text, format!("{name}.toml"))
    };
    let m = parse_manifest(text, &file).map_err(|e| bad(format!("manifest refused:\n{e}")))?;
    if m.name != name {
        return Err(bad(format!(
            "the manifest names service \"{}\" but the path says \"{name}\"; PUT it to /v1/deployments/{}",
            m.name, m.name
        )));
    }
    read_barrier(&node, &q).await?;
    let (_, kvs) = range(&node, keys::DEPLOYMENTS)?;
    let deployments = records(&kvs);
    let count = m.instances.count;
    check_depends(&deployments, &name, Some(entry(&m, count)))?;
    let version = m.version.to_string();
    if flag(&q, "dry_run") {
        return ok(ChangeAnswer {
            name,
            revision: 0,
            version,
            count,
            dry_run: true,
        });
    }
    let record = DeploymentRecord {
        name: name.clone(),
        version: version.clone(),
        manifest: text.to_string(),
        count,
        revision: 0,
        applied_ms: now_ms(),
        generation: 0,
        promoted: false,
        cause: "apply".into(),
    };
    // The controller says why when it applies a revert; an operator's apply is plain.
    let change = match q.get("reason").filter(|r| !r.is_empty()) {
        Some(reason) => format!("apply {name} {version}: {reason}"),
        None => format!("apply {name} {version}"),
    };
    let fence = fence_of(&q)?;
    let revision = commit(
        &node,
        vec![(name.clone(), Some(record))],
        change,
        fence.as_ref(),
    )
    .await?;
    ok(ChangeAnswer {
        name,
        revision,
        version,
        count,
        dry_run: false,
    })
}

pub(super) fn current(node: &RegistryNode, name: &str) -> Result<DeploymentRecord, ApiError> {
    let (_, kvs) = range(node, &keys::deployment(name))?;
    kvs.iter()
        .find(|kv| kv.key == keys::deployment(name))
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no deployment \"{name}\"; apply its manifest first (herd apply -f FILE)"),
            )
        })
}

/// `POST /v1/deployments/<name>/scale {"count": N}`, within the manifest's min..max.
pub async fn scale(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Params,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let fence = fence_of(&q)?;
    let req: ScaleRequest =
        crate::api::body::parse_json(&body, crate::api::body::Empty::Refuse, r#"{"count": N}"#)?;
    node.read_barrier().await?;
    let mut rec = current(&node, &name)?;
    let m = parse_manifest(&rec.manifest, &name).map_err(|e| internal(e.to_string()))?;
    if !(m.instances.min..=m.instances.max).contains(&req.count) {
        return Err(bad(format!(
            "count {} is outside instances.min..max ({}..{}) of {name}; change the manifest's bounds to go further",
            req.count, m.instances.min, m.instances.max
        )));
    }
    rec.count = req.count;
    let what = match &req.reason {
        Some(why) => {
            rec.cause = "autoscale".into();
            format!("autoscale {name} {}: {why}", rec.count)
        }
        None => {
            rec.cause = "scale".into();
            format!("scale {name} {}", rec.count)
        }
    };
    record_fenced(&node, rec, what, fence.as_ref()).await
}

/// `DELETE /v1/deployments/<name>`: stop every instance and forget the service.
pub async fn stop(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult {
    node.read_barrier().await?;
    let rec = current(&node, &name)?;
    let (_, kvs) = range(&node, keys::DEPLOYMENTS)?;
    check_depends(&records(&kvs), &name, None)?;
    let revision = commit(
        &node,
        vec![(name.clone(), None)],
        format!("stop {name}"),
        None,
    )
    .await?;
    ok(ChangeAnswer {
        name,
        revision,
        version: rec.version,
        count: 0,
        dry_run: false,
    })
}

/// Write one service's changed record as a new cluster revision and answer with it.
async fn record(node: &RegistryNode, rec: DeploymentRecord, what: String) -> ApiResult {
    record_fenced(node, rec, what, None).await
}

async fn record_fenced(
    node: &RegistryNode,
    rec: DeploymentRecord,
    what: String,
    fence: Option<&Fence>,
) -> ApiResult {
    let (name, version, count) = (rec.name.clone(), rec.version.clone(), rec.count);
    let revision = commit(node, vec![(name.clone(), Some(rec))], what, fence).await?;
    ok(ChangeAnswer {
        name,
        revision,
        version,
        count,
        dry_run: false,
    })
}

/// `POST /v1/deployments/<name>/promote`: canaries proved themselves; the update goes on.
pub async fn promote(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult {
    node.read_barrier().await?;
    let mut rec = current(&node, &name)?;
    if rec.promoted {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{name} {} is already promoted; nothing waits", rec.version),
        ));
    }
    rec.promoted = true;
    rec.cause = "promote".into();
    let what = format!("promote {name} {}", rec.version);
    record(&node, rec, what).await
}

/// `POST /v1/deployments/<name>/restart`: replace every instance with a fresh one of the
/// same version, by the rolling update's rules (seed 001's graceful restart).
pub async fn restart(State(node): State<Shared>, Path(name): Path<String>) -> ApiResult {
    node.read_barrier().await?;
    let mut rec = current(&node, &name)?;
    rec.generation += 1;
    // The same version again: no canary stage.
    rec.promoted = true;
    rec.cause = "restart".into();
    record(&node, rec, format!("restart {name}")).await
}
