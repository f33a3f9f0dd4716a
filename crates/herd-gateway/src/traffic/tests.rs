//! A route's rules on their own, built from config text as the snapshot builds them, on
//! tokio's paused clock: token buckets refill only when the test moves time, so every count
//! below is exact (docs/traffic-control.md is the promise).

use super::*;
use std::net::IpAddr;
use std::time::Duration;

fn guard(route_keys: &str) -> RouteGuard {
    let text = format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n{route_keys}\n\n\
         [backends.app]\nservers = [ {{ addr = \"127.0.0.1:9\" }} ]\n"
    );
    let config = herd_config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    RouteGuard::build(&config.routes[0], &config.listeners[0]).expect("a guard")
}

fn request(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(start_paused = true)]
async fn a_bucket_lets_burst_through_then_one_per_interval() {
    // 2 per second, burst 3: three at once, then one every 500 ms.
    let g = guard("rate_limit = { key = \"route\", per_second = 2, burst = 3 }");
    let parts = request(&[]);
    let c = ip("10.0.0.1");
    for i in 0..3 {
        assert_eq!(g.check(&parts, c), Ok(()), "burst request {i}");
    }
    assert_eq!(
        g.check(&parts, c),
        Err(Refusal::RateLimited { retry_after_s: 1 })
    );
    tokio::time::advance(Duration::from_millis(499)).await;
    assert!(g.check(&parts, c).is_err(), "499 ms is not a token");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(g.check(&parts, c), Ok(()), "500 ms is one token");
    assert!(g.check(&parts, c).is_err());
    // A quiet spell refills up to the burst, not beyond it.
    tokio::time::advance(Duration::from_secs(60)).await;
    let passed = (0..10).filter(|_| g.check(&parts, c).is_ok()).count();
    assert_eq!(passed, 3);
    assert_eq!(g.rate_limited.get(), 2 + 1 + 7);
}

#[tokio::test(start_paused = true)]
async fn header_keys_have_their_own_buckets_and_a_missing_header_uses_the_ip() {
    let g = guard("rate_limit = { key = \"header:X-Api-Key\", per_second = 1, burst = 1 }");
    let (a, b, none) = (
        request(&[("x-api-key", "a")]),
        request(&[("x-api-key", "b")]),
        request(&[]),
    );
    let c = ip("10.0.0.1");
    assert_eq!(g.check(&a, c), Ok(()));
    assert_eq!(g.check(&b, c), Ok(()), "another key, another bucket");
    assert!(g.check(&a, c).is_err());
    assert_eq!(
        g.check(&none, c),
        Ok(()),
        "no header: the client IP's bucket"
    );
    assert!(g.check(&none, c).is_err());
    assert_eq!(g.check(&none, ip("10.0.0.2")), Ok(()), "another client IP");
    // A refused request takes no token: one second later each bucket has exactly one.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(g.check(&a, c), Ok(()));
    assert!(g.check(&a, c).is_err());
}

#[tokio::test(start_paused = true)]
async fn deny_wins_over_allow_and_an_allow_list_closes_the_rest() {
    let g = guard("allow = [\"10.0.0.0/8\"]\ndeny = [\"10.1.0.0/16\"]");
    let parts = request(&[]);
    assert_eq!(g.check(&parts, ip("10.2.3.4")), Ok(()));
    assert!(matches!(
        g.check(&parts, ip("10.1.2.3")),
        Err(Refusal::Forbidden(_))
    ));
    assert!(matches!(
        g.check(&parts, ip("192.168.1.1")),
        Err(Refusal::Forbidden(_))
    ));
    // An IPv4 client seen over IPv6 (mapped) is the same client.
    assert_eq!(g.check(&parts, ip("::ffff:10.2.3.4")), Ok(()));
    assert_eq!(g.forbidden.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_declared_body_over_the_limit_is_refused_before_any_token() {
    let g = guard(
        "max_body_size = \"1KiB\"\nrate_limit = { key = \"route\", per_second = 1, burst = 1 }",
    );
    let c = ip("10.0.0.1");
    assert_eq!(
        g.check(&request(&[("content-length", "1025")]), c),
        Err(Refusal::TooLarge)
    );
    // The refusal spent no token: the next request within the limit passes.
    assert_eq!(g.check(&request(&[("content-length", "1024")]), c), Ok(()));
    assert_eq!(g.too_large.get(), 1);
}

fn breaker(keys: &str) -> GroupBreaker {
    let text = format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ {{ addr = \"127.0.0.1:9\" }} ]\ncircuit_breaker = {{ {keys} }}\n"
    );
    let config = herd_config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let settings = config.backends["app"]
        .traffic
        .circuit_breaker
        .as_ref()
        .expect("a breaker");
    GroupBreaker::new(settings)
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opens_fails_fast_probes_and_closes() {
    use herd_balance::{Admission, BreakerState};
    let b = breaker("consecutive_failures = 3, open_for = \"5s\", half_open_probes = 1");
    for _ in 0..3 {
        let a = b.admit("app");
        assert_eq!(a, Admission::Pass);
        b.record("app", a, false);
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.admit("app"), Admission::Reject);
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert_eq!(b.admit("app"), Admission::Reject, "still open at 4.999 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    let probe = b.admit("app");
    assert!(matches!(probe, Admission::Probe(_)), "{probe:?}");
    assert_eq!(b.admit("app"), Admission::Reject, "one probe at a time");
    b.record("app", probe, true);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.admit("app"), Admission::Pass);
    assert_eq!(b.rejected.get(), 3);
    let moved: Vec<u64> = b
        .transitions
        .iter()
        .map(herd_telemetry::Counter::get)
        .collect();
    assert_eq!(moved, [1, 1, 1], "closed, open, half-open: once each");
}
