//! Standard base64 (RFC 4648, `+/`, padded) for byte values in JSON.
//!
//! The API shows values as base64 (`GET /v1/kv/<key>`), and a JSON array of numbers would
//! make snapshots and log entries about four times larger than the bytes they carry. The
//! workspace has no base64 dependency, and the codec is small enough to own here.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` as padded standard base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // Each output character carries 6 bits; `chunk.len() + 1` characters carry the data.
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a base64 text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid base64 character {0:?} at offset {1}")]
    InvalidChar(char, usize),
    #[error("invalid base64 length {0}")]
    InvalidLength(usize),
}

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
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
    if data.len() % 4 == 1 || !padded_ok {
        return Err(DecodeError::InvalidLength(bytes.len()));
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    for (ci, chunk) in data.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = sextet(c).ok_or(DecodeError::InvalidChar(char::from(c), ci * 4 + i))?;
            n |= v << (18 - 6 * i);
        }
        let produced = chunk.len() - 1; // 4 chars -> 3 bytes, 3 -> 2, 2 -> 1
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
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
