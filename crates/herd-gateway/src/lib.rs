//! herd's data plane: the L7 HTTP and L4 TCP load balancer. It owns listeners, routing,
//! upstream connection pools, TCP relaying, the PROXY protocol, health checking, session
//! persistence, the admin listener and hot reload.
//!
//! It must not know the registry or the agent (they meet through `herd-api`), and it keeps
//! the request path free of locks: workers read an ArcSwap snapshot and per-server atomics.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod clock;
mod codec;
mod control;
mod http;
mod observe;
mod runtime;
mod session;
mod state;
mod traffic;
mod upstream;

/// Public for the fuzz targets (fuzz/) and the corpus tests: the parsers of bytes that
/// clients and servers send.
pub use codec::{chunked, h1, proxy_protocol, sni};
pub use state::snapshot::check_certificates;

use crate::state::lock::ShortMutex as Mutex;
use arc_swap::ArcSwap;
use control::reload::admin_token;
use herd_config::Config;
use herd_telemetry::{Counter, Gauge, ProcessId};
use runtime::bind::{bind_listener, explain_in_use};
use state::shared::Shared;
use state::snapshot::Snapshot;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where the configuration comes from; a file can be reloaded, embedded text cannot.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    Text { name: String, text: String },
}

impl ConfigSource {
    fn load(&self) -> Result<Config, GatewayError> {
        match self {
            ConfigSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| GatewayError::Read {
                    path: path.display().to_string(),
                    source: e,
                })?;
                Ok(herd_config::parse(&text, &path.display().to_string())?)
            }
            ConfigSource::Text { name, text } => Ok(herd_config::parse(text, name)?),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] herd_config::ConfigError),
    #[error("{0}")]
    Build(#[from] state::snapshot::BuildError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Reload(String),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The drain timeout passed with HTTP requests still open: those clients were cut off,
    /// so the stop was not clean and a supervisor should hear it.
    #[error(
        "drain timeout ({timeout:?}) cut {connections} HTTP client connection(s) with \
         {requests} request(s) in flight to servers; raise gateway.drain_timeout if they \
         need longer"
    )]
    DrainCut {
        timeout: Duration,
        connections: u64,
        requests: u64,
    },
}

/// Where a started gateway listens: printed as the ready line, used by tests.
#[derive(Clone, Debug)]
pub struct Ready {
    pub process_id: String,
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<(String, SocketAddr)>,
}

impl Ready {
    pub fn to_json(&self) -> String {
        let listeners: serde_json::Map<String, serde_json::Value> = self
            .listeners
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::Value::String(a.to_string())))
            .collect();
        serde_json::json!({
            "event": "ready",
            "role": "gateway",
            "process_id": self.process_id,
            "pid": std::process::id(),
            "admin": self.admin.map(|a| a.to_string()),
            "listeners": listeners,
        })
        .to_string()
    }
}

