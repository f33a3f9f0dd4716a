//! The span exporter: batches finished spans (512 at a time, or whatever came within a
//! second) and POSTs each batch as OTLP/HTTP protobuf to `[tracing] otlp_endpoint`, read
//! from the current snapshot so a reload redirects or stops it. A batch that cannot be
//! delivered after a few tries is dropped and counted: the gateway never holds more
//! than its queue, and the request path never waits for any of this.

use crate::state::shared::Shared;
use crate::state::spans::{route_pattern, FinishedSpan};
use bytes::Bytes;
use herd_telemetry::trace::{Attr, ExportWriter, SpanFields, SpanKind};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 512;
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per batch, with a doubling pause between them (OTLP: retry 429, 502, 503, 504
/// and failed connections; anything else is final).
const TRIES: u32 = 3;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub(crate) fn spawn(shared: Arc<Shared>) -> Option<tokio::task::JoinHandle<()>> {
    let mut rx = shared.spans.take_receiver()?;
    Some(tokio::spawn(async move {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let mut batch = Vec::with_capacity(BATCH);
        let mut writer = Encoder::default();
        let mut failing = false;
        loop {
            // Nobody waits on the queue itself: a worker's send wakes no thread. The queue
            // holding a batch (SpanQueue::push) or the interval passing does, once.
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = shared.spans.batch_ready.notified() => {}
            }
            loop {
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    break;
                }
                failing = export(&shared, &client, &mut batch, &mut writer, failing).await;
            }
        }
    }))
}

/// Sends and empties the batch; returns whether it failed (so a run of failures is
/// logged once, and its end once).
async fn export(
    shared: &Shared,
    client: &HttpClient,
    batch: &mut Vec<FinishedSpan>,
    writer: &mut Encoder,
    failing: bool,
) -> bool {
    let spans = std::mem::take(batch);
    let Some(cfg) = shared.snapshot.load().config.tracing.clone() else {
        // Tracing was turned off by a reload: what was queued before it has nowhere to go.
        return false;
    };
    let n = spans.len() as u64;
    let body = Bytes::from(writer.encode(&cfg.service_name, &spans));
    let url = format!("http://{}{}", cfg.authority, cfg.path);
    let mut pause = Duration::from_millis(200);
    let mut last_error = String::new();
    for attempt in 1..=TRIES {
        match send(client, &url, body.clone()).await {
            Ok(()) => {
                shared.spans.exported.add(n);
                if failing {
                    tracing::info!(endpoint = %cfg.otlp_endpoint, "span export works again");
                }
                return false;
            }
            Err((retry, e)) => {
                last_error = e;
                if !retry || attempt == TRIES {
                    break;
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    shared.spans.failed.add(n);
    if !failing {
        tracing::warn!(
            endpoint = %cfg.otlp_endpoint,
            error = %last_error,
            spans = n,
            "span export failed; dropping the batch (herd_trace_spans_total{{result=\"failed\"}} counts them)"
        );
    }
    true
}

/// Err((worth retrying, why)).
async fn send(client: &HttpClient, url: &str, body: Bytes) -> Result<(), (bool, String)> {
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(body))
        .map_err(|e| (false, e.to_string()))?;
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, client.request(req)).await {
        Err(_) => return Err((true, format!("no answer within {REQUEST_TIMEOUT:?}"))),
        Ok(Err(e)) => return Err((true, e.to_string())),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    // Read the answer whole so the connection can carry the next batch.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        return Ok(());
    }
    let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    Err((retry, format!("the receiver answered {status}")))
}

/// Turns finished spans into one OTLP request, reusing its buffers from batch to batch.
#[derive(Default)]
struct Encoder {
    writer: ExportWriter,
    name: String,
    client: String,
}

impl Encoder {
    fn encode(&mut self, service: &str, spans: &[FinishedSpan]) -> Vec<u8> {
        for s in spans {
            self.name.clear();
            let _ = write!(self.name, "{} {}", s.method, route_pattern(&s.route));
            self.client.clear();
            let _ = write!(self.client, "{}", s.client);
            let group = &s.route.group.config;
            let ms = |ns: u64| Attr::Double(ns as f64 / 1e6);
            let mut attrs = [("", Attr::Int(0)); 19];
            let mut n = 0;
            let mut add = |k: &'static str, v| {
                attrs[n] = (k, v);
                n += 1;
            };
            add("http.request.method", Attr::Str(s.method.as_str()));
            add(
                "url.path",
                Attr::Str(s.target.split('?').next().unwrap_or("/")),
            );
            add("http.response.status_code", Attr::Int(s.status.into()));
            add("http.response.body.size", Attr::Int(s.bytes as i64));
            add("client.address", Attr::Str(&self.client));
            add("herd.listener", Attr::Str(&s.listener));
            add("http.route", Attr::Str(route_pattern(&s.route)));
            add("herd.route", Attr::Str(&s.route.label));
            add("herd.backend", Attr::Str(&group.name));
            add("herd.complete", Attr::Bool(s.complete));
            add("herd.attempts", Attr::Int(s.attempts.into()));
            if let Some(h) = &s.host {
                add("server.address", Attr::Str(h));
            }
            if let Some(svc) = &group.service {
                add("herd.service", Attr::Str(svc));
            }
            if let Some(server) = &s.server {
                add("herd.server", Attr::Str(&server.addr));
            }
            if let Some(v) = s.queue_ns {
                add("herd.time.queue_ms", ms(v));
            }
            if let Some(v) = s.connect_ns {
                add("herd.time.connect_ms", ms(v));
            }
            if let Some(v) = s.ttfb_ns {
                add("herd.time.ttfb_ms", ms(v));
            }
            let error = s.status >= 500 || (s.status > 0 && !s.complete);
            let fields = SpanFields {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent,
                name: &self.name,
                kind: SpanKind::Server,
                start_unix_nanos: s.start_unix_nanos,
                end_unix_nanos: s.end_unix_nanos,
                error,
                status_message: if s.complete || s.status == 0 {
                    ""
                } else {
                    "the response body did not reach the client whole"
                },
            };
            self.writer.span(&fields, &attrs[..n]);
        }
        self.writer.finish(service)
    }
}
