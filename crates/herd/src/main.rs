//! The `herd` binary: one command per role, wiring and signals; the roles live in crates.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod agent;
mod cert;
mod client;
mod demo;
mod deploy;
mod exit;
mod keep;
mod logs;
mod telemetry;
mod tls_args;
mod up;

// Every request allocates a little (hyper's header maps, body channels, timers); mimalloc's
// thread-local free lists make that several times cheaper than glibc's bins (measured with
// callgrind in docs/BENCHMARKS.md), and each gateway worker is one thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "herd",
    version,
    about = "One binary that turns a few machines into a load-balanced, self-healing service cluster.",
    after_help = "Start with `herd demo` to see the gateway in front of three local servers."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HERD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the L7 HTTP load balancer from a TOML config (SIGHUP or POST /reload to reload).
    Gateway {
        /// Path to the configuration file.
        #[arg(short, long, value_name = "FILE", env = "HERD_CONFIG")]
        config: PathBuf,
    },
    /// Run a registry node (Raft KV, leases, watch, catalog); a single node needs no setup.
    Server {
        /// Where the Raft log, snapshots and node identity live.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "herd-data",
            env = "HERD_DATA_DIR"
        )]
        data_dir: PathBuf,
        /// Address for the API, admin and peer traffic.
        #[arg(
            long,
            value_name = "ADDR",
            default_value = "127.0.0.1:7400",
            env = "HERD_LISTEN"
        )]
        listen: String,
        /// Any member of an existing cluster, to join it on first start.
        #[arg(long, value_name = "ADDR")]
        join: Option<String>,
        /// Require `Authorization: Bearer <token>` on every call but /healthz. Prefer
        /// --token-file or HERD_TOKEN: a flag is visible to anyone who can list processes.
        #[arg(long, env = "HERD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The admin token, from the first line of this file (see --token).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// A token that may only read (GET, watch, /metrics) and send spans, from this file.
        #[arg(long, value_name = "FILE")]
        read_token_file: Option<PathBuf>,
        /// Start with no token on an address other machines can reach (refused otherwise).
        #[arg(long)]
        insecure: bool,
        /// Spans kept in memory for trace queries; whole traces are evicted oldest first
        /// (a span takes a few hundred bytes). Aggregates do not depend on it.
        #[arg(long, value_name = "N", default_value_t = herd_registry::DEFAULT_MAX_SPANS)]
        trace_spans: usize,
        /// Serve the catalog over DNS (UDP and TCP) on this address, e.g. 127.0.0.1:8600.
        #[arg(long, value_name = "ADDR")]
        dns: Option<String>,
        #[command(flatten)]
        tls: tls_args::ServerTls,
    },
    /// Read and write keys: get, put, del, ls, watch.
    Kv {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Kv,
    },
    /// Leases: grant, keepalive, revoke.
    Lease {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Lease,
    },
    /// Service catalog: register, deregister, ls.
    Svc {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Svc,
    },
    /// Distributed locks with fencing tokens: acquire, release, status.
    Lock {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Lock,
    },
    /// Leader election: campaign, leader, watch, proclaim, resign.
    Election {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Election,
    },
    /// Cluster-unique 64-bit IDs (snowflake).
    Id {
        #[command(flatten)]
        target: client::Target,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 1)]
        count: u64,
    },
    /// Cluster membership: status, add, remove.
    Cluster {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: client::Cluster,
    },
    /// Run this machine's services: join the cluster, run what the controller assigns.
    Agent(agent::AgentArgs),
    /// Apply a service's manifest: deploy it, or roll it to the manifest's version.
    Apply {
        #[command(flatten)]
        target: client::Target,
        #[command(flatten)]
        apply: deploy::ApplyArgs,
    },
    /// Services, their state and every instance (node, pid, port, version, state, health).
    Status {
        #[command(flatten)]
        target: client::Target,
        service: Option<String>,
        /// The API's JSON answer instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// An update: its status, or undo it (roll back, with the dependents it needs).
    Rollout {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: deploy::Rollout,
    },
    /// Replace every instance of a service with a fresh one, one surge at a time.
    Restart {
        #[command(flatten)]
        target: client::Target,
        service: String,
    },
    /// What changed between two cluster revisions.
    Diff {
        #[command(flatten)]
        target: client::Target,
        from: u64,
        to: u64,
    },
    /// The agents alive now, with their machines and labels.
    Nodes {
        #[command(flatten)]
        target: client::Target,
    },
    /// Change how many instances a service runs (within its manifest's min..max).
    Scale {
        #[command(flatten)]
        target: client::Target,
        service: String,
        count: u32,
    },
    /// Stop every instance of a service and remove its deployment.
    Stop {
        #[command(flatten)]
        target: client::Target,
        service: String,
    },
    /// The cluster's revisions (every apply, scale and stop), or those of one service.
    History {
        #[command(flatten)]
        target: client::Target,
        service: Option<String>,
    },
    /// Print what a service's instances wrote, from their agents wherever they run.
    Logs(logs::LogsArgs),
    /// Alerts: those firing now, or store the rules (`apply -f FILE`), or print them.
    Alerts {
        #[command(flatten)]
        target: client::Target,
        #[command(subcommand)]
        cmd: Option<telemetry::Alerts>,
    },
    /// The busiest, slowest or most failing services and endpoints (from traces).
    Top {
        #[command(flatten)]
        target: client::Target,
        #[command(flatten)]
        args: telemetry::TopArgs,
    },
    /// How a service's (or an endpoint's) call durations are spread, from traces.
    Latency {
        #[command(flatten)]
        target: client::Target,
        #[command(flatten)]
        args: telemetry::LatencyArgs,
    },
    /// Which services call which, with rate, errors and p99; dependency cycles flagged.
    Graph {
        #[command(flatten)]
        target: client::Target,
        #[command(flatten)]
        args: telemetry::GraphArgs,
    },
    /// Recent traces, filtered by service, duration or error.
    Traces {
        #[command(flatten)]
        target: client::Target,
        #[command(flatten)]
        args: telemetry::TracesArgs,
    },
    /// One trace as a tree: every span, when it started, how long, and its own time.
    Trace {
        #[command(flatten)]
        target: client::Target,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A tiny HTTP service for the cluster quick start (answers its version).
    #[command(hide = true)]
    DemoApp {
        #[arg(long)]
        listen: Option<String>,
        #[arg(long, default_value = "1.0.0")]
        version: String,
        /// Answer /healthz with 503.
        #[arg(long)]
        unhealthy: bool,
        /// Keep this share of one core busy (0-100), like a service under load: what
        /// autoscaling on CPU reacts to.
        #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        busy: u8,
    },
    /// A cluster CA and the certificates it signs: `init`, then `issue` (no openssl).
    Cert {
        #[command(subcommand)]
        cmd: cert::Cert,
    },
    /// Check a gateway config file and exit: 0 if valid, 2 with every problem listed if not.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// All-in-one: a single-node registry and a gateway routing to a service in it.
    Up {
        #[arg(
            long,
            value_name = "DIR",
            default_value = "herd-data",
            env = "HERD_DATA_DIR"
        )]
        data_dir: PathBuf,
        /// Registry API address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        server_listen: String,
        /// Gateway listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Gateway admin listener.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        /// The registry service the gateway sends traffic to.
        #[arg(long, default_value = "web")]
        service: String,
    },
    /// Zero-setup demo: three local HTTP servers behind the gateway, with health checks.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the admin API (/status, /metrics) listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    // openraft narrates every election at info; its warnings are what an operator needs.
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_ready(ready: &herd_gateway::Ready) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", ready.to_json());
    let _ = out.flush();
}

