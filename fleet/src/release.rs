//! Releases: a content-addressed bundle of what a store applies.
//!
//! On disk a bundle is `DIR/<id>/release.json` plus `DIR/<id>/files/…` (the store's root
//! configuration and modules, `.terraform.lock.hcl` among them). `release.json` lists every file
//! with its SHA-256 and size, the provider binary's SHA-256 and the SHA-256 of the signed
//! node-image manifest the release expects; the id is the SHA-256 of `release.json` in canonical
//! form. Nothing in it is a timestamp or a path of the machine that built it, so the same inputs
//! give the same id on any machine. Any static server or object store can host the directory.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use edge_images::canonical;
use edge_images::hash::Sha256Hash;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "edgeform-release/1";
const DOMAIN: &[u8] = b"edgeform-release-v1\n";
/// Terraform's dependency lock file: a release without one would let `terraform init` pick
/// provider versions on the store.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: a release holds regular files and directories only (symlinks and devices are refused)")]
    NotAFile(PathBuf),
    #[error("{0}: Terraform state is never part of a release (it can hold secrets and belongs to the store)")]
    State(PathBuf),
    #[error(
        "the configuration has no {LOCK_FILE}: run `terraform init` (or `terraform providers lock`) and commit it"
    )]
    NoLockFile,
    #[error("{0} is not a SHA-256 in hex")]
    Digest(String),
    #[error("release.json: {0}")]
    Parse(String),
    #[error("release format {0:?} is not supported (expected {FORMAT:?})")]
    Format(String),
    #[error("the bundle is release {got}, not the {want} that was asked for")]
    WrongId { want: String, got: String },
    #[error("{path}: sha256 {got}, release.json says {want}")]
    FileHash { path: String, want: String, got: String },
    #[error("{path}: {got} bytes, release.json says {want}")]
    FileSize { path: String, want: u64, got: u64 },
    #[error("{0}: listed in release.json but missing from the bundle")]
    Missing(String),
    #[error("{0}: in the bundle but not listed in release.json")]
    Extra(String),
    #[error("{0}: not a plain relative path inside the bundle")]
    BadPath(String),
}

/// A file of the store's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Relative path with `/` separators.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub format: String,
    /// A name for people (e.g. `2026.12.1`); the id is what identifies the release.
    pub name: String,
    /// Sorted by path.
    pub files: Vec<BundleFile>,
    /// SHA-256 (hex) of the `terraform-provider-edge` binary the store must run.
    pub provider_sha256: String,
    /// SHA-256 (hex) of the signed node-image manifest (`manifest.json`) the store's nodes boot.
    pub image_manifest_sha256: String,
}

impl Release {
    /// Reads the configuration in `config` (skipping `.terraform/`, Terraform's local cache) and
    /// names the provider and image-manifest digests the release expects.
    pub fn from_dir(
        name: &str,
        config: &Path,
        provider_sha256: &str,
        image_manifest_sha256: &str,
    ) -> Result<Self, ReleaseError> {
        let mut files = Vec::new();
        collect(config, config, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if !files.iter().any(|f| f.path == LOCK_FILE) {
            return Err(ReleaseError::NoLockFile);
        }
        Ok(Self {
            format: FORMAT.into(),
            name: name.into(),
            files,
            provider_sha256: hex_digest(provider_sha256)?,
            image_manifest_sha256: hex_digest(image_manifest_sha256)?,
        })
    }

    /// The release id: SHA-256 (hex) of the canonical `release.json`.
    pub fn id(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        Sha256Hash::digest(&canonical::signed_bytes(DOMAIN, &v)).to_hex()
    }

    /// Writes the bundle under `out/<id>/` (copying the files from `config`) and returns the id.
    /// An existing complete bundle of the same id is left as it is.
    pub fn write_bundle(&self, config: &Path, out: &Path) -> Result<String, ReleaseError> {
        let id = self.id();
        let dir = out.join(&id);
        if open_bundle(&dir, &id).is_ok() {
            return Ok(id);
        }
        for f in &self.files {
            let to = dir.join("files").join(&f.path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::copy(config.join(&f.path), &to).map_err(|e| io(&to, e))?;
        }
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| ReleaseError::Parse(e.to_string()))?;
        json.push(b'\n');
        let path = dir.join("release.json");
        std::fs::write(&path, json).map_err(|e| io(&path, e))?;
        // What was copied is what was hashed (a file changed while copying is caught here).
        open_bundle(&dir, &id)?;
        Ok(id)
    }
}

/// Opens the bundle in `dir` and checks that it is release `id`: `release.json` hashes to `id`,
/// every listed file is there with its hash and size, and nothing else is.
pub fn open_bundle(dir: &Path, id: &str) -> Result<Release, ReleaseError> {
    let path = dir.join("release.json");
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Parse(e.to_string()))?;
    let got = Sha256Hash::digest(&canonical::signed_bytes(DOMAIN, &raw)).to_hex();
    if got != id {
        return Err(ReleaseError::WrongId { want: id.into(), got });
    }
    let release: Release = serde_json::from_value(raw).map_err(|e| ReleaseError::Parse(e.to_string()))?;
    if release.format != FORMAT {
        return Err(ReleaseError::Format(release.format));
    }
    let files = dir.join("files");
    let mut listed = BTreeSet::new();
    for f in &release.files {
        let rel = safe_relative(&f.path)?;
        let p = files.join(rel);
        let (sha, size) = match sha256_file(&p) {
            Ok(h) => h,
            Err(ReleaseError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReleaseError::Missing(f.path.clone()))
            }
            Err(e) => return Err(e),
        };
        if size != f.size {
            return Err(ReleaseError::FileSize { path: f.path.clone(), want: f.size, got: size });
        }
        if sha.to_hex() != f.sha256 {
            return Err(ReleaseError::FileHash { path: f.path.clone(), want: f.sha256.clone(), got: sha.to_hex() });
        }
        listed.insert(f.path.clone());
    }
    let present = if files.exists() { walk(&files, &files)? } else { vec![] };
    if let Some(extra) = present.into_iter().find(|p| !listed.contains(p)) {
        return Err(ReleaseError::Extra(extra));
    }
    Ok(release)
}

