//! The SBOM attestation of a node image: an in-toto Statement v1 in a DSSE envelope, signed
//! with the same Nix-format keys as the manifest, whose subjects are the image files (name and
//! sha256, as the manifest lists them) and the manifest itself (by the sha256 of its bytes,
//! signatures included), with predicate type `https://cyclonedx.org/bom` (the in-toto
//! attestation predicate for CycloneDX) and the CycloneDX SBOM as predicate.
//!
//! Verifying checks, in this order, and a failure names the check: the envelope's format, a
//! signature by a trusted key, the predicate type, the predicate being a CycloneDX BOM, the
//! manifest digest, each image file's digest (every file of the manifest with a sha256 is a
//! subject, with that sha256, and there are no others), and that the SBOM's root component is
//! the manifest's system. Trusted keys come from the verifier's configuration only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::dsse::{DsseError, Envelope, Statement, Subject};
use crate::hash::Sha256Hash;
use crate::keys::{PublicKey, SecretKey};
use crate::manifest::{Manifest, ManifestError, SignedManifest};

/// in-toto's predicate type for a CycloneDX SBOM.
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("attestation check failed (manifest format): {0}")]
    Manifest(ManifestError),
    #[error("attestation check failed (SBOM format): {0}")]
    SbomFormat(String),
    #[error("attestation check failed (envelope format): {0}")]
    Envelope(DsseError),
    #[error("attestation check failed (signature by a trusted key): {0}")]
    Signature(DsseError),
    #[error("attestation check failed (predicate type): {0}")]
    PredicateType(DsseError),
    #[error("attestation check failed (manifest digest): no subject has the manifest's sha256 {want}; the attestation is about {subjects:?}")]
    ManifestDigest { want: String, subjects: Vec<String> },
    #[error("attestation check failed (image file digest): the manifest lists {name:?} with sha256 {want}, the attestation says {got}")]
    FileDigest { name: String, want: String, got: String },
    #[error(
        "attestation check failed (image file digest): the manifest's file {0:?} is not a subject of the attestation"
    )]
    FileMissing(String),
    #[error("attestation check failed (image file digest): subject {name:?} (sha256 {digest}) is neither a file of the manifest nor the manifest")]
    ExtraSubject { name: String, digest: String },
    #[error("attestation check failed (SBOM root): the SBOM describes {got:?}, the manifest's system is {want:?}")]
    SbomRoot { want: String, got: String },
}

impl AttestError {
    /// The check that failed, as printed in parentheses.
    pub fn check(&self) -> &'static str {
        match self {
            AttestError::Manifest(_) => "manifest format",
            AttestError::SbomFormat(_) => "SBOM format",
            AttestError::Envelope(_) => "envelope format",
            AttestError::Signature(_) => "signature by a trusted key",
            AttestError::PredicateType(_) => "predicate type",
            AttestError::ManifestDigest { .. } => "manifest digest",
            AttestError::FileDigest { .. } | AttestError::FileMissing(_) | AttestError::ExtraSubject { .. } => {
                "image file digest"
            }
            AttestError::SbomRoot { .. } => "SBOM root",
        }
    }
}

/// Where the attestation of `manifest` goes unless told otherwise: `sbom.intoto.json` beside a
/// `manifest.json`, else `<name>.sbom.intoto.json` beside `<name>.json`.
pub fn default_path(manifest: &Path) -> PathBuf {
    let name = manifest.file_name().and_then(|n| n.to_str()).unwrap_or("manifest.json");
    let file = match name.strip_suffix(".json") {
        Some("manifest") => "sbom.intoto.json".to_string(),
        Some(stem) => format!("{stem}.sbom.intoto.json"),
        None => format!("{name}.sbom.intoto.json"),
    };
    manifest.with_file_name(file)
}

/// The subjects an image's attestation names: each file with a sha256 under its manifest name,
/// then the manifest as `manifest_name` by the sha256 of `manifest_json`.
pub fn subjects(manifest: &Manifest, manifest_json: &[u8], manifest_name: &str) -> Vec<Subject> {
    let mut out: Vec<Subject> =
        manifest.files.iter().filter_map(|f| f.sha256.map(|h| Subject::sha256(&f.name, &h.to_hex()))).collect();
    out.push(Subject::sha256(manifest_name, &Sha256Hash::digest(manifest_json).to_hex()));
    out
}

fn check_sbom(sbom: &Value) -> Result<usize, String> {
    if sbom.get("bomFormat").and_then(Value::as_str) != Some("CycloneDX") {
        return Err("bomFormat is not \"CycloneDX\"".into());
    }
    match sbom.get("components") {
        None => Ok(0),
        Some(Value::Array(c)) => Ok(c.len()),
        Some(_) => Err("components is not an array".into()),
    }
}

