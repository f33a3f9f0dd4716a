//! HTTP/2 toward servers: the request shape an h2 server needs, and the executor that
//! keeps hyper's per-connection tasks on the worker's thread.

use crate::codec::body::UpstreamBody;
use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};
use std::future::Future;

/// Runs hyper's per-stream tasks on the worker's own event loop: the proxy path holds
/// worker-local state (`Rc`), so nothing it spawns may move to another thread.
#[derive(Clone, Copy)]
pub struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); hop-by-hop removal has
/// taken them out already, except on an upgrade request, which HTTP/2 cannot carry.
static CONNECTION_SPECIFIC: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];

/// Shape a request prepared for HTTP/1.1 (origin-form, Host header) for an HTTP/2
/// server: absolute URI, so that `:scheme` (`https` over TLS) and `:authority` are sent,
/// and no Host.
pub fn upstream_request(
    mut req: Request<UpstreamBody>,
    fallback_authority: &http::uri::Authority,
    scheme: &http::uri::Scheme,
) -> Request<UpstreamBody> {
    *req.version_mut() = Version::HTTP_2;
    for name in &CONNECTION_SPECIFIC {
        req.headers_mut().remove(name);
    }
    if req
        .headers()
        .get(header::TE)
        .is_some_and(|v| v != HeaderValue::from_static("trailers"))
    {
        req.headers_mut().remove(header::TE);
    }
    if req.uri().scheme().is_none() {
        let authority = req
            .headers_mut()
            .remove(header::HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
            .unwrap_or_else(|| fallback_authority.clone());
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h1_request_becomes_absolute_for_h2() {
        let req = Request::builder()
            .uri("/pkg.Svc/Call?x=1")
            .header("host", "api.example.com:8080")
            .header("te", "trailers")
            .header("connection", "upgrade")
            .body(UpstreamBody::Empty)
            .unwrap();
        let fallback = http::uri::Authority::from_static("10.0.0.1:9000");
        let out = upstream_request(req, &fallback, &http::uri::Scheme::HTTP);
        assert_eq!(
            out.uri().to_string(),
            "http://api.example.com:8080/pkg.Svc/Call?x=1"
        );
        assert!(out.headers().get("host").is_none());
        assert!(out.headers().get("connection").is_none());
        assert_eq!(out.headers()["te"], "trailers");
        assert_eq!(out.version(), Version::HTTP_2);

        let req = Request::builder()
            .uri("/")
            .header("te", "gzip")
            .body(UpstreamBody::Empty)
            .unwrap();
        let out = upstream_request(req, &fallback, &http::uri::Scheme::HTTPS);
        assert_eq!(out.uri().to_string(), "https://10.0.0.1:9000/");
        assert!(out.headers().get("te").is_none());
    }
}
