//! `/v1/services`: the service catalog — instances registered on a lease, listed by
//! service. Instances are keys `services/<service>/<id>` holding the instance's JSON.

use crate::api::body::{parse_json, Empty, RequestBody};
use crate::api::error::{bad, internal, ApiError, ApiResult};
use crate::api::lease::{grant, ttl_ms};
use crate::raft::node::RegistryNode;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use herd_api::wire::{
    seconds, DeleteAnswer, InstanceList, RegisterAnswer, RegisterRequest, ServiceList,
};
use herd_registry_core::catalog::{self, Instance};
use herd_registry_core::{Command, Outcome};
use std::collections::HashMap;
use std::sync::Arc;

type Shared = Arc<RegistryNode>;

pub async fn register(
    State(node): State<Shared>,
    Path((service, id)): Path<(String, String)>,
    RequestBody(body): RequestBody,
) -> ApiResult {
    let r: RegisterRequest = parse_json(
        &body,
        Empty::AsObject,
        r#"{"address": "10.0.0.1", "port": 9000, "weight": 1-100, "ttl_s": 10, "zone", "version", "tags": [], "meta": {}}"#,
    )?;
    let weight = r.weight.unwrap_or(1);
    if !(1..=100).contains(&weight) {
        return Err(bad(format!("weight {weight} is out of range; use 1-100")));
    }
    let inst = Instance {
        service,
        id,
        address: r.address,
        port: r.port,
        weight,
        zone: r.zone,
        version: r.version,
        tags: r.tags,
        meta: r.meta,
    };
    inst.validate().map_err(|e| bad(e.to_string()))?;
    let key = inst.key().map_err(|e| bad(e.to_string()))?;
    let ttl = ttl_ms(r.ttl_s.unwrap_or(10.0))?;
    let lease = match r.lease {
        Some(l) => l,
        None => grant(&node, ttl).await?,
    };
    let resp = node
        .write(Command::Put {
            key,
            value: inst.to_value(),
            lease: Some(lease),
            cas_mod_revision: None,
        })
        .await?;
    if let Some(e) = resp.error() {
        return Err(ApiError(StatusCode::NOT_FOUND, e.to_string()));
    }
    Ok(axum::Json(RegisterAnswer {
        revision: resp.revision,
        lease,
        ttl_s: seconds(ttl),
        keepalive: format!("/v1/lease/{lease}/keepalive"),
    })
    .into_response())
}

pub async fn deregister(
    State(node): State<Shared>,
    Path((service, id)): Path<(String, String)>,
) -> ApiResult {
    let key = catalog::instance_key(&service, &id).map_err(|e| bad(e.to_string()))?;
    let resp = node.write(Command::Delete { key, prefix: false }).await?;
    match resp.outcome {
        Outcome::Delete { deleted: 0, .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("service \"{service}\" has no instance \"{id}\""),
        )),
        Outcome::Delete { deleted, .. } => Ok(axum::Json(DeleteAnswer {
            revision: resp.revision,
            deleted,
        })
        .into_response()),
        Outcome::Rejected(e) => Err(bad(e.to_string())),
        other => Err(internal(format!("{other:?}"))),
    }
}

fn serializable(q: &HashMap<String, String>) -> bool {
    q.contains_key("serializable")
}

pub async fn list_instances(
    State(node): State<Shared>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let prefix = catalog::service_prefix(&service).map_err(|e| bad(e.to_string()))?;
    if !serializable(&q) {
        node.read_barrier().await?;
    }
    let (revision, instances) = {
        let a = node
            .state
            .applied
            .read()
            .map_err(|_| internal("state lock poisoned"))?;
        let (kvs, _) = a.store.range(&prefix, 0);
        (a.store.revision(), catalog::parse_instances(&kvs))
    };
    Ok(axum::Json(InstanceList {
        service,
        revision,
        instances,
    })
    .into_response())
}

pub async fn list_services(
    State(node): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    if !serializable(&q) {
        node.read_barrier().await?;
    }
    let (revision, names) = {
        let a = node
            .state
            .applied
            .read()
            .map_err(|_| internal("state lock poisoned"))?;
        let (kvs, _) = a.store.range(catalog::SERVICES_PREFIX, 0);
        (a.store.revision(), catalog::service_names(&kvs))
    };
    Ok(axum::Json(ServiceList {
        revision,
        services: names,
    })
    .into_response())
}

// ------------------------------------------------------------------------ locks
