//! Cosign-compatible blob signatures: what `cosign sign-blob --key cosign.key FILE` (and
//! `openssl dgst -sha256 -sign key.pem FILE | base64 -w0`) produce — ECDSA P-256 over the
//! SHA-256 of the file, ASN.1 DER, base64 on one line — checked against a PEM public key
//! (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), the form `cosign generate-key-pair`
//! writes as `cosign.pub`.
//!
//! Files are hashed while they stream and the signature is checked against that prehash, so a
//! multi-GB image is never read into memory. Only P-256 keys are accepted; any other algorithm
//! or curve is refused by name. Trusted keys only ever come from the verifier's configuration,
//! never from the artifact.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::der::asn1::ObjectIdentifier;
use p256::pkcs8::der::{pem, Decode};
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// Well-known algorithm and curve OIDs, so a refused key says what it is.
fn oid_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.10040.4.1" => "DSA",
        ID_EC_PUBLIC_KEY => "EC",
        PRIME256V1 => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        _ => return None,
    })
}

fn describe(oid: &ObjectIdentifier) -> String {
    let s = oid.to_string();
    match oid_name(&s) {
        Some(n) => format!("{n} ({s})"),
        None => s,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignError {
    #[error(
        "not a PEM public key: {0} (expected `-----BEGIN PUBLIC KEY-----`, e.g. cosign.pub or `openssl ec -pubout`)"
    )]
    Pem(String),
    #[error("PEM label is {0:?}, expected \"PUBLIC KEY\" (a SubjectPublicKeyInfo; give the public key, never the private one)")]
    Label(String),
    #[error("public key is {0}; Cosign keys must be ECDSA P-256 (prime256v1)")]
    Algorithm(String),
    #[error("public key is ECDSA on curve {0}; Cosign keys must be P-256 (prime256v1)")]
    Curve(String),
    #[error("invalid P-256 public key: {0}")]
    Key(String),
    #[error("signature is not base64: {0}")]
    Base64(String),
    #[error("signature is not an ASN.1 DER ECDSA signature: {0}")]
    Der(String),
    #[error("Cosign signature does not verify with {key}: the file was altered, or signed by another key")]
    BadSignature { key: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
}

/// A trusted Cosign public key (ECDSA P-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignPublicKey {
    key: VerifyingKey,
}

impl CosignPublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding a P-256 key; any other
    /// algorithm (RSA, Ed25519, …) or curve (P-384, secp256k1, …) is refused by name.
    pub fn from_pem(text: &str) -> Result<Self, CosignError> {
        let text = text.trim();
        let (label, der) = pem::decode_vec(text.as_bytes()).map_err(|e| CosignError::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(CosignError::Label(label.to_string()));
        }
        Self::from_spki_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo holding a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CosignError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| CosignError::Pem(e.to_string()))?;
        let alg = spki.algorithm.oid.to_string();
        if alg != ID_EC_PUBLIC_KEY {
            return Err(CosignError::Algorithm(describe(&spki.algorithm.oid)));
        }
        let curve = spki.algorithm.parameters_oid().map_err(|e| CosignError::Key(format!("no named curve: {e}")))?;
        if curve.to_string() != PRIME256V1 {
            return Err(CosignError::Curve(describe(&curve)));
        }
        let point =
            spki.subject_public_key.as_bytes().ok_or_else(|| CosignError::Key("unaligned bit string".into()))?;
        let key = VerifyingKey::from_sec1_bytes(point).map_err(|e| CosignError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// Reads a PEM key file.
    pub fn from_file(path: &Path) -> Result<Self, CosignError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CosignError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_pem(&text)
    }

    /// A short name for messages: `p256:` and the first 16 hex digits of the SHA-256 of the
    /// compressed point (stable, and distinct per key).
    pub fn id(&self) -> String {
        let point = self.key.to_encoded_point(true);
        let h = crate::hash::Sha256Hash::digest(point.as_bytes()).to_hex();
        format!("p256:{}", &h[..16])
    }

    /// Checks a signature (as parsed by [`parse_signature`]) over a SHA-256 digest.
    pub fn verify_prehash(&self, digest: &[u8; 32], sig: &Signature) -> Result<(), CosignError> {
        // OpenSSL and Go's crypto/ecdsa emit high-S signatures too: accept both forms.
        let sig = sig.normalize_s().unwrap_or(*sig);
        self.key.verify_prehash(digest, &sig).map_err(|_| CosignError::BadSignature { key: self.id() })
    }
}

