//! HTTPS for `serve --tls-cert/--tls-key`: the LXC tooling speaks only
//! HTTPS, so snapreg terminates TLS itself instead of requiring a proxy.

use crate::config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A rustls server configuration from PEM files; the error names the file
/// and what is wrong with it.
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, String> {
    let unreadable = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        format!("cannot read {}: {e}", path.display())
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| unreadable(&files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&files.cert, &e))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| unreadable(&files.key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
