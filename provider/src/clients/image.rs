//! Signed node images: load a manifest (`edge-images` format) from a path or an http(s) URL,
//! check its signature against the provider's `trusted_image_keys` — or, where the image block
//! sets `trusted_cosign_keys`, a Cosign signature of manifest.json (`cosign sign-blob`) — and
//! check an image file against the manifest (size, sha256, NAR hash). Every failure names the
//! check that failed, so a refused image says *why* before anything touches a machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_images::cosign::{self, CosignPublicKey};
use edge_images::keys::PublicKey;
use edge_images::manifest::{ImageFile, Manifest, ManifestError, SignedManifest};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no trusted image keys: set the provider's trusted_image_keys (or EDGE_TRUSTED_IMAGE_KEYS), or image.trusted_cosign_keys, so signed images can be checked")]
    NoTrustedKeys,
    #[error("trusted_image_keys[{index}] is not a public key: {message}")]
    BadKey { index: usize, message: String },
    #[error("image.trusted_cosign_keys[{index}] is not a Cosign public key: {source}")]
    BadCosignKey { index: usize, source: cosign::CosignError },
    #[error("cannot fetch the Cosign signature {source_name} (image.manifest_cosign_signature): {message}")]
    FetchSignature { source_name: String, message: String },
    #[error("manifest check failed (signed by a trusted key): {nix}; and its Cosign signature {signature} (image.manifest_cosign_signature) failed the check ({cosign_check}): {cosign}")]
    Untrusted { nix: String, signature: String, cosign_check: &'static str, cosign: String },
    #[error("cannot fetch the manifest {source_name}: {message}")]
    FetchManifest { source_name: String, message: String },
    #[error("manifest check failed ({check}): {source}")]
    Manifest { check: &'static str, source: Box<ManifestError> },
    #[error("the manifest lists no image file named {0:?}")]
    NoSuchFile(String),
    #[error("the manifest lists {0} files; set image.file to the one the BMC boots")]
    AmbiguousFile(usize),
    #[error("cannot fetch the image {url}: {message}")]
    FetchImage { url: String, message: String },
    #[error("image file check failed ({check}): {source}")]
    File { check: &'static str, source: Box<ManifestError> },
}

/// A manifest whose signature was checked, and the file of it the node boots.
#[derive(Clone, Debug)]
pub struct VerifiedImage {
    pub manifest: Manifest,
    pub file: ImageFile,
    /// The key name that signed it (first valid signature).
    pub signed_by: Vec<String>,
}

impl VerifiedImage {
    /// Lowercase hex sha256 of the boot file (what the lab and `sha256sum` print).
    pub fn sha256_hex(&self) -> Option<String> {
        self.file.sha256.map(|h| h.to_hex())
    }
}

/// What a manifest may be trusted through: Nix-format keys (the provider's
/// `trusted_image_keys`) or Cosign keys (the image block's `trusted_cosign_keys`, PEM) with the
/// signature's location (`manifest_cosign_signature`, default `<manifest>.sig`). Both come from
/// the configuration only, never from the artifact.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub keys: Vec<String>,
    pub cosign_keys: Vec<String>,
    pub cosign_signature: Option<String>,
}

impl Trust {
    pub fn nix(keys: &[String]) -> Self {
        Trust { keys: keys.to_vec(), ..Default::default() }
    }

    /// Where the Cosign signature of the manifest at `manifest` is read from.
    pub fn signature_source(&self, manifest: &str) -> String {
        self.cosign_signature.clone().unwrap_or_else(|| format!("{manifest}.sig"))
    }
}

/// Parses the image block's `trusted_cosign_keys` (PEM, ECDSA P-256).
pub fn cosign_keys(pems: &[String]) -> Result<Vec<CosignPublicKey>, ImageError> {
    pems.iter()
        .enumerate()
        .map(|(index, k)| CosignPublicKey::from_pem(k).map_err(|source| ImageError::BadCosignKey { index, source }))
        .collect()
}

pub fn trusted_keys(keys: &[String]) -> Result<Vec<PublicKey>, ImageError> {
    if keys.is_empty() {
        return Err(ImageError::NoTrustedKeys);
    }
    keys.iter()
        .enumerate()
        .map(|(index, k)| PublicKey::parse(k).map_err(|e| ImageError::BadKey { index, message: e.to_string() }))
        .collect()
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// A location [`fetch_manifest`] can read: an http(s) URL, or a local path
/// (`file://` allowed). Anything else with a scheme would be read as a relative path.
pub fn check_location(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("empty: give a local path or an http(s) URL of manifest.json".into());
    }
    if is_url(s) {
        let host = s.split_once("://").map(|(_, r)| r.split('/').next().unwrap_or("")).unwrap_or("");
        if host.is_empty() {
            return Err(format!("{s:?} has no host: use e.g. \"https://images.example/edge/manifest.json\""));
        }
        return Ok(());
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "file" {
            return Err(format!("{s:?}: the {scheme}:// scheme is not supported; use a local path or an http(s) URL"));
        }
    }
    Ok(())
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .use_rustls_tls()
        .build()
        .map_err(|e| e.to_string())
}

/// Reads the manifest bytes from a local path (`file://` allowed) or an http(s) URL.
pub async fn fetch_manifest(source: &str) -> Result<Vec<u8>, ImageError> {
    let fail = |message: String| ImageError::FetchManifest { source_name: source.to_string(), message };
    if is_url(source) {
        let resp = http().map_err(fail)?.get(source).send().await.map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        Ok(resp.bytes().await.map_err(|e| fail(e.to_string()))?.to_vec())
    } else {
        let path = source.strip_prefix("file://").unwrap_or(source);
        tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))
    }
}

