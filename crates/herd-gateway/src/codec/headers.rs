//! Header rules of a proxy: hop-by-hop removal (RFC 9110 §7.6.1), the forwarding headers
//! that tell servers who the client is, and cookie access without parsing whole headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Remove hop-by-hop headers, including any the Connection header names. `TE: trailers`
/// stays: it says the client takes trailers, which gRPC servers require to hear.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the (few) names present finds which of the eight are there, so only
    // those are hashed and removed; most requests carry none, most responses only
    // `Connection: keep-alive`.
    let mut present = 0u8;
    for k in h.keys() {
        if let Some(i) = hop_by_hop_index(k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let te_trailers = h
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if let Some(conn) = h.get(header::CONNECTION) {
        // Collect first: the names borrow the map we are about to edit. Only names other
        // than keep-alive and close are built, so the usual value allocates nothing.
        let extra: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !is_keep_alive_token(t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| n != header::CONNECTION)
            .collect();
        for n in extra {
            h.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Which of HOP_BY_HOP `k` is. Their lengths (2, 7, 10, 16, 17, 19) rule out most
/// names before any comparison; this runs for every header of every request and response.
fn hop_by_hop_index(k: &HeaderName) -> Option<usize> {
    let s = k.as_str();
    match s.len() {
        2 | 7 | 10 | 16 | 17 | 19 => HOP_BY_HOP.iter().position(|n| n.as_str() == s),
        _ => None,
    }
}

fn is_keep_alive_token(t: &str) -> bool {
    t.eq_ignore_ascii_case("keep-alive") || t.eq_ignore_ascii_case("close") || t.is_empty()
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Tell the server who the client is: append to X-Forwarded-For and Forwarded (a chain of
/// proxies stays visible), set X-Real-IP and X-Forwarded-Proto (this hop's view).
pub fn add_forwarding(h: &mut HeaderMap, client: SocketAddr, proto: &'static str) {
    let ip = client.ip();
    let (ip_value, forwarded) = client_values(ip, proto);
    match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let mut joined = String::with_capacity(prev.len() + 2 + ip_value.len());
            joined.push_str(prev);
            joined.push_str(", ");
            joined.push_str(ip_value.to_str().unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&joined) {
                h.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        _ => {
            h.insert(X_FORWARDED_FOR.clone(), ip_value.clone());
        }
    }
    h.insert(X_REAL_IP.clone(), ip_value);
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let value = match host {
        Some(host) => {
            let mut buf = String::with_capacity(forwarded.len() + 6 + host.len());
            buf.push_str(forwarded.to_str().unwrap_or_default());
            buf.push_str(";host=");
            buf.push_str(host);
            HeaderValue::from_maybe_shared(bytes::Bytes::from(buf)).ok()
        }
        None => Some(forwarded),
    };
    if let Some(v) = value {
        h.append(header::FORWARDED, v);
    }
}

/// The X-Real-IP value and the Forwarded value without `host` for a client address.
/// Formatting an address costs more than the rest of the header work together, and a
/// worker sees the same few clients again and again (every request of a keep-alive
/// connection), so each worker thread keeps the last ones it made; cloning a HeaderValue
/// is a reference count, not a copy.
fn client_values(ip: IpAddr, proto: &'static str) -> (HeaderValue, HeaderValue) {
    const SLOTS: usize = 64;
    type Slot = Option<(IpAddr, &'static str, HeaderValue, HeaderValue)>;
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<Slot>> = std::cell::RefCell::new(vec![None; SLOTS]);
    }
    let slot = (herd_balance::hash64(&ip_key(ip)) as usize) % SLOTS;
    let hit = CACHE.with(|c| {
        c.borrow()[slot]
            .as_ref()
            .filter(|(cip, cproto, _, _)| *cip == ip && std::ptr::eq(*cproto, proto))
            .map(|(_, _, a, b)| (a.clone(), b.clone()))
    });
    if let Some(v) = hit {
        return v;
    }
    let text = itoa_ip(ip);
    let ip_value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"));
    // RFC 7239: IPv6 addresses are quoted and bracketed.
    let forwarded = match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            format!("for=\"[{text}]\";proto={proto}")
        }
        _ => format!("for={text};proto={proto}"),
    };
    let forwarded =
        HeaderValue::from_str(&forwarded).unwrap_or(HeaderValue::from_static("for=unknown"));
    CACHE.with(|c| {
        c.borrow_mut()[slot] = Some((ip, proto, ip_value.clone(), forwarded.clone()));
    });
    (ip_value, forwarded)
}

fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn itoa_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim())
        })
}

