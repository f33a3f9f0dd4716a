//! Rules against inputs, with exact outcomes: what holds, when it fires (`for`), when it
//! resolves, and a controller taking over firing alerts without notifying again.

use super::evaluate::{observe, Inputs};
use super::state::{Change, Tracker};
use herd_api::wire::{CallStats, InstanceReport, NodeReport, TelemetryDump};
use herd_config::parse_alert_rules;
use std::collections::{BTreeMap, BTreeSet};

fn stats(calls: u64, errors: u64, ms: u64) -> CallStats {
    let mut s = CallStats::default();
    for i in 0..calls {
        s.record(ms * 1_000_000, i < errors);
    }
    s
}

fn dump(services: Vec<(&str, CallStats)>, edges: &[(&str, &str)]) -> TelemetryDump {
    TelemetryDump {
        window_s: 60,
        services: services
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
        edges: edges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string(), stats(1, 0, 1)))
            .collect(),
        ..Default::default()
    }
}

const RULES: &str = r#"
webhook = "http://127.0.0.1:9/hook"
[[rules]]
name = "errors"
kind = "error_ratio"
above = 0.1
min_calls = 10
for = "30s"
[[rules]]
name = "slow-pay"
kind = "p99"
service = "pay"
above = "250ms"
[[rules]]
name = "cycles"
kind = "dependency_cycle"
[[rules]]
name = "lost"
kind = "node_lost"
[[rules]]
name = "failed"
kind = "instance_failed"
"#;

fn instance(id: &str, state: &str) -> InstanceReport {
    InstanceReport {
        id: id.into(),
        service: "web".into(),
        node: "n1".into(),
        version: "1.0.0".into(),
        state: state.into(),
        since_ms: 0,
        pid: None,
        ports: Default::default(),
        port: None,
        restarts: 5,
        health: "unknown".into(),
        message: "exit status 1".into(),
        cpu_percent: None,
    }
}

#[test]
fn each_kind_sees_what_it_is_about_and_nothing_else() {
    let rules = parse_alert_rules(RULES, "t").unwrap().rules;
    let calls: BTreeMap<u64, TelemetryDump> = [(
        60,
        dump(
            vec![
                ("web", stats(20, 3, 5)),    // 15% errors: above 10%
                ("api", stats(5, 5, 5)),     // 100%, but fewer than min_calls
                ("pay", stats(10, 0, 400)),  // p99 400 ms > 250 ms
                ("auth", stats(10, 0, 400)), // slow, but the p99 rule is pay's only
            ],
            &[("a", "b"), ("b", "a"), ("b", "c")],
        ),
    )]
    .into();
    let known: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
    let nodes = vec![NodeReport {
        name: "n1".into(),
        address: "127.0.0.1".into(),
        labels: Default::default(),
        cores: 2,
        memory_bytes: 1,
        load: 0.0,
        ports: [1, 2],
        started_ms: 0,
        version: "x".into(),
        admin: None,
    }];
    let instances = vec![instance("web-1", "Run"), instance("web-2", "Failed")];
    let seen = observe(
        &rules,
        &Inputs {
            calls: &calls,
            deployments: &[],
            instances: &instances,
            nodes: &nodes,
            known_nodes: &known,
        },
    );
    let got: Vec<(&str, &str)> = seen
        .iter()
        .map(|o| (o.rule.as_str(), o.subject.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("errors", "web"),
            ("slow-pay", "pay"),
            ("cycles", "a,b"),
            ("lost", "n2"),
            ("failed", "web/web-2"),
        ]
    );
    assert!((seen[0].value - 0.15).abs() < 1e-9);
    assert_eq!(
        seen[0].summary,
        "web: 15.0% of 20 calls failed over 1m, above 10.0%"
    );
    assert!(
        seen[1].value > 0.25 && seen[1].value < 0.5,
        "{}",
        seen[1].value
    );
    assert_eq!(seen[2].summary, "dependency cycle: a -> b -> a");
}

