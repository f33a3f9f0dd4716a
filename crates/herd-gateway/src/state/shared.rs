//! What the control runtime and every worker share for the life of the process: the
//! snapshot handle, the configuration's source, counters per listener, the admin token,
//! and the bookkeeping of reloads and background tasks. Reloading it is the runtime's job
//! (`lib.rs`); this file only says what it holds.

use crate::state::snapshot::Snapshot;
use crate::ConfigSource;
use arc_swap::ArcSwap;
use herd_telemetry::{Counter, Gauge, ProcessId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use tokio::sync::watch;

use crate::state::lock::ShortMutex as Mutex;

/// State shared by the control runtime and every worker.
pub struct Shared {
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) source: ConfigSource,
    pub(crate) process_id: ProcessId,
    pub(crate) seed: u64,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) client_connections: Gauge,
    pub(crate) reloads_ok: Counter,
    pub(crate) reloads_failed: Counter,
    pub(crate) revision: AtomicU64,
    pub(crate) reload_lock: Mutex<()>,
    pub(crate) health_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Members of `service = "..."` backends as the registry last reported them; laid over
    /// every snapshot built, so a reload keeps them.
    pub(crate) discovered: Mutex<HashMap<String, Vec<herd_config::Server>>>,
    pub(crate) discovery_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(crate) listener_addrs: Vec<(String, SocketAddr)>,
    /// Same order as the config's listeners, which only a restart changes.
    pub(crate) listener_stats: Vec<ListenerStats>,
    pub(crate) admin_addr: Option<SocketAddr>,
    /// The admin token, read at start and at every reload (so it can be rotated).
    pub(crate) admin_token: arc_swap::ArcSwapOption<Token>,
    pub(crate) workers: usize,
    /// Finished spans waiting for the exporter (control/export.rs).
    pub(crate) spans: Arc<crate::state::spans::SpanQueue>,
}

/// Per-listener connection counters, shared by every worker (the listener set is fixed for
/// the life of the process, so these live in `Shared`, indexed like the config's listeners).
#[derive(Default)]
pub struct ListenerStats {
    /// Open connections, all workers together; `max_connections` is checked against it.
    pub active: AtomicI64,
    pub accepted: Counter,
    /// Closed at once because the listener was at `max_connections`.
    pub rejected: Counter,
    /// Closed because the expected PROXY header was missing, malformed or too slow.
    pub proxy_errors: Counter,
    /// Requests by the client's HTTP version: HTTP/1.0, HTTP/1.1, HTTP/2.
    pub requests_by_version: [Counter; 3],
    /// ACL refusals and per-IP connection counts (traffic/).
    pub traffic: crate::traffic::ListenerTrafficStats,
}

impl ListenerStats {
    pub const VERSIONS: [&'static str; 3] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2"];

    pub fn count_request(&self, version: http::Version) {
        let i = match version {
            http::Version::HTTP_2 => 2,
            http::Version::HTTP_10 | http::Version::HTTP_09 => 0,
            _ => 1,
        };
        self.requests_by_version[i].inc();
    }
}

/// An admin token, kept out of Debug output and logs.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub(crate) fn new(bytes: Vec<u8>) -> Token {
        Token(bytes)
    }

    /// Equal to `presented`, in time that depends only on the lengths.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        herd_api::same_secret(presented, &self.0)
    }
}

/// A connection's place in its IP's count, given back when the connection ends.
pub struct PerIpSlot {
    pub(crate) shared: Arc<Shared>,
    pub(crate) li: usize,
    pub(crate) slot: usize,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        if let Some(t) = self
            .shared
            .listener_stats
            .get(self.li)
            .and_then(|s| s.traffic.per_ip.get())
        {
            t.release(self.slot);
        }
    }
}
