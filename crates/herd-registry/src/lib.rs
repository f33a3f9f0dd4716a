//! herd's control plane: the Raft-replicated registry (`herd server`). It owns consensus
//! (openraft), durable storage (its own write-ahead log + snapshot files), the HTTP/JSON
//! API under /v1/, leases, watches and cluster membership.
//!
//! It must not know the gateway or the agent: they are clients of its API like any other.
//! The state machine's logic lives in `herd-registry-core` (pure, deterministic); this crate
//! is the I/O around it, on two floors: `raft/` (the node, peers, the write-ahead log, the
//! state machine, batching) at the bottom, and `api/` (HTTP) and `dns/` on it, never
//! importing each other (tests/layers.rs checks it). This file starts and stops a node.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// openraft's storage traits fix StorageError (large) as the error type; boxing it at our
// edges would only add allocations on the write path.
#![allow(clippy::result_large_err)]

mod api;
mod dns;
mod raft;
mod telemetry;
pub use telemetry::DEFAULT_MAX_SPANS;

use axum::serve::ListenerExt;
use raft::node::RegistryNode;
use raft::types::{Node, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of snapshot per InstallSnapshot request (raw on the wire, see `network`).
const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;

// What peers send must fit what peers accept: a snapshot chunk with its header, and an
// AppendEntries batch or a single entry (at most a client request, re-encoded as JSON).
const _: () = assert!((SNAPSHOT_CHUNK_BYTES as usize) + (64 << 10) < api::MAX_RAFT_BODY_BYTES);
const _: () = assert!(
    raft::log_store::MAX_APPEND_BYTES + 2 * api::MAX_REQUEST_BYTES < api::MAX_RAFT_BODY_BYTES
);

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    /// Address for the API, admin and peer traffic; port 0 picks one.
    pub listen: String,
    /// Any member of an existing cluster, to join it on first start.
    pub join: Option<String>,
    /// When set, every call but /healthz needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// A token that may only read (GET, watch, /metrics) and send spans.
    pub read_token: Option<String>,
    /// Listen where other machines can reach the registry with no token. Without it, such
    /// a start is refused: anyone reaching the port could rewrite what every agent runs and
    /// take over the cluster's membership.
    pub insecure: bool,
    /// Spans kept in memory for trace queries (whole traces evicted oldest first).
    pub trace_spans: usize,
    /// Serve the catalog over DNS (UDP and TCP) on this address; port 0 picks one.
    pub dns: Option<String>,
    /// Serve clients and peers over TLS, and speak TLS to peers.
    pub tls: Option<ServerTls>,
}

/// TLS for a server: its certificate and key, and the cluster's CA, which its peers'
/// certificates must chain to (and its clients', when they are required).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// Loaded by the caller, who may share it (the controller beside the node presents the
    /// node's certificate); the node reloads it when its files change.
    pub material: Arc<herd_api::TlsMaterial>,
    /// A client must present a certificate the CA signed, else its handshake fails. Peers
    /// always present theirs.
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("data dir {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}; is another process using it?")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("joining via {via}: {reason}")]
    Join { via: String, reason: String },
    #[error(
        "{addr} can be reached from other machines and no token is set: anyone who can reach \
         it could read and change everything, deployments and membership included; set an \
         admin token (--token-file), or require client certificates (--tls-cert/--tls-key/\
         --tls-ca with --tls-client-auth required; see docs/security.md), listen on \
         127.0.0.1, or pass --insecure to run open anyway"
    )]
    Insecure { addr: String },
    #[error("{0}")]
    Tls(#[from] herd_api::TlsError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// What a started node reports (the ready line).
#[derive(Clone, Debug)]
pub struct ServerReady {
    pub id: u64,
    pub addr: SocketAddr,
    pub process_id: String,
    /// Where DNS is served, when it is.
    pub dns: Option<SocketAddr>,
}

impl ServerReady {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "event": "ready",
            "role": "server",
            "id": self.id,
            "addr": self.addr.to_string(),
            "process_id": self.process_id,
            "pid": std::process::id(),
            "dns": self.dns.map(|a| a.to_string()),
        })
        .to_string()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NodeFile {
    id: NodeId,
    /// Set once this node is a member (bootstrapped or joined), so a restart does not
    /// bootstrap or join again.
    member: bool,
}

