//! Who may use the admin listener. Its calls drain servers, change weights and reload the
//! configuration, so a caller must prove it is an operator, and a browser must not be
//! turned into one: a page on another site can send a POST to 127.0.0.1 (cross-site
//! request forgery) and, with a DNS name it re-points at 127.0.0.1, read the answers
//! (DNS rebinding). The rules, in order:
//!
//! 1. The Host must name this listener by address (an IP literal or `localhost`, any
//!    port) or be one of `[admin] allowed_hosts`: a rebinding page's Host is its own name.
//! 2. A state change (any method but GET and HEAD) is refused when the browser says it
//!    comes from elsewhere — an `Origin` other than the Host, `Sec-Fetch-Site` other than
//!    `same-origin` or `none` — or when, without an Authorization header, it carries a
//!    content type a cross-site form may send without asking (`text/plain`, form
//!    encodings).
//! 3. With a token configured (`[admin] token_file`, or `HERD_ADMIN_TOKEN`), a state
//!    change needs `Authorization: Bearer <token>`, compared in constant time; reads need
//!    it too with `token_for_reads = true`. `/healthz` is always open, for load balancers.

use crate::state::shared::Token;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use std::path::Path;

/// The environment variable that holds the admin token when no `token_file` is set.
pub const TOKEN_ENV: &str = "HERD_ADMIN_TOKEN";

/// The token from `token_file` (its first line, trimmed), else from `HERD_ADMIN_TOKEN`,
/// else none. An unreadable or empty file is an error, not "no token": starting open
/// because a secret went missing would be the wrong way to fail.
pub fn load_token(file: Option<&Path>) -> Result<Option<Token>, String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            format!(
                "admin.token_file: cannot read {}: {e}; create it (one line, the token) or remove the key",
                path.display()
            )
        })?,
        None => match std::env::var(TOKEN_ENV) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        let source = file.map_or_else(|| TOKEN_ENV.to_string(), |p| p.display().to_string());
        return Err(format!(
            "admin token from {source} is empty; put the token on its first line"
        ));
    }
    Ok(Some(Token::new(token.as_bytes().to_vec())))
}

/// What the guard needs to know about the listener.
pub struct Policy<'a> {
    pub token: Option<&'a Token>,
    pub token_for_reads: bool,
    pub allowed_hosts: &'a [String],
}

/// Why a call is refused: the status and a message that says what to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub StatusCode, pub &'static str);

/// Decide whether a request may reach the admin API.
pub fn check(method: &Method, path: &str, h: &HeaderMap, p: &Policy<'_>) -> Result<(), Refused> {
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host {
        if !host_allowed(host, p.allowed_hosts) {
            return Err(Refused(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header does not name this admin listener; use its IP address, localhost, or a name in [admin] allowed_hosts",
            ));
        }
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD);
    if changes_state {
        if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            if !same_origin(origin, host) {
                return Err(Refused(
                    StatusCode::FORBIDDEN,
                    "cross-origin admin calls are refused",
                ));
            }
        }
        if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            if !matches!(site, "same-origin" | "none") {
                return Err(Refused(
                    StatusCode::FORBIDDEN,
                    "cross-site admin calls are refused",
                ));
            }
        }
        // A request with Authorization is never a "simple" one: a browser would ask first
        // (CORS preflight), and this listener never says yes. Without it, refuse what a
        // page may send unasked.
        let simple = !h.contains_key(header::AUTHORIZATION);
        if let Some(ct) = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|_| simple)
        {
            let essence = ct.split(';').next().unwrap_or("").trim();
            if [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ]
            .iter()
            .any(|t| essence.eq_ignore_ascii_case(t))
            {
                return Err(Refused(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "admin calls take application/json (or no body); a form content type is refused because any web page can send one",
                ));
            }
        }
    }
    let Some(token) = p.token else {
        return Ok(());
    };
    // The page's files hold no data (the page asks /status with the token itself).
    let page_file = !changes_state && (path == "/ui" || path.starts_with("/ui/"));
    let needs_token = path != "/healthz" && !page_file && (changes_state || p.token_for_reads);
    if !needs_token {
        return Ok(());
    }
    let presented = h
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
        });
    match presented {
        Some(t) if token.matches(t) => Ok(()),
        Some(_) => Err(Refused(StatusCode::UNAUTHORIZED, "wrong admin token")),
        None => Err(Refused(
            StatusCode::UNAUTHORIZED,
            "this call needs the admin token: send Authorization: Bearer <token>",
        )),
    }
}

