//! The validated manifest: the values the agent and the controller act on.

use semver::{Version, VersionReq};
use std::time::Duration;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    pub artifact: Option<Artifact>,
    pub run: Run,
    pub instances: Instances,
    pub placement: Placement,
    pub health: Option<Health>,
    pub update: Update,
    pub restart: RestartPolicy,
    /// Other services and the versions of them this one works with.
    pub depends_on: Vec<(String, VersionReq)>,
    pub autoscale: Option<Autoscale>,
}

/// Where the service's files come from; copied to `DIR/services/NAME/VERSION/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// A file or directory on the agent's machine.
    Path(String),
    /// Downloaded over http(s); the download must have this SHA-256 (hex).
    Url { url: String, sha256: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Relative to the artifact directory, or absolute, or found on PATH.
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Port names; the agent allocates one each: `PORT` is the first, `PORT_<NAME>` each.
    pub ports: Vec<String>,
    pub stop_signal: StopSignal,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Quit => "SIGQUIT",
            StopSignal::Hup => "SIGHUP",
            StopSignal::Usr1 => "SIGUSR1",
            StopSignal::Usr2 => "SIGUSR2",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<StopSignal> {
        let s = s.to_ascii_uppercase();
        let s = s.strip_prefix("SIG").unwrap_or(&s);
        Some(match s {
            "TERM" => StopSignal::Term,
            "INT" => StopSignal::Int,
            "QUIT" => StopSignal::Quit,
            "HUP" => StopSignal::Hup,
            "USR1" => StopSignal::Usr1,
            "USR2" => StopSignal::Usr2,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instances {
    pub count: u32,
    /// Never fewer serving instances than this during an update or after a failure.
    pub min: u32,
    /// Autoscaling and `herd scale` stay within min..=max.
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Labels an agent must carry to run this service.
    pub labels: Vec<(String, String)>,
    pub spread: Spread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// At most ceil(count / eligible nodes) instances per node.
    Node,
    /// Least loaded first, with no cap per node.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub kind: HealthKind,
    /// The port (by name) the check connects to; the first port by default.
    pub port: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    Tcp,
    Http {
        path: String,
        expect_status: Vec<u16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub max_parallel: u32,
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
    pub auto_revert: bool,
    /// > 0: start this many new instances and wait for `herd rollout promote`.
    pub canary: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Crashes allowed within `interval`; one more and the instance is Failed.
    pub attempts: u32,
    pub interval: Duration,
    /// The first restart's delay, doubled per crash up to `max_delay`.
    pub delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autoscale {
    pub metric: ScaleMetric,
    pub target: f64,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleMetric {
    /// Requests per second per instance, as the gateways observe them.
    RpsPerInstance,
    /// Process CPU, in percent of one core per instance, as the agents report it.
    Cpu,
}
