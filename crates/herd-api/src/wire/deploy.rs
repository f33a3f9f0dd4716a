//! Cluster management on the wire: deployments (a service's manifest and the instances
//! that run it), agents' node reports, the controller's assignments, and the cluster's
//! revisions. The keys these live under in the registry are part of the contract too
//! ([`keys`]): the controller and the agents are ordinary registry clients.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where cluster management keeps its state in the registry's key space.
pub mod keys {
    /// `herd/deployments/<service>` → [`super::DeploymentRecord`].
    pub const DEPLOYMENTS: &str = "herd/deployments/";
    /// `herd/revisions/<revision, 16 digits>` → [`super::RevisionRecord`].
    pub const REVISIONS: &str = "herd/revisions/";
    /// `herd/nodes/<node>` → [`super::NodeReport`], on the agent's lease.
    pub const NODES: &str = "herd/nodes/";
    /// `herd/assignments/<node>/<instance>` → [`super::Assignment`], written by the
    /// controller, fenced by its election token.
    pub const ASSIGNMENTS: &str = "herd/assignments/";
    /// `herd/instances/<service>/<instance>` → [`super::InstanceReport`], on the agent's
    /// lease: what the agent sees of each process.
    pub const INSTANCES: &str = "herd/instances/";
    /// `herd/manifests/<service>/<version>` → the manifest text every applied version had,
    /// so a rollback can run an old version exactly as it was.
    pub const MANIFESTS: &str = "herd/manifests/";
    /// The election the controllers of every `herd server` campaign in.
    pub const CONTROLLER_ELECTION: &str = "herd-controller";

    pub fn deployment(service: &str) -> String {
        format!("{DEPLOYMENTS}{service}")
    }
    pub fn revision(rev: u64) -> String {
        format!("{REVISIONS}{rev:016}")
    }
    pub fn manifest(service: &str, version: &str) -> String {
        format!("{MANIFESTS}{service}/{version}")
    }
    pub fn node(node: &str) -> String {
        format!("{NODES}{node}")
    }
    pub fn assignments_of(node: &str) -> String {
        format!("{ASSIGNMENTS}{node}/")
    }
    pub fn assignment(node: &str, instance: &str) -> String {
        format!("{ASSIGNMENTS}{node}/{instance}")
    }
    pub fn instances_of(service: &str) -> String {
        format!("{INSTANCES}{service}/")
    }
    pub fn instance(service: &str, instance: &str) -> String {
        format!("{INSTANCES}{service}/{instance}")
    }
}

/// A service as applied: its manifest's text (TOML, re-read by whoever acts on it, so
/// every reader validates the same way) and what the operator changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub name: String,
    pub version: String,
    /// The manifest file as applied.
    pub manifest: String,
    /// Instances wanted: the manifest's count, or the last `scale`.
    pub count: u32,
    /// The cluster revision this record was written at.
    pub revision: u64,
    pub applied_ms: u64,
    /// Raised by `herd restart`: instances of an older generation are replaced like those
    /// of an older version.
    #[serde(default)]
    pub generation: u32,
    /// With `update.canary = N`, an update starts N new instances and goes no further
    /// until `herd rollout promote` sets this.
    #[serde(default)]
    pub promoted: bool,
    /// What made this record: `apply`, `scale`, `restart`, `promote` or `rollback` (the
    /// instances an update starts show `Update`, or `Rollback` for a rollback's).
    #[serde(default)]
    pub cause: String,
}

/// One architecture version: every service's version after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub revision: u64,
    pub at_ms: u64,
    /// What changed, e.g. `apply web 1.2.0`, `scale web 5`, `stop web`.
    pub change: String,
    /// Service → version (and instances wanted) after the change.
    pub services: BTreeMap<String, ServiceVersion>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVersion {
    pub version: String,
    pub count: u32,
}

/// What an agent reports of its machine, on its lease (the heartbeat).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub name: String,
    /// The address instances on this node are reached at.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub cores: u32,
    pub memory_bytes: u64,
    /// Load average over one minute, per core.
    pub load: f64,
    /// The ports the agent hands out: `[first, last]`.
    pub ports: [u16; 2],
    pub started_ms: u64,
    pub version: String,
    /// The agent's own HTTP listener (`/status`, `/metrics`, the instances' logs):
    /// `host:port`, or `https://host:port` when it speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

/// The controller's decision that `node` runs one instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub service: String,
    /// Unique in the cluster: `<service>-<snowflake id in base 36>`.
    pub instance: String,
    pub node: String,
    pub version: String,
    /// The manifest text of that version: the agent runs exactly this.
    pub manifest: String,
    /// The controller's fencing token when it wrote this.
    pub token: u64,
    /// When the controller made it (ms since the epoch): `update.healthy_deadline` counts
    /// from here.
    #[serde(default)]
    pub assigned_ms: u64,
    /// The deployment's generation it was made for (see [`DeploymentRecord::generation`]).
    #[serde(default)]
    pub generation: u32,
    /// Why it was made: `deploy` (a first start), `scale`, `update`, `rollback` or
    /// `replace` (its node was lost). Until it runs, the instance's state says so (seed
    /// 001's Scale, Update, Rollback; Provision otherwise).
    #[serde(default)]
    pub purpose: String,
}

/// What an agent sees of one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: String,
    pub service: String,
    pub node: String,
    pub version: String,
    /// Seed 001's states: Provision, Ready, Run, Update, Rollback, Scale, Destroy, Failed.
    pub state: String,
    /// When it entered this state (ms since the epoch).
    pub since_ms: u64,
    pub pid: Option<u32>,
    /// Allocated ports by name; the first is `PORT`.
    pub ports: BTreeMap<String, u16>,
    pub port: Option<u16>,
    pub restarts: u32,
    /// `passing`, `failing`, or `unknown` (no check yet, or none configured).
    pub health: String,
    /// Why it is in this state, when that is worth saying (an exit status, a failed start).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The process's CPU over the last sample, in percent of one core; reported for
    /// services that autoscale on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
}

/// `PUT /v1/deployments/<name>` and the other changes: the revision they made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeAnswer {
    pub name: String,
    pub revision: u64,
    pub version: String,
    pub count: u32,
    /// True for `?dry_run`: validated, nothing written.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/deployments/<name>/scale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub count: u32,
    /// Why (the autoscaler says what it measured); kept in the revision's change line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/deployments/<name>`: the service, its state and every instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    pub name: String,
    pub version: String,
    pub revision: u64,
    /// The service's state: Run when every wanted instance runs the wanted version,
    /// Update while versions are mixed, Scale while the count differs, Failed when an
    /// instance is Failed, Provision before any runs.
    pub state: String,
    pub count: u32,
    pub instances: Vec<InstanceReport>,
}

/// `GET /v1/deployments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    pub revision: u64,
    pub deployments: Vec<DeploymentStatus>,
}

/// `GET /v1/nodes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeReport>,
}

/// `POST /v1/deployments/<name>/rollback`: back to the version the service had at
/// `to_revision` (default: the version before the current one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub to_revision: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// One service a rollback changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackStep {
    pub service: String,
    pub from: String,
    pub to: String,
}

/// The rollback's plan (the service first, then the dependents its older version needs
/// rolled back with it) and the revision it made (0 on a dry run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackAnswer {
    pub revision: u64,
    pub to_revision: u64,
    pub steps: Vec<RollbackStep>,
    pub dry_run: bool,
}
