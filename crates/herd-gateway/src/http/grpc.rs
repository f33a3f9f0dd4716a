//! Answers the gateway makes itself to gRPC clients. A gRPC client reads the outcome from
//! `grpc-status`, not from the HTTP status: a bare `502` reaches the application as an
//! opaque "unknown" error, or as a protocol error for clients that insist on the gRPC
//! content type. So local refusals and failures become trailers-only gRPC responses
//! (HTTP 200, `grpc-status`, `grpc-message`, no body), as Envoy answers.

use crate::http::respond::ProxyBody;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

/// Whether a request speaks gRPC: `content-type: application/grpc[+proto|;…]`.
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The gRPC status code for an HTTP status the gateway chose itself. The table is gRPC's
/// own HTTP-to-gRPC mapping (doc/http-grpc-status-mapping.md), except that the gateway's
/// own timeout is a deadline, which the client should see as such.
pub fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,       // INTERNAL
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 12,       // UNIMPLEMENTED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        504 => 4,        // DEADLINE_EXCEEDED
        502 | 503 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// Turn a response the gateway produced itself (a text body) into a trailers-only gRPC
/// error carrying the same message. Proxied responses are left alone.
pub fn localize(resp: &mut Response<ProxyBody>) {
    if resp.status().is_success() {
        return;
    }
    let Some(text) = resp.body_mut().take_local() else {
        return;
    };
    let code = code_for(resp.status());
    let message = percent_encode(String::from_utf8_lossy(&text).trim_end());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.remove(header::LOCATION);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, every other byte as
/// `%XX` of its UTF-8.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let ct = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&h)
        };
        assert!(ct("application/grpc"));
        assert!(ct("application/grpc+proto"));
        assert!(ct("Application/GRPC;charset=utf-8"));
        assert!(!ct("application/grpc-web"));
        assert!(!ct("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn codes_and_messages() {
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), 14);
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), 14);
        assert_eq!(code_for(StatusCode::GATEWAY_TIMEOUT), 4);
        assert_eq!(code_for(StatusCode::TOO_MANY_REQUESTS), 8);
        assert_eq!(code_for(StatusCode::FORBIDDEN), 7);
        assert_eq!(code_for(StatusCode::NOT_FOUND), 12);
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), 2);
        assert_eq!(percent_encode("a b%c\né"), "a b%25c%0A%C3%A9");
    }
}
