//! Per-lab CA and per-host certificates (kept in the state file so fingerprints survive
//! down/up), and the rustls server configs built from them.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls config: {0}")]
    Tls(#[from] rustls::Error),
    #[error("bad stored key material: {0}")]
    Stored(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertEntry {
    pub cert_pem: String,
    pub cert_der_b64: String,
    pub key_der_b64: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ca {
    pub cert: CertEntry,
    /// The CA's params are rebuilt from this name to sign more certs after a restart.
    pub key_pem: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// SHA-256 of the DER, uppercase colon hex, as PVE shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, "edge-lab CA");
    p.distinguished_name.push(DnType::OrganizationName, "edge-lab");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

pub fn new_ca() -> Result<Ca, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(Ca {
        cert: CertEntry {
            cert_pem: cert.pem(),
            cert_der_b64: B64.encode(cert.der()),
            key_der_b64: B64.encode(key.serialize_der()),
            fingerprint: fingerprint(cert.der()),
        },
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate for `name` at `ip`, signed by the lab CA.
pub fn issue(ca: &Ca, name: &str, ip: IpAddr) -> Result<CertEntry, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut p = CertificateParams::new(vec![name.to_string(), "localhost".to_string()])?;
    p.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name.push(DnType::OrganizationName, "edge-lab");
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertEntry {
        cert_pem: cert.pem(),
        cert_der_b64: B64.encode(cert.der()),
        key_der_b64: B64.encode(key.serialize_der()),
        fingerprint: fingerprint(cert.der()),
    })
}

pub fn server_config(entry: &CertEntry, ca: &Ca) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = B64.decode(&entry.cert_der_b64).map_err(|e| PkiError::Stored(e.to_string()))?;
    let ca_der = B64.decode(&ca.cert.cert_der_b64).map_err(|e| PkiError::Stored(e.to_string()))?;
    let key = B64.decode(&entry.key_der_b64).map_err(|e| PkiError::Stored(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert), CertificateDer::from(ca_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
    Ok(Arc::new(cfg))
}
