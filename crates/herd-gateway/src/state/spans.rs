//! Finished spans on their way out: a bounded queue between the workers (which only
//! `try_send`: a full queue drops the span and counts it, the request never waits) and the
//! exporter on the control runtime, with the counters /metrics shows.

use crate::state::shared::ShortMutex;
use herd_telemetry::trace::Span;
use herd_telemetry::Counter;
use tokio::sync::mpsc;

pub struct SpanQueue {
    tx: mpsc::Sender<Span>,
    rx: ShortMutex<Option<mpsc::Receiver<Span>>>,
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
            dropped: Counter::new(),
            exported: Counter::new(),
            failed: Counter::new(),
        }
    }

    pub(crate) fn push(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    /// The receiving end, once: for the exporter.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Span>> {
        self.rx.lock().ok()?.take()
    }

    /// Spans waiting for export now.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