/// Rewrite every Cookie header with `edit` applied to cookie `name` (None removes it).
/// Used only when persistence cookies are present, so its allocations are not per request.
pub fn edit_cookie(h: &mut HeaderMap, name: &str, edit: impl Fn(&str) -> Option<String>) {
    let values: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .filter_map(|pair| {
                    let trimmed = pair.trim();
                    match trimmed.split_once('=') {
                        Some((k, v)) if k == name => edit(v.trim()).map(|nv| format!("{k}={nv}")),
                        _ => Some(trimmed.to_string()),
                    }
                })
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    h.remove(header::COOKIE);
    for v in values.into_iter().filter(|v| !v.is_empty()) {
        if let Ok(hv) = HeaderValue::from_str(&v) {
            h.append(header::COOKIE, hv);
        }
    }
}

/// The first value of query parameter `name`, raw (not percent-decoded: a hash key only
/// needs to be stable).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Why a request's host is ambiguous or malformed; each is answered 400 (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// More than one Host field line: routing by one and forwarding both would let a
    /// server that reads the other bypass the route's rules.
    Duplicate,
    /// An HTTP/1.1 request with neither a Host header nor an absolute-form target.
    Missing,
    /// A Host value that is not `host[:port]`.
    Invalid,
    /// HTTP/2's `:authority` and `host` name different hosts (RFC 9113 §8.3.1).
    Conflict,
}

impl HostError {
    pub fn message(self) -> &'static str {
        match self {
            HostError::Duplicate => "bad request: more than one Host header\n",
            HostError::Missing => "bad request: an HTTP/1.1 request needs a Host header\n",
            HostError::Invalid => "bad request: the Host header is not a valid host[:port]\n",
            HostError::Conflict => {
                "bad request: the :authority and Host of the request name different hosts\n"
            }
        }
    }
}

/// Settle which host a request is for, before anything routes or checks it, so that the
/// gateway and the server can never read two different hosts from one request: exactly
/// one Host, valid; an absolute-form target's authority replaces Host (RFC 9112 §3.2.2);
/// HTTP/2's `:authority` and `host` must agree.
pub fn settle_host(parts: &mut http::request::Parts) -> Result<(), HostError> {
    let mut all = parts.headers.get_all(header::HOST).iter();
    let host = all.next();
    if all.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(h) = host {
        if !valid_host(h.as_bytes()) {
            return Err(HostError::Invalid);
        }
    }
    let Some(authority) = parts.uri.authority() else {
        return match (host, parts.version) {
            (None, http::Version::HTTP_11) => Err(HostError::Missing),
            _ => Ok(()),
        };
    };
    if parts.version == http::Version::HTTP_2 {
        return match host {
            Some(h)
                if !h
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
            {
                Err(HostError::Conflict)
            }
            _ => Ok(()),
        };
    }
    // HTTP/1.x absolute-form: the target's authority is the host, whatever Host says.
    if authority.as_str().contains('@') {
        return Err(HostError::Invalid);
    }
    if host.is_none_or(|h| h.as_bytes() != authority.as_str().as_bytes()) {
        let v = HeaderValue::from_str(authority.as_str()).map_err(|_| HostError::Invalid)?;
        parts.headers.insert(header::HOST, v);
    }
    Ok(())
}

/// RFC 9110 §7.2 / RFC 3986 §3.2.2: `uri-host [ ":" port ]`; empty is allowed (a target
/// without authority). Only the characters a host can hold: no userinfo, path or spaces.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &rest[..end];
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b))
                {
                    return false;
                }
                match &rest[end + 1..] {
                    [] => (&b""[..], None),
                    [b':', port @ ..] => (&b""[..], Some(port)),
                    _ => return false,
                }
            }
            None => return false,
        },
        None => match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        },
    };
    let host_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// Host of the request without the port: the Host header, else the URI's authority.
pub fn request_host<'a>(h: &'a HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    let raw = match h.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(v) => v,
        None => uri.host()?,
    };
    Some(strip_port(raw))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `https://host/path?query` for a request that came over plain HTTP (`redirect_https`).
