//! Finished spans on their way out: a bounded queue between the workers (which only
//! `try_send`: a full queue drops the span and counts it, the request never waits) and the
//! exporter on the control runtime, with the counters /metrics shows.

use crate::state::lock::ShortMutex;
use crate::state::snapshot::{RouteState, ServerState};
use herd_telemetry::trace::{SpanId, TraceId};
use herd_telemetry::Counter;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A request's span as the worker leaves it: what it knew, moved or shared, never
/// formatted. The exporter turns it into OTLP bytes on the control runtime.
pub struct FinishedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub route: Arc<RouteState>,
    pub server: Option<Arc<ServerState>>,
    pub method: http::Method,
    /// The request target as received (path and query; the query is not exported).
    pub target: String,
    pub host: Option<String>,
    pub listener: String,
    pub client: IpAddr,
    pub status: u16,
    pub bytes: u64,
    pub complete: bool,
    pub attempts: u32,
    /// Nanoseconds spent choosing a server, connecting, and waiting for the response head.
    pub queue_ns: Option<u64>,
    pub connect_ns: Option<u64>,
    pub ttfb_ns: Option<u64>,
}

/// OpenTelemetry's `http.route` for a span's name: the route's path pattern, never the
/// request's own path (one name per route keeps TOP N and the store bounded).
pub fn route_pattern(route: &RouteState) -> &str {
    let r = &route.route;
    r.path_prefix
        .as_deref()
        .or(r.path_regex.as_ref().map(|re| re.as_str()))
        .unwrap_or("/")
}

/// Spans waiting that make a batch worth sending before the interval ends.
const BATCH_READY: usize = 512;

pub struct SpanQueue {
    tx: mpsc::Sender<FinishedSpan>,
    rx: ShortMutex<Option<mpsc::Receiver<FinishedSpan>>>,
    /// Told when a batch's worth waits (the exporter sleeps otherwise: a send must not
    /// wake a thread per span).
    pub(crate) batch_ready: tokio::sync::Notify,
    pub(crate) dropped: Counter,
    pub(crate) exported: Counter,
    pub(crate) failed: Counter,
}

impl SpanQueue {
    pub(crate) fn new(capacity: usize) -> SpanQueue {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        SpanQueue {
            tx,
            rx: ShortMutex::new(Some(rx)),
            batch_ready: tokio::sync::Notify::new(),
            dropped: Counter::new(),
            exported: Counter::new(),
            failed: Counter::new(),
        }
    }

    pub(crate) fn push(&self, span: FinishedSpan) {
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        } else if self.queued() >= BATCH_READY {
            self.batch_ready.notify_one();
        }
    }

    /// The receiving end, once: for the exporter.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<FinishedSpan>> {
        self.rx.lock().ok()?.take()
    }

    /// Spans waiting for export now.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
