//! The registry suite: real `herd server` processes on 127.0.0.1 (single nodes and
//! clusters), their HTTP API, DNS and the CLI, spoken to like a user. One test binary with a
//! module per concern; the harness is `herd-testkit`.

mod auth_roles;
mod bulk;
mod cli;
mod cluster;
mod coordination;
mod dns;
mod election;
mod errors;
mod single_node;
mod telemetry;
mod tls;

use herd_testkit::http::Reply;
use serde_json::Value;
use std::time::Duration;

/// How long a watch may take to deliver an event.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// The revision an answer reports.
fn rev(r: &Reply) -> u64 {
    r.json()["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no revision in {}", r.text()))
}

/// A watch event as (type, key, revision).
fn summary(e: &Value) -> (String, String, u64) {
    (
        e["type"].as_str().unwrap_or("?").to_string(),
        e["kv"]["key"].as_str().unwrap_or("?").to_string(),
        e["revision"].as_u64().unwrap_or(0),
    )
}
