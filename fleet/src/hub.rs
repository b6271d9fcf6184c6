//! One step of the hub, on files: read the stores' signed reports, evaluate the rollout, publish
//! per-store channel manifests for the partitions the decision opens or reverts, and keep the
//! controller's state. Each store follows a channel named after itself, so the hub can move
//! partitions independently and every store's versions still only go up.
//!
//! Files: `stores.json` (the registry: name, region, the store's report key), the served tree
//! (`channels/<store>.json`, `bundles/…`), `reports/<store>.json` (the latest signed report each
//! store delivered) and the hub's state (`state.json`: the rollout's phases, each channel's last
//! version and release). A report whose signature does not verify with the store's registered
//! key, or that names another store, is ignored: the store counts as pending.

use std::collections::BTreeMap;
use std::path::PathBuf;

use edge_images::keys::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::agent::SignedReport;
use crate::channel::Channel;
use crate::files::{read_json, write_atomic, write_json, FileError};
use crate::rollout::{evaluate, Action, Decision, Report, Spec, State, Store};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("stores.json: {0}: the key is not a Nix public key")]
    Key(String),
    #[error("spec: {0}")]
    Spec(#[from] crate::rollout::SpecError),
    #[error("{0}")]
    Channel(#[from] crate::channel::ChannelError),
}

/// A store as the hub registered it when the store was built.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredStore {
    pub name: String,
    pub region: String,
    /// The store's report-signing public key, `name:base64`.
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubState {
    /// The rollout in progress (its spec's release), with its phases and when it started.
    #[serde(default)]
    pub rollout: Option<(String, State)>,
    /// Per channel (store): last version published and its release.
    #[serde(default)]
    pub channels: BTreeMap<String, (u64, String)>,
}

pub struct Hub {
    pub tree: PathBuf,
    pub state_path: PathBuf,
    pub reports: PathBuf,
    pub keys: Vec<SecretKey>,
    /// Lifetime of a published manifest.
    pub manifest_lifetime: time::Duration,
}

/// What a step found and did: the decision, plus the reports it had to ignore.
pub struct Step {
    pub decision: Decision,
    pub ignored: Vec<String>,
    pub published: Vec<(String, u64, String)>,
}

impl Hub {
    pub fn step(&self, spec: &Spec, registry: &[RegisteredStore], now: OffsetDateTime) -> Result<Step, HubError> {
        let stores: Vec<Store> =
            registry.iter().map(|s| Store { name: s.name.clone(), region: s.region.clone() }).collect();
        let assigned = spec.assign(&stores)?;
        let mut hub: HubState = read_json(&self.state_path)?.unwrap_or_default();
        let state = match &hub.rollout {
            Some((release, st)) if release == &spec.release => st.clone(),
            _ => State::new(spec),
        };
        let (reports, ignored) = self.read_reports(registry)?;
        let t = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let decision = evaluate(spec, &assigned, &state, &reports, t);
        let mut published = Vec::new();
        for a in &decision.actions {
            let Action::Publish { partition, release } = a;
            let Some(i) = spec.partitions.iter().position(|p| &p.name == partition) else { continue };
            for store in &assigned[i] {
                let version = hub.channels.get(store).map_or(0, |(v, _)| *v) + 1;
                let m = Channel::new(store, version, release, now + self.manifest_lifetime)?
                    .sign(&self.keys.iter().collect::<Vec<_>>());
                write_atomic(&self.tree.join("channels").join(format!("{store}.json")), &m.to_json())?;
                hub.channels.insert(store.clone(), (version, release.clone()));
                published.push((store.clone(), version, release.clone()));
            }
        }
        hub.rollout = Some((spec.release.clone(), decision.state.clone()));
        write_json(&self.state_path, &hub)?;
        Ok(Step { decision, ignored, published })
    }

    fn read_reports(&self, registry: &[RegisteredStore]) -> Result<(BTreeMap<String, Report>, Vec<String>), HubError> {
        let mut out = BTreeMap::new();
        let mut ignored = Vec::new();
        for s in registry {
            let key = PublicKey::parse(&s.key).map_err(|_| HubError::Key(s.name.clone()))?;
            let path = self.reports.join(format!("{}.json", s.name));
            let Some(signed) = read_json::<SignedReport>(&path)? else { continue };
            match signed.verify(&key) {
                Some(r) if r.store == s.name => {
                    out.insert(s.name.clone(), Report { release: r.release, outcome: r.outcome });
                }
                _ => ignored.push(format!("{}: report not signed by the store's registered key", s.name)),
            }
        }
        Ok((out, ignored))
    }
}
