//! AutoMTLS as go-plugin does it: Terraform passes its client certificate in
//! `PLUGIN_CLIENT_CERT`; we answer with a fresh self-signed server certificate (for
//! "localhost", which is the name go-plugin verifies) and accept exactly that client certificate.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("PLUGIN_CLIENT_CERT holds no PEM certificate")]
    NoClientCert,
    #[error("could not read PLUGIN_CLIENT_CERT: {0}")]
    ClientCertPem(std::io::Error),
    #[error("could not generate the server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_der: Vec<u8>,
}

/// Builds the server side of AutoMTLS from the PEM client certificate Terraform sent.
pub fn auto_mtls(client_cert_pem: &str) -> Result<ServerTls, TlsError> {
    let client = rustls_pemfile::certs(&mut client_cert_pem.as_bytes())
        .next()
        .ok_or(TlsError::NoClientCert)?
        .map_err(TlsError::ClientCertPem)?;

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "edgeform plugin");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key)?;
    let cert_der = cert.der().to_vec();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ExactClientCert { expected: client.to_vec(), provider: provider.clone() });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    // gRPC clients (grpc-go ≥ 1.67) insist on ALPN h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls { config: Arc::new(config), cert_der })
}

/// Accepts exactly one certificate: the one Terraform generated for this session. (A chain check
/// would not do: go-plugin's certificate is its own CA, which webpki refuses as an end entity.)
#[derive(Debug)]
struct ExactClientCert {
    expected: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for ExactClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return verify_p521(message, cert, dss);
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return verify_p521(message, cert, dss);
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // go-plugin's client key is ECDSA P-521, which ring cannot verify: without this scheme
        // in the CertificateRequest, Go sends no client certificate at all.
        let mut schemes = self.provider.signature_verification_algorithms.supported_schemes();
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

/// Verifies an ECDSA P-521 / SHA-512 handshake signature with the RustCrypto `p521` crate.
fn verify_p521(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use p521::ecdsa::signature::Verifier;
    use p521::pkcs8::DecodePublicKey;
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| bad())?;
    let spki = ee.subject_public_key_info();
    let public = p521::PublicKey::from_public_key_der(spki.as_ref()).map_err(|_| bad())?;
    let key = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).map_err(|_| bad())?;
    let sig = p521::ecdsa::Signature::from_der(dss.signature()).map_err(|_| bad())?;
    key.verify(message, &sig).map_err(|_| bad())?;
    Ok(HandshakeSignatureValid::assertion())
}
