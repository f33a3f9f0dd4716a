//! `herd kv|lease|svc|lock|election|id|cluster ...`: the registry API from the shell.
//! Each command is one API call (watch: a stream); answers print as JSON.

use crate::exit::{out, print_json, Usage};
use crate::keep;
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use herd_api::wire::{
    CampaignRequest, JoinRequest, LeaseGrantRequest, LockRequest, ProclaimRequest, RegisterRequest,
};
use herd_api::{RegistryClient, WatchItem};
use http::Method;

#[derive(Args)]
pub struct Target {
    /// Registry node(s) to talk to, comma-separated; the next is tried when one is down.
    #[arg(
        long,
        global = true,
        env = "HERD_SERVER",
        default_value = "127.0.0.1:7400"
    )]
    server: String,
    /// Bearer token, when the registry requires one (prefer HERD_TOKEN or --token-file:
    /// a flag is visible to anyone who can list processes).
    #[arg(long, global = true, env = "HERD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The bearer token, from the first line of this file.
    #[arg(long, global = true, value_name = "FILE", env = "HERD_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: crate::tls_args::ClientTls,
}

#[derive(Subcommand)]
pub enum Kv {
    /// Print a key's value (add --json for revisions and lease).
    Get {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a key; the value is the argument, or standard input with "-".
    Put {
        key: String,
        value: String,
        #[arg(long)]
        lease: Option<u64>,
        /// Only if the key's mod_revision is this (0: only if absent).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Delete a key, or every key under a prefix.
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// List keys under a prefix.
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// Stream changes of a key or prefix as JSON lines (Ctrl-C stops).
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        #[arg(long, default_value_t = 0)]
        from_revision: u64,
    },
}

#[derive(Subcommand)]
pub enum Lease {
    Grant {
        ttl_s: f64,
    },
    /// Renew a lease every third of its TTL until Ctrl-C or SIGTERM (the lease is left to
    /// expire on its own then); one JSON line per renewal.
    Keepalive {
        id: u64,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    Revoke {
        id: u64,
    },
}

#[derive(Subcommand)]
pub enum Svc {
    /// Register an instance on a new lease and stay in the foreground keeping it alive;
    /// Ctrl-C or SIGTERM deregisters it. With --detach, register and exit instead.
    Register {
        service: String,
        id: String,
        /// host:port the instance serves on (IPv6 in brackets).
        addr: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Lease TTL in seconds (default 10): how long the instance outlives this command
        /// when it is killed without a chance to deregister.
        #[arg(long, visible_alias = "ttl")]
        ttl_s: Option<f64>,
        /// Register and exit, for scripts that renew the lease themselves (`herd lease
        /// keepalive`); needs an explicit --ttl, after which the instance vanishes unless
        /// renewed.
        #[arg(long, requires = "ttl_s")]
        detach: bool,
    },
    Deregister {
        service: String,
        id: String,
    },
    /// List a service's instances, or the services when none is named.
    Ls {
        service: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Lock {
    /// Wait for the lock; prints the fencing token and the lease that holds it.
    Acquire {
        name: String,
        #[arg(long, default_value_t = 10.0)]
        ttl_s: f64,
        #[arg(long, default_value_t = 30.0)]
        wait_s: f64,
    },
    Release {
        name: String,
        lease: u64,
    },
    Status {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum Election {
    /// Wait (FIFO) until this candidate leads; prints the leader: key, value, lease and
    /// revision (the fencing token). Keep the lease alive to stay leader.
    Campaign {
        name: String,
        /// What the leader proclaims, e.g. its address.
        value: String,
        /// Campaign on a lease you already keep alive (else a new one of --ttl-s).
        #[arg(long, conflicts_with = "ttl_s")]
        lease: Option<u64>,
        #[arg(long)]
        ttl_s: Option<f64>,
        /// Give up (and withdraw) after this long.
        #[arg(long, default_value_t = 30.0)]
        timeout_s: f64,
    },
    /// Print the current leader (exit 2 with "no leader" when nobody leads).
    Leader { name: String },
    /// Stream the leader as JSON lines: the current one, then one per change (Ctrl-C stops).
    Watch { name: String },
    /// As the leader, change the value everyone observes.
    Proclaim {
        name: String,
        lease: u64,
        value: String,
    },
    /// Leave the election (the leader steps down; the next in line leads).
    Resign { name: String, lease: u64 },
}

#[derive(Subcommand)]
pub enum Cluster {
    /// Leader and members.
    Status,
    /// Add a node that is already running (normally `herd server --join` does this).
    Add {
        addr: String,
    },
    Remove {
        id: u64,
    },
}

pub enum Call {
    Kv(Kv),
    Lease(Lease),
    Svc(Svc),
    Lock(Lock),
    Election(Election),
    Id { count: u64 },
    Cluster(Cluster),
}

impl Target {
    /// A client for these nodes, failing over in order.
    pub fn client(&self) -> RegistryClient {
        let servers = self
            .server
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let tls = self.tls().unwrap_or_else(|e| {
            eprintln!("herd: {e:#}");
            std::process::exit(2);
        });
        RegistryClient::maybe_tls(servers, self.token(), tls.as_ref()).unwrap_or_else(|e| {
            eprintln!("herd: {e}");
            std::process::exit(2);
        })
    }

    /// The TLS material of --tls-ca/--cert/--key, none for plain HTTP.
    pub fn tls(&self) -> anyhow::Result<Option<std::sync::Arc<herd_api::TlsMaterial>>> {
        self.tls.material()
    }

    pub fn servers(&self) -> Vec<String> {
        self.server
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    }

    /// The token: --token-file's first line (an unreadable file ends the command with
    /// exit code 2 and the reason), else --token / HERD_TOKEN.
    pub fn token(&self) -> Option<String> {
        match &self.token_file {
            Some(f) => match crate::read_token_file_at(f) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("herd: {e}");
                    std::process::exit(2);
                }
            },
            None => self.token.clone(),
        }
    }
}

pub fn run(target: Target, call: Call) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = target.client();
    let long = Servers {
        client: client.clone(),
    };
    rt.block_on(dispatch(&client, &long, call))
}

/// The client for calls that may stay open longer than a `RegistryClient` call may take
/// (a campaign waiting for leadership, a leader watch).
struct Servers {
    client: RegistryClient,
}

impl Servers {
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: String,
    ) -> anyhow::Result<(String, hyper::Response<hyper::body::Incoming>)> {
        self.client
            .open(method, path, body)
            .await
            .map_err(|e| match e {
                herd_api::ApiError::Unreachable { .. } => {
                    anyhow::Error::from(e).context("no registry node answered; check --server")
                }
                e => e.into(),
            })
    }
}

async fn election(c: &RegistryClient, long: &Servers, cmd: Election) -> anyhow::Result<()> {
    let empty = Bytes::new;
    let answer = match cmd {
        Election::Campaign {
            name,
            value,
            lease,
            ttl_s,
            timeout_s,
        } => {
            let body = CampaignRequest {
                value,
                lease,
                ttl_s,
                timeout_s: Some(timeout_s),
            };
            let (_, resp) = long
                .open(
                    Method::POST,
                    &format!("/v1/election/{name}/campaign"),
                    serde_json::to_string(&body)?,
                )
                .await?;
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .context("campaign answer cut off")?
                .to_bytes();
            return print_json(&bytes);
        }
        Election::Leader { name } => {
            c.call(Method::GET, &format!("/v1/election/{name}"), empty())
                .await?
        }
        Election::Watch { name } => loop {
            let (server, resp) = long
                .open(
                    Method::GET,
                    &format!("/v1/election/{name}?watch"),
                    String::new(),
                )
                .await?;
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line);
                    if !line.trim().is_empty() {
                        out(&format!("{}\n", line.trim()))?;
                    }
                }
            }
            eprintln!("herd: leader watch on {server} ended; watching again");
        },
        Election::Proclaim { name, lease, value } => {
            c.call(
                Method::POST,
                &format!("/v1/election/{name}/proclaim"),
                serde_json::to_vec(&ProclaimRequest { lease, value })?,
            )
            .await?
        }
        Election::Resign { name, lease } => {
            c.call(
                Method::DELETE,
                &format!("/v1/election/{name}/{lease}"),
                empty(),
            )
            .await?
        }
    };
    print_json(&answer.body)
}

