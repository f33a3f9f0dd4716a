//! The gateway's admin listener against callers it must refuse: no or a wrong token, a
//! cross-site browser request (CSRF), a DNS-rebinding page (a foreign Host), and what
//! it says when it is exposed without a token. Raw HTTP/1.1 over TCP, so every header is
//! exactly what an attacker's browser would send.

use herd_testkit::prelude::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request with exactly these header lines; (status, body).
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn config(backend: &Backend, admin: &str) -> String {
    format!(
        "{admin}\n[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
        backend.addr
    )
}

async fn admin_state(gw: &Gateway, backend: &Backend) -> String {
    let (status, body) = call(
        gw.admin,
        "GET",
        "/status",
        &["Authorization: Bearer s3cret-token"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["backends"]["app"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr"] == backend.addr.to_string())
        .and_then(|s| s["admin"].as_str())
        .unwrap_or("?")
        .to_string()
}

#[tokio::test]
async fn state_changes_need_the_token_and_reads_only_when_asked() {
    let app = Backend::start("app");
    let dir = temp_dir();
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut gw = Gateway::start(&config(
        &app,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    ));
    let drain = format!("/backends/app/servers/{}/drain", app.addr);
    for (auth, want) in [
        (None, 401),
        (Some("Authorization: Bearer wrong"), 401),
        (Some("Authorization: Basic czNjcmV0LXRva2Vu"), 401),
    ] {
        let headers: Vec<&str> = auth.into_iter().collect();
        let (status, body) = call(gw.admin, "POST", &drain, &headers).await;
        assert_eq!(status, want, "{auth:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    assert_eq!(
        admin_state(&gw, &app).await,
        "ready",
        "refused calls changed nothing"
    );
    let (status, _) = call(
        gw.admin,
        "POST",
        &drain,
        &["Authorization: Bearer s3cret-token"],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(admin_state(&gw, &app).await, "drain");
    // Reads stay open by default; health checks of the gateway itself always.
    assert_eq!(call(gw.admin, "GET", "/status", &[]).await.0, 200);
    assert_eq!(call(gw.admin, "GET", "/healthz", &[]).await.0, 200);

    // Rotation: a new token in the file takes effect at the next reload.
    std::fs::write(&token_file, "rotated-token\n").unwrap();
    gw.write_config(&config(
        &app,
        &format!(
            "[admin]\nlisten = \"{}\"\ntoken_file = \"{}\"\ntoken_for_reads = true\n",
            gw.admin,
            token_file.display()
        ),
    ));
    let (status, body) = call(
        gw.admin,
        "POST",
        "/reload",
        &["Authorization: Bearer s3cret-token"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let enable = format!("/backends/app/servers/{}/enable", app.addr);
    assert_eq!(
        call(
            gw.admin,
            "POST",
            &enable,
            &["Authorization: Bearer s3cret-token"]
        )
        .await
        .0,
        401,
        "the old token is gone"
    );
    assert_eq!(
        call(gw.admin, "GET", "/status", &[]).await.0,
        401,
        "token_for_reads"
    );
    assert_eq!(call(gw.admin, "GET", "/metrics", &[]).await.0, 401);
    assert_eq!(call(gw.admin, "GET", "/healthz", &[]).await.0, 200);
    assert_eq!(
        call(
            gw.admin,
            "GET",
            "/status",
            &["Authorization: Bearer rotated-token"]
        )
        .await
        .0,
        200
    );

    // A token file that went missing fails the reload; the running token stays.
    std::fs::remove_file(&token_file).unwrap();
    let (status, body) = call(
        gw.admin,
        "POST",
        "/reload",
        &["Authorization: Bearer rotated-token"],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("token_file"), "{body}");
    assert_eq!(
        call(
            gw.admin,
            "GET",
            "/status",
            &["Authorization: Bearer rotated-token"]
        )
        .await
        .0,
        200
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn browsers_cannot_be_used_against_it() {
    let app = Backend::start("app");
    // No token: the default. A web page must still not be able to act through a browser.
    let gw = Gateway::start(&config(&app, "[admin]\nlisten = \"127.0.0.1:0\"\n"));
    let maint = format!("/backends/app/servers/{}/maint", app.addr);
    for (headers, want) in [
        // A form or fetch() from another site: Origin says so.
        (
            vec!["Origin: http://evil.example", "Content-Type: text/plain"],
            403,
        ),
        (vec!["Origin: http://evil.example"], 403),
        (vec!["Origin: null"], 403),
        (vec!["Sec-Fetch-Site: cross-site"], 403),
        // The content types a page may send without a preflight.
        (vec!["Content-Type: text/plain;charset=UTF-8"], 415),
        (vec!["Content-Type: application/x-www-form-urlencoded"], 415),
        (vec!["Content-Type: multipart/form-data; boundary=x"], 415),
    ] {
        let (status, body) = call(gw.admin, "POST", &maint, &headers).await;
        assert_eq!(status, want, "{headers:?}: {body}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&call(gw.admin, "GET", "/status", &[]).await.1).unwrap();
    assert_eq!(status["backends"]["app"]["servers"][0]["admin"], "ready");

    // DNS rebinding: the page's own name in Host, for reads as for writes.
    let host = format!("Host: evil.example:{}", gw.admin.port());
    assert_eq!(call(gw.admin, "GET", "/status", &[&host]).await.0, 421);
    assert_eq!(call(gw.admin, "POST", &maint, &[&host]).await.0, 421);
    // The listener by address or localhost, and curl's plain POST, work.
    let local = format!("Host: localhost:{}", gw.admin.port());
    assert_eq!(call(gw.admin, "GET", "/status", &[&local]).await.0, 200);
    let same = format!("Origin: http://{}", gw.admin);
    assert_eq!(call(gw.admin, "POST", &maint, &[&same]).await.0, 200);
    assert_eq!(
        call(
            gw.admin,
            "POST",
            &format!("/backends/app/servers/{}/enable", app.addr),
            &["Content-Type: application/json"]
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn an_exposed_admin_listener_without_a_token_is_warned_about() {
    let app = Backend::start("app");
    let gw = Gateway::start(&config(&app, "[admin]\nlisten = \"0.0.0.0:0\"\n"));
    let log = gw.stderr();
    assert!(
        log.contains("reachable from other machines and has no token"),
        "{log}"
    );
    let quiet = Gateway::start(&config(&app, "[admin]\nlisten = \"127.0.0.1:0\"\n"));
    assert!(!quiet.stderr().contains("has no token"));
}

#[test]
fn a_missing_token_file_stops_the_start() {
    let dir = temp_dir();
    let cfg = dir.join("herd.toml");
    std::fs::write(
        &cfg,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"nope.token\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ { addr = \"127.0.0.1:9\" } ]\n",
    )
    .unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["gateway", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.token_file") && err.contains("nope.token"),
        "{err}"
    );
}
