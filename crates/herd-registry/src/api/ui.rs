//! `/ui/`: the cluster's page (assets from herd-dashboard), `/ui/snapshot` (everything the
//! page shows, as JSON) and `/ui/events` (the same, pushed every 2 s as server-sent events).
//! A snapshot is made of this server's own API answers, asked over HTTP like any client
//! would — so the page shows exactly what the API says, cluster-wide.

use crate::raft::node::RegistryNode;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use herd_api::wire::UiSnapshot;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

type Shared = Arc<RegistryNode>;

/// How often an open page gets a new snapshot.
const EVERY: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The snapshots every open page receives: made once per period while anyone listens.
#[derive(Clone)]
pub struct UiHub(Arc<watch::Sender<Option<Arc<String>>>>);

impl UiHub {
    pub fn new() -> UiHub {
        UiHub(Arc::new(watch::channel(None).0))
    }

    /// Starts the producer on first use; it builds a snapshot every 2 s while a page is
    /// open and sleeps when none is.
    fn subscribe(&self, node: &Shared) -> watch::Receiver<Option<Arc<String>>> {
        let rx = self.0.subscribe();
        if self.0.receiver_count() == 1 {
            let (tx, node) = (self.0.clone(), node.clone());
            tokio::spawn(async move {
                while tx.receiver_count() > 0 {
                    let snap = snapshot(&node).await;
                    let text = serde_json::to_string(&snap).unwrap_or_default();
                    tx.send_replace(Some(Arc::new(text)));
                    tokio::time::sleep(EVERY).await;
                }
                // The next page to open starts a fresh producer (and gets a fresh snapshot).
                tx.send_replace(None);
            });
        }
        rx
    }
}

pub async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

pub async fn page() -> Response {
    file(Path(String::new())).await
}

pub async fn file(Path(name): Path<String>) -> Response {
    match herd_dashboard::asset(&name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file under /ui/\n").into_response(),
    }
}

pub async fn snapshot_json(State(node): State<Shared>) -> Response {
    axum::Json(snapshot(&node).await).into_response()
}

pub async fn events(
    State(node): State<Shared>,
    axum::Extension(hub): axum::Extension<UiHub>,
) -> Response {
    let mut rx = hub.subscribe(&node);
    let (tx, body_rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(text) = current {
                let frame = format!("event: snapshot\ndata: {text}\n\n");
                if tx.send(Bytes::from(frame)).await.is_err() {
                    return; // the page went away
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::new(EventBody(body_rx)))
        .unwrap_or_default()
}

struct EventBody(mpsc::Receiver<Bytes>);

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

async fn snapshot(node: &Shared) -> UiSnapshot {
    let mut s = UiSnapshot {
        at_ms: crate::raft::node::now_ms(),
        ..UiSnapshot::default()
    };
    let mut errors = Vec::new();
    macro_rules! ask {
        ($path:expr) => {
            match call(node, $path).await {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(format!("{}: {e}", $path));
                    None
                }
            }
        };
    }
    s.server = ask!("/status");
    s.cluster = ask!("/v1/cluster");
    s.deployments = ask!("/v1/deployments");
    s.nodes = ask!("/v1/nodes");
    s.alerts = ask!("/v1/alerts");
    s.top_calls = ask!("/v1/telemetry/top?by=calls&window=5m&n=10");
    s.top_p99 = ask!("/v1/telemetry/top?by=p99&window=5m&n=10");
    s.graph = ask!("/v1/telemetry/graph?window=15m");
    s.series = ask!("/v1/telemetry/series?window=1h&n=12");
    s.errors = errors;
    s
}

async fn call<T: DeserializeOwned>(node: &Shared, path: &str) -> Result<T, String> {
    let url = node.client.url(&node.addr, path);
    tokio::time::timeout(
        CALL_TIMEOUT,
        crate::api::telemetry::get_json(&node.client, url, node.token.as_deref()),
    )
    .await
    .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
}
