//! Cluster management through real processes: a `herd server` (registry and controller),
//! two or three `herd agent`s on this machine with their own data dirs and labels, real
//! service processes (`herd demo-app`), and a real gateway following the catalog.

mod adopt;
mod artifact;
mod autoscale;
mod deploy;
mod failover;
mod rollback;
mod ui;
mod up;

use herd_testkit::prelude::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// A manifest for `herd demo-app` at `version` with `count` instances and a fast health
/// check; `extra` is appended (more tables).
pub fn demo_manifest(version: &str, count: u32, extra: &str) -> String {
    named_manifest("web", version, count, extra)
}

/// The same for a service called `name`.
pub fn named_manifest(name: &str, version: &str, count: u32, extra: &str) -> String {
    format!(
        r#"name = "{name}"
version = "{version}"

[run]
command = "{bin}"
args = ["demo-app", "--version", "{version}"]
ports = ["http"]
stop_timeout = "5s"

[instances]
count = {count}
min = 1
max = 10

[health]
kind = "http"
path = "/healthz"
interval = "200ms"
timeout = "200ms"
healthy_threshold = 1
unhealthy_threshold = 2

[update]
max_parallel = 1
min_healthy_time = "500ms"
healthy_deadline = "30s"

[restart]
attempts = 5
interval = "60s"
delay = "200ms"
max_delay = "1s"
{extra}"#,
        bin = herd_bin()
    )
}

/// `herd apply -f` of this text: (exit code, stdout, stderr).
pub fn try_apply(server: &ServerProc, dir: &Path, text: &str) -> (i32, String, String) {
    let file = dir.join(format!("manifest-{}.toml", free_port()));
    std::fs::write(&file, text).unwrap();
    let o = std::process::Command::new(herd_bin())
        .args(["apply", "--server", &server.addr.to_string(), "-f"])
        .arg(&file)
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `herd ARGS --server S`: (exit code, stdout, stderr).
pub fn herd(server: &ServerProc, args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(herd_bin())
        .args(args)
        .args(["--server", &server.addr.to_string()])
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `herd apply -f` of this text; panics with stderr unless it exits 0.
pub fn apply(server: &ServerProc, dir: &Path, text: &str) -> Value {
    let file = dir.join(format!("manifest-{}.toml", free_port()));
    std::fs::write(&file, text).unwrap();
    let o = std::process::Command::new(herd_bin())
        .args(["apply", "--server", &server.addr.to_string(), "-f"])
        .arg(&file)
        .env_remove("HERD_SERVER")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "herd apply failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("apply prints JSON")
}

/// The instance ids of a deployment status.
pub fn ids(s: &Value) -> BTreeSet<String> {
    s["instances"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The deployment's status from the API.
pub async fn status(api: &Api, server: &ServerProc, service: &str) -> Option<Value> {
    let r = api
        .get(server.addr, &format!("/v1/deployments/{service}"))
        .await
        .ok()?;
    r.ok().then(|| r.json())
}

/// Wait until `service` has exactly `n` instances, all Run at `version`.
pub async fn all_run(
    api: &Api,
    server: &ServerProc,
    service: &str,
    n: usize,
    version: &str,
) -> Value {
    eventually(
        &format!("{n} instances of {service} {version} in state Run"),
        Duration::from_secs(40),
        || async {
            let s = status(api, server, service).await?;
            let list = s["instances"].as_array()?;
            let ok = list.len() == n
                && list
                    .iter()
                    .all(|i| i["state"] == "Run" && i["version"] == version);
            ok.then_some(s)
        },
    )
    .await
}

/// A gateway whose backend `app` is the catalog's service `web`.
pub fn gateway_for(server: &ServerProc) -> Gateway {
    Gateway::start(&format!(
        r#"
[registry]
servers = ["{}"]

[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[routes]]
backend = "app"

[backends.app]
service = "web"
"#,
        server.addr
    ))
}