/// SHA-256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(Sha256Hash, u64), ReleaseError> {
    edge_images::hash::sha256_file(path).map_err(|e| io(path, e))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<BundleFile>) -> Result<(), ReleaseError> {
    for rel in walk(root, dir)? {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if name.contains(".tfstate") {
            return Err(ReleaseError::State(root.join(&rel)));
        }
        let (sha, size) = sha256_file(&root.join(&rel))?;
        out.push(BundleFile { path: rel, sha256: sha.to_hex(), size });
    }
    Ok(())
}

/// The configuration a store applies from `dir`, as one SHA-256: over the sorted list of its
/// files (relative path, SHA-256, size) in canonical JSON. Terraform state (`*.tfstate*`, a
/// local backend's `terraform.tfstate.d/`) and `.terraform/` are left out: they are not
/// configuration, and state can hold secrets. Returns the digest and the number of files.
pub fn configuration_digest(dir: &Path) -> Result<(String, usize), ReleaseError> {
    let mut files = Vec::new();
    for rel in walk(dir, dir)? {
        if rel.split('/').any(|part| part.contains(".tfstate") || part == "terraform.tfstate.d") {
            continue;
        }
        let (sha, size) = sha256_file(&dir.join(&rel))?;
        files.push(BundleFile { path: rel, sha256: sha.to_hex(), size });
    }
    let v = serde_json::to_value(&files).map_err(|e| ReleaseError::Parse(e.to_string()))?;
    Ok((Sha256Hash::digest(&canonical::signed_bytes(b"edgeform-configuration-v1\n", &v)).to_hex(), files.len()))
}

/// Regular files below `dir` as `/`-separated paths relative to `root`, skipping `.terraform/`
/// (providers and modules Terraform downloaded: the store's own `terraform init` makes them).
fn walk(root: &Path, dir: &Path) -> Result<Vec<String>, ReleaseError> {
    let mut out = Vec::new();
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?.collect::<Result<_, _>>().map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ty = e.file_type().map_err(|err| io(&p, err))?;
        if ty.is_dir() {
            if e.file_name() == ".terraform" {
                continue;
            }
            out.extend(walk(root, &p)?);
        } else if ty.is_file() {
            let rel = p.strip_prefix(root).map_err(|_| ReleaseError::BadPath(p.display().to_string()))?;
            let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        } else {
            return Err(ReleaseError::NotAFile(p));
        }
    }
    Ok(out)
}

/// A listed path may only name something inside the bundle.
pub(crate) fn safe_relative(p: &str) -> Result<&Path, ReleaseError> {
    let path = Path::new(p);
    if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(ReleaseError::BadPath(p.into()));
    }
    Ok(path)
}

fn hex_digest(s: &str) -> Result<String, ReleaseError> {
    sha256_hex(s).ok_or_else(|| ReleaseError::Digest(s.trim().to_ascii_lowercase()))
}

/// `s` as a SHA-256 in lower-case hex (trimmed, lowered), if it is one.
pub(crate) fn sha256_hex(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    is_sha256_hex(&s).then_some(s)
}