/// Parses a Cosign signature file's contents: base64 (surrounding whitespace ignored) of an
/// ASN.1 DER ECDSA signature.
pub fn parse_signature(text: &str) -> Result<Signature, CosignError> {
    let compact: String = text.split_whitespace().collect();
    let der = B64.decode(compact.as_bytes()).map_err(|e| CosignError::Base64(e.to_string()))?;
    Signature::from_der(&der).map_err(|e| CosignError::Der(e.to_string()))
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<[u8; 32], CosignError> {
    let (h, _) = crate::hash::sha256_file(path)
        .map_err(|e| CosignError::Read { path: path.display().to_string(), message: e.to_string() })?;
    Ok(h.0)
}

/// The first of `keys` whose valid signature `sig_text` is over `digest` (SHA-256 of the
/// signed bytes). With several keys, a failure names the last key tried.
pub fn verify_digest<'k>(
    digest: &[u8; 32],
    sig_text: &str,
    keys: &'k [CosignPublicKey],
) -> Result<&'k CosignPublicKey, CosignError> {
    let sig = parse_signature(sig_text)?;
    let mut last = CosignError::BadSignature { key: "no trusted Cosign key".into() };
    for k in keys {
        match k.verify_prehash(digest, &sig) {
            Ok(()) => return Ok(k),
            Err(e) => last = e,
        }
    }
    if keys.len() > 1 {
        if let CosignError::BadSignature { .. } = last {
            last = CosignError::BadSignature { key: format!("any of the {} trusted Cosign keys", keys.len()) };
        }
    }
    Err(last)
}

/// Verifies a Cosign signature over `data`.
pub fn verify_bytes<'k>(
    data: &[u8],
    sig_text: &str,
    keys: &'k [CosignPublicKey],
) -> Result<&'k CosignPublicKey, CosignError> {
    verify_digest(&crate::hash::Sha256Hash::digest(data).0, sig_text, keys)
}

/// Verifies a Cosign signature over a file, hashing it as it streams.
pub fn verify_file<'k>(
    path: &Path,
    sig_text: &str,
    keys: &'k [CosignPublicKey],
) -> Result<&'k CosignPublicKey, CosignError> {
    // Parse first: a malformed signature is reported without reading a large file.
    parse_signature(sig_text)?;
    verify_digest(&sha256_file(path)?, sig_text, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl ecparam -name prime256v1 -genkey -noout -out k.pem; openssl ec -in k.pem -pubout`
    const PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjnNOL9DtJNAdkXvoCGL1MTmwUpTl
IpIdRiw0kwIOwug7GsU3nUUQCzC1vxhr+tLEsNmHiXB3AJXmR3V1/c+UEw==
-----END PUBLIC KEY-----
";

    #[test]
    fn refuses_what_is_not_a_public_key() {
        assert!(matches!(CosignPublicKey::from_pem("hello"), Err(CosignError::Pem(_))));
        let private = PUB.replace("PUBLIC KEY", "EC PRIVATE KEY");
        assert_eq!(CosignPublicKey::from_pem(&private).unwrap_err(), CosignError::Label("EC PRIVATE KEY".into()));
        assert!(matches!(parse_signature("not base64!"), Err(CosignError::Base64(_))));
        assert!(matches!(parse_signature("AAAA"), Err(CosignError::Der(_))));
    }

    #[test]
    fn id_is_stable() {
        let k = CosignPublicKey::from_pem(PUB).unwrap();
        assert_eq!(k.id(), CosignPublicKey::from_pem(PUB).unwrap().id());
        assert!(k.id().starts_with("p256:"));
    }
}
