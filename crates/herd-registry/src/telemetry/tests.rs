//! The store and the answers, with exact numbers: edges found whatever order spans come
//! in, a parent that never comes, cycles, the bound, TOP N order, and one trace's tree.

use super::query::{self, By};
use super::store::{TraceFilter, TraceStore, ATTR_BACKEND, PARENT_GRACE_MS};
use herd_telemetry::trace::{AttrValue, Span, SpanId, SpanKind, TraceId};

const NOW: u64 = 1_800_000_000_000; // ms

fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &str,
    kind: SpanKind,
    start_ms: u64,
    dur_ms: u64,
) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        service: service.into(),
        name: format!("GET /{service}"),
        kind,
        start_unix_nanos: (NOW - 1_000 + start_ms) * 1_000_000,
        end_unix_nanos: (NOW - 1_000 + start_ms + dur_ms) * 1_000_000,
        error: false,
        status_message: String::new(),
        attributes: vec![],
    }
}

fn gateway(trace: u8, id: u8, parent: Option<u8>, backend: &str, start: u64, dur: u64) -> Span {
    let mut s = span(
        trace,
        id,
        parent,
        "herd-gateway",
        SpanKind::Server,
        start,
        dur,
    );
    s.attributes
        .push((ATTR_BACKEND.into(), AttrValue::Str(backend.into())));
    s
}

fn edges(store: &TraceStore) -> Vec<(String, String, u64)> {
    store
        .dump(NOW, 300)
        .edges
        .into_iter()
        .map(|(a, b, s)| (a, b, s.calls))
        .collect()
}

/// client → gateway → a → (a's client span) → gateway → b, one trace.
fn chain(trace: u8) -> Vec<Span> {
    vec![
        gateway(trace, 1, None, "a", 0, 100),
        span(trace, 2, Some(1), "a", SpanKind::Server, 1, 98),
        span(trace, 3, Some(2), "a", SpanKind::Client, 10, 50),
        gateway(trace, 4, Some(3), "b", 11, 48),
        span(trace, 5, Some(4), "b", SpanKind::Server, 12, 46),
    ]
}

#[test]
fn a_chain_through_the_gateway_gives_one_edge_per_hop_in_any_order() {
    let mut forward = TraceStore::new(1000);
    forward.ingest(chain(1), NOW);
    let mut backward = TraceStore::new(1000);
    for s in chain(1).into_iter().rev() {
        backward.ingest(vec![s], NOW);
    }
    let want = vec![
        ("a".to_string(), "b".to_string(), 1),
        ("herd-gateway".to_string(), "a".to_string(), 1),
    ];
    assert_eq!(edges(&forward), want);
    assert_eq!(edges(&backward), want);
    let d = forward.dump(NOW, 300);
    let services: Vec<(&str, u64)> = d
        .services
        .iter()
        .map(|(s, c)| (s.as_str(), c.calls))
        .collect();
    assert_eq!(services, vec![("a", 1), ("b", 1), ("herd-gateway", 2)]);
}

#[test]
fn a_missing_parent_is_waited_for_then_decided_without_it() {
    let mut store = TraceStore::new(1000);
    // The gateway span names a parent (the client's) that is never reported.
    store.ingest(vec![gateway(2, 1, Some(9), "a", 0, 10)], NOW);
    // And a server span whose caller is outside herd's view.
    store.ingest(vec![span(3, 1, Some(9), "c", SpanKind::Server, 0, 10)], NOW);
    assert!(edges(&store).is_empty(), "decided before the grace ran out");
    store.expire(NOW + PARENT_GRACE_MS - 1);
    assert!(edges(&store).is_empty());
    store.expire(NOW + PARENT_GRACE_MS);
    assert_eq!(edges(&store), vec![("herd-gateway".into(), "a".into(), 1)]);
}

