//! The TLS material of https listeners: certificate chains and keys read and checked,
//! and the server configuration that picks one by SNI. No sockets.

use herd_config::CertificateFiles;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate (or CA bundle) that cannot be used: the config field, the file and why.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CertError {
    pub field: String,
    pub reason: String,
}

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
) -> Result<Arc<ServerConfig>, CertError> {
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
        return Err(CertError {
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
        .map_err(|e| CertError {
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
fn load(field: &str, f: &CertificateFiles) -> Result<(Arc<CertifiedKey>, Vec<String>), CertError> {
    let fail = |key: &str, reason: String| CertError {
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
