//! The server name (SNI) of a TLS ClientHello, read without terminating TLS: tcp listeners
//! with `sni_routes` pick a backend by it and relay the connection still encrypted.
//!
//! The parser is total over any input: it never panics, never reads a length it has not
//! checked against the bytes it has, and never buffers more than a bounded hello. It
//! reassembles a hello split over several TLS records (RFC 8446 §5.1 allows it, and
//! post-quantum key shares make large hellos ordinary).

/// The largest ClientHello handshake message accepted (its 4-byte header excluded).
pub const MAX_HELLO: usize = 16 * 1024;

/// The most bytes a caller should buffer while looking for a hello: the largest hello
/// plus the headers of the records it may be split into. Past it, give up (no name).
pub const MAX_BUFFERED: usize = MAX_HELLO + 4 * 1024;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// A record carries at most 2^14 bytes of plaintext.
const MAX_RECORD: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// What the bytes read so far from a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A prefix of a ClientHello that may still turn out valid: read more.
    NeedMore,
    /// A complete ClientHello, and its host name if it carries one (lower case, without
    /// a trailing dot).
    Hello(Option<String>),
    /// Not a ClientHello — another protocol, or a malformed or oversized hello — and why.
    NotHello(&'static str),
}

/// Look at the first bytes of a connection. Call again with more bytes on `NeedMore`.
pub fn scan(buf: &[u8]) -> Scan {
    // The handshake message is the concatenation of the records' bodies. The usual hello
    // fits in one record and is read in place; only a split one is copied.
    let mut first: &[u8] = &[];
    let mut joined: Vec<u8> = Vec::new();
    let mut records = 0usize;
    let mut rest = buf;
    loop {
        match rest.first() {
            None => break,
            Some(&HANDSHAKE) => {}
            Some(_) if records == 0 => return Scan::NotHello("not a TLS handshake record"),
            Some(_) => return Scan::NotHello("a record of another type inside the ClientHello"),
        }
        if rest.get(1).is_some_and(|&major| major != 3) {
            return Scan::NotHello("unknown TLS record version");
        }
        let Some(header) = rest.get(..5) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Scan::NotHello("bad TLS record length");
        }
        let body = &rest[5..];
        let fragment = &body[..body.len().min(len)];
        if records == 0 {
            first = fragment;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(first);
            }
            joined.extend_from_slice(fragment);
        }
        records += 1;
        if fragment.len() < len {
            break;
        }
        rest = &body[len..];
        let have = if records == 1 { first } else { &joined[..] };
        if let Some(need) = message_len(have) {
            if have.len() >= need {
                break;
            }
        }
    }
    let hs = if records <= 1 { first } else { &joined[..] };
    match hs.first() {
        None => return Scan::NeedMore,
        Some(&CLIENT_HELLO) => {}
        Some(_) => return Scan::NotHello("the first handshake message is not a ClientHello"),
    }
    let Some(need) = message_len(hs) else {
        return Scan::NeedMore;
    };
    if need - 4 > MAX_HELLO {
        return Scan::NotHello("ClientHello larger than 16 KiB");
    }
    let Some(body) = hs.get(4..need) else {
        return Scan::NeedMore;
    };
    match client_hello_name(body) {
        Some(name) => Scan::Hello(name),
        None => Scan::NotHello("malformed ClientHello"),
    }
}

/// Header plus body length of the handshake message `hs` starts with, once its 4-byte
/// header is there.
fn message_len(hs: &[u8]) -> Option<usize> {
    let h = hs.get(..4)?;
    Some(4 + (usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3])))
}

/// Bounds-checked reads over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The host name of a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3): Some(None) when
/// it has none, None when the body is malformed.
fn client_hello_name(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    if r.vec8()?.len() > 32 {
        return None; // legacy_session_id
    }
    let suites = r.vec16()?;
    if suites.len() < 2 || suites.len() % 2 != 0 {
        return None;
    }
    if r.vec8()?.is_empty() {
        return None; // legacy_compression_methods
    }
    if r.is_empty() {
        return Some(None); // an old client without extensions
    }
    let mut exts = Reader(r.vec16()?);
    if !r.is_empty() {
        return None;
    }
    let mut name = None;
    let mut seen_sni = false;
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != EXT_SERVER_NAME {
            continue;
        }
        if seen_sni {
            return None; // an extension may appear once
        }
        seen_sni = true;
        name = server_name(data)?;
    }
    Some(name)
}

/// The server_name extension's host name; None when malformed.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16()?);
    if !r.is_empty() || list.is_empty() {
        return None;
    }
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind != NAME_TYPE_HOST {
            continue;
        }
        if host.is_some() {
            return None; // one name per type
        }
        host = Some(host_name(name)?);
    }
    Some(host)
}

/// A DNS host name as SNI carries it (ASCII, no IP literals by the RFC, but we only
/// insist on characters a name can have).
fn host_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        return None;
    }
    let mut s = String::with_capacity(raw.len());
    s.extend(raw.iter().map(|&b| char::from(b.to_ascii_lowercase())));
    Some(s)
}

#[cfg(test)]
mod tests;
