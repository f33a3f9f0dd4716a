use crate::text::write_f64;
use crate::{Histogram, MetricKind, TextEncoder};

fn fmt(v: f64) -> String {
    let mut s = String::new();
    write_f64(&mut s, v);
    s
}

#[test]
fn numbers_are_spelled_like_prometheus() {
    assert_eq!(fmt(1.0), "1");
    assert_eq!(fmt(0.0), "0");
    assert_eq!(fmt(-0.0), "0");
    assert_eq!(fmt(-3.0), "-3");
    assert_eq!(fmt(2.5), "2.5");
    assert_eq!(fmt(0.0005), "0.0005");
    assert_eq!(fmt(0.00001), "1e-5");
    assert_eq!(fmt(9_007_199_254_740_991.0), "9007199254740991");
    assert_eq!(fmt(1e300), "1e300");
    assert_eq!(fmt(f64::INFINITY), "+Inf");
    assert_eq!(fmt(f64::NEG_INFINITY), "-Inf");
    assert_eq!(fmt(f64::NAN), "NaN");
}

#[test]
fn label_values_and_help_are_escaped() {
    let mut e = TextEncoder::new();
    e.family("herd_x_total", MetricKind::Counter, "a \\ b\nc \"q\"");
    e.counter(
        "herd_x_total",
        &[("server", "a\\b"), ("route", "say \"hi\"\nbye")],
        7,
    );
    assert_eq!(
        e.finish(),
        "# HELP herd_x_total a \\\\ b\\nc \"q\"\n\
         # TYPE herd_x_total counter\n\
         herd_x_total{server=\"a\\\\b\",route=\"say \\\"hi\\\"\\nbye\"} 7\n"
    );
}

#[test]
fn samples_without_labels_have_no_braces() {
    let mut e = TextEncoder::new();
    e.family("herd_inflight", MetricKind::Gauge, "In-flight requests.");
    e.gauge("herd_inflight", &[], -2);
    e.sample("herd_inflight", &[("pool", "p")], 0.25);
    e.sample("herd_inflight", &[], f64::NAN);
    assert_eq!(
        e.finish(),
        "# HELP herd_inflight In-flight requests.\n\
         # TYPE herd_inflight gauge\n\
         herd_inflight -2\n\
         herd_inflight{pool=\"p\"} 0.25\n\
         herd_inflight NaN\n"
    );
}

#[test]
fn histogram_renders_exact_text() {
    let h = Histogram::latency();
    h.observe_secs(0.003);
    h.observe_secs(0.042);
    h.observe_nanos(1_500_000_000);
    let mut e = TextEncoder::new();
    e.family(
        "herd_request_duration_seconds",
        MetricKind::Histogram,
        "Request latency.",
    );
    e.histogram("herd_request_duration_seconds", &[("route", "api")], &h);
    let expected = r#"# HELP herd_request_duration_seconds Request latency.
# TYPE herd_request_duration_seconds histogram
herd_request_duration_seconds_bucket{route="api",le="0.0005"} 0
herd_request_duration_seconds_bucket{route="api",le="0.001"} 0
herd_request_duration_seconds_bucket{route="api",le="0.0025"} 0
herd_request_duration_seconds_bucket{route="api",le="0.005"} 1
herd_request_duration_seconds_bucket{route="api",le="0.01"} 1
herd_request_duration_seconds_bucket{route="api",le="0.025"} 1
herd_request_duration_seconds_bucket{route="api",le="0.05"} 2
herd_request_duration_seconds_bucket{route="api",le="0.1"} 2
herd_request_duration_seconds_bucket{route="api",le="0.25"} 2
herd_request_duration_seconds_bucket{route="api",le="0.5"} 2
herd_request_duration_seconds_bucket{route="api",le="1"} 2
herd_request_duration_seconds_bucket{route="api",le="2.5"} 3
herd_request_duration_seconds_bucket{route="api",le="5"} 3
herd_request_duration_seconds_bucket{route="api",le="10"} 3
herd_request_duration_seconds_bucket{route="api",le="+Inf"} 3
herd_request_duration_seconds_sum{route="api"} 1.545
herd_request_duration_seconds_count{route="api"} 3
"#;
    assert_eq!(e.finish(), expected);
}

#[test]
fn unlabelled_histogram_only_has_le() {
    let h = Histogram::with_buckets(&[1.0]);
    h.observe_secs(2.0);
    let mut e = TextEncoder::new();
    e.histogram("h", &[], &h);
    assert_eq!(
        e.finish(),
        "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n"
    );
}
