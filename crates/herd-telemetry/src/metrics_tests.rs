use crate::{Counter, Gauge};

static STATIC_COUNTER: Counter = Counter::new();

#[test]
fn counter_counts() {
    let c = Counter::default();
    c.inc();
    c.add(41);
    assert_eq!(c.get(), 42);
    STATIC_COUNTER.inc();
    assert_eq!(STATIC_COUNTER.get(), 1);
}

#[test]
fn gauge_goes_both_ways() {
    let g = Gauge::new();
    g.inc();
    g.inc();
    g.dec();
    assert_eq!(g.get(), 1);
    g.add(-5);
    assert_eq!(g.get(), -4);
    g.set(10);
    assert_eq!(g.get(), 10);
}
