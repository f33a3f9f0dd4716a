//! HTTP/1.1 framing, pure: request heads (from clients) and response heads (from servers)
//! parsed, request heads and bodies encoded, chunk sizes read, and the RFC 9112 §6.3
//! decision of how a response is framed. No sockets: the client connection
//! (`upstream/h1.rs`) and the client-facing server (`session/h1.rs`) use it.

use crate::codec::body::UpstreamBody;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use std::io;

/// The longest response head (status line and headers) we accept, like hyper's default.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// A chunk-size line (with extensions) or the trailer section longer than this is refused.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

pub(crate) fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A server's response head.
#[derive(Debug)]
pub struct Head {
    pub version: Version,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// Parse a complete response head off the front of `buf`, or None if more is needed.
/// Header values share the read buffer's memory instead of being copied.
pub fn parse_head(buf: &mut BytesMut) -> io::Result<Option<Head>> {
    // Uninitialised slots: zeroing 100 of them cost more than the parse itself.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(bad(format!("response has more than {MAX_HEADERS} headers")))
        }
        Err(e) => return Err(bad(format!("invalid response head: {e}"))),
    };
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| bad(format!("invalid status code {code}")))?;
    // Names are looked up (the common ones are constants) while the parse borrows the
    // buffer; values become slices of it once it is frozen.
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad("invalid header name in response"))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let headers = header_map(&head, fields, 0)
        .map_err(|name| bad(format!("invalid value of response header {name}")))?;
    Ok(Some(Head {
        version,
        status,
        headers,
    }))
}

/// A parsed head's fields as a `HeaderMap` whose values are slices of `head` (offsets
/// `start..end`), not copies; `spare` leaves room for headers the proxy will add. Err
/// names a field whose value is not a valid header value.
pub(crate) fn header_map(
    head: &Bytes,
    fields: Vec<(HeaderName, usize, usize)>,
    spare: usize,
) -> Result<HeaderMap, HeaderName> {
    let mut headers = HeaderMap::with_capacity(fields.len() + spare);
    for (name, start, end) in fields {
        match HeaderValue::from_maybe_shared(head.slice(start..end)) {
            Ok(value) => {
                headers.append(name, value);
            }
            Err(_) => return Err(name),
        }
    }
    Ok(headers)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqFraming {
    None,
    Length,
    Chunked,
}

/// Write the request line and headers into `out` and choose the body's framing: the
/// client's Content-Length when it gave one, none for a body known to be empty
/// (`content-length: 0` for methods that normally carry one), else chunked.
pub(crate) fn encode_head<B: Body>(out: &mut Vec<u8>, req: &Request<B>) -> ReqFraming {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let uri = req.uri();
    if req.method() == Method::CONNECT {
        out.extend_from_slice(uri.authority().map_or("", |a| a.as_str()).as_bytes());
    } else {
        out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        write_field(out, name, value);
    }
    let body = req.body();
    let framing = if req.headers().contains_key(header::CONTENT_LENGTH) {
        ReqFraming::Length
    } else if body.is_end_stream() {
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ReqFraming::None
    } else if is_upgrade(req.headers()) {
        // An upgrade request's bytes after the head belong to the new protocol.
        ReqFraming::None
    } else if let Some(n) = body.size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        ReqFraming::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        ReqFraming::Chunked
    };
    out.extend_from_slice(b"\r\n");
    framing
}

pub(crate) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
}

pub(crate) fn encode_data(out: &mut Vec<u8>, framing: &ReqFraming, data: &mut Bytes) {
    if data.is_empty() {
        return;
    }
    match framing {
        ReqFraming::Chunked => {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Length => out.extend_from_slice(data),
        ReqFraming::None => {}
    }
    data.advance(data.len());
}

/// The chunked body's end: the last chunk, the trailer fields, the empty line.
pub(crate) fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// One `name: value` line of a head or a trailer section.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RespFraming {
    Empty,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Upgraded,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// RFC 9112 §6.3: how the response body ends.
pub(crate) fn response_framing(
    head_request: bool,
    status: StatusCode,
    h: &HeaderMap,
) -> io::Result<RespFraming> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(RespFraming::Empty);
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        return transfer_coding_framing(h);
    }
    let mut length: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad("invalid Content-Length in response"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length values in response"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => RespFraming::Empty,
        Some(n) => RespFraming::Length(n),
        None => RespFraming::UntilClose,
    })
}

