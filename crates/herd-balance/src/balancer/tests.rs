use super::*;
use crate::hash::hash64;

const MS: u64 = 1_000_000;

fn loads(n: usize) -> Vec<ServerLoad> {
    (0..n).map(|_| ServerLoad::new()).collect()
}

/// Pick `times` times with no key and nothing excluded; count per server.
fn counts(b: &Balancer, l: &[ServerLoad], times: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut c = vec![0; b.len()];
    for _ in 0..times {
        let mut ctx = PickContext::new(&mut rng, 0);
        c[b.pick(l, &mut ctx).expect("eligible server")] += 1;
    }
    c
}

fn pick_key(b: &Balancer, l: &[ServerLoad], key: u64) -> Option<usize> {
    let mut rng = Rng::new(0);
    let mut ctx = PickContext::new(&mut rng, 0);
    ctx.key = Some(key);
    b.pick(l, &mut ctx)
}

fn keys() -> Vec<u64> {
    (0..10_000)
        .map(|i| hash64(format!("key-{i}").as_bytes()))
        .collect()
}

const ALL: [Policy; 6] = [
    Policy::RoundRobin,
    Policy::LeastConn,
    Policy::Random,
    Policy::P2c,
    Policy::Ewma,
    Policy::ConsistentHash,
];

#[test]
fn balancer_is_shareable() {
    fn check<T: Send + Sync>() {}
    check::<Balancer>();
    check::<ServerLoad>();
}

#[test]
fn accessors() {
    let b = Balancer::new(Policy::P2c, &[3, 0, 1]);
    assert_eq!(b.policy(), Policy::P2c);
    assert_eq!(b.weights(), &[3, 0, 1]);
    assert_eq!(b.ids(), &[0, 1, 2]);
    assert_eq!((b.len(), b.is_empty()), (3, false));
    assert_eq!(b.ring_points(), 0);
    assert!(Balancer::new(Policy::RoundRobin, &[]).is_empty());
}

#[test]
#[should_panic(expected = "one id per weight")]
fn with_ids_length_mismatch_panics() {
    Balancer::with_ids(Policy::ConsistentHash, &[1, 1], &[7]);
}

