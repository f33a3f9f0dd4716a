//! `herd logs SERVICE`: what a service's instances wrote. By default from their agents,
//! wherever they run (each agent serves its instances' files on its own listener, found
//! in its node report); with `--data-dir`, straight from an agent's directory on this
//! machine.

use crate::client::Target;
use crate::exit::{out, Usage};
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use herd_api::wire::{DeploymentStatus, NodeList};
use http::Method;
use http_body_util::BodyExt;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: Target,
    pub service: String,
    /// One instance (default: every instance of the service).
    #[arg(long)]
    pub instance: Option<String>,
    /// Read an agent's directory on this machine instead of asking the agents.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Only the last BYTES of what each instance wrote so far.
    #[arg(long, value_name = "BYTES")]
    pub tail: Option<u64>,
    /// Keep printing what the instances write (new instances too) until interrupted.
    #[arg(short, long)]
    pub follow: bool,
}

pub fn run(l: LogsArgs) -> anyhow::Result<()> {
    if let Some(dir) = l.data_dir.clone() {
        return local(&l, &dir);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(remote(&l))
}

/// Each wanted instance with the agent listener that has its files.
async fn sources(
    c: &herd_api::RegistryClient,
    l: &LogsArgs,
) -> anyhow::Result<BTreeMap<String, String>> {
    let d: DeploymentStatus = c
        .call(
            Method::GET,
            &format!("/v1/deployments/{}", l.service),
            Vec::new(),
        )
        .await?
        .json()?;
    let nodes: NodeList = c.call(Method::GET, "/v1/nodes", Vec::new()).await?.json()?;
    let mut found = BTreeMap::new();
    for i in d.instances {
        if l.instance.as_ref().is_some_and(|want| *want != i.id) {
            continue;
        }
        match nodes.nodes.iter().find(|n| n.name == i.node) {
            Some(n) => match &n.admin {
                Some(a) => {
                    found.insert(i.id, a.clone());
                }
                None => eprintln!(
                    "herd: {} runs on node {}, whose agent has no listener to read logs from (an older agent?)",
                    i.id, i.node
                ),
            },
            None => eprintln!(
                "herd: {} runs on node {}, which has no live agent now",
                i.id, i.node
            ),
        }
    }
    Ok(found)
}

fn logs_path(l: &LogsArgs, instance: &str, follow: bool) -> String {
    let mut p = format!(
        "/v1/logs/{}/{instance}?stream={}",
        l.service,
        if l.stderr { "stderr" } else { "stdout" }
    );
    if let Some(t) = l.tail {
        p.push_str(&format!("&tail={t}"));
    }
    if follow {
        p.push_str("&follow=true");
    }
    p
}

/// A client for one agent's listener: TLS when it says `https://` (with this command's
/// CA and certificate), else plain HTTP.
fn agent_client(l: &LogsArgs, admin: &str) -> anyhow::Result<herd_api::RegistryClient> {
    let token = l.target.token();
    if admin.starts_with("https://") {
        let Some(tls) = l.target.tls()? else {
            anyhow::bail!(
                "the agent at {admin} speaks TLS: give the cluster's CA with --tls-ca (HERD_TLS_CA)"
            );
        };
        return Ok(herd_api::RegistryClient::with_tls(
            vec![admin.to_string()],
            token,
            &tls,
        )?);
    }
    Ok(herd_api::RegistryClient::new(
        vec![admin.to_string()],
        token,
    ))
}

async fn open(
    l: &LogsArgs,
    admin: &str,
    path: &str,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let c = agent_client(l, admin)?;
    let (_, resp) = c
        .open(Method::GET, path, Bytes::new())
        .await
        .map_err(|e| anyhow::anyhow!("agent at {admin}: {e}"))?;
    Ok(resp)
}

/// Lines of several instances, each line once whole and prefixed with its instance.
#[derive(Default)]
struct Prefixed {
    partial: BTreeMap<String, Vec<u8>>,
}

impl Prefixed {
    fn push(&mut self, instance: &str, bytes: &[u8], whole: bool) -> String {
        let buf = self.partial.entry(instance.to_string()).or_default();
        buf.extend_from_slice(bytes);
        let mut text = String::new();
        while let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=n).collect();
            text.push_str(&format!("{instance} | {}", String::from_utf8_lossy(&line)));
        }
        if whole && !buf.is_empty() {
            text.push_str(&format!("{instance} | {}\n", String::from_utf8_lossy(buf)));
            buf.clear();
        }
        text
    }
}