/// Parses and verifies a manifest, and picks the file to boot (`file`, or the only file with a
/// sha256). Checks: parse/format, signature present, signer trusted, signature valid.
pub fn verify_manifest(bytes: &[u8], trusted: &[String], file: Option<&str>) -> Result<VerifiedImage, ImageError> {
    verify_manifest_trusted(bytes, &Trust::nix(trusted), None, file)
}

/// As [`verify_manifest`], where a valid Cosign signature of the manifest bytes by one of
/// `trust.cosign_keys` also suffices: `cosign_signature` is the signature file's contents (or
/// why it could not be read), consulted only when the Nix-format check fails.
pub fn verify_manifest_trusted(
    bytes: &[u8],
    trust: &Trust,
    cosign_signature: Option<Result<String, ImageError>>,
    file: Option<&str>,
) -> Result<VerifiedImage, ImageError> {
    let VerifiedManifest { manifest, signed_by, .. } = verify_signed(bytes, trust, cosign_signature)?;
    let file = pick_file(&manifest, file)?;
    Ok(VerifiedImage { manifest, file, signed_by })
}

/// A manifest whose signature was checked, with every file it lists.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    pub manifest: Manifest,
    /// The trusted keys that signed it (`cosign:<id>` for a Cosign key).
    pub signed_by: Vec<String>,
    /// Lowercase hex sha256 of the manifest file as read (what `sha256sum manifest.json` prints).
    pub sha256: String,
}

/// The signature checks of [`verify_manifest_trusted`], without choosing a file.
pub fn verify_signed(
    bytes: &[u8],
    trust: &Trust,
    cosign_signature: Option<Result<String, ImageError>>,
) -> Result<VerifiedManifest, ImageError> {
    if trust.keys.is_empty() && trust.cosign_keys.is_empty() {
        return Err(ImageError::NoTrustedKeys);
    }
    let keys = if trust.keys.is_empty() { Vec::new() } else { trusted_keys(&trust.keys)? };
    let ckeys = cosign_keys(&trust.cosign_keys)?;
    let signed = SignedManifest::from_json(bytes)
        .map_err(|source| ImageError::Manifest { check: "format", source: Box::new(source) })?;
    let nix = signed.verify(&keys).map_err(|source| {
        let check = match source {
            ManifestError::Unsigned => "signature present",
            ManifestError::UnknownKey(_) => "signed by a trusted key",
            _ => "signature valid",
        };
        ImageError::Manifest { check, source: Box::new(source) }
    });
    let (manifest, signed_by) = match nix {
        Ok(m) => {
            let trusted_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
            let by = signed
                .signatures
                .iter()
                .map(|s| s.key_name.clone())
                .filter(|n| trusted_names.contains(&n.as_str()))
                .collect();
            (m.clone(), by)
        }
        Err(nix_err) if !ckeys.is_empty() => {
            let nix = if keys.is_empty() {
                "no trusted_image_keys for its Nix signatures".to_string()
            } else {
                nix_err.to_string()
            };
            let signature = trust.cosign_signature.clone().unwrap_or_else(|| "<manifest>.sig".into());
            let untrusted = |cosign_check, cosign: String| ImageError::Untrusted {
                nix: nix.clone(),
                signature: signature.clone(),
                cosign_check,
                cosign,
            };
            let text = match cosign_signature {
                Some(Ok(t)) => t,
                Some(Err(e)) => return Err(untrusted("signature present", e.to_string())),
                None => return Err(untrusted("signature present", "not read".into())),
            };
            let k = cosign::verify_bytes(bytes, &text, &ckeys).map_err(|e| {
                let check = match e {
                    cosign::CosignError::Base64(_) | cosign::CosignError::Der(_) => "signature format",
                    _ => "signature valid",
                };
                untrusted(check, e.to_string())
            })?;
            (signed.unverified().clone(), vec![format!("cosign:{}", k.id())])
        }
        Err(e) => return Err(e),
    };
    Ok(VerifiedManifest { manifest, signed_by, sha256: edge_images::hash::Sha256Hash::digest(bytes).to_hex() })
}

