//! HTTPS with SNI certificates, HTTP/2 from clients (h2 over TLS, h2c), HTTP/2 to servers,
//! gRPC passthrough with trailers, WebSocket upgrades, and certificate reload — through
//! the real binary, with real TLS (rustls), a real gRPC stack (tonic) and a real WebSocket
//! implementation (tungstenite). Certificates, HTTPS and HTTP/2 are here; gRPC and
//! WebSocket in `grpc_ws`.

mod grpc_ws;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{SinkExt, StreamExt};
use herd_testkit::prelude::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

// ---------------------------------------------------------------- certificates

/// A test CA and the leaf certificates it signs.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "herd test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn client_config(&self, alpn: &[&[u8]], tls12_only: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

impl Leaf {
    fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.pem")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &self.key_pem).unwrap();
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connect with SNI `name`; the stream and the certificate the gateway presented.
async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<(Tls, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake with SNI {name}: {e}"))?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no peer certificate")?;
    Ok((tls, cert))
}

/// One HTTP/1.1 GET on an established stream: (status, headers, body).
async fn h1_get<I>(io: I, host: &str, path: &str) -> (u16, http::HeaderMap, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    read(send.send_request(req).await.unwrap()).await
}

/// One HTTP/2 GET (prior knowledge, or h2 negotiated by ALPN) on an established stream.
async fn h2_get<I>(io: I, uri: &str) -> (u16, http::HeaderMap, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    read(resp).await
}

async fn read(resp: http::Response<hyper::body::Incoming>) -> (u16, http::HeaderMap, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The value of one sample line in Prometheus text, e.g. `name{a="b"}`.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

// ---------------------------------------------------------------- HTTPS and HTTP/2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sni_h2_h2c_and_redirect() {
    let app = Backend::start("app");
    let pki = Pki::new();
    let a = pki.leaf(&["a.example.com"]);
    let b = pki.leaf(&["*.b.example.com"]);
    let certs = temp_dir();
    a.write(&certs, "a");
    b.write(&certs, "b");
    let c = |n: &str| certs.join(n).display().to_string();
    let gw = Gateway::start(&format!(
        r#"
[gateway]
workers = 2

[[listeners]]
name = "web"
protocol = "http"
bind = "127.0.0.1:0"

[[listeners]]
name = "secure"
protocol = "https"
bind = "127.0.0.1:0"
certificates = [ {{ cert = "{}", key = "{}" }}, {{ cert = "{}", key = "{}" }} ]

[[routes]]
path_prefix = "/login"
redirect_https = true
backend = "app"

[[routes]]
backend = "app"

[backends.app]
servers = [ {{ addr = "{}" }} ]
"#,
        c("a.pem"),
        c("a.key"),
        c("b.pem"),
        c("b.key"),
        app.addr
    ));
    let secure = gw.listeners["secure"];
    let web = gw.listeners["web"];

    // SNI picks the certificate: exact name, then wildcard.
    let h1 = pki.client_config(&[b"http/1.1"], false);
    let (tls, cert) = tls_connect(secure, "a.example.com", h1.clone())
        .await
        .unwrap();
    assert_eq!(cert, a.der, "SNI a.example.com must get certificate A");
    let (status, _, body) = h1_get(tls, "a.example.com", "/headers").await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
    assert!(
        seen["forwarded"].as_str().unwrap().contains("proto=https"),
        "{seen}"
    );
    let (tls, cert) = tls_connect(secure, "x.b.example.com", h1.clone())
        .await
        .unwrap();
    assert_eq!(cert, b.der, "SNI x.b.example.com must get certificate B");
    let (status, _, body) = h1_get(tls, "x.b.example.com", "/").await;
    assert_eq!((status, body.as_str()), (200, "app"));

    // TLS 1.2 works too.
    let (tls, _) = tls_connect(secure, "a.example.com", pki.client_config(&[], true))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(h1_get(tls, "a.example.com", "/").await.0, 200);

    // h2 negotiated by ALPN; the upstream side stays HTTP/1.1.
    let (tls, _) = tls_connect(secure, "a.example.com", pki.client_config(&[b"h2"], false))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, _, body) = h2_get(tls, "https://a.example.com/headers").await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["host"], "a.example.com", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");

    // h2c with prior knowledge on the plain listener, next to HTTP/1.1.
    let tcp = TcpStream::connect(web).await.unwrap();
    let (status, _, body) = h2_get(tcp, &format!("http://{web}/")).await;
    assert_eq!((status, body.as_str()), (200, "app"));
    let tcp = TcpStream::connect(web).await.unwrap();
    assert_eq!(h1_get(tcp, "example.com", "/").await.2, "app");

    // redirect_https answers plain HTTP only.
    let tcp = TcpStream::connect(web).await.unwrap();
    let (status, headers, _) = h1_get(tcp, "shop.example.com:8080", "/login?next=%2F").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        "https://shop.example.com/login?next=%2F"
    );
    let (tls, _) = tls_connect(secure, "a.example.com", h1).await.unwrap();
    assert_eq!(h1_get(tls, "a.example.com", "/login").await.0, 200);

    // Requests are counted by the client's HTTP version.
    let metrics = get(&client(), &gw.admin_url("/metrics"))
        .await
        .unwrap()
        .body;
    let count = |l: &str, v: &str| {
        sample(
            &metrics,
            &format!("herd_listener_requests_total{{listener=\"{l}\",version=\"{v}\"}}"),
        )
        .unwrap_or_else(|| panic!("no sample for {l} {v} in:\n{metrics}"))
    };
    assert_eq!(count("secure", "HTTP/2"), 1);
    assert_eq!(count("web", "HTTP/2"), 1);
    assert_eq!(count("secure", "HTTP/1.1"), 4);
    assert_eq!(count("web", "HTTP/1.1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_new_certificates_and_refuses_bad_ones() {
    let app = Backend::start("app");
    let pki = Pki::new();
    let first = pki.leaf(&["a.example.com"]);
    let gw = start_https(&first, &app);
    let secure = gw.listeners["secure"];
    let cfg = pki.client_config(&[b"http/1.1"], false);
    let (tls, cert) = tls_connect(secure, "a.example.com", cfg.clone())
        .await
        .unwrap();
    assert_eq!(cert, first.der);

    // A renewed certificate (new key too) is served to new connections after a reload.
    let second = pki.leaf(&["a.example.com"]);
    second.write(&gw.dir, "site");
    let c = client();
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, cert) = tls_connect(secure, "a.example.com", cfg.clone())
        .await
        .unwrap();
    assert_eq!(
        cert, second.der,
        "a new connection must get the new certificate"
    );
    // The connection made before the reload goes on working.
    assert_eq!(h1_get(tls, "a.example.com", "/").await.2, "app");

    // A certificate file that is missing: refused, naming field and file.
    gw.write_config(&https_config("missing.pem", "site.key", &app));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("listeners[0].certificates[0].cert") && r.body.contains("missing.pem"),
        "{}",
        r.body
    );
    // A key that belongs to another certificate: refused.
    let other = pki.leaf(&["other.example.com"]);
    other.write(&gw.dir, "other");
    gw.write_config(&https_config("site.pem", "other.key", &app));
    let r = post(&c, &gw.admin_url("/reload"), "").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("certificates[0].key") && r.body.contains("not the private key"),
        "{}",
        r.body
    );
    // The running certificates stay.
    let (tls, cert) = tls_connect(secure, "a.example.com", cfg).await.unwrap();
    assert_eq!(cert, second.der);
    assert_eq!(h1_get(tls, "a.example.com", "/").await.2, "app");
}