async fn remote(l: &LogsArgs) -> anyhow::Result<()> {
    let c = l.target.client();
    let found = sources(&c, l).await?;
    if found.is_empty() && !l.follow {
        return Err(Usage(match &l.instance {
            Some(i) => format!("no instance {i} of {} runs on a live agent", l.service),
            None => format!("no instance of {} runs on a live agent", l.service),
        })
        .into());
    }
    // One instance prints as it was written; several are told apart line by line.
    let several = l.instance.is_none();
    let mut lines = Prefixed::default();
    if !l.follow {
        let mut failed = 0;
        for (id, admin) in &found {
            let got = match open(l, admin, &logs_path(l, id, false)).await {
                Ok(r) => r
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match got {
                Ok(b) if several => out(&lines.push(id, &b, true))?,
                Ok(b) => out(&String::from_utf8_lossy(&b))?,
                Err(e) => {
                    failed += 1;
                    eprintln!("herd: {id}: {e:#}");
                }
            }
        }
        if failed == found.len() {
            anyhow::bail!("no agent answered with the logs of {}", l.service);
        }
        return Ok(());
    }
    // Follow: a stream per instance, new instances picked up every 2 s, until interrupted.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(64);
    let mut open_streams: HashSet<String> = HashSet::new();
    let mut look = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = look.tick() => {
                let found = match sources(&c, l).await {
                    Ok(f) => f,
                    Err(e) => { eprintln!("herd: {e:#}"); continue; }
                };
                for (id, admin) in found {
                    if !open_streams.insert(id.clone()) {
                        continue;
                    }
                    let agent = match agent_client(l, &admin) {
                        Ok(a) => a,
                        Err(e) => { eprintln!("herd: {id}: {e:#}"); continue; }
                    };
                    let (tx, path) = (tx.clone(), logs_path(l, &id, true));
                    tokio::spawn(async move {
                        let mut body = match agent.open(Method::GET, &path, Bytes::new()).await {
                            Ok((_, r)) => r.into_body(),
                            Err(e) => { eprintln!("herd: {id}: agent at {admin}: {e}"); return; }
                        };
                        while let Some(Ok(frame)) = body.frame().await {
                            if let Ok(data) = frame.into_data() {
                                if tx.send((id.clone(), data)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            }
            Some((id, data)) = rx.recv() => {
                if several {
                    out(&lines.push(&id, &data, false))?;
                } else {
                    out(&String::from_utf8_lossy(&data))?;
                }
            }
        }
    }
}

/// Print an instance's log files (oldest rotated file first) from an agent's directory.
fn local(l: &LogsArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = data_dir.join("logs").join(&l.service);
    let kind = if l.stderr { "stderr" } else { "stdout" };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("no logs of {} under {}", l.service, dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.contains(&format!(".{kind}.log"))
                && l.instance
                    .as_ref()
                    .is_none_or(|i| name.starts_with(&format!("{i}.")))
        })
        .collect();
    // x.log.3, x.log.2, x.log.1, x.log: oldest first.
    files.sort_by_key(|p| {
        let name = p.to_string_lossy().into_owned();
        let n: u32 = name
            .rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (
            name.split(".log").next().unwrap_or("").to_string(),
            std::cmp::Reverse(n),
        )
    });
    if files.is_empty() {
        return Err(Usage(format!(
            "no {kind} logs of {} in {}",
            l.service,
            dir.display()
        ))
        .into());
    }
    for f in &files {
        let bytes = std::fs::read(f)?;
        out(&String::from_utf8_lossy(&bytes))?;
    }
    if l.follow {
        follow(&dir, kind, l.instance.as_deref())?;
    }
    Ok(())
}

/// The current (not rotated) log files of the wanted kind and instance, with their sizes.
fn current_files(dir: &std::path::Path, kind: &str, instance: Option<&str>) -> Vec<(PathBuf, u64)> {
    let suffix = format!(".{kind}.log");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = name.ends_with(&suffix)
                && instance.is_none_or(|i| name.starts_with(&format!("{i}.")));
            wanted.then(|| (e.path(), e.metadata().map_or(0, |m| m.len())))
        })
        .collect()
}

/// `-f`: print what is appended, like `tail -F` over every instance's file; a file that
/// shrank was rotated and is read from its start, a new instance's file from its start.
fn follow(dir: &std::path::Path, kind: &str, instance: Option<&str>) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut at: std::collections::HashMap<PathBuf, u64> =
        current_files(dir, kind, instance).into_iter().collect();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        for (path, len) in current_files(dir, kind, instance) {
            let from = match at.get(&path) {
                Some(&seen) if len >= seen => seen,
                _ => 0,
            };
            if len == from {
                at.insert(path, len);
                continue;
            }
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(from))?;
            let mut buf = Vec::new();
            f.take(len - from).read_to_end(&mut buf)?;
            out(&String::from_utf8_lossy(&buf))?;
            at.insert(path, len);
        }
    }
}
