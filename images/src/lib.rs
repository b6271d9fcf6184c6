//! Nix formats written in Rust (NAR, nixbase32, store paths, narinfo, Ed25519 keys in Nix's
//! `name:base64` form, file binary caches) and the signed node-image manifest + SBOM that
//! `edge_proxmox_node` checks before it boots anything.
//!
//! Every format here is tested byte for byte against the real `nix` (see `tests/`).
//!
//! How the provider refuses an image it cannot trust:
//!
//! ```no_run
//! use edge_images::keys::PublicKey;
//! use edge_images::manifest::SignedManifest;
//!
//! fn check(manifest_json: &[u8], image: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//!     let trusted = [PublicKey::parse("edge-ci-1:olKWi+IH3p/UIVHgwtQtCJ/tEuFV0Qp0IprnkHd8oew=")?];
//!     let signed = SignedManifest::from_json(manifest_json)?;
//!     let manifest = signed.verify(&trusted)?; // unknown key / bad signature
//!     manifest.verify_file("nixos.img", image)?; // missing / size / hash mismatch
//!     Ok(())
//! }
//! ```

pub mod attest;
pub mod binary_cache;
pub mod canonical;
pub mod cosign;
pub mod dsse;
pub mod hash;
pub mod keys;
pub mod manifest;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod refs;
pub mod sbom;
pub mod store_path;
