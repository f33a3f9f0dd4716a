//! A real browser for the page's tests: Debian's chromium, headless, driven over the
//! DevTools protocol (a WebSocket, JSON commands) — navigate, evaluate JavaScript, take a
//! screenshot. `HERD_CHROMIUM` names the binary (default `chromium`).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

pub struct Browser {
    child: Child,
    ws: Socket,
    next_id: u64,
    _profile: crate::dirs::TempDir,
}

/// The chromium binary, or None (with the reason printed) when there is none here.
pub fn chromium() -> Option<String> {
    let bin = std::env::var("HERD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some(bin)
}

/// The chromium to test with; without one the test says so and passes — except in CI
/// (`CI` set), where `.ci/run` installs it and its absence fails the test.
pub fn chromium_or_skip() -> Option<String> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "no chromium: .ci/run installs Debian's chromium for the page's tests"
        );
        eprintln!("skipped: no chromium (set HERD_CHROMIUM or install Debian's chromium)");
    }
    found
}

/// Polls a JavaScript condition (30 s); on timeout, fails with what the page shows.
pub async fn until(b: &mut Browser, what: &str, js: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if b.eval(js).await == Value::Bool(true) {
            return;
        }
        if std::time::Instant::now() > deadline {
            let text = b.eval("document.body.innerText").await;
            panic!(
                "the page never showed {what}; it shows:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Browser {
    pub async fn launch(bin: &str) -> Browser {
        let profile = crate::dirs::temp_dir();
        let mut child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1400,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("chromium's stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address within 30 s");
        // ws://127.0.0.1:PORT/devtools/browser/ID → the page target from /json/list.
        let host = browser_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let client = crate::http::client();
        let list = crate::eventually("chromium's page target", Duration::from_secs(10), || {
            let client = client.clone();
            let url = format!("http://{host}/json/list");
            async move {
                let r = crate::http::get(&client, &url).await.ok()?;
                let v: Value = serde_json::from_str(&r.text()).ok()?;
                v.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            }
        })
        .await;
        let tcp = tokio::net::TcpStream::connect(host.as_str())
            .await
            .expect("connect to chromium's DevTools port");
        let (ws, _) = tokio_tungstenite::client_async(list.as_str(), tcp)
            .await
            .expect("the page's DevTools socket");
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        };
        b.call("Page.enable", json!({})).await;
        b
    }

    /// Sends a command and waits (20 s) for its answer; events in between are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(msg))
            .await
            .expect("send to chromium");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within 20 s"))
                .expect("chromium closed the DevTools socket")
                .expect("DevTools socket error");
            let Message::Text(text) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates a JavaScript expression in the page; its value (JSON), Null on an exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        if r.get("exceptionDetails").is_some() {
            return Value::Null;
        }
        r["result"]["value"].clone()
    }

    /// Writes a PNG of the page as it is now.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = crate::api::unb64(r["data"].as_str().expect("screenshot data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
