//! W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header read
//! strictly, written in its one canonical form, and the ratio sampler.

use std::fmt;

/// A 16-byte trace id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; all zeros is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

/// The parsed `traceparent` of a request: whose trace, which span sent it, and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

/// The `sampled` bit of trace-flags.
pub const FLAG_SAMPLED: u8 = 0x01;

impl TraceParent {
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses a `traceparent` value. Version 00 must be exactly 55 bytes; a later version
    /// may append `-…` fields we ignore (§3.2.4, forward compatibility); version ff,
    /// upper-case hex, an all-zero trace or parent id, or anything else is refused.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(value[0], value[1])?;
        if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        if version == 0 && value.len() != 55 {
            return None;
        }
        if version != 0 && value.len() > 55 && value[55] != b'-' {
            return None;
        }
        let mut trace = [0u8; 16];
        for (i, b) in trace.iter_mut().enumerate() {
            *b = hex_byte(value[3 + 2 * i], value[4 + 2 * i])?;
        }
        let mut parent = [0u8; 8];
        for (i, b) in parent.iter_mut().enumerate() {
            *b = hex_byte(value[36 + 2 * i], value[37 + 2 * i])?;
        }
        let flags = hex_byte(value[53], value[54])?;
        let (trace_id, parent_id) = (TraceId(trace), SpanId(parent));
        if !trace_id.is_valid() || !parent_id.is_valid() {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header value `00-<trace>-<span>-<flags>` this hop sends on, naming `span` as
    /// the parent of whatever the next hop records. Only the sampled bit is passed on:
    /// version 00 defines no other.
    pub fn encode(trace_id: TraceId, span: SpanId, sampled: bool) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[0] = b'0';
        out[1] = b'0';
        out[2] = b'-';
        write_hex(&trace_id.0, &mut out[3..35]);
        out[35] = b'-';
        write_hex(&span.0, &mut out[36..52]);
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if sampled { b'1' } else { b'0' };
        out
    }
}

impl TraceId {
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }
    /// Lower-case hex, as OTLP/JSON and our API write ids.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
    pub fn from_hex(s: &str) -> Option<TraceId> {
        let mut out = [0u8; 16];
        from_hex_into(s, &mut out)?;
        Some(TraceId(out)).filter(TraceId::is_valid)
    }
}

impl SpanId {
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
    pub fn from_hex(s: &str) -> Option<SpanId> {
        let mut out = [0u8; 8];
        from_hex_into(s, &mut out)?;
        Some(SpanId(out)).filter(SpanId::is_valid)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// OpenTelemetry's TraceIdRatioBased decision: sampled when the trace id's last 8 bytes,
/// read as a big-endian number, fall below `ratio` of the range. Every hop that samples by
/// ratio then agrees on the same traces, and a ratio of 0.01 keeps 1 % of them.
pub fn ratio_sampled(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id.0[8..]);
    let v = u64::from_be_bytes(low) >> 1;
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    v < bound
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(nibble(hi)? << 4 | nibble(lo)?)
}

/// Lower-case only: the spec's HEXDIGLC.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Hex in either case (OTLP/JSON writers differ), exactly `out.len() * 2` digits.
fn from_hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        let lc = |c: u8| c.to_ascii_lowercase();
        *b = hex_byte(lc(s[2 * i]), lc(s[2 * i + 1]))?;
    }
    Some(())
}
