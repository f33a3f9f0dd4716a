//! The controller's decision, pure: from what the registry holds (deployments, live
//! nodes, assignments, what agents report) to the assignments to add and remove. No I/O and
//! no clock: `now_ms` and fresh instance ids come in, so a test states the exact outcome.
//!
//! Per service, with N instances wanted of version V:
//! - an assignment on a node whose lease ended is removed (and replaced below);
//! - more of V than N: the surplus goes, instances not running first;
//! - fewer of V than N: with no instance of another version (a first deploy, a scale-up, a
//!   replacement) every missing one is placed at once; during an update, at most
//!   `update.max_parallel` new instances are on their way at a time (a surge);
//! - an instance of another version (or of an older generation: `herd restart`) goes once an instance of V has run for
//!   `update.min_healthy_time` to take its place, so the count serving never drops below N
//!   through an update;
//! - with `update.canary = N` and the deployment not promoted, an update starts N new
//!   instances and retires no old one until `herd rollout promote`;
//! - a new instance not proven by `update.healthy_deadline` after it was assigned fails
//!   the update: with `update.auto_revert` and instances of the previous version still
//!   there (they are never removed before new ones are proven), the service goes back to
//!   that version (a [`Revert`]); otherwise the update holds, the old instances serving;
//! - a service without a deployment loses all its assignments.

use herd_agent_core::manifest::Manifest;
use herd_agent_core::parse_manifest;
use herd_agent_core::placement::{place, NodeView, PlacementError};
use herd_api::wire::{Assignment, DeploymentRecord, InstanceReport, NodeReport};
use std::collections::{BTreeMap, BTreeSet};

/// What the controller read from the registry in one pass.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub deployments: Vec<DeploymentRecord>,
    pub nodes: Vec<NodeReport>,
    pub assignments: Vec<Assignment>,
    /// By instance id.
    pub reports: BTreeMap<String, InstanceReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Assign(Assignment),
    Unassign {
        node: String,
        instance: String,
        why: &'static str,
    },
}

/// An update that failed its deadline, to undo: apply `manifest` (the previous version's,
/// as its instances carry it) again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    pub service: String,
    pub from: String,
    pub to: String,
    pub manifest: String,
    pub reason: String,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub shortfalls: Vec<Shortfall>,
    pub reverts: Vec<Revert>,
}

/// Why a service could not get all the instances it wants (shown in the controller's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub service: String,
    pub reason: String,
}

