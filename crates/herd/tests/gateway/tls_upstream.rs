//! TLS towards servers (`[backends.x.tls]`: CA, SNI, verify = false, h2 by ALPN, health
//! checks, reload re-reading the CA) and TLS passthrough on tcp listeners (routing by
//! SNI without terminating) — through the real binary, against real rustls servers.

use bytes::Bytes;
use herd_testkit::prelude::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// ---------------------------------------------------------------- certificates

/// A test CA and the leaf certificates it signs.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

struct Leaf {
    der: CertificateDer<'static>,
    key: Arc<CertifiedKey>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// A leaf for these names; "127.0.0.1" becomes an IP SAN.
    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        let der = cert.der().clone();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&private).unwrap();
        Leaf {
            key: Arc::new(CertifiedKey::new(vec![der.clone()], signer)),
            der,
        }
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

// ---------------------------------------------------------------- a TLS HTTP server

/// What a TLS server saw.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted, before any TLS.
    accepted: AtomicU64,
    requests: AtomicU64,
    health_checks: AtomicU64,
}

/// Serves one certificate whatever the SNI, and records the SNI.
#[derive(Debug)]
struct Recording {
    key: Arc<CertifiedKey>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl ResolvesServerCert for Recording {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_string));
        Some(self.key.clone())
    }
}

/// A real HTTPS server (rustls + hyper; h2 or http/1.1 by ALPN) on its own runtime.
/// `/healthz` answers "ok"; anything else "<name> <HTTP version>".
struct TlsServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    /// The SNI of every ClientHello (None: the client sent none).
    snis: Arc<Mutex<Vec<Option<String>>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsServer {
    fn start(name: &str, leaf: &Leaf) -> TlsServer {
        let snis = Arc::new(Mutex::new(Vec::new()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Recording {
                key: leaf.key.clone(),
                seen: snis.clone(),
            }));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let (st, name) = (seen.clone(), name.to_string());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, st, name) = (acceptor.clone(), st.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (st, name) = (st.clone(), name.clone());
                        async move {
                            let body = if req.uri().path() == "/healthz" {
                                st.health_checks.fetch_add(1, Ordering::SeqCst);
                                "ok".to_string()
                            } else {
                                st.requests.fetch_add(1, Ordering::SeqCst);
                                format!("{name} {:?}", req.version())
                            };
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        TlsServer {
            addr,
            seen,
            snis,
            runtime: Some(runtime),
        }
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.snis.lock().unwrap().clone()
    }

    fn accepted(&self) -> u64 {
        self.seen.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A directory for CA files, outside the gateway's own.
fn cert_dir() -> TempDir {
    temp_dir()
}

async fn server_field(gw: &Gateway, c: &Client, backend: &str, field: &str) -> serde_json::Value {
    let st = gw.status(c).await;
    st["backends"][backend]["servers"][0][field].clone()
}

// ---------------------------------------------------------------- TLS to servers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_the_ca_and_the_name() {
    let pki = Pki::new("herd test CA");
    let other_pki = Pki::new("some other CA");
    let app = TlsServer::start("app", &pki.leaf(&["app.internal", "127.0.0.1"]));
    let stranger = TlsServer::start("stranger", &other_pki.leaf(&["stranger.internal"]));
    let dir = cert_dir();
    pki.write_ca(&dir.join("ca.pem"));
    other_pki.write_ca(&dir.join("other-ca.pem"));
    let ca = dir.join("ca.pem").display().to_string();
    let other_ca = dir.join("other-ca.pem").display().to_string();

    let mut config = String::from(
        "[gateway]\nworkers = 2\n\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n",
    );
    // (path prefix and backend name, server, [backends.x] keys, [backends.x.tls] keys)
    let backends = [
        ("good", app.addr, "", format!("ca = \"{ca}\"")),
        (
            "named",
            app.addr,
            "",
            format!("ca = \"{ca}\"\nsni = \"app.internal\""),
        ),
        (
            "h2",
            app.addr,
            "protocol = \"h2\"",
            format!("ca = \"{ca}\"\nsni = \"app.internal\""),
        ),
        ("wrongca", app.addr, "", format!("ca = \"{other_ca}\"")),
        (
            "wrongsni",
            app.addr,
            "",
            format!("ca = \"{ca}\"\nsni = \"other.example.com\""),
        ),
        ("insecure", stranger.addr, "", "verify = false".to_string()),
        ("checkedbad", app.addr, "", format!("ca = \"{other_ca}\"")),
    ];
    for (name, addr, keys, tls) in &backends {
        config.push_str(&format!(
            "[[routes]]\npath_prefix = \"/{name}/\"\nbackend = \"{name}\"\n\n\
             [backends.{name}]\nservers = [ {{ addr = \"{addr}\" }} ]\n{keys}\n\
             [backends.{name}.tls]\n{tls}\n\n"
        ));
        if *name == "good" || *name == "checkedbad" {
            config.push_str(&format!(
                "[backends.{name}.health]\nkind = \"http\"\npath = \"/healthz\"\n\
                 interval = \"100ms\"\ntimeout = \"1s\"\n\n"
            ));
        }
    }
    let gw = Gateway::start(&config);
    let c = client();

    // The right CA, the server's IP as the name (no SNI; the certificate's IP SAN).
    let r = get(&c, &gw.url("/good/x")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "app HTTP/1.1"));
    assert!(app.snis().contains(&None), "{:?}", app.snis());
    // A configured SNI is sent and verified.
    let r = get(&c, &gw.url("/named/x")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "app HTTP/1.1"));
    assert!(
        app.snis().contains(&Some("app.internal".into())),
        "{:?}",
        app.snis()
    );
    // An h2 backend negotiates HTTP/2 by ALPN over TLS.
    let r = get(&c, &gw.url("/h2/x")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "app HTTP/2.0"));
    // verify = false accepts a certificate from an unknown CA, for another name.
    let r = get(&c, &gw.url("/insecure/x")).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "stranger HTTP/1.1"));

    // A CA that did not sign the certificate, or a name it is not for: a clean 502,
    // counted against the server, and no request reached it.
    let before = app.seen.requests.load(Ordering::SeqCst);
    for backend in ["wrongca", "wrongsni"] {
        let r = get(&c, &gw.url(&format!("/{backend}/x"))).await.unwrap();
        assert_eq!(r.status, 502, "{backend}: {}", r.body);
        let failures = server_field(&gw, &c, backend, "failures").await;
        assert!(failures.as_u64().unwrap() >= 1, "{backend}: {failures}");
    }
    assert!(
        app.snis().contains(&Some("other.example.com".into())),
        "{:?}",
        app.snis()
    );
    assert_eq!(app.seen.requests.load(Ordering::SeqCst), before);

    // Health checks go over TLS too: they pass with the right CA, fail with a wrong one
    // (which takes the server out: 503).
    eventually("checks over TLS pass", Duration::from_secs(10), || async {
        let checks = server_field(&gw, &c, "good", "health_checks").await;
        (checks["passed"].as_u64()? >= 3).then_some(())
    })
    .await;
    let checks = server_field(&gw, &c, "good", "health_checks").await;
    assert_eq!(checks["failed"], 0, "{checks}");
    assert!(app.seen.health_checks.load(Ordering::SeqCst) >= 3);
    eventually(
        "a wrong CA fails the check",
        Duration::from_secs(10),
        || async {
            let state = server_field(&gw, &c, "checkedbad", "state").await;
            (state == "down").then_some(())
        },
    )
    .await;
    let r = get(&c, &gw.url("/checkedbad/x")).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

