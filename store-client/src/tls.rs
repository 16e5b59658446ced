//! The TLS client configuration for [`Endpoint::Tls`]: the pinned CA of `store.toml` as the only
//! trust anchor (no system roots, no way to skip verification), this host's certificate chain
//! and key. The server's certificate must chain to that CA and name `server_name` or the IP
//! address connected to (rustls's verify-full); the PEM texts come from
//! [`StoreConfig::tls_files`], read with the trust rules, never from anywhere else.
//!
//! [`Endpoint::Tls`]: pam_totp::fleet::Endpoint::Tls
//! [`StoreConfig::tls_files`]: pam_totp::fleet::StoreConfig::tls_files
#![forbid(unsafe_code)]

use pam_totp::fleet::{FleetError, TlsFiles};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A PEM error in words that never quote the file (a key file's lines are secret).
fn pem_error(what: &str, e: &pem::Error) -> FleetError {
    let why = match e {
        pem::Error::NoItemsFound => "no PEM section of that kind found",
        pem::Error::Base64Decode(_) => "bad base64 in a PEM section",
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        _ => "not valid PEM",
    };
    FleetError(format!("TLS: {what}: {why}"))
}

fn certificates(what: &str, text: &[u8]) -> Result<Vec<CertificateDer<'static>>, FleetError> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e))?;
    if certs.is_empty() {
        return Err(pem_error(what, &pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// rustls's client configuration: TLS 1.2 or 1.3, the ring provider, the CA of `files` as the
/// only root, `files`' certificate and key for client authentication.
pub(crate) fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, FleetError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates("CA certificate", &files.ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| FleetError(format!("TLS: CA certificate: {e}")))?;
    }
    let chain = certificates("client certificate", &files.cert_pem)?;
    let key =
        PrivateKeyDer::from_pem_slice(&files.key_pem).map_err(|e| pem_error("client key", &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| FleetError(format!("TLS: client certificate and key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn files(ca: &str, cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            ca_pem: Zeroizing::new(ca.as_bytes().to_vec()),
            cert_pem: Zeroizing::new(cert.as_bytes().to_vec()),
            key_pem: Zeroizing::new(key.as_bytes().to_vec()),
        }
    }

    #[test]
    fn given_no_pem_then_refused_without_quoting_the_file() {
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBsaW5l!!\n-----END PRIVATE KEY-----\n";
        let e = client_config(&files("", "", secret)).unwrap_err();
        assert!(e.0.contains("CA certificate"), "{e}");
        let e = client_config(&files(secret, "", secret)).unwrap_err();
        assert!(e.0.starts_with("TLS: CA certificate"), "{e}");
        assert!(!e.0.contains("c2Vj"), "{e}");
    }
}
