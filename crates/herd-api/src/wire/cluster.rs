//! Cluster ids and membership.

use herd_registry_core::id64;
use serde::{Deserialize, Serialize};

/// `POST /v1/ids?count=N`: cluster-unique ids and the node that made them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdsAnswer {
    #[serde(with = "id64::list")]
    pub ids: Vec<u64>,
    pub node: u64,
}

/// One member of `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    /// `leader`, `follower` or `learner`.
    pub role: String,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterAnswer {
    pub leader: Option<u64>,
    pub members: Vec<Member>,
}

/// `POST /v1/cluster/members`: a node that is running with `--join` (or about to) and its
/// peer address; the id is allocated when left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    #[serde(default)]
    pub id: Option<u64>,
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub id: u64,
    pub addr: String,
}

/// `DELETE /v1/cluster/members/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAnswer {
    pub removed: u64,
}

/// `GET /status` of a registry node: its place in the Raft group and its store's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `server`: what kind of herd process answers.
    pub role_name: String,
    pub id: u64,
    pub addr: String,
    pub process_id: String,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub log_entries: u64,
    pub revision: u64,
    pub keys: u64,
    pub leases: u64,
    pub uptime_s: u64,
}
