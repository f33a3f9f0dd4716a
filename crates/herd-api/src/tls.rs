//! TLS between herd processes: a cluster CA (`--tls-ca`) that every party trusts, and the
//! certificate and key each one presents (`--tls-cert`/`--tls-key` on a server, `--cert`/
//! `--key` on a client). Servers and clients build their rustls configurations from one
//! [`TlsMaterial`], which re-reads its files on [`TlsMaterial::reload`]: the configurations
//! look the material up on every handshake, so a rotated certificate or CA is used by the
//! next connection without a restart, and a file that fails to load leaves the last good
//! material in place.

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A TLS file that cannot be used, named with the flag it came from and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {path}: {reason}")]
pub struct TlsError {
    pub flag: &'static str,
    pub path: String,
    pub reason: String,
}

/// The files: the CA that signs every herd certificate, and this party's own certificate
/// and key (a client may have none; a server must).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The flag names to use in errors ("--tls-cert" on a server, "--cert" on a client,
    /// the config key in a gateway's file).
    pub ca_flag: &'static str,
    pub cert_flag: &'static str,
    pub key_flag: &'static str,
}

struct Loaded {
    identity: Option<Arc<CertifiedKey>>,
    server_verifier: Arc<WebPkiServerVerifier>,
    /// Verifies client certificates against the CA.
    client_verifier: Arc<dyn ClientCertVerifier>,
    /// Modification times of the files when read.
    stamps: Vec<Option<SystemTime>>,
}

/// The CA, certificate and key currently in use; swapped whole on reload.
pub struct TlsMaterial {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
    /// The files' times at the last attempt to read them, good or not: a broken file is
    /// reported once, not at every look.
    seen: std::sync::Mutex<Vec<Option<SystemTime>>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .finish()
    }
}

