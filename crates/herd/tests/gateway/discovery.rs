//! Registry-backed backends: a real `herd server` and a real `herd gateway` whose backend
//! says `service = "web"`. Registrations, deregistrations and lease expiry change the
//! gateway's rotation with no reload.

use herd_testkit::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Registry {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Registry {
    fn start() -> Registry {
        // Removed by Registry's drop, after the process is stopped.
        let dir = temp_dir().keep();
        let mut child = Command::new(herd_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("registry ready line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Registry {
            child,
            addr: v["addr"].as_str().unwrap().to_string(),
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gateway_for(registry: &Registry) -> Gateway {
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
        registry.addr
    ))
}

async fn register(c: &Client, r: &Registry, id: &str, b: &Backend, weight: u32, ttl_s: f64) -> u64 {
    let body = format!(
        r#"{{"address": "127.0.0.1", "port": {}, "weight": {weight}, "ttl_s": {ttl_s}}}"#,
        b.addr.port()
    );
    let resp = put(
        c,
        &r.url(&format!("/v1/services/web/instances/{id}")),
        &body,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    v["lease"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap()
}

/// Poll until every one of `n` requests is answered 200 by a backend in `names`, and all of
/// `names` answered at least once.
async fn wait_rotation(c: &Client, gw: &Gateway, names: &[&str]) {
    eventually(
        &format!("rotation to become exactly {names:?}"),
        Duration::from_secs(5),
        || async {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..(names.len() * 4) {
                let r = get(c, &gw.url("/")).await.ok()?;
                if r.status != 200 || !names.contains(&r.body.as_str()) {
                    return None;
                }
                seen.insert(r.body);
            }
            (seen.len() == names.len()).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_follows_registrations_deregistrations_and_lease_expiry_without_reload() {
    let registry = Registry::start();
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = gateway_for(&registry);
    let c = client();

    // Nothing registered: the backend has no server yet.
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("\"app\""), "{}", r.body);

    register(&c, &registry, "a", &a, 1, 30.0).await;
    wait_rotation(&c, &gw, &["a"]).await;

    // A second instance with weight 3 takes three quarters of the traffic.
    let lease_b = register(&c, &registry, "b", &b, 3, 2.0).await;
    wait_rotation(&c, &gw, &["a", "b"]).await;
    let counts = tally(&c, &gw.url("/"), 400).await;
    assert_eq!(counts.get("b").copied().unwrap_or(0), 300, "{counts:?}");

    // Deregistration: no new request reaches b.
    let d = send(
        &c,
        http::Request::delete(registry.url("/v1/services/web/instances/b"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(d.status, 200, "{}", d.body);
    wait_rotation(&c, &gw, &["a"]).await;
    let before = b.requests();
    let counts = tally(&c, &gw.url("/"), 50).await;
    assert_eq!(counts.get("a"), Some(&50));
    assert_eq!(b.requests(), before);

    // Re-register b on a 2 s lease and let it lapse: it leaves by itself.
    let lease_b2 = register(&c, &registry, "b", &b, 1, 2.0).await;
    assert_ne!(lease_b, lease_b2);
    wait_rotation(&c, &gw, &["a", "b"]).await;
    eventually("b's lease to expire", Duration::from_secs(6), || async {
        let s = get(&c, &registry.url("/v1/services/web")).await.ok()?;
        (!s.body.contains("\"b\"")).then_some(())
    })
    .await;
    wait_rotation(&c, &gw, &["a"]).await;

    // The gateway's own view agrees, and it never reloaded.
    let status = gw.status(&c).await;
    assert_eq!(status["config_revision"], 1);
    let servers = status["backends"]["app"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["addr"], a.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_members_survive_a_reload_and_keep_gateway_health_checks() {
    let registry = Registry::start();
    let a = Backend::start("a");
    let b = Backend::start("b");
    let gw = gateway_for(&registry);
    let c = client();
    register(&c, &registry, "a", &a, 1, 30.0).await;
    register(&c, &registry, "b", &b, 1, 30.0).await;
    wait_rotation(&c, &gw, &["a", "b"]).await;

    // Reload with active health checks added: members stay, and the gateway's own check
    // takes a sick (but still registered) instance out.
    gw.write_config(&format!(
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

[backends.app.health]
kind = "http"
path = "/healthz"
interval = "100ms"
timeout = "500ms"
unhealthy_threshold = 2
healthy_threshold = 2
"#,
        registry.addr
    ));
    // The listener binds "127.0.0.1:0" both times, so the reload keeps the listener set.
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    wait_rotation(&c, &gw, &["a", "b"]).await;
    b.set_healthy(false);
    wait_rotation(&c, &gw, &["a"]).await;
    b.set_healthy(true);
    wait_rotation(&c, &gw, &["a", "b"]).await;
}