#[test]
fn an_alert_fires_after_for_and_resolves_at_once() {
    let rules = parse_alert_rules(RULES, "t").unwrap().rules;
    let calls: BTreeMap<u64, TelemetryDump> =
        [(60, dump(vec![("web", stats(20, 10, 5))], &[]))].into();
    let none = BTreeSet::new();
    let inputs = |c| Inputs {
        calls: c,
        deployments: &[],
        instances: &[],
        nodes: &[],
        known_nodes: &none,
    };
    let mut t = Tracker::default();
    let at = |s: u64| 1_000_000 + s * 1000;
    // Holds from t=0: pending until 30 s have passed.
    assert!(t
        .step(at(0), &rules, observe(&rules, &inputs(&calls)))
        .is_empty());
    assert!(t
        .step(at(29), &rules, observe(&rules, &inputs(&calls)))
        .is_empty());
    let fired = t.step(at(30), &rules, observe(&rules, &inputs(&calls)));
    let Change::Fire(a) = &fired[0] else {
        panic!("{fired:?}")
    };
    assert_eq!(
        (a.since_ms, a.fired_ms, a.status.as_str()),
        (at(0), at(30), "firing")
    );
    // Still holding: no second notice.
    assert!(t
        .step(at(32), &rules, observe(&rules, &inputs(&calls)))
        .is_empty());
    // Gone: resolved in the same pass.
    let healthy: BTreeMap<u64, TelemetryDump> =
        [(60, dump(vec![("web", stats(20, 0, 5))], &[]))].into();
    let resolved = t.step(at(34), &rules, observe(&rules, &inputs(&healthy)));
    let Change::Resolve(r) = &resolved[0] else {
        panic!("{resolved:?}")
    };
    assert_eq!(
        (r.status.as_str(), r.resolved_ms),
        ("resolved", Some(at(34)))
    );
    // A condition that flickers off before `for` never fires.
    assert!(t
        .step(at(40), &rules, observe(&rules, &inputs(&calls)))
        .is_empty());
    assert!(t
        .step(at(41), &rules, observe(&rules, &inputs(&healthy)))
        .is_empty());
    assert!(t
        .step(at(71), &rules, observe(&rules, &inputs(&calls)))
        .is_empty());
}

#[test]
fn a_new_controller_keeps_firing_alerts_without_notifying_and_resolves_them() {
    let rules = parse_alert_rules(RULES, "t").unwrap().rules;
    let calls: BTreeMap<u64, TelemetryDump> =
        [(60, dump(vec![("web", stats(20, 10, 5))], &[]))].into();
    let none = BTreeSet::new();
    let inputs = Inputs {
        calls: &calls,
        deployments: &[],
        instances: &[],
        nodes: &[],
        known_nodes: &none,
    };
    let mut first = Tracker::default();
    first.step(0, &rules, observe(&rules, &inputs));
    let fired = first.step(30_000, &rules, observe(&rules, &inputs));
    assert_eq!(fired.len(), 1);
    let mut second = Tracker::default();
    second.adopt(first.firing().cloned().collect());
    assert!(second
        .step(40_000, &rules, observe(&rules, &inputs))
        .is_empty());
    // The rule is removed: the alert resolves.
    let resolved = second.step(42_000, &[], vec![]);
    assert!(
        matches!(&resolved[..], [Change::Resolve(_)]),
        "{resolved:?}"
    );
}

#[test]
fn rules_mistakes_name_the_field_and_the_fix() {
    let e = parse_alert_rules(
        r#"
webhook = "https://x/hook"
[[rules]]
name = "a"
kind = "error_rate"
[[rules]]
name = "b"
kind = "error_ratio"
above = 5
[[rules]]
name = "b"
kind = "p99"
above = 0.2
[[rules]]
name = "c"
kind = "node_lost"
service = "web"
for = "soon"
"#,
        "rules.toml",
    )
    .unwrap_err();
    let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "webhook",
            "rules[0].kind",
            "rules[1].above",
            "rules[2].name",
            "rules[2].above",
            "rules[3].service",
            "rules[3].for"
        ],
        "{e}"
    );
    assert!(e.to_string().contains("use one of error_ratio, p99"), "{e}");
    assert!(parse_alert_rules(
        "[[rules]]\nname = \"x\"\nkind = \"p99\"\nabove = \"1s\"\nbogus = 1\n",
        "r"
    )
    .unwrap_err()
    .to_string()
    .contains("bogus"));
}
