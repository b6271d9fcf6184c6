//! `.narinfo` files: the metadata a binary cache serves for one store path, and the
//! signature fingerprint `1;<path>;<narHash>;<narSize>;<refs>` that Nix signs.

use std::fmt::Write as _;

use crate::hash::Sha256Hash;
use crate::keys::{check_signatures, PublicKey, SecretKey, SigCheck, Signature};
use crate::store_path::{StorePath, DEFAULT_STORE_DIR};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NarInfoError {
    #[error("narinfo line {line}: {msg}")]
    Line { line: usize, msg: String },
    #[error("narinfo is missing the required field {0}")]
    Missing(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    pub url: String,
    pub compression: String,
    pub file_hash: Option<Sha256Hash>,
    pub file_size: Option<u64>,
    pub nar_hash: Sha256Hash,
    pub nar_size: u64,
    /// Kept sorted and unique, as Nix's StorePathSet is.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub sigs: Vec<Signature>,
    pub ca: Option<String>,
}

/// The bytes Nix signs for a store path (ValidPathInfo::fingerprint).
pub fn fingerprint(path: &StorePath, nar_hash: &Sha256Hash, nar_size: u64, references: &[StorePath]) -> String {
    let mut refs: Vec<String> = references.iter().map(|r| r.to_absolute(DEFAULT_STORE_DIR)).collect();
    refs.sort();
    refs.dedup();
    format!("1;{};{};{};{}", path.to_absolute(DEFAULT_STORE_DIR), nar_hash, nar_size, refs.join(","))
}

impl NarInfo {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.store_path, &self.nar_hash, self.nar_size, &self.references)
    }

    /// Add (or replace) this key's signature.
    pub fn sign(&mut self, key: &SecretKey) {
        let sig = key.sign(self.fingerprint().as_bytes());
        self.sigs.retain(|s| s.key_name != sig.key_name);
        self.sigs.push(sig);
    }

    pub fn check_signatures(&self, trusted: &[PublicKey]) -> SigCheck {
        check_signatures(self.fingerprint().as_bytes(), &self.sigs, trusted)
    }

    pub fn parse(text: &str) -> Result<Self, NarInfoError> {
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = Vec::new();
        let mut deriver = None;
        let mut sigs = Vec::new();
        let mut ca = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.is_empty() {
                continue;
            }
            let err = |msg: String| NarInfoError::Line { line: line_no, msg };
            let (k, v) = line.split_once(": ").ok_or_else(|| err(format!("expected `Key: value`, got {line:?}")))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| err(format!("{k} {v:?} is not a number")));
            match k {
                "StorePath" => store_path = Some(StorePath::from_absolute(v).map_err(|e| err(e.to_string()))?),
                "URL" => url = Some(v.to_string()),
                "Compression" => compression = Some(v.to_string()),
                "FileHash" => file_hash = Some(v.parse().map_err(|e: crate::hash::HashParseError| err(e.to_string()))?),
                "FileSize" => file_size = Some(num(v)?),
                "NarHash" => nar_hash = Some(v.parse().map_err(|e: crate::hash::HashParseError| err(e.to_string()))?),
                "NarSize" => nar_size = Some(num(v)?),
                "References" => {
                    for r in v.split(' ').filter(|r| !r.is_empty()) {
                        references.push(StorePath::from_base_name(r).map_err(|e| err(e.to_string()))?);
                    }
                }
                "Deriver" if v != "unknown-deriver" => {
                    deriver = Some(StorePath::from_base_name(v).map_err(|e| err(e.to_string()))?)
                }
                "Sig" => sigs.push(Signature::parse(v).map_err(|e| err(e.to_string()))?),
                "CA" => ca = Some(v.to_string()),
                _ => {} // Nix ignores fields it does not know; so do we.
            }
        }
        references.sort();
        references.dedup();
        Ok(Self {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            compression: compression.unwrap_or_else(|| "bzip2".into()), // Nix's default when absent
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(NarInfoError::Missing("NarSize"))?,
            references,
            deriver,
            sigs,
            ca,
        })
    }

    /// Render in the field order Nix writes.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "StorePath: {}", self.store_path);
        let _ = writeln!(s, "URL: {}", self.url);
        let _ = writeln!(s, "Compression: {}", self.compression);
        if let Some(h) = &self.file_hash {
            let _ = writeln!(s, "FileHash: {h}");
        }
        if let Some(n) = self.file_size {
            let _ = writeln!(s, "FileSize: {n}");
        }
        let _ = writeln!(s, "NarHash: {}", self.nar_hash);
        let _ = writeln!(s, "NarSize: {}", self.nar_size);
        let refs: Vec<&str> = self.references.iter().map(|r| r.base_name()).collect();
        let _ = writeln!(s, "References: {}", refs.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(s, "Deriver: {}", d.base_name());
        }
        for sig in &self.sigs {
            let _ = writeln!(s, "Sig: {sig}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(s, "CA: {ca}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_render_roundtrip() {
        let text = "StorePath: /nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x\nURL: nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar\nCompression: none\nFileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3\nFileSize: 120\nNarHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3\nNarSize: 120\nReferences: 7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x\nDeriver: 0h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x.drv\n";
        let ni = NarInfo::parse(text).unwrap();
        assert_eq!(ni.render(), text);
        assert_eq!(
            ni.fingerprint(),
            "1;/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x;sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3;120;/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-x"
        );
        assert!(NarInfo::parse("URL: x\n").is_err());
    }
}
