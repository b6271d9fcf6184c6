//! Channel manifests: which release the stores of a channel run, signed by a threshold of keys.
//!
//! `channel.json` is `{"channel": {...}, "signatures": ["name:base64", ...]}`; the signatures
//! cover `edgeform-channel-v1\n` + the `channel` object in canonical JSON, exactly as received.
//! A store checks, in this order, and changes nothing unless all pass:
//! 1. signatures: at least `threshold` *distinct* trusted keys signed it (a copied signature or
//!    one key signing twice counts once);
//! 2. the channel is the store's own;
//! 3. anti-rollback: the version is above the last one the store accepted — or equal to it and
//!    naming the same release (a re-poll). An older manifest replayed, or a second manifest under
//!    a version already seen, is refused;
//! 4. expiry: an expired manifest is refused *as an alarm* ([`ChannelError::Expired`]): the
//!    store keeps running what it runs, it never tears anything down because the hub went quiet.
//!
//! A roll-back is a newer manifest that names the last good release.

use std::collections::BTreeSet;

use edge_images::canonical;
use edge_images::keys::{valid_signers, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const FORMAT: &str = "edgeform-channel/1";
const DOMAIN: &[u8] = b"edgeform-channel-v1\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("channel.json: {0}")]
    Parse(String),
    #[error("channel format {0:?} is not supported (expected {FORMAT:?})")]
    Format(String),
    #[error("expires {0:?} is not an RFC 3339 time")]
    Time(String),
    #[error("release {0:?} is not a release id (SHA-256, hex)")]
    ReleaseId(String),
    #[error("signed by {valid} of the {threshold} trusted keys needed (valid: {names:?}{bad})", valid = names.len(), bad = if bad.is_empty() { String::new() } else { format!("; signatures that do not verify: {bad:?}") })]
    BelowThreshold { names: Vec<String>, bad: Vec<String>, threshold: usize },
    #[error("manifest for channel {got:?}, this store follows {want:?}")]
    WrongChannel { want: String, got: String },
    #[error("version {got} is older than version {have} already accepted: refused (replayed or rolled back manifest; a roll-back is a newer version)")]
    Rollback { got: u64, have: u64 },
    #[error(
        "version {version} already names release {have}; this manifest names {got} under the same version: refused"
    )]
    Equivocation { version: u64, have: String, got: String },
    #[error("manifest version {version} expired at {expires}: nothing applied, the store keeps its release (the hub has not re-signed the channel)")]
    Expired { version: u64, expires: String },
    #[error("a threshold of 0 would accept unsigned manifests")]
    ZeroThreshold,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub format: String,
    /// Channel name (e.g. `stable`, `canary`, a wave's name).
    pub channel: String,
    /// Only goes up.
    pub version: u64,
    /// Release id (see [`crate::release`]).
    pub release: String,
    /// RFC 3339; after it the manifest is an alarm, not an instruction.
    pub expires: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    channel: serde_json::Value,
    signatures: Vec<Signature>,
}

/// A channel manifest with its signatures, as served in `channel.json`.
#[derive(Debug, Clone)]
pub struct SignedChannel {
    raw: serde_json::Value,
    channel: Channel,
    pub signatures: Vec<Signature>,
}

/// What a store trusts: the keys and how many of them must sign.
#[derive(Debug, Clone)]
pub struct Policy {
    pub trusted: Vec<PublicKey>,
    pub threshold: usize,
    pub channel: String,
}

/// The last manifest a store accepted (kept by the store between polls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub version: u64,
    pub release: String,
}

impl Channel {
    pub fn new(channel: &str, version: u64, release: &str, expires: OffsetDateTime) -> Result<Self, ChannelError> {
        let c = Self {
            format: FORMAT.into(),
            channel: channel.into(),
            version,
            release: release.into(),
            expires: expires.format(&Rfc3339).map_err(|e| ChannelError::Time(e.to_string()))?,
        };
        c.check_fields()?;
        Ok(c)
    }

    fn check_fields(&self) -> Result<OffsetDateTime, ChannelError> {
        if self.format != FORMAT {
            return Err(ChannelError::Format(self.format.clone()));
        }
        if self.release.len() != 64 || !self.release.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ChannelError::ReleaseId(self.release.clone()));
        }
        OffsetDateTime::parse(&self.expires, &Rfc3339).map_err(|_| ChannelError::Time(self.expires.clone()))
    }

    pub fn sign(&self, keys: &[&SecretKey]) -> SignedChannel {
        let raw = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut s = SignedChannel { raw, channel: self.clone(), signatures: vec![] };
        for k in keys {
            s.add_signature(k);
        }
        s
    }
}

impl SignedChannel {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ChannelError> {
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| ChannelError::Parse(e.to_string()))?;
        let channel: Channel =
            serde_json::from_value(env.channel.clone()).map_err(|e| ChannelError::Parse(e.to_string()))?;
        channel.check_fields()?;
        Ok(Self { raw: env.channel, channel, signatures: env.signatures })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let env = Envelope { channel: self.raw.clone(), signatures: self.signatures.clone() };
        let mut v = serde_json::to_vec_pretty(&env).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Adds (or replaces) the signature of `key`: co-signing by the threshold's other holders.
    pub fn add_signature(&mut self, key: &SecretKey) {
        let sig = key.sign(&canonical::signed_bytes(DOMAIN, &self.raw));
        self.signatures.retain(|s| s.key_name != sig.key_name);
        self.signatures.push(sig);
    }

