//! PROXY protocol v1 (text) and v2 (binary), per HAProxy's `proxy-protocol.txt`: a header a
//! load balancer writes first on a TCP connection so the next hop learns the client's real
//! address. Pure encode/parse over byte slices, plus one async helper that reads a header
//! off a stream.
//!
//! The parser sees bytes from the network: it never panics and never indexes past what it
//! checked; `fuzz/` and the corpus test hold it to that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line, "PROXY" to CRLF included, is at most this long (spec §2.1).
pub const V1_MAX_LEN: usize = 107;
/// Signature, version/command, family/transport and the 16-bit length.
pub const V2_FIXED_LEN: usize = 16;
/// The largest v2 header: the length field is 16 bits.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl From<herd_config::ProxyProtocol> for Version {
    fn from(v: herd_config::ProxyProtocol) -> Version {
        match v {
            herd_config::ProxyProtocol::V1 => Version::V1,
            herd_config::ProxyProtocol::V2 => Version::V2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A relayed TCP connection: the client's address and the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// No address to report (v1 `UNKNOWN`, v2 `LOCAL`, or v2 AF_UNSPEC / AF_UNIX): the
    /// receiver keeps the connection's own addresses. Health checks from a balancer look so.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated PROXY header: more bytes are needed")]
    Truncated,
    #[error("not a PROXY protocol header (neither \"PROXY \" nor the v2 signature)")]
    BadSignature,
    #[error("PROXY v1 header has no CRLF within {V1_MAX_LEN} bytes")]
    TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    Malformed(&'static str),
    #[error("PROXY v2 header has version {0}; only 2 exists")]
    UnsupportedVersion(u8),
    #[error("PROXY v2 header has command {0:#x}; only LOCAL (0) and PROXY (1) exist")]
    UnsupportedCommand(u8),
    #[error("PROXY v2 header has address family {0:#x}; supported: UNSPEC, INET, INET6, UNIX")]
    UnsupportedFamily(u8),
    #[error("PROXY v2 header has transport {0:#x}; only STREAM (TCP) is relayed")]
    UnsupportedTransport(u8),
    #[error("PROXY v2 address block is {len} bytes; this family needs at least {need}")]
    AddressBlockTooShort { len: usize, need: usize },
}

/// Parse a header at the start of `buf`: the header and how many bytes it took. Bytes after
/// it belong to the application. `Err(Truncated)` means `buf` is a valid beginning: read
/// more and call again.
pub fn parse(buf: &[u8]) -> Result<(Header, usize), ParseError> {
    let Some(&first) = buf.first() else {
        return Err(ParseError::Truncated);
    };
    if first == V2_SIGNATURE[0] {
        let n = buf.len().min(V2_SIGNATURE.len());
        if buf[..n] != V2_SIGNATURE[..n] {
            return Err(ParseError::BadSignature);
        }
        parse_v2(buf)
    } else {
        let n = buf.len().min(V1_PREFIX.len());
        if buf[..n] != V1_PREFIX[..n] {
            return Err(ParseError::BadSignature);
        }
        parse_v1(buf)
    }
}

fn parse_v1(buf: &[u8]) -> Result<(Header, usize), ParseError> {
    use ParseError::{Malformed, TooLong, Truncated};
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return Err(if buf.len() >= V1_MAX_LEN {
            TooLong
        } else {
            Truncated
        });
    };
    if window[end] == b'\n' {
        return Err(Malformed("line ends in LF without CR"));
    }
    match window.get(end + 1) {
        None if buf.len() >= V1_MAX_LEN => return Err(TooLong),
        None => return Err(Truncated),
        Some(b'\n') => {}
        Some(_) => return Err(Malformed("CR not followed by LF")),
    }
    let consumed = end + 2;
    let line = std::str::from_utf8(&window[..end]).map_err(|_| Malformed("not ASCII text"))?;
    let mut words = line.split(' ');
    let _proxy = words.next();
    let v4 = match words.next() {
        // The rest of an UNKNOWN line is to be ignored (spec §2.1).
        Some("UNKNOWN") => return Ok((Header::Local, consumed)),
        Some("TCP4") => true,
        Some("TCP6") => false,
        _ => return Err(Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(Malformed(
            "expected \"PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\" separated by single spaces",
        ));
    };
    let ip = |text: &str| -> Result<IpAddr, ParseError> {
        if v4 {
            text.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| Malformed("address is not an IPv4 address (TCP4)"))
        } else {
            text.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| Malformed("address is not an IPv6 address (TCP6)"))
        }
    };
    let source = SocketAddr::new(ip(src)?, v1_port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, v1_port(dport)?);
    Ok((
        Header::Proxied {
            source,
            destination,
        },
        consumed,
    ))
}