fn reload_config(app: SocketAddr, ca: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\n\
         [[routes]]\nbackend = \"app\"\n\n\
         [backends.app]\nservers = [ {{ addr = \"{app}\" }} ]\nmax_idle_per_server = 0\n\n\
         [backends.app.tls]\nca = \"{ca}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_ca_and_refuses_a_bad_one() {
    let pki = Pki::new("herd test CA");
    let other_pki = Pki::new("some other CA");
    let app = TlsServer::start("app", &pki.leaf(&["127.0.0.1"]));
    let dir = cert_dir();
    let ca = dir.join("ca.pem");
    pki.write_ca(&ca);
    let ca_text = ca.display().to_string();
    let gw = Gateway::start(&reload_config(app.addr, &ca_text));
    let c = client();
    let ok = |r: &Reply| (r.status, r.body.clone()) == (200, "app HTTP/1.1".to_string());
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert!(ok(&r), "{} {}", r.status, r.body);

    // A CA file that is missing: the reload is refused, naming field and file, and the
    // running configuration keeps serving.
    let missing = dir.join("missing.pem").display().to_string();
    gw.write_config(&reload_config(app.addr, &missing));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("backends.app.tls.ca") && r.body.contains("missing.pem"),
        "{}",
        r.body
    );
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert!(ok(&r), "{} {}", r.status, r.body);

    // The same path, a different CA inside: a reload reads it again, and new connections
    // (no pooling here) no longer trust the server.
    gw.write_config(&reload_config(app.addr, &ca_text));
    other_pki.write_ca(&ca);
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.body);
    pki.write_ca(&ca);
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&c, &gw.url("/")).await.unwrap();
    assert!(ok(&r), "{} {}", r.status, r.body);

    // `herd check` reads the CA as a start would.
    let file = dir.join("check.toml");
    std::fs::write(&file, reload_config(app.addr, &missing)).unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backends.app.tls.ca: cannot read") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        reload_config(app.addr, &ca_text).replace(&format!("ca = \"{ca_text}\""), ""),
    )
    .unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backends.app.tls.ca: required"), "{stderr}");
    std::fs::write(&file, reload_config(app.addr, &ca_text)).unwrap();
    let out = std::process::Command::new(herd_bin())
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- TLS passthrough

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connect through the gateway with this server name; the stream and the certificate
/// the far end presented.
async fn tls_connect(
    addr: SocketAddr,
    name: ServerName<'static>,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<(Tls, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake as {name:?}: {e}"))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no peer certificate")?;
    Ok((tls, cert))
}