/// Run the gateway until SIGTERM/SIGINT: bind, start workers, serve the admin listener,
/// check health, reload on SIGHUP. `on_ready` is called once everything listens.
pub fn run(source: ConfigSource, on_ready: impl FnOnce(&Ready)) -> Result<(), GatewayError> {
    let config = source.load()?;
    let token = admin_token(&config)?;
    let snap = Snapshot::build(config, 1, None)?;
    let workers = snap.config.gateway.workers;
    let drain_timeout = snap.config.gateway.drain_timeout;
    // The queue is sized once: a reload may turn tracing on, off or elsewhere, not resize it.
    let max_queue = snap.config.tracing.as_ref().map_or(8192, |t| t.max_queue);

    let mut per_worker: Vec<runtime::worker::ListenerSockets> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut listener_addrs = Vec::new();
    for l in &snap.config.listeners {
        let (addr, sockets) =
            bind_listener(&l.bind, workers, l.reuse_port).map_err(|e| GatewayError::Bind {
                what: format!("listener {}", l.name),
                addr: l.bind.clone(),
                source: e,
            })?;
        listener_addrs.push((l.name.clone(), addr));
        for (w, s) in sockets.into_iter().enumerate() {
            per_worker[w].push(s);
        }
    }
    let admin_socket = match &snap.config.admin {
        Some(a) => Some(
            std::net::TcpListener::bind(&a.listen)
                .and_then(|s| s.set_nonblocking(true).map(|_| s))
                .map_err(|e| GatewayError::Bind {
                    what: "admin".into(),
                    addr: a.listen.clone(),
                    source: explain_in_use(e, "; stop it or choose another admin.listen"),
                })?,
        ),
        None => None,
    };
    let admin_addr = admin_socket.as_ref().and_then(|s| s.local_addr().ok());
    if let Some(addr) =
        admin_addr.filter(|a| control::admin_auth::is_exposed(*a) && token.is_none())
    {
        tracing::warn!(
            admin = %addr,
            "the admin listener is reachable from other machines and has no token: anyone who \
             can reach it can drain servers and reload the configuration; bind it to 127.0.0.1 \
             or set [admin] token_file"
        );
    }
    let port = listener_addrs.first().map_or(0, |(_, a)| a.port());
    let process_id = ProcessId::new(port);
    let (shutdown, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snap),
        source,
        seed: process_id.seed(),
        process_id,
        shutdown,
        client_connections: Gauge::new(),
        reloads_ok: Counter::new(),
        reloads_failed: Counter::new(),
        revision: AtomicU64::new(1),
        reload_lock: Mutex::new(()),
        health_tasks: Mutex::new(Vec::new()),
        discovered: Mutex::new(HashMap::new()),
        discovery_tasks: Mutex::new(Vec::new()),
        listener_stats: listener_addrs
            .iter()
            .map(|_| state::shared::ListenerStats::default())
            .collect(),
        listener_addrs: listener_addrs.clone(),
        admin_addr,
        admin_token: arc_swap::ArcSwapOption::new(token.map(Arc::new)),
        workers,
        spans: Arc::new(state::spans::SpanQueue::new(max_queue)),
    });

    let mut handles = Vec::with_capacity(workers);
    for (i, sockets) in per_worker.into_iter().enumerate() {
        handles.push(
            runtime::worker::spawn(i, shared.clone(), sockets).map_err(GatewayError::Runtime)?,
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    rt.block_on(async {
        let snap = shared.snapshot.load_full();
        shared.restart_health_checks(&snap);
        shared.restart_discovery(&snap);
        let _ticker = control::health::spawn_ticker(shared.clone());
        let _exporter = control::export::spawn(shared.clone());
        if let Some(sock) = admin_socket {
            control::admin::spawn(shared.clone(), sock).map_err(GatewayError::Runtime)?;
        }
        // Before "ready": a supervisor may signal as soon as it hears it, and until the
        // handlers exist SIGTERM and SIGHUP still kill the process outright.
        let signals = Signals::install().map_err(GatewayError::Runtime)?;
        let ready = Ready {
            process_id: shared.process_id.to_string(),
            admin: admin_addr,
            listeners: listener_addrs,
        };
        tracing::info!(process_id = %ready.process_id, workers, "gateway ready");
        on_ready(&ready);
        wait_for_signals(&shared, signals).await;
        Ok::<(), GatewayError>(())
    })?;

    // Stop accepting, let in-flight requests finish, bounded by the drain timeout; TCP
    // pairs have no request boundary to stop at, so they run until it ends.
    let _ = shared.shutdown.send(true);
    tracing::info!(?drain_timeout, "draining in-flight requests");
    let deadline = crate::clock::now() + drain_timeout;
    let mut unfinished = Vec::new();
    for h in handles {
        while !h.is_finished() && crate::clock::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        } else {
            unfinished.push(h);
        }
    }
    drain_result(&shared, drain_timeout, unfinished)
}

/// What the drain left behind. Workers still running at the deadline hold connections
/// that returning now (and the process exiting) cuts off. HTTP connections still open are
/// requests cut short (idle ones were closed at the signal): an unclean stop, returned as
/// an error. TCP pairs have no request boundary, and the drain timeout is their documented
/// end, so closing them is only logged.
fn drain_result(
    shared: &Shared,
    drain_timeout: Duration,
    unfinished: Vec<std::thread::JoinHandle<()>>,
) -> Result<(), GatewayError> {
    if unfinished.is_empty() {
        tracing::info!("gateway stopped");
        return Ok(());
    }
    let snap = shared.snapshot.load();
    let listeners = &snap.config.listeners;
    let (mut http, mut tcp_pairs) = (0u64, 0u64);
    // listener_stats is indexed like the listeners, which a reload cannot change.
    for (l, stats) in listeners.iter().zip(&shared.listener_stats) {
        let open = u64::try_from(stats.active.load(Ordering::Relaxed)).unwrap_or(0);
        match l.protocol {
            herd_config::Protocol::Tcp => tcp_pairs += open,
            herd_config::Protocol::Http | herd_config::Protocol::Https => http += open,
        }
    }
    if tcp_pairs > 0 {
        tracing::info!(
            tcp_pairs,
            "drain timeout reached: closing TCP pairs still relaying"
        );
    }
    if http == 0 {
        tracing::info!("gateway stopped");
        return Ok(());
    }
    // Requests waiting on servers, not counting the backends of tcp listeners (their
    // in-flight count is pairs). A backend shared by both kinds counts whole; one a reload
    // removed is not counted (its clients are, in the connections above).
    let tcp_backends: std::collections::HashSet<&str> = listeners
        .iter()
        .filter(|l| l.protocol == herd_config::Protocol::Tcp)
        .filter_map(|l| l.backend.as_deref())
        .collect();
    let requests: u64 = snap
        .groups
        .iter()
        .filter(|(name, _)| !tcp_backends.contains(name.as_str()))
        .flat_map(|(_, g)| g.servers.0.iter())
        .map(|s| u64::from(s.load.in_flight()))
        .sum();
    tracing::error!(
        connections = http,
        requests,
        ?drain_timeout,
        "gateway stopped: drain timeout cut HTTP connections with requests in flight"
    );
    Err(GatewayError::DrainCut {
        timeout: drain_timeout,
        connections: http,
        requests,
    })
}

/// The signals the gateway acts on: SIGTERM and SIGINT drain and stop, SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

async fn wait_for_signals(shared: &Arc<Shared>, signals: Signals) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = shared.reload();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
