//! A small traced HTTP service, instrumented by hand the way any W3C-aware application is:
//! it reads the `traceparent` it is sent, records a server span for each request and a
//! client span for each call it makes onward (passing its own context on), and reports
//! both to an OTLP/HTTP endpoint as JSON before it answers — so a test that has its
//! answer knows the service's spans were delivered.
//!
//! `GET /<anything>?hops=N`: with N > 0 and a `next` URL set, calls `next?hops=N-1` first.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub struct TracedService {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct State {
    name: String,
    otlp: String,
    next: Mutex<Option<String>>,
    /// Answer this status (and mark the server span an error when 5xx).
    status: AtomicU64,
    /// The traceparent and tracestate headers of each request, in order.
    received: Mutex<Vec<(Option<String>, Option<String>)>>,
    client: HttpClient,
    ids: AtomicU64,
}

impl TracedService {
    pub fn start(name: &str, otlp_url: &str) -> TracedService {
        // Distinct span ids across the services of one test process.
        static STARTED: AtomicU64 = AtomicU64::new(1);
        let seed = unix_nanos()
            ^ u64::from(std::process::id()) << 32
            ^ STARTED
                .fetch_add(1, Ordering::SeqCst)
                .wrapping_mul(0xd1b5_4a32_d192_ed03);
        let state = Arc::new(State {
            name: name.to_string(),
            otlp: otlp_url.to_string(),
            next: Mutex::new(None),
            status: AtomicU64::new(200),
            received: Mutex::new(Vec::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
            ids: AtomicU64::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        });
        let st = state.clone();
        let (addr, runtime) = crate::serve::http_server(move |req| handle(st.clone(), req));
        TracedService {
            name: name.to_string(),
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// Where this service sends its onward call (e.g. the gateway's URL for the next one).
    pub fn set_next(&self, url: &str) {
        *self.state.next.lock().unwrap() = Some(url.to_string());
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status.into(), Ordering::SeqCst);
    }

    /// The traceparent of each request that had one, in order.
    pub fn received_traceparents(&self) -> Vec<String> {
        let got = self.state.received.lock().unwrap();
        got.iter().filter_map(|(tp, _)| tp.clone()).collect()
    }

    /// The tracestate of each request (None: it had none), in order.
    pub fn received_tracestates(&self) -> Vec<Option<String>> {
        let got = self.state.received.lock().unwrap();
        got.iter().map(|(_, ts)| ts.clone()).collect()
    }
}

impl Drop for TracedService {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl State {
    fn new_id(&self) -> String {
        // xorshift: distinct, never zero
        let mut x = self.ids.load(Ordering::SeqCst);
        loop {
            let mut y = x;
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            if self
                .ids
                .compare_exchange(x, y, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return format!("{y:016x}");
            }
            x = self.ids.load(Ordering::SeqCst);
        }
    }
}

fn parse_traceparent(v: &str) -> Option<(String, String, bool)> {
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() != 4 || parts[1].len() != 32 || parts[2].len() != 16 {
        return None;
    }
    Some((parts[1].into(), parts[2].into(), parts[3] == "01"))
}

#[allow(clippy::too_many_arguments)]
fn span_json(
    trace: &str,
    id: &str,
    parent: Option<&str>,
    name: &str,
    kind: u8,
    start: u64,
    end: u64,
    status: u16,
) -> Value {
    json!({
        "traceId": trace,
        "spanId": id,
        "parentSpanId": parent.unwrap_or(""),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": [
            {"key": "http.response.status_code", "value": {"intValue": status.to_string()}}
        ],
        "status": {"code": if status >= 500 { 2 } else { 0 }},
    })
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = unix_nanos();
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let state = req
        .headers()
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    st.received.lock().unwrap().push((incoming.clone(), state));
    let (trace, parent, sampled) = match incoming.as_deref().and_then(parse_traceparent) {
        Some((t, p, s)) => (t, Some(p), s),
        None => (format!("{}{}", st.new_id(), st.new_id()), None, true),
    };
    let hops: u64 = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("hops=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let path = req.uri().path().to_string();
    let server_id = st.new_id();
    let mut spans = Vec::new();
    let next = st.next.lock().unwrap().clone();
    let mut body = st.name.clone();
    if let (true, Some(next)) = (hops > 0, next) {
        let client_id = st.new_id();
        let flags = if sampled { "01" } else { "00" };
        let call = Request::get(format!("{next}?hops={}", hops - 1))
            .header("traceparent", format!("00-{trace}-{client_id}-{flags}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let c0 = unix_nanos();
        let (status, text) = match st.client.request(call).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let b = r
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, String::from_utf8_lossy(&b).into_owned())
            }
            Err(_) => (502, String::new()),
        };
        let name = format!("GET {next}");
        spans.push(span_json(
            &trace,
            &client_id,
            Some(&server_id),
            &name,
            3,
            c0,
            unix_nanos(),
            status,
        ));
        body = format!("{body}>{text}");
    }
    let status = st.status.load(Ordering::SeqCst) as u16;
    let name = format!("GET {path}");
    let server = span_json(
        &trace,
        &server_id,
        parent.as_deref(),
        &name,
        2,
        start,
        unix_nanos(),
        status,
    );
    spans.push(server);
    if sampled {
        let export = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": st.name}}]},
            "scopeSpans": [{"scope": {"name": "herd-testkit"}, "spans": spans}]
        }]});
        let post = Request::post(&st.otlp)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(export.to_string())))
            .unwrap();
        if let Ok(r) = st.client.request(post).await {
            let _ = r.into_body().collect().await;
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    Ok(resp)
}
