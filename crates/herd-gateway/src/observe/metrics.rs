//! /metrics and /status: both read the same atomics, so they never disagree.

use crate::clock;
use crate::state::shared::ListenerStats;
use crate::state::shared::Shared;
use crate::state::snapshot::{Group, ServerState, Snapshot};
use herd_telemetry::{MetricKind, TextEncoder};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn render(shared: &Shared) -> String {
    let snap = shared.snapshot.load_full();
    let mut e = TextEncoder::with_capacity(16 * 1024);
    let pid = shared.process_id.to_string();
    let rev = snap.revision.to_string();
    e.family(
        "herd_gateway_info",
        MetricKind::Gauge,
        "Gateway process and configuration revision.",
    );
    e.gauge(
        "herd_gateway_info",
        &[("process_id", &pid), ("config_revision", &rev)],
        1,
    );
    e.family(
        "herd_gateway_client_connections",
        MetricKind::Gauge,
        "Open client connections.",
    );
    e.gauge(
        "herd_gateway_client_connections",
        &[],
        shared.client_connections.get(),
    );
    e.family(
        "herd_gateway_reloads_total",
        MetricKind::Counter,
        "Configuration reloads by result.",
    );
    e.counter(
        "herd_gateway_reloads_total",
        &[("result", "ok")],
        shared.reloads_ok.get(),
    );
    e.counter(
        "herd_gateway_reloads_total",
        &[("result", "error")],
        shared.reloads_failed.get(),
    );

    e.family(
        "herd_trace_spans_total",
        MetricKind::Counter,
        "Request spans by fate: exported (accepted by the OTLP endpoint), dropped (the export queue was full), failed (the endpoint refused or could not be reached).",
    );
    for (result, c) in [
        ("exported", &shared.spans.exported),
        ("dropped", &shared.spans.dropped),
        ("failed", &shared.spans.failed),
    ] {
        e.counter("herd_trace_spans_total", &[("result", result)], c.get());
    }
    e.family(
        "herd_trace_queue_spans",
        MetricKind::Gauge,
        "Finished spans waiting for export.",
    );
    e.gauge("herd_trace_queue_spans", &[], shared.spans.queued() as i64);

    listener_families(&mut e, shared, &snap);

    let mut groups: Vec<&std::sync::Arc<Group>> = snap.groups.values().collect();
    groups.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let now = clock::now_ms();

    e.family(
        "herd_server_requests_total",
        MetricKind::Counter,
        "Responses received from each server, by status class.",
    );
    for g in &groups {
        for s in &g.servers.0 {
            for (i, class) in CLASSES.iter().enumerate() {
                let v = s.responses.by_class[i].get();
                e.counter(
                    "herd_server_requests_total",
                    &[
                        ("backend", &g.config.name),
                        ("server", &s.addr),
                        ("class", class),
                    ],
                    v,
                );
            }
        }
    }
    let server_family = |e: &mut TextEncoder,
                         name: &str,
                         kind: MetricKind,
                         help: &str,
                         f: &dyn Fn(&ServerState) -> i64| {
        e.family(name, kind, help);
        for g in &groups {
            for s in &g.servers.0 {
                let labels = [
                    ("backend", g.config.name.as_str()),
                    ("server", s.addr.as_str()),
                ];
                match kind {
                    MetricKind::Counter => e.counter(name, &labels, f(s) as u64),
                    _ => e.gauge(name, &labels, f(s)),
                }
            }
        }
    };
    server_family(
        &mut e,
        "herd_server_failures_total",
        MetricKind::Counter,
        "Attempts that got no response: connect errors, resets, timeouts.",
        &|s| s.failures.get() as i64,
    );
    server_family(
        &mut e,
        "herd_server_active_requests",
        MetricKind::Gauge,
        "Requests in flight to each server.",
        &|s| i64::from(s.load.in_flight()),
    );
    server_family(
        &mut e,
        "herd_server_healthy",
        MetricKind::Gauge,
        "1 if the active health check considers the server up.",
        &|s| i64::from(s.healthy()),
    );
    server_family(
        &mut e,
        "herd_server_health_checks_passed_total",
        MetricKind::Counter,
        "Active health checks that passed.",
        &|s| s.checks_passed.get() as i64,
    );
    server_family(
        &mut e,
        "herd_server_health_checks_failed_total",
        MetricKind::Counter,
        "Active health checks that failed.",
        &|s| s.checks_failed.get() as i64,
    );
    server_family(
        &mut e,
        "herd_server_usable",
        MetricKind::Gauge,
        "1 if the server takes new requests (healthy, not ejected, not drained).",
        &|s| i64::from(s.load.usable() && !s.passive.is_ejected(now)),
    );
    server_family(
        &mut e,
        "herd_server_weight",
        MetricKind::Gauge,
        "Current weight (runtime overrides included).",
        &|s| i64::from(s.weight.load(std::sync::atomic::Ordering::Relaxed)),
    );
    server_family(
        &mut e,
        "herd_server_tcp_connections_total",
        MetricKind::Counter,
        "TCP (L4) connections relayed to each server.",
        &|s| s.tcp_connections.get() as i64,
    );
    e.family(
        "herd_server_tcp_bytes_total",
        MetricKind::Counter,
        "Bytes relayed over TCP (L4) connections: sent to the server, received from it.",
    );
    for g in &groups {
        for s in &g.servers.0 {
            for (direction, v) in [
                ("sent", s.tcp_bytes_sent.get()),
                ("received", s.tcp_bytes_received.get()),
            ] {
                e.counter(
                    "herd_server_tcp_bytes_total",
                    &[
                        ("backend", &g.config.name),
                        ("server", &s.addr),
                        ("direction", direction),
                    ],
                    v,
                );
            }
        }
    }
    e.family(
        "herd_server_latency_seconds",
        MetricKind::Histogram,
        "Time from sending the request to the server's response head.",
    );
    for g in &groups {
        for s in &g.servers.0 {
            e.histogram(
                "herd_server_latency_seconds",
                &[("backend", &g.config.name), ("server", &s.addr)],
                &s.latency,
            );
        }
    }
    e.family(
        "herd_backend_no_server_total",
        MetricKind::Counter,
        "Requests answered 503 because no server of the backend was usable.",
    );
    for g in &groups {
        e.counter(
            "herd_backend_no_server_total",
            &[("backend", &g.config.name)],
            g.no_server.get(),
        );
    }

    e.family(
        "herd_route_requests_total",
        MetricKind::Counter,
        "Responses sent to clients per route, by status class.",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            for (i, class) in CLASSES.iter().enumerate() {
                e.counter(
                    "herd_route_requests_total",
                    &[("listener", &l.name), ("route", &r.label), ("class", class)],
                    r.responses.by_class[i].get(),
                );
            }
        }
    }
    e.family(
        "herd_route_latency_seconds",
        MetricKind::Histogram,
        "Time to the server's response head, per route.",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            e.histogram(
                "herd_route_latency_seconds",
                &[("listener", &l.name), ("route", &r.label)],
                &r.latency,
            );
        }
    }
    crate::observe::traffic_report::render_metrics(&mut e, shared, &snap);
    e.finish()
}

