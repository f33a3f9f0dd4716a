//! `POST /v1/traces` (OTLP/HTTP, protobuf or JSON) and the questions `/v1/telemetry/`
//! answers for the whole cluster: this node's part, and each peer's asked with
//! `?scope=local`, merged; a peer that does not answer in time is named in the answer.

use crate::api::error::{bad, ok, ApiError, ApiResult};
use crate::api::query::Params;
use crate::raft::node::RegistryNode;
use crate::telemetry::query::{self, By};
use crate::telemetry::store::TraceFilter;
use crate::telemetry::Telemetry;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use herd_api::wire::{
    Coverage, GraphAnswer, TelemetryDump, TopAnswer, TraceAnswer, TraceSpan, TraceSummary,
    TracesAnswer,
};
use herd_telemetry::trace::{self, TraceId};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Shared = Arc<RegistryNode>;

/// How long a peer may take to send its part before the answer goes out without it.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_WINDOW_S: u64 = 300;
/// Aggregates are kept for an hour.
const MAX_WINDOW_S: u64 = 3600;

fn now_ms() -> u64 {
    crate::raft::node::now_ms()
}

pub async fn ingest(
    Extension(t): Extension<Telemetry>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e != "identity")
    {
        None => body,
        Some(e) if e == "gzip" => gunzip(&body)?,
        Some(enc) => {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {enc} is not accepted; send gzip or no compression \
                     (OTEL_EXPORTER_OTLP_COMPRESSION=gzip or none)"
                ),
            ))
        }
    };
    let protobuf = match ctype.as_str() {
        "application/x-protobuf" | "application/protobuf" => true,
        "application/json" => false,
        other => {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {other:?} is not OTLP; send application/x-protobuf or \
                     application/json (OTLP/HTTP traces)"
                ),
            ))
        }
    };
    let decoded = if protobuf {
        trace::decode_protobuf(&body)
    } else {
        trace::decode_json(&body)
    }
    .map_err(|e| bad(e.to_string()))?;
    let answer = if protobuf {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            trace::encode_response(&decoded),
        )
            .into_response()
    } else {
        let partial = (decoded.rejected > 0).then(|| {
            serde_json::json!({
                "rejectedSpans": decoded.rejected.to_string(),
                "errorMessage": decoded.first_error.clone().unwrap_or_default(),
            })
        });
        axum::Json(match partial {
            Some(p) => serde_json::json!({ "partialSuccess": p }),
            None => serde_json::json!({}),
        })
        .into_response()
    };
    t.lock().ingest(decoded.spans, now_ms());
    Ok(answer)
}

/// What a gzip body may grow to: a few kilobytes must not become gigabytes in memory.
const MAX_UNCOMPRESSED: u64 = 16 << 20;

fn gunzip(body: &[u8]) -> Result<Bytes, ApiError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_UNCOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("the body is not valid gzip: {e}")))?;
    if out.len() as u64 > MAX_UNCOMPRESSED {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the gzip body unpacks to more than {MAX_UNCOMPRESSED} bytes; send smaller batches"
            ),
        ));
    }
    Ok(Bytes::from(out))
}

fn window(q: &HashMap<String, String>) -> Result<u64, ApiError> {
    let Some(w) = q.get("window") else {
        return Ok(DEFAULT_WINDOW_S);
    };
    let d = herd_config::parse_duration(w).map_err(|e| bad(format!("?window: {e}")))?;
    let s = d.as_secs().max(1);
    if s > MAX_WINDOW_S {
        return Err(bad(format!(
            "?window={w} is longer than the hour aggregates are kept; ask for at most 1h"
        )));
    }
    Ok(s)
}

fn count(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    Ok(crate::api::query::number(q, name)?
        .map_or(default, |n| n as usize)
        .clamp(1, 1000))
}

fn local_only(q: &HashMap<String, String>) -> bool {
    q.get("scope").is_some_and(|s| s == "local")
}

