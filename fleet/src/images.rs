//! Node images once per store: the agent fetches each release's signed image from the hub once,
//! verifies it while it streams to disk, keeps it in a store-local cache and serves it to the
//! store's BMCs (and to the provider's own check) over the LAN.
//!
//! Without it every `edge_proxmox_node` downloads the image to verify it and then every node's
//! BMC fetches it again from the same URL: six WAN transfers of a 1–2 GB image per 3-node store.
//! With it the WAN carries the image once per store; the rest is LAN traffic.
//!
//! Hub layout (any static server or object store can serve it; everything verifies by digest):
//! - `HUB/images/<manifest-sha256>/manifest.json`: the signed image manifest (`edge-images`
//!   format) whose SHA-256 a release records as `image_manifest_sha256`;
//! - `HUB/images/<manifest-sha256>/<name>`: each image file the manifest lists, under its name.
//!
//! Cache layout (`STATE_DIR/images/`, written only by [`ImageCache::ensure`]):
//! - `<sha256>`: a verified image file, named by its content's SHA-256 (hex), read-only — a
//!   release naming an image already here downloads nothing, whatever the manifest is called;
//! - `manifests/<manifest-sha256>.json`: the signed manifest, written only after every file it
//!   lists is in place: a manifest in the cache means its files were verified;
//! - `manifests/<manifest-sha256>.json.sig`: its Cosign signature, when it was trusted through
//!   one (`--trusted-cosign-key`: `HUB/images/<manifest-sha256>/manifest.json.sig`, as
//!   `cosign sign-blob --output-signature` writes it), served beside it on the LAN.
//!
//! Verified once, when downloaded: size, SHA-256 and NAR hash against a manifest whose own
//! SHA-256 is the release's and whose signature is by a trusted image key — the checks
//! `edge_proxmox_node` makes. Files are not re-hashed before each serve: a BMC reads the medium
//! in ranges while the node boots, so there is no "whole file" moment to re-hash at, and the
//! provider re-checks the bytes it fetches from the LAN before it boots anything. [`ImageCache::scrub`]
//! re-hashes the whole cache on demand (after a crash, or on a schedule).
//!
//! The LAN server ([`serve`]) is plain HTTP with Range support, for the store's LAN only: the
//! agent still never accepts connections from the WAN.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_images::cosign::{self, CosignError, CosignPublicKey};
use edge_images::hash::{HashWriter, Sha256Hash};
use edge_images::keys::PublicKey;
use edge_images::manifest::{ImageFile, Manifest, ManifestError, SignedManifest};

use crate::agent::Agent;
use crate::release::{is_sha256_hex, safe_relative, sha256_hex, Release};

