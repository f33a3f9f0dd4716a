//! TLS termination for https listeners (rustls, ring provider, TLS 1.2 and 1.3).
//! Certificates are read from PEM files when a snapshot is built — at start and on every
//! reload, so a renewed certificate is picked up by a reload — and chosen per handshake by
//! SNI: exact names first, then wildcards, else the listener's first certificate. ALPN
//! offers h2 and http/1.1; the answer picks the HTTP server for the connection.

use crate::snapshot::BuildError;
use crate::stream::Prefixed;
use crate::worker::{client_conn, ClientConn, ConnSlot, Worker};
use bytes::BytesMut;
use herd_config::CertificateFiles;
use http::header::HeaderValue;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A client that has not finished its handshake by then is gone or hostile.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificates of one listener, indexed by the DNS names they are valid for.
#[derive(Debug)]
struct SniCertificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// "*.example.com" stored as "example.com": matches exactly one more label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniCertificates {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return c.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return c.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Read and check every certificate of an https listener (`field` is its config path,
/// e.g. `listeners[1]`) and build its TLS configuration. Errors name the certificate's
/// field, the file and what is wrong with it.
pub fn server_config(
    field: &str,
    files: &[CertificateFiles],
) -> Result<Arc<ServerConfig>, BuildError> {
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (j, f) in files.iter().enumerate() {
        let (key, names) = load(&format!("{field}.certificates[{j}]"), f)?;
        for name in names {
            // The first certificate listing a name serves it.
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_string()),
                None => exact.entry(name),
            }
            .or_insert_with(|| key.clone());
        }
        default.get_or_insert(key);
    }
    let Some(default) = default else {
        return Err(BuildError::Certificate {
            field: format!("{field}.certificates"),
            reason: "an https listener needs at least one certificate".into(),
        });
    };
    let resolver = SniCertificates {
        exact,
        wildcard,
        default,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| BuildError::Certificate {
            field: field.to_string(),
            reason: format!("TLS setup: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One certificate: its chain, a key that matches it, and the DNS names it is valid for
/// (lower case; wildcards keep their "*.").
fn load(field: &str, f: &CertificateFiles) -> Result<(Arc<CertifiedKey>, Vec<String>), BuildError> {
    let fail = |key: &str, reason: String| BuildError::Certificate {
        field: format!("{field}.{key}"),
        reason,
    };
    let cert_path = f.cert.display();
    let key_path = f.key.display();
    let cert_pem = std::fs::read(&f.cert)
        .map_err(|e| fail("cert", format!("cannot read {cert_path}: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail("cert", format!("{cert_path} is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(fail(
            "cert",
            format!("{cert_path} holds no certificate (no BEGIN CERTIFICATE block)"),
        ));
    }
    let key_pem =
        std::fs::read(&f.key).map_err(|e| fail("key", format!("cannot read {key_path}: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(
            "key",
            format!("{key_path} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| fail("key", format!("{key_path}: unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(fail(
                "key",
                format!("{key_path} is not the private key of the certificate in {cert_path}"),
            ))
        }
    }
    let leaf = certified
        .end_entity_cert()
        .map_err(|e| fail("cert", format!("{cert_path}: {e}")))?;
    let names = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| {
            fail(
                "cert",
                format!("{cert_path}: cannot parse the certificate: {e}"),
            )
        })?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    Ok((Arc::new(certified), names))
}

/// Read every https listener's certificates and every backend's CA bundle as a start or
/// reload would (`herd check`).
pub fn check_certificates(config: &herd_config::Config) -> Result<(), BuildError> {
    for (i, l) in config.listeners.iter().enumerate() {
        if l.protocol == herd_config::Protocol::Https {
            server_config(&format!("listeners[{i}]"), &l.certificates)?;
        }
    }
    for (name, b) in &config.backends {
        if let Some(t) = &b.tls {
            crate::upstream_tls::BackendTls::build(name, t, b.protocol)?;
        }
    }
    Ok(())
}

/// An https client connection: PROXY header (if the listener expects one), handshake,
/// then HTTP/2 or HTTP/1.1 as ALPN decided.
pub async fn serve(
    w: Rc<Worker>,
    li: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: ConnSlot,
) {
    let (tls, accept_proxy) = {
        let snap = w.shared.snapshot.load();
        (
            snap.listeners.get(li).and_then(|l| l.tls.clone()),
            snap.config
                .listeners
                .get(li)
                .is_some_and(|l| l.accept_proxy_protocol),
        )
    };
    let Some(tls) = tls else {
        return;
    };
    let Some((conn, rest)) =
        client_conn(&w, li, &mut stream, peer, local, accept_proxy, true).await
    else {
        return;
    };
    if rest.is_empty() {
        std::pin::pin!(handshake(w, li, stream, tls, conn, slot)).await;
    } else {
        // Boxed: a second connection type inline would size every https connection's task.
        Box::pin(handshake(
            w,
            li,
            Prefixed::new(rest, stream),
            tls,
            conn,
            slot,
        ))
        .await;
    }
}

async fn handshake<I>(
    w: Rc<Worker>,
    li: usize,
    io: I,
    tls: Arc<ServerConfig>,
    conn: ClientConn,
    slot: ConnSlot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
    let stream = match std::pin::pin!(accepted).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %conn.client, "TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        // Boxed: inline, the HTTP/2 server's state would size every HTTP/1.1 connection.
        Box::pin(crate::h2::serve_h2(w, li, stream, conn, slot)).await;
    } else {
        // Our HTTP/1.1 loop, as for plain clients; it hands what it does not serve to hyper.
        let timeouts = crate::worker::HttpTimeouts::of(&w, li);
        let serve = crate::h1_server::serve(w, li, stream, BytesMut::new(), conn, slot, timeouts);
        std::pin::pin!(serve).await;
    }
}

/// `https://host/path?query` for a request that came over plain HTTP (`redirect_https`).
/// The port is dropped: the https side is assumed on 443. None without a host.
pub fn https_location(parts: &http::request::Parts) -> Option<HeaderValue> {
    let host = crate::headers::request_host(&parts.headers, &parts.uri)?;
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    HeaderValue::from_str(&format!("https://{host}{pq}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a real key: the resolver only hands keys out, it never signs.
    #[derive(Debug)]
    struct NoKey;

    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _offered: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    fn key() -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![1u8])],
            Arc::new(NoKey),
        ))
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let (a, b, d) = (key(), key(), key());
        let certs = SniCertificates {
            exact: HashMap::from([("a.example.com".to_string(), a.clone())]),
            wildcard: HashMap::from([("b.example.com".to_string(), b.clone())]),
            default: d.clone(),
        };
        assert!(Arc::ptr_eq(&certs.pick(Some("A.Example.com")), &a));
        assert!(Arc::ptr_eq(&certs.pick(Some("x.b.example.com")), &b));
        // A wildcard covers one label only, and not the bare parent.
        assert!(Arc::ptr_eq(&certs.pick(Some("y.x.b.example.com")), &d));
        assert!(Arc::ptr_eq(&certs.pick(Some("b.example.com")), &d));
        assert!(Arc::ptr_eq(&certs.pick(None), &d));
    }

    #[test]
    fn missing_files_name_field_and_path() {
        let err = server_config(
            "listeners[0]",
            &[CertificateFiles {
                cert: "/nonexistent/site.pem".into(),
                key: "/nonexistent/site.key".into(),
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("listeners[0].certificates[0].cert: cannot read /nonexistent/site.pem"),
            "{err}"
        );
    }
}
