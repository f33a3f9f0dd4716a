//! Where new instances go and which go first when a service shrinks. Eligible nodes are
//! the live ones carrying every label the manifest asks for; among them an instance goes
//! to the node with the fewest of this service's instances (spread), then the fewest
//! instances in all, then the lowest load, then the name — so the same inputs always
//! give the same placement, and a test can say exactly where each instance lands.

use crate::manifest::{Placement, Spread};
use std::collections::BTreeMap;

/// What the controller knows of one agent's machine.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its lease is alive: it heartbeats.
    pub alive: bool,
    /// Instances of every service on it now.
    pub instances: u32,
    /// Load average per core (1.0 = every core busy).
    pub load: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no live node carries the labels {wanted}; start an agent with --labels {wanted}, or change placement.labels")]
    NoEligibleNode { wanted: String },
    #[error("no live node: start an agent (herd agent --server ADDR --data-dir DIR)")]
    NoNode,
}

fn eligible<'a>(placement: &Placement, nodes: &'a [NodeView]) -> Vec<&'a NodeView> {
    nodes
        .iter()
        .filter(|n| n.alive)
        .filter(|n| {
            placement
                .labels
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
        })
        .collect()
}

/// Nodes for `new` more instances of a service that has `current[node]` on each node now.
/// One entry per new instance, in the order they should start.
pub fn place(
    placement: &Placement,
    nodes: &[NodeView],
    current: &BTreeMap<String, u32>,
    new: u32,
) -> Result<Vec<String>, PlacementError> {
    if new == 0 {
        return Ok(Vec::new());
    }
    let candidates = eligible(placement, nodes);
    if candidates.is_empty() {
        if !nodes.iter().any(|n| n.alive) {
            return Err(PlacementError::NoNode);
        }
        let wanted = placement
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        return Err(PlacementError::NoEligibleNode { wanted });
    }
    let mine: u32 = candidates
        .iter()
        .map(|n| current.get(&n.name).copied().unwrap_or(0))
        .sum();
    let total = mine + new;
    let cap = match placement.spread {
        Spread::Node => total.div_ceil(candidates.len() as u32),
        Spread::None => u32::MAX,
    };
    let mut of_service: Vec<u32> = candidates
        .iter()
        .map(|n| current.get(&n.name).copied().unwrap_or(0))
        .collect();
    let mut all: Vec<u32> = candidates.iter().map(|n| n.instances).collect();
    let mut out = Vec::with_capacity(new as usize);
    for _ in 0..new {
        let under_cap = (0..candidates.len()).any(|i| of_service[i] < cap);
        let best = (0..candidates.len())
            .filter(|&i| !under_cap || of_service[i] < cap)
            .min_by(|&a, &b| {
                let key = |i: usize| {
                    let spread = match placement.spread {
                        Spread::Node => of_service[i],
                        Spread::None => 0,
                    };
                    (spread, all[i])
                };
                key(a)
                    .cmp(&key(b))
                    .then(candidates[a].load.total_cmp(&candidates[b].load))
                    .then(candidates[a].name.cmp(&candidates[b].name))
            });
        let Some(i) = best else {
            break;
        };
        of_service[i] += 1;
        all[i] += 1;
        out.push(candidates[i].name.clone());
    }
    Ok(out)
}

