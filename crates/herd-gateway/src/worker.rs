//! Thread-per-core data plane: each worker is one OS thread with a current-thread tokio
//! runtime, its own accept loop on every listener and its own upstream connection pool.
//! Nothing on the request path is shared between workers except the ArcSwap snapshot and
//! per-server atomics.

use crate::pool::{Pool, Sender};
use crate::proxy;
use crate::proxy_protocol::{self, Header};
use crate::Shared;
use herd_balance::Rng;
use herd_config::Protocol;
use herd_telemetry::Counter;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// How long a client that must start with a PROXY header may take to send it. A balancer
/// writes it at once; anything slower is a stray client or an attack on our slots.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Worker {
    pub shared: Arc<Shared>,
    pub pool: Pool,
    pub rng: RefCell<Rng>,
    connections: Cell<usize>,
    idle: Notify,
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
    /// ACL refusals and per-IP connection counts (traffic.rs).
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

/// A bound listening socket per listener (same order as the config's listeners).
pub type ListenerSockets = Vec<std::net::TcpListener>;

pub fn spawn(
    index: usize,
    shared: Arc<Shared>,
    sockets: ListenerSockets,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("herd-worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "worker runtime failed to start");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(index, shared, sockets));
        })
}

async fn run(index: usize, shared: Arc<Shared>, sockets: ListenerSockets) {
    let seed = shared.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let worker = Rc::new(Worker {
        shared: shared.clone(),
        pool: Pool::default(),
        rng: RefCell::new(Rng::new(seed)),
        connections: Cell::new(0),
        idle: Notify::new(),
    });
    for (li, socket) in sockets.into_iter().enumerate() {
        match TcpListener::from_std(socket) {
            Ok(l) => {
                tokio::task::spawn_local(accept_loop(worker.clone(), li, l));
            }
            Err(e) => tracing::error!(error = %e, "cannot register listener"),
        }
    }
    tokio::task::spawn_local(sweep_pool(worker.clone()));
    let mut stop = shared.shutdown.subscribe();
    let _ = stop.wait_for(|s| *s).await;
    // Accept loops have stopped; each HTTP connection finishes its in-flight request and
    // closes, TCP pairs run on. The process-wide drain timeout bounds this wait.
    while worker.connections.get() > 0 {
        worker.idle.notified().await;
    }
}