fn enc(s: &str) -> String {
    // Keys are path segments: escape what would change the URL's meaning.
    s.bytes()
        .map(|b| match b {
            b'?' => "%3F".to_string(),
            b'#' => "%23".to_string(),
            b'%' => "%25".to_string(),
            b' ' => "%20".to_string(),
            _ => (b as char).to_string(),
        })
        .collect()
}

async fn dispatch(c: &RegistryClient, long: &Servers, call: Call) -> anyhow::Result<()> {
    let empty = Bytes::new;
    let answer = match call {
        Call::Kv(Kv::Get { key, json }) => {
            let q = if json { "" } else { "?raw" };
            let a = c
                .call(Method::GET, &format!("/v1/kv/{}{q}", enc(&key)), empty())
                .await?;
            if json {
                return print_json(&a.body);
            }
            let mut o = std::io::stdout().lock();
            std::io::Write::write_all(&mut o, &a.body)?;
            if !a.body.ends_with(b"\n") {
                std::io::Write::write_all(&mut o, b"\n")?;
            }
            std::io::Write::flush(&mut o)?;
            return Ok(());
        }
        Call::Kv(Kv::Put {
            key,
            value,
            lease,
            cas,
        }) => {
            let body = if value == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                Bytes::from(v)
            } else {
                Bytes::from(value)
            };
            let mut q = Vec::new();
            if let Some(l) = lease {
                q.push(format!("lease={l}"));
            }
            if let Some(r) = cas {
                q.push(format!("cas={r}"));
            }
            let q = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            c.call(Method::PUT, &format!("/v1/kv/{}{q}", enc(&key)), body)
                .await?
        }
        Call::Kv(Kv::Del { key, prefix }) => {
            let q = if prefix { "?prefix" } else { "" };
            c.call(Method::DELETE, &format!("/v1/kv/{}{q}", enc(&key)), empty())
                .await?
        }
        Call::Kv(Kv::Ls { prefix, limit }) => {
            c.call(
                Method::GET,
                &format!("/v1/kv/{}?prefix&limit={limit}", enc(&prefix)),
                empty(),
            )
            .await?
        }
        Call::Kv(Kv::Watch {
            key,
            prefix,
            from_revision,
        }) => {
            let mut from = from_revision;
            loop {
                let mut w = c.watch(&enc(&key), prefix, from).await?;
                while let Some(item) = w.next().await {
                    match item {
                        WatchItem::Event(e) => {
                            from = e.revision + 1;
                            out(&format!("{}\n", serde_json::to_string(&e)?))?;
                        }
                        WatchItem::Progress(r) => from = from.max(r + 1),
                        WatchItem::Error(e) => bail!("watch ended: {e}"),
                    }
                }
                eprintln!(
                    "herd: watch stream from {} ended; resuming at revision {from}",
                    w.server()
                );
            }
        }
        Call::Lease(Lease::Grant { ttl_s }) => {
            c.call(
                Method::POST,
                "/v1/lease",
                serde_json::to_vec(&LeaseGrantRequest { ttl_s })?,
            )
            .await?
        }
        Call::Lease(Lease::Keepalive { id, once }) => {
            return keep::lease_keepalive(c, id, once).await;
        }
        Call::Lease(Lease::Revoke { id }) => {
            c.call(Method::DELETE, &format!("/v1/lease/{id}"), empty())
                .await?
        }
        Call::Svc(Svc::Register {
            service,
            id,
            addr,
            weight,
            ttl_s,
            detach,
        }) => {
            let (host, port) = keep::parse_instance_addr(&addr)?;
            let ttl_s = ttl_s.unwrap_or(keep::DEFAULT_TTL_S);
            if !(ttl_s.is_finite() && ttl_s > 0.0) {
                return Err(Usage(format!(
                    "--ttl {ttl_s} must be a positive number of seconds"
                ))
                .into());
            }
            let body = RegisterRequest {
                address: host,
                port,
                weight: Some(weight),
                ttl_s: Some(ttl_s),
                ..RegisterRequest::default()
            };
            let r = keep::Registration {
                service,
                id,
                body,
                ttl_s,
            };
            if !detach {
                return keep::register_foreground(c, r).await;
            }
            c.call(
                Method::PUT,
                &format!("/v1/services/{}/instances/{}", r.service, r.id),
                serde_json::to_vec(&r.body)?,
            )
            .await?
        }
        Call::Svc(Svc::Deregister { service, id }) => {
            c.call(
                Method::DELETE,
                &format!("/v1/services/{service}/instances/{id}"),
                empty(),
            )
            .await?
        }
        Call::Svc(Svc::Ls { service: Some(s) }) => {
            c.call(Method::GET, &format!("/v1/services/{s}"), empty())
                .await?
        }
        Call::Svc(Svc::Ls { service: None }) => {
            c.call(Method::GET, "/v1/services", empty()).await?
        }
        Call::Lock(Lock::Acquire {
            name,
            ttl_s,
            wait_s,
        }) => {
            let body = LockRequest {
                ttl_s: Some(ttl_s),
                wait_s: Some(wait_s),
            };
            c.call(
                Method::POST,
                &format!("/v1/lock/{name}"),
                serde_json::to_vec(&body)?,
            )
            .await?
        }
        Call::Lock(Lock::Release { name, lease }) => {
            c.call(
                Method::DELETE,
                &format!("/v1/lock/{name}?lease={lease}"),
                empty(),
            )
            .await?
        }
        Call::Lock(Lock::Status { name }) => {
            c.call(Method::GET, &format!("/v1/lock/{name}"), empty())
                .await?
        }
        Call::Election(e) => return election(c, long, e).await,
        Call::Id { count } => {
            c.call(Method::POST, &format!("/v1/ids?count={count}"), empty())
                .await?
        }
        Call::Cluster(Cluster::Status) => c.call(Method::GET, "/v1/cluster", empty()).await?,
        Call::Cluster(Cluster::Add { addr }) => {
            c.call(
                Method::POST,
                "/v1/cluster/members",
                serde_json::to_vec(&JoinRequest { id: None, addr })?,
            )
            .await?
        }
        Call::Cluster(Cluster::Remove { id }) => {
            c.call(
                Method::DELETE,
                &format!("/v1/cluster/members/{id}"),
                empty(),
            )
            .await?
        }
    };
    print_json(&answer.body)
}