/// This node's part and every peer's (asked at `path` with `?scope=local` added), and
/// which nodes answered.
async fn gather<T: DeserializeOwned + Send + 'static>(
    node: &Shared,
    path_and_query: &str,
    local: T,
    only_local: bool,
) -> (Vec<T>, Coverage) {
    let mut parts = vec![local];
    let mut coverage = Coverage {
        nodes_answered: vec![node.id],
        nodes_missing: vec![],
    };
    if only_local {
        return (parts, coverage);
    }
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut asks = tokio::task::JoinSet::new();
    for (id, (addr, _)) in node.members() {
        if id == node.id {
            continue;
        }
        let url = node
            .client
            .url(&addr, &format!("{path_and_query}{sep}scope=local"));
        let client = node.client.clone();
        let token = node.token.clone();
        asks.spawn(async move {
            let got =
                tokio::time::timeout(PEER_TIMEOUT, get_json::<T>(&client, url, token.as_deref()))
                    .await;
            (id, got.ok().and_then(Result::ok))
        });
    }
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((id, Some(part))) => {
                parts.push(part);
                coverage.nodes_answered.push(id);
            }
            Ok((id, None)) => coverage.nodes_missing.push(id),
            Err(_) => {}
        }
    }
    coverage.nodes_answered.sort_unstable();
    coverage.nodes_missing.sort_unstable();
    (parts, coverage)
}

/// GET a JSON answer from a server (a peer, or this one), with the node's token; Err says
/// why, the status and the answer's text included.
pub(super) async fn get_json<T: DeserializeOwned>(
    client: &crate::raft::network::HttpClient,
    url: String,
    token: Option<&str>,
) -> Result<T, String> {
    let mut b = http::Request::get(url);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

async fn cluster_dump(
    node: &Shared,
    t: &Telemetry,
    q: &HashMap<String, String>,
) -> Result<(TelemetryDump, Coverage), ApiError> {
    let w = window(q)?;
    let local = {
        let mut store = t.lock();
        store.expire(now_ms());
        store.dump(now_ms(), w)
    };
    let path = format!("/v1/telemetry/aggregates?window={w}s");
    let (parts, coverage) = gather(node, &path, local, local_only(q)).await;
    Ok((query::merge(parts), coverage))
}

pub async fn aggregates(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    ok(cluster_dump(&node, &t, &q).await?.0)
}

pub async fn top(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let by_text = q.get("by").map_or("calls", String::as_str);
    let by = By::parse(by_text).ok_or_else(|| {
        bad(format!(
            "?by={by_text} is not a ranking; use calls, p99 or errors"
        ))
    })?;
    let n = count(&q, "n", 10)?;
    let (dump, coverage) = cluster_dump(&node, &t, &q).await?;
    let (services, endpoints) = query::top(&dump, by, n);
    ok(TopAnswer {
        by: by.as_str().into(),
        window_s: dump.window_s,
        services,
        endpoints,
        coverage,
    })
}

pub async fn series(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let w = window(&q)?;
    let n = count(&q, "n", 20)?;
    let local = t.lock().series(now_ms(), w);
    if local_only(&q) {
        return ok(local);
    }
    let path = format!("/v1/telemetry/series?window={w}s");
    let (parts, coverage) = gather(&node, &path, local, false).await;
    let (minutes, services) = query::series(parts, now_ms(), w, n);
    ok(herd_api::wire::SeriesAnswer {
        window_s: w,
        minutes,
        services,
        coverage,
    })
}

pub async fn latency(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let service = q
        .get("service")
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| {
            bad("?service= is required: whose calls (GET /v1/telemetry/top lists them)")
        })?;
    let name = q.get("name").filter(|s| !s.is_empty()).cloned();
    let (dump, coverage) = cluster_dump(&node, &t, &q).await?;
    let stats = match &name {
        None => dump
            .services
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, st)| st),
        Some(n) => dump
            .endpoints
            .iter()
            .find(|(s, e, _)| *s == service && e == n)
            .map(|(_, _, st)| st),
    };
    let Some(stats) = stats else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no calls of {service}{} in the last {}s",
                name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
                dump.window_s
            ),
        ));
    };
    let ms = |q: f64| {
        stats
            .latency
            .quantile_secs(q)
            .map_or(0.0, |v| (v * 1e6).round() / 1e3)
    };
    ok(herd_api::wire::LatencyAnswer {
        service,
        name,
        window_s: dump.window_s,
        calls: stats.calls,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
        buckets: stats
            .latency
            .buckets_secs()
            .into_iter()
            .map(|(le, count)| herd_api::wire::LatencyBucket {
                le_ms: (le * 1e6).round() / 1e3,
                count,
            })
            .collect(),
        coverage,
    })
}

