//! /metrics for a registry node, Prometheus text.

use crate::raft::node::RegistryNode;
use herd_telemetry::{MetricKind, TextEncoder};
use std::sync::atomic::Ordering;

pub fn render(node: &RegistryNode) -> String {
    let m = node.raft.metrics().borrow().clone();
    let (revision, keys, leases) = node.store_counts();
    let id = node.id.to_string();
    let mut e = TextEncoder::with_capacity(4096);
    let mut gauge = |name: &str, help: &str, v: i64| {
        e.family(name, MetricKind::Gauge, help);
        e.gauge(name, &[("node", &id)], v);
    };
    gauge(
        "herd_registry_is_leader",
        "1 if this node is the Raft leader.",
        i64::from(node.role() == "leader"),
    );
    gauge(
        "herd_registry_term",
        "Current Raft term.",
        m.current_term as i64,
    );
    gauge(
        "herd_registry_last_log_index",
        "Last index in this node's log.",
        m.last_log_index.unwrap_or(0) as i64,
    );
    gauge(
        "herd_registry_commit_index",
        "Highest committed index known here.",
        node.committed.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "herd_registry_applied_index",
        "Last index applied to the state machine.",
        m.last_applied.map_or(0, |l| l.index) as i64,
    );
    gauge(
        "herd_registry_revision",
        "KV store revision.",
        revision as i64,
    );
    gauge("herd_registry_keys", "Keys in the KV store.", keys as i64);
    gauge("herd_registry_leases", "Live leases.", leases as i64);
    gauge(
        "herd_registry_watchers",
        "Open watch streams on this node.",
        node.counters.watchers.load(Ordering::Relaxed) as i64,
    );
    gauge(
        "herd_registry_members",
        "Cluster members (voters and learners).",
        node.members().len() as i64,
    );
    let mut counter = |name: &str, help: &str, v: u64| {
        e.family(name, MetricKind::Counter, help);
        e.counter(name, &[("node", &id)], v);
    };
    counter(
        "herd_registry_writes_total",
        "Writes proposed through this node's Raft (as leader).",
        node.counters.writes.load(Ordering::Relaxed),
    );
    counter(
        "herd_registry_forwarded_writes_total",
        "Writes this node forwarded to the leader.",
        node.counters.forwarded.load(Ordering::Relaxed),
    );
    counter(
        "herd_registry_reads_total",
        "Reads served.",
        node.counters.reads.load(Ordering::Relaxed),
    );
    e.family(
        "herd_registry_write_seconds_total",
        MetricKind::Counter,
        "Time from proposal to applied answer, summed (divide by writes_total for the mean).",
    );
    e.sample(
        "herd_registry_write_seconds_total",
        &[("node", &id)],
        node.counters.apply_nanos.load(Ordering::Relaxed) as f64 / 1e9,
    );
    e.finish()
}
