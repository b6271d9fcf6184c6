//! Nix formats written in Rust (NAR, nixbase32, store paths, narinfo, Ed25519 keys in Nix's
//! `name:base64` form, file binary caches) and the signed node-image manifest + SBOM that
//! `edge_proxmox_node` checks before it boots anything.
//!
//! Every format here is tested byte for byte against the real `nix` (see `tests/`).

pub mod binary_cache;
pub mod hash;
pub mod keys;
pub mod manifest;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod refs;
pub mod sbom;
pub mod store_path;