/// The manifest's name in the hub's and the LAN server's trees.
pub const MANIFEST: &str = "manifest.json";
/// Its Cosign signature's name there (`cosign sign-blob --output-signature manifest.json.sig`).
pub const MANIFEST_SIG: &str = "manifest.json.sig";
/// A Cosign signature is ~100 bytes of base64.
const MAX_SIG: u64 = 64 << 10;
/// A signed manifest lists the closure's store paths: tens to hundreds of KiB. Anything far
/// larger is not a manifest and is refused before it is read whole.
const MAX_MANIFEST: u64 = 16 << 20;
/// Read/write buffer for image files: big enough that syscalls and hashing are amortised.
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageCacheError {
    #[error("{0:?} is not a SHA-256 in hex")]
    Digest(String),
    #[error("no trusted image keys: the cache checks manifests as edge_proxmox_node does, against trusted image keys")]
    NoTrustedKeys,
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{url}: larger than {limit} bytes, refused")]
    TooLarge { url: String, limit: u64 },
    #[error("the image manifest from the hub has sha256 {got}, the release names {want}")]
    ManifestDigest { want: String, got: String },
    #[error("image manifest refused: {0}")]
    Manifest(#[from] ManifestError),
    #[error("image manifest refused: {nix}; and its Cosign signature {url} failed the check ({check}): {cosign}")]
    Cosign { nix: String, url: String, check: &'static str, cosign: String },
    #[error("image file name {0:?} is not a plain relative path (or is the manifest's own name)")]
    BadName(String),
    #[error("the image manifest lists no file with a sha256: nothing a BMC could boot")]
    NothingToCache,
    #[error("image file {name:?} from {url}: {got} bytes, the manifest says {want}; refused, nothing cached")]
    Size { name: String, url: String, want: u64, got: u64 },
    #[error("image file {name:?} from {url}: {kind} is {got}, the manifest says {want}; refused, nothing cached")]
    Hash { name: String, url: String, kind: &'static str, want: String, got: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

type Result<T, E = ImageCacheError> = std::result::Result<T, E>;

/// The store-local image cache in `STATE_DIR/images/`, fed from the hub.
pub struct ImageCache {
    /// `STATE_DIR/images`.
    pub dir: PathBuf,
    /// Base URL of the hub's tree (the same `--hub` the agent polls).
    pub hub: String,
    /// Trusted image-signing keys (the provider's `trusted_image_keys`), not the channel keys:
    /// images are signed by CI, channel manifests by the fleet's key holders.
    pub trusted: Vec<PublicKey>,
    /// Trusted Cosign keys (`--trusted-cosign-key`, PEM P-256): a manifest also passes with a
    /// valid Cosign signature (`manifest.json.sig` beside it on the hub) by one of these.
    pub cosign: Vec<CosignPublicKey>,
    pub http: reqwest::blocking::Client,
}

/// A release's image, verified and in the cache.
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub manifest_sha256: String,
    /// Its signature was checked against the trusted image keys by this call.
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub files: Vec<CachedFile>,
    /// Bytes this call fetched from the hub (manifest and image files): 0 when all was cached.
    pub fetched_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// The file's name in the manifest.
    pub name: String,
    /// SHA-256 of its content, hex: its name in the cache.
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
    /// Fetched from the hub by this call (false: it was in the cache already).
    pub downloaded: bool,
}

impl CachedImage {
    /// Path of the manifest on the LAN server (after its base URL): the hub's layout, so a
    /// store configuration points `image.manifest` at the cache by changing the base URL only.
    pub fn manifest_url_path(&self) -> String {
        format!("/images/{}/{MANIFEST}", self.manifest_sha256)
    }

    /// Path of a file on the LAN server (`image.url` of `edge_proxmox_node`).
    pub fn file_url_path(&self, name: &str) -> Option<String> {
        self.files.iter().any(|f| f.name == name).then(|| format!("/images/{}/{name}", self.manifest_sha256))
    }
}

/// What [`ImageCache::prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub manifests: usize,
    pub files: usize,
    pub bytes: u64,
}

impl ImageCache {
    pub fn new(state_dir: &Path, hub: &str, trusted: Vec<PublicKey>, http: reqwest::blocking::Client) -> Self {
        Self { dir: state_dir.join("images"), hub: hub.to_string(), trusted, cosign: Vec::new(), http }
    }

    /// Also trust manifests through a Cosign signature by one of `keys`.
    pub fn with_cosign_keys(mut self, keys: Vec<CosignPublicKey>) -> Self {
        self.cosign = keys;
        self
    }

    /// The agent's cache: its state directory, hub and HTTP client (timeouts, `--hub-ca`).
    pub fn for_agent(agent: &Agent, trusted_image_keys: Vec<PublicKey>) -> Self {
        Self::new(&agent.state_dir, &agent.hub, trusted_image_keys, agent.http.clone())
            .with_cosign_keys(agent.image_cosign_keys.clone())
    }

    /// The image `release` expects, verified and cached (see [`ImageCache::ensure`]).
    pub fn ensure_release(&self, release: &Release) -> Result<CachedImage> {
        self.ensure(&release.image_manifest_sha256)
    }

    /// The image whose signed manifest has SHA-256 `manifest_sha256`, in the cache: fetched from
    /// the hub only where it is not there yet. The manifest must hash to `manifest_sha256` and be
    /// signed by a trusted image key; each file (directories in the manifest are skipped: a BMC
    /// boots files) streams to disk while its size, SHA-256 and NAR hash are taken, and enters
    /// the cache only if all three match. A refused file leaves nothing behind.
    pub fn ensure(&self, manifest_sha256: &str) -> Result<CachedImage> {
        let msha = hex_digest(manifest_sha256)?;
        if self.trusted.is_empty() && self.cosign.is_empty() {
            return Err(ImageCacheError::NoTrustedKeys);
        }
        let manifests = self.dir.join("manifests");
        fs::create_dir_all(&manifests).map_err(|e| io_err(&manifests, e))?;
        let manifest_path = manifests.join(format!("{msha}.json"));
        let mut fetched_bytes = 0;
        let (bytes, was_cached) = match read_manifest(&manifest_path, &msha)? {
            Some(b) => (b, true),
            None => {
                let url = self.hub_url(&msha, MANIFEST)?;
                let b = self.get_small(&url, MAX_MANIFEST)?;
                fetched_bytes += b.len() as u64;
                let got = Sha256Hash::digest(&b).to_hex();
                if got != msha {
                    return Err(ImageCacheError::ManifestDigest { want: msha, got });
                }
                (b, false)
            }
        };
        // Checked on every call, cached or not: the trusted keys may have changed since.
        let signed = SignedManifest::from_json(&bytes)?;
        let mut cosign_sig = None;
        let manifest = match signed.verify(&self.trusted) {
            Ok(m) => m.clone(),
            Err(nix) if !self.cosign.is_empty() => {
                let (sig, fetched) = self.cosign_signature(&msha, &bytes, &nix)?;
                fetched_bytes += fetched;
                cosign_sig = Some(sig);
                signed.unverified().clone()
            }
            Err(e) => return Err(e.into()),
        };
        let wanted: Vec<(&ImageFile, Sha256Hash)> =
            manifest.files.iter().filter_map(|f| f.sha256.map(|h| (f, h))).collect();
        if wanted.is_empty() {
            return Err(ImageCacheError::NothingToCache);
        }
        for (f, _) in &wanted {
            check_name(&f.name)?;
        }
        for f in manifest.files.iter().filter(|f| f.sha256.is_none()) {
            tracing::debug!(manifest = %msha, name = %f.name, "not cached: a directory, not a file a BMC boots");
        }
        let mut files = Vec::new();
        for (f, sha) in wanted {
            let hex = sha.to_hex();
            let path = self.dir.join(&hex);
            let downloaded = !blob_present(&path, f.size)?;
            if downloaded {
                fetched_bytes += self.download(&msha, f, sha, &path)?;
            }
            files.push(CachedFile { name: f.name.clone(), sha256: hex, size: f.size, path, downloaded });
        }
        if let Some(sig) = &cosign_sig {
            // Before the manifest, so a cached manifest trusted through Cosign has it beside it.
            crate::files::write_atomic(&sig_path(&manifest_path), sig.as_bytes())?;
        }
        if !was_cached {
            // Last: a manifest in the cache means every file it lists was verified.
            crate::files::write_atomic(&manifest_path, &bytes)?;
        }
        tracing::info!(manifest = %msha, version = %manifest.version, fetched_bytes, "image in the store's cache");
        Ok(CachedImage { manifest_sha256: msha, manifest, manifest_path, files, fetched_bytes })
    }

    /// The manifest's Cosign signature (cached, else from the hub), checked over `bytes` against
    /// the trusted Cosign keys; with the bytes fetched. `nix` is why the Nix-format check failed.
    fn cosign_signature(&self, msha: &str, bytes: &[u8], nix: &ManifestError) -> Result<(String, u64)> {
        let cached = sig_path(&self.dir.join("manifests").join(format!("{msha}.json")));
        let url = self.hub_url(msha, MANIFEST_SIG)?;
        let nix = if self.trusted.is_empty() {
            "no --trusted-image-key for its Nix signatures".into()
        } else {
            nix.to_string()
        };
        let refuse =
            |check, cosign: String| ImageCacheError::Cosign { nix: nix.clone(), url: url.clone(), check, cosign };
        let check = |text: &str| {
            cosign::verify_bytes(bytes, text, &self.cosign).map(|_| ()).map_err(|e| {
                let check = match e {
                    CosignError::Base64(_) | CosignError::Der(_) => "signature format",
                    _ => "signature valid",
                };
                refuse(check, e.to_string())
            })
        };
        // A cached signature that no longer verifies (keys rotated) is fetched again.
        if let Ok(text) = fs::read_to_string(&cached) {
            if check(&text).is_ok() {
                return Ok((text, 0));
            }
        }
        let body = self.get_small(&url, MAX_SIG).map_err(|e| refuse("signature present", e.to_string()))?;
        let text = String::from_utf8(body).map_err(|_| refuse("signature format", "not text".into()))?;
        check(&text)?;
        let n = text.len() as u64;
        Ok((text, n))
    }

    /// Re-hashes every cached file against the manifests that list it (size, SHA-256, NAR hash).
    /// A file that fails is removed with every manifest listing it, so the next
    /// [`ImageCache::ensure`] fetches it again. Returns the names (SHA-256) of the removed files.
    pub fn scrub(&self) -> Result<Vec<String>> {
        let mut removed = BTreeSet::new();
        for (msha, manifest) in self.manifests()? {
            let mut bad = false;
            for f in &manifest.files {
                let Some(sha) = f.sha256 else { continue };
                let path = self.dir.join(sha.to_hex());
                let ok = match fs::File::open(&path) {
                    Ok(file) => copy_verified(file, None, f, sha, &path.display().to_string()).is_ok(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err(&path, e)),
                };
                if !ok {
                    tracing::warn!(file = %sha.to_hex(), name = %f.name, "cached image file does not verify: removed");
                    remove_if_present(&path)?;
                    removed.insert(sha.to_hex());
                    bad = true;
                }
            }
            if bad {
                let m = self.dir.join("manifests").join(format!("{msha}.json"));
                remove_if_present(&m)?;
                remove_if_present(&sig_path(&m))?;
            }
        }
        Ok(removed.into_iter().collect())
    }

    /// Removes every cached manifest not in `keep` (manifest SHA-256s, e.g. the releases the
    /// store runs and may roll back to), the files no kept manifest lists, and leftovers of
    /// interrupted downloads. Not to be run while an [`ImageCache::ensure`] is under way.
    pub fn prune(&self, keep: &[&str]) -> Result<Pruned> {
        let keep: BTreeSet<String> = keep.iter().map(|k| k.to_ascii_lowercase()).collect();
        let mut out = Pruned::default();
        let mut listed = BTreeSet::new();
        for (msha, manifest) in self.manifests()? {
            if keep.contains(&msha) {
                listed.extend(manifest.files.iter().filter_map(|f| f.sha256.map(|h| h.to_hex())));
            } else {
                let m = self.dir.join("manifests").join(format!("{msha}.json"));
                remove_if_present(&m)?;
                remove_if_present(&sig_path(&m))?;
                out.manifests += 1;
            }
        }
        for e in read_dir(&self.dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = (is_sha256_hex(&name) && !listed.contains(&name)) || name.ends_with(".partial");
            if stale && e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                remove_if_present(&e.path())?;
                out.files += 1;
            }
        }
        Ok(out)
    }

    /// The cached manifests (parsed; their signatures were checked when they were cached).
    fn manifests(&self) -> Result<Vec<(String, Manifest)>> {
        let dir = self.dir.join("manifests");
        let mut out = Vec::new();
        for e in read_dir(&dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(msha) = name.strip_suffix(".json").filter(|m| is_sha256_hex(m)) else { continue };
            if let Some(bytes) = read_manifest(&e.path(), msha)? {
                out.push((msha.to_string(), SignedManifest::from_json(&bytes)?.unverified().clone()));
            }
        }
        Ok(out)
    }

    /// `HUB/images/<msha>/<name>`, each segment percent-encoded.
    fn hub_url(&self, msha: &str, name: &str) -> Result<String> {
        let bad = |message: String| ImageCacheError::Fetch { url: self.hub.clone(), message };
        let mut u = reqwest::Url::parse(&self.hub).map_err(|e| bad(e.to_string()))?;
        u.path_segments_mut()
            .map_err(|_| bad("not a base URL".into()))?
            .pop_if_empty()
            .extend(["images", msha].into_iter().chain(name.split('/')));
        Ok(u.to_string())
    }

    fn get_small(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        let fail = |message: String| ImageCacheError::Fetch { url: url.to_string(), message };
        let resp = self.http.get(url).send().map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        resp.take(limit + 1).read_to_end(&mut body).map_err(|e| fail(e.to_string()))?;
        if body.len() as u64 > limit {
            return Err(ImageCacheError::TooLarge { url: url.to_string(), limit });
        }
        Ok(body)
    }

    /// Streams one file from the hub into `dest` through a hidden partial file; returns the bytes
    /// read from the hub.
    fn download(&self, msha: &str, f: &ImageFile, sha: Sha256Hash, dest: &Path) -> Result<u64> {
        let url = self.hub_url(msha, &f.name)?;
        let tmp = self.dir.join(format!(".{}.{}.partial", sha.to_hex(), std::process::id()));
        tracing::info!(manifest = %msha, name = %f.name, size = f.size, %url, "fetching image file");
        let r = self.download_to(&url, &tmp, f, sha).and_then(|n| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444)).map_err(|e| io_err(&tmp, e))?;
            fs::rename(&tmp, dest).map_err(|e| io_err(dest, e))?;
            Ok(n)
        });
        if let Err(e) = &r {
            tracing::warn!(manifest = %msha, name = %f.name, error = %e, "image file refused");
            // The refusal is the error that matters; a failed clean-up is only logged.
            if let Err(rm) = remove_if_present(&tmp) {
                tracing::warn!(error = %rm, "could not remove a refused partial download");
            }
        }
        r
    }

    fn download_to(&self, url: &str, tmp: &Path, f: &ImageFile, sha: Sha256Hash) -> Result<u64> {
        let fail = |message: String| ImageCacheError::Fetch { url: url.to_string(), message };
        let resp = self.http.get(url).send().map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        // A length the hub announces that is not the manifest's: refused before a byte is read.
        if let Some(len) = resp.content_length().filter(|&l| l != f.size) {
            return Err(ImageCacheError::Size { name: f.name.clone(), url: url.into(), want: f.size, got: len });
        }
        let file = fs::File::create(tmp).map_err(|e| io_err(tmp, e))?;
        let n = copy_verified(resp, Some(&file), f, sha, url)?;
        // On disk before it is renamed into the cache: a crash never leaves a short file under a
        // verified name.
        file.sync_all().map_err(|e| io_err(tmp, e))?;
        Ok(n)
    }
}

