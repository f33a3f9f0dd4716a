//! The node's spans: a bounded set of recent traces (oldest trace out first), the
//! per-minute aggregates fed by every span as it arrives, and the call edges, found by
//! matching a span with its parent — which may arrive first, later, or never.

use super::minutes::{Key, Minutes};
use herd_api::wire::{TelemetryDump, TraceSpan, TraceSummary};
use herd_telemetry::trace::{AttrValue, Span, SpanId, TraceId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// How long a span whose parent has not arrived waits for it before its edge is decided
/// without it: exporters batch (the OpenTelemetry SDKs every 5 s by default), so a child
/// routinely arrives seconds before its parent.
pub const PARENT_GRACE_MS: u64 = 6_000;
/// Spans waiting for a parent, at most; beyond it the oldest is decided at once.
const MAX_PENDING: usize = 20_000;
/// Spans kept of one trace: a runaway loop's trace cannot take the whole store.
const MAX_SPANS_PER_TRACE: usize = 2_000;
/// Gateway hops followed up a chain of gateways to find the real caller.
const MAX_HOPS: usize = 16;

/// The attribute herd's gateway puts on its spans: the backend it sent the request to.
pub const ATTR_BACKEND: &str = "herd.backend";
/// For a backend that follows the registry: the service its members are registered as.
pub const ATTR_SERVICE: &str = "herd.service";

pub struct TraceStore {
    max_spans: usize,
    traces: HashMap<TraceId, Vec<Arc<Span>>>,
    order: VecDeque<TraceId>,
    spans: usize,
    evicted: u64,
    dropped: u64,
    pending: HashMap<TraceId, Vec<(Arc<Span>, u64)>>,
    pending_count: usize,
    minutes: Minutes,
}

/// A filter for trace lists.
#[derive(Default, Clone)]
pub struct TraceFilter {
    pub service: Option<String>,
    pub min_duration_nanos: u64,
    pub error_only: bool,
    pub limit: usize,
}

enum Edge {
    To(String, String),
    None,
    Wait,
}

fn is_gateway(s: &Span) -> bool {
    s.attr(ATTR_BACKEND).is_some()
}

fn callee(s: &Span) -> Option<&str> {
    s.attr(ATTR_SERVICE)
        .or_else(|| s.attr(ATTR_BACKEND))
        .and_then(AttrValue::as_str)
}

impl TraceStore {
    pub fn new(max_spans: usize) -> TraceStore {
        TraceStore {
            max_spans: max_spans.max(1),
            traces: HashMap::new(),
            order: VecDeque::new(),
            spans: 0,
            evicted: 0,
            dropped: 0,
            pending: HashMap::new(),
            pending_count: 0,
            minutes: Minutes::default(),
        }
    }

    pub fn ingest(&mut self, spans: Vec<Span>, now_ms: u64) {
        let mut touched = BTreeSet::new();
        for span in spans {
            let span = Arc::new(span);
            let trace = self.traces.entry(span.trace_id).or_insert_with(|| {
                self.order.push_back(span.trace_id);
                Vec::new()
            });
            // A span sent twice (an exporter's retry) is kept and counted once.
            if trace.iter().any(|s| s.span_id == span.span_id) {
                continue;
            }
            let end_ms = span.end_unix_nanos / 1_000_000;
            let nanos = span.duration_nanos();
            // What counts as a call of a service: a span that handles work sent to it, or
            // a trace's root (a job, a script) whatever its kind.
            if span.kind.handles_work() || span.parent_span_id.is_none() {
                let m = &mut self.minutes;
                m.record(
                    now_ms,
                    end_ms,
                    Key::Service(&span.service),
                    nanos,
                    span.error,
                );
                let ep = Key::Endpoint(&span.service, &span.name);
                m.record(now_ms, end_ms, ep, nanos, span.error);
            }
            // A trace past its cap keeps its first spans; the rest are counted above.
            if trace.len() >= MAX_SPANS_PER_TRACE {
                self.dropped += 1;
                continue;
            }
            trace.push(span.clone());
            self.spans += 1;
            touched.insert(span.trace_id);
            self.pending
                .entry(span.trace_id)
                .or_default()
                .push((span, now_ms));
            self.pending_count += 1;
        }
        for t in touched {
            self.resolve_trace(t, now_ms, false);
        }
        self.expire(now_ms);
        while self.spans > self.max_spans {
            self.evict_oldest(now_ms);
        }
    }

    /// Decides the edges of spans that waited long enough; called before every answer.
    pub fn expire(&mut self, now_ms: u64) {
        let due: Vec<TraceId> = self
            .pending
            .iter()
            .filter(|(_, v)| v.iter().any(|(_, at)| now_ms >= at + PARENT_GRACE_MS))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.resolve_trace(t, now_ms, false);
            self.resolve_aged(t, now_ms);
        }
        while self.pending_count > MAX_PENDING {
            let Some(oldest) = self
                .pending
                .iter()
                .filter_map(|(t, v)| v.iter().map(|(_, at)| *at).min().map(|at| (at, *t)))
                .min()
            else {
                break;
            };
            self.resolve_all(oldest.1, now_ms);
        }
    }

    fn resolve_aged(&mut self, t: TraceId, now_ms: u64) {
        let Some(waiting) = self.pending.remove(&t) else {
            return;
        };
        let mut keep = Vec::new();
        for (span, at) in waiting {
            if now_ms >= at + PARENT_GRACE_MS {
                self.pending_count -= 1;
                self.count_edge(&span, true, now_ms);
            } else {
                keep.push((span, at));
            }
        }
        if !keep.is_empty() {
            self.pending.insert(t, keep);
        }
    }

    fn resolve_all(&mut self, t: TraceId, now_ms: u64) {
        for (span, _) in self.pending.remove(&t).unwrap_or_default() {
            self.pending_count -= 1;
            self.count_edge(&span, true, now_ms);
        }
    }

    /// Every waiting span of the trace whose parent is now known (or that needs none).
    fn resolve_trace(&mut self, t: TraceId, now_ms: u64, expired: bool) {
        let Some(waiting) = self.pending.remove(&t) else {
            return;
        };
        let mut keep = Vec::new();
        for (span, at) in waiting {
            if self.count_edge(&span, expired, now_ms) {
                self.pending_count -= 1;
            } else {
                keep.push((span, at));
            }
        }
        if !keep.is_empty() {
            self.pending.insert(t, keep);
        }
    }

    /// Records the span's edge if it can be decided now; false to wait for its parent.
    fn count_edge(&mut self, span: &Span, expired: bool, now_ms: u64) -> bool {
        match self.edge_of(span, expired) {
            Edge::Wait => false,
            Edge::None => true,
            Edge::To(from, to) => {
                let end_ms = span.end_unix_nanos / 1_000_000;
                let key = Key::Edge(&from, &to);
                let nanos = span.duration_nanos();
                self.minutes.record(now_ms, end_ms, key, nanos, span.error);
                true
            }
        }
    }

    fn find(&self, t: TraceId, id: SpanId) -> Option<&Arc<Span>> {
        self.traces.get(&t)?.iter().find(|s| s.span_id == id)
    }

    /// A call is counted once: by the gateway's span when a gateway carried it (caller =
    /// whoever sent it to the gateway, callee = the backend), else by the callee's server
    /// span under a parent of another service.
    fn edge_of(&self, span: &Span, expired: bool) -> Edge {
        if is_gateway(span) {
            let Some(to) = callee(span) else {
                return Edge::None;
            };
            let mut parent = span.parent_span_id;
            let mut via: &Span = span;
            for _ in 0..MAX_HOPS {
                let Some(p) = parent else {
                    // Sent by a client outside any trace: the gateway is the caller.
                    return Edge::To(via.service.clone(), to.to_string());
                };
                match self.find(span.trace_id, p) {
                    Some(ps) if is_gateway(ps) => {
                        via = ps;
                        parent = ps.parent_span_id;
                    }
                    Some(ps) => return Edge::To(ps.service.clone(), to.to_string()),
                    None if expired => return Edge::To(via.service.clone(), to.to_string()),
                    None => return Edge::Wait,
                }
            }
            return Edge::To(via.service.clone(), to.to_string());
        }
        if !span.kind.handles_work() {
            return Edge::None;
        }
        let Some(p) = span.parent_span_id else {
            return Edge::None;
        };
        match self.find(span.trace_id, p) {
            Some(ps) if is_gateway(ps) || ps.service == span.service => Edge::None,
            Some(ps) => Edge::To(ps.service.clone(), span.service.clone()),
            None if expired => Edge::None,
            None => Edge::Wait,
        }
    }

    fn evict_oldest(&mut self, now_ms: u64) {
        let Some(t) = self.order.pop_front() else {
            return;
        };
        self.resolve_all(t, now_ms);
        if let Some(spans) = self.traces.remove(&t) {
            self.spans -= spans.len();
            self.evicted += spans.len() as u64;
        }
    }

    pub fn dump(&self, now_ms: u64, window_s: u64) -> TelemetryDump {
        let mut d = self.minutes.dump(now_ms, window_s);
        d.spans_kept = self.spans as u64;
        d.spans_evicted = self.evicted + self.dropped;
        d
    }

    pub fn series(&self, now_ms: u64, window_s: u64) -> herd_api::wire::SeriesDump {
        self.minutes.series(now_ms, window_s)
    }

    pub fn traces(&self, f: &TraceFilter) -> Vec<TraceSummary> {
        let mut out: Vec<TraceSummary> = self
            .order
            .iter()
            .rev()
            .filter_map(|t| self.traces.get(t).map(|spans| summary(t, spans)))
            .filter(|s| {
                f.service
                    .as_ref()
                    .is_none_or(|svc| s.services.contains(svc))
                    && s.duration_ms * 1e6 >= f.min_duration_nanos as f64
                    && (!f.error_only || s.error)
            })
            .take(f.limit)
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.start_unix_ms));
        out
    }

    /// The spans this node holds of one trace, not yet arranged (see `query::tree`).
    pub fn trace(&self, t: TraceId) -> Vec<TraceSpan> {
        self.traces
            .get(&t)
            .map(|spans| spans.iter().map(|s| trace_span(s)).collect())
            .unwrap_or_default()
    }
}