fn data_err(dir: &std::path::Path, reason: impl ToString) -> RegistryError {
    RegistryError::DataDir {
        path: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Run a registry node until SIGTERM/SIGINT.
pub fn run(opts: ServerOptions, on_ready: impl FnOnce(&ServerReady)) -> Result<(), RegistryError> {
    let rt = runtime()?;
    rt.block_on(async {
        // Before "ready": a supervisor may signal as soon as it hears it, and until the
        // handlers exist SIGTERM kills the process without the orderly stop.
        let signals = stop_signals().map_err(RegistryError::Runtime)?;
        serve(opts, on_ready, wait_for_stop(signals)).await
    })
}

/// Run a registry node until `stop` resolves: a node hosted inside another program (a
/// test harness running several nodes in one process).
pub fn run_until(
    opts: ServerOptions,
    on_ready: impl FnOnce(&ServerReady),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RegistryError> {
    runtime()?.block_on(serve(opts, on_ready, stop))
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

async fn serve(
    opts: ServerOptions,
    on_ready: impl FnOnce(&ServerReady),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RegistryError> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| data_err(&dir, e))?;
    let std_listener =
        std::net::TcpListener::bind(&opts.listen).map_err(|e| RegistryError::Bind {
            addr: opts.listen.clone(),
            source: e,
        })?;
    std_listener
        .set_nonblocking(true)
        .map_err(RegistryError::Runtime)?;
    let addr = std_listener.local_addr().map_err(RegistryError::Runtime)?;
    let tls = opts.tls.as_ref().map(|t| t.material.clone());
    let client = raft::network::HttpClient::new(tls.as_ref())?;
    // Only holders of a certificate from the cluster's CA can connect at all: as good a
    // secret as a token.
    let closed_by_certs = opts.tls.as_ref().is_some_and(|t| t.require_client_cert);
    if !addr.ip().is_loopback() && opts.token.is_none() && !closed_by_certs {
        if !opts.insecure {
            return Err(RegistryError::Insecure {
                addr: addr.to_string(),
            });
        }
        tracing::warn!(
            %addr,
            "running open with --insecure: anyone who can reach this address can read and change \
             everything, deployments and membership included"
        );
    }
    let advertised = addr.to_string();
    let dns_sockets = match &opts.dns {
        Some(a) => Some(dns::bind(a).await.map_err(|e| RegistryError::Bind {
            addr: a.clone(),
            source: e,
        })?),
        None => None,
    };
    let dns_addr = dns_sockets.as_ref().map(|s| s.addr);

    let node_path = dir.join("node.json");
    let mut node_file: NodeFile = match std::fs::read(&node_path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| data_err(&dir, format!("node.json: {e}")))?
        }
        Err(_) => {
            let id = match &opts.join {
                None => 1,
                Some(via) => ask_node_id(&client, via, opts.token.as_deref()).await?,
            };
            NodeFile { id, member: false }
        }
    };
    write_node_file(&node_path, &node_file)?;

    let log_store = raft::log_store::LogStore::open(&dir).map_err(|e| data_err(&dir, e))?;
    let log_handle = log_store.clone();
    let sm = raft::state_machine::StateMachine::open(dir.clone()).map_err(|e| data_err(&dir, e))?;
    let shared = sm.shared.clone();
    let config = openraft::Config {
        cluster_name: "herd".into(),
        // openraft 0.9 also uses the heartbeat interval as the timeout of every
        // AppendEntries, so it must fit one batch (raft::log_store::MAX_APPEND_BYTES, or one
        // value of 1 MiB) being sent, decoded and fsynced by the follower: 100 ms did not
        // in debug builds. 150 ms does.
        heartbeat_interval: 150,
        // A follower whose leader was elected (a committed vote) waits the leader lease,
        // which openraft 0.9 sets to election_timeout_max, plus its own election timeout
        // before it campaigns: 400 + 250..400 = 650-800 ms of silence, then one round.
        // With 600-900 it was 1.5-1.8 s, measured (bench/cluster.py), against the 1 s
        // failover target of SPEC §6.
        election_timeout_min: 250,
        election_timeout_max: 400,
        // Per snapshot chunk, and for the follower to install the last one.
        install_snapshot_timeout: 30_000,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 500,
        ..Default::default()
    }
    .validate()
    .map_err(|e| RegistryError::Raft(e.to_string()))?;
    let process_id = herd_telemetry::ProcessId::new(addr.port()).to_string();
    let network = raft::network::Network {
        client: client.clone(),
        token: opts.token.clone(),
    };
    let raft = openraft::Raft::new(
        node_file.id,
        Arc::new(config),
        network.clone(),
        log_store,
        sm,
    )
    .await
    .map_err(|e| RegistryError::Raft(e.to_string()))?;
    let node = Arc::new(RegistryNode::new(
        node_file.id,
        advertised.clone(),
        raft.clone(),
        shared,
        network.clone(),
        process_id.clone(),
        log_handle,
    ));

    let listener =
        tokio::net::TcpListener::from_std(std_listener).map_err(RegistryError::Runtime)?;
    let app = api::router(
        node.clone(),
        telemetry::Telemetry::new(opts.trace_spans),
        opts.read_token.clone(),
    )
    .into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let server = match (&tls, &opts.tls) {
        (Some(material), Some(t)) => {
            let config = material.server_config(t.require_client_cert)?;
            // tap_io only so that axum hands handlers the client's address (ConnectInfo).
            let listener = herd_api::TlsListener::new(listener, Arc::new(config))
                .map_err(RegistryError::Runtime)?
                .tap_io(|_| {});
            material.watch();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            })
        }
        _ => tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        }),
    };

    if !node_file.member {
        match &opts.join {
            None => {
                let mut members = BTreeMap::new();
                members.insert(
                    node_file.id,
                    Node {
                        addr: advertised.clone(),
                    },
                );
                if let Err(e) = raft.initialize(members).await {
                    // Already initialized (a restart that lost node.json's flag): carry on.
                    tracing::info!(error = %e, "raft already initialized");
                }
            }
            Some(via) => {
                join(
                    &client,
                    via,
                    node_file.id,
                    &advertised,
                    opts.token.as_deref(),
                )
                .await?
            }
        }
        node_file.member = true;
        write_node_file(&node_path, &node_file)?;
    }
    raft::node::spawn_lease_keeper(node.clone());
    if let Some(sockets) = dns_sockets {
        dns::spawn(node.clone(), sockets, stop_tx.subscribe());
    }

    on_ready(&ServerReady {
        id: node_file.id,
        addr,
        process_id,
        dns: dns_addr,
    });
    stop.await;
    tracing::info!("stopping registry node");
    let _ = stop_tx.send(true);
    let _ = raft.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