/// name, kind, help, and how to read it from a listener's counters.
type ListenerFamily = (
    &'static str,
    MetricKind,
    &'static str,
    fn(&ListenerStats) -> i64,
);

fn listener_families(e: &mut TextEncoder, shared: &Shared, snap: &Snapshot) {
    let families: [ListenerFamily; 4] = [
        (
            "herd_listener_active_connections",
            MetricKind::Gauge,
            "Open client connections per listener (all workers).",
            |st| st.active.load(Ordering::Relaxed),
        ),
        (
            "herd_listener_connections_total",
            MetricKind::Counter,
            "Client connections accepted per listener.",
            |st| st.accepted.get() as i64,
        ),
        (
            "herd_listener_rejected_connections_total",
            MetricKind::Counter,
            "Connections closed at once because the listener was at max_connections.",
            |st| st.rejected.get() as i64,
        ),
        (
            "herd_listener_proxy_protocol_errors_total",
            MetricKind::Counter,
            "Connections closed because their PROXY protocol header was missing or malformed.",
            |st| st.proxy_errors.get() as i64,
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        for (l, st) in snap.config.listeners.iter().zip(&shared.listener_stats) {
            let labels = [
                ("listener", l.name.as_str()),
                ("protocol", l.protocol.as_str()),
            ];
            match kind {
                MetricKind::Counter => e.counter(name, &labels, value(st).max(0) as u64),
                _ => e.gauge(name, &labels, value(st)),
            }
        }
    }
    e.family(
        "herd_listener_requests_total",
        MetricKind::Counter,
        "Requests received per listener, by the client's HTTP version.",
    );
    for (l, st) in snap.config.listeners.iter().zip(&shared.listener_stats) {
        if !l.protocol.is_http() {
            continue;
        }
        for (version, count) in ListenerStats::VERSIONS.iter().zip(&st.requests_by_version) {
            e.counter(
                "herd_listener_requests_total",
                &[("listener", l.name.as_str()), ("version", version)],
                count.get(),
            );
        }
    }
}

pub fn server_json(s: &ServerState, now_ms: u64) -> Value {
    let responses: serde_json::Map<String, Value> = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), json!(s.responses.by_class[i].get())))
        .collect();
    json!({
        "addr": s.addr,
        "id": s.cookie_id,
        "state": s.state_name(now_ms),
        "healthy": s.healthy(),
        "admin": s.admin().as_str(),
        "usable": s.load.usable() && !s.passive.is_ejected(now_ms),
        "weight": s.weight.load(std::sync::atomic::Ordering::Relaxed),
        "active": s.load.in_flight(),
        "requests": s.responses.total(),
        "errors": s.failures.get() + s.responses.by_class[4].get(),
        "failures": s.failures.get(),
        "responses": responses,
        "latency_p99_s": s.latency.quantile_upper_bound(0.99),
        "tcp_connections": s.tcp_connections.get(),
        "health_checks": { "passed": s.checks_passed.get(), "failed": s.checks_failed.get() },
        "tcp_bytes_sent": s.tcp_bytes_sent.get(),
        "tcp_bytes_received": s.tcp_bytes_received.get(),
    })
}