pub fn summary(t: &TraceId, spans: &[Arc<Span>]) -> TraceSummary {
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nanos).max().unwrap_or(0);
    let ids: BTreeSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    // The root: a span without a parent, else the earliest whose parent is not here.
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .chain(
            spans
                .iter()
                .filter(|s| s.parent_span_id.is_some_and(|p| !ids.contains(&p))),
        )
        .min_by_key(|s| (s.parent_span_id.is_some(), s.start_unix_nanos));
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    TraceSummary {
        trace_id: t.to_hex(),
        root_service: root.map(|s| s.service.clone()).unwrap_or_default(),
        root_name: root.map(|s| s.name.clone()).unwrap_or_default(),
        start_unix_ms: start / 1_000_000,
        duration_ms: end.saturating_sub(start) as f64 / 1e6,
        spans: spans.len() as u64,
        services: services.into_iter().map(str::to_string).collect(),
        error: spans.iter().any(|s| s.error),
    }
}

fn trace_span(s: &Span) -> TraceSpan {
    TraceSpan {
        span_id: s.span_id.to_hex(),
        parent_span_id: s.parent_span_id.map(|p| p.to_hex()),
        service: s.service.clone(),
        name: s.name.clone(),
        kind: s.kind.as_str().into(),
        start_unix_nanos: s.start_unix_nanos,
        duration_ms: s.duration_nanos() as f64 / 1e6,
        offset_ms: 0.0,
        self_ms: 0.0,
        depth: 0,
        error: s.error,
        status_message: s.status_message.clone(),
        attributes: s
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    AttrValue::Str(s) => serde_json::Value::from(s.as_str()),
                    AttrValue::Int(i) => serde_json::Value::from(*i),
                    AttrValue::Double(d) => serde_json::Value::from(*d),
                    AttrValue::Bool(b) => serde_json::Value::from(*b),
                };
                (k.clone(), v)
            })
            .collect(),
    }
}
