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
    /// DER (base64) of the issuing CA when it is not the lab CA (an ACME-issued certificate).
    #[serde(default)]
    pub chain_der_b64: Option<String>,
    /// What `GET /nodes/{node}/certificates/info` shows (absent in labs from before it existed).
    #[serde(default)]
    pub info: Option<CertInfo>,
}

/// The descriptive fields of a certificate, recorded when it is issued.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub san: Vec<String>,
    pub notbefore: i64,
    pub notafter: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ca {
    pub cert: CertEntry,
    /// The CA's params are rebuilt from this name to sign more certs after a restart.
    pub key_pem: String,
    /// Common name of the CA (`None`: the lab CA, "edge-lab CA").
    #[serde(default)]
    pub name: Option<String>,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// SHA-256 of the DER, uppercase colon hex, as PVE shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

const LAB_CA_NAME: &str = "edge-lab CA";

fn ca_params(name: &str) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name.push(DnType::OrganizationName, "edge-lab");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

pub fn new_ca() -> Result<Ca, PkiError> {
    new_named_ca(LAB_CA_NAME)
}

/// Another CA next to the lab CA (the lab's "ACME CA").
pub fn new_named_ca(name: &str) -> Result<Ca, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(name)?.self_signed(&key)?;
    Ok(ca_of(&cert, &key, None, (name != LAB_CA_NAME).then(|| name.to_string())))
}

/// A CA as the lab keeps it: the certificate with its key.
fn ca_of(cert: &rcgen::Certificate, key: &KeyPair, info: Option<CertInfo>, name: Option<String>) -> Ca {
    Ca {
        cert: CertEntry {
            cert_pem: cert.pem(),
            cert_der_b64: B64.encode(cert.der()),
            key_der_b64: B64.encode(key.serialize_der()),
            fingerprint: fingerprint(cert.der()),
            chain_der_b64: None,
            info,
        },
        key_pem: key.serialize_pem(),
        name,
    }
}

/// A CA signed by the lab CA: the `pve-root-ca` of one `/etc/pve` (a standalone node's, then its
/// cluster's). Real PVE's is self-signed; chaining it to the lab CA lets every test verify
/// every node with the one lab root, while a client that trusts only this CA (the provider,
/// once it learned a cluster's CA) verifies the node's own certificates against it.
pub fn new_intermediate(lab: &Ca, name: &str) -> Result<Ca, PkiError> {
    let lab_name = lab.name.clone().unwrap_or_else(|| LAB_CA_NAME.to_string());
    let issuer = Issuer::new(ca_params(&lab_name)?, KeyPair::from_pem(&lab.key_pem)?);
    let key = KeyPair::generate()?;
    let cert = ca_params(name)?.signed_by(&key, &issuer)?;
    let info = CertInfo {
        subject: format!("/CN={name}/O=edge-lab"),
        issuer: format!("/CN={lab_name}/O=edge-lab"),
        san: Vec::new(),
        notbefore: 0,
        notafter: 0,
    };
    Ok(ca_of(&cert, &key, Some(info), Some(name.to_string())))
}

/// A certificate and key from PEM (a seed's bootstrap certificate), as the lab stores them.
pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertEntry, PkiError> {
    let der = pem_der(cert_pem, "CERTIFICATE").ok_or_else(|| PkiError::Stored("no certificate in PEM".into()))?;
    let key = KeyPair::from_pem(key_pem)?;
    Ok(CertEntry {
        cert_pem: cert_pem.to_string(),
        cert_der_b64: B64.encode(&der),
        key_der_b64: B64.encode(key.serialize_der()),
        fingerprint: fingerprint(&der),
        // Self-signed: presented alone, no chain.
        chain_der_b64: Some(String::new()),
        info: None,
    })
}

/// The DER of the first `label` block of a PEM text.
fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem.split(&begin).nth(1)?.split(&end).next()?;
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(clean).ok()
}

/// A server certificate for `name` at `ip`, signed by the lab CA.
pub fn issue(ca: &Ca, name: &str, ip: IpAddr) -> Result<CertEntry, PkiError> {
    issue_for(ca, name, &[name.to_string(), "localhost".to_string()], Some(ip), None)
}

