//! One step of the hub: read the stores' signed reports, evaluate the rollout, publish per-store
//! channel manifests for the stores the decision hands the release to or reverts, and keep the
//! controller's state. Each store follows a channel named after itself, so the hub can move
//! partitions (and stores within them) independently and every store's versions still only go
//! up. [`decide`] is the step itself, wherever the state lives: [`crate::db`] keeps it in
//! PostgreSQL for the hub service, [`Hub`] in files for a hub without a database.
//!
//! Files ([`Hub`]): `stores.json` (the registry: name, region, the store's report key), the served tree
//! (`channels/<store>.json`, `bundles/…`), `reports/<store>.json` (the latest signed report each
//! store delivered) and the hub's state (`state.json`: the rollout's phases, each channel's last
//! version and release). A report whose signature does not verify with the store's registered
//! key, or that names another store, is ignored: the store counts as pending.

use std::collections::BTreeMap;
use std::path::PathBuf;

use edge_images::keys::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::agent::{SignedReport, StatusReport};
use crate::channel::{Channel, SignedChannel};
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

/// A manifest a step published: the store's channel moves to `version`, naming `release`.
pub struct Publication {
    pub store: String,
    pub version: u64,
    pub release: String,
    pub manifest: SignedChannel,
}

/// What a step found and did: the decision, the manifests it published, and the reports it had
/// to ignore.
pub struct Step {
    pub decision: Decision,
    pub ignored: Vec<String>,
    pub published: Vec<Publication>,
}

/// The registry as the controller's inventory.
pub fn inventory(registry: &[RegisteredStore]) -> Vec<Store> {
    registry.iter().map(|s| Store { name: s.name.clone(), region: s.region.clone() }).collect()
}

/// The report inside `signed`, if `store`'s registered key signed it and it is about `store`;
/// otherwise why not.
pub fn verify_report(store: &RegisteredStore, signed: &SignedReport) -> Result<StatusReport, String> {
    let key = PublicKey::parse(&store.key)
        .map_err(|_| format!("{}: the registered key is not a Nix public key", store.name))?;
    match signed.verify(&key) {
        Some(r) if r.store == store.name => Ok(r),
        Some(r) => Err(format!("{}: signed report names another store ({:?})", store.name, r.store)),
        None => Err(format!("{}: report not signed by the store's registered key", store.name)),
    }
}

/// One step of the controller, wherever the hub keeps its state: evaluates the rollout from
/// its state so far (`None`: not started) and the stores' latest reports, and signs a newer
/// manifest for every store a decision opens or reverts. `channels`: per store, the last
/// version published and its release. Persisting the result is the caller's.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    spec: &Spec,
    registry: &[RegisteredStore],
    state: Option<State>,
    reports: &BTreeMap<String, Report>,
    channels: &BTreeMap<String, (u64, String)>,
    keys: &[SecretKey],
    lifetime: time::Duration,
    now: OffsetDateTime,
) -> Result<Step, HubError> {
    let assigned = spec.assign(&inventory(registry))?;
    let state = state.unwrap_or_else(|| State::new(spec));
    let t = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let decision = evaluate(spec, &assigned, &state, reports, t);
    let keys: Vec<&SecretKey> = keys.iter().collect();
    let mut published = Vec::new();
    for a in &decision.actions {
        let Action::Publish { release, stores, .. } = a;
        for store in stores {
            let version = channels.get(store).map_or(0, |(v, _)| *v) + 1;
            let manifest = Channel::new(store, version, release, now + lifetime)?.sign(&keys);
            published.push(Publication { store: store.clone(), version, release: release.clone(), manifest });
        }
    }
    Ok(Step { decision, ignored: Vec::new(), published })
}

impl Hub {
    pub fn step(&self, spec: &Spec, registry: &[RegisteredStore], now: OffsetDateTime) -> Result<Step, HubError> {
        let mut hub: HubState = read_json(&self.state_path)?.unwrap_or_default();
        let state = match &hub.rollout {
            Some((release, st)) if release == &spec.release => Some(st.clone()),
            _ => None,
        };
        let (reports, ignored) = self.read_reports(registry)?;
        let mut step = decide(spec, registry, state, &reports, &hub.channels, &self.keys, self.manifest_lifetime, now)?;
        for p in &step.published {
            write_atomic(&self.tree.join("channels").join(format!("{}.json", p.store)), &p.manifest.to_json())?;
            hub.channels.insert(p.store.clone(), (p.version, p.release.clone()));
        }
        hub.rollout = Some((spec.release.clone(), step.decision.state.clone()));
        write_json(&self.state_path, &hub)?;
        step.ignored = ignored;
        Ok(step)
    }

    fn read_reports(&self, registry: &[RegisteredStore]) -> Result<(BTreeMap<String, Report>, Vec<String>), HubError> {
        let mut out = BTreeMap::new();
        let mut ignored = Vec::new();
        for s in registry {
            let path = self.reports.join(format!("{}.json", s.name));
            let Some(signed) = read_json::<SignedReport>(&path)? else { continue };
            match verify_report(s, &signed) {
                Ok(r) => {
                    out.insert(s.name.clone(), Report { release: r.release, outcome: r.outcome });
                }
                Err(why) => ignored.push(why),
            }
        }
        Ok((out, ignored))
    }
}
