use super::*;

fn manifest(version: &str, count: u32, extra: &str) -> String {
    format!(
        "name = \"web\"\nversion = \"{version}\"\n[run]\ncommand = \"/bin/true\"\nports = [\"http\"]\n\
         [instances]\ncount = {count}\nmax = 10\nmin = 1\n[update]\nmax_parallel = 1\nmin_healthy_time = \"2s\"\n{extra}"
    )
}

fn deployment(version: &str, count: u32) -> DeploymentRecord {
    DeploymentRecord {
        name: "web".into(),
        version: version.into(),
        manifest: manifest(version, count, ""),
        count,
        revision: 1,
        applied_ms: 0,
        generation: 0,
        promoted: false,
        cause: "apply".into(),
    }
}

fn node(name: &str) -> NodeReport {
    NodeReport {
        name: name.into(),
        address: "127.0.0.1".into(),
        labels: BTreeMap::new(),
        cores: 2,
        memory_bytes: 1 << 30,
        load: 0.0,
        ports: [20000, 20999],
        started_ms: 0,
        version: "0".into(),
        admin: None,
    }
}

fn assigned(id: &str, node: &str, version: &str) -> Assignment {
    Assignment {
        service: "web".into(),
        instance: id.into(),
        node: node.into(),
        version: version.into(),
        manifest: manifest(version, 1, ""),
        token: 1,
        assigned_ms: 0,
        generation: 0,
        purpose: String::new(),
    }
}

fn report(id: &str, version: &str, state: &str, since_ms: u64) -> (String, InstanceReport) {
    (
        id.into(),
        InstanceReport {
            id: id.into(),
            service: "web".into(),
            node: "a".into(),
            version: version.into(),
            state: state.into(),
            since_ms,
            pid: Some(1),
            ports: BTreeMap::new(),
            port: Some(1),
            restarts: 0,
            health: "passing".into(),
            message: String::new(),
            cpu_percent: None,
        },
    )
}

fn ids() -> impl FnMut(&str) -> String {
    let mut n = 0;
    move |svc: &str| {
        n += 1;
        format!("{svc}-n{n}")
    }
}

fn summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Assign(a) => format!("+{}@{}:{}", a.instance, a.node, a.version),
            Action::Unassign { node, instance, .. } => format!("-{instance}@{node}"),
        })
        .collect()
}