/// Which instances to stop when a service shrinks by `n`: from the node with the most of
/// this service first (it keeps the spread), then the busiest node. `instances` are
/// (instance id, node name); the answer is instance ids.
pub fn shrink(instances: &[(String, String)], nodes: &[NodeView], n: u32) -> Vec<String> {
    let mut per_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, node) in instances {
        per_node.entry(node.as_str()).or_default().push(id.as_str());
    }
    for ids in per_node.values_mut() {
        // The newest id goes first: ids sort by creation.
        ids.sort_unstable();
    }
    let load = |node: &str| {
        nodes
            .iter()
            .find(|x| x.name == node)
            .map_or((0, 0.0), |x| (x.instances, x.load))
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let Some((&node, _)) = per_node
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .max_by(|a, b| {
                a.1.len()
                    .cmp(&b.1.len())
                    .then(load(a.0).0.cmp(&load(b.0).0))
                    .then(load(a.0).1.total_cmp(&load(b.0).1))
                    .then(b.0.cmp(a.0))
            })
        else {
            break;
        };
        if let Some(id) = per_node.get_mut(node).and_then(Vec::pop) {
            out.push(id.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], instances: u32, load: f64) -> NodeView {
        NodeView {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            alive: true,
            instances,
            load,
        }
    }

    fn spread(labels: &[(&str, &str)]) -> Placement {
        Placement {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spread: Spread::Node,
        }
    }

    #[test]
    fn instances_spread_over_nodes_least_loaded_first() {
        let nodes = [
            node("a", &[], 4, 0.5),
            node("b", &[], 0, 0.9),
            node("c", &[], 0, 0.1),
        ];
        let got = place(&spread(&[]), &nodes, &BTreeMap::new(), 5).unwrap();
        // c and b are empty (c less loaded), then a; then the second round.
        assert_eq!(got, ["c", "b", "a", "c", "b"]);
    }

    #[test]
    fn labels_and_liveness_choose_the_candidates() {
        let mut dead = node("d", &[("zone", "a")], 0, 0.0);
        dead.alive = false;
        let nodes = [
            node("a1", &[("zone", "a"), ("disk", "ssd")], 2, 0.0),
            node("b1", &[("zone", "b")], 0, 0.0),
            dead,
        ];
        let got = place(&spread(&[("zone", "a")]), &nodes, &BTreeMap::new(), 2).unwrap();
        assert_eq!(got, ["a1", "a1"]);
        assert_eq!(
            place(&spread(&[("zone", "c")]), &nodes, &BTreeMap::new(), 1),
            Err(PlacementError::NoEligibleNode {
                wanted: "zone=c".into()
            })
        );
        let none: Vec<NodeView> = Vec::new();
        assert_eq!(
            place(&spread(&[]), &none, &BTreeMap::new(), 1),
            Err(PlacementError::NoNode)
        );
    }

    #[test]
    fn spread_caps_each_node_at_the_ceiling_share() {
        // 2 already on a, 0 on b, 0 on c; 4 more makes 6 over 3 nodes: cap 2 each.
        let nodes = [
            node("a", &[], 2, 0.0),
            node("b", &[], 5, 0.0),
            node("c", &[], 9, 0.0),
        ];
        let current = BTreeMap::from([("a".to_string(), 2)]);
        let got = place(&spread(&[]), &nodes, &current, 4).unwrap();
        assert_eq!(got, ["b", "c", "b", "c"]);
        // Without spread the least loaded takes them all.
        let free = Placement {
            spread: Spread::None,
            ..spread(&[])
        };
        let got = place(&free, &nodes, &current, 3).unwrap();
        assert_eq!(got, ["a", "a", "a"]);
    }

    #[test]
    fn rescheduling_after_a_node_is_lost_fills_the_others_evenly() {
        // Node b died with 2 instances; a and c keep 2 each; 2 new are needed.
        let mut b = node("b", &[], 0, 0.0);
        b.alive = false;
        let nodes = [node("a", &[], 2, 0.2), b, node("c", &[], 2, 0.1)];
        let current = BTreeMap::from([("a".to_string(), 2), ("c".to_string(), 2)]);
        let got = place(&spread(&[]), &nodes, &current, 2).unwrap();
        assert_eq!(got, ["c", "a"]);
    }

    #[test]
    fn shrinking_keeps_the_spread() {
        let nodes = [node("a", &[], 3, 0.0), node("b", &[], 1, 0.0)];
        let inst = [
            ("i1".to_string(), "a".to_string()),
            ("i2".to_string(), "a".to_string()),
            ("i3".to_string(), "a".to_string()),
            ("i4".to_string(), "b".to_string()),
        ];
        assert_eq!(shrink(&inst, &nodes, 2), ["i3", "i2"]);
        assert_eq!(shrink(&inst, &nodes, 4), ["i3", "i2", "i1", "i4"]);
        assert_eq!(shrink(&inst, &nodes, 9).len(), 4);
    }
}
