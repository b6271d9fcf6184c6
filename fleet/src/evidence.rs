//! What one store shows an auditor on one day, observed rather than intended: the release it
//! runs, its configuration's digest, its Terraform state's digest (sensitive values left out by
//! construction), what a refresh-only plan finds changed outside Git, the images its nodes
//! booted (the nodes' own notes), backups and restore tests, certificate expiry, WireGuard
//! handshakes.
//!
//! [`collect`] needs nothing but Terraform's working directory (with the backend and workspace
//! the store applies from: `TF_WORKSPACE`, `PG_CONN_STR`, … come from the environment) and the
//! provider's own credentials (`EDGE_PVE_*`, `EDGE_PBS_*`), so it works for a plain per-store
//! Terraform layout as well as under the fleet agent. [`crate::audit`] puts the day's records
//! of every store into one signed file.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_images::canonical;
use edge_images::dsse::{Envelope, Statement, Subject};
use edge_images::hash::Sha256Hash;
use edge_images::keys::{PublicKey, SecretKey};
use edge_provider::clients::pbs::PbsClient;
use edge_provider::clients::pve::PveClient;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::health::{booted_image, latest_handshakes, Apis};
use crate::restore::RestoreTest;

/// Stands for a sensitive value wherever one was: the digest changes when a secret is added or
/// removed, never with the secret's value.
pub const SENSITIVE: &str = "(sensitive)";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{what}: {message}")]
    Terraform { what: String, message: String },
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
    #[error(transparent)]
    File(#[from] crate::files::FileError),
}

/// One store's evidence record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEvidence {
    pub store: String,
    pub collected_at: String,
    /// The release the store runs: the agent's applied release id, or the name a plain layout
    /// gives (a Git tag or commit).
    pub release: Option<String>,
    /// [`crate::release::configuration_digest`] of the working directory.
    pub configuration_sha256: String,
    pub state: StateDigest,
    pub drift: Drift,
    /// Per node, the image it booted as the node itself states it.
    pub images: Vec<BootedImage>,
    pub backups: Vec<BackupEvidence>,
    /// The latest restore tests (weekly), as `edge-fleet restore-test` wrote them.
    pub restore_tests: Vec<RestoreTest>,
    /// When those restore tests ran (the file's time), if any were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_tested_at: Option<String>,
    pub certificates: Vec<CertificateEvidence>,
    pub wireguard: Vec<Handshake>,
    /// What could not be observed, and why (an unreachable API is stated, never skipped).
    pub unobserved: Vec<String>,
}

/// The digest of the Terraform state as `terraform show -json` gives it, sensitive values
/// replaced by [`SENSITIVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDigest {
    pub sha256: String,
    pub resources: usize,
    /// How many values were left out as sensitive.
    pub sensitive_values: usize,
}

