//! Automatic certificates over ACME (RFC 8555; Let's Encrypt by default) for the HTTPS
//! listener, with [rustls-acme](https://docs.rs/rustls-acme): `acme_domains` set and no
//! `tls_cert`, Chorus orders a certificate for those names, answers the CA's TLS-ALPN-01
//! challenge on its own HTTPS port (RFC 8737: the CA connects to port 443 of each name with the
//! ALPN protocol `acme-tls/1`), keeps the account and certificate under `DATA/acme` (0700) and
//! renews before expiry. The acquisition runs in a task of its own; until the first certificate
//! arrives, TLS handshakes other than the CA's fail.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::StreamExt;
use rustls_acme::caches::DirCache;
use rustls_acme::AcmeConfig;

use crate::config::Config;

/// The ALPN protocol of the TLS-ALPN-01 challenge: such connections carry no HTTP.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The acceptor for the HTTPS listener, with certificates from the ACME CA; starts ordering.
pub fn acceptor(cfg: &Config) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &cfg.acme_ca {
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("acme_ca {}: not a readable PEM file", ca.display()))?
        {
            let cert = cert.with_context(|| format!("acme_ca {}: not a PEM certificate", ca.display()))?;
            roots.add(cert).with_context(|| format!("acme_ca {}: not a usable CA certificate", ca.display()))?;
        }
    }
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let dir = cfg.data.join("acme");
    private_dir(&dir)?;
    let mut state = AcmeConfig::new_with_client_config(&cfg.acme_domains, Arc::new(client))
        .contact(cfg.acme_contact.iter().map(|c| format!("mailto:{c}")))
        .directory(&cfg.acme_directory)
        .cache(DirCache::new(dir))
        .state();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(state.resolver());
    // One configuration for both: the resolver answers a ClientHello offering `acme-tls/1` with
    // the challenge certificate, any other with the ordered one.
    server.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    let domains = cfg.acme_domains.join(", ");
    tokio::spawn(async move {
        while let Some(event) = state.next().await {
            match event {
                Ok(ok) => tracing::info!(domains, event = ?ok, "ACME"),
                Err(e) => tracing::warn!(domains, error = ?e, "ACME: no certificate yet (retrying)"),
            }
        }
    });
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Creates `dir` (mode 0700) or makes an existing one private: it holds the account key and
/// the certificate's private key.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))?;
    Ok(())
}
