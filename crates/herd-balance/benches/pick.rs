//! One pick per iteration, per policy, at 10 and 1,000 servers with mixed weights and
//! some load, as a worker thread does it on every request.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use herd_balance::{hash64, Balancer, PickContext, Policy, Rng, ServerLoad};

fn servers(n: usize) -> (Vec<u32>, Vec<u64>, Vec<ServerLoad>) {
    let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 * 7) % 10).collect();
    let ids: Vec<u64> = (0..n)
        .map(|i| hash64(format!("10.0.{}.{}:8080", i / 250, i % 250).as_bytes()))
        .collect();
    let loads: Vec<ServerLoad> = (0..n)
        .map(|i| {
            let l = ServerLoad::new();
            for _ in 0..(i % 5) {
                l.inc_in_flight();
            }
            l
        })
        .collect();
    (weights, ids, loads)
}

fn picks(c: &mut Criterion) {
    let policies = [
        ("round_robin", Policy::RoundRobin),
        ("least_conn", Policy::LeastConn),
        ("random", Policy::Random),
        ("p2c", Policy::P2c),
        ("ewma", Policy::Ewma),
        ("consistent_hash", Policy::ConsistentHash),
    ];
    let mut group = c.benchmark_group("pick");
    for n in [10usize, 1000] {
        let (weights, ids, loads) = servers(n);
        for (name, policy) in policies {
            let balancer = Balancer::with_ids(policy, &weights, &ids);
            let mut rng = Rng::new(42);
            let mut key: u64 = 0;
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut ctx = PickContext::new(&mut rng, 1_000_000);
                    if policy == Policy::ConsistentHash {
                        ctx.key = Some(key);
                    }
                    black_box(balancer.pick(loads.as_slice(), &mut ctx))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
