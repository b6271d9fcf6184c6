//! The signed image manifest: names a node image (system store path, image files with their
//! NAR hash, sha256 and size, closure references, version, build metadata) and carries Nix-format
//! Ed25519 signatures over a canonical byte form.
//!
//! Canonical form: `edgeform-image-manifest-v1\n` followed by the manifest as compact JSON with
//! object keys sorted (serde_json's default map is ordered). The signature covers the manifest
//! exactly as received (unknown fields included), so nothing can be added unsigned.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::hash::{file_hashes, nar_hash, Sha256Hash};
use crate::keys::{check_signatures, PublicKey, SecretKey, SigCheck, Signature};
use crate::nar::NarError;

pub const FORMAT: &str = "edgeform-image-manifest/1";
const DOMAIN: &[u8] = b"edgeform-image-manifest-v1\n";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Parse(String),
    #[error("manifest format {0:?} is not supported (expected {FORMAT:?})")]
    Format(String),
    #[error("manifest has no signatures")]
    Unsigned,
    #[error("manifest is signed by key(s) {0:?}, none of which is in the trusted key list")]
    UnknownKey(Vec<String>),
    #[error("manifest signature by trusted key {0:?} does not verify: the manifest was altered or signed by a different key with that name")]
    BadSignature(String),
    #[error("image file {0:?} is not listed in the manifest")]
    NotListed(String),
    #[error("image file {name:?} is missing: {path} does not exist")]
    MissingFile { name: String, path: String },
    #[error("image file {name:?} ({path}) has size {actual} bytes, manifest says {expected}")]
    SizeMismatch { name: String, path: String, expected: u64, actual: u64 },
    #[error("hash mismatch for image file {name:?} ({path}): {kind} is {actual}, manifest says {expected}")]
    HashMismatch { name: String, path: String, kind: &'static str, expected: String, actual: String },
    #[error("cannot hash image file {name:?}: {source}")]
    Read { name: String, source: NarError },
}

/// One file of the image (e.g. `nixos.img`), or a directory (then `sha256` is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    pub name: String,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hash>,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    /// Free-form facts about the build (git revision, builder, nix version, flake output).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// Image version, chosen by the publisher (e.g. `2026.11.1`).
    pub version: String,
    /// The NixOS system's top-level store path.
    pub system: String,
    /// NAR hash of the system path, when it was available at signing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_nar_hash: Option<Sha256Hash>,
    pub files: Vec<ImageFile>,
    /// Store paths in the system's closure (sorted).
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub build: BuildInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    manifest: serde_json::Value,
    signatures: Vec<Signature>,
}

/// A manifest with its signatures, as stored in `manifest.json`.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    raw: serde_json::Value,
    manifest: Manifest,
    pub signatures: Vec<Signature>,
}

fn canonical_bytes(v: &serde_json::Value) -> Vec<u8> {
    canonical::signed_bytes(DOMAIN, v)
}

impl Manifest {
    pub fn new(version: &str, system: &str) -> Self {
        Self {
            format: FORMAT.into(),
            version: version.into(),
            system: system.into(),
            system_nar_hash: None,
            files: Vec::new(),
            references: Vec::new(),
            build: BuildInfo::default(),
        }
    }

    /// Describe a file on disk under `name` (hashes taken now).
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<(), ManifestError> {
        let read = |source| ManifestError::Read { name: name.into(), source };
        let meta = std::fs::symlink_metadata(path)
            .map_err(|_| ManifestError::MissingFile { name: name.into(), path: path.display().to_string() })?;
        let entry = if meta.is_file() {
            let h = file_hashes(path).map_err(read)?;
            ImageFile {
                name: name.into(),
                nar_hash: h.nar_hash,
                nar_size: h.nar_size,
                sha256: Some(h.sha256),
                size: h.size,
            }
        } else {
            let (nh, ns) = nar_hash(path).map_err(read)?;
            ImageFile { name: name.into(), nar_hash: nh, nar_size: ns, sha256: None, size: 0 }
        };
        self.files.retain(|f| f.name != name);
        self.files.push(entry);
        Ok(())
    }

    /// Sign; the result can be written out with [`SignedManifest::to_json`].
    pub fn sign(&self, keys: &[&SecretKey]) -> SignedManifest {
        let raw = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let msg = canonical_bytes(&raw);
        let signatures = keys.iter().map(|k| k.sign(&msg)).collect();
        SignedManifest { raw, manifest: self.clone(), signatures }
    }

