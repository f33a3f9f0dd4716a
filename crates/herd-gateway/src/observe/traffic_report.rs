//! Traffic control in /metrics and /status: each mechanism's counters and state, by
//! route, backend group and listener.

use crate::state::shared::Shared;
use crate::state::snapshot::{Group, Snapshot};
use crate::traffic::*;
use herd_balance::{BreakerState, KeyedCounter};
use herd_telemetry::{MetricKind, TextEncoder};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn render_metrics(e: &mut TextEncoder, shared: &Shared, snap: &Snapshot) {
    e.family(
        "herd_route_rate_limited_total",
        MetricKind::Counter,
        "Requests answered 429 by the route's rate limit.",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            if let Some(g) = r.traffic.as_ref().filter(|g| g.rate.is_some()) {
                e.counter(
                    "herd_route_rate_limited_total",
                    &[("listener", &l.name), ("route", &r.label)],
                    g.rate_limited.get(),
                );
            }
        }
    }
    e.family(
        "herd_route_refused_total",
        MetricKind::Counter,
        "Requests refused by the route's rules before any server: forbidden (allow/deny, 403), outside_hours (hours, 403) or too_large (max_body_size, 413).",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            if let Some(g) = &r.traffic {
                for (reason, v) in [
                    ("forbidden", &g.forbidden),
                    ("outside_hours", &g.outside_hours),
                    ("too_large", &g.too_large),
                ] {
                    e.counter(
                        "herd_route_refused_total",
                        &[
                            ("listener", &l.name),
                            ("route", &r.label),
                            ("reason", reason),
                        ],
                        v.get(),
                    );
                }
            }
        }
    }
    let listener_family =
        |e: &mut TextEncoder, name: &str, help: &str, f: &dyn Fn(&ListenerTrafficStats) -> u64| {
            e.family(name, MetricKind::Counter, help);
            for (l, st) in snap.config.listeners.iter().zip(&shared.listener_stats) {
                e.counter(name, &[("listener", &l.name)], f(&st.traffic));
            }
        };
    listener_family(
        e,
        "herd_listener_denied_total",
        "Connections (tcp) or requests (http) refused by the listener's allow/deny lists.",
        &|t| t.denied.get(),
    );
    listener_family(
        e,
        "herd_listener_header_timeouts_total",
        "Connections closed because a request head was not complete header_read_timeout after its first byte (slowloris).",
        &|t| t.header_timeouts.get(),
    );
    listener_family(
        e,
        "herd_listener_bad_host_total",
        "Requests refused with 400 for a missing, repeated, invalid or conflicting Host (RFC 9112 §3.2).",
        &|t| t.bad_host.get(),
    );
    listener_family(
        e,
        "herd_listener_per_ip_rejected_total",
        "Connections closed at accept because their IP had max_conns_per_ip open.",
        &|t| t.per_ip_rejected.get(),
    );

    let mut groups: Vec<&Arc<Group>> = snap.groups.values().collect();
    groups.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    // One family, one sample per backend that has the feature.
    let backend_family = |e: &mut TextEncoder,
                          name: &str,
                          kind: MetricKind,
                          help: &str,
                          rows: &mut dyn Iterator<Item = (&str, u64)>| {
        e.family(name, kind, help);
        for (backend, v) in rows {
            match kind {
                MetricKind::Gauge => e.gauge(name, &[("backend", backend)], v as i64),
                _ => e.counter(name, &[("backend", backend)], v),
            }
        }
    };
    let limited = || {
        groups
            .iter()
            .filter_map(|g| g.limit.as_ref().map(|l| (g.config.name.as_str(), l)))
    };
    backend_family(
        e,
        "herd_backend_queue_waiting",
        MetricKind::Gauge,
        "Requests waiting now for a server slot (max_conns_per_server).",
        &mut limited().map(|(n, l)| (n, u64::from(l.waiting()))),
    );
    backend_family(
        e,
        "herd_backend_queue_timeouts_total",
        MetricKind::Counter,
        "Requests that waited the queue's timeout without a server slot.",
        &mut limited().map(|(n, l)| (n, l.timeouts.get())),
    );
    backend_family(
        e,
        "herd_backend_queue_full_total",
        MetricKind::Counter,
        "Requests refused at once: every server at max_conns_per_server and the queue full.",
        &mut limited().map(|(n, l)| (n, l.full.get())),
    );
    let breakers = || {
        groups
            .iter()
            .filter_map(|g| g.breaker.as_ref().map(|b| (g.config.name.as_str(), b)))
    };
    backend_family(
        e,
        "herd_backend_circuit_state",
        MetricKind::Gauge,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        &mut breakers().map(|(n, b)| (n, b.state() as u64)),
    );
    e.family(
        "herd_backend_circuit_transitions_total",
        MetricKind::Counter,
        "Circuit breaker transitions, by the state entered.",
    );
    for (name, b) in breakers() {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            e.counter(
                "herd_backend_circuit_transitions_total",
                &[("backend", name), ("to", s.as_str())],
                b.transitions[s as usize].get(),
            );
        }
    }
    backend_family(
        e,
        "herd_backend_circuit_rejected_total",
        MetricKind::Counter,
        "Requests failed fast because the circuit breaker was open.",
        &mut breakers().map(|(n, b)| (n, b.rejected.get())),
    );
}

/// The group's traffic-control state for /status.
pub fn group_json(g: &Group) -> Value {
    json!({
        "max_conns_per_server": g.limit.as_ref().map(|l| l.max),
        "queue": g.limit.as_ref().and_then(|l| l.queue.as_ref().map(|q| json!({
            "max": q.max,
            "timeout_ms": q.timeout.as_millis() as u64,
            "waiting": l.waiting(),
            "timeouts": l.timeouts.get(),
            "full": l.full.get(),
        }))),
        "circuit_breaker": g.breaker.as_ref().map(|b| json!({
            "state": b.state().as_str(),
            "rejected": b.rejected.get(),
            "opened": b.transitions[BreakerState::Open as usize].get(),
            "consecutive_failures": b.settings.consecutive_failures,
            "error_rate": b.settings.error_rate,
            "open_for_ms": b.settings.open_for.as_millis() as u64,
            "half_open_probes": b.settings.half_open_probes,
        })),
    })
}

/// Routes' and listeners' traffic rules and counters for /status.
pub fn status_json(shared: &Shared, snap: &Snapshot) -> Value {
    let routes: Vec<Value> = snap
        .listeners
        .iter()
        .flat_map(|l| {
            l.routes.iter().filter_map(move |r| {
                r.traffic.as_ref().map(|g| {
                    let mut v = g.describe();
                    v["listener"] = json!(l.name);
                    v["route"] = json!(r.label);
                    v
                })
            })
        })
        .collect();
    let listeners: Vec<Value> = snap
        .config
        .listeners
        .iter()
        .zip(&shared.listener_stats)
        .map(|(l, st)| {
            json!({
                "listener": l.name,
                "max_conns_per_ip": l.traffic.max_conns_per_ip,
                "ips_with_connections": st.traffic.per_ip.get().map(KeyedCounter::keys),
                "per_ip_rejected": st.traffic.per_ip_rejected.get(),
                "per_ip_untracked": st.traffic.per_ip_untracked.get(),
                "denied": st.traffic.denied.get(),
                "header_read_timeout_ms": l.traffic.header_read_timeout.as_millis() as u64,
                "header_timeouts": st.traffic.header_timeouts.get(),
                "bad_host": st.traffic.bad_host.get(),
            })
        })
        .collect();
    json!({ "routes": routes, "listeners": listeners })
}
