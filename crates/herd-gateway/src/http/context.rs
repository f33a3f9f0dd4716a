//! What one worker thread's request path reads: the worker (shared state, its upstream
//! pool, its RNG, its connection count), the client connection, the listener's counters
//! and timeouts, and the guards that give a connection's place back however it ends.

use crate::state::shared::Shared;
use crate::upstream::pool::{Pool, Sender};
use herd_balance::Rng;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a client that must start with a PROXY header may take to send it. A balancer
/// writes it at once; anything slower is a stray client or an attack on our slots.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Worker {
    pub shared: Arc<Shared>,
    pub pool: Pool,
    pub rng: RefCell<Rng>,
    pub(crate) connections: Cell<usize>,
    pub(crate) idle: Notify,
}

/// One client connection as the proxy sees it: the real client (from the PROXY header when
/// the listener accepts one), the address it connected to, and — for backends that get a
/// PROXY header — this client's own upstream connection, never shared with another client.
pub struct ClientConn {
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// Arrived over TLS (an https listener): X-Forwarded-Proto says https, and
    /// `redirect_https` routes do not redirect.
    pub tls: bool,
    pub private_upstream: RefCell<Option<(u64, Sender)>>,
}

/// An HTTP listener's two waits: for the next request (`idle_timeout`), and for a request
/// head once its first byte came (`header_read_timeout`, the slowloris bound).
#[derive(Clone, Copy)]
pub struct HttpTimeouts {
    pub idle: Duration,
    pub head_read: Duration,
}

impl HttpTimeouts {
    pub fn of(w: &Worker, li: usize) -> HttpTimeouts {
        w.shared.snapshot.load().config.listeners.get(li).map_or(
            HttpTimeouts {
                idle: Duration::from_secs(60),
                head_read: Duration::from_secs(10),
            },
            |l| HttpTimeouts {
                idle: l.idle_timeout,
                head_read: l.traffic.header_read_timeout,
            },
        )
    }
}

/// A client connection's place in the counters; given back when the session ends, however
/// it ends.
pub struct ConnSlot {
    w: Rc<Worker>,
    li: usize,
    /// This connection's count under `max_conns_per_ip`, given back with the slot.
    pub(crate) per_ip: Option<crate::state::shared::PerIpSlot>,
}

impl ConnSlot {
    pub(crate) fn new(w: Rc<Worker>, li: usize) -> ConnSlot {
        w.connections.set(w.connections.get() + 1);
        w.shared.client_connections.inc();
        ConnSlot {
            w,
            li,
            per_ip: None,
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(stats) = self.w.shared.listener_stats.get(self.li) {
            stats.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.w.shared.client_connections.dec();
        let n = self.w.connections.get().saturating_sub(1);
        self.w.connections.set(n);
        if n == 0 {
            self.w.idle.notify_one();
        }
    }
}

/// A connection closed for a request head slower than the listener's header_read_timeout.
pub(crate) fn count_header_timeout(w: &Worker, li: usize) {
    if let Some(stats) = w.shared.listener_stats.get(li) {
        stats.traffic.header_timeouts.inc();
    }
}

/// An upgraded tunnel (WebSocket) counts as one of the worker's connections while it
/// relays: its client connection's own count ended with the 101, and without this the
/// drain on SIGTERM would not wait for it and the process would reset it at once.
pub struct TunnelGuard(Rc<Worker>);

impl TunnelGuard {
    pub fn new(w: Rc<Worker>) -> Self {
        w.connections.set(w.connections.get() + 1);
        TunnelGuard(w)
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        let n = self.0.connections.get().saturating_sub(1);
        self.0.connections.set(n);
        if n == 0 {
            self.0.idle.notify_one();
        }
    }
}
