//! Thread-per-core data plane: each worker is one OS thread with a current-thread tokio
//! runtime, its own accept loop on every listener and its own upstream connection pool.
//! Nothing on the request path is shared between workers except the ArcSwap snapshot and
//! per-server atomics.

use crate::http::context::{ConnSlot, Worker};
use crate::session::accept::client_conn;
use crate::state::shared::Shared;
use crate::upstream::pool::Pool;
use herd_balance::Rng;
use herd_config::Protocol;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

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
    let Ok(per_ip) = crate::http::admit::admit_connection(&w.shared, li, cfg, peer.ip()) else {
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
            tokio::task::spawn_local(crate::session::tls::serve(
                w.clone(),
                li,
                stream,
                peer,
                local,
                slot,
            ));
        }
        Protocol::Tcp => {
            tokio::task::spawn_local(crate::session::tcp::serve(
                w.clone(),
                li,
                stream,
                peer,
                local,
                slot,
            ));
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
    std::pin::pin!(crate::session::h2::serve_plain(
        w, li, stream, rest, conn, slot
    ))
    .await;
}