/// An IP literal (any port), `localhost`, or a configured name: what a DNS-rebinding page
/// cannot put in Host, since its Host is the name it made resolve here.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether `Origin` (`scheme://host[:port]`) is this listener as the client named it.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// Whether binding here exposes the admin listener beyond this machine.
pub fn is_exposed(addr: std::net::SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    const OPEN: Policy<'static> = Policy {
        token: None,
        token_for_reads: false,
        allowed_hosts: &[],
    };

    #[test]
    fn hosts_must_name_the_listener() {
        let get = |host| check(&Method::GET, "/status", &headers(&[("host", host)]), &OPEN);
        for ok in [
            "127.0.0.1:9901",
            "[::1]:9901",
            "localhost:9901",
            "10.1.2.3",
            "LOCALHOST",
        ] {
            assert_eq!(get(ok), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:9901",
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil",
        ] {
            assert_eq!(
                get(bad).map_err(|r| r.0),
                Err(StatusCode::MISDIRECTED_REQUEST),
                "{bad}"
            );
        }
        let allowed = ["gw1.internal".to_string()];
        let p = Policy {
            allowed_hosts: &allowed,
            ..OPEN
        };
        let h = headers(&[("host", "GW1.internal:9901")]);
        assert_eq!(check(&Method::GET, "/status", &h, &p), Ok(()));
        // HTTP/1.0 without Host: no browser sends that.
        assert_eq!(
            check(&Method::GET, "/status", &HeaderMap::new(), &OPEN),
            Ok(())
        );
    }

    #[test]
    fn cross_site_state_changes_are_refused() {
        let post = |pairs: &[(&'static str, &'static str)]| {
            check(&Method::POST, "/reload", &headers(pairs), &OPEN).map_err(|r| r.0)
        };
        let host = ("host", "127.0.0.1:9901");
        assert_eq!(post(&[host]), Ok(()), "curl: no Origin, no body");
        assert_eq!(post(&[host, ("content-type", "application/json")]), Ok(()));
        assert_eq!(post(&[host, ("origin", "http://127.0.0.1:9901")]), Ok(()));
        assert_eq!(post(&[host, ("sec-fetch-site", "same-origin")]), Ok(()));
        assert_eq!(
            post(&[host, ("origin", "http://evil.example")]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            post(&[host, ("origin", "null")]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            post(&[host, ("sec-fetch-site", "cross-site")]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            post(&[host, ("content-type", "text/plain;charset=UTF-8")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            post(&[host, ("content-type", "application/x-www-form-urlencoded")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        // curl -d sends a form content type; with a token it is no browser's request.
        assert_eq!(
            post(&[
                host,
                ("authorization", "Bearer x"),
                ("content-type", "application/x-www-form-urlencoded")
            ]),
            Ok(())
        );
        // Reads are not state changes: an Origin on a GET is not refused by rule 2.
        let h = headers(&[host, ("origin", "http://evil.example")]);
        assert_eq!(check(&Method::GET, "/status", &h, &OPEN), Ok(()));
    }

    #[test]
    fn the_token_guards_changes_and_optionally_reads() {
        let token = Token::new(b"s3cret".to_vec());
        let p = Policy {
            token: Some(&token),
            ..OPEN
        };
        let call = |m: Method, path: &str, auth: Option<&'static str>, p: &Policy<'_>| {
            let mut h = headers(&[("host", "127.0.0.1:9901")]);
            if let Some(a) = auth {
                h.insert(header::AUTHORIZATION, HeaderValue::from_static(a));
            }
            check(&m, path, &h, p).map_err(|r| r.0)
        };
        assert_eq!(
            call(Method::POST, "/reload", None, &p),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            call(Method::POST, "/reload", Some("Bearer s3cre"), &p),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            call(Method::POST, "/reload", Some("Basic s3cret"), &p),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            call(Method::POST, "/reload", Some("Bearer s3cret"), &p),
            Ok(())
        );
        assert_eq!(
            call(Method::POST, "/reload", Some("bearer  s3cret"), &p),
            Ok(())
        );
        assert_eq!(call(Method::GET, "/status", None, &p), Ok(()));
        let strict = Policy {
            token_for_reads: true,
            ..p
        };
        assert_eq!(
            call(Method::GET, "/status", None, &strict),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            call(Method::GET, "/metrics", Some("Bearer s3cret"), &strict),
            Ok(())
        );
        assert_eq!(call(Method::GET, "/healthz", None, &strict), Ok(()));
    }

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new(b"abc".to_vec());
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"abd"));
        assert!(!t.matches(b"ab"));
        assert!(!t.matches(b"abcd"));
        assert!(!t.matches(b""));
    }
}