/// The port is dropped: the https side is assumed on 443. None without a host.
pub fn https_location(parts: &http::request::Parts) -> Option<HeaderValue> {
    let host = request_host(&parts.headers, &parts.uri)?;
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    HeaderValue::from_str(&format!("https://{host}{pq}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_is_recognised_and_no_other() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(n), Some(i), "{n}");
        }
        for other in [
            "user-agent",
            "host",
            "x-forwarded-for",
            "content-length",
            "accept",
        ] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None);
        }
    }

    #[test]
    fn cached_client_values_never_mix_clients_or_schemes() {
        // 300 addresses over 64 slots: every slot is overwritten several times, and each
        // address is asked for again after others took its slot.
        for pass in 0..2 {
            for i in 0..300u32 {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i * 7919);
                let proto = if (i + pass) % 2 == 0 { "http" } else { "https" };
                let mut h = HeaderMap::new();
                h.insert(header::HOST, HeaderValue::from_static("example.com"));
                add_forwarding(&mut h, SocketAddr::new(ip.into(), 1), proto);
                assert_eq!(h["x-real-ip"], ip.to_string().as_str());
                assert_eq!(h["x-forwarded-proto"], proto);
                assert_eq!(
                    h[header::FORWARDED],
                    format!("for={ip};proto={proto};host=example.com").as_str()
                );
            }
        }
    }

    #[test]
    fn hop_by_hop_absent_leaves_the_map_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.get(header::TE).is_none());
    }

    #[test]
    fn forwarding_appends_chain() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com:8080"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        add_forwarding(&mut h, "192.0.2.7:5555".parse().unwrap(), "http");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=http;host=example.com:8080"
        );
        let mut h6 = HeaderMap::new();
        add_forwarding(&mut h6, "[2001:db8::1]:1".parse().unwrap(), "http");
        assert_eq!(h6["forwarded"], "for=\"[2001:db8::1]\";proto=http");
    }

    #[test]
    fn cookies_read_and_edit() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; HERDSRV=abc; b=2"),
        );
        assert_eq!(cookie(&h, "HERDSRV"), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        edit_cookie(&mut h, "HERDSRV", |_| None);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        edit_cookie(&mut h, "a", |v| Some(format!("x~{v}")));
        assert_eq!(h[header::COOKIE], "a=x~1; b=2");
    }

    fn parts(version: http::Version, uri: &str, hosts: &[&str]) -> http::request::Parts {
        let mut req = http::Request::builder().version(version).uri(uri);
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_is_settled_before_routing() {
        use http::Version;
        let v11 = Version::HTTP_11;
        let check = |v, uri, hosts: &[&str]| settle_host(&mut parts(v, uri, hosts));
        assert_eq!(check(v11, "/", &["a"]), Ok(()));
        assert_eq!(check(v11, "/", &["a:8080"]), Ok(()));
        assert_eq!(check(v11, "/", &["[::1]:8080"]), Ok(()));
        assert_eq!(check(v11, "/", &["a", "c"]), Err(HostError::Duplicate));
        assert_eq!(check(v11, "/", &["a", "a"]), Err(HostError::Duplicate));
        assert_eq!(check(v11, "/", &[]), Err(HostError::Missing));
        assert_eq!(check(Version::HTTP_10, "/", &[]), Ok(()));
        for bad in [
            "a b", "a/b", "u@a", "a:x", "a:123456", "[::1", "[zz]", "a?b",
        ] {
            assert_eq!(check(v11, "/", &[bad]), Err(HostError::Invalid), "{bad}");
        }
        // Absolute-form: the target's authority wins and is what the server sees.
        let mut p = parts(v11, "http://b.example/x", &["a.example"]);
        assert_eq!(settle_host(&mut p), Ok(()));
        assert_eq!(p.headers.get_all(header::HOST).iter().count(), 1);
        assert_eq!(p.headers[header::HOST], "b.example");
        let mut p = parts(v11, "http://b.example:81/x", &[]);
        assert_eq!(settle_host(&mut p), Ok(()));
        assert_eq!(p.headers[header::HOST], "b.example:81");
        // HTTP/2: :authority and host must agree.
        let v2 = Version::HTTP_2;
        assert_eq!(check(v2, "https://a/", &["a"]), Ok(()));
        assert_eq!(check(v2, "https://a/", &["A"]), Ok(()));
        assert_eq!(check(v2, "https://a/", &[]), Ok(()));
        assert_eq!(check(v2, "https://a/", &["c"]), Err(HostError::Conflict));
    }

    #[test]
    fn query_and_host() {
        assert_eq!(query_param(Some("a=1&user=42&b"), "user"), Some("42"));
        assert_eq!(query_param(Some("a=1&b"), "b"), Some(""));
        assert_eq!(query_param(None, "a"), None);
        let uri: http::Uri = "/x".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("Example.com:80"));
        assert_eq!(request_host(&h, &uri), Some("Example.com"));
        h.insert(header::HOST, HeaderValue::from_static("[::1]:80"));
        assert_eq!(request_host(&h, &uri), Some("[::1]"));
    }
}