pub async fn graph(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let (dump, coverage) = cluster_dump(&node, &t, &q).await?;
    let (nodes, edges, cycles) = query::graph(&dump);
    ok(GraphAnswer {
        window_s: dump.window_s,
        nodes,
        edges,
        cycles,
        coverage,
    })
}

pub async fn traces(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let min_duration_nanos = match q.get("min_duration") {
        None => 0,
        Some(d) => herd_config::parse_duration(d)
            .map_err(|e| bad(format!("?min_duration: {e}")))?
            .as_nanos() as u64,
    };
    let error_only = match q.get("error").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("") | Some("true") | Some("1") => true,
        Some(other) => return Err(bad(format!("?error={other}: write true or false"))),
    };
    let filter = TraceFilter {
        service: q.get("service").filter(|s| !s.is_empty()).cloned(),
        min_duration_nanos,
        error_only,
        limit: count(&q, "limit", 20)?,
    };
    let local: Vec<TraceSummary> = t.lock().traces(&filter);
    let mut path = format!("/v1/telemetry/traces?limit={}", filter.limit);
    if let Some(s) = &filter.service {
        path.push_str(&format!("&service={}", encode_query(s)));
    }
    if min_duration_nanos > 0 {
        path.push_str(&format!(
            "&min_duration={}ms",
            min_duration_nanos as f64 / 1e6
        ));
    }
    if error_only {
        path.push_str("&error=true");
    }
    if local_only(&q) {
        return ok(local);
    }
    let (parts, coverage) = gather(&node, &path, local, false).await;
    ok(TracesAnswer {
        traces: query::merge_summaries(parts.into_iter().flatten().collect(), filter.limit),
        coverage,
    })
}

pub async fn one_trace(
    State(node): State<Shared>,
    Extension(t): Extension<Telemetry>,
    Path(id): Path<String>,
    axum::extract::Query(q): Params,
) -> ApiResult {
    let trace_id = TraceId::from_hex(&id).ok_or_else(|| {
        bad(format!(
            "{id:?} is not a trace id; write its 32 hex digits (as /v1/telemetry/traces lists them)"
        ))
    })?;
    let local: Vec<TraceSpan> = t.lock().trace(trace_id);
    if local_only(&q) {
        return ok(local);
    }
    let path = format!("/v1/telemetry/traces/{}", trace_id.to_hex());
    let (parts, coverage) = gather(&node, &path, local, false).await;
    let spans: Vec<TraceSpan> = parts.into_iter().flatten().collect();
    if spans.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no spans of trace {} on the nodes that answered ({:?}); spans are kept in \
                 memory, a bounded number per node, and older traces are dropped first",
                trace_id.to_hex(),
                coverage.nodes_answered
            ),
        ));
    }
    let (duration_ms, spans) = query::tree(spans);
    ok(TraceAnswer {
        trace_id: trace_id.to_hex(),
        duration_ms,
        spans,
        coverage,
    })
}

/// Percent-encodes a query value (service names are free text).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
