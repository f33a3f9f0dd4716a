//! Artifacts fetched over HTTP: the file lands in the version's directory and runs when its
//! SHA-256 matches the manifest's; a mismatch installs nothing and the instance is Failed
//! with both hashes named.

use crate::{apply, status};
use herd_testkit::prelude::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request with `body` (and counts them).
async fn file_server(body: Vec<u8>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    addr
}

/// The service's status once its first instance is in `state` (within 20 s).
async fn first_in_state(
    api: &Api,
    server: &ServerProc,
    service: &str,
    state: &str,
    what: &str,
) -> Value {
    eventually(what, Duration::from_secs(20), || async {
        let s = status(api, server, service).await?;
        (s["instances"][0]["state"] == state).then_some(s)
    })
    .await
}

fn sha256(bytes: &[u8], dir: &std::path::Path) -> String {
    let f = dir.join("artifact-for-sha");
    std::fs::write(&f, bytes).unwrap();
    let o = std::process::Command::new("sha256sum")
        .arg(&f)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn manifest(name: &str, url: &str, sha: &str) -> String {
    format!(
        r#"name = "{name}"
version = "3.1.4"
artifact = "{url}"
sha256 = "{sha}"

[run]
command = "run-demo"
ports = ["http"]

[health]
kind = "http"
path = "/healthz"
interval = "200ms"
timeout = "200ms"
healthy_threshold = 1

[restart]
attempts = 1
interval = "60s"
delay = "100ms"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_artifact_runs_when_its_sha256_matches_and_installs_nothing_when_not() {
    let dir = TestDir::new("cluster-artifact");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let agent_dir = dir.node("agent-a");
    let _a = AgentProc::start(server.addr, agent_dir.clone(), "node-a", "", "23800-23849");
    let script = format!("#!/bin/sh\nexec {} demo-app --version 3.1.4\n", herd_bin()).into_bytes();
    let sum = sha256(&script, &dir.path);
    let addr = file_server(script).await;
    let url = format!("http://{addr}/releases/run-demo");

    apply(&server, &dir.path, &manifest("fetched", &url, &sum));
    let s: Value = first_in_state(
        &api,
        &server,
        "fetched",
        "Run",
        "the fetched artifact running",
    )
    .await;
    let port = s["instances"][0]["port"].as_u64().unwrap();
    let r = get(&client(), &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert!(r.body.starts_with("demo-app 3.1.4"), "{}", r.body);
    assert!(agent_dir.join("services/fetched/3.1.4/run-demo").exists());

    let wrong = "0".repeat(64);
    apply(&server, &dir.path, &manifest("tampered", &url, &wrong));
    let s = first_in_state(
        &api,
        &server,
        "tampered",
        "Failed",
        "the tampered artifact refused",
    )
    .await;
    let msg = s["instances"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&sum) && msg.contains(&wrong),
        "both hashes named: {msg}"
    );
    assert!(
        !agent_dir.join("services/tampered/3.1.4").exists(),
        "nothing installed for a mismatch"
    );
}

/// A tar.gz made with the system's tar from `files` (relative path, content, executable).
fn tarball(dir: &std::path::Path, name: &str, files: &[(&str, &[u8], bool)]) -> std::path::PathBuf {
    let src = dir.join(format!("{name}.src"));
    for (path, body, exec) in files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        if *exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let out = dir.join(format!("{name}.tar.gz"));
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_gz_artifact_is_unpacked_and_one_with_a_path_out_of_its_directory_is_refused() {
    let dir = TestDir::new("cluster-archive");
    std::fs::create_dir_all(&dir.path).unwrap();
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let agent_dir = dir.node("agent-a");
    let _a = AgentProc::start(server.addr, agent_dir.clone(), "node-a", "", "23850-23899");
    let script = format!("#!/bin/sh\nexec {} demo-app --version 3.1.4\n", herd_bin());
    let good = tarball(
        &dir.path,
        "release",
        &[
            ("bin/run-demo", script.as_bytes(), true),
            ("etc/app.conf", b"x = 1\n", false),
        ],
    );
    let text = manifest("unpacked", &good.display().to_string(), "")
        .replace("sha256 = \"\"\n", "")
        .replace("command = \"run-demo\"", "command = \"bin/run-demo\"");
    apply(&server, &dir.path, &text);
    first_in_state(
        &api,
        &server,
        "unpacked",
        "Run",
        "the unpacked artifact running",
    )
    .await;
    let v = agent_dir.join("services/unpacked/3.1.4");
    assert!(v.join("bin/run-demo").exists() && v.join("etc/app.conf").exists());
    assert!(
        !v.join("release.tar.gz").exists(),
        "the archive itself is not kept"
    );

    // A member named ../escape would land outside the version's directory: refused whole.
    let evil = dir.path.join("evil.tar.gz");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import tarfile,io\nt=tarfile.open({:?},'w:gz')\nfor n in ['bin/run-demo','../escape']:\n    ti=tarfile.TarInfo(n); ti.size=2; ti.mode=0o755; t.addfile(ti,io.BytesIO(b'hi'))\nt.close()",
            evil.display().to_string()
        ))
        .status()
        .unwrap();
    assert!(made.success());
    let text = manifest("escaping", &evil.display().to_string(), "")
        .replace("sha256 = \"\"\n", "")
        .replace("command = \"run-demo\"", "command = \"bin/run-demo\"");
    apply(&server, &dir.path, &text);
    let s = first_in_state(
        &api,
        &server,
        "escaping",
        "Failed",
        "the escaping archive refused",
    )
    .await;
    let msg = s["instances"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("unpacking evil.tar.gz failed") && msg.contains(".."),
        "{msg}"
    );
    assert!(!agent_dir.join("services/escaping/3.1.4").exists());
    assert!(!agent_dir.join("services/escaping/escape").exists());
}

/// `herd cert init` and a certificate for 127.0.0.1 named `name`, in `dir`.
fn pki(dir: &std::path::Path, name: &str) {
    for args in [
        vec!["cert", "init", "--dir", dir.to_str().unwrap()],
        vec![
            "cert",
            "issue",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--ip",
            "127.0.0.1",
        ],
    ] {
        let o = std::process::Command::new(herd_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// An https gateway with `pki/<name>` certificate in front of a plain file server.
fn https_front(pki: &std::path::Path, name: &str, files: std::net::SocketAddr) -> Gateway {
    Gateway::start(&format!(
        "[[listeners]]\nname = \"files\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         certificates = [{{ cert = \"{0}/{name}.pem\", key = \"{0}/{name}.key\" }}]\n\n\
         [[routes]]\nbackend = \"files\"\n\n\
         [backends.files]\nservers = [{{ addr = \"{files}\" }}]\n",
        pki.display()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_artifact_is_fetched_from_a_server_the_agent_trusts_and_refused_otherwise() {
    let dir = TestDir::new("cluster-artifact-https");
    let api = Api::default();
    let server = single_node(&dir, &api).await;
    let (ours, theirs) = (dir.node("pki"), dir.node("other-pki"));
    pki(&ours, "files");
    pki(&theirs, "files");
    let ca = ours.join("ca.pem");
    let agent_dir = dir.node("agent-a");
    // The agent trusts only our CA for artifacts (SSL_CERT_FILE replaces the system's).
    let _a = AgentProc::start_env(
        server.addr,
        agent_dir.clone(),
        "node-a",
        "23900-23949",
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let script = format!("#!/bin/sh\nexec {} demo-app --version 3.1.4\n", herd_bin()).into_bytes();
    let sum = sha256(&script, &dir.path);
    let files = file_server(script).await;
    let trusted = https_front(&ours, "files", files);
    let untrusted = https_front(&theirs, "files", files);
    let url_of = |gw: &Gateway| {
        gw.listener_url("files", "/releases/run-demo")
            .replacen("http://", "https://", 1)
    };

    apply(
        &server,
        &dir.path,
        &manifest("secure", &url_of(&trusted), &sum),
    );
    let s: Value = first_in_state(
        &api,
        &server,
        "secure",
        "Run",
        "the artifact fetched over https running",
    )
    .await;
    let port = s["instances"][0]["port"].as_u64().unwrap();
    let r = get(&client(), &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert!(r.body.starts_with("demo-app 3.1.4"), "{}", r.body);

    apply(
        &server,
        &dir.path,
        &manifest("stranger", &url_of(&untrusted), &sum),
    );
    let s = first_in_state(
        &api,
        &server,
        "stranger",
        "Failed",
        "the artifact from a server another CA vouches for refused",
    )
    .await;
    let msg = s["instances"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("TLS") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    assert!(
        !agent_dir.join("services/stranger/3.1.4").exists(),
        "nothing installed from an untrusted server"
    );
}
