//! Leases: grant, read, keep alive, revoke.

use herd_registry_core::id64;
use serde::{Deserialize, Serialize};

/// `POST /v1/lease`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrantRequest {
    pub ttl_s: f64,
}

/// The answer to a grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    #[serde(with = "id64")]
    pub id: u64,
    pub ttl_s: f64,
    pub revision: u64,
}

/// `GET /v1/lease/<id>`: the lease and the keys attached to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    #[serde(with = "id64")]
    pub id: u64,
    pub ttl_s: f64,
    pub keys: Vec<String>,
}

/// `POST /v1/lease/<id>/keepalive`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeepAliveAnswer {
    #[serde(with = "id64")]
    pub id: u64,
    pub ttl_s: f64,
}

/// `DELETE /v1/lease/<id>`: the revision of the revoke and the keys it deleted.
pub type RevokeAnswer = crate::wire::DeleteAnswer;
