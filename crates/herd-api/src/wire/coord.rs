//! Locks and leader elections.

use crate::wire::Kv;
use herd_registry_core::id64;
use serde::{Deserialize, Serialize};

/// `POST /v1/lock/<name>`; an empty body takes the defaults (10 s TTL, 30 s wait).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<f64>,
}

/// The lock is held: by `lease`, with a fencing token larger than every earlier holder's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockAnswer {
    pub name: String,
    pub fencing_token: u64,
    #[serde(with = "id64")]
    pub lease: u64,
    pub key: String,
}

/// `DELETE /v1/lock/<name>?lease=<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockReleaseAnswer {
    pub released: String,
    pub revision: u64,
}

/// `GET /v1/lock/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStatus {
    pub name: String,
    pub owner: Option<String>,
    pub fencing_token: Option<u64>,
    pub waiters: Vec<Kv>,
}

/// `POST /v1/election/<name>/campaign`: either `lease` (one the caller keeps alive) or
/// `ttl_s` (the registry grants and renews one while the call waits).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub value: String,
    #[serde(
        default,
        with = "id64::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
}

/// An election's leader: its key, its proclaimed value (text), its lease, and the revision
/// it became leader at (increasing across leaders: a fencing token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub key: String,
    pub value: String,
    #[serde(with = "id64::option", default)]
    pub lease: Option<u64>,
    pub revision: u64,
}

impl From<&herd_registry_core::KeyValue> for Leader {
    fn from(kv: &herd_registry_core::KeyValue) -> Leader {
        Leader {
            key: kv.key.clone(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            lease: kv.lease,
            revision: kv.create_revision,
        }
    }
}

/// `GET /v1/election/<name>` and a won campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderAnswer {
    pub leader: Leader,
}

/// One line of `GET /v1/election/<name>?watch`: the leader now, or null when there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderLine {
    pub leader: Option<Leader>,
}

/// `POST /v1/election/<name>/proclaim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProclaimRequest {
    #[serde(with = "id64")]
    pub lease: u64,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProclaimAnswer {
    pub leader: Leader,
    pub revision: u64,
}

/// `DELETE /v1/election/<name>/<lease>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResignAnswer {
    pub resigned: String,
    #[serde(with = "id64")]
    pub lease: u64,
    pub revision: u64,
}
