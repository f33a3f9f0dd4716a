//! Standard base64 (RFC 4648, `+/`, padded) for byte values in JSON.
//!
//! The API shows values as base64 (`GET /v1/kv/<key>`), and a JSON array of numbers would
//! make snapshots and log entries about four times larger than the bytes they carry. The
//! workspace has no base64 dependency, and the codec is small enough to own here.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Not a base64 character (in [`DECODE`]).
const INVALID: u8 = 0xff;

/// Sextet of each byte value, or [`INVALID`].
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

// Both codecs index plain slices in `while` loops rather than chaining iterator adapters:
// values of up to 1 MiB go through them on every hop of replication, and that style stays
// fast even in unoptimized (debug) builds, where each adapter call costs.

/// Encodes `bytes` as padded standard base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = vec![b'='; bytes.len().div_ceil(3) * 4];
    let o = out.as_mut_slice();
    let whole = bytes.len() / 3 * 3;
    let (mut i, mut j) = (0, 0);
    while i < whole {
        let n = (bytes[i] as u32) << 16 | (bytes[i + 1] as u32) << 8 | bytes[i + 2] as u32;
        o[j] = ALPHABET[(n >> 18) as usize & 63];
        o[j + 1] = ALPHABET[(n >> 12) as usize & 63];
        o[j + 2] = ALPHABET[(n >> 6) as usize & 63];
        o[j + 3] = ALPHABET[n as usize & 63];
        i += 3;
        j += 4;
    }
    // One or two bytes left: two or three characters, then the padding already in place.
    let rest = bytes.len() - whole;
    if rest > 0 {
        let second = if rest == 2 { bytes[i + 1] as u32 } else { 0 };
        let n = (bytes[i] as u32) << 16 | second << 8;
        o[j] = ALPHABET[(n >> 18) as usize & 63];
        o[j + 1] = ALPHABET[(n >> 12) as usize & 63];
        if rest == 2 {
            o[j + 2] = ALPHABET[(n >> 6) as usize & 63];
        }
    }
    // Only ASCII from ALPHABET and '=' was written, so this never falls back.
    String::from_utf8(out).unwrap_or_default()
}

/// Why a base64 text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid base64 character {0:?} at offset {1}")]
    InvalidChar(char, usize),
    #[error("invalid base64 length {0}")]
    InvalidLength(usize),
}

/// The first character of `data[from..]` that is not base64, as an error.
fn invalid_char(data: &[u8], from: usize) -> DecodeError {
    let mut i = from;
    while i < data.len() && DECODE[data[i] as usize] != INVALID {
        i += 1;
    }
    let c = data.get(i).copied().unwrap_or(b'?');
    DecodeError::InvalidChar(char::from(c), i)
}

/// Decodes standard base64; padding is optional so that hand-written values from curl work.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    // At most two padding characters exist in valid base64.
    for _ in 0..2 {
        if end > 0 && bytes[end - 1] == b'=' {
            end -= 1;
        }
    }
    let data = &bytes[..end];
    let padded_ok = bytes.len() == end || bytes.len() % 4 == 0;
    let rest = data.len() % 4;
    if rest == 1 || !padded_ok {
        return Err(DecodeError::InvalidLength(bytes.len()));
    }
    let whole = data.len() - rest;
    // 4 chars -> 3 bytes, a tail of 3 -> 2, of 2 -> 1.
    let mut out = vec![0u8; whole / 4 * 3 + rest.saturating_sub(1)];
    let o = out.as_mut_slice();
    let (mut i, mut j) = (0, 0);
    while i < whole {
        let a = DECODE[data[i] as usize];
        let b = DECODE[data[i + 1] as usize];
        let c = DECODE[data[i + 2] as usize];
        let d = DECODE[data[i + 3] as usize];
        // Valid sextets are below 64, so only an INVALID sets the top bit.
        if (a | b | c | d) & 0x80 != 0 {
            return Err(invalid_char(data, i));
        }
        let n = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
        o[j] = (n >> 16) as u8;
        o[j + 1] = (n >> 8) as u8;
        o[j + 2] = n as u8;
        i += 4;
        j += 3;
    }
    if rest > 0 {
        let a = DECODE[data[i] as usize];
        let b = DECODE[data[i + 1] as usize];
        let c = if rest == 3 {
            DECODE[data[i + 2] as usize]
        } else {
            0
        };
        if (a | b | c) & 0x80 != 0 {
            return Err(invalid_char(data, i));
        }
        let n = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6;
        o[j] = (n >> 16) as u8;
        if rest == 3 {
            o[j + 1] = (n >> 8) as u8;
        }
    }
    Ok(out)
}

/// `#[serde(with = "crate::b64::serde_bytes")]` for `Vec<u8>` fields shown as base64.
pub mod serde_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
