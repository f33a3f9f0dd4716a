//! TLS from the gateway to a backend's servers (`[backends.x.tls]`): the rustls client
//! configuration is built once per backend when a snapshot is built (the CA bundle is
//! read then: at start and on every reload), and shared by every worker and the health
//! checks, so a new upstream connection costs a handshake and nothing more (sessions are
//! resumed from the configuration's cache).

use crate::state::certs::CertError;
use herd_config::{UpstreamProtocol, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A backend's TLS settings, ready to dial with.
pub struct BackendTls {
    connector: TlsConnector,
    /// The configured `sni`; None = each server's own host.
    sni: Option<ServerName<'static>>,
    sni_text: Option<String>,
}

impl BackendTls {
    /// Read the CA bundle and build the client configuration of backend `name`. ALPN
    /// offers what the backend's protocol speaks: `h2` for HTTP/2 backends, `http/1.1`
    /// otherwise.
    pub fn build(
        name: &str,
        settings: &UpstreamTls,
        protocol: UpstreamProtocol,
    ) -> Result<BackendTls, CertError> {
        let field = format!("backends.{name}.tls");
        let fail = |key: &str, reason: String| CertError {
            field: format!("{field}{key}"),
            reason,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| fail("", format!("TLS setup: {e}")))?;
        let mut config = match (&settings.ca, settings.verify) {
            (_, false) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth(),
            (Some(path), true) => builder
                .with_root_certificates(read_roots(path).map_err(|r| fail(".ca", r))?)
                .with_no_client_auth(),
            (None, true) => {
                return Err(fail(
                    ".ca",
                    "required unless verify = false: the PEM bundle of the CAs that sign the \
                     servers' certificates"
                        .into(),
                ))
            }
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let sni = match &settings.sni {
            None => None,
            Some(s) => Some(
                parse_name(s)
                    .ok_or_else(|| fail(".sni", format!("\"{s}\" is not a DNS name or IP")))?,
            ),
        };
        Ok(BackendTls {
            connector: TlsConnector::from(Arc::new(config)),
            sni,
            sni_text: settings.sni.clone(),
        })
    }

    /// The name a connection to `addr` ("host:port" as configured) sends as SNI and
    /// verifies: the configured `sni`, else the address's host. An IP address sends no
    /// SNI (rustls never does) and must be in the certificate's IP SANs.
    pub fn server_name(&self, addr: &str) -> Option<ServerName<'static>> {
        if let Some(n) = &self.sni {
            return Some(n.clone());
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        parse_name(host)
    }

    /// The configured `sni`, if any (health checks send it as their Host).
    pub fn configured_sni(&self) -> Option<&str> {
        self.sni_text.as_deref()
    }

    /// The TLS handshake over an established connection (after any PROXY header).
    pub async fn handshake<IO>(&self, addr: &str, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(addr).ok_or_else(|| {
            std::io::Error::other(format!(
                "\"{addr}\" has no host usable as a TLS server name; set tls.sni"
            ))
        })?;
        self.connector.connect(name, io).await
    }
}

fn parse_name(host: &str) -> Option<ServerName<'static>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).ok()
}

/// Every certificate of a PEM bundle, as trust anchors.
fn read_roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (no BEGIN CERTIFICATE block)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: certificate #{} is unusable as a CA: {e}", i + 1))?;
    }
    Ok(roots)
}

/// `verify = false`: any certificate for any name is accepted. The handshake signatures
/// are still checked, so the peer at least holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure(sni: Option<&str>) -> BackendTls {
        let settings = UpstreamTls {
            ca: None,
            sni: sni.map(str::to_string),
            verify: false,
        };
        BackendTls::build("app", &settings, UpstreamProtocol::Http1).unwrap()
    }

    #[test]
    fn server_name_is_sni_else_the_address_host() {
        let t = insecure(None);
        assert_eq!(
            t.server_name("api.internal:443"),
            Some(ServerName::try_from("api.internal").unwrap())
        );
        assert!(matches!(
            t.server_name("10.0.0.1:443"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            t.server_name("[::1]:443"),
            Some(ServerName::IpAddress(_))
        ));
        let t = insecure(Some("app.example.com"));
        assert_eq!(
            t.server_name("10.0.0.1:443"),
            Some(ServerName::try_from("app.example.com").unwrap())
        );
    }

    #[test]
    fn ca_errors_name_field_and_file() {
        let settings = UpstreamTls {
            ca: Some("/nonexistent/ca.pem".into()),
            sni: None,
            verify: true,
        };
        let err = BackendTls::build("app", &settings, UpstreamProtocol::Http1)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("backends.app.tls.ca: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("herd-upstream-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "no pem here\n").unwrap();
        let settings = UpstreamTls {
            ca: Some(path.clone()),
            ..settings
        };
        let err = BackendTls::build("app", &settings, UpstreamProtocol::Http1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
