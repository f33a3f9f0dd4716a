//! Which rules' conditions hold now, and about what: from the call aggregates (error
//! ratio, p99, cycles), the deployments and their instances, and the nodes. Pure.

use herd_api::wire::{DeploymentRecord, InstanceReport, NodeReport, TelemetryDump};
use herd_config::{AlertKind, AlertRule};
use std::collections::{BTreeMap, BTreeSet};

/// What the evaluator reads in one pass.
pub struct Inputs<'a> {
    /// Cluster-wide call aggregates, by window in seconds.
    pub calls: &'a BTreeMap<u64, TelemetryDump>,
    pub deployments: &'a [DeploymentRecord],
    pub instances: &'a [InstanceReport],
    pub nodes: &'a [NodeReport],
    /// Nodes seen in the cluster since this evaluator started (or alerted as lost).
    pub known_nodes: &'a BTreeSet<String>,
}

/// A rule's condition holding for one subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub rule: String,
    pub kind: AlertKind,
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
}

fn window_text(secs: u64) -> String {
    if secs >= 3600 && secs / 3600 * 3600 == secs {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs / 60 * 60 == secs {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

pub fn observe(rules: &[AlertRule], inp: &Inputs<'_>) -> Vec<Observation> {
    let mut out = Vec::new();
    for r in rules {
        let wanted = |svc: &str| r.service.as_deref().is_none_or(|s| s == svc);
        let obs = |subject: String, value: f64, summary: String| Observation {
            rule: r.name.clone(),
            kind: r.kind,
            subject,
            value,
            threshold: r.above,
            summary,
        };
        let win = r.window.as_secs().max(1);
        match r.kind {
            AlertKind::ErrorRatio | AlertKind::P99 => {
                let Some(d) = inp.calls.get(&win) else {
                    continue;
                };
                for (svc, s) in d.services.iter().filter(|(svc, _)| wanted(svc)) {
                    if s.calls < r.min_calls {
                        continue;
                    }
                    if r.kind == AlertKind::ErrorRatio {
                        let ratio = s.errors as f64 / s.calls as f64;
                        if ratio > r.above {
                            out.push(obs(
                                svc.clone(),
                                ratio,
                                format!(
                                    "{svc}: {:.1}% of {} calls failed over {}, above {:.1}%",
                                    ratio * 100.0,
                                    s.calls,
                                    window_text(win),
                                    r.above * 100.0
                                ),
                            ));
                        }
                    } else if let Some(p99) = s.latency.quantile_secs(0.99).filter(|p| *p > r.above)
                    {
                        out.push(obs(
                            svc.clone(),
                            p99,
                            format!(
                                "{svc}: p99 {:.0} ms over {}, above {:.0} ms",
                                p99 * 1e3,
                                window_text(win),
                                r.above * 1e3
                            ),
                        ));
                    }
                }
            }
            AlertKind::DependencyCycle => {
                let Some(d) = inp.calls.get(&win) else {
                    continue;
                };
                let names: BTreeSet<&str> = d
                    .edges
                    .iter()
                    .flat_map(|(a, b, _)| [a.as_str(), b.as_str()])
                    .collect();
                let names: Vec<&str> = names.into_iter().collect();
                let idx = |n: &str| names.iter().position(|x| *x == n).unwrap_or(0);
                let pairs: Vec<(usize, usize)> =
                    d.edges.iter().map(|(a, b, _)| (idx(a), idx(b))).collect();
                for c in herd_telemetry::trace::cycles(names.len(), &pairs) {
                    let members: Vec<&str> = c.iter().map(|&i| names[i]).collect();
                    let mut ring = members.join(" -> ");
                    ring.push_str(&format!(" -> {}", members[0]));
                    out.push(obs(
                        members.join(","),
                        members.len() as f64,
                        format!("dependency cycle: {ring}"),
                    ));
                }
            }
            AlertKind::InstancesBelowMin => {
                for d in inp.deployments.iter().filter(|d| wanted(&d.name)) {
                    let Ok(m) = herd_agent_core::parse_manifest(&d.manifest, &d.name) else {
                        continue;
                    };
                    let healthy = inp
                        .instances
                        .iter()
                        .filter(|i| {
                            i.service == d.name && i.state == "Run" && i.health != "failing"
                        })
                        .count() as u32;
                    let min = m.instances.min.min(d.count);
                    if healthy < min {
                        out.push(Observation {
                            threshold: min as f64,
                            ..obs(
                                d.name.clone(),
                                healthy as f64,
                                format!(
                                    "{}: {healthy} healthy instance(s), fewer than its minimum {min}",
                                    d.name
                                ),
                            )
                        });
                    }
                }
            }
            AlertKind::InstanceFailed => {
                for i in inp
                    .instances
                    .iter()
                    .filter(|i| i.state == "Failed" && wanted(&i.service))
                {
                    let why = if i.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", i.message)
                    };
                    out.push(obs(
                        format!("{}/{}", i.service, i.id),
                        i.restarts as f64,
                        format!(
                            "{} instance {} on {} is Failed after {} restarts{why}",
                            i.service, i.id, i.node, i.restarts
                        ),
                    ));
                }
            }
            AlertKind::NodeLost => {
                let alive: BTreeSet<&str> = inp.nodes.iter().map(|n| n.name.as_str()).collect();
                for n in inp
                    .known_nodes
                    .iter()
                    .filter(|n| !alive.contains(n.as_str()))
                {
                    out.push(obs(
                        n.clone(),
                        0.0,
                        format!("node {n} is gone: its agent stopped renewing its lease"),
                    ));
                }
            }
        }
    }
    out
}