/// Framing by Transfer-Encoding (RFC 9112 §6.1, §6.3): chunked when it is the final coding,
/// else the body runs to the end of the connection. Codings that no sender may use are
/// refused (502) rather than guessed at, as HAProxy does: `identity` (removed from the
/// registry in RFC 7230; a peer reading it as "no coding" would trust the Content-Length
/// beside it), chunked applied twice or not last, and empty list members.
pub(crate) fn transfer_coding_framing(h: &HeaderMap) -> io::Result<RespFraming> {
    let mut chunked_at_end = false;
    for v in h.get_all(header::TRANSFER_ENCODING) {
        for coding in v.as_bytes().split(|&b| b == b',') {
            // A coding may carry parameters (`gzip;q=1` is not valid here, but `;` is
            // never part of a name), so compare the name alone.
            let name = coding
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if chunked_at_end {
                return Err(bad("response Transfer-Encoding has a coding after chunked"));
            }
            if name.is_empty() {
                return Err(bad("response Transfer-Encoding has an empty coding"));
            }
            if name.eq_ignore_ascii_case(b"identity") {
                return Err(bad("response Transfer-Encoding: identity is not allowed"));
            }
            chunked_at_end = name.eq_ignore_ascii_case(b"chunked");
        }
    }
    Ok(if chunked_at_end {
        RespFraming::Chunked(Chunk::Size)
    } else {
        RespFraming::UntilClose
    })
}
/// The size of a chunk from its line (`1a;ext=v\r\n`): RFC 9112 §7.1, hex digits, then
/// optional whitespace (BWS) before any extension; nothing before the digits.
pub fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut digits = line.split(|&b| b == b';').next().unwrap_or_default();
    while let [rest @ .., b' ' | b'\t'] = digits {
        digits = rest;
    }
    if digits.is_empty() || digits.len() > 16 {
        return Err(bad("invalid chunk size"));
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or_else(|| bad("invalid chunk size"))?;
        n = n
            .checked_mul(16)
            .and_then(|n| n.checked_add(v as u64))
            .ok_or_else(|| bad("chunk size overflows"))?;
    }
    Ok(n)
}

/// What a client connection does after a request head was read.
// Serve is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum RequestHead {
    /// A request for the fast path, and whether the client wants the connection kept.
    Serve(Request<UpstreamBody>, bool),
    /// Not ours to serve: hyper takes the connection with the bytes read so far.
    HandOff,
    /// Refused with 400 and the connection closed: the request's framing is ambiguous.
    Refuse(&'static str),
}

/// A request head that is not HTTP/1.1 (hyper takes the connection and says how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A complete request head off the front of `buf`: Ok(None) if more is needed, Err if it
/// is malformed (hyper will say how), HandOff if it is not a case this path serves.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, Malformed> {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Malformed),
    };
    if req.version != Some(1) {
        return Ok(Some(RequestHead::HandOff));
    }
    let Some(method) = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
    else {
        return Ok(Some(RequestHead::HandOff));
    };
    if method == Method::CONNECT {
        return Ok(Some(RequestHead::HandOff));
    }
    let base = buf.as_ptr() as usize;
    let path = req.path.unwrap_or("/");
    let path_at = path.as_ptr() as usize - base;
    let path_range = path_at..path_at + path.len();
    let mut keep_alive = true;
    let mut hand_off = false;
    let (mut lengths, mut codings) = (false, false);
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => n,
            Err(_) => return Ok(Some(RequestHead::HandOff)),
        };
        if name == header::TRANSFER_ENCODING {
            codings = true;
        } else if name == header::CONTENT_LENGTH {
            lengths = true;
        }
        if name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
            || (name == header::CONTENT_LENGTH && h.value.trim_ascii() != b"0")
        {
            // A body, or a protocol step, that hyper handles.
            hand_off = true;
        }
        if name == header::CONNECTION && has_token(h.value, b"close") {
            keep_alive = false;
        }
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    if codings && lengths {
        // RFC 9112 §6.3: a server MAY reject a request with both, and must close the
        // connection either way; two framings in one request is how requests are
        // smuggled past a proxy, so it is refused (as nginx does), not guessed at.
        return Ok(Some(RequestHead::Refuse(
            "bad request: both Transfer-Encoding and Content-Length\n",
        )));
    }
    if hand_off {
        return Ok(Some(RequestHead::HandOff));
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path_range)).ok();
    // Room for the four forwarding headers the proxy adds, so the map never regrows.
    let headers = header_map(&head, fields, 4).ok();
    let (Some(uri), Some(headers)) = (uri, headers) else {
        // hyper gets the connection and answers 400: give it the head back, in front.
        let mut whole = BytesMut::from(&head[..]);
        whole.extend_from_slice(buf);
        *buf = whole;
        return Err(Malformed);
    };
    let mut request = Request::new(UpstreamBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(Some(RequestHead::Serve(request, keep_alive)))
}
