//! `data "edge_image_manifest"`: a signed node-image manifest, verified when it is read — at
//! plan time whenever its location is known — with exactly the checks of `edge_proxmox_node`'s
//! `image` block (`clients::image`: the provider's `trusted_image_keys`, or this block's Cosign
//! keys). A manifest that fails them is an error on `manifest`, so the plan stops before any
//! resource that would use the image is planned; one that passes exposes what it vouches for.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::image::{self, ImageError, Trust};
use crate::framework::{AttrPath, Attribute, Block, Ctx, DataSource, Diagnostics, Done, Schema, Type};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub name: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub nar_hash: Option<String>,
    pub nar_size: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub id: Option<String>,
    pub manifest: Option<String>,
    pub trusted_cosign_keys: Option<Vec<String>>,
    pub manifest_cosign_signature: Option<String>,
    pub manifest_sha256: Option<String>,
    pub version: Option<String>,
    pub system: Option<String>,
    pub system_nar_hash: Option<String>,
    pub signed_by: Option<Vec<String>>,
    pub files: Option<Vec<File>>,
}

pub struct ImageManifest;

/// Where a refused manifest's diagnostic points.
fn error_path(e: &ImageError) -> AttrPath {
    match e {
        ImageError::BadCosignKey { index, .. } => AttrPath::root("trusted_cosign_keys").index(*index),
        ImageError::FetchSignature { .. } => AttrPath::root("manifest_cosign_signature"),
        _ => AttrPath::root("manifest"),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl DataSource for ImageManifest {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_image_manifest"
    }

    fn schema(&self) -> Schema {
        let file = Type::object([
            ("name", Type::String),
            ("size", Type::Number),
            ("sha256", Type::String),
            ("nar_hash", Type::String),
            ("nar_size", Type::Number),
        ]);
        Schema::new(
            0,
            Block::new(
                "A signed node-image manifest (`edge-image sign`), verified when read — at plan time when its \
                 location is known — against the provider's `trusted_image_keys` (or `trusted_cosign_keys`), \
                 with the same checks as edge_proxmox_node's image block. An unverified manifest is an error, \
                 so nothing that uses it is planned.",
            )
            .attr(Attribute::computed("id", Type::String).describe("The manifest's sha256 (hex)."))
            .attr(
                Attribute::required("manifest", Type::String)
                    .describe("The signed manifest: a local path (`file://` allowed) or an http(s) URL."),
            )
            .attr(Attribute::optional("trusted_cosign_keys", Type::list(Type::String)).describe(
                "Cosign public keys (PEM, ECDSA P-256) also trusted for this manifest: it passes with a valid \
                 Nix-format signature by one of the provider's `trusted_image_keys` OR a valid Cosign signature of \
                 the manifest file by one of these.",
            ))
            .attr(Attribute::optional("manifest_cosign_signature", Type::String).describe(
                "The manifest's Cosign signature (base64, `cosign sign-blob --output-signature`), a path or URL; \
                 default: the manifest's location + `.sig`. Read only with `trusted_cosign_keys`.",
            ))
            .attr(
                Attribute::computed("manifest_sha256", Type::String)
                    .describe("sha256 (hex) of the manifest file as read: what `sha256sum manifest.json` prints."),
            )
            .attr(Attribute::computed("version", Type::String).describe("The image version the publisher signed."))
            .attr(
                Attribute::computed("system", Type::String)
                    .describe("The NixOS system's store path (`/nix/store/…-nixos-system-…`)."),
            )
            .attr(
                Attribute::computed("system_nar_hash", Type::String)
                    .describe("NAR hash of the system path (`sha256:<nixbase32>`), when the manifest has it."),
            )
            .attr(
                Attribute::computed("signed_by", Type::list(Type::String))
                    .describe("Names of the trusted keys whose signatures are valid (`cosign:<id>` for a Cosign key)."),
            )
            .attr(Attribute::computed("files", Type::list(file)).describe(
                "The image files, in manifest order: `name`, `size` (bytes), `sha256` (hex, as `sha256sum` prints \
                 it; null for a directory), `nar_hash` (`sha256:<nixbase32>`, as `nix-hash --type sha256 --base32` \
                 prints it after the prefix) and `nar_size`.",
            )),
        )
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        if let Some(m) = &c.manifest {
            if let Err(e) = image::check_location(m) {
                d.error_at(AttrPath::root("manifest"), "Invalid manifest location", e);
            }
        }
        if let Some(sig) = &c.manifest_cosign_signature {
            if let Err(e) = image::check_location(sig) {
                d.error_at(AttrPath::root("manifest_cosign_signature"), "Invalid signature location", e);
            }
            if c.trusted_cosign_keys.as_ref().is_none_or(|k| k.is_empty()) {
                d.error_at(
                    AttrPath::root("manifest_cosign_signature"),
                    "Cosign signature without Cosign keys",
                    "manifest_cosign_signature is only read to check a signature by one of trusted_cosign_keys: \
                     set trusted_cosign_keys, or remove manifest_cosign_signature.",
                );
            }
        }
        // Parsed now, so a bad key is refused by `terraform validate` already (with its index).
        if let Some(keys) = &c.trusted_cosign_keys {
            if let Err(e) = image::cosign_keys(keys) {
                let msg = match &e {
                    ImageError::BadCosignKey { index, source } => format!(
                        "trusted_cosign_keys[{index}] is not a Cosign public key: {source}. Expected a PEM \
                         `-----BEGIN PUBLIC KEY-----` block with an ECDSA P-256 key, as in cosign.pub."
                    ),
                    other => other.to_string(),
                };
                d.error_at(error_path(&e), "Invalid Cosign key", msg);
            }
        }
    }

    async fn read(&self, ctx: &Ctx, config: State) -> Result<Done<State>, Diagnostics> {
        let source = config.manifest.clone().unwrap_or_default();
        let trust = Trust {
            keys: ctx.clients.trusted_image_keys.clone(),
            cosign_keys: config.trusted_cosign_keys.clone().unwrap_or_default(),
            cosign_signature: config.manifest_cosign_signature.clone(),
        };
        let v = image::load_signed(&source, &trust).await.map_err(|e| {
            let msg = match &e {
                // The image block's wording names `image.*`; here the attributes are top level.
                ImageError::Untrusted { .. } | ImageError::FetchSignature { .. } => e.to_string().replace("image.", ""),
                _ => e.to_string(),
            };
            Diagnostics::at(
                error_path(&e),
                "Image manifest refused",
                format!("{msg}. Nothing that uses it was planned."),
            )
        })?;
        tracing::info!(manifest = %source, version = %v.manifest.version, signed_by = ?v.signed_by, "image manifest verified");
        let m = v.manifest;
        let mut s = config;
        s.id = Some(v.sha256.clone());
        s.manifest_sha256 = Some(v.sha256);
        s.version = Some(m.version);
        s.system = Some(m.system);
        s.system_nar_hash = m.system_nar_hash.map(|h| h.to_string());
        s.signed_by = Some(v.signed_by);
        s.files = Some(
            m.files
                .into_iter()
                .map(|f| File {
                    name: Some(f.name),
                    size: Some(to_i64(f.size)),
                    sha256: f.sha256.map(|h| h.to_hex()),
                    nar_hash: Some(f.nar_hash.to_string()),
                    nar_size: Some(to_i64(f.nar_size)),
                })
                .collect(),
        );
        Ok(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_point_at_their_attribute() {
        assert_eq!(error_path(&ImageError::NoTrustedKeys), AttrPath::root("manifest"));
        let e = ImageError::FetchSignature { source_name: "s".into(), message: "m".into() };
        assert_eq!(error_path(&e), AttrPath::root("manifest_cosign_signature"));
    }
}