fn write_node_file(path: &std::path::Path, f: &NodeFile) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(path);
    let bytes = serde_json::to_vec(f).map_err(|e| data_err(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| data_err(dir, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| data_err(dir, e))?;
    std::fs::rename(&tmp, path).map_err(|e| data_err(dir, e))
}

/// SIGTERM and SIGINT, the two that stop a node.
fn stop_signals() -> std::io::Result<[tokio::signal::unix::Signal; 2]> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok([
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    ])
}

async fn wait_for_stop([mut term, mut int]: [tokio::signal::unix::Signal; 2]) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Why a call to the cluster being joined failed, and whether asking again could help: a
/// refused certificate or token will be refused again.
struct JoinFailure {
    reason: String,
    permanent: bool,
}

impl From<String> for JoinFailure {
    fn from(reason: String) -> JoinFailure {
        JoinFailure {
            reason,
            permanent: false,
        }
    }
}

async fn call_json(
    client: &raft::network::HttpClient,
    via: &str,
    path: &str,
    body: serde_json::Value,
    token: Option<&str>,
) -> Result<serde_json::Value, JoinFailure> {
    use http_body_util::BodyExt;
    let mut b = http::Request::post(client.url(via, path))
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = b
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| {
            let reason = herd_api::tls::error_chain(&e);
            JoinFailure {
                reason: match herd_api::tls::hint(&reason, client.is_tls()) {
                    Some(h) => format!("{reason} ({h})"),
                    None => reason,
                },
                permanent: herd_api::tls::tls_failure(&e).is_some(),
            }
        })?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(JoinFailure {
            reason: format!("{status}: {}", String::from_utf8_lossy(&bytes)),
            permanent: matches!(status.as_u16(), 401 | 403),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string().into())
}

/// Retry for a while: the cluster may be electing a leader right now.
async fn with_retries<T>(
    via: &str,
    mut f: impl FnMut() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, JoinFailure>> + Send>,
    >,
) -> Result<T, RegistryError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.permanent || tokio::time::Instant::now() > deadline => {
                return Err(RegistryError::Join {
                    via: via.to_string(),
                    reason: e.reason,
                })
            }
            Err(e) => {
                tracing::info!(via, error = %e.reason, "join: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn ask_node_id(
    client: &raft::network::HttpClient,
    via: &str,
    token: Option<&str>,
) -> Result<NodeId, RegistryError> {
    let (via_s, token) = (via.to_string(), token.map(str::to_string));
    let v = with_retries(via, || {
        let (via, token, client) = (via_s.clone(), token.clone(), client.clone());
        Box::pin(async move {
            call_json(
                &client,
                &via,
                "/raft/node-id",
                serde_json::json!(null),
                token.as_deref(),
            )
            .await
        })
    })
    .await?;
    v.as_u64().ok_or_else(|| RegistryError::Join {
        via: via.to_string(),
        reason: format!("unexpected node id answer {v}"),
    })
}

async fn join(
    client: &raft::network::HttpClient,
    via: &str,
    id: NodeId,
    addr: &str,
    token: Option<&str>,
) -> Result<(), RegistryError> {
    let (via_s, addr, token) = (via.to_string(), addr.to_string(), token.map(str::to_string));
    with_retries(via, || {
        let (via, addr, token, client) =
            (via_s.clone(), addr.clone(), token.clone(), client.clone());
        Box::pin(async move {
            call_json(
                &client,
                &via,
                "/v1/cluster/members",
                serde_json::to_value(herd_api::wire::JoinRequest { id: Some(id), addr })
                    .unwrap_or_default(),
                token.as_deref(),
            )
            .await
        })
    })
    .await?;
    tracing::info!(id, via, "joined the cluster");
    Ok(())
}
