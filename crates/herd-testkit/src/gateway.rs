//! `herd gateway` from the outside: the real process with a config written to a scratch
//! directory, its admin API, and config snippets tests share.

use crate::backend::Backend;
use crate::dirs::temp_dir;
use crate::herd_bin;
use crate::http::{get, Client};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Gateway {
    pub child: Child,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub admin: SocketAddr,
    pub listeners: HashMap<String, SocketAddr>,
    pub ready: Value,
    pub stderr_path: PathBuf,
}

impl Gateway {
    /// Start with this config text (use 127.0.0.1:0 binds; an [admin] section is added
    /// if missing). Panics with the process's stderr if it does not become ready.
    pub fn start(config: &str) -> Gateway {
        // Removed by Gateway's drop, after the process is stopped.
        let dir = temp_dir().keep();
        let config_path = dir.join("herd.toml");
        let config = if config.contains("[admin]") {
            config.to_string()
        } else {
            format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{config}")
        };
        std::fs::write(&config_path, config).unwrap();
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(herd_bin())
            .args(["gateway", "-c"])
            .arg(&config_path)
            .env("HERD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start herd");
        let line = match crate::ready_line(&mut child, Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herd did not become ready; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        let admin = ready["admin"].as_str().unwrap().parse().unwrap();
        let listeners = ready["listeners"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().parse().unwrap()))
            .collect();
        Gateway {
            child,
            dir,
            config_path,
            admin,
            listeners,
            ready,
            stderr_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.listener_url("web", path)
    }

    pub fn listener_url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.listeners[listener], path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub async fn status(&self, client: &Client) -> Value {
        let r = get(client, &self.admin_url("/status"))
            .await
            .expect("status");
        serde_json::from_str(&r.body).expect("status is JSON")
    }

    pub async fn server_status(&self, client: &Client, backend: &str, addr: SocketAddr) -> Value {
        let s = self.status(client).await;
        s["backends"][backend]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["addr"] == addr.to_string())
            .cloned()
            .expect("server in status")
    }

    pub fn write_config(&self, config: &str) {
        let config = if config.contains("[admin]") {
            config.to_string()
        } else {
            format!("[admin]\nlisten = \"{}\"\n\n{config}", self.admin)
        };
        std::fs::write(&self.config_path, config).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `servers = [...]` entries for backends, each with a weight.
pub fn servers(list: &[(&Backend, u32)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(b, w)| format!("{{ addr = \"{}\", weight = {w} }}", b.addr))
        .collect();
    format!("servers = [{}]", items.join(", "))
}

/// One http listener "web" with a catch-all route to backend "app".
pub fn simple_config(backend_body: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nlistener = \"web\"\nbackend = \"app\"\n\n[backends.app]\n{backend_body}\n"
    )
}

/// Count which backend answered each of `n` GETs to `url`.
pub async fn tally(client: &Client, url: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get(client, url).await.expect("request");
        assert_eq!(r.status, 200, "unexpected status {}: {}", r.status, r.body);
        *counts.entry(r.body).or_insert(0) += 1;
    }
    counts
}
