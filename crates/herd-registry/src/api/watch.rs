//! Watch streams: newline-delimited JSON events for a key or prefix, from a revision.
//!
//! No event is missed or repeated: the stream subscribes to live events *before* reading
//! history, then drops live events at or below a watermark: the revision history already
//! covered, or `from_revision - 1` when the watch starts beyond this node's revision. A
//! watcher that falls behind the live channel is caught up from history again; if that
//! history was compacted meanwhile, the stream says so in a final error line instead of
//! skipping.

use crate::api::body::{json_line, ChannelBody};
use crate::api::error::{internal, ApiError};
use crate::raft::node::RegistryNode;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::wire::{self, WatchLine};
use herd_registry_core::Event;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

fn matches(e: &Event, key: &str, prefix: bool) -> bool {
    if prefix {
        e.kv.key.starts_with(key)
    } else {
        e.kv.key == key
    }
}

pub async fn watch(
    State(node): State<Arc<RegistryNode>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let prefix = q
        .get("prefix")
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let from = match q.get("from_revision") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("?from_revision={v} is not a non-negative integer"),
            )
        })?,
    };
    let mut live = node.state.events.subscribe();
    let (history, covered) = {
        let a = node
            .state
            .applied
            .read()
            .map_err(|_| internal("state lock poisoned"))?;
        let current = a.store.revision();
        let start = if from == 0 { current + 1 } else { from };
        // The watermark: every revision at or below it is either in `history` or was not
        // asked for. A start beyond this node's revision (a client resuming on a lagging
        // follower, or watching ahead) must not let earlier live events through.
        (
            a.store.events_since(start, &key, prefix),
            current.max(start - 1),
        )
    };
    let history = history.map_err(|c| {
        ApiError(
            StatusCode::GONE,
            format!(
                "revision {from} is compacted; history starts at {}. Re-read the current state, then watch from its revision + 1",
                c.compacted_revision + 1
            ),
        )
    })?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let st = node.clone();
    node.counters.watchers.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut last = covered;
        let mut ok = true;
        for e in &history {
            ok &= tx.send(json_line(&wire::Event::from(e))).await.is_ok();
        }
        let mut progress = tokio::time::interval(Duration::from_secs(15));
        progress.tick().await;
        while ok {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(batch) => {
                        for e in batch.iter().filter(|e| e.revision > last) {
                            if matches(e, &key, prefix) && tx.send(json_line(&wire::Event::from(e))).await.is_err() {
                                ok = false;
                                break;
                            }
                        }
                        if let Some(e) = batch.last() {
                            last = last.max(e.revision);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let caught_up = st.state.applied.read().ok().map(|a| {
                            (a.store.events_since(last + 1, &key, prefix), a.store.revision())
                        });
                        match caught_up {
                            Some((Ok(events), rev)) => {
                                for e in &events {
                                    ok &= tx.send(json_line(&wire::Event::from(e))).await.is_ok();
                                }
                                last = last.max(rev);
                            }
                            Some((Err(c), _)) => {
                                let _ = tx.send(json_line(&WatchLine::Error {
                                    error: format!("watcher fell behind and revision {} was compacted (history starts at {}); resume from a fresh read", last + 1, c.compacted_revision + 1),
                                })).await;
                                ok = false;
                            }
                            None => ok = false,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => ok = false,
                },
                _ = progress.tick() => {
                    // Tells the client the stream is alive and how far it has seen.
                    ok = tx.send(json_line(&WatchLine::progress(last))).await.is_ok();
                }
                _ = tx.closed() => ok = false,
            }
        }
        st.counters.watchers.fetch_sub(1, Ordering::Relaxed);
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        Body::new(ChannelBody(rx)),
    )
        .into_response())
}
