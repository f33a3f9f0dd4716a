//! What the agent writes to the registry about an instance: its report (on the node's
//! lease, so it vanishes with the agent) and its catalog entry while it takes traffic.

use herd_api::wire::{keys, InstanceReport, RegisterRequest};
use herd_api::{ApiError, RegistryClient};
use http::Method;

pub async fn put(client: &RegistryClient, lease: u64, r: &InstanceReport) -> Result<(), ApiError> {
    let key = keys::instance(&r.service, &r.id);
    let body = serde_json::to_vec(r).unwrap_or_default();
    client
        .call(Method::PUT, &format!("/v1/kv/{key}?lease={lease}"), body)
        .await
        .map(|_| ())
}

pub async fn delete(client: &RegistryClient, service: &str, id: &str) {
    let key = keys::instance(service, id);
    let _ = client
        .call(Method::DELETE, &format!("/v1/kv/{key}"), Vec::new())
        .await;
}

/// Put the instance in the catalog (the gateways send it traffic from now on).
pub async fn register(
    client: &RegistryClient,
    lease: u64,
    r: &InstanceReport,
    address: &str,
    port: u16,
) -> Result<(), ApiError> {
    let req = RegisterRequest {
        address: address.to_string(),
        port,
        lease: Some(lease),
        version: r.version.clone(),
        meta: [("node".to_string(), r.node.clone())].into(),
        ..RegisterRequest::default()
    };
    client
        .call(
            Method::PUT,
            &format!("/v1/services/{}/instances/{}", r.service, r.id),
            serde_json::to_vec(&req).unwrap_or_default(),
        )
        .await
        .map(|_| ())
}

/// Take it out of the catalog; gone already is fine.
pub async fn deregister(client: &RegistryClient, service: &str, id: &str) {
    let _ = client
        .call(
            Method::DELETE,
            &format!("/v1/services/{service}/instances/{id}"),
            Vec::new(),
        )
        .await;
}