/// The refresh-only plan's verdict: what changed outside Terraform since the last apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub checked_at: String,
    /// SHA-256 of the plan's JSON (`terraform show -json PLAN`), so the record names the plan.
    pub plan_sha256: Option<String>,
    pub changes: Vec<DriftChange>,
    /// The plan failed: drift is unknown (never "clean").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftChange {
    pub address: String,
    /// `update`, `delete` (gone outside Terraform), …
    pub actions: Vec<String>,
    /// Names of the attributes that differ (values are not copied: they can be secrets).
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootedImage {
    pub node: String,
    pub url: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupEvidence {
    /// `vm/100`.
    pub group: String,
    pub last_backup_time: i64,
    pub age_s: i64,
    /// `ok`, `failed`, or none (never verified).
    pub verification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEvidence {
    pub node: String,
    pub filename: String,
    pub fingerprint: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handshake {
    pub interface: String,
    pub peer: String,
    /// Seconds since the latest handshake; none if there never was one.
    pub age_s: Option<i64>,
}

/// Where to collect from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub store: String,
    pub terraform: PathBuf,
    /// Terraform's working directory (the store's root module, initialised).
    pub dir: PathBuf,
    pub release: Option<String>,
    /// PBS datastore whose backups are listed.
    pub datastore: Option<String>,
    /// WireGuard interfaces whose handshakes are listed, and the `wg` program.
    pub wireguard: Vec<String>,
    pub wg: PathBuf,
    /// A JSON file of restore tests (`edge-fleet restore-test --out`).
    pub restore_results: Option<PathBuf>,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Collects the store's evidence (call from outside a Tokio runtime).
pub fn collect(src: &Sources, apis: &Apis) -> Result<StoreEvidence, EvidenceError> {
    let now = OffsetDateTime::now_utc();
    let (configuration_sha256, _) = crate::release::configuration_digest(&src.dir)?;
    let state = state_digest(&terraform_json(src, &["show", "-json"], "terraform show -json")?);
    let drift = refresh_only(src);
    let mut unobserved = Vec::new();
    let (images, certificates, backups) = observe(src, apis, now, &mut unobserved);
    let wireguard = handshakes(src, now, &mut unobserved);
    let (restore_tests, restore_tested_at) = match &src.restore_results {
        Some(p) => {
            let tests: Vec<RestoreTest> = crate::files::read_json(p)?.unwrap_or_default();
            let at = std::fs::metadata(p).and_then(|m| m.modified()).ok().map(|t| rfc3339(t.into()));
            (tests, at)
        }
        None => (Vec::new(), None),
    };
    Ok(StoreEvidence {
        store: src.store.clone(),
        collected_at: rfc3339(now),
        release: src.release.clone(),
        configuration_sha256,
        state,
        drift,
        images,
        backups,
        restore_tests,
        restore_tested_at,
        certificates,
        wireguard,
        unobserved,
    })
}

/// Runs Terraform in the store's directory; its standard output on success.
fn terraform(src: &Sources, args: &[&str], what: &str) -> Result<Vec<u8>, EvidenceError> {
    let fail = |message: String| EvidenceError::Terraform { what: what.into(), message };
    let out = Command::new(&src.terraform)
        .args(args)
        .current_dir(&src.dir)
        .env("TF_IN_AUTOMATION", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(fail(format!("{}: {}", out.status, lines[lines.len().saturating_sub(8)..].join(" | "))));
    }
    Ok(out.stdout)
}

fn terraform_json(src: &Sources, args: &[&str], what: &str) -> Result<Value, EvidenceError> {
    let out = terraform(src, args, what)?;
    serde_json::from_slice(&out).map_err(|e| EvidenceError::Terraform { what: what.into(), message: e.to_string() })
}

/// `values` with everything `mask` (Terraform's `sensitive_values` shape) marks `true`
/// replaced by [`SENSITIVE`]; counts what it replaced.
fn redact(values: &Value, mask: &Value, n: &mut usize) -> Value {
    match (values, mask) {
        (_, Value::Bool(true)) => {
            *n += 1;
            Value::String(SENSITIVE.into())
        }
        (Value::Object(v), Value::Object(m)) => {
            Value::Object(v.iter().map(|(k, x)| (k.clone(), redact(x, m.get(k).unwrap_or(&Value::Null), n))).collect())
        }
        (Value::Array(v), Value::Array(m)) => {
            Value::Array(v.iter().enumerate().map(|(i, x)| redact(x, m.get(i).unwrap_or(&Value::Null), n)).collect())
        }
        _ => values.clone(),
    }
}

/// Every resource of a `terraform show -json` module tree, children included.
fn resources(module: &Value, out: &mut Vec<Value>) {
    if let Some(rs) = module.get("resources").and_then(Value::as_array) {
        out.extend(rs.iter().cloned());
    }
    for child in module.get("child_modules").and_then(Value::as_array).into_iter().flatten() {
        resources(child, out);
    }
}

/// The digest of the state's resources (address, type, values), sensitive values redacted.
/// Outputs are left out: they repeat resource values, and a sensitive one is all secret.
pub fn state_digest(show: &Value) -> StateDigest {
    let mut all = Vec::new();
    if let Some(root) = show.get("values").and_then(|v| v.get("root_module")) {
        resources(root, &mut all);
    }
    let mut redacted = 0;
    let mut items: Vec<Value> = all
        .iter()
        .map(|r| {
            let values = redact(
                r.get("values").unwrap_or(&Value::Null),
                r.get("sensitive_values").unwrap_or(&Value::Null),
                &mut redacted,
            );
            let mut o = Map::new();
            o.insert("address".into(), r.get("address").cloned().unwrap_or(Value::Null));
            o.insert("type".into(), r.get("type").cloned().unwrap_or(Value::Null));
            o.insert("values".into(), values);
            Value::Object(o)
        })
        .collect();
    items.sort_by_key(|i| i["address"].as_str().unwrap_or_default().to_string());
    let sha256 = Sha256Hash::digest(&canonical::signed_bytes(b"edgeform-state-v1\n", &Value::Array(items))).to_hex();
    StateDigest { sha256, resources: all.len(), sensitive_values: redacted }
}

/// `terraform plan -refresh-only` into a plan file, read back with `terraform show -json`.
/// No lock is taken: the plan only reads, and must not hold up an apply.
fn refresh_only(src: &Sources) -> Drift {
    let checked_at = rfc3339(OffsetDateTime::now_utc());
    let unknown = |error: String| Drift {
        checked_at: checked_at.clone(),
        plan_sha256: None,
        changes: Vec::new(),
        error: Some(error),
    };
    // A private directory (0700): the plan file holds the refreshed values, secrets included.
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return unknown(format!("a temporary directory for the plan: {e}")),
    };
    let plan = tmp.path().join("refresh.tfplan");
    let plan_arg = format!("-out={}", plan.display());
    let made = terraform(
        src,
        &["plan", "-refresh-only", "-input=false", "-lock=false", "-no-color", &plan_arg],
        "terraform plan -refresh-only",
    );
    let plan_s = plan.display().to_string();
    let shown = made.and_then(|_| terraform_json(src, &["show", "-json", &plan_s], "terraform show -json PLAN"));
    match shown {
        Ok(v) => drift_of(&v, checked_at),
        Err(e) => unknown(e.to_string()),
    }
}

/// The drift in a plan's JSON (`resource_drift`): per resource, the actions and the names of
/// the attributes whose values differ.
pub fn drift_of(plan: &Value, checked_at: String) -> Drift {
    let plan_sha256 = Some(Sha256Hash::digest(&canonical::signed_bytes(b"", plan)).to_hex());
    let mut changes: Vec<DriftChange> = plan
        .get("resource_drift")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| {
            let change = d.get("change").unwrap_or(&Value::Null);
            let actions = change
                .get("actions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let (before, after) = (change.get("before"), change.get("after"));
            let mut attributes: Vec<String> =
                match (before.and_then(Value::as_object), after.and_then(Value::as_object)) {
                    (Some(b), Some(a)) => {
                        b.keys().chain(a.keys()).filter(|k| b.get(*k) != a.get(*k)).cloned().collect()
                    }
                    (Some(o), None) | (None, Some(o)) => o.keys().cloned().collect(),
                    (None, None) => Vec::new(),
                };
            attributes.sort();
            attributes.dedup();
            DriftChange {
                address: d.get("address").and_then(Value::as_str).unwrap_or_default().to_string(),
                actions,
                attributes,
            }
        })
        .collect();
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    Drift { checked_at, plan_sha256, changes, error: None }
}

/// Nodes' booted images and certificates (PVE), backups (PBS).
fn observe(
    src: &Sources,
    apis: &Apis,
    now: OffsetDateTime,
    unobserved: &mut Vec<String>,
) -> (Vec<BootedImage>, Vec<CertificateEvidence>, Vec<BackupEvidence>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            unobserved.push(format!("PVE and PBS: cannot start a runtime: {e}"));
            return Default::default();
        }
    };
    rt.block_on(async {
        let (mut images, mut certs, mut backups) = (Vec::new(), Vec::new(), Vec::new());
        match apis.pve.as_ref().map(PveClient::from_config) {
            None => unobserved.push("PVE: no endpoint (EDGE_PVE_ENDPOINT)".into()),
            Some(Err(e)) => unobserved.push(format!("PVE: {e}")),
            Some(Ok(pve)) => match pve.nodes().await {
                Err(e) => unobserved.push(format!("PVE nodes: {e}")),
                Ok(nodes) => {
                    for n in nodes {
                        match pve.node_config(&n.node).await {
                            Ok(c) => {
                                let b = booted_image(c.description.as_deref().unwrap_or_default());
                                images.push(BootedImage {
                                    node: n.node.clone(),
                                    url: b.as_ref().map(|(u, _)| u.clone()),
                                    sha256: b.and_then(|(_, s)| s),
                                });
                            }
                            Err(e) => unobserved.push(format!("{}: node notes: {e}", n.node)),
                        }
                        match pve.certificates(&n.node).await {
                            Ok(cs) => certs.extend(cs.into_iter().map(|c| {
                                let not_after = c.notafter.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
                                CertificateEvidence {
                                    node: n.node.clone(),
                                    filename: c.filename,
                                    fingerprint: c.fingerprint,
                                    not_after: not_after.map(rfc3339),
                                    days_left: not_after.map(|t| (t - now).whole_days()),
                                }
                            })),
                            Err(e) => unobserved.push(format!("{}: certificates: {e}", n.node)),
                        }
                    }
                }
            },
        }
        if let Some(ds) = &src.datastore {
            match apis.pbs.as_ref().map(PbsClient::from_config) {
                None => unobserved.push("PBS: no endpoint (EDGE_PBS_ENDPOINT)".into()),
                Some(Err(e)) => unobserved.push(format!("PBS: {e}")),
                Some(Ok(pbs)) => match pbs.snapshots(ds, None).await {
                    Err(e) => unobserved.push(format!("PBS snapshots of {ds}: {e}")),
                    Ok(None) => unobserved.push(format!("PBS has no datastore {ds:?}")),
                    Ok(Some(snaps)) => {
                        let mut newest: std::collections::BTreeMap<String, (i64, Option<String>)> = Default::default();
                        for s in snaps.iter().filter(|s| s.finished()) {
                            let (Some(g), Some(t)) = (s.group(), s.backup_time) else { continue };
                            let v = s.verification.as_ref().and_then(|v| v.state.clone());
                            if newest.get(&g).is_none_or(|(old, _)| t > *old) {
                                newest.insert(g, (t, v));
                            }
                        }
                        backups = newest
                            .into_iter()
                            .map(|(group, (t, verification))| BackupEvidence {
                                group,
                                last_backup_time: t,
                                age_s: now.unix_timestamp() - t,
                                verification,
                            })
                            .collect();
                    }
                },
            }
        }
        (images, certs, backups)
    })
}