/// 64 lower-case hex digits: how a SHA-256 is written in ids and file names here.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io(path: &Path, source: std::io::Error) -> ReleaseError {
    ReleaseError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const I: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn config() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.tf"), "module \"store\" { source = \"./modules/store\" }\n").unwrap();
        std::fs::write(d.path().join(LOCK_FILE), "# lock\n").unwrap();
        std::fs::create_dir_all(d.path().join("modules/store")).unwrap();
        std::fs::write(d.path().join("modules/store/main.tf"), "# store\n").unwrap();
        std::fs::create_dir_all(d.path().join(".terraform/providers")).unwrap();
        std::fs::write(d.path().join(".terraform/providers/x"), "cache").unwrap();
        d
    }

    #[test]
    fn same_inputs_same_id_and_a_bundle_that_verifies() {
        let c = config();
        let r = Release::from_dir("2026.12.1", c.path(), P, I).unwrap();
        let paths: Vec<_> = r.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [LOCK_FILE, "main.tf", "modules/store/main.tf"], ".terraform/ is left out");
        assert_eq!(r.id(), Release::from_dir("2026.12.1", c.path(), P, I).unwrap().id());
        assert_ne!(r.id(), Release::from_dir("2026.12.1", c.path(), P, &P.replace('1', "3")).unwrap().id());
        let out = tempfile::tempdir().unwrap();
        let id = r.write_bundle(c.path(), out.path()).unwrap();
        assert_eq!(open_bundle(&out.path().join(&id), &id).unwrap(), r);
    }

    #[test]
    fn a_changed_missing_or_added_file_or_another_release_is_refused() {
        let c = config();
        let r = Release::from_dir("1", c.path(), P, I).unwrap();
        let out = tempfile::tempdir().unwrap();
        let id = r.write_bundle(c.path(), out.path()).unwrap();
        let dir = out.path().join(&id);
        let f = dir.join("files/main.tf");
        let orig = std::fs::read(&f).unwrap();

        std::fs::write(&f, b"module \"store\" { source = \"./evil\" }\n").unwrap();
        assert!(matches!(open_bundle(&dir, &id), Err(ReleaseError::FileHash { .. } | ReleaseError::FileSize { .. })));
        let mut same_size = orig.clone();
        same_size[0] ^= 1;
        std::fs::write(&f, &same_size).unwrap();
        assert!(matches!(open_bundle(&dir, &id), Err(ReleaseError::FileHash { .. })));
        std::fs::remove_file(&f).unwrap();
        assert!(matches!(open_bundle(&dir, &id), Err(ReleaseError::Missing(p)) if p == "main.tf"));
        std::fs::write(&f, &orig).unwrap();
        std::fs::write(dir.join("files/extra.tf"), "resource \"x\" \"y\" {}\n").unwrap();
        assert!(matches!(open_bundle(&dir, &id), Err(ReleaseError::Extra(p)) if p == "extra.tf"));
        std::fs::remove_file(dir.join("files/extra.tf")).unwrap();
        assert!(open_bundle(&dir, &id).is_ok());
        // release.json edited to match a changed file: it is another release.
        let other = P.replace('1', "4");
        let rj = dir.join("release.json");
        let text = std::fs::read_to_string(&rj).unwrap().replace(P, &other);
        std::fs::write(&rj, text).unwrap();
        assert!(matches!(open_bundle(&dir, &id), Err(ReleaseError::WrongId { .. })));
    }

    #[test]
    fn state_files_no_lock_file_and_bad_digests_are_refused() {
        let c = config();
        std::fs::write(c.path().join("terraform.tfstate"), "{}").unwrap();
        assert!(matches!(Release::from_dir("1", c.path(), P, I), Err(ReleaseError::State(_))));
        std::fs::remove_file(c.path().join("terraform.tfstate")).unwrap();
        std::fs::remove_file(c.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(Release::from_dir("1", c.path(), P, I), Err(ReleaseError::NoLockFile)));
        std::fs::write(c.path().join(LOCK_FILE), "# lock\n").unwrap();
        assert!(matches!(Release::from_dir("1", c.path(), "abc", I), Err(ReleaseError::Digest(_))));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", c.path().join("link.tf")).unwrap();
            assert!(matches!(Release::from_dir("1", c.path(), P, I), Err(ReleaseError::NotAFile(_))));
        }
    }

    #[test]
    fn listed_paths_stay_inside_the_bundle() {
        for bad in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert!(safe_relative("modules/store/main.tf").is_ok());
    }
}
