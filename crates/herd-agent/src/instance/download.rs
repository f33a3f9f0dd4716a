//! An artifact given as an `http://` or `https://` URL: fetched once per version into the
//! version's directory, its SHA-256 checked against the manifest's `sha256` before it is
//! used (a mismatch leaves nothing behind). HTTPS verifies the server against the system's
//! CA bundle, or the one file `SSL_CERT_FILE` names. The file keeps the URL's last path segment as its name and is made
//! executable; archives are not unpacked.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where Debian, Fedora and Alpine keep the system's CA bundle.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Url<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "artifact {url}: only http:// and https:// URLs are fetched"
        ));
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            p.parse()
                .map_err(|_| format!("artifact {url}: port \"{p}\" is not a number"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("artifact {url}: no host"));
    }
    Ok(Url {
        tls,
        host: host.trim_start_matches('[').trim_end_matches(']'),
        port,
        path,
    })
}

fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("artifact")
        .to_string()
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    // SSL_CERT_FILE replaces the system's bundle, as it does for OpenSSL's tools: the way
    // to trust a private CA (the cluster's own, say) for artifacts.
    let own = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let bundles: Vec<PathBuf> = match &own {
        Some(f) => vec![f.clone()],
        None => CA_BUNDLES.iter().map(PathBuf::from).collect(),
    };
    for path in &bundles {
        match std::fs::read(path) {
            Ok(pem) => {
                for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                    let _ = roots.add(cert);
                }
            }
            Err(e) if own.is_some() => {
                return Err(format!(
                    "SSL_CERT_FILE {}: cannot read it: {e}",
                    path.display()
                ))
            }
            Err(_) => {}
        }
    }
    if roots.is_empty() {
        return Err(match &own {
            Some(f) => format!("SSL_CERT_FILE {} holds no certificate", f.display()),
            None => format!(
                "no CA bundle found ({}) to verify an https artifact; install ca-certificates",
                CA_BUNDLES.join(", ")
            ),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn get(url: &Url<'_>, full: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = TcpStream::connect((url.host, url.port))
        .await
        .map_err(|e| format!("artifact {full}: connect: {e}"))?;
    let req = hyper::Request::get(url.path)
        .header(hyper::header::HOST, url.host)
        .header(hyper::header::USER_AGENT, "herd-agent")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let fail = |e: hyper::Error| format!("artifact {full}: {e}");
    if url.tls {
        let name = ServerName::try_from(url.host.to_string())
            .map_err(|e| format!("artifact {full}: {e}"))?;
        let tls = tls_connector()?
            .connect(name, stream)
            .await
            .map_err(|e| format!("artifact {full}: TLS: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(fail)?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(fail)
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(fail)?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(fail)
    }
}

/// Fetch `url` into `dir` (a fresh directory), checking `sha256` (hex); the file's path.
pub async fn fetch(url: &str, sha256: &str, dir: &Path) -> Result<PathBuf, String> {
    let parsed = parse(url)?;
    let resp = tokio::time::timeout(TIMEOUT, get(&parsed, url))
        .await
        .map_err(|_| format!("artifact {url}: no answer within {TIMEOUT:?}"))??;
    if !resp.status().is_success() {
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| format!(" (to {l}: put that URL in the manifest)"))
            .unwrap_or_default();
        return Err(format!(
            "artifact {url}: the server answered {}{location}",
            resp.status()
        ));
    }
    let path = dir.join(file_name(url));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("artifact {url}: body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            hash.update(data);
            file.write_all(data)
                .await
                .map_err(|e| format!("write {}: {e}", path.display()))?;
        }
    }
    file.flush().await.map_err(|e| e.to_string())?;
    let got: String = hash
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(format!(
            "artifact {url}: sha256 is {got}, the manifest says {sha256}; nothing was installed"
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let u = parse("https://example.com/r/app-1.2?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.path),
            (true, "example.com", 443, "/r/app-1.2?x=1")
        );
        let u = parse("http://10.0.0.1:8080").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.path),
            (false, "10.0.0.1", 8080, "/")
        );
        let u = parse("http://[::1]:9000/a").unwrap();
        assert_eq!((u.host, u.port, u.path), ("::1", 9000, "/a"));
        assert!(parse("ftp://x/y").unwrap_err().contains("only http"));
        assert!(parse("http://h:port/")
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(file_name("http://h/r/app-1.2?x=1"), "app-1.2");
        assert_eq!(file_name("http://h/"), "artifact");
    }
}
