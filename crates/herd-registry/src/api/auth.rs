//! Who may call what (issue 16): with `--token-file` set, every call but `/healthz` and
//! the page's files needs a bearer token — the admin token for anything, the read token
//! (`--read-token-file`) for reads (GET/HEAD) and for sending spans (`POST /v1/traces`).
//! Tokens are compared in constant time. Every write that is let through is logged with
//! its role (target `herd::audit`); peers' `/raft/` traffic is not (it is the log itself).

use crate::api::error::ApiError;
use crate::raft::node::RegistryNode;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub struct AuthState {
    pub node: Arc<RegistryNode>,
    /// The read-only token, when one is configured.
    pub read_token: Option<Arc<str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// No token is configured: the registry is open (loopback, or `--insecure`).
    Open,
    Admin,
    Read,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Open => "open",
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

/// Equal, in time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    herd_api::same_secret(a, b)
}

/// Whether a percent-encoded query value equals `want` (in constant time).
fn percent_decoded_eq(raw: &str, want: &str) -> bool {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    ct_eq(&out, want.as_bytes())
}

fn is_read(method: &Method, path: &str) -> bool {
    (matches!(*method, Method::GET | Method::HEAD) && !path.starts_with("/raft/"))
        || (*method == Method::POST && path == "/v1/traces")
}

pub async fn auth(
    State(st): State<AuthState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let role = match &st.node.token {
        None => Role::Open,
        Some(admin) => {
            let bearer = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // A browser's EventSource cannot send headers: the page's data takes ?token= too.
            let in_query = |want: &str| {
                matches!(path.as_str(), "/ui/events" | "/ui/snapshot")
                    && req.uri().query().is_some_and(|q| {
                        q.split('&').any(|p| {
                            p.strip_prefix("token=")
                                .is_some_and(|t| percent_decoded_eq(t, want))
                        })
                    })
            };
            let presents = |want: &str| {
                bearer.is_some_and(|b| ct_eq(b.as_bytes(), want.as_bytes())) || in_query(want)
            };
            let page_file =
                path.starts_with("/ui") && !matches!(path.as_str(), "/ui/events" | "/ui/snapshot");
            if path == "/healthz" || page_file {
                Role::Read
            } else if presents(admin) {
                Role::Admin
            } else if st.read_token.as_deref().is_some_and(presents) {
                Role::Read
            } else {
                // Refused writes are worth a line (someone tried to change the cluster,
                // joining it included); refused reads would only drown them.
                if !is_read(&method, &path) {
                    let client = client_of(&req);
                    tracing::warn!(target: "herd::audit", role = "none", %method, %path, %client, status = 401, "refused");
                }
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token; send Authorization: Bearer <token>".into(),
                )
                .into_response();
            }
        }
    };
    if role == Role::Read && !is_read(&method, &path) {
        let client = client_of(&req);
        tracing::warn!(target: "herd::audit", role = role.as_str(), %method, %path, %client, status = 403, "refused");
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("the read-only token may not {method} {path}; changes need the admin token"),
        )
        .into_response();
    }
    let write = !is_read(&method, &path) && !path.starts_with("/raft/");
    let client = write.then(|| client_of(&req));
    let resp = next.run(req).await;
    if let Some(client) = client {
        tracing::info!(
            target: "herd::audit",
            role = role.as_str(),
            %method,
            %path,
            %client,
            status = resp.status().as_u16(),
            "write"
        );
    }
    resp
}

fn client_of(req: &axum::extract::Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_reads_are_reads() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"", b"x"));
        assert!(percent_decoded_eq("a%2Bb+c", "a+b c"));
        assert!(!percent_decoded_eq("a%2", "a%2x"));
        assert!(is_read(&Method::GET, "/v1/kv/x"));
        assert!(is_read(&Method::POST, "/v1/traces"));
        assert!(!is_read(&Method::GET, "/raft/vote"));
        assert!(!is_read(&Method::PUT, "/v1/kv/x"));
        assert!(!is_read(&Method::POST, "/v1/txn"));
    }
}