/// Reads `src` to its end into `out` (if any) while taking size, SHA-256 and the NAR hash of a
/// regular non-executable file — what `Manifest::verify_file` checks on a downloaded copy — and
/// compares them with `f`. Reads at most one chunk past the expected size.
fn copy_verified(
    mut src: impl Read,
    out: Option<&fs::File>,
    f: &ImageFile,
    sha: Sha256Hash,
    from: &str,
) -> Result<u64> {
    let at = PathBuf::from(from);
    let size_err = |got| ImageCacheError::Size { name: f.name.clone(), url: from.into(), want: f.size, got };
    let mut plain = HashWriter::new();
    let mut nar = HashWriter::new();
    nar.write_all(&nar_prefix(f.size)).map_err(|e| io_err(&at, e))?;
    let mut out = out.map(|o| io::BufWriter::with_capacity(CHUNK, o));
    let mut buf = vec![0u8; CHUNK];
    let mut got: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageCacheError::Fetch { url: from.into(), message: e.to_string() }),
        };
        got += n as u64;
        if got > f.size {
            // More than the manifest allows: stop here rather than fill the disk.
            return Err(size_err(got));
        }
        let chunk = &buf[..n];
        plain.write_all(chunk).map_err(|e| io_err(&at, e))?;
        nar.write_all(chunk).map_err(|e| io_err(&at, e))?;
        if let Some(o) = out.as_mut() {
            o.write_all(chunk).map_err(|e| io_err(&at, e))?;
        }
    }
    if got != f.size {
        return Err(size_err(got));
    }
    if let Some(mut o) = out {
        o.flush().map_err(|e| io_err(&at, e))?;
    }
    nar.write_all(&nar_suffix(f.size)).map_err(|e| io_err(&at, e))?;
    let mismatch = |kind, want: Sha256Hash, got: Sha256Hash| ImageCacheError::Hash {
        name: f.name.clone(),
        url: from.into(),
        kind,
        want: want.to_string(),
        got: got.to_string(),
    };
    let (h, _) = plain.finish();
    if h != sha {
        return Err(mismatch("sha256", sha, h));
    }
    let (nh, _) = nar.finish();
    if nh != f.nar_hash {
        return Err(mismatch("NAR hash", f.nar_hash, nh));
    }
    Ok(got)
}

