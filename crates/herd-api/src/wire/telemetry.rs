//! `/v1/telemetry/`: the answers about traced calls (TOP N, the call graph, traces), and
//! the per-node aggregates one server asks its peers for to answer for the cluster.

use herd_registry_core::id64;
pub use herd_telemetry::trace::LatencyDigest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Calls of a service, an endpoint or an edge over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub calls: u64,
    pub errors: u64,
    pub latency: LatencyDigest,
}

impl CallStats {
    pub fn record(&mut self, nanos: u64, error: bool) {
        self.calls += 1;
        self.errors += u64::from(error);
        self.latency.observe(nanos);
    }
    pub fn merge(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

/// One node's aggregates over a window (`GET /v1/telemetry/aggregates?scope=local`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TelemetryDump {
    pub window_s: u64,
    pub services: Vec<(String, CallStats)>,
    /// (service, span name)
    pub endpoints: Vec<(String, String, CallStats)>,
    /// (caller, callee)
    pub edges: Vec<(String, String, CallStats)>,
    /// How much time the window's minutes cover, up to now (the first one began before
    /// the window did): divide calls by it for a rate.
    #[serde(default)]
    pub covered_ms: u64,
    /// Spans this node holds and has dropped for room, for the answer's footer.
    pub spans_kept: u64,
    pub spans_evicted: u64,
}

/// Which servers' data an answer holds: a peer that did not answer in time is named, so
/// a partial answer never passes for a whole one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub nodes_answered: Vec<u64>,
    #[serde(default)]
    pub nodes_missing: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    pub service: String,
    /// The span name (e.g. `GET /pay`) for an endpoint row; absent for a service row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub error_ratio: f64,
    pub rate_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopAnswer {
    pub by: String,
    pub window_s: u64,
    pub services: Vec<TopRow>,
    pub endpoints: Vec<TopRow>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub name: String,
    /// Calls into this service over the window (edges ending here).
    pub calls_in: u64,
    pub calls_out: u64,
    pub in_cycle: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    pub calls: u64,
    pub rate_per_s: f64,
    pub errors: u64,
    pub error_ratio: f64,
    pub p99_ms: f64,
    /// Both ends lie on one cycle.
    pub in_cycle: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphAnswer {
    pub window_s: u64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Every set of services that call each other round (a strongly connected component
    /// of two or more, or one calling itself), each sorted by name.
    pub cycles: Vec<Vec<String>>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service: String,
    pub root_name: String,
    pub start_unix_ms: u64,
    pub duration_ms: f64,
    pub spans: u64,
    pub services: Vec<String>,
    pub error: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracesAnswer {
    pub traces: Vec<TraceSummary>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceSpan {
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: String,
    /// Nanoseconds since the epoch: a decimal string, beyond what a JSON number keeps.
    #[serde(with = "id64")]
    pub start_unix_nanos: u64,
    pub duration_ms: f64,
    /// From the trace's first span's start.
    pub offset_ms: f64,
    /// Time not covered by this span's children: where the time went.
    pub self_ms: f64,
    /// 0 for a root; a span whose parent is missing counts as a root.
    pub depth: u32,
    pub error: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceAnswer {
    pub trace_id: String,
    pub duration_ms: f64,
    /// Depth first, children in start order.
    pub spans: Vec<TraceSpan>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// One node's per-minute calls per service (`GET /v1/telemetry/series?scope=local`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SeriesDump {
    /// (minute start in ms since the epoch, calls per service in that minute), oldest first.
    pub minutes: Vec<(u64, Vec<(String, CallStats)>)>,
}

/// A service's calls minute by minute, aligned with [`SeriesAnswer::minutes`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSeries {
    pub service: String,
    pub calls: Vec<u64>,
    pub errors: Vec<u64>,
    /// 0 for a minute without calls.
    pub p99_ms: Vec<f64>,
}

/// `GET /v1/telemetry/series?window=1h&n=20`: traffic, errors and latency over time of the
/// `n` busiest services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesAnswer {
    pub window_s: u64,
    /// Each minute's start, ms since the epoch, oldest first.
    pub minutes: Vec<u64>,
    pub services: Vec<ServiceSeries>,
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// One bucket of a latency distribution: calls that took at most `le_ms` (and more than
/// the bucket before).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub le_ms: f64,
    pub count: u64,
}

/// `GET /v1/telemetry/latency?service=S[&name=N]&window=5m`: how a service's (or one of its
/// endpoints') call durations are spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyAnswer {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub window_s: u64,
    pub calls: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub buckets: Vec<LatencyBucket>,
    #[serde(flatten)]
    pub coverage: Coverage,
}
