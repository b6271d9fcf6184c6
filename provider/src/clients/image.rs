//! Signed node images: load a manifest (`edge-images` format) from a path or an http(s) URL,
//! check its signature against the provider's `trusted_image_keys`, and check an image file
//! against the manifest (size, sha256, NAR hash). Every failure names the check that failed,
//! so a refused image says *why* before anything touches a machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_images::keys::PublicKey;
use edge_images::manifest::{ImageFile, Manifest, ManifestError, SignedManifest};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no trusted image keys: set the provider's trusted_image_keys (or EDGE_TRUSTED_IMAGE_KEYS) so signed images can be checked")]
    NoTrustedKeys,
    #[error("trusted_image_keys[{index}] is not a public key: {message}")]
    BadKey { index: usize, message: String },
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
    let keys = trusted_keys(trusted)?;
    let signed = SignedManifest::from_json(bytes)
        .map_err(|source| ImageError::Manifest { check: "format", source: Box::new(source) })?;
    let manifest = signed
        .verify(&keys)
        .map_err(|source| {
            let check = match source {
                ManifestError::Unsigned => "signature present",
                ManifestError::UnknownKey(_) => "signed by a trusted key",
                _ => "signature valid",
            };
            ImageError::Manifest { check, source: Box::new(source) }
        })?
        .clone();
    let trusted_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let signed_by =
        signed.signatures.iter().map(|s| s.key_name.clone()).filter(|n| trusted_names.contains(&n.as_str())).collect();
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
    Ok(VerifiedImage { manifest, file, signed_by })
}

/// Loads and verifies a manifest from a path or URL.
pub async fn load(source: &str, trusted: &[String], file: Option<&str>) -> Result<VerifiedImage, ImageError> {
    let bytes = fetch_manifest(source).await?;
    verify_manifest(&bytes, trusted, file)
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
}
