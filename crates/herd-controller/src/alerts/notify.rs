//! Where an alert goes: the log always, and the rules' webhook — a JSON POST of the
//! [`AlertRecord`], tried up to five times (0.5 s, 1 s, 2 s, 4 s apart) — from one task, so
//! a slow receiver delays notices but never the evaluation, and each alert's firing
//! notice goes out before its resolved one.

use bytes::Bytes;
use herd_api::wire::AlertRecord;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::sync::mpsc;

const TRIES: u32 = 5;
/// Notices waiting at most; beyond, the newest is logged as not sent.
const QUEUE: usize = 1024;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub struct Notifier {
    tx: mpsc::Sender<(Option<String>, AlertRecord)>,
}

impl Notifier {
    pub fn start() -> Notifier {
        let (tx, mut rx) = mpsc::channel::<(Option<String>, AlertRecord)>(QUEUE);
        tokio::spawn(async move {
            let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
            while let Some((webhook, alert)) = rx.recv().await {
                if let Some(url) = webhook {
                    deliver(&client, &url, &alert).await;
                }
            }
        });
        Notifier { tx }
    }

    pub fn send(&self, webhook: Option<&str>, alert: &AlertRecord) {
        if alert.status == "firing" {
            tracing::warn!(rule = %alert.rule, subject = %alert.subject, "alert firing: {}", alert.summary);
        } else {
            tracing::info!(rule = %alert.rule, subject = %alert.subject, "alert resolved: {}", alert.summary);
        }
        if self
            .tx
            .try_send((webhook.map(str::to_string), alert.clone()))
            .is_err()
        {
            tracing::warn!(rule = %alert.rule, "alert notice not sent: {QUEUE} notices already wait for the webhook");
        }
    }
}

async fn deliver(client: &HttpClient, url: &str, alert: &AlertRecord) {
    let body = Bytes::from(serde_json::to_vec(alert).unwrap_or_default());
    let mut pause = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()));
        let Ok(req) = req else {
            tracing::warn!(%url, "alert webhook: not a usable URL");
            return;
        };
        match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                let _ = resp.into_body().collect().await;
                return;
            }
            Ok(Ok(resp)) => last = format!("answered {}", resp.status()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 5s".into(),
        }
        if attempt < TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::warn!(%url, rule = %alert.rule, subject = %alert.subject, error = %last, "alert webhook failed {TRIES} times; the notice is dropped (the alert stays listed by GET /v1/alerts)");
}