/// NAR framing of one regular, non-executable file around its contents (`nix-archive-1 ( type
/// regular contents <size> … )`): the manifest's NAR hash is taken while the bytes stream past,
/// without a second read of the file.
fn nar_token(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(&[0u8; 8][..nar_pad(s.len() as u64)]);
}

fn nar_pad(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

fn nar_prefix(size: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for t in [edge_images::nar::MAGIC.as_bytes(), b"(", b"type", b"regular", b"contents"] {
        nar_token(&mut v, t);
    }
    v.extend_from_slice(&size.to_le_bytes());
    v
}

fn nar_suffix(size: u64) -> Vec<u8> {
    let mut v = vec![0u8; nar_pad(size)];
    nar_token(&mut v, b")");
    v
}

/// `manifests/<msha>.json.sig` beside `manifests/<msha>.json`.
fn sig_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// The manifest cached at `path`, if it is there and still hashes to `msha` (anything else is
/// dropped and fetched again).
fn read_manifest(path: &Path, msha: &str) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) if Sha256Hash::digest(&b).to_hex() == msha => Ok(Some(b)),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "cached manifest does not hash to its name: fetched again");
            remove_if_present(path)?;
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// A file of the right size under its content's name was verified when it got that name (only
/// [`ImageCache::download`] renames into the cache). Of another size: dropped, fetched again.
fn blob_present(path: &Path, size: u64) -> Result<bool> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => Ok(true),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "cached image file has the wrong size: fetched again");
            remove_if_present(path)?;
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, e)),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name == MANIFEST || name == MANIFEST_SIG || safe_relative(name).is_err() {
        return Err(ImageCacheError::BadName(name.into()));
    }
    Ok(())
}

