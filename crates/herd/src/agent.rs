//! `herd agent`, and the controller every `herd server` runs beside its registry.

use crate::client::Target;
use crate::exit::Usage;
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub target: Target,
    /// Where instances' files, logs and the process ledger live.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "herd-agent",
        env = "HERD_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Labels placement can ask for, e.g. zone=a,disk=ssd.
    #[arg(long, value_name = "K=V,...", default_value = "")]
    pub labels: String,
    /// The node's name in the cluster (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// The address other machines reach this node's instances at.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// The ports handed to instances.
    #[arg(long, value_name = "FIRST-LAST", default_value = "21000-21999")]
    pub ports: String,
    /// The node's heartbeat lease, seconds: its instances move elsewhere this long after the
    /// agent is lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub lease_ttl: f64,
    /// The agent's own HTTP listener: /healthz, /status, /metrics and the instances'
    /// logs (what `herd logs` reads from other machines); port 0 picks one. With a token,
    /// all but /healthz need it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub admin: String,
}

fn labels(text: &str) -> Result<BTreeMap<String, String>, Usage> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Usage(format!("--labels: \"{pair}\" is not key=value")))?;
        if k.is_empty() {
            return Err(Usage(format!("--labels: \"{pair}\" has an empty key")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn port_range(text: &str) -> Result<(u16, u16), Usage> {
    let bad = || Usage(format!("--ports {text}: use FIRST-LAST, e.g. 21000-21999"));
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

pub fn run(a: AgentArgs) -> anyhow::Result<()> {
    if !(a.lease_ttl.is_finite() && (1.0..=300.0).contains(&a.lease_ttl)) {
        return Err(Usage(format!("--lease-ttl {}: use 1 to 300 seconds", a.lease_ttl)).into());
    }
    let name = a.name.clone().unwrap_or_else(host_name);
    if !herd_agent_core::manifest::valid_service_name(&name) {
        return Err(Usage(format!(
            "node name \"{name}\": use 1-63 lower-case letters, digits and '-' (--name)"
        ))
        .into());
    }
    let opts = herd_agent::AgentOptions {
        servers: a.target.servers(),
        token: a.target.token(),
        tls: a.target.tls()?,
        data_dir: a.data_dir.clone(),
        name,
        labels: labels(&a.labels)?,
        address: a.address.clone(),
        ports: port_range(&a.ports)?,
        lease_ttl: Duration::from_secs_f64(a.lease_ttl),
        admin: a.admin.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = interrupted();
        herd_agent::run(
            opts,
            |node| {
                let line = serde_json::json!({
                    "event": "ready",
                    "role": "agent",
                    "name": node.name,
                    "labels": node.labels,
                    "ports": node.ports,
                    "admin": node.admin,
                    "pid": std::process::id(),
                });
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            },
            shutdown,
        )
        .await
    })?;
    Ok(())
}

/// Resolves at SIGTERM or SIGINT.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The controller of a `herd server`, on its own thread and runtime: it is a client of the
/// registry beside it (over HTTP, as any other) and campaigns to be the one that acts.
pub fn start_controller(
    addr: String,
    token: Option<String>,
    tls: Option<std::sync::Arc<herd_api::TlsMaterial>>,
) {
    let spawned = std::thread::Builder::new()
        .name("herd-controller".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                tracing::error!(
                    "controller: cannot build its runtime; this server will not control"
                );
                return;
            };
            let client = match herd_api::RegistryClient::maybe_tls(
                vec![addr.clone()],
                token,
                tls.as_ref(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "controller: this server will not control");
                    return;
                }
            };
            rt.block_on(herd_controller::run(client, addr));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "controller: cannot start its thread");
    }
}
