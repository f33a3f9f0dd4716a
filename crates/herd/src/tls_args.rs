//! The TLS flags: a server's (`--tls-cert/--tls-key/--tls-ca`, `--tls-client-auth`) and a
//! client's (`--tls-ca/--cert/--key`, or HERD_TLS_CA/HERD_CERT/HERD_KEY), turned into the
//! material herd-api's clients and the registry's listener use.

use anyhow::Context;
use clap::{Args, ValueEnum};
use herd_api::{TlsFiles, TlsMaterial};
use std::path::PathBuf;
use std::sync::Arc;

/// How a client of the registry (the CLI, an agent) reaches it over TLS.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientTls {
    /// The cluster's CA (`herd cert init`): speak TLS to the registry and trust only
    /// servers whose certificate it signed.
    #[arg(long, global = true, value_name = "FILE", env = "HERD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (`herd cert issue`), for a registry that requires one.
    // Own ids: "key" is also the argument of `herd kv get KEY`.
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        value_name = "FILE",
        env = "HERD_CERT",
        requires = "client_key"
    )]
    pub cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        value_name = "FILE",
        env = "HERD_KEY",
        requires = "client_cert"
    )]
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// The loaded material, or none for plain HTTP. A certificate without a CA is refused:
    /// the client would not know whom to trust.
    pub fn material(&self) -> anyhow::Result<Option<Arc<TlsMaterial>>> {
        let Some(ca) = &self.tls_ca else {
            if self.cert.is_some() {
                anyhow::bail!(
                    "--cert needs --tls-ca (or HERD_TLS_CA): the CA the registry's certificate \
                     must chain to"
                );
            }
            return Ok(None);
        };
        let files = TlsFiles {
            ca: ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca_flag: "--tls-ca",
            cert_flag: "--cert",
            key_flag: "--key",
        };
        Ok(Some(TlsMaterial::load(files)?))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Every client must present a certificate the CA signed.
    #[default]
    Required,
    /// Clients may connect without one (tokens still apply); peers still present theirs.
    Optional,
}

/// A server's TLS.
#[derive(Args, Clone, Debug, Default)]
pub struct ServerTls {
    /// Serve clients and peers over TLS with this certificate (`herd cert issue`); needs
    /// --tls-key and --tls-ca. Reloaded on change or SIGHUP.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA (`herd cert init`): peers' certificates (and clients', see
    /// --tls-client-auth) must chain to it.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Whether clients must present a certificate the CA signed.
    #[arg(long, value_enum, default_value_t = ClientAuth::Required)]
    pub tls_client_auth: ClientAuth,
}

impl ServerTls {
    pub fn options(&self) -> anyhow::Result<Option<herd_registry::ServerTls>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let files = TlsFiles {
            ca: ca.clone(),
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ca_flag: "--tls-ca",
            cert_flag: "--tls-cert",
            key_flag: "--tls-key",
        };
        let material = TlsMaterial::load(files).context("TLS")?;
        Ok(Some(herd_registry::ServerTls {
            material,
            require_client_cert: self.tls_client_auth == ClientAuth::Required,
        }))
    }
}
