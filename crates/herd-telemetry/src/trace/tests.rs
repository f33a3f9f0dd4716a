use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn traceparent_parses_the_spec_example() {
    let tp = TraceParent::parse(VALID.as_bytes()).unwrap();
    assert_eq!(tp.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp.parent_id.to_hex(), "00f067aa0ba902b7");
    assert!(tp.sampled());
    let again = TraceParent::encode(tp.trace_id, tp.parent_id, true);
    assert_eq!(&again[..], VALID.as_bytes());
}

#[test]
fn traceparent_refuses_what_the_spec_refuses() {
    let bad = [
        "",
        // upper-case hex (HEXDIGLC only)
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        // all-zero trace id, all-zero parent id
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // version ff is forbidden
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // version 00 with trailing data
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        // wrong separators, short fields
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        // not hex
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        // a later version may extend, but only after a dash
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    ];
    for b in bad {
        assert_eq!(TraceParent::parse(b.as_bytes()), None, "{b:?}");
    }
    // A later version's extra fields are ignored.
    let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever";
    let tp = TraceParent::parse(future.as_bytes()).unwrap();
    assert!(!tp.sampled());
}

#[test]
fn ratio_sampling_keeps_the_share_asked_for_and_agrees_on_a_trace() {
    let mut kept = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut id = [1u8; 16];
        id[8..].copy_from_slice(&x.to_be_bytes());
        if ratio_sampled(TraceId(id), 0.01) {
            kept += 1;
        }
    }
    assert!((800..1200).contains(&kept), "{kept} of 100000 at 1%");
    let id = TraceId([7; 16]);
    assert_eq!(ratio_sampled(id, 0.5), ratio_sampled(id, 0.5));
    assert!(ratio_sampled(id, 1.0));
    assert!(!ratio_sampled(id, 0.0));
}

fn span(service: &str, kind: SpanKind) -> Span {
    Span {
        trace_id: TraceId([0xab; 16]),
        span_id: SpanId([0x01; 8]),
        parent_span_id: Some(SpanId([0x02; 8])),
        service: service.into(),
        name: "GET /x".into(),
        kind,
        start_unix_nanos: 1_700_000_000_000_000_000,
        end_unix_nanos: 1_700_000_000_250_000_000,
        error: false,
        status_message: String::new(),
        attributes: vec![
            ("http.response.status_code".into(), AttrValue::Int(200)),
            ("herd.backend".into(), AttrValue::Str("app".into())),
        ],
    }
}

#[test]
fn protobuf_round_trips_what_the_gateway_sends() {
    let spans = vec![span("gw", SpanKind::Server)];
    let body = encode_protobuf("gw", &spans);
    let d = decode_protobuf(&body).unwrap();
    assert_eq!(d.rejected, 0);
    assert_eq!(d.spans, spans);
    assert_eq!(d.spans[0].duration_nanos(), 250_000_000);
    assert!(encode_response(&d).is_empty());
}

#[test]
fn protobuf_garbage_is_an_error_not_a_panic() {
    assert!(decode_protobuf(b"\xff\xff\xff\xff").is_err());
    // A valid empty request holds no spans.
    assert_eq!(decode_protobuf(b"").unwrap().spans.len(), 0);
}

#[test]
fn json_reads_the_spec_mapping_and_counts_bad_spans() {
    let body = br#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"scope":{"name":"x"},"spans":[
        {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
         "parentSpanId":"EEE19B7EC3C1B173","name":"GET /pay","kind":2,
         "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}]},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"bad","name":"broken"},
        {"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b175",
         "name":"internal","kind":"SPAN_KIND_INTERNAL","status":{"code":2,"message":"boom"}}
      ]}]}]}"#;
    let d = decode_json(body).unwrap();
    assert_eq!(d.rejected, 1);
    assert!(d.first_error.as_deref().unwrap().contains("\"broken\""));
    assert_eq!(d.spans.len(), 2);
    let s = &d.spans[0];
    assert_eq!(s.service, "checkout");
    assert_eq!(s.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.parent_span_id.unwrap().to_hex(), "eee19b7ec3c1b173");
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.duration_nanos(), 1_000_000_000);
    assert!(s.error, "a 5xx server span is an error");
    assert_eq!(d.spans[1].kind, SpanKind::Internal);
    assert!(d.spans[1].error);
    assert_eq!(d.spans[1].parent_span_id, None);
    assert!(decode_json(b"{").is_err());
    assert!(decode_json(br#"{"resourceSpans": 3}"#).is_err());
}

#[test]
fn the_export_writer_writes_what_the_decoder_reads_back() {
    let mut w = ExportWriter::new();
    let attrs = [
        ("http.request.method", Attr::Str("GET")),
        ("http.response.status_code", Attr::Int(200)),
        ("big", Attr::Int(-1)),
        ("herd.time.ttfb_ms", Attr::Double(1.25)),
        ("herd.complete", Attr::Bool(false)),
        ("long", Attr::Str(&"x".repeat(300))),
    ];
    for (i, error) in [(1u8, false), (2, true)] {
        w.span(
            &SpanFields {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([i; 8]),
                parent_span_id: (i == 2).then_some(SpanId([1; 8])),
                name: "GET /x",
                kind: SpanKind::Server,
                start_unix_nanos: 1_800_000_000_000_000_000,
                end_unix_nanos: 1_800_000_000_500_000_000,
                error,
                status_message: if error { "cut short" } else { "" },
            },
            &attrs,
        );
    }
    assert_eq!(w.len(), 2);
    let body = w.finish("edge");
    assert!(w.is_empty());
    let d = decode_protobuf(&body).unwrap();
    assert_eq!(d.rejected, 0);
    assert_eq!(d.spans.len(), 2);
    let (a, b) = (&d.spans[0], &d.spans[1]);
    assert_eq!((a.service.as_str(), a.name.as_str()), ("edge", "GET /x"));
    assert_eq!(a.parent_span_id, None);
    assert_eq!(b.parent_span_id, Some(SpanId([1; 8])));
    assert_eq!(a.duration_nanos(), 500_000_000);
    assert!(!a.error && b.error && b.status_message == "cut short");
    assert_eq!(
        a.attr("http.request.method"),
        Some(&AttrValue::Str("GET".into()))
    );
    assert_eq!(
        a.attr("http.response.status_code"),
        Some(&AttrValue::Int(200))
    );
    assert_eq!(a.attr("big"), Some(&AttrValue::Int(-1)));
    assert_eq!(a.attr("herd.time.ttfb_ms"), Some(&AttrValue::Double(1.25)));
    assert_eq!(a.attr("herd.complete"), Some(&AttrValue::Bool(false)));
    assert_eq!(
        a.attr("long").and_then(AttrValue::as_str).map(str::len),
        Some(300)
    );
    // The same bytes as prost writes for the same spans.
    let same: Vec<Span> = d.spans.clone();
    assert_eq!(
        decode_protobuf(&encode_protobuf("edge", &same))
            .unwrap()
            .spans,
        d.spans
    );
}
