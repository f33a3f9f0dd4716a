//! The service catalog.

use herd_registry_core::catalog::Instance;
use herd_registry_core::id64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `PUT /v1/services/<service>/instances/<id>`. Every field but `address` and `port` may
/// be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub address: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<f64>,
    /// Reuse a lease the caller already keeps alive (several instances, one lease).
    #[serde(
        default,
        with = "id64::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// The answer to a registration: the lease it lives on and where to renew it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterAnswer {
    pub revision: u64,
    #[serde(with = "id64")]
    pub lease: u64,
    pub ttl_s: f64,
    pub keepalive: String,
}

/// `GET /v1/services/<service>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceList {
    pub service: String,
    pub revision: u64,
    pub instances: Vec<Instance>,
}

/// `GET /v1/services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    pub revision: u64,
    pub services: Vec<String>,
}
