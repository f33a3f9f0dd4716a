//! `herd apply|status|nodes|scale|stop|history|logs`: cluster management from the shell.
//! Each is one call to `/v1/deployments` (or `/v1/nodes`, `/v1/revisions`).

use crate::client::Target;
use crate::exit::{out, print_json, Usage};
use clap::Args;
use herd_api::wire::{
    ChangeAnswer, DeploymentList, DeploymentStatus, NodeList, RevisionRecord, RollbackAnswer,
    RollbackRequest, ScaleRequest,
};
use http::Method;
use std::path::PathBuf;

#[derive(Args)]
pub struct ApplyArgs {
    /// The service's manifest (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Validate and check depends_on against the cluster; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::Subcommand)]
pub enum Rollout {
    /// Where an update stands: instances per version and state.
    Status { service: String },
    /// Let an update waiting on its canaries (update.canary) go on.
    Promote { service: String },
    /// Roll back to the version before this one (or the one at --to), with every dependent
    /// whose depends_on the older version breaks.
    Undo {
        service: String,
        /// A cluster revision (`herd history SERVICE` lists them).
        #[arg(long, value_name = "REV")]
        to: Option<u64>,
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub enum Call {
    Apply(ApplyArgs),
    Rollout(Rollout),
    Restart { service: String },
    Diff { from: u64, to: u64 },
    Status { service: Option<String>, json: bool },
    Nodes,
    Scale { service: String, count: u32 },
    Stop { service: String },
    History { service: Option<String> },
}

pub fn run(target: Target, call: Call) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(target, call))
}

async fn dispatch(target: Target, call: Call) -> anyhow::Result<()> {
    let c = target.client();
    match call {
        Call::Apply(a) => {
            let text = std::fs::read_to_string(&a.file)
                .map_err(|e| Usage(format!("cannot read {}: {e}", a.file.display())))?;
            let file = a.file.display().to_string();
            // A .json file is a manifest in JSON: sent as such, checked as its TOML.
            let json = a.file.extension().is_some_and(|x| x == "json");
            let (toml, content_type) = if json {
                let t = herd_agent_core::manifest::json_to_toml(text.as_bytes(), &file)
                    .map_err(|e| Usage(e.to_string()))?;
                (t, "application/json")
            } else {
                (text.clone(), "application/toml")
            };
            // Refused here with the file's own name before anything is sent.
            let m =
                herd_agent_core::parse_manifest(&toml, &file).map_err(|e| Usage(e.to_string()))?;
            let q = if a.dry_run { "?dry_run" } else { "" };
            let answer = c
                .call_as(
                    Method::PUT,
                    &format!("/v1/deployments/{}{q}", m.name),
                    text,
                    content_type,
                )
                .await?;
            let r: ChangeAnswer = answer.json()?;
            if a.dry_run {
                eprintln!(
                    "herd: {} {} is valid and keeps every depends_on; nothing changed (--dry-run)",
                    r.name, r.version
                );
            } else {
                eprintln!(
                    "herd: {} {} applied at cluster revision {}; `herd status {}` follows it",
                    r.name, r.version, r.revision, r.name
                );
            }
            print_json(&answer.body)
        }
        Call::Status {
            service: Some(s),
            json,
        } => {
            let a = c
                .call(Method::GET, &format!("/v1/deployments/{s}"), Vec::new())
                .await?;
            if json {
                return print_json(&a.body);
            }
            let d: DeploymentStatus = a.json()?;
            out(&table(&[d]))?;
            Ok(())
        }
        Call::Status {
            service: None,
            json,
        } => {
            let a = c.call(Method::GET, "/v1/deployments", Vec::new()).await?;
            if json {
                return print_json(&a.body);
            }
            let l: DeploymentList = a.json()?;
            out(&table(&l.deployments))?;
            Ok(())
        }
        Call::Nodes => {
            let a = c.call(Method::GET, "/v1/nodes", Vec::new()).await?;
            let l: NodeList = a.json()?;
            let mut s = format!(
                "{:<16} {:<16} {:>5} {:>8} {:>6}  {:<13} {}\n",
                "NODE", "ADDRESS", "CORES", "MEMORY", "LOAD", "PORTS", "LABELS"
            );
            for n in l.nodes {
                let labels: Vec<String> =
                    n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!(
                    "{:<16} {:<16} {:>5} {:>7}M {:>6.2}  {:<13} {}\n",
                    n.name,
                    n.address,
                    n.cores,
                    n.memory_bytes >> 20,
                    n.load,
                    format!("{}-{}", n.ports[0], n.ports[1]),
                    labels.join(",")
                ));
            }
            out(&s)?;
            Ok(())
        }
        Call::Scale { service, count } => {
            let body = serde_json::to_vec(&ScaleRequest {
                count,
                reason: None,
            })?;
            let a = c
                .call(
                    Method::POST,
                    &format!("/v1/deployments/{service}/scale"),
                    body,
                )
                .await?;
            print_json(&a.body)
        }
        Call::Stop { service } => {
            let a = c
                .call(
                    Method::DELETE,
                    &format!("/v1/deployments/{service}"),
                    Vec::new(),
                )
                .await?;
            print_json(&a.body)
        }
        Call::Rollout(Rollout::Undo {
            service,
            to,
            dry_run,
        }) => {
            let body = serde_json::to_vec(&RollbackRequest {
                to_revision: to,
                dry_run,
            })?;
            let a = c
                .call(
                    Method::POST,
                    &format!("/v1/deployments/{service}/rollback"),
                    body,
                )
                .await?;
            let r: RollbackAnswer = a.json()?;
            for s in &r.steps {
                eprintln!("herd: {} {} -> {}", s.service, s.from, s.to);
            }
            if r.steps.is_empty() {
                eprintln!(
                    "herd: {service} already runs what revision {} had",
                    r.to_revision
                );
            } else if r.dry_run {
                eprintln!(
                    "herd: the plan to revision {} (--dry-run: nothing changed)",
                    r.to_revision
                );
            } else {
                eprintln!("herd: rolled back at cluster revision {}", r.revision);
            }
            print_json(&a.body)
        }
        Call::Rollout(Rollout::Promote { service }) => {
            let a = c
                .call(
                    Method::POST,
                    &format!("/v1/deployments/{service}/promote"),
                    Vec::new(),
                )
                .await?;
            print_json(&a.body)
        }
        Call::Rollout(Rollout::Status { service }) => {
            let d: DeploymentStatus = c
                .get(Method::GET, &format!("/v1/deployments/{service}"))
                .await?;
            let mut by: std::collections::BTreeMap<(String, String), u32> = Default::default();
            for i in &d.instances {
                *by.entry((i.version.clone(), i.state.clone())).or_default() += 1;
            }
            let mut s = format!(
                "{} {}: {} ({} wanted, revision {})\n",
                d.name, d.version, d.state, d.count, d.revision
            );
            for ((v, st), n) in by {
                s.push_str(&format!("  {n} x {v} {st}\n"));
            }
            out(&s)?;
            Ok(())
        }
        Call::Restart { service } => {
            let a = c
                .call(
                    Method::POST,
                    &format!("/v1/deployments/{service}/restart"),
                    Vec::new(),
                )
                .await?;
            print_json(&a.body)
        }
        Call::Diff { from, to } => {
            let a: RevisionRecord = c.get(Method::GET, &format!("/v1/revisions/{from}")).await?;
            let b: RevisionRecord = c.get(Method::GET, &format!("/v1/revisions/{to}")).await?;
            out(&diff(&a, &b))?;
            Ok(())
        }
        Call::History { service } => {
            let path = match service {
                Some(s) => format!("/v1/deployments/{s}/history"),
                None => "/v1/revisions".into(),
            };
            let a = c.call(Method::GET, &path, Vec::new()).await?;
            print_json(&a.body)
        }
    }
}