/// The file of `manifest` the node boots: `file`, or the only file with a sha256.
fn pick_file(manifest: &Manifest, file: Option<&str>) -> Result<ImageFile, ImageError> {
    let file = match file {
        Some(name) => manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .ok_or_else(|| ImageError::NoSuchFile(name.into()))?,
        None => {
            let files: Vec<&ImageFile> = manifest.files.iter().filter(|f| f.sha256.is_some()).collect();
            match files.as_slice() {
                [one] => (*one).clone(),
                _ => return Err(ImageError::AmbiguousFile(files.len())),
            }
        }
    };
    Ok(file)
}

/// Loads and verifies a manifest from a path or URL.
pub async fn load(source: &str, trusted: &[String], file: Option<&str>) -> Result<VerifiedImage, ImageError> {
    load_trusted(source, &Trust::nix(trusted), file).await
}

/// Loads and verifies a manifest from a path or URL, with its Cosign signature (read only when
/// `trust` has Cosign keys).
pub async fn load_trusted(source: &str, trust: &Trust, file: Option<&str>) -> Result<VerifiedImage, ImageError> {
    let (bytes, trust, sig) = fetch_signed(source, trust).await?;
    verify_manifest_trusted(&bytes, &trust, sig, file)
}

/// Loads a manifest from a path or URL and checks its signature; every file it lists is kept.
pub async fn load_signed(source: &str, trust: &Trust) -> Result<VerifiedManifest, ImageError> {
    let (bytes, trust, sig) = fetch_signed(source, trust).await?;
    verify_signed(&bytes, &trust, sig)
}

/// The manifest's bytes, the trust with the signature's location filled in, and the Cosign
/// signature (read only when `trust` has Cosign keys).
async fn fetch_signed(
    source: &str,
    trust: &Trust,
) -> Result<(Vec<u8>, Trust, Option<Result<String, ImageError>>), ImageError> {
    let bytes = fetch_manifest(source).await?;
    let sig = if trust.cosign_keys.is_empty() {
        None
    } else {
        let from = trust.signature_source(source);
        Some(
            fetch_manifest(&from)
                .await
                .map_err(|e| ImageError::FetchSignature {
                    source_name: from.clone(),
                    message: match e {
                        ImageError::FetchManifest { message, .. } => message,
                        other => other.to_string(),
                    },
                })
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| ImageError::FetchSignature {
                        source_name: from.clone(),
                        message: "not text (expected base64)".into(),
                    })
                }),
        )
    };
    let mut trust = trust.clone();
    trust.cosign_signature = Some(trust.signature_source(source));
    Ok((bytes, trust, sig))
}

