//! TLS between herd processes, with certificates from `herd cert`: three servers that speak
//! mutual TLS to each other and to their clients (the CLI, an agent, a gateway following a
//! service); a client without a certificate, one speaking plain HTTP, and servers whose
//! certificate another CA signed are refused; a rotated certificate is served by the next
//! connection with no restart, and a broken one is not taken.

use herd_testkit::eventually_blocking;
use herd_testkit::prelude::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn herd(args: &[&str]) -> Output {
    Command::new(herd_bin())
        .args(args)
        .env_remove("HERD_SERVER")
        .env_remove("HERD_TOKEN")
        .env_remove("HERD_TLS_CA")
        .env_remove("HERD_CERT")
        .env_remove("HERD_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run herd")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "herd failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CA in `dir` and a certificate for each name, valid for 127.0.0.1.
fn pki(dir: &Path, names: &[&str]) -> String {
    let d = dir.to_str().unwrap().to_string();
    ok(&herd(&["cert", "init", "--dir", &d]));
    for n in names {
        ok(&herd(&[
            "cert",
            "issue",
            "--dir",
            &d,
            "--name",
            n,
            "--ip",
            "127.0.0.1",
        ]));
    }
    d
}

/// `herd server` with TLS from `certs` (node `name`'s certificate, trusting `ca`).
fn server(
    dir: &TestDir,
    name: &str,
    ca: &str,
    certs: &str,
    join: Option<&str>,
) -> Result<Proc, String> {
    let log = dir.node(&format!("{name}.log"));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut cmd = Command::new(herd_bin());
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.node(name))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--tls-cert", &format!("{certs}/{name}.pem")])
        .args(["--tls-key", &format!("{certs}/{name}.key")])
        .args(["--tls-ca", &format!("{ca}/ca.pem")])
        .env_remove("HERD_TOKEN")
        .env("HERD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let mut child = cmd.spawn().unwrap();
    match herd_testkit::ready_line(&mut child, Duration::from_secs(40)) {
        Ok(line) => {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            Ok(Proc {
                child,
                addr: v["addr"].as_str().unwrap().to_string(),
                log,
            })
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    }
}

/// The client flags of certificate `name` from `pki`.
fn client_flags(pki: &str, name: &str) -> Vec<String> {
    vec![
        "--tls-ca".into(),
        format!("{pki}/ca.pem"),
        "--cert".into(),
        format!("{pki}/{name}.pem"),
        "--key".into(),
        format!("{pki}/{name}.key"),
    ]
}

fn cli(server: &str, flags: &[String], args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", server]);
    all.extend(flags.iter().map(String::as_str));
    herd(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_speak_mutual_tls_and_refuse_clients_and_nodes_without_a_cluster_certificate()
{
    let dir = TestDir::new("registry-mtls");
    let ours = pki(&dir.node("pki"), &["n1", "n2", "n3", "ops", "gw", "agent1"]);
    let theirs = pki(&dir.node("other-pki"), &["n4", "n5"]);
    let ops = client_flags(&ours, "ops");

    let n1 = server(&dir, "n1", &ours, &ours, None).expect("n1");
    let n2 = server(&dir, "n2", &ours, &ours, Some(&n1.addr)).expect("n2 joins n1");
    let n3 = server(&dir, "n3", &ours, &ours, Some(&n1.addr)).expect("n3 joins n1");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&cli(&n3.addr, &ops, &["cluster", "status"]))).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");

    // A write sent to a follower travels to the leader over the peers' TLS, and is read
    // back from another node.
    let follower = if status["leader"] == 1 { &n2 } else { &n1 };
    ok(&cli(
        &follower.addr,
        &ops,
        &["kv", "put", "greeting", "over-tls"],
    ));
    assert_eq!(
        ok(&cli(&n3.addr, &ops, &["kv", "get", "greeting"])).trim(),
        "over-tls"
    );

    // Without a client certificate, and in plain HTTP: refused, and each says why.
    let no_cert = cli(
        &n1.addr,
        &["--tls-ca".into(), format!("{ours}/ca.pem")],
        &["kv", "get", "greeting"],
    );
    assert!(!no_cert.status.success());
    let why = String::from_utf8_lossy(&no_cert.stderr);
    assert!(why.contains("client certificate"), "{why}");
    let plain = cli(&n1.addr, &[], &["kv", "get", "greeting"]);
    assert!(!plain.status.success());
    let why = String::from_utf8_lossy(&plain.stderr);
    assert!(why.contains("--tls-ca"), "{why}");
    // A client holding a certificate from another CA is refused by the server.
    let foreign = cli(
        &n1.addr,
        &[
            "--tls-ca".into(),
            format!("{ours}/ca.pem"),
            "--cert".into(),
            format!("{theirs}/n5.pem"),
            "--key".into(),
            format!("{theirs}/n5.key"),
        ],
        &["kv", "get", "greeting"],
    );
    assert!(!foreign.status.success());
    assert!(n1.log().contains("TLS handshake refused"), "{}", n1.log());

    // A node whose certificate another CA signed cannot join: neither one that trusts
    // only its own CA (it refuses ours) nor one that trusts ours (we refuse its
    // certificate). Each stops with the reason, well before the join's 30 s of retries.
    let started = Instant::now();
    let stranger = server(&dir, "n4", &theirs, &theirs, Some(&n1.addr))
        .err()
        .expect("a node from another CA must not start");
    assert!(stranger.contains("UnknownIssuer"), "{stranger}");
    let impostor = server(&dir, "n5", &ours, &theirs, Some(&n1.addr))
        .err()
        .expect("a node with a foreign certificate must not start");
    assert!(
        impostor.contains("joining via") && impostor.contains("not signed by the cluster's CA"),
        "{impostor}"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
    let status: serde_json::Value =
        serde_json::from_str(&ok(&cli(&n2.addr, &ops, &["cluster", "status"]))).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");

    // An agent joins over TLS with its own certificate.
    let agent_dir = dir.node("agent1-data");
    let agent_log = dir.node("agent1.log");
    let mut agent = Command::new(herd_bin())
        .arg("agent")
        .args(["--server", &n2.addr, "--name", "agent1", "--data-dir"])
        .arg(&agent_dir)
        .args(client_flags(&ours, "agent1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let ready = herd_testkit::ready_line(&mut agent, Duration::from_secs(20));
    let agent = Proc {
        child: agent,
        addr: String::new(),
        log: agent_log,
    };
    assert!(ready.is_ok(), "agent over TLS: {}", agent.log());
    let nodes = ok(&cli(&n1.addr, &ops, &["nodes"]));
    assert!(nodes.contains("agent1"), "{nodes}");
    // Its own listener speaks TLS with its certificate: a service's logs are read over it.
    let admin: serde_json::Value = serde_json::from_str(ready.as_deref().unwrap()).unwrap();
    assert!(
        admin["admin"]
            .as_str()
            .is_some_and(|a| a.starts_with("https://127.0.0.1:")),
        "{admin}"
    );
    let manifest = dir.node("web.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"web\"\nversion = \"1.0.0\"\n\n[run]\ncommand = \"{}\"\n\
             args = [\"demo-app\", \"--version\", \"1.0.0\"]\nports = [\"http\"]\n\n\
             [instances]\ncount = 1\n",
            herd_bin()
        ),
    )
    .unwrap();
    ok(&cli(
        &n1.addr,
        &ops,
        &["apply", "-f", manifest.to_str().unwrap()],
    ));
    let logs = eventually_blocking(
        "the instance's output through its agent's TLS listener",
        Duration::from_secs(20),
        || {
            let o = cli(&n1.addr, &ops, &["logs", "web", "--stderr"]);
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && text.contains("demo-app 1.0.0 listening")).then_some(text)
        },
    );
    assert!(logs.contains(" | demo-app 1.0.0 listening"), "{logs}");

    // A gateway follows a service through the registry's TLS.
    let backend = Backend::start("tls-discovered");
    let gw = Gateway::start(&format!(
        "[registry]\nservers = [\"{}\", \"{}\"]\ntls_ca = \"{ours}/ca.pem\"\n\
         cert = \"{ours}/gw.pem\"\nkey = \"{ours}/gw.key\"\n\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservice = \"web\"\n",
        n3.addr, n1.addr
    ));
    ok(&cli(
        &n1.addr,
        &ops,
        &[
            "svc",
            "register",
            "web",
            "b1",
            &backend.addr.to_string(),
            "--detach",
            "--ttl",
            "60",
        ],
    ));
    let c = client();
    eventually(
        "the gateway to route to the service it reads over TLS",
        Duration::from_secs(10),
        || async {
            let r = get(&c, &gw.url("/")).await.ok()?;
            (r.status == 200 && r.body == "tls-discovered").then_some(())
        },
    )
    .await;
    drop(agent);
}

/// The certificate a TLS server at `addr` presents to a client trusting `ca`.
async fn served_cert(addr: &str, ca: &Path, cert: &Path, key: &Path) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    Ok(conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default())
}

fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Replace `to` with `from` in one step, as an operator's `mv` would.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart_and_a_broken_one_is_not_taken() {
    let dir = TestDir::new("registry-tls-rotation");
    let p = pki(&dir.node("pki"), &["n1", "next", "ops"]);
    let pki_dir = PathBuf::from(&p);
    let s = server(&dir, "n1", &p, &p, None).expect("server");
    let (ca, ops_cert, ops_key) = (
        pki_dir.join("ca.pem"),
        pki_dir.join("ops.pem"),
        pki_dir.join("ops.key"),
    );
    let first = der_of(&pki_dir.join("n1.pem"));
    assert_eq!(
        served_cert(&s.addr, &ca, &ops_cert, &ops_key)
            .await
            .unwrap(),
        first
    );

    // Key first, then certificate: for a moment the pair does not match; the server keeps
    // the old pair until both files agree.
    install(&pki_dir.join("next.key"), &pki_dir.join("n1.key"));
    install(&pki_dir.join("next.pem"), &pki_dir.join("n1.pem"));
    let second = der_of(&pki_dir.join("next.pem"));
    eventually(
        "the new certificate to be served",
        Duration::from_secs(10),
        || async {
            let got = served_cert(&s.addr, &ca, &ops_cert, &ops_key).await.ok()?;
            (got == second).then_some(())
        },
    )
    .await;
    let ops = client_flags(&p, "ops");
    ok(&cli(&s.addr, &ops, &["kv", "put", "after", "rotation"]));

    // A certificate file that is not one: logged, and the last good one stays in use,
    // also after SIGHUP asks for a reload.
    std::fs::write(pki_dir.join("n1.pem"), "not a certificate\n").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually_blocking(
        "the broken file to be reported",
        Duration::from_secs(10),
        || s.log().contains("TLS files not reloaded").then_some(()),
    );
    assert_eq!(
        served_cert(&s.addr, &ca, &ops_cert, &ops_key)
            .await
            .unwrap(),
        second
    );
    assert_eq!(
        ok(&cli(&s.addr, &ops, &["kv", "get", "after"])).trim(),
        "rotation"
    );
    assert!(s.log().contains("TLS files reloaded"), "{}", s.log());
}

#[test]
fn a_reachable_address_needs_client_certificates_required_or_a_token() {
    let dir = TestDir::new("registry-tls-reachable");
    let p = pki(&dir.node("pki"), &["n1"]);
    // 0.0.0.0: reachable from other machines; nothing is sent off this one.
    let start = |auth: &str, data: &str| {
        let log = dir.node(&format!("{data}.log"));
        let mut child = Command::new(herd_bin())
            .args(["server", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.node(data))
            .args(["--tls-cert", &format!("{p}/n1.pem")])
            .args(["--tls-key", &format!("{p}/n1.key")])
            .args(["--tls-ca", &format!("{p}/ca.pem")])
            .args(["--tls-client-auth", auth])
            .env_remove("HERD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let ready = herd_testkit::ready_line(&mut child, Duration::from_secs(20)).is_ok();
        let _ = child.kill();
        let _ = child.wait();
        (ready, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let (ready, log) = start("required", "required");
    assert!(ready, "only certificate holders get in: {log}");
    let (ready, log) = start("optional", "optional");
    assert!(!ready, "anyone may connect and no token is set: {log}");
    assert!(log.contains("--insecure"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_start_their_handshake_do_not_hold_up_a_real_client() {
    let dir = TestDir::new("registry-tls-silent");
    let p = pki(&dir.node("pki"), &["n1", "ops"]);
    let s = server(&dir, "n1", &p, &p, None).expect("server");
    // 300 connections that say nothing (a slowloris on the handshake), kept open.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(&s.addr).await.unwrap());
    }
    let ops = client_flags(&p, "ops");
    let started = Instant::now();
    ok(&cli(&s.addr, &ops, &["kv", "put", "k", "v"]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a real client waited {:?} behind silent connections",
        started.elapsed()
    );
    drop(silent);
}