impl TlsMaterial {
    /// Read and check every file now: a server or client with a bad file does not start.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsMaterial>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = read(&files, &provider)?;
        Ok(Arc::new(TlsMaterial {
            seen: std::sync::Mutex::new(loaded.stamps.clone()),
            files,
            provider,
            current: ArcSwap::from_pointee(loaded),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether any file changed since it was last read (by modification time).
    pub fn changed(&self) -> bool {
        match self.seen.lock() {
            Ok(seen) => stamps(&self.files) != *seen,
            Err(_) => true,
        }
    }

    /// Read the files again and use them for every later handshake. On an error the
    /// material in use stays as it was.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamps(&self.files);
        }
        let loaded = read(&self.files, &self.provider)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The configuration of a server: presents its certificate; with `require_client_cert`
    /// a client must present one the CA signed, else the handshake fails.
    pub fn server_config(
        self: &Arc<Self>,
        require_client_cert: bool,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error_ca(e.to_string()))?
            .with_client_cert_verifier(Arc::new(ClientVerifier {
                material: self.clone(),
                mandatory: require_client_cert,
            }))
            .with_cert_resolver(Arc::new(ServerIdentity(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The configuration of a client: trusts servers the CA signed, presents its own
    /// certificate when it has one.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error_ca(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(ClientIdentity(self.clone())));
        // No ALPN here: hyper-rustls sets it from the protocols it enables.
        Ok(config)
    }

    /// Rotate in place: read the files again when one of them changes (looked at every
    /// 2 s) or on SIGHUP, for as long as anyone holds this material. A file that does not
    /// load is logged once per change and the last good material stays in use.
    /// Outside a tokio runtime (a config check, say) there is nothing to watch with: a no-op.
    pub fn watch(self: &Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak = Arc::downgrade(self);
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: TLS files are reloaded on change only");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let asked = tokio::select! {
                    _ = async {
                        match hup.as_mut() {
                            Some(h) => { h.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => true,
                    _ = tick.tick() => false,
                };
                let Some(material) = weak.upgrade() else {
                    return;
                };
                if !asked && !material.changed() {
                    continue;
                }
                match material.reload() {
                    Ok(()) => tracing::info!(
                        cert = ?material.files.cert,
                        ca = %material.files.ca.display(),
                        "TLS files reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS files not reloaded; the last good certificate stays in use"
                    ),
                }
            }
        });
    }

    fn error_ca(&self, reason: String) -> TlsError {
        TlsError {
            flag: self.files.ca_flag,
            path: self.files.ca.display().to_string(),
            reason,
        }
    }
}

/// The configuration of a client that speaks plain HTTP: hyper's connector needs one all
/// the same, and with no trusted root it can complete no TLS handshake at all.
pub fn no_tls_config() -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions();
    match builder {
        Ok(b) => b
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
        // ring supports the default protocol versions; this cannot fail.
        Err(e) => unreachable!("rustls with ring refused its defaults: {e}"),
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.ca), files.cert.as_ref(), files.key.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn read(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Loaded, TlsError> {
    let stamps = stamps(files);
    let fail = |flag: &'static str, path: &Path, reason: String| TlsError {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let ca_pem = std::fs::read(&files.ca)
        .map_err(|e| fail(files.ca_flag, &files.ca, format!("cannot read it: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert =
            cert.map_err(|e| fail(files.ca_flag, &files.ca, format!("not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            fail(
                files.ca_flag,
                &files.ca,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(fail(
            files.ca_flag,
            &files.ca,
            "holds no certificate (no BEGIN CERTIFICATE block); `herd cert init` makes ca.pem"
                .into(),
        ));
    }
    let roots = Arc::new(roots);
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| fail(files.ca_flag, &files.ca, e.to_string()))?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| fail(files.ca_flag, &files.ca, e.to_string()))?;
    let identity = match (&files.cert, &files.key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(TlsError {
                flag: files.key_flag,
                path: String::new(),
                reason: format!("is missing: {} needs its key beside it", files.cert_flag),
            })
        }
        (None, Some(_)) => {
            return Err(TlsError {
                flag: files.cert_flag,
                path: String::new(),
                reason: format!("is missing: {} needs its certificate", files.key_flag),
            })
        }
        (Some(cert), Some(key)) => Some(identity(files, cert, key, provider)?),
    };
    Ok(Loaded {
        identity,
        server_verifier,
        client_verifier,
        stamps,
    })
}

fn identity(
    files: &TlsFiles,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |flag: &'static str, path: &Path, reason: String| TlsError {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = std::fs::read(cert)
        .map_err(|e| fail(files.cert_flag, cert, format!("cannot read it: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(files.cert_flag, cert, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(fail(
            files.cert_flag,
            cert,
            "holds no certificate (no BEGIN CERTIFICATE block); `herd cert issue` makes one".into(),
        ));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| fail(files.key_flag, key, format!("cannot read it: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(
            files.key_flag,
            key,
            format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| fail(files.key_flag, key, format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(fail(
                files.key_flag,
                key,
                format!(
                    "is not the private key of the certificate in {}",
                    cert.display()
                ),
            ))
        }
    }
    Ok(Arc::new(certified))
}

#[derive(Debug)]
struct ServerIdentity(Arc<TlsMaterial>);

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().identity.clone()
    }
}

#[derive(Debug)]
struct ClientIdentity(Arc<TlsMaterial>);

impl ResolvesClientCert for ClientIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.current.load().identity.is_some()
    }
}

/// Checks a server's certificate against the CA of the moment.
#[derive(Debug)]
struct ServerVerifier(Arc<TlsMaterial>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current.load().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .current
            .load()
            .server_verifier
            .supported_verify_schemes()
    }
}

/// Checks a client's certificate against the CA of the moment.
#[derive(Debug)]
struct ClientVerifier {
    material: Arc<TlsMaterial>,
    mandatory: bool,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No hints: herd's clients hold one certificate and present it whatever is asked.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.material
            .current
            .load()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.material
            .current
            .load()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.material
            .current
            .load()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.material
            .current
            .load()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// An error with its causes, outermost first: hyper's own message for a failed connection
/// says only "client error (Connect)".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The TLS failure among an error's causes, if there is one: a certificate that is refused
/// is not refused less by asking again.
pub fn tls_failure<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    // io::Error's source() skips the error it wraps, so look inside it.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(r) = tls_failure(inner) {
            return Some(r);
        }
    }
    e.source().and_then(tls_failure)
}

/// What to do about a connection failure that says the two sides disagree on TLS.
pub fn hint(reason: &str, tls: bool) -> Option<&'static str> {
    if !tls && reason.contains("invalid HTTP version") {
        return Some("the registry may speak TLS: give its CA with --tls-ca (HERD_TLS_CA)");
    }
    if tls && reason.contains("CertificateRequired") {
        return Some(
            "the registry requires a client certificate: --cert and --key (herd cert issue)",
        );
    }
    if tls && reason.contains("UnknownIssuer") {
        return Some("the registry's certificate is not signed by the CA given with --tls-ca");
    }
    if tls && (reason.contains("UnknownCA") || reason.contains("BadCertificate")) {
        return Some(
            "the registry refused this side's certificate: it is not signed by the cluster's CA",
        );
    }
    if tls && reason.contains("NotValidForName") {
        return Some("the registry's certificate does not name the address used: issue it with --ip/--dns for it");
    }
    if tls && (reason.contains("corrupt message") || reason.contains("InvalidContentType")) {
        return Some("the registry may speak plain HTTP: drop --tls-ca");
    }
    None
}
