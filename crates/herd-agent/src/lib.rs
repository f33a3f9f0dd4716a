//! `herd agent`: runs on every machine that runs services. It joins the cluster by
//! registering its node on a lease (its heartbeat, with cores, memory, load and port
//! range), reads what the controller assigned to it, and runs each assigned instance as a
//! child process in its own process group: files, ports, logs, health, the catalog entry,
//! restarts with backoff, a graceful stop.
//!
//! It talks to the registry only through herd-api, like any client; it must not import the
//! registry's server, the controller or the gateway. What to do on a crash is
//! herd-agent-core's decision (pure); this crate does the I/O.

pub mod admin;
pub mod health;
pub mod instance;
pub mod logs;
pub mod machine;
pub mod ports;
pub mod process;
pub mod report;

use herd_api::wire::{keys, Assignment, KvRange, LeaseAnswer, LeaseGrantRequest, NodeReport};
use herd_api::{ApiError, RegistryClient};
use http::Method;
use instance::{now_ms, Ctx};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub servers: Vec<String>,
    pub token: Option<String>,
    /// Speak TLS to the registry with this CA (and certificate, when it has one).
    pub tls: Option<Arc<herd_api::TlsMaterial>>,
    pub data_dir: PathBuf,
    /// The node's name in the cluster (default: the host name).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Where this machine's instances are reached (their catalog address).
    pub address: String,
    pub ports: (u16, u16),
    /// The node lease's TTL: the controller moves this node's instances elsewhere this
    /// long after the agent last renewed it.
    pub lease_ttl: Duration,
    /// Where the agent's own HTTP listener binds (status, metrics, logs); port 0 picks one.
    pub admin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("data dir {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("registry: {0}")]
    Registry(#[from] ApiError),
    #[error("{0}")]
    Tls(#[from] herd_api::TlsError),
    #[error("cannot listen on {addr} (--admin): {reason}")]
    Admin { addr: String, reason: String },
}

/// How often the agent reads its assignments.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How often the node report (its load) is refreshed.
const REPORT_EVERY: Duration = Duration::from_secs(10);

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Run until `shutdown` resolves; then stop every instance gracefully and leave.
pub async fn run(
    opts: AgentOptions,
    on_ready: impl FnOnce(&NodeReport),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::DataDir {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let ledger = Arc::new(process::Ledger::open(&dir));
    // What a previous run left running: adopted when still assigned here as it is, else
    // stopped, once the assignments are known.
    let mut left: HashMap<String, process::Recorded> = ledger
        .survivors()
        .into_iter()
        .map(|r| (r.instance.clone(), r))
        .collect();
    if !left.is_empty() {
        tracing::info!(
            count = left.len(),
            "agent: a previous run left instances running; adopting those still assigned here"
        );
    }
    if let Some(tls) = &opts.tls {
        tls.watch();
    }
    let client =
        RegistryClient::maybe_tls(opts.servers.clone(), opts.token.clone(), opts.tls.as_ref())?;
    let ports = ports::Ports::new(opts.ports.0, opts.ports.1);
    let started_ms = now_ms();
    // With its own certificate the agent's listener speaks TLS too (clients' certificates
    // optional: the token guards it, as on plain HTTP).
    let admin_tls = match &opts.tls {
        Some(t) if t.files().cert.is_some() => Some(Arc::new(t.server_config(false)?)),
        _ => None,
    };
    let scheme = if admin_tls.is_some() { "https://" } else { "" };
    let (admin_addr, _admin) = admin::serve(
        &opts.admin,
        Arc::new(admin::Admin {
            node: opts.name.clone(),
            dir: dir.clone(),
            token: opts.token.clone(),
            ledger: ledger.clone(),
            started_ms,
        }),
        admin_tls,
    )
    .await
    .map_err(|e| AgentError::Admin {
        addr: opts.admin.clone(),
        reason: e.to_string(),
    })?;
    // Bound to every address: others reach it where they reach this node's instances.
    let admin_advertised = if admin_addr.ip().is_unspecified() {
        format!("{scheme}{}:{}", opts.address, admin_addr.port())
    } else {
        format!("{scheme}{admin_addr}")
    };
    let node = NodeReport {
        name: opts.name.clone(),
        address: opts.address.clone(),
        labels: opts.labels.clone(),
        cores: machine::cores(),
        memory_bytes: machine::memory_bytes(),
        load: machine::load_per_core(),
        ports: ports.range(),
        started_ms,
        version: env!("CARGO_PKG_VERSION").to_string(),
        admin: Some(admin_advertised),
    };
    let lease = join(&client, &node, opts.lease_ttl).await?;
    let (lease_tx, lease_rx) = watch::channel(lease);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        node: opts.name.clone(),
        address: opts.address.clone(),
        dir,
        ports,
        ledger,
        lease: lease_rx,
    });
    on_ready(&node);
    let keeper = tokio::spawn(keep_alive(
        client.clone(),
        node.clone(),
        opts.lease_ttl,
        lease_tx,
    ));
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        match assignments(&client, &opts.name).await {
            Ok(list) => {
                reconcile(&ctx, list, &mut running, &mut stopping, &mut left);
                for (_, r) in left.drain() {
                    let ctx = ctx.clone();
                    stopping.push(tokio::spawn(async move {
                        process::stop_left(&ctx.ledger, &r, Duration::from_secs(10)).await;
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent: cannot read assignments; keeping what runs")
            }
        }
        stopping.retain(|t| !t.is_finished());
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("agent: stopping every instance");
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        stopping.push(r.task);
    }
    for t in stopping {
        let _ = t.await;
    }
    keeper.abort();
    let lease = *ctx.lease.borrow();
    let _ = client
        .call(Method::DELETE, &format!("/v1/lease/{lease}"), Vec::new())
        .await;
    Ok(())
}

fn reconcile(
    ctx: &Arc<Ctx>,
    list: Vec<Assignment>,
    running: &mut HashMap<String, Running>,
    stopping: &mut Vec<JoinHandle<()>>,
    left: &mut HashMap<String, process::Recorded>,
) {
    let wanted: HashMap<String, Assignment> =
        list.into_iter().map(|a| (a.instance.clone(), a)).collect();
    let gone: Vec<String> = running
        .keys()
        .filter(|id| !wanted.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        if let Some(r) = running.remove(&id) {
            tracing::info!(instance = %id, "agent: no longer assigned here; stopping");
            let _ = r.stop.send(true);
            stopping.push(r.task);
        }
    }
    for (id, a) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        // Adopt a process a previous run left only if it runs exactly this assignment.
        let adopt = match left.remove(&id) {
            Some(r) if r.version == a.version && r.manifest == a.manifest => Some(r),
            Some(r) => {
                let ctx = ctx.clone();
                stopping.push(tokio::spawn(async move {
                    process::stop_left(&ctx.ledger, &r, Duration::from_secs(10)).await;
                }));
                None
            }
            None => None,
        };
        if adopt.is_none() {
            tracing::info!(instance = %id, service = %a.service, version = %a.version, "agent: assigned here; starting");
        }
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(instance::run(ctx.clone(), a, rx, adopt));
        running.insert(id, Running { stop, task });
    }
}

async fn assignments(client: &RegistryClient, node: &str) -> Result<Vec<Assignment>, ApiError> {
    let r: KvRange = client
        .get(
            Method::GET,
            &format!("/v1/kv/{}?prefix", keys::assignments_of(node)),
        )
        .await?;
    Ok(r.kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// A new lease with the node's report on it.
async fn join(client: &RegistryClient, node: &NodeReport, ttl: Duration) -> Result<u64, ApiError> {
    let lease: LeaseAnswer = client
        .send(
            Method::POST,
            "/v1/lease",
            &LeaseGrantRequest {
                ttl_s: ttl.as_secs_f64(),
            },
        )
        .await?;
    put_node(client, node, lease.id).await?;
    Ok(lease.id)
}

async fn put_node(client: &RegistryClient, node: &NodeReport, lease: u64) -> Result<(), ApiError> {
    client
        .call(
            Method::PUT,
            &format!("/v1/kv/{}?lease={lease}", keys::node(&node.name)),
            serde_json::to_vec(node).unwrap_or_default(),
        )
        .await
        .map(|_| ())
}

/// Renew the node's lease at a third of its TTL; refresh the report's load now and then;
/// when the lease was lost anyway (the registry was out of reach longer than the TTL),
/// join again and hand every instance the new lease.
async fn keep_alive(
    client: RegistryClient,
    mut node: NodeReport,
    ttl: Duration,
    lease: watch::Sender<u64>,
) {
    let every = ttl / 3;
    // A node that takes longer than a renewal's period to answer (paused, cut off with no
    // reset) is passed over for the next: waiting on it would let the lease lapse and the
    // controller move every instance away. A renewal is safe to send twice.
    let client = client.with_timeout(every);
    let mut last_report = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let id = *lease.borrow();
        let path = format!("/v1/lease/{id}/keepalive");
        match client.call(Method::POST, &path, Vec::new()).await {
            Ok(_) => {
                if last_report.elapsed() >= REPORT_EVERY {
                    node.load = machine::load_per_core();
                    let _ = put_node(&client, &node, id).await;
                    last_report = tokio::time::Instant::now();
                }
            }
            Err(e) if e.status() == Some(404) => {
                tracing::warn!("agent: the node's lease expired; joining again");
                match join(&client, &node, ttl).await {
                    Ok(new) => {
                        let _ = lease.send(new);
                    }
                    Err(e) => tracing::warn!(error = %e, "agent: joining again failed; retrying"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent: renewing the node's lease failed; retrying")
            }
        }
    }
}
