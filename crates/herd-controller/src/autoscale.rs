//! Autoscaling (SPEC §4 `[autoscale]`): how many instances a service should run for the
//! load it has — `ceil(load / target)` within `instances.min..=max` — and only when its
//! cooldown has passed since its last change and no rollout is under way. Pure: the load
//! comes in (requests per second into the service as the gateways' spans count them, or the
//! CPU its instances' processes use), a decision with its reason goes out.

use herd_agent_core::manifest::ScaleMetric;
use herd_agent_core::Manifest;
use herd_api::wire::{DeploymentRecord, InstanceReport};

/// What the service is asked to carry now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Calls per second into the service (every caller together), when known.
    pub rps: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub service: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

pub fn decide(
    d: &DeploymentRecord,
    m: &Manifest,
    instances: &[InstanceReport],
    load: Load,
    now_ms: u64,
) -> Option<Decision> {
    let a = m.autoscale?;
    if now_ms.saturating_sub(d.applied_ms) < a.cooldown.as_millis() as u64 {
        return None;
    }
    let mine: Vec<&InstanceReport> = instances.iter().filter(|i| i.service == d.name).collect();
    // A rollout or a scale still moving: its instances say nothing steady about the load.
    let settled = mine.len() == d.count as usize
        && mine
            .iter()
            .all(|i| i.version == d.version && i.state == "Run");
    if !settled || d.count == 0 {
        return None;
    }
    let (total, what) = match a.metric {
        ScaleMetric::RpsPerInstance => (load.rps?, "requests/s"),
        ScaleMetric::Cpu => (
            mine.iter()
                .map(|i| i.cpu_percent?.max(0.0).into())
                .sum::<Option<f64>>()?,
            "% CPU",
        ),
    };
    let wanted = (total / a.target).ceil().max(0.0) as u32;
    let to = wanted.clamp(m.instances.min, m.instances.max);
    if to == d.count {
        return None;
    }
    let per = total / f64::from(d.count);
    let bound = if to == m.instances.max && wanted > to {
        format!(" (capped at instances.max {})", m.instances.max)
    } else if to == m.instances.min && wanted < to {
        format!(" (held at instances.min {})", m.instances.min)
    } else {
        String::new()
    };
    Some(Decision {
        service: d.name.clone(),
        from: d.count,
        to,
        reason: format!(
            "{total:.1} {what} over {} instances is {per:.1} each, target {}: {to} instances{bound}",
            d.count, a.target
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(count: u32, applied_ms: u64) -> (DeploymentRecord, Manifest) {
        let text = "name = \"web\"\nversion = \"1.0.0\"\n[run]\ncommand = \"x\"\n\
                    [instances]\ncount = 2\nmin = 2\nmax = 6\n\
                    [autoscale]\nmetric = \"rps_per_instance\"\ntarget = 100\ncooldown = \"30s\"\n";
        let m = herd_agent_core::parse_manifest(text, "web.toml").unwrap();
        let d = DeploymentRecord {
            name: "web".into(),
            version: "1.0.0".into(),
            manifest: text.into(),
            count,
            revision: 1,
            applied_ms,
            generation: 1,
            promoted: false,
            cause: "apply".into(),
        };
        (d, m)
    }

    fn running(n: u32) -> Vec<InstanceReport> {
        (0..n)
            .map(|i| InstanceReport {
                id: format!("web-{i}"),
                service: "web".into(),
                node: "n".into(),
                version: "1.0.0".into(),
                state: "Run".into(),
                since_ms: 0,
                pid: None,
                ports: Default::default(),
                port: None,
                restarts: 0,
                health: "passing".into(),
                message: String::new(),
                cpu_percent: None,
            })
            .collect()
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn scales_to_the_load_within_bounds_after_the_cooldown() {
        let (d, m) = record(2, NOW - 30_000);
        let up = decide(&d, &m, &running(2), Load { rps: Some(450.0) }, NOW).unwrap();
        assert_eq!((up.from, up.to), (2, 5));
        assert_eq!(
            up.reason,
            "450.0 requests/s over 2 instances is 225.0 each, target 100: 5 instances"
        );
        let capped = decide(&d, &m, &running(2), Load { rps: Some(5000.0) }, NOW).unwrap();
        assert_eq!(capped.to, 6);
        assert!(
            capped.reason.ends_with("(capped at instances.max 6)"),
            "{}",
            capped.reason
        );
        // Exactly at target: nothing to do.
        assert_eq!(
            decide(&d, &m, &running(2), Load { rps: Some(200.0) }, NOW),
            None
        );
        let (d4, m4) = record(4, NOW - 30_000);
        let down = decide(&d4, &m4, &running(4), Load { rps: Some(0.0) }, NOW).unwrap();
        assert_eq!(down.to, 2);
        assert!(
            down.reason.ends_with("(held at instances.min 2)"),
            "{}",
            down.reason
        );
    }

    #[test]
    fn waits_for_the_cooldown_a_settled_service_and_known_load() {
        let (d, m) = record(2, NOW - 29_999);
        assert_eq!(
            decide(&d, &m, &running(2), Load { rps: Some(450.0) }, NOW),
            None
        );
        let (d, m) = record(2, NOW - 30_000);
        // One instance still starting.
        let mut starting = running(2);
        starting[1].state = "Provision".into();
        assert_eq!(
            decide(&d, &m, &starting, Load { rps: Some(450.0) }, NOW),
            None
        );
        // Mid-rollout: an instance at another version.
        let mut mixed = running(2);
        mixed[0].version = "0.9.0".into();
        assert_eq!(decide(&d, &m, &mixed, Load { rps: Some(450.0) }, NOW), None);
        assert_eq!(decide(&d, &m, &running(2), Load { rps: None }, NOW), None);
    }
}
