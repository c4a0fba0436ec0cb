//! The server's TLS identity: a self-signed certificate made on first start
//! and kept in the data directory. Clients pin its SHA-256 fingerprint on
//! first use, so no certificate authority is needed on a LAN.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

pub struct Identity {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, uppercase hex pairs joined by ':'.
    pub fingerprint: String,
    pub created: bool,
}

pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

pub fn load_or_create(dir: &Path) -> anyhow::Result<Identity> {
    let cert_path = dir.join("tls-cert.der");
    let key_path = dir.join("tls-key.der");
    let created = !cert_path.exists();
    if created {
        let names = vec!["localhost".to_owned(), "hutong".to_owned()];
        let generated =
            rcgen::generate_simple_self_signed(names).context("generating the TLS certificate")?;
        write_private(&key_path, &generated.signing_key.serialize_der())?;
        std::fs::write(&cert_path, generated.cert.der()).context("writing the TLS certificate")?;
    }
    let cert = std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key = std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .context("loading the TLS certificate")?;
    Ok(Identity { config: Arc::new(config), fingerprint: fingerprint(&cert), created })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}
