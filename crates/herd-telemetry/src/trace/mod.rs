//! Traces: W3C trace context, the span model, OTLP/HTTP in protobuf and JSON, latency
//! digests for aggregates, and cycle finding in the call graph. Pure: no I/O here.

mod context;
mod graph;
mod latency;
mod otlp;
mod otlp_json;
mod span;
mod write;

pub use context::{ratio_sampled, SpanId, TraceId, TraceParent, FLAG_SAMPLED};
pub use graph::cycles;
pub use latency::LatencyDigest;
pub use otlp::{
    decode as decode_protobuf, encode as encode_protobuf, encode_response, DecodeError, Decoded,
};
pub use otlp_json::decode as decode_json;
pub use span::{AttrValue, Span, SpanKind, UNKNOWN_SERVICE};
pub use write::{Attr, ExportWriter, SpanFields};

#[cfg(test)]
mod tests;
