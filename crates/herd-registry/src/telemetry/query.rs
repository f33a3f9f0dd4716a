//! Answers computed from aggregates and spans, after the peers' parts are merged: TOP N,
//! the call graph with its cycles, one trace arranged as a tree.

use herd_api::wire::{
    CallStats, GraphEdge, GraphNode, TelemetryDump, TopRow, TraceSpan, TraceSummary,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Calls,
    P99,
    Errors,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "calls" => Some(By::Calls),
            "p99" => Some(By::P99),
            "errors" => Some(By::Errors),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            By::Calls => "calls",
            By::P99 => "p99",
            By::Errors => "errors",
        }
    }
}

pub fn merge(dumps: Vec<TelemetryDump>) -> TelemetryDump {
    let mut services: BTreeMap<String, CallStats> = BTreeMap::new();
    let mut endpoints: BTreeMap<(String, String), CallStats> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String), CallStats> = BTreeMap::new();
    let mut out = TelemetryDump::default();
    for d in dumps {
        out.window_s = out.window_s.max(d.window_s);
        out.covered_ms = out.covered_ms.max(d.covered_ms);
        out.spans_kept += d.spans_kept;
        out.spans_evicted += d.spans_evicted;
        for (k, v) in d.services {
            services.entry(k).or_default().merge(&v);
        }
        for (s, n, v) in d.endpoints {
            endpoints.entry((s, n)).or_default().merge(&v);
        }
        for (a, b, v) in d.edges {
            edges.entry((a, b)).or_default().merge(&v);
        }
    }
    out.services = services.into_iter().collect();
    out.endpoints = endpoints.into_iter().map(|((s, n), v)| (s, n, v)).collect();
    out.edges = edges.into_iter().map(|((a, b), v)| (a, b, v)).collect();
    out
}

fn ms(v: Option<f64>) -> f64 {
    v.map_or(0.0, |s| (s * 1e6).round() / 1e3)
}

fn row(service: &str, name: Option<&str>, s: &CallStats, window_s: u64) -> TopRow {
    TopRow {
        service: service.to_string(),
        name: name.map(str::to_string),
        calls: s.calls,
        errors: s.errors,
        error_ratio: ratio(s.errors, s.calls),
        rate_per_s: s.calls as f64 / window_s.max(1) as f64,
        p50_ms: ms(s.latency.quantile_secs(0.5)),
        p99_ms: ms(s.latency.quantile_secs(0.99)),
        mean_ms: ms(s.latency.mean_secs()),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The `n` services and `n` endpoints first by `by` (ties by name, so the order is stable).
pub fn top(d: &TelemetryDump, by: By, n: usize) -> (Vec<TopRow>, Vec<TopRow>) {
    let sort = |rows: &mut Vec<TopRow>| {
        rows.sort_by(|a, b| {
            let key = |r: &TopRow| match by {
                By::Calls => r.calls as f64,
                By::P99 => r.p99_ms,
                By::Errors => r.errors as f64,
            };
            key(b)
                .total_cmp(&key(a))
                .then_with(|| (&a.service, &a.name).cmp(&(&b.service, &b.name)))
        });
        rows.truncate(n);
    };
    let mut services: Vec<TopRow> = d
        .services
        .iter()
        .map(|(s, st)| row(s, None, st, d.window_s))
        .collect();
    let mut endpoints: Vec<TopRow> = d
        .endpoints
        .iter()
        .map(|(s, name, st)| row(s, Some(name), st, d.window_s))
        .collect();
    sort(&mut services);
    sort(&mut endpoints);
    (services, endpoints)
}

pub fn graph(d: &TelemetryDump) -> (Vec<GraphNode>, Vec<GraphEdge>, Vec<Vec<String>>) {
    let names: BTreeSet<&str> = d
        .edges
        .iter()
        .flat_map(|(a, b, _)| [a.as_str(), b.as_str()])
        .chain(d.services.iter().map(|(s, _)| s.as_str()))
        .collect();
    let names: Vec<&str> = names.into_iter().collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let pairs: Vec<(usize, usize)> = d
        .edges
        .iter()
        .map(|(a, b, _)| (index[a.as_str()], index[b.as_str()]))
        .collect();
    let components = herd_telemetry::trace::cycles(names.len(), &pairs);
    let mut component_of = vec![usize::MAX; names.len()];
    for (c, members) in components.iter().enumerate() {
        for &m in members {
            component_of[m] = c;
        }
    }
    let mut calls_in = vec![0u64; names.len()];
    let mut calls_out = vec![0u64; names.len()];
    let edges = d
        .edges
        .iter()
        .zip(&pairs)
        .map(|((from, to, s), &(a, b))| {
            calls_out[a] += s.calls;
            calls_in[b] += s.calls;
            GraphEdge {
                from: from.clone(),
                to: to.clone(),
                calls: s.calls,
                rate_per_s: s.calls as f64 / d.window_s.max(1) as f64,
                errors: s.errors,
                error_ratio: ratio(s.errors, s.calls),
                p99_ms: ms(s.latency.quantile_secs(0.99)),
                in_cycle: component_of[a] != usize::MAX && component_of[a] == component_of[b],
            }
        })
        .collect();
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, n)| GraphNode {
            name: n.to_string(),
            calls_in: calls_in[i],
            calls_out: calls_out[i],
            in_cycle: component_of[i] != usize::MAX,
        })
        .collect();
    let cycles = components
        .iter()
        .map(|c| c.iter().map(|&i| names[i].to_string()).collect())
        .collect();
    (nodes, edges, cycles)
}

