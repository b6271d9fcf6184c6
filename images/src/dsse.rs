//! DSSE envelopes carrying in-toto Statements: the established wrapper for signed evidence
//! (audit files, SBOM attestations), so a third party (`securesystemslib`, `in-toto`, sigstore
//! tooling) can check them without edgeform's code.
//!
//! The signature is Ed25519 over DSSE's pre-authentication encoding
//! `"DSSEv1" SP len(type) SP type SP len(body) SP body` (lengths as ASCII decimals), made with the
//! same Nix-format keys as image manifests and release channels; a signature's `keyid` is the
//! key's name, so a verifier looks it up in its own trusted list. Trusted keys only ever come
//! from the verifier's configuration, never from the envelope.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::{valid_signers, PublicKey, SecretKey, Signature};

/// The payload type of an in-toto Statement in DSSE.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 (`_type`).
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsseError {
    #[error("not a DSSE envelope: {0}")]
    Parse(String),
    #[error("payload type is {got:?}, expected {want:?}")]
    PayloadType { got: String, want: String },
    #[error("envelope has no signatures")]
    Unsigned,
    #[error("signature by trusted key {0:?} does not verify: the payload was altered or signed by another key with that name")]
    BadSignature(String),
    #[error("signed by key(s) {0:?}, none of which is trusted")]
    UnknownKey(Vec<String>),
    #[error("payload is not an in-toto Statement v1: {0}")]
    Statement(String),
}

/// A DSSE signature: `keyid` (the Nix key name) and the base64 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// A DSSE envelope as JSON (`payload` base64, `payloadType`, `signatures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// What a verified envelope carries: the payload bytes and the trusted keys that signed them.
#[derive(Debug, Clone)]
pub struct Verified {
    pub payload: Vec<u8>,
    pub signed_by: BTreeSet<String>,
}

impl Envelope {
    /// Sign `payload` with every key in `keys`.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SecretKey]) -> Self {
        let msg = pae(payload_type, payload);
        let signatures = keys
            .iter()
            .map(|k| {
                let s = k.sign(&msg);
                EnvelopeSignature { keyid: s.key_name, sig: B64.encode(s.bytes) }
            })
            .collect();
        Envelope { payload: B64.encode(payload), payload_type: payload_type.to_string(), signatures }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Parse(e.to_string()))
    }

    /// Pretty JSON with a final newline (the form written to disk).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The payload without checking anything (to say *what* a refused envelope claimed).
    pub fn payload_unverified(&self) -> Result<Vec<u8>, DsseError> {
        B64.decode(&self.payload).map_err(|e| DsseError::Parse(format!("payload: {e}")))
    }

    /// Checks the payload type and that at least `threshold` distinct trusted keys signed the
    /// exact payload. A signature that cannot even be decoded counts as bad, not as absent.
    pub fn verify(&self, payload_type: &str, trusted: &[PublicKey], threshold: usize) -> Result<Verified, DsseError> {
        if self.payload_type != payload_type {
            return Err(DsseError::PayloadType { got: self.payload_type.clone(), want: payload_type.to_string() });
        }
        if self.signatures.is_empty() {
            return Err(DsseError::Unsigned);
        }
        let payload = self.payload_unverified()?;
        let msg = pae(&self.payload_type, &payload);
        let mut sigs = Vec::new();
        for s in &self.signatures {
            let bytes = B64.decode(&s.sig).ok().and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok());
            match bytes {
                Some(bytes) => sigs.push(Signature { key_name: s.keyid.clone(), bytes }),
                None if trusted.iter().any(|k| k.name == s.keyid) => {
                    return Err(DsseError::BadSignature(s.keyid.clone()))
                }
                None => {}
            }
        }
        let (good, bad) = valid_signers(&msg, &sigs, trusted);
        if good.len() >= threshold.max(1) {
            return Ok(Verified { payload, signed_by: good });
        }
        match bad.into_iter().next() {
            Some(name) => Err(DsseError::BadSignature(name)),
            None => Err(DsseError::UnknownKey(self.signatures.iter().map(|s| s.keyid.clone()).collect())),
        }
    }
}

