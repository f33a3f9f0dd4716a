//! A request's span (SPEC §5): the trace context read from the client (W3C traceparent,
//! parent-based sampling) or started here (by the route's ratio), passed on to the server
//! naming the gateway's own span as parent, and — for a sampled request — one span with
//! the request's phases, handed to the export queue when the response ends.

use crate::clock;
use crate::http::context::Worker;
use crate::state::snapshot::RouteState;
use crate::state::spans::SpanQueue;
use herd_telemetry::trace::{
    ratio_sampled, AttrValue, Span, SpanId, SpanKind, TraceId, TraceParent,
};
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

/// What the access-log record knows of the request, for the span's attributes.
pub(crate) struct RequestFacts<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub host: Option<&'a str>,
    pub listener: &'a str,
    pub client: std::net::SocketAddr,
}

impl RequestTrace {
    /// The response ended (`complete`: its body was sent whole).
    pub(crate) fn finish(
        self,
        req: &RequestFacts<'_>,
        status: u16,
        server: Option<&str>,
        bytes: u64,
        complete: bool,
    ) {
        let end = clock::now_nanos();
        let ms = |from: u64, to: u64| AttrValue::Double(to.saturating_sub(from) as f64 / 1e6);
        let path = req.target.split('?').next().unwrap_or("/");
        let group = &self.route.group.config;
        let mut attributes = vec![
            (
                "http.request.method".into(),
                AttrValue::Str(req.method.into()),
            ),
            ("url.path".into(), AttrValue::Str(path.into())),
            (
                "http.response.status_code".into(),
                AttrValue::Int(status.into()),
            ),
            (
                "http.response.body.size".into(),
                AttrValue::Int(bytes as i64),
            ),
            (
                "client.address".into(),
                AttrValue::Str(req.client.ip().to_string()),
            ),
            ("herd.listener".into(), AttrValue::Str(req.listener.into())),
            (
                "herd.route".into(),
                AttrValue::Str(self.route.label.clone()),
            ),
            ("herd.backend".into(), AttrValue::Str(group.name.clone())),
            ("herd.complete".into(), AttrValue::Bool(complete)),
            ("herd.attempts".into(), AttrValue::Int(self.attempts.into())),
        ];
        if let Some(h) = req.host {
            attributes.push(("server.address".into(), AttrValue::Str(h.into())));
        }
        if let Some(svc) = &group.service {
            attributes.push(("herd.service".into(), AttrValue::Str(svc.clone())));
        }
        if let Some(s) = server {
            attributes.push(("herd.server".into(), AttrValue::Str(s.into())));
        }
        if self.picked > 0 {
            attributes.push(("herd.time.queue_ms".into(), ms(self.start, self.picked)));
        }
        if self.sent > 0 {
            attributes.push((
                "herd.time.connect_ms".into(),
                ms(self.picked.max(self.start), self.sent),
            ));
        }
        if self.head > 0 {
            attributes.push(("herd.time.ttfb_ms".into(), ms(self.sent, self.head)));
        }
        let error = status >= 500 || (status > 0 && !complete);
        let span = Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent,
            // The exporter names the gateway once per batch.
            service: String::new(),
            // OpenTelemetry's "{method} {http.route}": the route's path pattern, never the
            // request's own path (one name per route keeps TOP N and the store bounded).
            name: format!("{} {}", req.method, route_pattern(&self.route)),
            kind: SpanKind::Server,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + end.saturating_sub(self.start),
            error,
            status_message: if complete || status == 0 {
                String::new()
            } else {
                "the response body did not reach the client whole".into()
            },
            attributes,
        };
        self.queue.push(span);
    }
}

fn route_pattern(route: &RouteState) -> &str {
    let r = &route.route;
    r.path_prefix
        .as_deref()
        .or(r.path_regex.as_ref().map(|re| re.as_str()))
        .unwrap_or("/")
}