pub fn plan(
    s: &Snapshot,
    now_ms: u64,
    token: u64,
    next_id: &mut dyn FnMut(&str) -> String,
) -> Plan {
    let live: BTreeSet<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    let wanted: BTreeSet<&str> = s.deployments.iter().map(|d| d.name.as_str()).collect();
    let mut actions = Vec::new();
    let mut short = Vec::new();
    let mut reverts = Vec::new();
    for a in &s.assignments {
        if !wanted.contains(a.service.as_str()) {
            actions.push(unassign(a, "service stopped"));
        }
    }
    // Instances per node over every service, as placement weighs load.
    let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
    for a in s
        .assignments
        .iter()
        .filter(|a| live.contains(a.node.as_str()))
    {
        *per_node.entry(a.node.clone()).or_default() += 1;
    }
    for d in &s.deployments {
        let Ok(m) = parse_manifest(&d.manifest, &d.name) else {
            short.push(Shortfall {
                service: d.name.clone(),
                reason: "its stored manifest no longer reads; apply it again".into(),
            });
            continue;
        };
        let mine: Vec<&Assignment> = s
            .assignments
            .iter()
            .filter(|a| a.service == d.name)
            .collect();
        let (alive, dead): (Vec<&Assignment>, Vec<&Assignment>) = mine
            .into_iter()
            .partition(|a| live.contains(a.node.as_str()));
        let lost = dead.len();
        for a in dead {
            actions.push(unassign(a, "its node's lease ended"));
        }
        let (mut new, mut old): (Vec<&Assignment>, Vec<&Assignment>) = alive
            .into_iter()
            .partition(|a| a.version == d.version && a.generation == d.generation);
        let state = |a: &Assignment| s.reports.get(&a.instance).map(|r| r.state.as_str());
        let min_healthy = m.update.min_healthy_time.as_millis() as u64;
        let proven = |a: &Assignment| {
            s.reports.get(&a.instance).is_some_and(|r| {
                r.state == "Run"
                    && r.version == a.version
                    && now_ms.saturating_sub(r.since_ms) >= min_healthy
            })
        };
        let n = d.count as usize;
        // Surplus of the wanted version: those not running go first, then the newest ids.
        if new.len() > n {
            new.sort_by_key(|a| {
                (
                    state(a) == Some("Run"),
                    std::cmp::Reverse(a.instance.clone()),
                )
            });
            for a in new.drain(..new.len() - n) {
                actions.push(unassign(a, "scaled down"));
            }
        }
        let deadline = m.update.healthy_deadline.as_millis() as u64;
        let late = new.iter().find(|a| {
            !proven(a) && a.assigned_ms > 0 && now_ms.saturating_sub(a.assigned_ms) > deadline
        });
        if let (Some(late), Some(prev)) = (late, old.first()) {
            if m.update.auto_revert {
                let why = s
                    .reports
                    .get(&late.instance)
                    .map(|r| format!("{} ({})", r.state, r.message))
                    .unwrap_or_else(|| "never reported".into());
                reverts.push(Revert {
                    service: d.name.clone(),
                    from: d.version.clone(),
                    to: prev.version.clone(),
                    manifest: prev.manifest.clone(),
                    reason: format!(
                        "instance {} of {} not healthy within update.healthy_deadline ({}s): {why}",
                        late.instance,
                        d.version,
                        deadline / 1000
                    ),
                });
                continue;
            }
        }
        let healthy = new.iter().filter(|a| proven(a)).count();
        let canary = m.update.canary as usize;
        let held = canary > 0 && !d.promoted && !old.is_empty();
        let n_now = if held { canary.min(n) } else { n };
        let missing = n_now.saturating_sub(new.len());
        let add = if old.is_empty() {
            missing
        } else {
            let on_the_way = new.len() - healthy;
            missing.min((m.update.max_parallel as usize).saturating_sub(on_the_way))
        };
        // Why these start: what their state says until they run.
        let purpose = match () {
            _ if !old.is_empty() && d.cause == "rollback" => "rollback",
            _ if !old.is_empty() => "update",
            _ if lost > 0 => "replace",
            _ if new.is_empty() => "deploy",
            _ => "scale",
        };
        if add > 0 {
            match placed(&m, s, &d.name, &per_node, add as u32) {
                Ok(nodes) => {
                    for node in nodes {
                        *per_node.entry(node.clone()).or_default() += 1;
                        actions.push(Action::Assign(Assignment {
                            service: d.name.clone(),
                            instance: next_id(&d.name),
                            node,
                            version: d.version.clone(),
                            manifest: d.manifest.clone(),
                            token,
                            assigned_ms: now_ms,
                            generation: d.generation,
                            purpose: purpose.into(),
                        }));
                    }
                }
                Err(e) => short.push(Shortfall {
                    service: d.name.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        // Old versions leave as proven new ones take their places (not while canaries wait).
        let surplus = if held {
            0
        } else {
            (healthy + old.len()).saturating_sub(n).min(old.len())
        };
        old.sort_by_key(|a| (state(a) == Some("Run"), a.instance.clone()));
        for a in old.into_iter().take(surplus) {
            actions.push(unassign(a, "replaced by the new version"));
        }
    }
    Plan {
        actions,
        shortfalls: short,
        reverts,
    }
}

fn unassign(a: &Assignment, why: &'static str) -> Action {
    Action::Unassign {
        node: a.node.clone(),
        instance: a.instance.clone(),
        why,
    }
}

fn placed(
    m: &Manifest,
    s: &Snapshot,
    service: &str,
    per_node: &BTreeMap<String, u32>,
    add: u32,
) -> Result<Vec<String>, PlacementError> {
    let nodes: Vec<NodeView> = s
        .nodes
        .iter()
        .map(|n| NodeView {
            name: n.name.clone(),
            labels: n.labels.clone(),
            alive: true,
            instances: per_node.get(&n.name).copied().unwrap_or(0),
            load: n.load,
        })
        .collect();
    let mut current: BTreeMap<String, u32> = BTreeMap::new();
    let live: BTreeSet<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    for a in s
        .assignments
        .iter()
        .filter(|a| a.service == service && live.contains(a.node.as_str()))
    {
        *current.entry(a.node.clone()).or_default() += 1;
    }
    place(&m.placement, &nodes, &current, add)
}

#[cfg(test)]
mod tests;
