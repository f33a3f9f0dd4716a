use super::*;

#[test]
fn new_server_is_usable_idle_unsampled() {
    let l = ServerLoad::new();
    assert!(l.usable());
    assert_eq!(l.in_flight(), 0);
    assert_eq!(l.ewma_nanos(0), 0);
    let d = ServerLoad::default();
    assert!(d.usable());
}

#[test]
fn usable_flag() {
    let l = ServerLoad::new();
    l.set_usable(false);
    assert!(!l.usable());
    l.set_usable(true);
    assert!(l.usable());
}

#[test]
fn guard_counts_until_dropped() {
    let l = ServerLoad::new();
    let a = l.begin();
    let b = l.begin();
    assert_eq!(l.in_flight(), 2);
    assert!(std::ptr::eq(a.load(), &l));
    drop(a);
    assert_eq!(l.in_flight(), 1);
    drop(b);
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn manual_pair_and_saturation() {
    let l = ServerLoad::new();
    l.inc_in_flight();
    l.inc_in_flight();
    l.dec_in_flight();
    assert_eq!(l.in_flight(), 1);
    l.dec_in_flight();
    l.dec_in_flight();
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn latency_passthrough() {
    let l = ServerLoad::new();
    l.observe_latency(3_000_000, 0);
    assert_eq!(l.ewma_nanos(0), 3_000_000);
}

#[test]
fn concurrent_guards_balance_out() {
    let l = ServerLoad::new();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..50_000 {
                    let _g = l.begin();
                }
            });
        }
    });
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn loads_impls() {
    fn total<L: Loads + ?Sized>(l: &L) -> u32 {
        (0..l.len()).map(|i| l.load(i).in_flight()).sum()
    }
    let v: Vec<ServerLoad> = (0..3).map(|_| ServerLoad::new()).collect();
    v[1].inc_in_flight();
    assert_eq!(total(&v), 1);
    assert_eq!(total(v.as_slice()), 1);
    assert!(!Loads::is_empty(&v));
    let arcs: Vec<Arc<ServerLoad>> = (0..2).map(|_| Arc::new(ServerLoad::new())).collect();
    arcs[0].inc_in_flight();
    assert_eq!(total(&arcs), 1);
    assert_eq!(Loads::len(arcs.as_slice()), 2);
    let refs: Vec<&ServerLoad> = v.iter().collect();
    assert_eq!(total(&refs), 1);
    let arr = [ServerLoad::new(), ServerLoad::new()];
    assert_eq!(Loads::len(&arr), 2);
    let empty: Vec<ServerLoad> = Vec::new();
    assert!(Loads::is_empty(&empty));
}

#[test]
fn try_inc_stops_at_the_limit() {
    let l = ServerLoad::new();
    assert!(l.try_inc_in_flight_below(2));
    assert!(l.try_inc_in_flight_below(2));
    assert!(!l.try_inc_in_flight_below(2));
    assert_eq!(l.in_flight(), 2);
    l.dec_in_flight();
    assert!(l.try_inc_in_flight_below(2));
    assert_eq!(l.in_flight(), 2);
}
