//! Store paths: `/nix/store/<32-char nixbase32 hash>-<name>`, and how Nix computes the path of
//! content-addressed objects (`nix store add-path`, fixed-output derivations).

use std::fmt;
use std::str::FromStr;

use crate::hash::Sha256Hash;
use crate::nixbase32;

pub const DEFAULT_STORE_DIR: &str = "/nix/store";
pub const HASH_CHARS: usize = 32;
const MAX_NAME: usize = 211;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("{0:?} is not in the store directory {1}")]
    NotInStore(String, String),
    #[error("store path {0:?} is too short or has no '-' after the 32-character hash")]
    Shape(String),
    #[error("store path hash {0:?} is not valid nixbase32")]
    Hash(String),
    #[error(
        "store path name {0:?} is invalid (allowed: A-Z a-z 0-9 + - . _ ? =, not starting with '.', at most 211 chars)"
    )]
    Name(String),
}

/// A store path without its directory: 20-byte digest + name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    /// The base name `<hash>-<name>`; ordering by it matches Nix's ordering of store paths.
    base: String,
}

pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(StorePathError::Name(name.to_string()))
    }
}

impl StorePath {
    /// Parse a base name `<hash>-<name>`.
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        if base.len() < HASH_CHARS + 2 || base.as_bytes()[HASH_CHARS] != b'-' {
            return Err(StorePathError::Shape(base.to_string()));
        }
        nixbase32::decode_fixed::<20>(&base[..HASH_CHARS]).map_err(|_| StorePathError::Hash(base.to_string()))?;
        validate_name(&base[HASH_CHARS + 1..])?;
        Ok(Self { base: base.to_string() })
    }

    /// Parse a full path in `store_dir`, ignoring anything below the top-level store object.
    pub fn from_absolute_in(path: &str, store_dir: &str) -> Result<Self, StorePathError> {
        let rest = path
            .strip_prefix(store_dir)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_string(), store_dir.to_string()))?;
        let base = rest.split('/').next().unwrap_or("");
        Self::from_base_name(base)
    }

    pub fn from_absolute(path: &str) -> Result<Self, StorePathError> {
        Self::from_absolute_in(path, DEFAULT_STORE_DIR)
    }

    pub fn from_digest(digest: &[u8; 20], name: &str) -> Result<Self, StorePathError> {
        validate_name(name)?;
        Ok(Self { base: format!("{}-{}", nixbase32::encode(digest), name) })
    }

    pub fn hash_part(&self) -> &str {
        &self.base[..HASH_CHARS]
    }
    pub fn name(&self) -> &str {
        &self.base[HASH_CHARS + 1..]
    }
    pub fn base_name(&self) -> &str {
        &self.base
    }
    pub fn to_absolute(&self, store_dir: &str) -> String {
        format!("{store_dir}/{}", self.base)
    }
    pub fn to_default_absolute(&self) -> String {
        self.to_absolute(DEFAULT_STORE_DIR)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_default_absolute())
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base)
    }
}

impl FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') {
            Self::from_absolute(s)
        } else {
            Self::from_base_name(s)
        }
    }
}

/// Nix's compressHash: fold a digest to `n` bytes by XOR.
fn compress_hash(h: &[u8; 32]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in h.iter().enumerate() {
        out[i % 20] ^= b;
    }
    out
}

/// Nix's makeStorePath: sha256 of `<type>:sha256:<hex>:<storeDir>:<name>`, folded to 20 bytes.
pub fn make_store_path(ty: &str, hash: &Sha256Hash, name: &str, store_dir: &str) -> Result<StorePath, StorePathError> {
    validate_name(name)?;
    let s = format!("{ty}:sha256:{}:{store_dir}:{name}", hash.to_hex());
    let d = Sha256Hash::digest(s.as_bytes());
    StorePath::from_digest(&compress_hash(&d.0), name)
}

/// How a content-addressed object's hash was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileIngestion {
    /// Hash of the plain file contents.
    Flat,
    /// Hash of the NAR serialisation (what `nix store add-path` uses).
    Recursive,
}

/// Nix's makeFixedOutputPath for SHA-256: the path of a content-addressed object.
/// `references` are other store paths the object refers to (empty for `add-path` of plain data).
pub fn make_fixed_output_path(
    method: FileIngestion,
    hash: &Sha256Hash,
    name: &str,
    references: &[StorePath],
    has_self_reference: bool,
    store_dir: &str,
) -> Result<StorePath, StorePathError> {
    if method == FileIngestion::Recursive {
        let mut refs: Vec<String> = references.iter().map(|r| r.to_absolute(store_dir)).collect();
        refs.sort();
        let mut ty = String::from("source");
        for r in refs {
            ty.push(':');
            ty.push_str(&r);
        }
        if has_self_reference {
            ty.push_str(":self");
        }
        make_store_path(&ty, hash, name, store_dir)
    } else {
        let inner = Sha256Hash::digest(format!("fixed:out:sha256:{}:", hash.to_hex()).as_bytes());
        make_store_path("output:out", &inner, name, store_dir)
    }
}

/// The path `nix store add-path PATH --name NAME` gives a tree with this NAR hash.
pub fn add_path_store_path(nar_hash: &Sha256Hash, name: &str) -> Result<StorePath, StorePathError> {
    make_fixed_output_path(FileIngestion::Recursive, nar_hash, name, &[], false, DEFAULT_STORE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p: StorePath = "/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-konsole-18.12.3/bin".parse().unwrap();
        assert_eq!(p.name(), "konsole-18.12.3");
        assert_eq!(p.hash_part(), "7h7qgvs4kgzsn8a6rb273saxyqh4jxlz");
        assert_eq!(p.to_string(), "/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-konsole-18.12.3");
        assert!("/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxle-x".parse::<StorePath>().is_err());
        assert!("/tmp/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x".parse::<StorePath>().is_err());
        assert!("/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-.x".parse::<StorePath>().is_err());
    }
}
