//! `[server] tls`: HTTPS on Sluice's own port. The certificate chain and
//! key are read from files at start and read again on every config reload,
//! so a renewed certificate (cert-manager, certbot) is served from the next
//! connection on without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// `[server] tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The certificate chain, PEM (the server's certificate first).
    /// Relative to the config file.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1). Relative to the
    /// config file.
    pub key_file: PathBuf,
}

impl ServerTls {
    /// Makes both paths absolute, against `base`.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        self.cert_file = crate::config::resolve(base, &self.cert_file);
        self.key_file = crate::config::resolve(base, &self.key_file);
    }

    /// Reads the files into an acceptor for new connections.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .with_context(|| {
                format!(
                    "cannot read server.tls.cert_file {}",
                    self.cert_file.display()
                )
            })?
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "server.tls.cert_file {} is not PEM",
                    self.cert_file.display()
                )
            })?;
        anyhow::ensure!(
            !certs.is_empty(),
            "server.tls.cert_file {} holds no certificate",
            self.cert_file.display()
        );
        let key = PrivateKeyDer::from_pem_file(&self.key_file).with_context(|| {
            format!(
                "cannot read a private key from server.tls.key_file {}",
                self.key_file.display()
            )
        })?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("server.tls: the key does not fit the certificate")?;
        // HTTP/1.1 is what the server speaks.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
