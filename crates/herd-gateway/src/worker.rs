//! Thread-per-core data plane: each worker is one OS thread with a current-thread tokio
//! runtime, its own accept loop on every listener and its own upstream connection pool.
//! Nothing on the request path is shared between workers except the ArcSwap snapshot and
//! per-server atomics.

use crate::pool::Pool;
use crate::proxy;
use crate::Shared;
use herd_balance::Rng;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub struct Worker {
    pub shared: Arc<Shared>,
    pub pool: Pool,
    pub rng: RefCell<Rng>,
    connections: Cell<usize>,
    idle: Notify,
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
    let mut stop = shared.shutdown.subscribe();
    let _ = stop.wait_for(|s| *s).await;
    // Accept loops have stopped; each connection finishes its in-flight request and
    // closes. The process-wide drain timeout bounds this wait.
    while worker.connections.get() > 0 {
        worker.idle.notified().await;
    }
}

async fn accept_loop(w: Rc<Worker>, li: usize, listener: TcpListener) {
    let mut stop = w.shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(serve(w.clone(), li, stream, peer));
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

async fn serve(w: Rc<Worker>, li: usize, stream: tokio::net::TcpStream, peer: SocketAddr) {
    w.connections.set(w.connections.get() + 1);
    w.shared.client_connections.inc();
    let idle_timeout = w
        .shared
        .snapshot
        .load()
        .config
        .listeners
        .get(li)
        .map(|l| l.idle_timeout);
    let svc_worker = w.clone();
    let svc = service_fn(move |req| proxy::handle(svc_worker.clone(), li, peer, req));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    builder.header_read_timeout(idle_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut stop: watch::Receiver<bool> = w.shared.shutdown.subscribe();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
            }
        }
        _ = stop.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    w.shared.client_connections.dec();
    let n = w.connections.get() - 1;
    w.connections.set(n);
    if n == 0 {
        w.idle.notify_one();
    }
}