/// A decimal port, 0-65535, without sign or leading zeros (the spec's format).
fn v1_port(text: &str) -> Result<u16, ParseError> {
    let bad = ParseError::Malformed("port is not a decimal number 0-65535");
    if text.is_empty()
        || text.len() > 5
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad);
    }
    text.parse::<u16>().map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<(Header, usize), ParseError> {
    // Check the fixed part before waiting for the rest: garbage is refused at once.
    let (Some(&ver_cmd), Some(&fam), Some(&len_hi), Some(&len_lo)) =
        (buf.get(12), buf.get(13), buf.get(14), buf.get(15))
    else {
        return Err(ParseError::Truncated);
    };
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ParseError::UnsupportedVersion(version));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        other => return Err(ParseError::UnsupportedCommand(other)),
    };
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let total = V2_FIXED_LEN + len;
    let (family, transport) = (fam >> 4, fam & 0x0f);
    // LOCAL: the balancer speaks for itself (health checks); the block is skipped unread.
    let need = if local {
        0
    } else {
        match family {
            0 => 0,
            1 | 2 if transport != 1 => return Err(ParseError::UnsupportedTransport(transport)),
            1 => V2_INET_LEN,
            2 => V2_INET6_LEN,
            3 => V2_UNIX_LEN,
            other => return Err(ParseError::UnsupportedFamily(other)),
        }
    };
    if len < need {
        return Err(ParseError::AddressBlockTooShort { len, need });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Err(ParseError::Truncated);
    };
    if local || family == 0 || family == 3 {
        return Ok((Header::Local, total));
    }
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let (source, destination) = if family == 1 {
        let ip = |at: usize| Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]);
        (
            SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
            SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
        )
    } else {
        let ip = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        (
            SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
            SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
        )
    };
    Ok((
        Header::Proxied {
            source,
            destination,
        },
        total,
    ))
}

/// Both addresses in one family, as both versions require: IPv4 when both are IPv4 (or
/// IPv4-mapped IPv6, as a dual-stack socket reports them), else IPv6.
pub fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    match (v4(source), v4(destination)) {
        (Some(s), Some(d)) => (
            SocketAddr::new(IpAddr::V4(s), source.port()),
            SocketAddr::new(IpAddr::V4(d), destination.port()),
        ),
        _ => (
            SocketAddr::new(IpAddr::V6(v6(source)), source.port()),
            SocketAddr::new(IpAddr::V6(v6(destination)), destination.port()),
        ),
    }
}

pub fn encode(version: Version, header: &Header) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(header),
        Version::V2 => encode_v2(header),
    }
}

pub fn encode_v1(header: &Header) -> Vec<u8> {
    match *header {
        Header::Local => b"PROXY UNKNOWN\r\n".to_vec(),
        Header::Proxied {
            source,
            destination,
        } => {
            let (s, d) = same_family(source, destination);
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
            .into_bytes()
        }
    }
}

pub fn encode_v2(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + V2_INET6_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    match *header {
        Header::Local => out.extend_from_slice(&[0x20, 0x00, 0, 0]),
        Header::Proxied {
            source,
            destination,
        } => match same_family(source, destination) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                out.extend_from_slice(&[0x21, 0x11, 0, V2_INET_LEN as u8]);
                out.extend_from_slice(&s.ip().octets());
                out.extend_from_slice(&d.ip().octets());
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
            (s, d) => {
                let v6 = |a: SocketAddr| match a.ip() {
                    IpAddr::V6(ip) => ip.octets(),
                    IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                };
                out.extend_from_slice(&[0x21, 0x21, 0, V2_INET6_LEN as u8]);
                out.extend_from_slice(&v6(s));
                out.extend_from_slice(&v6(d));
                out.extend_from_slice(&s.port().to_be_bytes());
                out.extend_from_slice(&d.port().to_be_bytes());
            }
        },
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Parse(ParseError),
    #[error("connection closed after {0} bytes, before a complete PROXY header")]
    Closed(usize),
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("reading the PROXY header: {0}")]
    Io(std::io::Error),
}

/// Read a header off `stream` within `timeout`. Returns it with any bytes read past it
/// (the application's first bytes), which the caller must deliver before the stream's own.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(Header, Vec<u8>), ReadError> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            match parse(&buf) {
                Ok((header, used)) => return Ok((header, buf.split_off(used))),
                Err(ParseError::Truncated) => {}
                Err(e) => return Err(ReadError::Parse(e)),
            }
            // Truncated means at most V2_MAX_LEN bytes so far: the buffer stays bounded.
            buf.reserve(256);
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err(ReadError::Closed(buf.len())),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

#[cfg(test)]
mod tests;
