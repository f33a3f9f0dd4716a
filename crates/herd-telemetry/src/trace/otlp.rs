//! OTLP/HTTP traces in protobuf (opentelemetry-proto `collector/trace/v1`): the messages
//! written by hand with prost's derive — only the fields herd reads or writes; prost skips
//! the others — so no protoc and no build script.

use super::context::{SpanId, TraceId};
use super::span::{AttrValue, Span, SpanKind, UNKNOWN_SERVICE};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<ProtoSpan>,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// Status code ERROR.
pub const STATUS_ERROR: i32 = 2;

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "5")]
        Array(super::ArrayValue),
        #[prost(message, tag = "6")]
        Kvlist(super::KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        Bytes(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// What one export request held: the spans herd can keep, and how many it could not (an
/// id of the wrong length or all zeros), for OTLP's partial-success answer.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub rejected: u64,
    /// The first rejection's reason, for the answer's error_message.
    pub first_error: Option<String>,
}

impl Decoded {
    pub(crate) fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
pub struct DecodeError(pub(crate) String);

/// Decodes an OTLP/HTTP protobuf body.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    let req = ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError(e.to_string()))?;
    Ok(spans_of(req))
}

/// The spans of a decoded request, protobuf or JSON alike.
pub(crate) fn spans_of(req: ExportTraceServiceRequest) -> Decoded {
    let mut out = Decoded::default();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| service_name(&r.attributes))
            .unwrap_or(UNKNOWN_SERVICE)
            .to_string();
        for ss in rs.scope_spans {
            for s in ss.spans {
                match from_proto(&service, s) {
                    Ok(span) => out.spans.push(span),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    out
}

/// The partial-success answer: empty when every span was kept (OTLP: the field is unset).
pub fn encode_response(d: &Decoded) -> Vec<u8> {
    ExportTraceServiceResponse {
        partial_success: (d.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: d.rejected as i64,
            error_message: d.first_error.clone().unwrap_or_default(),
        }),
    }
    .encode_to_vec()
}

fn service_name(attrs: &[KeyValue]) -> Option<&str> {
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::String(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
}

fn from_proto(service: &str, s: ProtoSpan) -> Result<Span, String> {
    let trace_id = <[u8; 16]>::try_from(s.trace_id.as_slice())
        .map(TraceId)
        .ok()
        .filter(TraceId::is_valid)
        .ok_or_else(|| format!("span {:?}: trace_id must be 16 bytes, not all zero", s.name))?;
    let span_id = <[u8; 8]>::try_from(s.span_id.as_slice())
        .map(SpanId)
        .ok()
        .filter(SpanId::is_valid)
        .ok_or_else(|| format!("span {:?}: span_id must be 8 bytes, not all zero", s.name))?;
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        8 => Some(SpanId(
            <[u8; 8]>::try_from(s.parent_span_id.as_slice()).unwrap_or_default(),
        ))
        .filter(SpanId::is_valid),
        _ => {
            return Err(format!(
                "span {:?}: parent_span_id must be empty or 8 bytes",
                s.name
            ))
        }
    };
    let attributes: Vec<(String, AttrValue)> = s
        .attributes
        .into_iter()
        .filter_map(|kv| Some((kv.key, attr_value(kv.value?.value?))))
        .collect();
    let status = s.status.unwrap_or_default();
    let kind = SpanKind::from_i32(s.kind);
    Ok(Span {
        error: is_error(status.code, kind, &attributes),
        trace_id,
        span_id,
        parent_span_id,
        service: service.to_string(),
        name: s.name,
        kind,
        start_unix_nanos: s.start_time_unix_nano,
        end_unix_nanos: s.end_time_unix_nano.max(s.start_time_unix_nano),
        status_message: status.message,
        attributes,
    })
}

/// ERROR status, or — for instrumentation that leaves the status unset — a server span
/// that answered 5xx (OpenTelemetry's HTTP conventions mark exactly those as errors).
pub(crate) fn is_error(code: i32, kind: SpanKind, attrs: &[(String, AttrValue)]) -> bool {
    if code == STATUS_ERROR {
        return true;
    }
    kind == SpanKind::Server
        && attrs
            .iter()
            .find(|(k, _)| k == "http.response.status_code" || k == "http.status_code")
            .and_then(|(_, v)| v.as_int())
            .is_some_and(|c| c >= 500)
}

fn attr_value(v: any_value::Value) -> AttrValue {
    use any_value::Value as V;
    match v {
        V::String(s) => AttrValue::Str(s),
        V::Bool(b) => AttrValue::Bool(b),
        V::Int(i) => AttrValue::Int(i),
        V::Double(d) => AttrValue::Double(d),
        V::Bytes(b) => AttrValue::Str(super::context::hex(&b)),
        V::Array(a) => AttrValue::Str(format!(
            "[{}]",
            a.values
                .into_iter()
                .filter_map(|v| v.value.map(attr_value))
                .map(|v| attr_text(&v))
                .collect::<Vec<_>>()
                .join(",")
        )),
        V::Kvlist(kv) => AttrValue::Str(format!(
            "{{{}}}",
            kv.values
                .into_iter()
                .filter_map(|kv| Some((kv.key, attr_value(kv.value?.value?))))
                .map(|(k, v)| format!("{k:?}:{}", attr_text(&v)))
                .collect::<Vec<_>>()
                .join(",")
        )),
    }
}

fn attr_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => format!("{s:?}"),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Double(d) => d.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// Builds the export request for spans of one service (the gateway's own batch).
pub fn encode(service: &str, spans: &[Span]) -> Vec<u8> {
    let str_kv = |k: &str, v: &str| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::String(v.to_string())),
        }),
    };
    let spans = spans
        .iter()
        .map(|s| ProtoSpan {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            trace_state: String::new(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: s.kind.as_i32(),
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: s.end_unix_nanos,
            attributes: s
                .attributes
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(AnyValue {
                        value: Some(match v {
                            AttrValue::Str(s) => any_value::Value::String(s.clone()),
                            AttrValue::Int(i) => any_value::Value::Int(*i),
                            AttrValue::Double(d) => any_value::Value::Double(*d),
                            AttrValue::Bool(b) => any_value::Value::Bool(*b),
                        }),
                    }),
                })
                .collect(),
            status: s.error.then(|| Status {
                message: s.status_message.clone(),
                code: STATUS_ERROR,
            }),
            // Sampled (bit 0), and whether the parent is remote is known (bit 8): it is
            // remote (bit 9) exactly when there is one, for the gateway starts no local child.
            flags: 0x101 | u32::from(s.parent_span_id.is_some()) << 9,
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![str_kv("service.name", service)],
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "herd".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans,
            }],
        }],
    }
    .encode_to_vec()
}
