//! The span exporter: batches finished spans (up to 512, or whatever came within a
//! second) and POSTs each batch as OTLP/HTTP protobuf to `[tracing] otlp_endpoint`, read
//! from the current snapshot so a reload redirects or stops it. A batch that cannot be
//! delivered after a few tries is dropped and counted: the gateway never holds more
//! than its queue, and the request path never waits for any of this.

use crate::state::shared::Shared;
use bytes::Bytes;
use herd_telemetry::trace::{encode_protobuf, Span};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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
        let mut failing = false;
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            batch.push(first);
            let flush = tokio::time::sleep(FLUSH_INTERVAL);
            tokio::pin!(flush);
            while batch.len() < BATCH {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(s) => batch.push(s),
                        None => break,
                    },
                    _ = &mut flush => break,
                }
            }
            failing = export(&shared, &client, &mut batch, failing).await;
        }
    }))
}

/// Sends and empties the batch; returns whether it failed (so a run of failures is
/// logged once, and its end once).
async fn export(
    shared: &Shared,
    client: &HttpClient,
    batch: &mut Vec<Span>,
    failing: bool,
) -> bool {
    let spans = std::mem::take(batch);
    let Some(cfg) = shared.snapshot.load().config.tracing.clone() else {
        // Tracing was turned off by a reload: what was queued before it has nowhere to go.
        return false;
    };
    let n = spans.len() as u64;
    let body = Bytes::from(encode_protobuf(&cfg.service_name, &spans));
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
