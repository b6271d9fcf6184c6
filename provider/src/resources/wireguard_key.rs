//! `edge_wireguard_key`: an x25519 key pair for WireGuard, for keys managed centrally on purpose
//! (node interfaces generate their own keys by default; see `edge_wireguard_peer`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::framework::{
    Applied, AttrPath, Attribute, Block, Ctx, Diagnostics, Done, IdentityAttribute, IdentitySchema, ImportRequest,
    PlanCtx, Resource, Schema, Type,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: Option<String>,
    pub public_key: Option<String>,
    pub private_key: Option<String>,
    pub keepers: Option<BTreeMap<String, String>>,
}

pub struct WireguardKey;

const SCHEMA_VERSION: i64 = 1;

#[async_trait]
impl Resource for WireguardKey {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_wireguard_key"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            SCHEMA_VERSION,
            Block::new("A WireGuard (x25519) key pair held in Terraform state. Prefer node-generated keys (`edge_wireguard_peer.node_public_key`); use this for keys managed centrally on purpose.")
                .attr(Attribute::computed("id", Type::String).describe("The public key."))
                .attr(Attribute::computed("public_key", Type::String).describe("Public key, base64 as `wg pubkey` prints it."))
                .attr(
                    Attribute::computed("private_key", Type::String)
                        .sensitive()
                        .describe("Private key, base64 as `wg genkey` prints it. Stored in state: protect the state."),
                )
                .attr(Attribute::optional("keepers", Type::map(Type::String)).describe(
                    "Arbitrary values; changing any of them generates a new key pair (rotation). Setting them on a key \
                     that had none (e.g. after import) keeps the key.",
                )),
        )
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                IdentityAttribute {
                    name: "public_key".into(),
                    description: "The public key of the pair.".into(),
                    required_for_import: true,
                },
                IdentityAttribute {
                    name: "key_file".into(),
                    description: "For import only: a file holding the private key (`wg genkey` output).".into(),
                    required_for_import: false,
                },
            ],
        })
    }

    fn identity(&self, state: &State) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("public_key".to_string(), state.public_key.clone()?)]))
    }

    async fn modify_plan(&self, _ctx: &Ctx, plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
        // Keepers rotate the key when they change from one value to another. A key without
        // keepers (imported, or made before they were set) just records them.
        let Some(prior) = &plan.prior else { return Ok(()) };
        let Some(before) = &prior.keepers else { return Ok(()) };
        let changed = plan.is_unknown_in_config("keepers") || plan.config.keepers.as_ref() != Some(before);
        if changed {
            plan.require_replace(AttrPath::root("keepers"));
        }
        Ok(())
    }

    async fn create(&self, _ctx: &Ctx, planned: State, _config: &State) -> Applied<State> {
        let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
        Ok(state_for(&secret, planned.keepers).into())
    }

    async fn read(&self, _ctx: &Ctx, state: State) -> Result<Done<Option<State>>, Diagnostics> {
        // Nothing remote: re-derive the public key so a hand-edited state cannot drift silently.
        let Some(private) = &state.private_key else { return Ok(None.into()) };
        let secret = parse_private_key(private)
            .map_err(|e| Diagnostics::at(AttrPath::root("private_key"), "Invalid private key in state", e))?;
        Ok(Some(state_for(&secret, state.keepers)).into())
    }

    async fn update(&self, _ctx: &Ctx, _prior: State, planned: State, _config: &State) -> Applied<State> {
        // Only keepers can change in place (first set after import); the key stays.
        Ok(planned.into())
    }

    async fn delete(&self, _ctx: &Ctx, _prior: State) -> Result<Done<()>, Diagnostics> {
        Ok(().into())
    }

    async fn import(&self, _ctx: &Ctx, req: ImportRequest) -> Result<Done<State>, Diagnostics> {
        let (source, expect_public) = match req {
            ImportRequest::Id(id) => (id, None),
            ImportRequest::Identity(mut m) => {
                let file = m.remove("key_file").ok_or_else(|| {
                    Diagnostics::error(
                        "Import needs the private key",
                        "A public key alone cannot rebuild a key pair: set identity.key_file to a file holding the private key, or import with id = \"<path or base64 private key>\".",
                    )
                })?;
                (file, m.remove("public_key"))
            }
        };
        let text = if std::path::Path::new(&source).is_file() {
            std::fs::read_to_string(&source)
                .map_err(|e| Diagnostics::error("Cannot read the key file", format!("{source}: {e}")))?
        } else {
            source
        };
        let secret = parse_private_key(text.trim()).map_err(|e| {
            Diagnostics::error(
                "Invalid import ID",
                format!("{e}. Use the path of a file holding a private key, or the base64 private key itself."),
            )
        })?;
        let state = state_for(&secret, None);
        if let (Some(want), Some(got)) = (expect_public, &state.public_key) {
            if &want != got {
                return Err(Diagnostics::error(
                    "Key file does not match the identity",
                    format!("identity.public_key is {want}, the key file's public key is {got}"),
                ));
            }
        }
        Ok(state.into())
    }

    fn upgrade(&self, from_version: i64, state: serde_json::Value) -> Result<serde_json::Value, Diagnostics> {
        match from_version {
            // Version 0 (the prototype's layout) named the keys `private` and `public`.
            0 => {
                let private = state.get("private").and_then(|v| v.as_str()).unwrap_or_default();
                let secret = parse_private_key(private)
                    .map_err(|e| Diagnostics::error("Cannot upgrade edge_wireguard_key state", e))?;
                let mut s = state_for(&secret, None);
                s.keepers = state.get("keepers").and_then(|k| serde_json::from_value(k.clone()).ok());
                serde_json::to_value(s).map_err(|e| Diagnostics::error("Cannot upgrade state", e.to_string()))
            }
            v => Err(Diagnostics::error(
                "Unsupported state version",
                format!("edge_wireguard_key has no migration from schema version {v}"),
            )),
        }
    }
}

fn state_for(secret: &StaticSecret, keepers: Option<BTreeMap<String, String>>) -> State {
    let public = B64.encode(PublicKey::from(secret).as_bytes());
    State {
        id: Some(public.clone()),
        public_key: Some(public),
        private_key: Some(B64.encode(secret.to_bytes())),
        keepers,
    }
}

/// Parses a base64 WireGuard private key (32 bytes).
pub fn parse_private_key(s: &str) -> Result<StaticSecret, String> {
    let bytes = B64.decode(s.trim()).map_err(|_| "the key is not base64".to_string())?;
    let arr: [u8; 32] =
        bytes.try_into().map_err(|b: Vec<u8>| format!("a WireGuard key has 32 bytes, this one {}", b.len()))?;
    Ok(StaticSecret::from(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_matches_wg_pubkey_vector() {
        // `echo 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=' | wg pubkey` (WireGuard's docs).
        let s = parse_private_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").unwrap();
        assert_eq!(state_for(&s, None).public_key.unwrap(), "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    }

    #[test]
    fn bad_keys_say_why() {
        assert!(parse_private_key("not base64!").err().unwrap_or_default().contains("base64"));
        assert!(parse_private_key("AAAA").err().unwrap_or_default().contains("32 bytes"));
    }
}
