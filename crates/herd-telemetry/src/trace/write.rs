//! An OTLP export request written straight into bytes, for the gateway's exporter: no
//! intermediate messages, no owned attribute keys — a span costs a few appends to buffers
//! the writer reuses. [`super::decode_protobuf`] reads back what it writes (tested).

use super::context::{SpanId, TraceId};
use super::otlp::STATUS_ERROR;
use super::span::SpanKind;

/// A borrowed attribute value.
#[derive(Clone, Copy, Debug)]
pub enum Attr<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// One span's fields, borrowed.
pub struct SpanFields<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub error: bool,
    pub status_message: &'a str,
}

/// Builds one `ExportTraceServiceRequest` of one service's spans.
pub struct ExportWriter {
    spans: Vec<u8>,
    scratch: Vec<u8>,
    count: usize,
}

const LEN: u8 = 2;
const FIXED64: u8 = 1;
const FIXED32: u8 = 5;
const VARINT: u8 = 0;

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The encoded size of a length-delimited field of `len` bytes (tag of a field < 16).
fn field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn any_value_len(v: &Attr<'_>) -> usize {
    match v {
        Attr::Str(s) => field_size(s.len()),
        Attr::Bool(_) => 2,
        Attr::Int(i) => 1 + varint_len(*i as u64),
        Attr::Double(_) => 9,
    }
}

fn key_value(out: &mut Vec<u8>, field: u32, key: &str, v: &Attr<'_>) {
    let value_len = any_value_len(v);
    let kv_len = field_size(key.len()) + field_size(value_len);
    tag(out, field, LEN);
    varint(out, kv_len as u64);
    bytes_field(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, value_len as u64);
    match v {
        Attr::Str(s) => bytes_field(out, 1, s.as_bytes()),
        Attr::Bool(b) => {
            tag(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        Attr::Int(i) => {
            tag(out, 3, VARINT);
            varint(out, *i as u64);
        }
        Attr::Double(d) => {
            tag(out, 4, FIXED64);
            out.extend_from_slice(&d.to_le_bytes());
        }
    }
}

impl Default for ExportWriter {
    fn default() -> Self {
        ExportWriter::new()
    }
}

impl ExportWriter {
    pub fn new() -> ExportWriter {
        ExportWriter {
            spans: Vec::with_capacity(64 << 10),
            scratch: Vec::with_capacity(1024),
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn span(&mut self, s: &SpanFields<'_>, attrs: &[(&str, Attr<'_>)]) {
        let b = &mut self.scratch;
        b.clear();
        bytes_field(b, 1, &s.trace_id.0);
        bytes_field(b, 2, &s.span_id.0);
        if let Some(p) = s.parent_span_id {
            bytes_field(b, 4, &p.0);
        }
        bytes_field(b, 5, s.name.as_bytes());
        tag(b, 6, VARINT);
        varint(b, s.kind.as_i32() as u64);
        tag(b, 7, FIXED64);
        b.extend_from_slice(&s.start_unix_nanos.to_le_bytes());
        tag(b, 8, FIXED64);
        b.extend_from_slice(&s.end_unix_nanos.to_le_bytes());
        for (k, v) in attrs {
            key_value(b, 9, k, v);
        }
        if s.error {
            let status_len = field_size(s.status_message.len()) + 2;
            tag(b, 15, LEN);
            varint(b, status_len as u64);
            bytes_field(b, 2, s.status_message.as_bytes());
            tag(b, 3, VARINT);
            varint(b, STATUS_ERROR as u64);
        }
        // Sampled; the parent is known to be remote exactly when there is one.
        let flags: u32 = 0x101 | u32::from(s.parent_span_id.is_some()) << 9;
        tag(b, 16, FIXED32);
        b.extend_from_slice(&flags.to_le_bytes());
        bytes_field(&mut self.spans, 2, b);
        self.count += 1;
    }

    /// The request, with `service` as the resource's `service.name`; the writer is empty
    /// again after.
    pub fn finish(&mut self, service: &str) -> Vec<u8> {
        let mut resource = Vec::with_capacity(64);
        key_value(&mut resource, 1, "service.name", &Attr::Str(service));
        let mut scope = Vec::with_capacity(32);
        bytes_field(&mut scope, 1, b"herd");
        bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
        let scope_spans_len = field_size(scope.len()) + self.spans.len();
        let resource_spans_len = field_size(resource.len()) + field_size(scope_spans_len);
        let mut out = Vec::with_capacity(field_size(resource_spans_len));
        tag(&mut out, 1, LEN);
        varint(&mut out, resource_spans_len as u64);
        bytes_field(&mut out, 1, &resource);
        tag(&mut out, 2, LEN);
        varint(&mut out, scope_spans_len as u64);
        bytes_field(&mut out, 1, &scope);
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        self.count = 0;
        out
    }
}