/// A server certificate with common name `cn` for `dns_names` (and `ip`), signed by `ca`,
/// valid for `days` from now (`None`: rcgen's 1975–4096 range, as the lab always used).
pub fn issue_for(
    ca: &Ca,
    cn: &str,
    dns_names: &[String],
    ip: Option<IpAddr>,
    days: Option<u64>,
) -> Result<CertEntry, PkiError> {
    let ca_name = ca.name.clone().unwrap_or_else(|| LAB_CA_NAME.to_string());
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::new(ca_params(&ca_name)?, ca_key);
    let mut p = CertificateParams::new(dns_names.to_vec())?;
    if let Some(ip) = ip {
        p.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "edge-lab");
    if let Some(days) = days {
        let now = crate::state::now_s();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        // A little slack backwards, like real CAs, so clock skew never makes it "not yet valid".
        p.not_before = epoch + std::time::Duration::from_secs(now.saturating_sub(3600));
        p.not_after = epoch + std::time::Duration::from_secs(now + days * 86_400);
    }
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let mut san: Vec<String> = dns_names.iter().map(|d| format!("DNS:{d}")).collect();
    if let Some(ip) = ip {
        san.push(format!("IP Address:{ip}"));
    }
    Ok(CertEntry {
        cert_pem: cert.pem(),
        cert_der_b64: B64.encode(cert.der()),
        key_der_b64: B64.encode(key.serialize_der()),
        fingerprint: fingerprint(cert.der()),
        chain_der_b64: ca.name.is_some().then(|| ca.cert.cert_der_b64.clone()),
        info: Some(CertInfo {
            subject: format!("/CN={cn}/O=edge-lab"),
            issuer: format!("/CN={ca_name}/O=edge-lab"),
            san,
            notbefore: p.not_before.unix_timestamp(),
            notafter: p.not_after.unix_timestamp(),
        }),
    })
}

/// The chain a node presents: its certificate, then its issuer (the lab CA unless the entry
/// names another; none for a self-signed one).
fn certified_key(entry: &CertEntry, ca: &Ca) -> Result<rustls::sign::CertifiedKey, PkiError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = B64.decode(&entry.cert_der_b64).map_err(|e| PkiError::Stored(e.to_string()))?;
    let chain = entry.chain_der_b64.as_deref().unwrap_or(&ca.cert.cert_der_b64);
    let mut certs = vec![CertificateDer::from(cert)];
    if !chain.is_empty() {
        certs.push(CertificateDer::from(B64.decode(chain).map_err(|e| PkiError::Stored(e.to_string()))?));
    }
    let key = B64.decode(&entry.key_der_b64).map_err(|e| PkiError::Stored(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    Ok(rustls::sign::CertifiedKey::from_der(certs, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)), &provider)?)
}

/// Where a listener finds the certificate it presents right now (the node's entry in the lab
/// state: a cert drift or an ACME order replaces it while the listener runs).
pub type CurrentCert = Arc<dyn Fn() -> Option<CertEntry> + Send + Sync>;

/// Picks the node's current certificate at every handshake, like pveproxy after a reload.
/// The parsed key is cached per fingerprint, so an unchanged certificate costs one lookup.
struct LiveCert {
    current: CurrentCert,
    ca: Ca,
    cache: std::sync::Mutex<Option<(String, Arc<rustls::sign::CertifiedKey>)>>,
}

impl std::fmt::Debug for LiveCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCert").finish_non_exhaustive()
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let entry = (self.current)()?;
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((fp, key)) = cache.as_ref() {
            if *fp == entry.fingerprint {
                return Some(Arc::clone(key));
            }
        }
        match certified_key(&entry, &self.ca) {
            Ok(k) => {
                let k = Arc::new(k);
                *cache = Some((entry.fingerprint.clone(), Arc::clone(&k)));
                Some(k)
            }
            Err(e) => {
                tracing::error!(error = %e, "stored node certificate unusable");
                None
            }
        }
    }
}

/// A server config that presents whatever `current` returns at each handshake.
pub fn live_server_config(current: CurrentCert, ca: &Ca) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LiveCert { current, ca: ca.clone(), cache: std::sync::Mutex::new(None) }));
    Ok(Arc::new(cfg))
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
