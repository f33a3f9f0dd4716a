//! The request as the server gets it: hop-by-hop headers out, forwarding headers in
//! (X-Forwarded-For/-Proto/-Host, X-Real-IP, Forwarded), the route's header edits.

use crate::codec::headers;
use crate::state::snapshot::RouteState;
use http::header::{self, HeaderValue};
use http::Version;
use std::net::SocketAddr;

pub(crate) fn prepare_request(
    parts: &mut http::request::Parts,
    route: &RouteState,
    client: SocketAddr,
    tls: bool,
) {
    headers::strip_hop_by_hop(&mut parts.headers);
    let proto = if tls { "https" } else { "http" };
    headers::add_forwarding(&mut parts.headers, client, proto);
    for name in &route.request_remove {
        parts.headers.remove(name);
    }
    for (name, value) in &route.request_add {
        parts.headers.insert(name.clone(), value.clone());
    }
    // Servers get origin-form; a proxy-style absolute URI keeps its host in Host.
    if parts.uri.scheme().is_some() {
        if !parts.headers.contains_key(header::HOST) {
            if let Some(a) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Ok(u) = pq.parse() {
            parts.uri = u;
        }
    }
    parts.version = Version::HTTP_11;
}