/// Once a second, close this worker's pooled connections that idled past their timeout.
async fn sweep_pool(w: Rc<Worker>) {
    let mut stop = w.shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => w.pool.sweep(crate::clock::now_ms()),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn accept_loop(w: Rc<Worker>, li: usize, listener: TcpListener) {
    let mut stop = w.shared.shutdown.subscribe();
    // Bound to one address, every connection's local address is that one: no
    // getsockname per connection. A wildcard bind has to ask.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let local = bound.unwrap_or_else(|| stream.local_addr().unwrap_or(peer));
                    admit(&w, li, stream, peer, local)
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Take a slot under `max_connections` (or close at once) and start the listener's kind
/// of session. The listener set never changes without a restart, so its protocol is fixed.
fn admit(w: &Rc<Worker>, li: usize, stream: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let snap = w.shared.snapshot.load();
    let (Some(cfg), Some(stats)) = (
        snap.config.listeners.get(li),
        w.shared.listener_stats.get(li),
    ) else {
        return;
    };
    let Ok(per_ip) = crate::traffic::admit_connection(&w.shared, li, cfg, peer.ip()) else {
        return;
    };
    // Reserve first, check after: two workers racing for the last slot cannot both win.
    let open = stats.active.fetch_add(1, Ordering::Relaxed);
    if cfg.max_connections.is_some_and(|max| open >= max as i64) {
        stats.active.fetch_sub(1, Ordering::Relaxed);
        stats.rejected.inc();
        tracing::debug!(listener = %cfg.name, client = %peer, "connection refused: max_connections reached");
        return;
    }
    stats.accepted.inc();
    let mut slot = ConnSlot::new(w.clone(), li);
    slot.per_ip = per_ip;
    let _ = stream.set_nodelay(true);
    match cfg.protocol {
        Protocol::Http => {
            tokio::task::spawn_local(serve_http(w.clone(), li, stream, peer, local, slot));
        }
        Protocol::Https => {
            tokio::task::spawn_local(crate::tls::serve(w.clone(), li, stream, peer, local, slot));
        }
        Protocol::Tcp => {
            tokio::task::spawn_local(crate::tcp::serve(w.clone(), li, stream, peer, local, slot));
        }
    }
}

/// A client connection's place in the counters; given back when the session ends, however
/// it ends.
pub struct ConnSlot {
    w: Rc<Worker>,
    li: usize,
    /// This connection's count under `max_conns_per_ip`, given back with the slot.
    per_ip: Option<crate::traffic::PerIpSlot>,
}

impl ConnSlot {
    fn new(w: Rc<Worker>, li: usize) -> ConnSlot {
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

/// The real client and destination of a connection whose listener expects a PROXY header,
/// plus the bytes read past the header. None (connection to be closed) if it is bad.
pub async fn accept_proxy_header(
    w: &Worker,
    li: usize,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    match proxy_protocol::read_header(stream, PROXY_HEADER_TIMEOUT).await {
        Ok((
            Header::Proxied {
                source,
                destination,
            },
            rest,
        )) => Some((source, destination, rest)),
        Ok((Header::Local, rest)) => Some((peer, local, rest)),
        Err(e) => {
            if let Some(stats) = w.shared.listener_stats.get(li) {
                stats.proxy_errors.inc();
            }
            let snap = w.shared.snapshot.load();
            let name = snap.listeners.get(li).map_or("", |l| l.name.as_str());
            tracing::warn!(listener = name, client = %peer, error = %e, "closing connection: bad PROXY protocol header");
            None
        }
    }
}

async fn serve_http(
    w: Rc<Worker>,
    li: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: ConnSlot,
) {
    let accept_proxy = w
        .shared
        .snapshot
        .load()
        .config
        .listeners
        .get(li)
        .is_some_and(|l| l.accept_proxy_protocol);
    let Some((conn, rest)) =
        client_conn(&w, li, &mut stream, peer, local, accept_proxy, false).await
    else {
        return;
    };
    // One call, pinned in place: this future's size is every connection task's size.
    std::pin::pin!(crate::h2::serve_plain(w, li, stream, rest, conn, slot)).await;
}

/// The client connection as the proxy path sees it, and the bytes read past a PROXY
/// header when the listener expects one. None if that header is bad: close the connection.
pub(crate) async fn client_conn(
    w: &Worker,
    li: usize,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    accept_proxy: bool,
    tls: bool,
) -> Option<(ClientConn, Vec<u8>)> {
    let (client, local, rest) = if accept_proxy {
        accept_proxy_header(w, li, stream, peer, local).await?
    } else {
        (peer, local, Vec::new())
    };
    let conn = ClientConn {
        client,
        local,
        tls,
        private_upstream: RefCell::new(None),
    };
    Some((conn, rest))
}

/// Serve an HTTP/1.x client connection (plain or TLS) until it ends or the gateway stops.
pub(crate) async fn serve_hyper<I>(
    w: Rc<Worker>,
    li: usize,
    io: I,
    conn: Rc<ClientConn>,
    _slot: ConnSlot,
) where
    // Send: hyper hands an upgraded connection over as a boxed Send stream.
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = HttpTimeouts::of(&w, li);
    let peer = conn.client;
    let svc_worker = w.clone();
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if let Some(stats) = svc_worker.shared.listener_stats.get(li) {
            stats.count_request(req.version());
        }
        proxy::handle(
            svc_worker.clone(),
            li,
            conn.clone(),
            req.map(crate::body::UpstreamBody::Client),
        )
    });
    let mut builder = http1::Builder::new();
    // idle_timeout bounds each wait for a request head, header_read_timeout the head from
    // its first byte (slowloris); hyper has one timer, head_timeout.rs splits it in two.
    let clock = crate::head_timeout::HeadClock::new(timeouts.head_read);
    builder
        .timer(crate::head_timeout::HeadTimer::new(clock.clone()))
        .keep_alive(true);
    builder.header_read_timeout(timeouts.idle);
    let io = crate::head_timeout::HeadWatch::new(io, clock.clone());
    // with_upgrades: a 101 answer hands the connection to the WebSocket splice.
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stop: watch::Receiver<bool> = w.shared.shutdown.subscribe();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() && clock.head_expired() {
                    count_header_timeout(&w, li);
                    tracing::debug!(client = %peer, "closing connection: request head not complete within header_read_timeout");
                } else {
                    tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
                }
            }
        }
        _ = stop.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
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