/// Summaries from several nodes: one per trace, its parts added up (a trace's spans may
/// have gone to different servers).
pub fn merge_summaries(parts: Vec<TraceSummary>, limit: usize) -> Vec<TraceSummary> {
    let mut by_id: BTreeMap<String, TraceSummary> = BTreeMap::new();
    for p in parts {
        match by_id.get_mut(&p.trace_id) {
            None => {
                by_id.insert(p.trace_id.clone(), p);
            }
            Some(t) => {
                let end = (t.start_unix_ms as f64 + t.duration_ms)
                    .max(p.start_unix_ms as f64 + p.duration_ms);
                if p.start_unix_ms < t.start_unix_ms {
                    t.root_service = p.root_service;
                    t.root_name = p.root_name;
                }
                t.start_unix_ms = t.start_unix_ms.min(p.start_unix_ms);
                t.duration_ms = end - t.start_unix_ms as f64;
                t.spans += p.spans;
                t.error |= p.error;
                let mut s: BTreeSet<String> = t.services.drain(..).collect();
                s.extend(p.services);
                t.services = s.into_iter().collect();
            }
        }
    }
    let mut out: Vec<TraceSummary> = by_id.into_values().collect();
    out.sort_by(|a, b| {
        b.start_unix_ms
            .cmp(&a.start_unix_ms)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    out.truncate(limit);
    out
}

/// One trace's spans (from any nodes, duplicates dropped) arranged depth first, children
/// in start order, with each span's offset from the trace's start and its self time.
pub fn tree(mut spans: Vec<TraceSpan>) -> (f64, Vec<TraceSpan>) {
    spans.sort_by(|a, b| (a.start_unix_nanos, &a.span_id).cmp(&(b.start_unix_nanos, &b.span_id)));
    let mut seen = BTreeSet::new();
    spans.retain(|s| seen.insert(s.span_id.clone()));
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_unix_nanos + (s.duration_ms * 1e6) as u64)
        .max()
        .unwrap_or(0);
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id.as_deref().filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, u32)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    let mut visited = vec![false; spans.len()];
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            continue;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(spans[i].span_id.as_str()) {
            for &k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    // A parent cycle (hostile input) leaves spans unreached: show them as roots.
    for (i, v) in visited.iter().enumerate() {
        if !v {
            order.push((i, 0));
        }
    }
    let self_ms: Vec<f64> = spans
        .iter()
        .map(|s| {
            let kids = children.get(s.span_id.as_str()).map_or(&[][..], |v| v);
            let covered = covered_ms(kids.iter().map(|&k| &spans[k]), s);
            (s.duration_ms - covered).max(0.0)
        })
        .collect();
    let out = order
        .into_iter()
        .map(|(i, depth)| {
            let mut s = spans[i].clone();
            s.depth = depth;
            s.offset_ms = (s.start_unix_nanos - start) as f64 / 1e6;
            s.self_ms = (self_ms[i] * 1e3).round() / 1e3;
            s
        })
        .collect();
    (end.saturating_sub(start) as f64 / 1e6, out)
}

/// How much of the parent's time its children cover (overlaps counted once, clipped to
/// the parent).
fn covered_ms<'a>(kids: impl Iterator<Item = &'a TraceSpan>, parent: &TraceSpan) -> f64 {
    let p0 = parent.start_unix_nanos;
    let p1 = p0 + (parent.duration_ms * 1e6) as u64;
    let mut iv: Vec<(u64, u64)> = kids
        .map(|k| {
            let a = k.start_unix_nanos.clamp(p0, p1);
            let b = (k.start_unix_nanos + (k.duration_ms * 1e6) as u64).clamp(p0, p1);
            (a, b)
        })
        .collect();
    iv.sort_unstable();
    let (mut total, mut cur): (u64, Option<(u64, u64)>) = (0, None);
    for (a, b) in iv {
        cur = match cur {
            Some((c0, c1)) if a <= c1 => Some((c0, c1.max(b))),
            Some((c0, c1)) => {
                total += c1 - c0;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((c0, c1)) = cur {
        total += c1 - c0;
    }
    total as f64 / 1e6
}

/// Per-minute parts from several nodes as one series per service: the `n` services with
/// the most calls over the window, every minute of the window present (0 where none).
pub fn series(
    parts: Vec<herd_api::wire::SeriesDump>,
    now_ms: u64,
    window_s: u64,
    n: usize,
) -> (Vec<u64>, Vec<herd_api::wire::ServiceSeries>) {
    let last = now_ms / 60_000;
    let first = now_ms.saturating_sub(window_s * 1000) / 60_000;
    let minutes: Vec<u64> = (first..=last).map(|m| m * 60_000).collect();
    let mut per: BTreeMap<String, Vec<CallStats>> = BTreeMap::new();
    for p in parts {
        for (minute_ms, services) in p.minutes {
            let Some(i) = (minute_ms / 60_000).checked_sub(first).map(|i| i as usize) else {
                continue;
            };
            if i >= minutes.len() {
                continue;
            }
            for (svc, st) in services {
                let row = per
                    .entry(svc)
                    .or_insert_with(|| vec![CallStats::default(); minutes.len()]);
                row[i].merge(&st);
            }
        }
    }
    let mut rows: Vec<(u64, String, Vec<CallStats>)> = per
        .into_iter()
        .map(|(svc, row)| (row.iter().map(|s| s.calls).sum(), svc, row))
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    rows.truncate(n);
    let services = rows
        .into_iter()
        .map(|(_, service, row)| herd_api::wire::ServiceSeries {
            service,
            calls: row.iter().map(|s| s.calls).collect(),
            errors: row.iter().map(|s| s.errors).collect(),
            p99_ms: row
                .iter()
                .map(|s| ms(s.latency.quantile_secs(0.99)))
                .collect(),
        })
        .collect();
    (minutes, services)
}