    /// The manifest, once every check of the module docs passed at `now`. `last`: what the store
    /// accepted before (none on a new store).
    pub fn verify(
        &self,
        policy: &Policy,
        last: Option<&Accepted>,
        now: OffsetDateTime,
    ) -> Result<&Channel, ChannelError> {
        if policy.threshold == 0 {
            return Err(ChannelError::ZeroThreshold);
        }
        let (good, bad) = valid_signers(&canonical::signed_bytes(DOMAIN, &self.raw), &self.signatures, &policy.trusted);
        if good.len() < policy.threshold {
            return Err(ChannelError::BelowThreshold {
                names: good.into_iter().collect(),
                bad: bad.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
                threshold: policy.threshold,
            });
        }
        let c = &self.channel;
        if c.channel != policy.channel {
            return Err(ChannelError::WrongChannel { want: policy.channel.clone(), got: c.channel.clone() });
        }
        if let Some(last) = last {
            if c.version < last.version {
                return Err(ChannelError::Rollback { got: c.version, have: last.version });
            }
            if c.version == last.version && c.release != last.release {
                return Err(ChannelError::Equivocation {
                    version: c.version,
                    have: last.release.clone(),
                    got: c.release.clone(),
                });
            }
        }
        let expires = c.check_fields()?;
        if now >= expires {
            return Err(ChannelError::Expired { version: c.version, expires: c.expires.clone() });
        }
        Ok(c)
    }

    /// The manifest without any check (for display only).
    pub fn unverified(&self) -> &Channel {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    const R1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const R2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn keys() -> Vec<SecretKey> {
        ["hub-1", "hub-2", "hub-3"].iter().map(|n| SecretKey::generate(n).unwrap()).collect()
    }

    fn policy(k: &[SecretKey], threshold: usize) -> Policy {
        Policy { trusted: k.iter().map(|k| k.public()).collect(), threshold, channel: "stable".into() }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn manifest(version: u64, release: &str, k: &[&SecretKey]) -> SignedChannel {
        let m = Channel::new("stable", version, release, now() + Duration::days(7)).unwrap();
        SignedChannel::from_json(&m.sign(k).to_json()).unwrap()
    }

    #[test]
    fn a_threshold_of_distinct_trusted_keys_is_needed() {
        let k = keys();
        let p = policy(&k, 2);
        assert!(manifest(1, R1, &[&k[0], &k[1]]).verify(&p, None, now()).is_ok());
        let one = manifest(1, R1, &[&k[0]]);
        assert!(
            matches!(one.verify(&p, None, now()), Err(ChannelError::BelowThreshold { names, threshold: 2, .. }) if names == ["hub-1"])
        );
        // The same key's signature twice counts once.
        let mut dup = manifest(1, R1, &[&k[0]]);
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(dup.verify(&p, None, now()), Err(ChannelError::BelowThreshold { .. })));
        // An untrusted key does not count; a trusted name with a wrong key is reported.
        let stranger = SecretKey::generate("hub-2").unwrap();
        let forged = manifest(1, R1, &[&k[0], &stranger]);
        assert!(
            matches!(forged.verify(&p, None, now()), Err(ChannelError::BelowThreshold { bad, .. }) if bad == ["hub-2"])
        );
        assert_eq!(manifest(1, R1, &[&k[0]]).verify(&policy(&k, 0), None, now()), Err(ChannelError::ZeroThreshold));
    }

    #[test]
    fn a_tampered_manifest_loses_its_signatures() {
        let k = keys();
        let json = String::from_utf8(manifest(1, R1, &[&k[0], &k[1]]).to_json()).unwrap().replace(R1, R2);
        let t = SignedChannel::from_json(json.as_bytes()).unwrap();
        assert!(matches!(t.verify(&policy(&k, 1), None, now()), Err(ChannelError::BelowThreshold { .. })));
        // An added field is covered too.
        let json = String::from_utf8(manifest(1, R1, &[&k[0]]).to_json()).unwrap();
        let added = json.replacen("\"channel\": {", "\"channel\": {\"note\": \"x\",", 1);
        assert!(matches!(SignedChannel::from_json(added.as_bytes()), Err(ChannelError::Parse(_))));
    }

    #[test]
    fn versions_only_go_up_and_a_rollback_is_a_newer_version() {
        let k = keys();
        let p = policy(&k, 1);
        let seen = Accepted { version: 5, release: R2.into() };
        assert!(matches!(
            manifest(4, R1, &[&k[0]]).verify(&p, Some(&seen), now()),
            Err(ChannelError::Rollback { got: 4, have: 5 })
        ));
        assert!(manifest(5, R2, &[&k[0]]).verify(&p, Some(&seen), now()).is_ok(), "a re-poll of the same manifest");
        assert!(matches!(
            manifest(5, R1, &[&k[0]]).verify(&p, Some(&seen), now()),
            Err(ChannelError::Equivocation { .. })
        ));
        let back = manifest(6, R1, &[&k[0]]);
        assert_eq!(back.verify(&p, Some(&seen), now()).map(|c| c.release.as_str()), Ok(R1));
    }

    #[test]
    fn expired_and_foreign_manifests_are_refused() {
        let k = keys();
        let p = policy(&k, 1);
        let m = manifest(1, R1, &[&k[0]]);
        assert!(matches!(m.verify(&p, None, now() + Duration::days(8)), Err(ChannelError::Expired { version: 1, .. })));
        let other = Channel::new("canary", 1, R1, now() + Duration::days(1)).unwrap().sign(&[&k[0]]);
        assert!(matches!(other.verify(&p, None, now()), Err(ChannelError::WrongChannel { .. })));
        assert!(matches!(Channel::new("stable", 1, "nothex", now()), Err(ChannelError::ReleaseId(_))));
    }
}