/// Checks the image the BMC will boot against the verified manifest: a local path is checked
/// in place, a URL is downloaded into a temporary directory first (what the BMC will fetch).
pub async fn verify_image(img: &VerifiedImage, location: &str) -> Result<(), ImageError> {
    let name = img.file.name.clone();
    let check = |path: PathBuf, manifest: Manifest| async move {
        tokio::task::spawn_blocking(move || manifest.verify_file(&name, &path))
            .await
            .map_err(|e| ImageError::FetchImage { url: "hash worker".into(), message: e.to_string() })?
            .map_err(|source| {
                let check = match source {
                    ManifestError::SizeMismatch { .. } => "size",
                    ManifestError::HashMismatch { kind: "sha256", .. } => "sha256",
                    ManifestError::HashMismatch { .. } => "NAR hash",
                    ManifestError::MissingFile { .. } => "file present",
                    _ => "file",
                };
                ImageError::File { check, source: Box::new(source) }
            })
    };
    if is_url(location) {
        let dir = tempfile::tempdir()
            .map_err(|e| ImageError::FetchImage { url: location.into(), message: format!("temp dir: {e}") })?;
        let path = dir.path().join("image");
        download(location, &path, img.file.size).await?;
        check(path, img.manifest.clone()).await
    } else {
        let p = location.strip_prefix("file://").unwrap_or(location);
        check(Path::new(p).to_path_buf(), img.manifest.clone()).await
    }
}

