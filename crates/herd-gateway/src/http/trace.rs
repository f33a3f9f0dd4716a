//! A request's span (SPEC §5): the trace context read from the client (W3C traceparent,
//! parent-based sampling) or started here (by the route's ratio), passed on to the server
//! naming the gateway's own span as parent, and — for a sampled request — one span with
//! the request's phases, handed to the export queue when the response ends (the exporter
//! formats it, off the request path).

use crate::clock;
use crate::http::context::Worker;
use crate::state::snapshot::RouteState;
use crate::state::snapshot::ServerState;
use crate::state::spans::{FinishedSpan, SpanQueue};
use herd_telemetry::trace::{ratio_sampled, SpanId, TraceId, TraceParent};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A sampled request's span under way.
pub struct RequestTrace {
    queue: Arc<SpanQueue>,
    route: Arc<RouteState>,
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    start_unix_nanos: u64,
    start: u64,
    /// Monotonic nanoseconds at: a server chosen (admission and queueing done), the
    /// request handed to its connection (connected), the response head back.
    pub(crate) picked: u64,
    pub(crate) sent: u64,
    pub(crate) head: u64,
    pub(crate) attempts: u32,
}

/// Reads the client's trace context, writes ours on the request, and returns the span to
/// record when this request is sampled. A missing, malformed or repeated traceparent
/// starts a new trace (and its tracestate, which belongs to that context, is dropped).
pub(crate) fn begin(
    w: &Worker,
    queue: &Arc<SpanQueue>,
    route: &Arc<RouteState>,
    headers: &mut HeaderMap,
    ratio: f64,
) -> Option<RequestTrace> {
    let incoming = {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => TraceParent::parse(v.as_bytes()),
            _ => None,
        }
    };
    let span_id = loop {
        let id = SpanId(w.rng.borrow_mut().next_u64().to_be_bytes());
        if id.is_valid() {
            break id;
        }
    };
    let (trace_id, parent, sampled) = match incoming {
        Some(tp) => (tp.trace_id, Some(tp.parent_id), tp.sampled()),
        None => {
            headers.remove(&TRACESTATE);
            let mut id = [0u8; 16];
            let mut rng = w.rng.borrow_mut();
            id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
            id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
            id[0] |= 1; // never all zero
            let trace_id = TraceId(id);
            (trace_id, None, ratio_sampled(trace_id, ratio))
        }
    };
    let value = TraceParent::encode(trace_id, span_id, sampled);
    if let Ok(v) = HeaderValue::from_bytes(&value) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    sampled.then(|| RequestTrace {
        queue: queue.clone(),
        route: route.clone(),
        trace_id,
        span_id,
        parent,
        start_unix_nanos: clock::unix_nanos(),
        start: clock::now_nanos(),
        picked: 0,
        sent: 0,
        head: 0,
        attempts: 0,
    })
}

impl RequestTrace {
    /// The response ended (`complete`: its body was sent whole); the record's strings move
    /// into the span.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        self,
        method: http::Method,
        target: String,
        host: Option<String>,
        listener: String,
        client: std::net::IpAddr,
        status: u16,
        server: Option<Arc<ServerState>>,
        bytes: u64,
        complete: bool,
    ) {
        let end = clock::now_nanos();
        let since = |from: u64, to: u64| (to > 0).then(|| to.saturating_sub(from));
        let span = FinishedSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + end.saturating_sub(self.start),
            route: self.route,
            server,
            method,
            target,
            host,
            listener,
            client,
            status,
            bytes,
            complete,
            attempts: self.attempts,
            queue_ns: since(self.start, self.picked),
            connect_ns: since(self.picked.max(self.start), self.sent),
            ttfb_ns: since(self.sent, self.head),
        };
        self.queue.push(span);
    }
}
