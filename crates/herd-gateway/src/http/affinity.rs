//! Which server a request belongs to: persistence (the insert/rewrite cookie, the
//! source-IP table) looked up on the way in and recorded on the way out, and the hash key
//! of the hashing policies.

use crate::clock;
use crate::codec::headers;
use crate::state::snapshot::{Group, ServerState};
use crate::traffic::ip_key;
use herd_balance::hash64;
use herd_config::{Persistence, Policy};
use http::header::{self, HeaderMap, HeaderValue};
use std::net::IpAddr;

/// The server a client is pinned to by persistence, if that server may still serve it.
/// Strips the gateway's own cookie data so the application sees only its own cookies.
pub(crate) fn sticky_lookup(
    group: &Group,
    h: &mut HeaderMap,
    ip: IpAddr,
    now_ms: u64,
) -> Option<usize> {
    let idx = match group.config.persistence.as_ref()? {
        Persistence::InsertCookie { cookie, .. } => {
            let id = headers::cookie(h, cookie)?.to_string();
            headers::edit_cookie(h, cookie, |_| None);
            group.server_by_cookie(&id)?
        }
        Persistence::RewriteCookie { cookie } => {
            let (id, _) = headers::cookie(h, cookie)?.split_once('~')?;
            let id = id.to_string();
            headers::edit_cookie(h, cookie, |v| {
                Some(v.split_once('~').map_or(v, |(_, rest)| rest).to_string())
            });
            group.server_by_cookie(&id)?
        }
        Persistence::SourceIp { .. } => {
            let id = group.source_ip.as_ref()?.get(ip, now_ms)?;
            group.servers.0.iter().position(|s| s.id == id)?
        }
    };
    group.servers.0[idx].serves_pinned(now_ms).then_some(idx)
}

pub(crate) fn hash_key(policy: &Policy, parts: &http::request::Parts, ip: IpAddr) -> Option<u64> {
    match policy {
        Policy::SourceIp => Some(ip_key(ip)),
        Policy::Uri => Some(hash64(parts.uri.path().as_bytes())),
        Policy::UrlParam(name) => {
            headers::query_param(parts.uri.query(), name).map(|v| hash64(v.as_bytes()))
        }
        Policy::Header(name) => parts
            .headers
            .get(name.as_str())
            .map(|v| hash64(v.as_bytes())),
        Policy::Cookie(name) => headers::cookie(&parts.headers, name).map(|v| hash64(v.as_bytes())),
        Policy::RoundRobin | Policy::LeastConn | Policy::Random | Policy::P2c | Policy::Ewma => {
            None
        }
    }
}

pub(crate) fn sticky_response(
    group: &Group,
    h: &mut HeaderMap,
    server: &ServerState,
    was_pinned: bool,
    ip: IpAddr,
) {
    match &group.config.persistence {
        None => {}
        Some(Persistence::InsertCookie {
            cookie,
            max_age,
            http_only,
            secure,
            same_site,
        }) => {
            if was_pinned {
                return;
            }
            let mut v = format!("{cookie}={}; Path=/", server.cookie_id);
            if let Some(age) = max_age {
                v.push_str(&format!("; Max-Age={}", age.as_secs()));
            }
            if *http_only {
                v.push_str("; HttpOnly");
            }
            if *secure {
                v.push_str("; Secure");
            }
            v.push_str("; SameSite=");
            v.push_str(same_site.as_str());
            if let Ok(hv) = HeaderValue::from_str(&v) {
                h.append(header::SET_COOKIE, hv);
            }
        }
        Some(Persistence::RewriteCookie { cookie }) => {
            let prefix = format!("{cookie}=");
            let rewritten: Vec<HeaderValue> = h
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| match v.to_str() {
                    Ok(s) if s.starts_with(&prefix) => {
                        let nv = format!("{prefix}{}~{}", server.cookie_id, &s[prefix.len()..]);
                        HeaderValue::from_str(&nv).unwrap_or_else(|_| v.clone())
                    }
                    _ => v.clone(),
                })
                .collect();
            if !rewritten.is_empty() {
                h.remove(header::SET_COOKIE);
                for v in rewritten {
                    h.append(header::SET_COOKIE, v);
                }
            }
        }
        Some(Persistence::SourceIp { .. }) => {
            if let Some(t) = &group.source_ip {
                t.put(ip, server.id, clock::now_ms());
            }
        }
    }
}