fn hex_digest(s: &str) -> Result<String> {
    sha256_hex(s).ok_or_else(|| ImageCacheError::Digest(s.trim().to_ascii_lowercase()))
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<_, _>>().map_err(|e| io_err(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(io_err(dir, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

fn io_err(path: &Path, source: io::Error) -> ImageCacheError {
    ImageCacheError::Io { path: path.to_path_buf(), source }
}

// ---------------------------------------------------------------------------------------------
// The LAN server.

/// Connections served at once; more are answered 503 at once. A store has a handful of BMCs and
/// one provider: this bounds threads, not a fair share.
const MAX_CONNECTIONS: usize = 64;
/// A request head larger than this is not a BMC's.
const MAX_HEAD: u64 = 16 * 1024;
/// An idle keep-alive connection, or a client that stops reading, is dropped after this.
const IDLE: Duration = Duration::from_secs(60);
const WRITE_STALL: Duration = Duration::from_secs(120);

/// Counters of a running [`serve`].
#[derive(Debug, Default)]
pub struct ServeStats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// A running LAN server; stopped when dropped (keep it for as long as it should serve).
pub struct ServeHandle {
    addr: SocketAddr,
    stats: Arc<ServeStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServeHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR`: prefix of [`CachedImage::manifest_url_path`] and
    /// [`CachedImage::file_url_path`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Body bytes written to clients so far (ranges count what they carried).
    pub fn bytes_served(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() blocks: one connection of our own wakes it to see the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(5)).is_ok();
        if let Some(t) = self.thread.take() {
            // Not woken (a firewall on loopback?): leave the thread rather than hang the caller.
            if woke {
                let _ = t.join();
            }
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Serves the cache in `dir` (`STATE_DIR/images`) read-only over plain HTTP on `addr` (port 0
/// picks one), for the store's BMCs and the provider's image check:
/// - `GET|HEAD /images/<manifest-sha256>/manifest.json` and `/images/<manifest-sha256>/<name>`:
///   the hub's layout, for the images in the cache;
/// - `GET|HEAD /sha256/<sha256>[/<any name>]`: a file by its content (the name is for BMCs that
///   want the URL to end in `.iso` or `.img`).
///
/// Single byte ranges (`Range: bytes=…`, `If-Range` against the strong ETag, the SHA-256) are
/// answered 206 — BMCs that read a virtual medium on demand ask for ranges; several ranges in one
/// request get the whole file (RFC 9110 lets a server ignore Range). Bind it to the store's LAN
/// address: it is not for the WAN.
pub fn serve(addr: SocketAddr, dir: &Path) -> Result<ServeHandle> {
    let listener = TcpListener::bind(addr).map_err(|source| ImageCacheError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ImageCacheError::Bind { addr, source })?;
    let stats = Arc::new(ServeStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (root, st, halt) = (dir.to_path_buf(), stats.clone(), stop.clone());
    let active = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("image-cache-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let mut conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "image cache: accept failed");
                        continue;
                    }
                };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let slot = Slot::take(active.clone());
                let (root, st) = (root.clone(), st.clone());
                let spawned = std::thread::Builder::new().name("image-cache-conn".into()).spawn(move || {
                    let _slot = slot;
                    connection(conn, &root, &st);
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "image cache: no thread for a connection");
                }
            }
        })
        .map_err(|source| ImageCacheError::Bind { addr, source })?;
    tracing::info!(addr = %bound, dir = %dir.display(), "serving the image cache to the store's LAN");
    Ok(ServeHandle { addr: bound, stats, stop, thread: Some(thread) })
}

/// One connection's place under [`MAX_CONNECTIONS`], given back however the thread ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn connection(stream: TcpStream, root: &Path, stats: &ServeStats) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let setup = stream
        .set_read_timeout(Some(IDLE))
        .and_then(|_| stream.set_write_timeout(Some(WRITE_STALL)))
        .and_then(|_| stream.try_clone());
    let mut reader = match setup {
        Ok(s) => BufReader::new(s),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "image cache: connection set-up failed");
            return;
        }
    };
    let mut out = stream;
    loop {
        let req = match read_head(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
            Err(_) => return,
        };
        stats.requests.fetch_add(1, Ordering::Relaxed);
        match respond(&mut out, &req, root, stats) {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(%peer, target = %req.target, error = %e, "image cache: response cut short");
                return;
            }
        }
    }
}

/// The request line and headers; `None` at a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut limited = r.take(MAX_HEAD);
    let mut line = String::new();
    // Blank lines before a request are allowed (RFC 9112 §2.2).
    while line.trim().is_empty() {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("request line"));
    };
    let req_line = (method.to_string(), target.to_string(), version.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if limited.read_line(&mut h)? == 0 {
            return Err(bad("head cut short or too large"));
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad("header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let (method, target, version) = req_line;
    if !version.starts_with("HTTP/1.") {
        return Err(bad("version"));
    }
    Ok(Some(Request { method, target, version, headers }))
}

/// Answers one request; `Ok(true)` when the connection may carry another.
fn respond(out: &mut TcpStream, req: &Request, root: &Path, stats: &ServeStats) -> io::Result<bool> {
    // A body we would not read would be taken for the next request: such a connection closes.
    let has_body =
        req.header("transfer-encoding").is_some() || req.header("content-length").is_some_and(|l| l.trim() != "0");
    let close = req.version == "HTTP/1.0"
        || has_body
        || req.header("connection").is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let conn = if close { "close" } else { "keep-alive" };
    let head = req.method == "HEAD";
    if req.method != "GET" && !head {
        write_head(
            out,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD".into()), ("Content-Length", "0".into())],
            conn,
        )?;
        return Ok(!close);
    }
    let path = req.target.split(['?', '#']).next().unwrap_or_default();
    let Some(found) = percent_decode(path).and_then(|p| resolve(root, &p)) else {
        write_head(out, "404 Not Found", &[("Content-Length", "0".into())], conn)?;
        return Ok(!close);
    };
    let mut file = match fs::File::open(&found.path) {
        Ok(f) => f,
        Err(_) => {
            write_head(out, "404 Not Found", &[("Content-Length", "0".into())], conn)?;
            return Ok(!close);
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        write_head(out, "404 Not Found", &[("Content-Length", "0".into())], conn)?;
        return Ok(!close);
    }
    let len = meta.len();
    let etag = format!("\"{}\"", found.etag);
    let range = match req.header("if-range") {
        // A range of another version of the file would be garbage: the whole file instead.
        Some(v) if v.trim() != etag => None,
        _ => req.header("range"),
    };
    let mut headers = vec![
        ("Accept-Ranges", "bytes".to_string()),
        ("ETag", etag),
        ("Content-Type", found.content_type.to_string()),
        // Content-addressed: what is under a name never changes.
        ("Cache-Control", "public, max-age=31536000, immutable".to_string()),
    ];
    let (status, start, count) = match parse_range(range, len) {
        Span::Full => ("200 OK", 0, len),
        Span::Part(a, b) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            ("206 Partial Content", a, b - a + 1)
        }
        Span::Unsatisfiable => {
            headers.push(("Content-Range", format!("bytes */{len}")));
            headers.push(("Content-Length", "0".into()));
            write_head(out, "416 Range Not Satisfiable", &headers, conn)?;
            return Ok(!close);
        }
    };
    headers.push(("Content-Length", count.to_string()));
    write_head(out, status, &headers, conn)?;
    if !head {
        file.seek(SeekFrom::Start(start))?;
        let mut left = count;
        let mut buf = vec![0u8; CHUNK.min(count.max(1) as usize)];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than announced"));
            }
            out.write_all(&buf[..n])?;
            stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            left -= n as u64;
        }
    }
    tracing::debug!(target = %req.target, status, bytes = if head { 0 } else { count }, "image cache served");
    Ok(!close)
}

fn write_head(out: &mut TcpStream, status: &str, headers: &[(&str, String)], conn: &str) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(&format!("Connection: {conn}\r\n\r\n"));
    out.write_all(h.as_bytes())
}

struct Found {
    path: PathBuf,
    etag: String,
    content_type: &'static str,
}

/// A request path to a file of the cache; only hex names and manifest lookups, so nothing
/// outside `root` (and nothing half-downloaded) can be named.
fn resolve(root: &Path, path: &str) -> Option<Found> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let blob = |h: &str| Found { path: root.join(h), etag: h.to_string(), content_type: "application/octet-stream" };
    match segs.as_slice() {
        ["sha256", h] | ["sha256", h, _] if is_sha256_hex(h) => Some(blob(h)),
        ["images", m, rest @ ..] if is_sha256_hex(m) && !rest.is_empty() => {
            let mpath = root.join("manifests").join(format!("{m}.json"));
            let bytes = fs::read(&mpath).ok()?;
            if Sha256Hash::digest(&bytes).to_hex() != *m {
                return None;
            }
            let name = rest.join("/");
            if name == MANIFEST {
                return Some(Found { path: mpath, etag: m.to_string(), content_type: "application/json" });
            }
            if name == MANIFEST_SIG {
                let sig = sig_path(&mpath);
                return sig.is_file().then(|| Found {
                    path: sig,
                    etag: format!("{m}.sig"),
                    content_type: "text/plain",
                });
            }
            // Names map to content: the manifest was verified before it entered the cache, and
            // whatever is served, the provider checks against the manifest it verifies itself.
            let signed = SignedManifest::from_json(&bytes).ok()?;
            let f = signed.unverified().files.iter().find(|f| f.name == name)?;
            Some(blob(&f.sha256?.to_hex()))
        }
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Span {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a file of `len` bytes (RFC 9110 §14.1.2). Anything this server does
/// not handle — several ranges, another unit, bad syntax — is ignored: the whole file.
fn parse_range(header: Option<&str>, len: u64) -> Span {
    let Some(h) = header.map(str::trim) else { return Span::Full };
    let Some(spec) = h.get(..6).filter(|u| u.eq_ignore_ascii_case("bytes=")).map(|_| &h[6..]) else {
        return Span::Full;
    };
    if spec.contains(',') {
        return Span::Full;
    }
    let Some((a, b)) = spec.split_once('-') else { return Span::Full };
    let num =
        |s: &str| (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(0) => Span::Unsatisfiable,
            Some(_) if len == 0 => Span::Unsatisfiable,
            Some(n) => Span::Part(len.saturating_sub(n), len - 1),
            None => Span::Full,
        },
        (s, "") => match num(s) {
            Some(s) if s >= len => Span::Unsatisfiable,
            Some(s) => Span::Part(s, len - 1),
            None => Span::Full,
        },
        (s, e) => match (num(s), num(e)) {
            (Some(s), Some(e)) if e < s => Span::Full,
            (Some(s), Some(_)) if s >= len => Span::Unsatisfiable,
            (Some(s), Some(e)) => Span::Part(s, e.min(len - 1)),
            _ => Span::Full,
        },
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed NAR hash is the one `edge-images` takes of the file on disk (and so the one
    /// in a manifest and the one the provider checks).
    #[test]
    fn streamed_hashes_equal_edge_images_file_hashes() {
        let d = tempfile::tempdir().expect("tmp");
        for size in [0usize, 1, 7, 8, 13, CHUNK - 1, CHUNK + 3, 2 * CHUNK + 9] {
            let p = d.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            fs::write(&p, &data).expect("write");
            let h = edge_images::hash::file_hashes(&p).expect("hash");
            let f = ImageFile {
                name: "f".into(),
                nar_hash: h.nar_hash,
                nar_size: h.nar_size,
                sha256: Some(h.sha256),
                size: h.size,
            };
            assert_eq!(copy_verified(&data[..], None, &f, h.sha256, "mem").expect("verifies"), size as u64);
            let mut longer = data.clone();
            longer.push(0);
            assert!(matches!(copy_verified(&longer[..], None, &f, h.sha256, "mem"), Err(ImageCacheError::Size { .. })));
            if size > 0 {
                let mut flipped = data.clone();
                flipped[size / 2] ^= 1;
                let e = copy_verified(&flipped[..], None, &f, h.sha256, "mem");
                assert!(matches!(e, Err(ImageCacheError::Hash { kind: "sha256", .. })), "{e:?}");
            }
            // A manifest whose NAR hash disagrees with its sha256 is refused too (the provider
            // would refuse the file at boot).
            let odd = ImageFile { nar_hash: Sha256Hash::digest(b"x"), ..f.clone() };
            let e = copy_verified(&data[..], None, &odd, h.sha256, "mem");
            assert!(matches!(e, Err(ImageCacheError::Hash { kind: "NAR hash", .. })), "{e:?}");
        }
    }

    #[test]
    fn ranges() {
        use Span::*;
        let r = |h: &str, len| parse_range(Some(h), len);
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(r("bytes=0-0", 10), Part(0, 0));
        assert_eq!(r("bytes=2-5", 10), Part(2, 5));
        assert_eq!(r("BYTES=2-", 10), Part(2, 9));
        assert_eq!(r("bytes=5-100", 10), Part(5, 9));
        assert_eq!(r("bytes=-3", 10), Part(7, 9));
        assert_eq!(r("bytes=-30", 10), Part(0, 9));
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        for ignored in ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=a-b", "bytes=+1-2", "bytes=-", "bytes"] {
            assert_eq!(r(ignored, 10), Full, "{ignored}");
        }
    }

    #[test]
    fn only_cache_names_resolve() {
        let d = tempfile::tempdir().expect("tmp");
        let h = "ab".repeat(32);
        assert_eq!(resolve(d.path(), &format!("/sha256/{h}")).map(|f| f.path), Some(d.path().join(&h)));
        assert!(resolve(d.path(), &format!("/sha256/{h}/nixos.iso")).is_some());
        for bad in ["/", "/sha256/../../etc/passwd", "/sha256/ABAB", &format!("/sha256/{h}/a/b"), "/images/x/y"] {
            assert!(resolve(d.path(), bad).is_none(), "{bad}");
        }
        // A manifest not in the cache names nothing.
        assert!(resolve(d.path(), &format!("/images/{h}/manifest.json")).is_none());
        assert_eq!(percent_decode("/a%20b%2Fc").as_deref(), Some("/a b/c"));
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }

    #[test]
    fn names_and_digests() {
        for bad in ["manifest.json", "../x", "/abs", "", "a/../b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("nixos.img").is_ok() && check_name("iso/nixos.iso").is_ok());
        assert!(hex_digest(&"AB".repeat(32)).is_ok());
        assert!(hex_digest("abc").is_err());
    }
}