/// Streams `url` to `path`, refusing more bytes than the manifest allows (a tampered image
/// must not fill the disk before it is refused).
async fn download(url: &str, path: &Path, max: u64) -> Result<(), ImageError> {
    let fail = |message: String| ImageError::FetchImage { url: url.to_string(), message };
    let mut resp = http().map_err(fail)?.get(url).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut out = tokio::fs::File::create(path).await.map_err(|e| fail(e.to_string()))?;
    let mut n: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        n += chunk.len() as u64;
        if n > max.saturating_add(1) {
            // One byte past the expected size is enough for verify_file to report the mismatch.
            out.write_all(&chunk[..1.min(chunk.len())]).await.map_err(|e| fail(e.to_string()))?;
            break;
        }
        out.write_all(&chunk).await.map_err(|e| fail(e.to_string()))?;
    }
    out.flush().await.map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_images::keys::SecretKey;

    #[test]
    fn locations() {
        for ok in ["/srv/images/manifest.json", "manifest.json", "file:///srv/m.json", "https://images.example/m.json"]
        {
            assert!(check_location(ok).is_ok(), "{ok}");
        }
        for bad in ["", "  ", "ftp://images.example/m.json", "https:///m.json", "s3://bucket/m.json"] {
            assert!(check_location(bad).is_err(), "{bad:?}");
        }
    }

    fn signed(dir: &Path, key: &SecretKey, content: &[u8]) -> Vec<u8> {
        let f = dir.join("node.img");
        std::fs::write(&f, content).unwrap();
        let mut m = Manifest::new("1", "/nix/store/00000000000000000000000000000000-system");
        m.add_file("node.img", &f).unwrap();
        m.sign(&[key]).to_json()
    }

    #[tokio::test]
    async fn each_failure_names_its_check() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate("edge-ci-1").unwrap();
        let other = SecretKey::generate("evil-1").unwrap();
        let trusted = vec![key.public().to_string()];
        let good = signed(dir.path(), &key, b"image bytes");
        let img = verify_manifest(&good, &trusted, None).unwrap();
        assert_eq!(img.signed_by, vec!["edge-ci-1"]);
        verify_image(&img, dir.path().join("node.img").to_str().unwrap()).await.unwrap();

        let e = verify_manifest(&good, &[], None).unwrap_err();
        assert!(matches!(e, ImageError::NoTrustedKeys));
        let bad = signed(dir.path(), &other, b"image bytes");
        let e = verify_manifest(&bad, &trusted, None).unwrap_err().to_string();
        assert!(e.contains("signed by a trusted key"), "{e}");
        // Altered after signing: the signature no longer verifies.
        let text = String::from_utf8(good.clone()).unwrap().replace("\"version\": \"1\"", "\"version\": \"2\"");
        let e = verify_manifest(text.as_bytes(), &trusted, None).unwrap_err().to_string();
        assert!(e.contains("signature valid"), "{e}");
        // Same size, different bytes: the sha256 check fails.
        std::fs::write(dir.path().join("node.img"), b"image bytez").unwrap();
        let e = verify_image(&img, dir.path().join("node.img").to_str().unwrap()).await.unwrap_err().to_string();
        assert!(e.contains("(sha256)"), "{e}");
        std::fs::write(dir.path().join("node.img"), b"longer image bytes").unwrap();
        let e = verify_image(&img, dir.path().join("node.img").to_str().unwrap()).await.unwrap_err().to_string();
        assert!(e.contains("(size)"), "{e}");
    }

    fn openssl(args: &[&str]) -> Vec<u8> {
        let o = std::process::Command::new("openssl").args(args).output().expect("openssl (the independent signer)");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    /// (private key path, public key PEM) from `openssl ecparam -name prime256v1 -genkey`.
    fn p256(dir: &Path, name: &str) -> (PathBuf, String) {
        let sk = dir.join(format!("{name}.pem"));
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", sk.to_str().unwrap()]);
        let pem = String::from_utf8(openssl(&["ec", "-in", sk.to_str().unwrap(), "-pubout"])).unwrap();
        (sk, pem)
    }

    /// `openssl dgst -sha256 -sign K FILE | base64 -w0`: what `cosign sign-blob --key` writes.
    fn cosign_sign(key: &Path, file: &Path) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]))
    }

    #[tokio::test]
    async fn a_cosign_signature_by_a_trusted_cosign_key_suffices() {
        let dir = tempfile::tempdir().unwrap();
        // Signed with a Nix key nobody trusts: only the Cosign signature can make it pass.
        let nix_key = SecretKey::generate("someone-1").unwrap();
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, signed(dir.path(), &nix_key, b"image bytes")).unwrap();
        let (sk, pem) = p256(dir.path(), "ci");
        let (_, other_pem) = p256(dir.path(), "other");
        std::fs::write(dir.path().join("manifest.json.sig"), cosign_sign(&sk, &manifest) + "\n").unwrap();
        let m = manifest.to_str().unwrap();
        let trust =
            |keys: Vec<String>, cosign: Vec<String>| Trust { keys, cosign_keys: cosign, cosign_signature: None };

        // Cosign keys only, and the signature at its default place `<manifest>.sig`.
        let v = load_trusted(m, &trust(vec![], vec![pem.clone()]), None).await.unwrap();
        assert!(v.signed_by[0].starts_with("cosign:p256:"), "{:?}", v.signed_by);
        verify_image(&v, dir.path().join("node.img").to_str().unwrap()).await.unwrap();
        // Beside Nix keys that do not match: either trust path suffices.
        let unrelated = SecretKey::generate("edge-ci-1").unwrap().public().to_string();
        load_trusted(m, &trust(vec![unrelated.clone()], vec![other_pem.clone(), pem.clone()]), None).await.unwrap();

        // Another P-256 key: refused, naming both checks and the attribute.
        let e = load_trusted(m, &trust(vec![unrelated.clone()], vec![other_pem.clone()]), None).await.unwrap_err();
        assert!(matches!(e, ImageError::Untrusted { cosign_check: "signature valid", .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("(signed by a trusted key)") && msg.contains("image.manifest_cosign_signature"), "{msg}");
        // An explicit signature location that does not exist.
        let mut t = trust(vec![], vec![pem.clone()]);
        t.cosign_signature = Some(dir.path().join("nope.sig").display().to_string());
        let e = load_trusted(m, &t, None).await.unwrap_err().to_string();
        assert!(e.contains("signature present") && e.contains("nope.sig"), "{e}");
        // Not a P-256 key: named by index.
        let ed = dir.path().join("ed.pem");
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", ed.to_str().unwrap()]);
        let ed_pem = String::from_utf8(openssl(&["pkey", "-in", ed.to_str().unwrap(), "-pubout"])).unwrap();
        let e = load_trusted(m, &trust(vec![], vec![pem.clone(), ed_pem]), None).await.unwrap_err();
        assert!(matches!(e, ImageError::BadCosignKey { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("Ed25519"), "{e}");

        // The manifest altered after signing: the Cosign signature no longer verifies.
        let text = std::fs::read_to_string(&manifest).unwrap().replace("\"version\": \"1\"", "\"version\": \"2\"");
        let e = verify_manifest_trusted(
            text.as_bytes(),
            &trust(vec![], vec![pem.clone()]),
            Some(Ok(cosign_sign(&sk, &manifest))),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not verify"), "{e}");
        // No trust at all.
        assert!(matches!(verify_manifest_trusted(&[], &Trust::default(), None, None), Err(ImageError::NoTrustedKeys)));
    }
}