#[test]
fn round_robin_exact_sequence() {
    let b = Balancer::new(Policy::RoundRobin, &[5, 1, 1]);
    let l = loads(3);
    let mut rng = Rng::new(0);
    let seq: Vec<usize> = (0..14)
        .map(|_| b.pick(&l, &mut PickContext::new(&mut rng, 0)).unwrap())
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn round_robin_exact_shares() {
    let b = Balancer::new(Policy::RoundRobin, &[3, 1]);
    assert_eq!(counts(&b, &loads(2), 4_000, 0), [3_000, 1_000]);
}

#[test]
fn round_robin_spreads_ineligible_turns_by_weight() {
    let b = Balancer::new(Policy::RoundRobin, &[5, 1, 1]);
    let l = loads(3);
    l[0].set_usable(false);
    // Sequence a a b a c a a with a out: its turns are skipped, b and c share 1:1 (not
    // b taking a's turns).
    assert_eq!(counts(&b, &l, 70, 0), [0, 35, 35]);
    l[0].set_usable(true);
    let b = Balancer::new(Policy::RoundRobin, &[5, 1, 1]);
    assert_eq!(counts(&b, &l, 7, 0), [5, 1, 1]);
    // Three equal servers with one out: 1:1, not 2:1.
    let b = Balancer::new(Policy::RoundRobin, &[1, 1, 1]);
    l[1].set_usable(false);
    assert_eq!(counts(&b, &l, 300, 0), [150, 0, 150]);
}

#[test]
fn nothing_eligible_is_none_for_every_policy() {
    for p in ALL {
        let l = loads(3);
        let mut rng = Rng::new(1);
        let b = Balancer::new(p, &[1, 1, 1]);
        for s in &l {
            s.set_usable(false);
        }
        let mut ctx = PickContext::new(&mut rng, 0);
        ctx.key = Some(42);
        assert_eq!(b.pick(&l, &mut ctx), None, "{p:?}");
        // Drained (weight 0) servers are never picked even when usable.
        let b = Balancer::new(p, &[0, 0, 0]);
        let l = loads(3);
        let mut ctx = PickContext::new(&mut rng, 0);
        assert_eq!(b.pick(&l, &mut ctx), None, "{p:?}");
        // No servers, or no loads.
        let b = Balancer::new(p, &[]);
        assert_eq!(
            b.pick(&l, &mut PickContext::new(&mut rng, 0)),
            None,
            "{p:?}"
        );
        let b = Balancer::new(p, &[1]);
        let none: Vec<ServerLoad> = Vec::new();
        assert_eq!(
            b.pick(&none, &mut PickContext::new(&mut rng, 0)),
            None,
            "{p:?}"
        );
    }
}

#[test]
fn exclude_and_drain_hold_for_every_policy() {
    for p in ALL {
        let b = Balancer::new(p, &[1, 0, 4, 1, 2]);
        let l = loads(5);
        l[3].set_usable(false);
        let mut rng = Rng::new(5);
        let mut seen = [0usize; 5];
        for i in 0..2_000u64 {
            let mut ctx = PickContext::new(&mut rng, i);
            ctx.key = Some(hash64(&i.to_le_bytes()));
            ctx.exclude = &[4];
            seen[b.pick(&l, &mut ctx).unwrap()] += 1;
        }
        assert_eq!((seen[1], seen[3], seen[4]), (0, 0, 0), "{p:?} {seen:?}");
        // (Ewma always prefers the idle weight-4 server: 1 ms / 4 beats 1 ms / 1 and 1 ms / 2.)
        assert!(seen[2] > 0, "{p:?} {seen:?}");
        assert!(p == Policy::Ewma || seen[0] > 0, "{p:?} {seen:?}");
        // Excluding everything eligible leaves nothing.
        let mut ctx = PickContext::new(&mut rng, 0);
        ctx.key = Some(1);
        ctx.exclude = &[0, 2, 4];
        assert_eq!(b.pick(&l, &mut ctx), None, "{p:?}");
    }
}

#[test]
fn shorter_loads_make_the_rest_ineligible() {
    let b = Balancer::new(Policy::RoundRobin, &[1, 1, 1]);
    // Sequence a b c with c out of range: its turn is skipped.
    assert_eq!(counts(&b, &loads(2), 6, 0), [3, 3, 0]);
}

#[test]
fn least_conn_shares_idle_servers_equally() {
    let b = Balancer::new(Policy::LeastConn, &[1, 1, 1]);
    assert_eq!(counts(&b, &loads(3), 300, 0), [100, 100, 100]);
}

#[test]
fn least_conn_is_weighted() {
    let b = Balancer::new(Policy::LeastConn, &[1, 3]);
    let l = loads(2);
    // Hold every request open: the weight-3 server must end with 3x the in-flight.
    let mut rng = Rng::new(0);
    let guards: Vec<_> = (0..400)
        .map(|_| {
            let i = b.pick(&l, &mut PickContext::new(&mut rng, 0)).unwrap();
            l[i].begin()
        })
        .collect();
    assert_eq!((l[0].in_flight(), l[1].in_flight()), (100, 300));
    drop(guards);
    // 1 in flight on a weight-1 server costs 1; 2 on weight 3 costs 2/3: the latter wins.
    l[0].inc_in_flight();
    l[1].inc_in_flight();
    l[1].inc_in_flight();
    for _ in 0..10 {
        assert_eq!(b.pick(&l, &mut PickContext::new(&mut rng, 0)), Some(1));
    }
}

#[test]
fn random_is_weighted() {
    let b = Balancer::new(Policy::Random, &[1, 2, 7]);
    let c = counts(&b, &loads(3), 100_000, 12_345);
    for (got, want) in c.iter().zip([10_000usize, 20_000, 70_000]) {
        assert!(got.abs_diff(want) <= 1_500, "{c:?}");
    }
}

#[test]
fn random_renormalises_over_eligible_servers() {
    let b = Balancer::new(Policy::Random, &[1, 2, 7]);
    let l = loads(3);
    l[2].set_usable(false);
    let c = counts(&b, &l, 30_000, 99);
    assert_eq!(c[2], 0);
    // 1:2 of the remainder.
    assert!(c[0].abs_diff(10_000) <= 450, "{c:?}");
}

#[test]
fn p2c_prefers_the_less_loaded() {
    let b = Balancer::new(Policy::P2c, &[1, 1]);
    let l = loads(2);
    l[0].inc_in_flight();
    // With two servers both are always drawn, so the idle one always wins.
    assert_eq!(counts(&b, &l, 1_000, 3), [0, 1_000]);
    // Only one eligible: it, whatever its load.
    l[1].set_usable(false);
    assert_eq!(counts(&b, &l, 10, 3), [10, 0]);
}

#[test]
fn p2c_never_picks_the_most_loaded_of_three() {
    let b = Balancer::new(Policy::P2c, &[1, 1, 1]);
    let l = loads(3);
    for _ in 0..5 {
        l[2].inc_in_flight();
    }
    l[1].inc_in_flight();
    let c = counts(&b, &l, 3_000, 8);
    assert_eq!(c[2], 0, "{c:?}");
    // Server 0 wins every pair it is in: 2 of the 3 pairs.
    assert!(c[0].abs_diff(2_000) <= 150, "{c:?}");
}

#[test]
fn ewma_avoids_the_slow_server() {
    let l = loads(2);
    l[0].observe_latency(50 * MS, 0);
    l[1].observe_latency(MS, 0);
    let b = Balancer::new(Policy::Ewma, &[1, 1]);
    let c = counts(&b, &l, 1_000, 4);
    assert!(c[1] >= 900, "{c:?}");
    assert_eq!(c, [0, 1_000]);
}

#[test]
fn ewma_weighs_latency_against_queue_and_weight() {
    let mut rng = Rng::new(0);
    let b = Balancer::new(Policy::Ewma, &[1, 1]);
    let l = loads(2);
    l[0].observe_latency(10 * MS, 0);
    l[1].observe_latency(2 * MS, 0);
    let mut pick = |b: &Balancer| b.pick(&l, &mut PickContext::new(&mut rng, 0));
    // Cost = latency x (in flight + 1) / weight. 10 ms x 1 vs 2 ms x (3 + 1) = 8 ms.
    for _ in 0..3 {
        l[1].inc_in_flight();
    }
    assert_eq!(pick(&b), Some(1));
    // 2 ms x (5 + 1) = 12 ms: the queue outweighs the faster responses.
    l[1].inc_in_flight();
    l[1].inc_in_flight();
    assert_eq!(pick(&b), Some(0));
    // Weight divides the cost: 10 ms / 5 = 2 ms beats 12 ms; 10 ms / 1 loses to 12 ms / 2.
    assert_eq!(pick(&Balancer::new(Policy::Ewma, &[5, 1])), Some(0));
    assert_eq!(pick(&Balancer::new(Policy::Ewma, &[1, 2])), Some(1));
}

#[test]
fn ewma_tries_unsampled_servers() {
    let l = loads(2);
    l[0].observe_latency(5 * MS, 0);
    let b = Balancer::new(Policy::Ewma, &[1, 1]);
    // The new server's assumed 1 ms beats the measured 5 ms.
    assert_eq!(counts(&b, &l, 100, 0), [0, 100]);
}

#[test]
fn ewma_forgives_an_old_slow_sample() {
    let l = loads(2);
    l[0].observe_latency(50 * MS, 0);
    l[1].observe_latency(5 * MS, 0);
    let b = Balancer::new(Policy::Ewma, &[1, 1]);
    let mut rng = Rng::new(0);
    assert_eq!(b.pick(&l, &mut PickContext::new(&mut rng, 0)), Some(1));
    // 40 s later server 1 was sampled again at 5 ms, server 0 was not:
    // 50 e^-4 = 0.92 ms < 5 ms, so server 0 gets another chance.
    l[1].observe_latency(5 * MS, 40_000 * MS);
    let now = 40_000 * MS;
    assert_eq!(b.pick(&l, &mut PickContext::new(&mut rng, now)), Some(0));
}

#[test]
fn consistent_hash_spreads_keys_evenly() {
    let b = Balancer::new(Policy::ConsistentHash, &[1; 5]);
    assert_eq!(b.ring_points(), 800);
    let l = loads(5);
    let mut c = [0usize; 5];
    for &k in &keys() {
        c[pick_key(&b, &l, k).unwrap()] += 1;
    }
    for &n in &c {
        assert!(n.abs_diff(2_000) <= 300, "{c:?}");
    }
}

#[test]
fn consistent_hash_is_deterministic_across_builds() {
    let a = Balancer::new(Policy::ConsistentHash, &[1; 5]);
    let b = Balancer::new(Policy::ConsistentHash, &[1; 5]);
    let l = loads(5);
    for &k in &keys()[..1_000] {
        assert_eq!(pick_key(&a, &l, k), pick_key(&b, &l, k));
    }
}

#[test]
fn consistent_hash_unusable_server_moves_only_its_keys() {
    let b = Balancer::new(Policy::ConsistentHash, &[1; 5]);
    let l = loads(5);
    let keys = keys();
    let before: Vec<usize> = keys.iter().map(|&k| pick_key(&b, &l, k).unwrap()).collect();
    l[2].set_usable(false);
    let during: Vec<usize> = keys.iter().map(|&k| pick_key(&b, &l, k).unwrap()).collect();
    let mut moved = 0;
    for (x, y) in before.iter().zip(&during) {
        assert_ne!(*y, 2);
        if *x == 2 {
            moved += 1;
        } else {
            assert_eq!(x, y, "a key not on the down server moved");
        }
    }
    assert!((1_500..=2_500).contains(&moved), "{moved}");
    // Its keys spill to several neighbours, not all onto one.
    let spill: std::collections::HashSet<usize> = before
        .iter()
        .zip(&during)
        .filter(|(x, _)| **x == 2)
        .map(|(_, y)| *y)
        .collect();
    assert!(spill.len() >= 3, "{spill:?}");
    l[2].set_usable(true);
    let after: Vec<usize> = keys.iter().map(|&k| pick_key(&b, &l, k).unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn consistent_hash_exclude_moves_the_key_to_its_neighbour() {
    let b = Balancer::new(Policy::ConsistentHash, &[1; 5]);
    let l = loads(5);
    for &k in &keys()[..500] {
        let first = pick_key(&b, &l, k).unwrap();
        l[first].set_usable(false);
        let neighbour = pick_key(&b, &l, k).unwrap();
        l[first].set_usable(true);
        let mut rng = Rng::new(0);
        let mut ctx = PickContext::new(&mut rng, 0);
        ctx.key = Some(k);
        let tried = [first];
        ctx.exclude = &tried;
        assert_eq!(b.pick(&l, &mut ctx), Some(neighbour));
    }
}

#[test]
fn consistent_hash_respects_weights() {
    let b = Balancer::new(Policy::ConsistentHash, &[1, 3]);
    let l = loads(2);
    let heavy = keys()
        .iter()
        .filter(|&&k| pick_key(&b, &l, k) == Some(1))
        .count();
    assert!(heavy.abs_diff(7_500) <= 500, "{heavy}");
}

#[test]
fn consistent_hash_with_ids_survives_removal() {
    let addrs: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}:8080")).collect();
    let ids: Vec<u64> = addrs.iter().map(|a| hash64(a.as_bytes())).collect();
    let full = Balancer::with_ids(Policy::ConsistentHash, &[1; 5], &ids);
    assert_eq!(full.ids(), &ids[..]);
    // Server "10.0.0.3" removed: the others shift down one index but keep their ids.
    let rest_ids: Vec<u64> = [0, 1, 3, 4].iter().map(|&i| ids[i]).collect();
    let rest = Balancer::with_ids(Policy::ConsistentHash, &[1; 4], &rest_ids);
    let (l5, l4) = (loads(5), loads(4));
    let mut moved = 0;
    for &k in &keys() {
        let a = ids[pick_key(&full, &l5, k).unwrap()];
        let b = rest_ids[pick_key(&rest, &l4, k).unwrap()];
        if a == ids[2] {
            moved += 1;
        } else {
            assert_eq!(a, b, "a key not on the removed server moved");
        }
    }
    assert!((1_500..=2_500).contains(&moved), "{moved}");
}

#[test]
fn consistent_hash_without_key_is_round_robin() {
    let b = Balancer::new(Policy::ConsistentHash, &[5, 1, 1]);
    let l = loads(3);
    let mut rng = Rng::new(0);
    let seq: Vec<usize> = (0..7)
        .map(|_| b.pick(&l, &mut PickContext::new(&mut rng, 0)).unwrap())
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn weights_can_be_replaced_by_a_new_balancer() {
    // Loads outlive balancers: a re-weight swaps the balancer, the in-flight counts stay.
    let l = loads(2);
    let _g = l[0].begin();
    let b = Balancer::new(Policy::RoundRobin, &[1, 0]);
    assert_eq!(counts(&b, &l, 3, 0), [3, 0]);
    let b = Balancer::new(Policy::RoundRobin, &[0, 1]);
    assert_eq!(counts(&b, &l, 3, 0), [0, 3]);
    assert_eq!(l[0].in_flight(), 1);
}

#[test]
fn concurrent_round_robin_keeps_exact_totals() {
    let b = Balancer::new(Policy::RoundRobin, &[3, 1]);
    let l = loads(2);
    let totals: Vec<Vec<usize>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (b, l) = (&b, &l);
                s.spawn(move || counts(b, l, 2_000, t))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(totals[0][0] + totals[1][0], 3_000);
    assert_eq!(totals[0][1] + totals[1][1], 1_000);
}