#[test]
fn direct_calls_and_a_ring_are_found_and_the_ring_is_a_cycle() {
    let mut store = TraceStore::new(1000);
    // a → b → c → a, each hop a client span and the callee's server span, no gateway.
    store.ingest(
        vec![
            span(4, 1, None, "a", SpanKind::Server, 0, 100),
            span(4, 2, Some(1), "a", SpanKind::Client, 1, 90),
            span(4, 3, Some(2), "b", SpanKind::Server, 2, 88),
            span(4, 4, Some(3), "b", SpanKind::Client, 3, 80),
            span(4, 5, Some(4), "c", SpanKind::Server, 4, 78),
            span(4, 6, Some(5), "c", SpanKind::Client, 5, 70),
            span(4, 7, Some(6), "a", SpanKind::Server, 6, 60),
            span(4, 8, Some(7), "d", SpanKind::Internal, 7, 1),
        ],
        NOW,
    );
    let d = store.dump(NOW, 300);
    let (nodes, graph_edges, cycles) = query::graph(&d);
    assert_eq!(cycles, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    assert_eq!(graph_edges.len(), 3);
    assert!(graph_edges.iter().all(|e| e.in_cycle && e.calls == 1));
    let a = nodes.iter().find(|n| n.name == "a").unwrap();
    assert_eq!((a.calls_in, a.calls_out, a.in_cycle), (1, 1, true));
    // d has no server span and no call into it: not a node.
    assert!(!nodes.iter().any(|n| n.name == "d"));
}

#[test]
fn the_store_keeps_its_bound_by_dropping_whole_old_traces() {
    let mut store = TraceStore::new(5);
    store.ingest(chain(1), NOW);
    store.ingest(chain(2), NOW);
    let d = store.dump(NOW, 300);
    assert_eq!((d.spans_kept, d.spans_evicted), (5, 5));
    assert!(store.trace(TraceId([1; 16])).is_empty());
    assert_eq!(store.trace(TraceId([2; 16])).len(), 5);
    // The aggregates outlive the spans: both traces' calls are counted.
    assert_eq!(edges(&store)[0].2, 2);
    // A span sent twice is kept and counted once.
    store.ingest(vec![chain(2).remove(0)], NOW);
    assert_eq!(store.dump(NOW, 300).spans_kept, 5);
    assert_eq!(edges(&store)[1].2, 2);
}

#[test]
fn top_orders_by_what_was_asked_and_filters_traces() {
    let mut store = TraceStore::new(1000);
    for i in 0..3u8 {
        store.ingest(
            vec![span(10 + i, 1, None, "fast", SpanKind::Server, 0, 1)],
            NOW,
        );
    }
    let mut slow = span(20, 1, None, "slow", SpanKind::Server, 0, 400);
    slow.error = true;
    store.ingest(vec![slow], NOW);
    let d = store.dump(NOW, 300);
    let (by_calls, _) = query::top(&d, By::Calls, 10);
    assert_eq!(
        by_calls
            .iter()
            .map(|r| (r.service.as_str(), r.calls))
            .collect::<Vec<_>>(),
        vec![("fast", 3), ("slow", 1)]
    );
    let (by_p99, endpoints) = query::top(&d, By::P99, 1);
    assert_eq!(by_p99[0].service, "slow");
    assert!(
        (320.0..=500.0).contains(&by_p99[0].p99_ms),
        "{}",
        by_p99[0].p99_ms
    );
    assert_eq!(endpoints[0].name.as_deref(), Some("GET /slow"));
    let (by_errors, _) = query::top(&d, By::Errors, 10);
    assert_eq!(
        (by_errors[0].service.as_str(), by_errors[0].error_ratio),
        ("slow", 1.0)
    );

    let all = store.traces(&TraceFilter {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(all.len(), 4);
    let slow_only = store.traces(&TraceFilter {
        min_duration_nanos: 100_000_000,
        limit: 100,
        ..Default::default()
    });
    assert_eq!(slow_only.len(), 1);
    assert_eq!(slow_only[0].root_service, "slow");
    let errors = store.traces(&TraceFilter {
        error_only: true,
        limit: 100,
        ..Default::default()
    });
    assert_eq!(errors.len(), 1);
    let fast = store.traces(&TraceFilter {
        service: Some("fast".into()),
        limit: 2,
        ..Default::default()
    });
    assert_eq!(fast.len(), 2);
}

#[test]
fn a_trace_is_a_tree_with_offsets_and_self_time() {
    let mut store = TraceStore::new(1000);
    store.ingest(chain(7), NOW);
    let (duration, spans) = query::tree(store.trace(TraceId([7; 16])));
    assert_eq!(duration, 100.0);
    let shape: Vec<(u32, &str, f64, f64)> = spans
        .iter()
        .map(|s| (s.depth, s.service.as_str(), s.offset_ms, s.self_ms))
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, "herd-gateway", 0.0, 2.0),
            (1, "a", 1.0, 48.0),
            (2, "a", 10.0, 2.0),
            (3, "herd-gateway", 11.0, 2.0),
            (4, "b", 12.0, 46.0),
        ]
    );
    // Spans from two nodes with one in common merge into one tree.
    let mut twice = store.trace(TraceId([7; 16]));
    twice.extend(store.trace(TraceId([7; 16])));
    assert_eq!(query::tree(twice).1.len(), 5);
}