fn handshakes(src: &Sources, now: OffsetDateTime, unobserved: &mut Vec<String>) -> Vec<Handshake> {
    let mut out = Vec::new();
    for iface in &src.wireguard {
        match latest_handshakes(&src.wg, iface) {
            Ok(peers) => out.extend(peers.into_iter().map(|(peer, t)| Handshake {
                interface: iface.clone(),
                peer,
                age_s: (t != 0).then(|| now.unix_timestamp() - t),
            })),
            Err(e) => unobserved.push(e),
        }
    }
    out
}

/// The digest a day file's subject gives a store's record.
pub fn record_digest(e: &StoreEvidence) -> String {
    let v = serde_json::to_value(e).unwrap_or(Value::Null);
    Sha256Hash::digest(&canonical::signed_bytes(b"", &v)).to_hex()
}

/// The predicate type of a record signed by its store (what the agent sends the hub).
pub const STORE_PREDICATE: &str = "https://edgeform.dev/attestations/store-evidence/v1";

/// The record as an in-toto Statement about itself, signed with the store's own key.
pub fn sign_record(e: &StoreEvidence, key: &SecretKey) -> Envelope {
    let subject = vec![Subject::sha256(&format!("store/{}", e.store), &record_digest(e))];
    Statement::new(subject, STORE_PREDICATE, serde_json::to_value(e).unwrap_or(Value::Null)).sign(&[key])
}