/// What changed between two cluster revisions, a line per service that differs.
pub fn diff(a: &RevisionRecord, b: &RevisionRecord) -> String {
    let mut s = format!("revision {} -> {}\n", a.revision, b.revision);
    let names: std::collections::BTreeSet<&String> =
        a.services.keys().chain(b.services.keys()).collect();
    let mut same = true;
    for n in names {
        match (a.services.get(n), b.services.get(n)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                same = false;
                s.push_str(&format!(
                    "~ {n}: {} x{} -> {} x{}\n",
                    x.version, x.count, y.version, y.count
                ));
            }
            (None, Some(y)) => {
                same = false;
                s.push_str(&format!("+ {n}: {} x{}\n", y.version, y.count));
            }
            (Some(x), None) => {
                same = false;
                s.push_str(&format!("- {n}: {} x{}\n", x.version, x.count));
            }
            (None, None) => {}
        }
    }
    if same {
        s.push_str("no service differs\n");
    }
    s
}

fn ago(ms: u64) -> String {
    let now = herd_agent::instance::now_ms();
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

fn table(list: &[DeploymentStatus]) -> String {
    let mut s = String::new();
    for d in list {
        s.push_str(&format!(
            "{} {}  {}  {} wanted  revision {}\n",
            d.name, d.version, d.state, d.count, d.revision
        ));
        s.push_str(&format!(
            "  {:<24} {:<14} {:>7} {:>6} {:<10} {:<9} {:>5} {:>8}  {}\n",
            "INSTANCE", "NODE", "PID", "PORT", "VERSION", "STATE", "SINCE", "RESTARTS", "HEALTH"
        ));
        for i in &d.instances {
            s.push_str(&format!(
                "  {:<24} {:<14} {:>7} {:>6} {:<10} {:<9} {:>5} {:>8}  {}{}\n",
                i.id,
                i.node,
                i.pid.map_or("-".into(), |p| p.to_string()),
                i.port.map_or("-".into(), |p| p.to_string()),
                i.version,
                i.state,
                ago(i.since_ms),
                i.restarts,
                i.health,
                if i.message.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", i.message)
                }
            ));
        }
    }
    if list.is_empty() {
        s.push_str("no deployments; apply one with `herd apply -f FILE`\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::wire::ServiceVersion;

    fn rev(n: u64, services: &[(&str, &str, u32)]) -> RevisionRecord {
        RevisionRecord {
            revision: n,
            at_ms: 0,
            change: String::new(),
            services: services
                .iter()
                .map(|(s, v, c)| {
                    (
                        s.to_string(),
                        ServiceVersion {
                            version: v.to_string(),
                            count: *c,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_diff_names_every_service_added_removed_or_changed() {
        let a = rev(
            3,
            &[("api", "1.0.0", 2), ("db", "2.1.0", 1), ("old", "0.1.0", 1)],
        );
        let b = rev(
            7,
            &[("api", "1.1.0", 3), ("db", "2.1.0", 1), ("new", "1.0.0", 1)],
        );
        assert_eq!(
            diff(&a, &b),
            "revision 3 -> 7\n~ api: 1.0.0 x2 -> 1.1.0 x3\n+ new: 1.0.0 x1\n- old: 0.1.0 x1\n"
        );
        assert_eq!(diff(&a, &a), "revision 3 -> 3\nno service differs\n");
    }
}