/// An artifact a Statement is about: a name and its digests (`sha256` → hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: &str, hex: &str) -> Self {
        Subject { name: name.to_string(), digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]) }
    }
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Statement { type_: STATEMENT_V1.to_string(), subject, predicate_type: predicate_type.to_string(), predicate }
    }

    /// Signs the Statement as an in-toto DSSE envelope.
    pub fn sign(&self, keys: &[&SecretKey]) -> Envelope {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        Envelope::sign(INTOTO_PAYLOAD_TYPE, &payload, keys)
    }

    /// Verifies an in-toto envelope and reads its Statement, checking `_type` and, when given,
    /// the predicate type.
    pub fn verify(
        env: &Envelope,
        trusted: &[PublicKey],
        threshold: usize,
        predicate_type: Option<&str>,
    ) -> Result<(Statement, BTreeSet<String>), DsseError> {
        let v = env.verify(INTOTO_PAYLOAD_TYPE, trusted, threshold)?;
        let st = Self::parse(&v.payload)?;
        if let Some(want) = predicate_type {
            if st.predicate_type != want {
                return Err(DsseError::Statement(format!(
                    "predicateType is {:?}, expected {want:?}",
                    st.predicate_type
                )));
            }
        }
        Ok((st, v.signed_by))
    }

    pub fn parse(payload: &[u8]) -> Result<Statement, DsseError> {
        let st: Statement = serde_json::from_slice(payload).map_err(|e| DsseError::Statement(e.to_string()))?;
        if st.type_ != STATEMENT_V1 {
            return Err(DsseError::Statement(format!("_type is {:?}", st.type_)));
        }
        if st.subject.is_empty() {
            return Err(DsseError::Statement("no subject".into()));
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DSSE specification's own test vector for PAE.
    #[test]
    fn pae_matches_the_specification() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_verify_and_each_refusal() {
        let k = SecretKey::generate("audit-1").unwrap();
        let other = SecretKey::generate("audit-1").unwrap();
        let st = Statement::new(
            vec![Subject::sha256("a", &"00".repeat(32))],
            "https://example/p",
            serde_json::json!({"x": 1}),
        );
        let env = st.sign(&[&k]);
        let (back, by) = Statement::verify(&env, &[k.public()], 1, Some("https://example/p")).unwrap();
        assert_eq!(back, st);
        assert_eq!(by, BTreeSet::from(["audit-1".to_string()]));

        // Same name, another key: a bad signature, not an unknown one.
        assert_eq!(
            env.verify(INTOTO_PAYLOAD_TYPE, &[other.public()], 1).unwrap_err(),
            DsseError::BadSignature("audit-1".into())
        );
        let stranger = SecretKey::generate("someone").unwrap();
        assert!(matches!(env.verify(INTOTO_PAYLOAD_TYPE, &[stranger.public()], 1), Err(DsseError::UnknownKey(_))));

        let mut edited = env.clone();
        let mut payload = edited.payload_unverified().unwrap();
        payload[10] ^= 1;
        edited.payload = B64.encode(payload);
        assert_eq!(
            edited.verify(INTOTO_PAYLOAD_TYPE, &[k.public()], 1).unwrap_err(),
            DsseError::BadSignature("audit-1".into())
        );

        // The type is signed too.
        let mut retyped = env.clone();
        retyped.payload_type = "application/json".into();
        assert!(matches!(retyped.verify(INTOTO_PAYLOAD_TYPE, &[k.public()], 1), Err(DsseError::PayloadType { .. })));
        assert!(Statement::verify(&env, &[k.public()], 2, None).is_err(), "threshold 2 with one signer");
    }
}
