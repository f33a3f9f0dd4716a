//! `[tracing]` (SPEC §5): where the gateway's spans go and which share of requests gets
//! one; `sample_ratio` on a listener or a route overrides the share for its requests.

use super::Checker;
use crate::model::Tracing;
use crate::raw::RawTracing;

pub(super) fn section(c: &mut Checker, raw: Option<RawTracing>) -> Option<Tracing> {
    let raw = raw?;
    let f = "tracing";
    let endpoint = raw.otlp_endpoint.trim().to_string();
    let (authority, path) = match endpoint.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
            None => (rest.to_string(), "/v1/traces".to_string()),
        },
        None => {
            let why = if endpoint.starts_with("https://") {
                "https export is not supported; send to a herd server's or a local collector's \
                 http:// address, e.g. \"http://127.0.0.1:7400/v1/traces\""
            } else {
                "must be an http:// URL of an OTLP/HTTP traces receiver, e.g. \
                 \"http://127.0.0.1:7400/v1/traces\""
            };
            c.fail(format!("{f}.otlp_endpoint"), why);
            (String::new(), String::new())
        }
    };
    if endpoint.starts_with("http://") && !authority.contains(':') {
        c.fail(
            format!("{f}.otlp_endpoint"),
            format!("\"{endpoint}\" names no port; write host:port, e.g. 127.0.0.1:7400"),
        );
    }
    let sample_ratio = ratio(c, &format!("{f}.sample_ratio"), raw.sample_ratio).unwrap_or(1.0);
    let service_name = raw.service_name.unwrap_or_else(|| "herd-gateway".into());
    if service_name.trim().is_empty() {
        c.fail(
            format!("{f}.service_name"),
            "empty; name the gateway as traces should show it, e.g. \"edge\"",
        );
    }
    let max_queue = raw.max_queue.unwrap_or(8192);
    if max_queue == 0 {
        c.fail(
            format!("{f}.max_queue"),
            "must be at least 1: it is how many finished spans wait for export",
        );
    }
    Some(Tracing {
        otlp_endpoint: endpoint,
        authority,
        path,
        sample_ratio,
        service_name,
        max_queue,
    })
}

/// A share of requests: a number from 0.0 to 1.0.
pub(super) fn ratio(c: &mut Checker, field: &str, v: Option<f64>) -> Option<f64> {
    let v = v?;
    if !(0.0..=1.0).contains(&v) {
        c.fail(
            field,
            format!("{v} is not a share of requests; write a number from 0.0 to 1.0"),
        );
        return None;
    }
    Some(v)
}