/// The store a signed record claims to be from, before anything is checked (to look its key up).
pub fn claimed_store(env: &Envelope) -> Option<String> {
    let st = Statement::parse(&env.payload_unverified().ok()?).ok()?;
    st.predicate.get("store")?.as_str().map(str::to_string)
}

/// The record, if `key` signed it, it is a store-evidence Statement about `store`, and its
/// subject digest is the record's.
pub fn verify_record(env: &Envelope, store: &str, key: &PublicKey) -> Result<StoreEvidence, String> {
    let (st, _) = Statement::verify(env, std::slice::from_ref(key), 1, Some(STORE_PREDICATE))
        .map_err(|e| format!("{store}: {e}"))?;
    let rec: StoreEvidence =
        serde_json::from_value(st.predicate).map_err(|e| format!("{store}: not an evidence record: {e}"))?;
    if rec.store != store {
        return Err(format!("{store}: the record is about {}", rec.store));
    }
    let want = format!("store/{store}");
    if !st.subject.iter().any(|s| s.name == want && s.digest.get("sha256") == Some(&record_digest(&rec))) {
        return Err(format!("{store}: the record does not match its subject digest"));
    }
    Ok(rec)
}

/// Reads a record written by `edge-fleet audit collect`.
pub fn load(path: &Path) -> Result<StoreEvidence, EvidenceError> {
    crate::files::read_json(path)?.ok_or_else(|| crate::files::FileError::new(path, "no such file").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_values_never_reach_the_digest() {
        let show = |secret: &str| {
            json!({"values": {"root_module": {"child_modules": [{"resources": [{
                "address": "module.m.edge_wireguard_key.k", "type": "edge_wireguard_key",
                "values": {"public_key": "PUB", "private_key": secret, "peers": [{"psk": secret, "ip": "10.0.0.1"}]},
                "sensitive_values": {"private_key": true, "peers": [{"psk": true}]}
            }]}]}}})
        };
        let (a, b) = (state_digest(&show("s3cret")), state_digest(&show("other")));
        assert_eq!(a, b, "the secret's value must not change the digest");
        assert_eq!((a.resources, a.sensitive_values), (1, 2));
        let mut changed = show("s3cret");
        changed["values"]["root_module"]["child_modules"][0]["resources"][0]["values"]["public_key"] = json!("PUB2");
        assert_ne!(state_digest(&changed).sha256, a.sha256, "a non-sensitive change must change it");
    }

    #[test]
    fn drift_names_attributes_not_values() {
        let plan = json!({"resource_drift": [
            {"address": "b.x", "change": {"actions": ["delete"], "before": {"id": "x"}, "after": null}},
            {"address": "a.pool", "change": {"actions": ["update"], "before": {"size": 3, "name": "p"}, "after": {"size": 2, "name": "p"}}},
        ]});
        let d = drift_of(&plan, "t".into());
        assert_eq!(d.changes.len(), 2);
        assert_eq!(
            d.changes[0],
            DriftChange { address: "a.pool".into(), actions: vec!["update".into()], attributes: vec!["size".into()] }
        );
        assert_eq!(d.changes[1].actions, vec!["delete".to_string()]);
        assert!(d.error.is_none());
        assert!(drift_of(&json!({}), "t".into()).changes.is_empty());
    }
}
