//! The controller's pass over a large cluster: 1,000 instances to place over 100 nodes
//! (a first deploy), and the steady state (every instance placed and running: nothing to
//! do, which is what the controller computes twice a second).

use criterion::{criterion_group, criterion_main, Criterion};
use herd_api::wire::{DeploymentRecord, InstanceReport, NodeReport};
use herd_controller::plan::{plan, Action, Snapshot};
use std::collections::BTreeMap;
use std::hint::black_box;

fn manifest(count: u32) -> String {
    format!(
        "name = \"web\"\nversion = \"1.0.0\"\n[run]\ncommand = \"/bin/true\"\nports = [\"http\"]\n\
         [instances]\ncount = {count}\nmax = 10000\n"
    )
}

fn cluster(nodes: usize, count: u32) -> Snapshot {
    Snapshot {
        deployments: vec![DeploymentRecord {
            name: "web".into(),
            version: "1.0.0".into(),
            manifest: manifest(count),
            count,
            revision: 1,
            applied_ms: 0,
            generation: 0,
            promoted: true,
            cause: "apply".into(),
        }],
        nodes: (0..nodes)
            .map(|i| NodeReport {
                name: format!("node-{i:03}"),
                address: "10.0.0.1".into(),
                labels: BTreeMap::new(),
                cores: 8,
                memory_bytes: 1 << 34,
                load: (i % 7) as f64 / 10.0,
                ports: [20000, 29999],
                started_ms: 0,
                version: "0".into(),
                admin: None,
            })
            .collect(),
        ..Snapshot::default()
    }
}

fn bench(c: &mut Criterion) {
    let empty = cluster(100, 1000);
    c.bench_function("place 1000 instances over 100 nodes", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let p = plan(black_box(&empty), 0, 1, &mut |s: &str| {
                n += 1;
                format!("{s}-{n}")
            });
            assert_eq!(p.actions.len(), 1000);
            p
        })
    });
    // The steady state: every instance assigned and running.
    let first = plan(&empty, 0, 1, &mut {
        let mut n = 0u64;
        move |s: &str| {
            n += 1;
            format!("{s}-{n}")
        }
    });
    let mut steady = empty.clone();
    for a in first.actions {
        if let Action::Assign(a) = a {
            steady.reports.insert(
                a.instance.clone(),
                InstanceReport {
                    id: a.instance.clone(),
                    service: a.service.clone(),
                    node: a.node.clone(),
                    version: a.version.clone(),
                    state: "Run".into(),
                    since_ms: 0,
                    pid: Some(1),
                    ports: BTreeMap::new(),
                    port: Some(20000),
                    restarts: 0,
                    health: "passing".into(),
                    message: String::new(),
                    cpu_percent: None,
                },
            );
            steady.assignments.push(a);
        }
    }
    c.bench_function("steady pass, 1000 instances on 100 nodes", |b| {
        b.iter(|| {
            let p = plan(black_box(&steady), 60_000, 1, &mut |s: &str| s.to_string());
            assert!(p.actions.is_empty());
            p
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
