//! OTLP/HTTP traces in JSON (the protobuf messages' JSON mapping): ids in hex, 64-bit
//! numbers as strings or numbers, enums as numbers (names accepted too), lowerCamelCase
//! field names (snake_case accepted, as the spec asks receivers to be lenient).

use super::otlp::{self, any_value, DecodeError, Decoded};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Export {
    #[serde(default, alias = "resource_spans", rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, alias = "scope_spans", rename = "scopeSpans")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
struct JsonSpan {
    #[serde(default, alias = "trace_id", rename = "traceId")]
    trace_id: String,
    #[serde(default, alias = "span_id", rename = "spanId")]
    span_id: String,
    #[serde(default, alias = "parent_span_id", rename = "parentSpanId")]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Value,
    #[serde(default, alias = "start_time_unix_nano", rename = "startTimeUnixNano")]
    start: Value,
    #[serde(default, alias = "end_time_unix_nano", rename = "endTimeUnixNano")]
    end: Value,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
}

#[derive(Deserialize)]
struct JsonStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Value,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Deserialize, Default)]
struct AnyValue {
    #[serde(default, alias = "string_value", rename = "stringValue")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value", rename = "boolValue")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value", rename = "intValue")]
    int_value: Option<Value>,
    #[serde(default, alias = "double_value", rename = "doubleValue")]
    double_value: Option<f64>,
    #[serde(default, alias = "array_value", rename = "arrayValue")]
    array_value: Option<ArrayValue>,
    #[serde(default, alias = "kvlist_value", rename = "kvlistValue")]
    kvlist_value: Option<KvList>,
}

#[derive(Deserialize, Default)]
struct ArrayValue {
    #[serde(default)]
    values: Vec<AnyValue>,
}

#[derive(Deserialize, Default)]
struct KvList {
    #[serde(default)]
    values: Vec<KeyValue>,
}

/// Decodes an OTLP/HTTP JSON body.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    let export: Export = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("not OTLP/JSON traces: {e}")))?;
    let req = otlp::ExportTraceServiceRequest {
        resource_spans: export
            .resource_spans
            .into_iter()
            .map(|rs| otlp::ResourceSpans {
                resource: rs.resource.map(|r| otlp::Resource {
                    attributes: r.attributes.into_iter().map(key_value).collect(),
                }),
                scope_spans: rs
                    .scope_spans
                    .into_iter()
                    .map(|ss| otlp::ScopeSpans {
                        scope: None,
                        spans: ss.spans.into_iter().map(span).collect(),
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(otlp::spans_of(req))
}

fn span(s: JsonSpan) -> otlp::ProtoSpan {
    let status = s.status.map(|st| otlp::Status {
        message: st.message,
        code: enum_number(
            &st.code,
            &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
        ),
    });
    otlp::ProtoSpan {
        trace_id: hex_bytes(&s.trace_id),
        span_id: hex_bytes(&s.span_id),
        trace_state: String::new(),
        parent_span_id: hex_bytes(&s.parent_span_id),
        name: s.name,
        kind: enum_number(
            &s.kind,
            &[
                "SPAN_KIND_UNSPECIFIED",
                "SPAN_KIND_INTERNAL",
                "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT",
                "SPAN_KIND_PRODUCER",
                "SPAN_KIND_CONSUMER",
            ],
        ),
        start_time_unix_nano: number(&s.start).unwrap_or(0),
        end_time_unix_nano: number(&s.end).unwrap_or(0),
        attributes: s.attributes.into_iter().map(key_value).collect(),
        status,
        flags: 0,
    }
}

fn key_value(kv: KeyValue) -> otlp::KeyValue {
    otlp::KeyValue {
        key: kv.key,
        value: kv.value.map(any_value),
    }
}

fn any_value(v: AnyValue) -> otlp::AnyValue {
    use any_value::Value as V;
    let value = if let Some(s) = v.string_value {
        Some(V::String(s))
    } else if let Some(b) = v.bool_value {
        Some(V::Bool(b))
    } else if let Some(i) = v.int_value.as_ref().and_then(signed) {
        Some(V::Int(i))
    } else if let Some(d) = v.double_value {
        Some(V::Double(d))
    } else if let Some(a) = v.array_value {
        Some(V::Array(otlp::ArrayValue {
            values: a.values.into_iter().map(any_value).collect(),
        }))
    } else {
        v.kvlist_value.map(|kv| {
            V::Kvlist(otlp::KeyValueList {
                values: kv.values.into_iter().map(key_value).collect(),
            })
        })
    };
    otlp::AnyValue { value }
}

/// Hex of any case; anything else becomes a wrong-length id the span check refuses.
fn hex_bytes(s: &str) -> Vec<u8> {
    if s.is_empty() || s.len() & 1 == 1 {
        return if s.is_empty() { Vec::new() } else { vec![0] };
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| vec![0])
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn signed(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn enum_number(v: &Value, names: &[&str]) -> i32 {
    match v {
        Value::Number(n) => n.as_i64().map_or(0, |n| n as i32),
        Value::String(s) => names.iter().position(|n| n == s).map_or(0, |i| i as i32),
        _ => 0,
    }
}