#[test]
fn a_first_deploy_places_every_instance_at_once_spread_over_nodes() {
    let s = Snapshot {
        deployments: vec![deployment("1.0.0", 3)],
        nodes: vec![node("a"), node("b")],
        ..Snapshot::default()
    };
    let Plan {
        actions,
        shortfalls: short,
        ..
    } = plan(&s, 0, 7, &mut ids());
    assert_eq!(
        summary(&actions),
        ["+web-n1@a:1.0.0", "+web-n2@b:1.0.0", "+web-n3@a:1.0.0"]
    );
    assert!(short.is_empty());
    match &actions[0] {
        Action::Assign(a) => assert_eq!(a.token, 7, "writes carry the fencing token"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn instances_of_a_dead_node_are_replaced_on_the_living() {
    let s = Snapshot {
        deployments: vec![deployment("1.0.0", 2)],
        nodes: vec![node("a")],
        assignments: vec![
            assigned("web-1", "a", "1.0.0"),
            assigned("web-2", "b", "1.0.0"),
        ],
        ..Snapshot::default()
    };
    let Plan { actions, .. } = plan(&s, 0, 1, &mut ids());
    assert_eq!(summary(&actions), ["-web-2@b", "+web-n1@a:1.0.0"]);
}

#[test]
fn a_rolling_update_surges_one_at_a_time_and_retires_old_only_after_min_healthy_time() {
    let olds = vec![
        assigned("web-1", "a", "1.0.0"),
        assigned("web-2", "b", "1.0.0"),
    ];
    let mut s = Snapshot {
        deployments: vec![deployment("2.0.0", 2)],
        nodes: vec![node("a"), node("b")],
        assignments: olds.clone(),
        reports: [
            report("web-1", "1.0.0", "Run", 0),
            report("web-2", "1.0.0", "Run", 0),
        ]
        .into(),
    };
    // Step 1: one new instance (max_parallel = 1), no old one leaves yet.
    let Plan { actions, .. } = plan(&s, 10_000, 1, &mut ids());
    assert_eq!(summary(&actions), ["+web-n1@a:2.0.0"]);
    // Step 2: it runs, but for 1.5 s only: nothing changes.
    s.assignments.push(assigned("web-3", "a", "2.0.0"));
    s.reports.extend([report("web-3", "2.0.0", "Run", 10_000)]);
    let Plan { actions, .. } = plan(&s, 11_500, 1, &mut ids());
    assert_eq!(summary(&actions), Vec::<String>::new());
    // Step 3: past min_healthy_time (2 s): one old leaves, the next new one starts.
    let Plan { actions, .. } = plan(&s, 12_000, 1, &mut ids());
    assert_eq!(summary(&actions), ["+web-n1@b:2.0.0", "-web-1@a"]);
    // Step 4: both new proven: the last old one leaves.
    s.assignments.retain(|a| a.instance != "web-1");
    s.assignments.push(assigned("web-4", "b", "2.0.0"));
    s.reports.extend([report("web-4", "2.0.0", "Run", 12_000)]);
    let Plan { actions, .. } = plan(&s, 14_000, 1, &mut ids());
    assert_eq!(summary(&actions), ["-web-2@b"]);
}

#[test]
fn a_new_version_that_never_runs_holds_the_update_and_keeps_the_old_serving() {
    let s = Snapshot {
        deployments: vec![deployment("3.0.0", 2)],
        nodes: vec![node("a"), node("b")],
        assignments: vec![
            assigned("web-1", "a", "1.0.0"),
            assigned("web-2", "b", "1.0.0"),
            assigned("web-3", "b", "3.0.0"),
        ],
        reports: [
            report("web-1", "1.0.0", "Run", 0),
            report("web-2", "1.0.0", "Run", 0),
            report("web-3", "3.0.0", "Ready", 0),
        ]
        .into(),
    };
    let Plan { actions, .. } = plan(&s, 60_000, 1, &mut ids());
    assert_eq!(summary(&actions), Vec::<String>::new());
}

#[test]
fn scaling_down_removes_instances_not_running_first_and_a_stopped_service_everything() {
    let s = Snapshot {
        deployments: vec![deployment("1.0.0", 1)],
        nodes: vec![node("a"), node("b")],
        assignments: vec![
            assigned("web-1", "a", "1.0.0"),
            assigned("web-2", "b", "1.0.0"),
            assigned("web-3", "b", "1.0.0"),
        ],
        reports: [
            report("web-1", "1.0.0", "Run", 0),
            report("web-2", "1.0.0", "Failed", 0),
        ]
        .into(),
    };
    let Plan { actions, .. } = plan(&s, 0, 1, &mut ids());
    assert_eq!(summary(&actions), ["-web-3@b", "-web-2@b"]);
    let stopped = Snapshot {
        deployments: vec![],
        ..s
    };
    let Plan { actions, .. } = plan(&stopped, 0, 1, &mut ids());
    assert_eq!(summary(&actions), ["-web-1@a", "-web-2@b", "-web-3@b"]);
}

#[test]
fn a_label_nobody_carries_is_a_shortfall_with_the_reason() {
    let mut d = deployment("1.0.0", 1);
    d.manifest = manifest("1.0.0", 1, "[placement]\nlabels = { zone = \"x\" }\n");
    let s = Snapshot {
        deployments: vec![d],
        nodes: vec![node("a")],
        ..Snapshot::default()
    };
    let Plan {
        actions,
        shortfalls: short,
        ..
    } = plan(&s, 0, 1, &mut ids());
    assert!(actions.is_empty());
    assert_eq!(short.len(), 1);
    assert!(short[0].reason.contains("zone=x"), "{:?}", short[0]);
}

#[test]
fn an_update_not_healthy_by_its_deadline_reverts_to_the_version_still_serving() {
    let mut late = assigned("web-3", "b", "3.0.0");
    late.assigned_ms = 10_000;
    let mut s = Snapshot {
        deployments: vec![deployment("3.0.0", 2)],
        nodes: vec![node("a"), node("b")],
        assignments: vec![
            assigned("web-1", "a", "1.0.0"),
            assigned("web-2", "b", "1.0.0"),
            late,
        ],
        reports: [
            report("web-1", "1.0.0", "Run", 0),
            report("web-2", "1.0.0", "Run", 0),
            report("web-3", "3.0.0", "Ready", 10_000),
        ]
        .into(),
    };
    s.deployments[0].manifest = manifest("3.0.0", 2, "healthy_deadline = \"5s\"\n");
    // At 14.9 s (4.9 s after the assignment) it still waits.
    let p = plan(&s, 14_900, 1, &mut ids());
    assert!(p.reverts.is_empty() && p.actions.is_empty(), "{p:?}");
    // Past 5 s: revert to 1.0.0 with the old instances' manifest, nothing else this pass.
    let p = plan(&s, 15_001, 1, &mut ids());
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(p.reverts.len(), 1);
    let r = &p.reverts[0];
    assert_eq!((r.from.as_str(), r.to.as_str()), ("3.0.0", "1.0.0"));
    assert_eq!(r.manifest, manifest("1.0.0", 1, ""));
    assert!(
        r.reason.contains("web-3") && r.reason.contains("Ready"),
        "{}",
        r.reason
    );
    // With auto_revert off the update holds instead.
    s.deployments[0].manifest = manifest(
        "3.0.0",
        2,
        "healthy_deadline = \"5s\"\nauto_revert = false\n",
    );
    let p = plan(&s, 15_001, 1, &mut ids());
    assert!(p.reverts.is_empty() && p.actions.is_empty(), "{p:?}");
}

#[test]
fn a_restart_replaces_every_instance_of_the_older_generation_like_an_update() {
    let mut d = deployment("1.0.0", 1);
    d.generation = 1;
    let s = Snapshot {
        deployments: vec![d],
        nodes: vec![node("a")],
        assignments: vec![assigned("web-1", "a", "1.0.0")],
        reports: [report("web-1", "1.0.0", "Run", 0)].into(),
    };
    let p = plan(&s, 10_000, 1, &mut ids());
    assert_eq!(summary(&p.actions), ["+web-n1@a:1.0.0"]);
    match &p.actions[0] {
        Action::Assign(a) => assert_eq!(a.generation, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn canaries_start_and_wait_for_promote_then_the_update_goes_on() {
    let mut d = deployment("2.0.0", 3);
    d.manifest = manifest("2.0.0", 3, "canary = 1\n");
    let mut s = Snapshot {
        deployments: vec![d],
        nodes: vec![node("a")],
        assignments: vec![
            assigned("web-1", "a", "1.0.0"),
            assigned("web-2", "a", "1.0.0"),
            assigned("web-3", "a", "1.0.0"),
        ],
        reports: [
            report("web-1", "1.0.0", "Run", 0),
            report("web-2", "1.0.0", "Run", 0),
            report("web-3", "1.0.0", "Run", 0),
        ]
        .into(),
    };
    assert_eq!(
        summary(&plan(&s, 0, 1, &mut ids()).actions),
        ["+web-n1@a:2.0.0"]
    );
    s.assignments.push(assigned("web-4", "a", "2.0.0"));
    s.reports.extend([report("web-4", "2.0.0", "Run", 0)]);
    // Proven long ago, but not promoted: nothing moves.
    assert!(plan(&s, 60_000, 1, &mut ids()).actions.is_empty());
    s.deployments[0].promoted = true;
    assert_eq!(
        summary(&plan(&s, 60_000, 1, &mut ids()).actions),
        ["+web-n1@a:2.0.0", "-web-1@a"]
    );
}

#[test]
fn each_new_instance_says_why_it_starts() {
    let purposes = |p: &Plan| -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign(a) => Some(a.purpose.clone()),
                _ => None,
            })
            .collect()
    };
    let mut s = Snapshot {
        deployments: vec![deployment("1.0.0", 1)],
        nodes: vec![node("a"), node("b")],
        ..Snapshot::default()
    };
    assert_eq!(purposes(&plan(&s, 0, 1, &mut ids())), ["deploy"]);
    s.assignments.push(assigned("web-1", "a", "1.0.0"));
    s.reports.extend([report("web-1", "1.0.0", "Run", 0)]);
    s.deployments[0].count = 2;
    assert_eq!(purposes(&plan(&s, 0, 1, &mut ids())), ["scale"]);
    s.deployments[0].count = 1;
    s.nodes.retain(|n| n.name == "b");
    assert_eq!(purposes(&plan(&s, 0, 1, &mut ids())), ["replace"]);
    s.nodes.push(node("a"));
    s.deployments[0].version = "2.0.0".into();
    assert_eq!(purposes(&plan(&s, 0, 1, &mut ids())), ["update"]);
    s.deployments[0].cause = "rollback".into();
    assert_eq!(purposes(&plan(&s, 0, 1, &mut ids())), ["rollback"]);
}
