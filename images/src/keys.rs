//! Ed25519 keys and signatures in Nix's text format: `name:base64`.
//! Secret keys hold 64 bytes (seed || public key, libsodium's layout), public keys 32 bytes,
//! signatures 64 bytes. A signature names the key that made it; verification looks the name up
//! in the trusted key list.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{what} {text:?} is not in Nix's `name:base64` form")]
    Format { what: &'static str, text: String },
    #[error("{what} {name:?} has {got} bytes after base64 decoding, expected {want}")]
    Length { what: &'static str, name: String, got: usize, want: usize },
    #[error("secret key {0:?} is inconsistent: its public half does not match its seed")]
    Inconsistent(String),
    #[error("public key {0:?} is not a valid Ed25519 point")]
    BadPoint(String),
}

fn split<'a>(what: &'static str, s: &'a str) -> Result<(&'a str, Vec<u8>), KeyError> {
    let s = s.trim();
    let fmt_err = || KeyError::Format { what, text: redact(what, s) };
    let (name, b64) = s.split_once(':').ok_or_else(fmt_err)?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(fmt_err());
    }
    let bytes = B64.decode(b64).map_err(|_| fmt_err())?;
    Ok((name, bytes))
}

/// Never echo secret material in an error message.
fn redact(what: &str, s: &str) -> String {
    if what == "secret key" {
        match s.split_once(':') {
            Some((n, _)) => format!("{n}:<redacted>"),
            None => "<redacted>".into(),
        }
    } else {
        s.to_string()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parse `name:base64(32 bytes)`, the output of `nix key convert-secret-to-public`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split("public key", s)?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            what: "public key",
            name: name.into(),
            got: bytes.len(),
            want: 32,
        })?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::BadPoint(name.into()))?;
        Ok(Self { name: name.to_string(), key })
    }

    /// Check a detached signature over `msg`. Returns false for a signature by another key name.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        if sig.key_name != self.name {
            return false;
        }
        let s = ed25519_dalek::Signature::from_bytes(&sig.bytes);
        self.key.verify(msg, &s).is_ok()
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, B64.encode(self.key.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Parse `name:base64(64 bytes)`, the output of `nix key generate-secret`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split("secret key", s)?;
        let arr: [u8; 64] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            what: "secret key",
            name: name.into(),
            got: bytes.len(),
            want: 64,
        })?;
        let key = SigningKey::from_keypair_bytes(&arr).map_err(|_| KeyError::Inconsistent(name.into()))?;
        Ok(Self { name: name.to_string(), key })
    }

    pub fn generate(name: &str) -> Result<Self, KeyError> {
        if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
            return Err(KeyError::Format { what: "key name", text: name.into() });
        }
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        Ok(Self { name: name.to_string(), key })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature { key_name: self.name.clone(), bytes: self.key.sign(msg).to_bytes() }
    }

    /// The secret key file contents (keep it private).
    pub fn to_nix_string(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:<redacted>)", self.name)
    }
}

/// A detached signature `name:base64(64 bytes)`, as in a narinfo `Sig:` line.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_name: String,
    pub bytes: [u8; 64],
}

impl Signature {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split("signature", s)?;
        let arr: [u8; 64] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            what: "signature",
            name: name.into(),
            got: bytes.len(),
            want: 64,
        })?;
        Ok(Self { key_name: name.to_string(), bytes: arr })
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_name, B64.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Signature::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Outcome of checking signatures against a trusted key list, so callers can say which check failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SigCheck {
    /// A trusted key made a valid signature.
    Valid(String),
    /// Some signature's key name is trusted but the signature does not verify.
    BadSignature(String),
    /// No signature is by a trusted key name (lists the names found).
    UnknownKey(Vec<String>),
}

pub fn check_signatures(msg: &[u8], sigs: &[Signature], trusted: &[PublicKey]) -> SigCheck {
    let mut bad = None;
    for sig in sigs {
        for k in trusted.iter().filter(|k| k.name == sig.key_name) {
            if k.verify(msg, sig) {
                return SigCheck::Valid(k.name.clone());
            }
            bad = Some(k.name.clone());
        }
    }
    match bad {
        Some(n) => SigCheck::BadSignature(n),
        None => SigCheck::UnknownKey(sigs.iter().map(|s| s.key_name.clone()).collect()),
    }
}

/// The trusted keys (by name) with a valid signature over `msg` — each key counted once, so a
/// threshold of k means k different keys. Also the trusted names whose signature does not
/// verify, so a refusal can say which.
pub fn valid_signers(
    msg: &[u8],
    sigs: &[Signature],
    trusted: &[PublicKey],
) -> (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) {
    let (mut good, mut bad) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for sig in sigs {
        for k in trusted.iter().filter(|k| k.name == sig.key_name) {
            if k.verify(msg, sig) {
                good.insert(k.name.clone());
            } else {
                bad.insert(k.name.clone());
            }
        }
    }
    bad.retain(|n| !good.contains(n));
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip() {
        let sk = SecretKey::generate("test-1").unwrap();
        let sk2 = SecretKey::parse(&sk.to_nix_string()).unwrap();
        let pk = PublicKey::parse(&sk2.public().to_string()).unwrap();
        let sig = sk.sign(b"msg");
        let sig = Signature::parse(&sig.to_string()).unwrap();
        assert!(pk.verify(b"msg", &sig));
        assert!(!pk.verify(b"msh", &sig));
        let other = SecretKey::generate("test-1").unwrap().public();
        assert_eq!(
            check_signatures(b"msg", std::slice::from_ref(&sig), &[other]),
            SigCheck::BadSignature("test-1".into())
        );
        assert!(matches!(check_signatures(b"msg", &[sig], &[]), SigCheck::UnknownKey(_)));
        assert!(PublicKey::parse("nocolon").is_err());
        let e = SecretKey::parse("k:AAAA").unwrap_err().to_string();
        assert!(!e.contains("AAAA") || e.contains("bytes"), "{e}");
    }
}