/// Signs the SBOM attestation of the manifest `manifest_json` (the exact bytes of
/// `manifest.json`: any later co-signature changes them and needs a new attestation).
pub fn attest(
    manifest_json: &[u8],
    manifest_name: &str,
    sbom: &Value,
    keys: &[&SecretKey],
) -> Result<Envelope, AttestError> {
    let signed = SignedManifest::from_json(manifest_json).map_err(AttestError::Manifest)?;
    check_sbom(sbom).map_err(AttestError::SbomFormat)?;
    let st =
        Statement::new(subjects(signed.unverified(), manifest_json, manifest_name), CYCLONEDX_PREDICATE, sbom.clone());
    Ok(st.sign(keys))
}

/// What a verified attestation says.
#[derive(Debug, Clone)]
pub struct Attested {
    pub signed_by: BTreeSet<String>,
    pub subjects: Vec<Subject>,
    /// Number of SBOM components (the closure's store paths, less the root).
    pub components: usize,
    pub sbom: Value,
}

/// Verifies the attestation `envelope_json` of the manifest `manifest_json` (see the module
/// documentation for the checks). The manifest's own signature is not checked here
/// (`SignedManifest::verify` does that, maybe against other keys).
pub fn verify(
    manifest_json: &[u8],
    envelope_json: &[u8],
    trusted: &[PublicKey],
    threshold: usize,
) -> Result<Attested, AttestError> {
    let signed = SignedManifest::from_json(manifest_json).map_err(AttestError::Manifest)?;
    let manifest = signed.unverified();
    let env = Envelope::from_json(envelope_json).map_err(AttestError::Envelope)?;
    let (st, signed_by) = Statement::verify(&env, trusted, threshold, None).map_err(|e| match e {
        DsseError::Parse(_) | DsseError::PayloadType { .. } | DsseError::Statement(_) => AttestError::Envelope(e),
        _ => AttestError::Signature(e),
    })?;
    if st.predicate_type != CYCLONEDX_PREDICATE {
        return Err(AttestError::PredicateType(DsseError::Statement(format!(
            "predicateType is {:?}, expected {CYCLONEDX_PREDICATE:?}",
            st.predicate_type
        ))));
    }
    let components = check_sbom(&st.predicate).map_err(AttestError::SbomFormat)?;
    let sha = |s: &Subject| s.digest.get("sha256").cloned().unwrap_or_default();

    let mhex = Sha256Hash::digest(manifest_json).to_hex();
    let file_names: BTreeSet<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    let manifest_subject = st.subject.iter().position(|s| sha(s).eq_ignore_ascii_case(&mhex));
    let Some(manifest_subject) = manifest_subject else {
        return Err(AttestError::ManifestDigest {
            want: mhex,
            subjects: st
                .subject
                .iter()
                .filter(|s| !file_names.contains(s.name.as_str()))
                .map(|s| format!("{} sha256:{}", s.name, sha(s)))
                .collect(),
        });
    };
    for f in &manifest.files {
        let Some(want) = f.sha256.map(|h| h.to_hex()) else { continue };
        let got =
            st.subject.iter().find(|s| s.name == f.name).ok_or_else(|| AttestError::FileMissing(f.name.clone()))?;
        if !sha(got).eq_ignore_ascii_case(&want) {
            return Err(AttestError::FileDigest { name: f.name.clone(), want, got: sha(got) });
        }
    }
    for (i, s) in st.subject.iter().enumerate() {
        let listed = manifest.files.iter().any(|f| f.name == s.name && f.sha256.is_some());
        if i != manifest_subject && !listed {
            return Err(AttestError::ExtraSubject { name: s.name.clone(), digest: sha(s) });
        }
    }
    if let Some(root) = st.predicate.pointer("/metadata/component/bom-ref").and_then(Value::as_str) {
        if root != manifest.system {
            return Err(AttestError::SbomRoot { want: manifest.system.clone(), got: root.to_string() });
        }
    }
    Ok(Attested { signed_by, subjects: st.subject.clone(), components, sbom: st.predicate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths() {
        assert_eq!(default_path(Path::new("/r/manifest.json")), Path::new("/r/sbom.intoto.json"));
        assert_eq!(
            default_path(Path::new("/r/edge-1.manifest.json")),
            Path::new("/r/edge-1.manifest.sbom.intoto.json")
        );
        assert_eq!(default_path(Path::new("m")), Path::new("m.sbom.intoto.json"));
    }
}