pub fn status(shared: &Shared) -> Value {
    let snap: std::sync::Arc<Snapshot> = shared.snapshot.load_full();
    let now = clock::now_ms();
    let mut backends = serde_json::Map::new();
    for (name, g) in &snap.groups {
        backends.insert(
            name.clone(),
            json!({
                "policy": g.config.policy.name(),
                "persistence": g.config.persistence.as_ref().map(|p| match p {
                    herd_config::Persistence::InsertCookie { .. } => "insert_cookie",
                    herd_config::Persistence::RewriteCookie { .. } => "rewrite_cookie",
                    herd_config::Persistence::SourceIp { .. } => "source_ip",
                }),
                "health_check": g.config.health.as_ref().map(|h| json!({
                    "kind": match h.kind { herd_config::CheckKind::Tcp => "tcp", herd_config::CheckKind::Http => "http" },
                    "interval_ms": h.interval.as_millis() as u64,
                    "unhealthy_threshold": h.unhealthy_threshold,
                    "healthy_threshold": h.healthy_threshold,
                })),
                "proxy_protocol": g.config.proxy_protocol.map(|v| v.as_str()),
                "no_server": g.no_server.get(),
                "source_ip_pins": g.source_ip.as_ref().map(|t| t.len()),
                "traffic": crate::observe::traffic_report::group_json(g),
                "servers": g.servers.0.iter().map(|s| server_json(s, now)).collect::<Vec<_>>(),
            }),
        );
    }
    let listeners: Vec<Value> = shared
        .listener_addrs
        .iter()
        .zip(&snap.config.listeners)
        .zip(&shared.listener_stats)
        .map(|(((n, a), l), st)| {
            json!({
                "name": n,
                "protocol": l.protocol.as_str(),
                "addr": a.to_string(),
                "backend": l.backend,
                "accept_proxy_protocol": l.accept_proxy_protocol,
                "max_connections": l.max_connections,
                "active_connections": st.active.load(Ordering::Relaxed),
                "connections": st.accepted.get(),
                "rejected_connections": st.rejected.get(),
                "proxy_protocol_errors": st.proxy_errors.get(),
            })
        })
        .collect();
    let source = match &shared.source {
        crate::ConfigSource::File(p) => p.display().to_string(),
        crate::ConfigSource::Text { name, .. } => name.clone(),
    };
    json!({
        "role": "gateway",
        "process_id": shared.process_id.to_string(),
        "pid": std::process::id(),
        "started_unix_ms": shared.process_id.start_unix_ms,
        "config_source": source,
        "config_revision": snap.revision,
        "workers": shared.workers,
        "client_connections": shared.client_connections.get(),
        "admin": shared.admin_addr.map(|a| a.to_string()),
        "listeners": listeners,
        "traffic": crate::observe::traffic_report::status_json(shared, &snap),
        "backends": backends,
    })
}