/// A token from the first line of a file: trimmed, never empty.
fn read_token_file_at(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        anyhow::bail!(
            "the token file {} is empty; write the token on its first line",
            path.display()
        );
    }
    Ok(token)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Gateway { config } => {
            herd_gateway::run(herd_gateway::ConfigSource::File(config), print_ready)
                .map_err(anyhow::Error::from)
        }
        Command::Check { config } => check(&config),
        Command::Cert { cmd } => cert::run(cmd),
        Command::Server {
            data_dir,
            listen,
            join,
            token,
            token_file,
            read_token_file,
            insecure,
            trace_spans,
            dns,
            tls,
        } => (|| {
            let token = match token_file {
                Some(f) => Some(read_token_file_at(&f)?),
                None => token,
            };
            let read_token = read_token_file
                .map(|f| read_token_file_at(&f))
                .transpose()?;
            if read_token.is_some() && token.is_none() {
                anyhow::bail!(
                    "--read-token-file needs an admin token too (--token-file or HERD_TOKEN): \
                     without one the registry is open to everyone and a read-only token means nothing"
                );
            }
            let controller_token = token.clone();
            let tls = tls.options()?;
            let controller_tls = tls.as_ref().map(|t| t.material.clone());
            herd_registry::run(
                herd_registry::ServerOptions {
                    data_dir,
                    listen,
                    join,
                    token,
                    read_token,
                    insecure,
                    trace_spans,
                    dns,
                    tls,
                },
                |ready| {
                    agent::start_controller(
                        ready.addr.to_string(),
                        controller_token,
                        controller_tls,
                    );
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", ready.to_json());
                    let _ = out.flush();
                },
            )
            .map_err(anyhow::Error::from)
        })(),
        Command::Agent(a) => agent::run(a),
        Command::Apply { target, apply } => deploy::run(target, deploy::Call::Apply(apply)),
        Command::Status {
            target,
            service,
            json,
        } => deploy::run(target, deploy::Call::Status { service, json }),
        Command::Nodes { target } => deploy::run(target, deploy::Call::Nodes),
        Command::Rollout { target, cmd } => deploy::run(target, deploy::Call::Rollout(cmd)),
        Command::Restart { target, service } => {
            deploy::run(target, deploy::Call::Restart { service })
        }
        Command::Diff { target, from, to } => deploy::run(target, deploy::Call::Diff { from, to }),
        Command::Scale {
            target,
            service,
            count,
        } => deploy::run(target, deploy::Call::Scale { service, count }),
        Command::Stop { target, service } => deploy::run(target, deploy::Call::Stop { service }),
        Command::History { target, service } => {
            deploy::run(target, deploy::Call::History { service })
        }
        Command::Logs(l) => logs::run(l),
        Command::Alerts { target, cmd } => telemetry::run(
            target,
            telemetry::Call::Alerts(cmd.unwrap_or(telemetry::Alerts::List { json: false })),
        ),
        Command::Top { target, args } => telemetry::run(target, telemetry::Call::Top(args)),
        Command::Latency { target, args } => telemetry::run(target, telemetry::Call::Latency(args)),
        Command::Graph { target, args } => telemetry::run(target, telemetry::Call::Graph(args)),
        Command::Traces { target, args } => telemetry::run(target, telemetry::Call::Traces(args)),
        Command::Trace { target, id, json } => {
            telemetry::run(target, telemetry::Call::Trace { id, json })
        }
        Command::DemoApp {
            listen,
            version,
            unhealthy,
            busy,
        } => demo::app(listen, &version, unhealthy, busy),
        Command::Demo { listen, admin } => demo::run(&listen, &admin),
        Command::Up {
            data_dir,
            server_listen,
            listen,
            admin,
            service,
        } => up::run(up::UpOptions {
            data_dir,
            server_listen,
            listen,
            admin,
            service,
        }),
        Command::Kv { target, cmd } => client::run(target, client::Call::Kv(cmd)),
        Command::Lease { target, cmd } => client::run(target, client::Call::Lease(cmd)),
        Command::Svc { target, cmd } => client::run(target, client::Call::Svc(cmd)),
        Command::Lock { target, cmd } => client::run(target, client::Call::Lock(cmd)),
        Command::Election { target, cmd } => client::run(target, client::Call::Election(cmd)),
        Command::Id { target, count } => client::run(target, client::Call::Id { count }),
        Command::Cluster { target, cmd } => client::run(target, client::Call::Cluster(cmd)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(e),
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let config = herd_config::parse(&text, &path.display().to_string())?;
    herd_gateway::check_certificates(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(admin) = &config.admin {
        let exposed = admin
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback());
        if exposed && admin.token_file.is_none() && std::env::var_os("HERD_ADMIN_TOKEN").is_none() {
            eprintln!(
                "herd: warning: {}: [admin] listen = \"{}\" is reachable from other machines and has \
                 no token: anyone who can reach it can drain servers and reload the configuration; \
                 bind it to 127.0.0.1 or set [admin] token_file (docs/admin-api.md)",
                path.display(),
                admin.listen
            );
        }
    }
    println!(
        "{}: ok ({} listeners, {} routes, {} backends)",
        path.display(),
        config.listeners.len(),
        config.routes.len(),
        config.backends.len()
    );
    Ok(())
}