/// One HTTP/1.1 GET on an established stream: the body.
async fn h1_body(io: Tls) -> String {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_routes_by_sni_without_terminating() {
    let pki = Pki::new("herd test CA");
    let a_leaf = pki.leaf(&["a.example.com"]);
    let b_leaf = pki.leaf(&["*.b.example.com"]);
    let d_leaf = pki.leaf(&["default.example.com", "unknown.example.com", "127.0.0.1"]);
    let a = TlsServer::start("a", &a_leaf);
    let b = TlsServer::start("b", &b_leaf);
    let d = TlsServer::start("d", &d_leaf);
    let gw = Gateway::start(&format!(
        r#"
[gateway]
workers = 2

[[listeners]]
name = "tls"
protocol = "tcp"
bind = "127.0.0.1:0"
backend = "d"
sni_routes = [
  {{ server_names = ["a.example.com"], backend = "a" }},
  {{ server_names = ["*.b.example.com"], backend = "b" }},
]

[backends.a]
servers = [ {{ addr = "{}" }} ]

[backends.b]
servers = [ {{ addr = "{}" }} ]

[backends.d]
servers = [ {{ addr = "{}" }} ]
"#,
        a.addr, b.addr, d.addr
    ));
    let listener = gw.listeners["tls"];
    let cfg = pki.client_config();

    // Each name reaches its server, which presents its own certificate: the gateway
    // never terminated TLS (it has no certificate at all).
    for (name, leaf, body) in [
        ("a.example.com", &a_leaf, "a HTTP/1.1"),
        ("x.b.example.com", &b_leaf, "b HTTP/1.1"),
        ("unknown.example.com", &d_leaf, "d HTTP/1.1"),
    ] {
        let (tls, cert) = tls_connect(listener, dns(name), cfg.clone()).await.unwrap();
        assert!(cert == leaf.der, "SNI {name} got the wrong certificate");
        assert_eq!(h1_body(tls).await, body, "SNI {name}");
    }
    assert_eq!(a.snis(), vec![Some("a.example.com".to_string())]);
    assert_eq!(b.snis(), vec![Some("x.b.example.com".to_string())]);
    // No SNI at all (a client connecting by IP): the default backend.
    let ip = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let (tls, cert) = tls_connect(listener, ip, cfg.clone()).await.unwrap();
    assert!(cert == d_leaf.der, "no SNI got the wrong certificate");
    assert_eq!(h1_body(tls).await, "d HTTP/1.1");

    // Not TLS, and a malformed hello: relayed to the default backend as they came.
    let d_before = d.accepted();
    for bytes in [
        &b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..],
        &b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"[..],
    ] {
        let mut raw = TcpStream::connect(listener).await.unwrap();
        raw.write_all(bytes).await.unwrap();
        let want = d_before + 1 + u64::from(bytes[0] == 0x16);
        eventually(
            "the default server gets it",
            Duration::from_secs(10),
            || {
                let n = d.accepted();
                async move { (n >= want).then_some(()) }
            },
        )
        .await;
    }
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
    let c = client();
    eventually(
        "relayed connections counted",
        Duration::from_secs(10),
        || async {
            let st = gw.status(&c).await;
            let tcp =
                |backend: &str| st["backends"][backend]["servers"][0]["tcp_connections"].as_u64();
            (tcp("d")? >= 4).then_some(())
        },
    )
    .await;
    let st = gw.status(&c).await;
    let tcp = |backend: &str| st["backends"][backend]["servers"][0]["tcp_connections"].clone();
    assert_eq!(
        (tcp("a"), tcp("b"), tcp("d")),
        (1.into(), 1.into(), 4.into()),
        "{st}"
    );
}