    /// Check one image file on disk against its entry: exists, size, sha256, NAR hash.
    pub fn verify_file(&self, name: &str, path: &Path) -> Result<(), ManifestError> {
        let entry = self.files.iter().find(|f| f.name == name).ok_or_else(|| ManifestError::NotListed(name.into()))?;
        let shown = path.display().to_string();
        let meta = std::fs::symlink_metadata(path)
            .map_err(|_| ManifestError::MissingFile { name: name.into(), path: shown.clone() })?;
        let read = |source| ManifestError::Read { name: name.into(), source };
        let mismatch = |kind, expected: Sha256Hash, actual: Sha256Hash| ManifestError::HashMismatch {
            name: name.into(),
            path: shown.clone(),
            kind,
            expected: expected.to_string(),
            actual: actual.to_string(),
        };
        if meta.is_file() {
            if meta.len() != entry.size {
                return Err(ManifestError::SizeMismatch {
                    name: name.into(),
                    path: shown.clone(),
                    expected: entry.size,
                    actual: meta.len(),
                });
            }
            let h = file_hashes(path).map_err(read)?;
            if let Some(want) = entry.sha256 {
                if h.sha256 != want {
                    return Err(mismatch("sha256", want, h.sha256));
                }
            }
            if h.nar_hash != entry.nar_hash {
                return Err(mismatch("NAR hash", entry.nar_hash, h.nar_hash));
            }
        } else {
            let (nh, _) = nar_hash(path).map_err(read)?;
            if nh != entry.nar_hash {
                return Err(mismatch("NAR hash", entry.nar_hash, nh));
            }
        }
        Ok(())
    }

    /// Check every listed file, found as `dir/<name>`.
    pub fn verify_files_in(&self, dir: &Path) -> Result<(), ManifestError> {
        for f in &self.files {
            self.verify_file(&f.name, &dir.join(&f.name))?;
        }
        Ok(())
    }
}

impl SignedManifest {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        let manifest: Manifest =
            serde_json::from_value(env.manifest.clone()).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(ManifestError::Format(manifest.format));
        }
        Ok(Self { raw: env.manifest, manifest, signatures: env.signatures })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let env = Envelope { manifest: self.raw.clone(), signatures: self.signatures.clone() };
        let mut v = serde_json::to_vec_pretty(&env).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Add another signature (co-signing); replaces an existing one by the same key name.
    pub fn add_signature(&mut self, key: &SecretKey) {
        let sig = key.sign(&canonical_bytes(&self.raw));
        self.signatures.retain(|s| s.key_name != sig.key_name);
        self.signatures.push(sig);
    }

    /// The manifest, only after a trusted key's valid signature has been found.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<&Manifest, ManifestError> {
        if self.signatures.is_empty() {
            return Err(ManifestError::Unsigned);
        }
        match check_signatures(&canonical_bytes(&self.raw), &self.signatures, trusted) {
            SigCheck::Valid(_) => Ok(&self.manifest),
            SigCheck::BadSignature(k) => Err(ManifestError::BadSignature(k)),
            SigCheck::UnknownKey(names) => Err(ManifestError::UnknownKey(names)),
        }
    }

    /// The manifest without checking signatures (for display only).
    pub fn unverified(&self) -> &Manifest {
        &self.manifest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_tamper() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("nixos.img");
        std::fs::write(&f, b"disk image bytes").unwrap();
        let mut m = Manifest::new("1.0", "/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-nixos-system");
        m.add_file("nixos.img", &f).unwrap();
        let k = SecretKey::generate("ci-1").unwrap();
        let json = m.sign(&[&k]).to_json();
        let s = SignedManifest::from_json(&json).unwrap();
        let v = s.verify(&[k.public()]).unwrap();
        v.verify_file("nixos.img", &f).unwrap();

        let other = SecretKey::generate("ci-2").unwrap();
        assert!(matches!(s.verify(&[other.public()]), Err(ManifestError::UnknownKey(_))));
        let same_name = SecretKey::generate("ci-1").unwrap();
        assert!(matches!(s.verify(&[same_name.public()]), Err(ManifestError::BadSignature(_))));

        let text = String::from_utf8(json).unwrap().replace("\"1.0\"", "\"1.1\"");
        let t = SignedManifest::from_json(text.as_bytes()).unwrap();
        assert!(matches!(t.verify(&[k.public()]), Err(ManifestError::BadSignature(_))));

        std::fs::write(&f, b"disk image bytez").unwrap();
        let e = v.verify_file("nixos.img", &f).unwrap_err();
        assert!(matches!(e, ManifestError::HashMismatch { kind: "sha256", .. }), "{e}");
        std::fs::write(&f, b"disk image").unwrap();
        assert!(matches!(v.verify_file("nixos.img", &f), Err(ManifestError::SizeMismatch { .. })));
        std::fs::remove_file(&f).unwrap();
        assert!(matches!(v.verify_file("nixos.img", &f), Err(ManifestError::MissingFile { .. })));
    }
}
