//! Traces received by this node (OTLP, SPEC §5): kept in memory only — never through Raft,
//! a span is not worth a consensus round — and bounded. A floor beside `raft/`: it
//! imports neither `api/` nor `raft/`; the API stands on it.

pub mod minutes;
pub mod query;
pub mod store;

use std::sync::{Arc, Mutex};

/// Spans a node keeps by default (a few hundred bytes each).
pub const DEFAULT_MAX_SPANS: usize = 50_000;

/// The store behind its lock. Held only to copy in or read out, never across an await.
#[derive(Clone)]
pub struct Telemetry(pub Arc<Mutex<store::TraceStore>>);

impl Telemetry {
    pub fn new(max_spans: usize) -> Telemetry {
        Telemetry(Arc::new(Mutex::new(store::TraceStore::new(max_spans))))
    }
}

#[cfg(test)]
mod tests;

impl Telemetry {
    /// The store, even if a panic poisoned the lock: it holds plain data, never half a
    /// change that matters more than losing the process would.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, store::TraceStore> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