/// Reads from `tls` until what came, as text, satisfies `done` (10 s at most).
async fn read_until(tls: &mut Tls, what: &str, done: impl Fn(&str) -> bool) -> String {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tls.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what} within 10 s"))
            .unwrap();
        assert!(
            n > 0,
            "closed waiting for {what}, after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if done(&text) {
            return text;
        }
    }
}

/// HTTPS clients get the same HTTP/1.1 loop as plain ones: keep-alive, two requests in one
/// TLS record (rustls holds the second already decrypted, which the socket's readiness
/// does not show), a request with a body handed on to hyper mid-connection, and a large
/// response that must be flushed out of rustls whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_keep_alive_pipelining_bodies_and_large_responses() {
    use tokio::io::AsyncWriteExt;
    let app = Backend::start("app");
    let pki = Pki::new();
    let gw = start_https(&pki.leaf(&["a.example.com"]), &app);
    let cfg = pki.client_config(&[b"http/1.1"], false);
    let (mut tls, _) = tls_connect(gw.listeners["secure"], "a.example.com", cfg)
        .await
        .unwrap();

    // Two requests in one write, so one TLS record: both answered, in order.
    tls.write_all(
        b"GET /one HTTP/1.1\r\nHost: a.example.com\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_until(&mut tls, "both pipelined responses", |text| {
        // The second response is JSON: complete once its body closes.
        text.matches("HTTP/1.1 200 OK").count() == 2 && text.ends_with('}')
    })
    .await;
    let first = text.find("\r\n\r\napp").expect("the first answer's body");
    let second = text
        .find("x-forwarded-proto")
        .expect("the second answer's body");
    assert!(first < second, "answers out of order: {text}");
    assert!(text.contains(r#""x-forwarded-proto":"https""#), "{text}");

    // A head larger than what an idle TLS connection reads at first: the rest is read on.
    let long = "a".repeat(3000);
    tls.write_all(
        format!("GET /headers HTTP/1.1\r\nHost: a.example.com\r\nX-Long: {long}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until(&mut tls, "the long head's answer", |text| {
        text.ends_with('}')
    })
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains(&format!(r#""x-long":"{long}""#)), "{text}");

    // Same connection: a body (hyper's part from here on), then 1 MiB back.
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/echo")
        .header("host", "a.example.com")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"hello over tls",
        )))
        .unwrap();
    let (status, _, body) = read(send.send_request(req).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (200, "hello over tls"));
    let req = http::Request::get("/bytes?n=1048576")
        .header("host", "a.example.com")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    send.ready()
        .await
        .expect("the connection stays open after the echo");
    let (status, _, body) = read(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 1_048_576);
    assert!(body.bytes().all(|b| b == b'x'));
}

fn https_config(cert: &str, key: &str, app: &Backend) -> String {
    format!(
        "[[listeners]]\nname = \"secure\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\n\
         certificates = [ {{ cert = \"{cert}\", key = \"{key}\" }} ]\n\n\
         [[routes]]\nbackend = \"app\"\n\n[backends.app]\nservers = [ {{ addr = \"{}\" }} ]\n",
        app.addr
    )
}

/// A gateway with one https listener whose certificate is `site.pem`/`site.key` beside
/// its config file. The harness picks that directory, so the gateway starts with absolute
/// paths elsewhere; the config is then rewritten with relative ones for the reloads.
fn start_https(leaf: &Leaf, app: &Backend) -> Gateway {
    let dir = temp_dir();
    leaf.write(&dir, "site");
    let gw = Gateway::start(&https_config(
        &dir.join("site.pem").display().to_string(),
        &dir.join("site.key").display().to_string(),
        app,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    leaf.write(&gw.dir, "site");
    gw.write_config(&https_config("site.pem", "site.key", app));
    gw
}
