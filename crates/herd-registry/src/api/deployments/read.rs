//! Reading cluster management's state: a deployment with its instances and its state,
//! every deployment, the live nodes, the cluster revisions and a service's history.

use super::{current, range, records, Shared};
use crate::api::error::{bad, ok, ApiError, ApiResult};
use crate::api::query::{read_barrier, Params};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use herd_api::wire::{
    keys, DeploymentList, DeploymentRecord, DeploymentStatus, InstanceReport, NodeList, NodeReport,
    RevisionRecord, ServiceVersion,
};
use herd_registry_core::KeyValue;

/// A service's state from its instances: what an operator wants to see first.
pub fn service_state(rec: &DeploymentRecord, instances: &[InstanceReport]) -> String {
    let running = instances.iter().filter(|i| i.state == "Run").count() as u32;
    let settled = running == rec.count && instances.len() as u32 == rec.count;
    let mixed = instances.iter().any(|i| i.version != rec.version);
    let state = if instances.iter().any(|i| i.state == "Failed") {
        "Failed"
    } else if mixed && rec.cause == "rollback" {
        "Rollback"
    } else if mixed || (rec.cause == "restart" && !settled) {
        "Update"
    } else if settled {
        "Run"
    } else if running == 0 && rec.count > 0 {
        "Provision"
    } else {
        "Scale"
    };
    state.to_string()
}

fn status_of(rec: DeploymentRecord, kvs: &[KeyValue]) -> DeploymentStatus {
    let prefix = keys::instances_of(&rec.name);
    let mut instances: Vec<InstanceReport> = kvs
        .iter()
        .filter(|kv| kv.key.starts_with(&prefix))
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    instances.sort_by(|a: &InstanceReport, b| a.id.cmp(&b.id));
    DeploymentStatus {
        state: service_state(&rec, &instances),
        name: rec.name,
        version: rec.version,
        revision: rec.revision,
        count: rec.count,
        instances,
    }
}

/// `GET /v1/deployments/<name>`.
pub async fn get(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    read_barrier(&node, &q).await?;
    let rec = current(&node, &name)?;
    let (_, kvs) = range(&node, &keys::instances_of(&name))?;
    ok(status_of(rec, &kvs))
}

/// `GET /v1/deployments`.
pub async fn list(State(node): State<Shared>, Query(q): Params) -> ApiResult {
    read_barrier(&node, &q).await?;
    let (revision, kvs) = range(&node, keys::DEPLOYMENTS)?;
    let (_, inst) = range(&node, keys::INSTANCES)?;
    let deployments = records(&kvs)
        .into_values()
        .map(|r| status_of(r, &inst))
        .collect();
    ok(DeploymentList {
        revision,
        deployments,
    })
}

/// `GET /v1/nodes`: the agents alive now (their keys live on their leases).
pub async fn nodes(State(node): State<Shared>, Query(q): Params) -> ApiResult {
    read_barrier(&node, &q).await?;
    let (_, kvs) = range(&node, keys::NODES)?;
    let nodes = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<NodeReport>(&kv.value).ok())
        .collect();
    ok(NodeList { nodes })
}

/// `GET /v1/revisions`: every cluster revision, oldest first.
pub async fn revisions(State(node): State<Shared>, Query(q): Params) -> ApiResult {
    read_barrier(&node, &q).await?;
    let (_, kvs) = range(&node, keys::REVISIONS)?;
    let list: Vec<RevisionRecord> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    ok(list)
}

/// `GET /v1/revisions/<rev>`.
pub async fn revision(
    State(node): State<Shared>,
    Path(rev): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let rev: u64 = rev
        .parse()
        .map_err(|_| bad(format!("revision \"{rev}\" is not a number")))?;
    read_barrier(&node, &q).await?;
    let (_, kvs) = range(&node, &keys::revision(rev))?;
    match kvs
        .first()
        .and_then(|kv| serde_json::from_slice::<RevisionRecord>(&kv.value).ok())
    {
        Some(r) => ok(r),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no cluster revision {rev}; GET /v1/revisions lists them"),
        )),
    }
}

/// `GET /v1/deployments/<name>/history`: the revisions that changed this service.
pub async fn history(
    State(node): State<Shared>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    read_barrier(&node, &q).await?;
    let (_, kvs) = range(&node, keys::REVISIONS)?;
    let mut last: Option<ServiceVersion> = None;
    let mut out = Vec::new();
    for r in kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<RevisionRecord>(&kv.value).ok())
    {
        let now = r.services.get(&name).cloned();
        if now != last {
            out.push(r);
        }
        last = now;
    }
    if out.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("service \"{name}\" has never been applied"),
        ));
    }
    ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: &str, count: u32, cause: &str) -> DeploymentRecord {
        DeploymentRecord {
            name: "web".into(),
            version: version.into(),
            manifest: String::new(),
            count,
            revision: 1,
            applied_ms: 0,
            generation: 0,
            promoted: true,
            cause: cause.into(),
        }
    }

    fn inst(version: &str, state: &str) -> InstanceReport {
        InstanceReport {
            id: format!("web-{version}-{state}"),
            service: "web".into(),
            node: "a".into(),
            version: version.into(),
            state: state.into(),
            since_ms: 0,
            pid: None,
            ports: Default::default(),
            port: None,
            restarts: 0,
            health: "unknown".into(),
            message: String::new(),
            cpu_percent: None,
        }
    }

    #[test]
    fn a_services_state_follows_its_instances_and_what_changed_it() {
        let cases = [
            (
                rec("1.0.0", 2, "apply"),
                vec![inst("1.0.0", "Run"), inst("1.0.0", "Run")],
                "Run",
            ),
            (
                rec("1.0.0", 2, "apply"),
                vec![inst("1.0.0", "Ready")],
                "Provision",
            ),
            (rec("1.0.0", 2, "apply"), vec![], "Provision"),
            (
                rec("1.0.0", 3, "scale"),
                vec![inst("1.0.0", "Run"), inst("1.0.0", "Scale")],
                "Scale",
            ),
            (
                rec("2.0.0", 1, "apply"),
                vec![inst("1.0.0", "Run"), inst("2.0.0", "Update")],
                "Update",
            ),
            (
                rec("1.0.0", 1, "rollback"),
                vec![inst("2.0.0", "Run"), inst("1.0.0", "Rollback")],
                "Rollback",
            ),
            (
                rec("1.0.0", 1, "restart"),
                vec![inst("1.0.0", "Run"), inst("1.0.0", "Update")],
                "Update",
            ),
            (
                rec("1.0.0", 2, "apply"),
                vec![inst("1.0.0", "Run"), inst("1.0.0", "Failed")],
                "Failed",
            ),
            (rec("1.0.0", 0, "scale"), vec![], "Run"),
        ];
        for (r, list, want) in cases {
            assert_eq!(
                service_state(&r, &list),
                want,
                "{} {:?}",
                r.cause,
                list.iter().map(|i| &i.state).collect::<Vec<_>>()
            );
        }
    }
}
