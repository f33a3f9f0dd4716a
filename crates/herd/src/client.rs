//! `herd kv|lease|svc|lock|id|cluster ...`: the registry API from the shell.
//! Each command is one API call (watch: a stream); answers print as JSON.

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use herd_api::{RegistryClient, WatchItem};
use http::Method;
use std::io::Write;

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
    /// Bearer token, when the registry requires one.
    #[arg(long, global = true, env = "HERD_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    Grant { ttl_s: f64 },
    Keepalive { id: u64 },
    Revoke { id: u64 },
}

#[derive(Subcommand)]
pub enum Svc {
    /// Register an instance on a new lease (keep it alive with `herd lease keepalive`).
    Register {
        service: String,
        id: String,
        /// host:port the instance serves on.
        addr: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long, default_value_t = 10.0)]
        ttl_s: f64,
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
    Id { count: u64 },
    Cluster(Cluster),
}

pub fn run(target: Target, call: Call) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let servers = target
        .server
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let client = RegistryClient::new(servers, target.token);
    rt.block_on(dispatch(&client, call))
}

fn print_json(body: &[u8]) -> anyhow::Result<()> {
    let v: serde_json::Value =
        serde_json::from_slice(body).context("registry answered non-JSON")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
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

async fn dispatch(c: &RegistryClient, call: Call) -> anyhow::Result<()> {
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
            std::io::stdout().write_all(&a.body)?;
            if !a.body.ends_with(b"\n") {
                println!();
            }
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
                            println!("{}", serde_json::to_string(&e)?);
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
                serde_json::json!({"ttl_s": ttl_s}).to_string(),
            )
            .await?
        }
        Call::Lease(Lease::Keepalive { id }) => {
            c.call(Method::POST, &format!("/v1/lease/{id}/keepalive"), empty())
                .await?
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
        }) => {
            let (host, port) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .with_context(|| format!("\"{addr}\" is not host:port"))?;
            let body = serde_json::json!({"address": host, "port": port, "weight": weight, "ttl_s": ttl_s});
            c.call(
                Method::PUT,
                &format!("/v1/services/{service}/instances/{id}"),
                body.to_string(),
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
            let body = serde_json::json!({"ttl_s": ttl_s, "wait_s": wait_s});
            c.call(Method::POST, &format!("/v1/lock/{name}"), body.to_string())
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
        Call::Id { count } => {
            c.call(Method::POST, &format!("/v1/ids?count={count}"), empty())
                .await?
        }
        Call::Cluster(Cluster::Status) => c.call(Method::GET, "/v1/cluster", empty()).await?,
        Call::Cluster(Cluster::Add { addr }) => {
            c.call(
                Method::POST,
                "/v1/cluster/members",
                serde_json::json!({"addr": addr}).to_string(),
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
