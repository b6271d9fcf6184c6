//! Health checks the store agent runs after a successful apply, before it reports: the PVE
//! cluster has quorum, Ceph says `HEALTH_OK`, the WireGuard tunnel to the hub handshook
//! recently, PBS holds a recent finished backup, and the nodes booted the release's image.
//!
//! Each check answers [`Verdict::Pass`], [`Verdict::Fail`] or [`Verdict::Unknown`] with what it
//! saw ([`CheckResult::observed`]), and [`combine`] turns them into the report's three-valued
//! [`Outcome`]. Unknown is "no data": an endpoint that does not answer, credentials it refuses,
//! a datastore without a single finished backup. It is never a pass and never a failure, so a
//! store that cannot be observed reports `pending` and the rollout waits for it.
//!
//! Which checks run, and their limits, is a [`HealthConfig`] (JSON, e.g. the file named by
//! `EDGE_HEALTH_CONFIG`); a store without PBS or WireGuard leaves those checks out. The PVE and
//! PBS credentials are the provider's own (`EDGE_PVE_*`, `EDGE_PBS_*`, read by
//! `edge_provider::provider::with_env`), so the agent's environment holds them once. The checks
//! use the provider's typed clients, which own status codes and error kinds; they are async,
//! and the agent is not, so [`run`] drives them on a current-thread runtime of its own (call it
//! from outside any Tokio runtime).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_images::hash::Sha256Hash;
use edge_images::manifest::SignedManifest;
use edge_provider::clients::pbs::PbsClient;
use edge_provider::clients::pve::{PveClient, Quorum};
use edge_provider::clients::{ApiErrorKind, ClientError};
use edge_provider::provider::{with_env, ApiConfig, ProviderConfig};
use serde::{Deserialize, Serialize};

use crate::release::Release;
use crate::rollout::Outcome;

/// The environment variable naming the agent's health-check configuration file.
pub const CONFIG_ENV: &str = "EDGE_HEALTH_CONFIG";

/// Check names as they appear in [`CheckResult::name`].
pub const QUORUM: &str = "pve_quorum";
pub const CEPH: &str = "ceph_health";
pub const WIREGUARD: &str = "wireguard_handshake";
pub const BACKUP: &str = "pbs_last_backup";
pub const IMAGE: &str = "booted_image";

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("health config: {0}")]
    Parse(String),
    #[error("health config: {0}")]
    Invalid(String),
}

/// Which checks run and their limits. Every check is optional; at least one must be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph: Option<CephCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireguardCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageCheck>,
    /// Budget of each check in seconds: one that has not answered by then is Unknown. The
    /// clients retry a refused or reset connection a few times within it.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    120
}

/// PVE quorum (`GET /cluster/status` through the configured PVE endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumCheck {
    /// Members the cluster must have (offline ones included); any number when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
}

/// Ceph health (`GET /nodes/{node}/ceph/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CephCheck {
    /// The node to ask through; by default the one the PVE endpoint is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Health check codes (e.g. `POOL_NO_REDUNDANCY`) that do not fail the check when they are
    /// all that keeps Ceph from `HEALTH_OK`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// Age of the latest WireGuard handshakes (`wg show IFACE latest-handshakes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardCheck {
    pub interface: String,
    /// The oldest handshake that still passes. WireGuard re-handshakes every two minutes while
    /// traffic flows, so a few minutes is a dead tunnel.
    pub max_handshake_age_s: u64,
    /// Public keys of the peers that must be up (the hub); all peers when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The `wg` program.
    #[serde(default = "default_wg")]
    pub command: PathBuf,
}

fn default_wg() -> PathBuf {
    PathBuf::from("wg")
}

/// Age of the newest finished backup in a PBS datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCheck {
    pub datastore: String,
    pub max_age_s: u64,
    /// The namespace; the root one when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Groups (`vm/100`) that must each have a recent backup; when empty, the newest backup of
    /// the datastore decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The image each node booted, as its first boot states it in the node notes
/// (`edge-image url=URL sha256=HEX` in `GET /nodes/{node}/config` `description`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCheck {
    pub nodes: Vec<String>,
    /// The boot file's sha256 (hex) the nodes must have booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Or the signed image manifest (path or http(s) URL) to take it from…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// …its file the nodes boot (when the manifest has several with a sha256)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// …and the manifest's own sha256, which the release names (see
    /// [`HealthConfig::for_release`]): a manifest that does not hash to it is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

impl HealthConfig {
    pub fn from_json(bytes: &[u8]) -> Result<HealthConfig, HealthError> {
        let cfg: HealthConfig = serde_json::from_slice(bytes).map_err(|e| HealthError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<HealthConfig, HealthError> {
        let bytes = std::fs::read(path).map_err(|source| HealthError::Read { path: path.to_path_buf(), source })?;
        HealthConfig::from_json(&bytes)
    }

    /// The configuration in the file `EDGE_HEALTH_CONFIG` names; `None` when it names none.
    pub fn from_env() -> Result<Option<HealthConfig>, HealthError> {
        match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => HealthConfig::load(Path::new(&p)).map(Some),
            None => Ok(None),
        }
    }

    /// The same checks, with the image expected by `release`: its manifest's digest.
    pub fn for_release(&self, release: &Release) -> HealthConfig {
        let mut cfg = self.clone();
        if let Some(img) = &mut cfg.image {
            img.manifest_sha256 = Some(release.image_manifest_sha256.clone());
        }
        cfg
    }

    fn validate(&self) -> Result<(), HealthError> {
        let bad = |m: String| Err(HealthError::Invalid(m));
        let any = self.quorum.is_some()
            || self.ceph.is_some()
            || self.wireguard.is_some()
            || self.backup.is_some()
            || self.image.is_some();
        if !any {
            return bad("no check configured: leave the file out instead".into());
        }
        if self.timeout_s == 0 {
            return bad("timeout_s must be at least 1".into());
        }
        if let Some(w) = &self.wireguard {
            if w.interface.is_empty() || w.interface.contains(|c: char| c.is_whitespace() || c == '/') {
                return bad(format!("wireguard.interface {:?} is not an interface name", w.interface));
            }
            if w.max_handshake_age_s == 0 {
                return bad("wireguard.max_handshake_age_s must be at least 1".into());
            }
        }
        if let Some(b) = &self.backup {
            if b.datastore.is_empty() {
                return bad("backup.datastore is empty".into());
            }
            if b.max_age_s == 0 {
                return bad("backup.max_age_s must be at least 1".into());
            }
            for g in &b.groups {
                let ok = g.split_once('/').is_some_and(|(t, id)| ["vm", "ct", "host"].contains(&t) && !id.is_empty());
                if !ok {
                    return bad(format!("backup.groups: {g:?} is not TYPE/ID (vm/100, ct/101, host/name)"));
                }
            }
        }
        if let Some(i) = &self.image {
            if i.nodes.is_empty() || i.nodes.iter().any(String::is_empty) {
                return bad("image.nodes: name the nodes to check".into());
            }
            for (field, v) in [("sha256", &i.sha256), ("manifest_sha256", &i.manifest_sha256)] {
                if v.as_ref().is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
                    return bad(format!("image.{field} is not a sha256 in hex"));
                }
            }
            if i.sha256.is_none() && i.manifest.is_none() {
                return bad("image: give sha256, or the manifest to take it from".into());
            }
        }
        Ok(())
    }
}

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Nothing to judge by: unreachable, refused, or no data.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    /// What the check saw, for people: `HEALTH_WARN: 1 osds down`, `quorate, 3/3 nodes
    /// online`, `last backup 27 h ago (vm/100)`.
    pub observed: String,
}

impl CheckResult {
    fn new(name: &str, verdict: Verdict, observed: impl Into<String>) -> CheckResult {
        CheckResult { name: name.to_string(), verdict, observed: observed.into() }
    }
}

/// The report's outcome from the checks' verdicts:
/// - any [`Verdict::Fail`] → [`Outcome::Failed`]: something was seen to be wrong;
/// - otherwise any [`Verdict::Unknown`] → [`Outcome::Pending`]: some check could not see, and
///   no data is never a pass and never a failure;
/// - otherwise [`Outcome::Succeeded`] (also for no results: nothing was configured to fail).
pub fn combine(results: &[CheckResult]) -> Outcome {
    if results.iter().any(|r| r.verdict == Verdict::Fail) {
        Outcome::Failed
    } else if results.iter().any(|r| r.verdict == Verdict::Unknown) {
        Outcome::Pending
    } else {
        Outcome::Succeeded
    }
}

/// Where the checks reach PVE and PBS, with which credentials: the provider's settings.
#[derive(Clone, Default)]
pub struct Apis {
    pub pve: Option<ApiConfig>,
    pub pbs: Option<ApiConfig>,
}

impl std::fmt::Debug for Apis {
    /// Endpoints only: the settings hold tokens and passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = |a: &Option<ApiConfig>| a.as_ref().and_then(|a| a.endpoint.clone());
        f.debug_struct("Apis").field("pve", &ep(&self.pve)).field("pbs", &ep(&self.pbs)).finish()
    }
}

impl Apis {
    /// From the provider's environment variables (`EDGE_PVE_ENDPOINT`, `EDGE_PVE_API_TOKEN`,
    /// `EDGE_PVE_TLS_FINGERPRINT`, `EDGE_PBS_*`, …), as `env` gives them.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Apis {
        let cfg = with_env(ProviderConfig::default(), env);
        Apis { pve: cfg.pve, pbs: cfg.pbs }
    }

    /// From this process's environment.
    pub fn from_process_env() -> Apis {
        Apis::from_env(&|k| std::env::var(k).ok())
    }
}

/// Runs the configured checks with the credentials of this process's environment.
pub fn run(cfg: &HealthConfig) -> Vec<CheckResult> {
    run_with(cfg, &Apis::from_process_env())
}

/// Runs the configured checks against `apis`, all at once, each within `timeout_s`. Results
/// come in a fixed order: quorum, Ceph, WireGuard, backup, image.
pub fn run_with(cfg: &HealthConfig, apis: &Apis) -> Vec<CheckResult> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return configured(cfg)
                .into_iter()
                .map(|n| CheckResult::new(n, Verdict::Unknown, format!("cannot start the checks: {e}")))
                .collect()
        }
    };
    let results = rt.block_on(run_all(cfg, apis));
    for r in &results {
        tracing::info!(check = %r.name, verdict = ?r.verdict, observed = %r.observed, "health check");
    }
    results
}

/// The names of the checks `cfg` enables, in result order.
fn configured(cfg: &HealthConfig) -> Vec<&'static str> {
    [
        (cfg.quorum.is_some(), QUORUM),
        (cfg.ceph.is_some(), CEPH),
        (cfg.wireguard.is_some(), WIREGUARD),
        (cfg.backup.is_some(), BACKUP),
        (cfg.image.is_some(), IMAGE),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect()
}

async fn run_all(cfg: &HealthConfig, apis: &Apis) -> Vec<CheckResult> {
    let budget = Duration::from_secs(cfg.timeout_s);
    // One client per run: a client's connections belong to the runtime that made them.
    let pve = match &apis.pve {
        Some(a) => PveClient::from_config(a).map_err(|e| e.to_string()),
        None => Err("no PVE endpoint: set EDGE_PVE_ENDPOINT and its credentials".into()),
    };
    let pbs = match &apis.pbs {
        Some(a) => PbsClient::from_config(a).map_err(|e| e.to_string()),
        None => Err("no PBS endpoint: set EDGE_PBS_ENDPOINT and its credentials".into()),
    };
    let (pve, pbs) = (&pve, &pbs);
    let (q, c, w, b, i) = tokio::join!(
        within(QUORUM, budget, cfg.quorum.as_ref().map(|q| quorum(pve, q))),
        within(CEPH, budget, cfg.ceph.as_ref().map(|c| ceph(pve, c))),
        within(WIREGUARD, budget, cfg.wireguard.as_ref().map(wireguard)),
        within(BACKUP, budget, cfg.backup.as_ref().map(|b| backup(pbs, b))),
        within(IMAGE, budget, cfg.image.as_ref().map(|i| image(pve, i))),
    );
    [q, c, w, b, i].into_iter().flatten().collect()
}

/// Runs `check` (when configured) within `budget`; past it, the check is Unknown.
async fn within(
    name: &str,
    budget: Duration,
    check: Option<impl std::future::Future<Output = CheckResult>>,
) -> Option<CheckResult> {
    let check = check?;
    Some(match tokio::time::timeout(budget, check).await {
        Ok(r) => r,
        Err(_) => CheckResult::new(name, Verdict::Unknown, format!("no answer within {} s", budget.as_secs())),
    })
}

/// A client call that did not give data: nothing to judge by.
fn unknown(name: &str, what: &str, e: &ClientError) -> CheckResult {
    CheckResult::new(name, Verdict::Unknown, format!("{what}: {e}"))
}

async fn quorum(pve: &Result<PveClient, String>, cfg: &QuorumCheck) -> CheckResult {
    let pve = match pve {
        Ok(p) => p,
        Err(e) => return CheckResult::new(QUORUM, Verdict::Unknown, e.clone()),
    };
    let status = match pve.cluster_status().await {
        Ok(s) => s,
        Err(e) => return unknown(QUORUM, "cannot read the cluster status", &e),
    };
    match status.quorum() {
        Quorum::Standalone => CheckResult::new(QUORUM, Verdict::Fail, "not in a cluster (a standalone node)"),
        Quorum::Cluster { quorate: None, .. } => {
            CheckResult::new(QUORUM, Verdict::Unknown, "the cluster status carries no quorate flag")
        }
        Quorum::Cluster { quorate: Some(quorate), members, online, offline, .. } => {
            let mut seen =
                format!("{}, {online}/{members} nodes online", if quorate { "quorate" } else { "not quorate" });
            if !offline.is_empty() {
                seen.push_str(&format!(" ({} offline)", offline.join(", ")));
            }
            match cfg.nodes {
                _ if !quorate => CheckResult::new(QUORUM, Verdict::Fail, seen),
                Some(want) if want != members => {
                    CheckResult::new(QUORUM, Verdict::Fail, format!("{seen}; {want} members expected"))
                }
                _ => CheckResult::new(QUORUM, Verdict::Pass, seen),
            }
        }
    }
}

async fn ceph(pve: &Result<PveClient, String>, cfg: &CephCheck) -> CheckResult {
    let pve = match pve {
        Ok(p) => p,
        Err(e) => return CheckResult::new(CEPH, Verdict::Unknown, e.clone()),
    };
    let node = match &cfg.node {
        Some(n) => n.clone(),
        None => match pve.cluster_status().await {
            Ok(s) => match s.local().and_then(|l| l.name.clone()) {
                Some(n) => n,
                None => return CheckResult::new(CEPH, Verdict::Unknown, "the cluster status names no local node"),
            },
            Err(e) => return unknown(CEPH, "cannot tell which node answers", &e),
        },
    };
    let status = match pve.ceph_status(&node).await {
        Ok(s) => s,
        // The node answers but Ceph does not: not set up, or no monitor quorum (PVE's RADOS
        // connection times out). Either way the store has no working Ceph.
        Err(e) if e.is(ApiErrorKind::NotInitialized) => {
            return CheckResult::new(CEPH, Verdict::Fail, format!("no Ceph status through {node}: {e}"))
        }
        Err(e) => return unknown(CEPH, "cannot read the Ceph status", &e),
    };
    let Some(health) = status.health else {
        return CheckResult::new(CEPH, Verdict::Unknown, "the Ceph status carries no health");
    };
    let Some(state) = health.status else {
        return CheckResult::new(CEPH, Verdict::Unknown, "the Ceph health carries no status");
    };
    if state == "HEALTH_OK" {
        return CheckResult::new(CEPH, Verdict::Pass, state);
    }
    let Some(checks) = health.checks else {
        return CheckResult::new(CEPH, Verdict::Fail, state);
    };
    let raised: Vec<(String, String)> = checks
        .into_iter()
        .filter(|(_, c)| c.muted != Some(true))
        .map(|(code, c)| {
            let msg = c.summary.and_then(|s| s.message).unwrap_or_else(|| code.clone());
            (code, msg)
        })
        .collect();
    let said = raised.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
    let seen = if said.is_empty() { state.clone() } else { format!("{state}: {said}") };
    if !raised.is_empty() && raised.iter().all(|(code, _)| cfg.ignore.contains(code)) {
        return CheckResult::new(CEPH, Verdict::Pass, format!("{seen} (ignored)"));
    }
    CheckResult::new(CEPH, Verdict::Fail, seen)
}

async fn wireguard(cfg: &WireguardCheck) -> CheckResult {
    let out = tokio::process::Command::new(&cfg.command)
        .args(["show", &cfg.interface, "latest-handshakes"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return CheckResult::new(WIREGUARD, Verdict::Unknown, format!("cannot run {}: {e}", cfg.command.display()))
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return CheckResult::new(
            WIREGUARD,
            Verdict::Unknown,
            format!("wg show {} latest-handshakes: {}: {err}", cfg.interface, out.status),
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match judge_handshakes(cfg, &text, now_s()) {
        Ok((verdict, seen)) => CheckResult::new(WIREGUARD, verdict, seen),
        Err(seen) => CheckResult::new(WIREGUARD, Verdict::Unknown, seen),
    }
}

/// Runs `WG show IFACE latest-handshakes` and parses it, blocking: the evidence collector and the
/// agent's metrics read handshakes this way (the health check runs it on its runtime, with a
/// timeout). `Err`: why there is nothing to read, in words for the caller's record or log.
pub(crate) fn latest_handshakes(wg: &Path, iface: &str) -> Result<Vec<(String, i64)>, String> {
    let o = std::process::Command::new(wg)
        .args(["show", iface, "latest-handshakes"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", wg.display()))?;
    if !o.status.success() {
        return Err(format!("wg show {iface}: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    parse_handshakes(&String::from_utf8_lossy(&o.stdout))
}

/// `wg show IFACE latest-handshakes` output: `PUBKEY\tEPOCH` per peer (0: never).
fn parse_handshakes(text: &str) -> Result<Vec<(String, i64)>, String> {
    let mut peers = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(key), Some(t), None) = (f.next(), f.next(), f.next()) else {
            return Err(format!("unexpected output of wg show: {line:?}"));
        };
        let t: i64 = t.parse().map_err(|_| format!("unexpected handshake time in {line:?}"))?;
        peers.push((key.to_string(), t));
    }
    Ok(peers)
}

/// The verdict on `wg show IFACE latest-handshakes` output (`PUBKEY\tEPOCH` per peer, 0 for
/// never); `Err` when it says nothing to judge by.
fn judge_handshakes(cfg: &WireguardCheck, text: &str, now: i64) -> Result<(Verdict, String), String> {
    let peers = parse_handshakes(text)?;
    let considered: Vec<(String, Option<i64>)> = if cfg.peers.is_empty() {
        peers.iter().map(|(k, t)| (k.clone(), Some(*t))).collect()
    } else {
        cfg.peers.iter().map(|k| (k.clone(), peers.iter().find(|(p, _)| p == k).map(|(_, t)| *t))).collect()
    };
    if considered.is_empty() {
        return Err(format!("{} has no peers", cfg.interface));
    }
    let limit = cfg.max_handshake_age_s;
    let mut bad = Vec::new();
    let mut oldest: Option<(u64, &str)> = None;
    for (key, t) in &considered {
        let short = short_key(key);
        match t {
            None => bad.push(format!("peer {short} is not on {}", cfg.interface)),
            Some(0) => bad.push(format!("peer {short} never completed a handshake")),
            Some(t) => {
                let age = u64::try_from(now - t).unwrap_or(0);
                if age > limit {
                    bad.push(format!("peer {short} last handshake {} ago", fmt_age(age)));
                }
                if oldest.is_none_or(|(a, _)| age > a) {
                    oldest = Some((age, key));
                }
            }
        }
    }
    if !bad.is_empty() {
        return Ok((Verdict::Fail, format!("{} (limit {})", bad.join("; "), fmt_age(limit))));
    }
    let (age, key) = oldest.ok_or_else(|| format!("{} has no handshakes to judge", cfg.interface))?;
    let n = considered.len();
    Ok((Verdict::Pass, format!("latest handshake {} ago (peer {}; {n} peer(s))", fmt_age(age), short_key(key))))
}

async fn backup(pbs: &Result<PbsClient, String>, cfg: &BackupCheck) -> CheckResult {
    let pbs = match pbs {
        Ok(p) => p,
        Err(e) => return CheckResult::new(BACKUP, Verdict::Unknown, e.clone()),
    };
    let snaps = match pbs.snapshots(&cfg.datastore, cfg.namespace.as_deref()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return CheckResult::new(BACKUP, Verdict::Fail, format!("PBS has no datastore '{}'", cfg.datastore))
        }
        Err(e) => return unknown(BACKUP, "cannot list the backups", &e),
    };
    let now = now_s();
    let limit = cfg.max_age_s;
    // The newest usable backup per group: finished, and not found damaged by a verify.
    let newest = |group: Option<&str>| {
        snaps
            .iter()
            .filter(|s| s.finished() && !s.verify_failed())
            .filter(|s| group.is_none_or(|g| s.group().as_deref() == Some(g)))
            .filter_map(|s| Some((s.backup_time?, s.group()?)))
            .max()
    };
    let judged: Vec<(String, Option<(i64, String)>)> = if cfg.groups.is_empty() {
        vec![(format!("datastore '{}'", cfg.datastore), newest(None))]
    } else {
        cfg.groups.iter().map(|g| (g.clone(), newest(Some(g)))).collect()
    };
    let missing: Vec<&str> = judged.iter().filter(|(_, n)| n.is_none()).map(|(w, _)| w.as_str()).collect();
    let ages: Vec<(u64, String)> = judged
        .iter()
        .filter_map(|(_, n)| n.as_ref())
        .map(|(t, g)| (u64::try_from(now - t).unwrap_or(0), g.clone()))
        .collect();
    let stale: Vec<String> = ages
        .iter()
        .filter(|(age, _)| *age > limit)
        .map(|(age, g)| format!("last backup {} ago ({g})", fmt_age(*age)))
        .collect();
    if !stale.is_empty() {
        return CheckResult::new(BACKUP, Verdict::Fail, format!("{}, older than {}", stale.join("; "), fmt_age(limit)));
    }
    if !missing.is_empty() {
        let unfinished = snaps.iter().filter(|s| !s.finished()).count();
        return CheckResult::new(
            BACKUP,
            Verdict::Unknown,
            format!(
                "no finished backup of {} ({} snapshot(s) listed, {unfinished} unfinished)",
                missing.join(", "),
                snaps.len()
            ),
        );
    }
    match ages.iter().max() {
        Some((age, g)) => CheckResult::new(BACKUP, Verdict::Pass, format!("last backup {} ago ({g})", fmt_age(*age))),
        None => CheckResult::new(BACKUP, Verdict::Unknown, "nothing to judge"),
    }
}

async fn image(pve: &Result<PveClient, String>, cfg: &ImageCheck) -> CheckResult {
    let want = match expected_image(cfg).await {
        Ok(w) => w,
        Err(why) => return CheckResult::new(IMAGE, Verdict::Unknown, why),
    };
    let pve = match pve {
        Ok(p) => p,
        Err(e) => return CheckResult::new(IMAGE, Verdict::Unknown, e.clone()),
    };
    let mut wrong = Vec::new();
    let mut silent = Vec::new();
    for node in &cfg.nodes {
        let notes = match pve.node_config(node).await {
            Ok(c) => c.description.unwrap_or_default(),
            Err(e) => return unknown(IMAGE, &format!("cannot read {node}'s notes"), &e),
        };
        match booted_image(&notes) {
            Some((_, Some(sha))) if sha == want => {}
            Some((url, Some(sha))) => wrong.push(format!("{node} booted {} ({url})", short_hash(&sha))),
            Some((url, None)) => silent.push(format!("{node} states {url} without a sha256")),
            None => silent.push(format!("{node} states no image")),
        }
    }
    if !wrong.is_empty() {
        return CheckResult::new(
            IMAGE,
            Verdict::Fail,
            format!("{}; the release's is {}", wrong.join("; "), short_hash(&want)),
        );
    }
    if !silent.is_empty() {
        return CheckResult::new(IMAGE, Verdict::Unknown, silent.join("; "));
    }
    CheckResult::new(
        IMAGE,
        Verdict::Pass,
        format!("{}/{} nodes booted {}", cfg.nodes.len(), cfg.nodes.len(), short_hash(&want)),
    )
}

/// The boot file's sha256 the nodes must have booted: given, or from the manifest once it
/// hashes to the digest the release names. `Err` says why there is nothing to compare with.
async fn expected_image(cfg: &ImageCheck) -> Result<String, String> {
    if let Some(h) = &cfg.sha256 {
        return Ok(h.to_ascii_lowercase());
    }
    let Some(source) = &cfg.manifest else { return Err("no expected image".into()) };
    let Some(digest) = &cfg.manifest_sha256 else {
        return Err(format!("the manifest {source} is not pinned: the release's manifest digest is not known"));
    };
    let bytes = edge_provider::clients::image::fetch_manifest(source).await.map_err(|e| e.to_string())?;
    let got = Sha256Hash::digest(&bytes).to_hex();
    if !got.eq_ignore_ascii_case(digest) {
        return Err(format!(
            "the manifest {source} has sha256 {}, the release names {}",
            short_hash(&got),
            short_hash(digest)
        ));
    }
    // Pinned by the release's digest (the release is what the signed channel names), so its
    // content is the release's whatever key signed it.
    let signed = SignedManifest::from_json(&bytes).map_err(|e| format!("the manifest {source}: {e}"))?;
    let files = &signed.unverified().files;
    let file = match &cfg.file {
        Some(name) => files.iter().find(|f| &f.name == name).ok_or(format!("the manifest lists no file {name:?}"))?,
        None => {
            let hashed: Vec<_> = files.iter().filter(|f| f.sha256.is_some()).collect();
            match hashed.as_slice() {
                [one] => *one,
                _ => return Err(format!("the manifest lists {} files with a sha256: set image.file", hashed.len())),
            }
        }
    };
    file.sha256.map(|h| h.to_hex()).ok_or(format!("the manifest's {:?} has no sha256 (a directory)", file.name))
}

/// `(url, sha256)` of the `edge-image url=URL sha256=HEX` line in the node notes.
pub(crate) fn booted_image(notes: &str) -> Option<(String, Option<String>)> {
    let line = notes.lines().map(str::trim).find(|l| l.starts_with("edge-image "))?;
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
    Some((field("url=")?, field("sha256=").map(|h| h.to_ascii_lowercase())))
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `42 s`, `17 min`, `27 h`.
fn fmt_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

fn short_key(k: &str) -> String {
    k.chars().take(10).collect::<String>() + "…"
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(verdict: Verdict) -> CheckResult {
        CheckResult::new("x", verdict, "")
    }

    #[test]
    fn fail_beats_unknown_beats_pass() {
        use Verdict::*;
        assert_eq!(combine(&[r(Pass), r(Pass)]), Outcome::Succeeded);
        assert_eq!(combine(&[r(Pass), r(Unknown)]), Outcome::Pending);
        assert_eq!(combine(&[r(Unknown), r(Fail), r(Pass)]), Outcome::Failed);
        assert_eq!(combine(&[r(Fail)]), Outcome::Failed);
        assert_eq!(combine(&[]), Outcome::Succeeded, "nothing configured, nothing failed");
    }

    #[test]
    fn config_is_strict() {
        let ok = br#"{"quorum": {"nodes": 3}, "ceph": {}, "backup": {"datastore": "store1", "max_age_s": 93600},
            "wireguard": {"interface": "wg0", "max_handshake_age_s": 300},
            "image": {"nodes": ["pve1"], "manifest": "/etc/edge/manifest.json"}}"#;
        let cfg = HealthConfig::from_json(ok).expect("valid");
        assert_eq!(cfg.timeout_s, 120);
        assert_eq!(cfg.wireguard.as_ref().map(|w| w.command.clone()), Some(PathBuf::from("wg")));
        for bad in [
            &br#"{}"#[..],
            br#"{"quorum": {}, "extra": 1}"#,
            br#"{"ceph": {"ignor": []}}"#,
            br#"{"backup": {"datastore": "s", "max_age_s": 0}}"#,
            br#"{"backup": {"datastore": "s", "max_age_s": 5, "groups": ["vm-100"]}}"#,
            br#"{"wireguard": {"interface": "wg 0", "max_handshake_age_s": 5}}"#,
            br#"{"image": {"nodes": ["pve1"]}}"#,
            br#"{"image": {"nodes": ["pve1"], "sha256": "abc"}}"#,
            br#"{"quorum": {}, "timeout_s": 0}"#,
        ] {
            assert!(HealthConfig::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn for_release_pins_the_manifest() {
        let cfg = HealthConfig::from_json(br#"{"image": {"nodes": ["pve1"], "manifest": "m.json"}}"#).expect("valid");
        let release = Release {
            format: crate::release::FORMAT.into(),
            name: "r".into(),
            files: vec![],
            provider_sha256: "0".repeat(64),
            image_manifest_sha256: "ab".repeat(32),
        };
        let pinned = cfg.for_release(&release);
        assert_eq!(pinned.image.and_then(|i| i.manifest_sha256), Some("ab".repeat(32)));
    }

    #[test]
    fn handshakes_are_judged_by_the_oldest_peer() {
        let cfg = WireguardCheck {
            interface: "wg0".into(),
            max_handshake_age_s: 300,
            peers: vec![],
            command: PathBuf::from("wg"),
        };
        let now = 1_700_000_000;
        let out = format!("hubKEY0000000000000000000000000000000000000=\t{}\nother\t{}\n", now - 42, now - 100);
        let (v, seen) = judge_handshakes(&cfg, &out, now).expect("judged");
        assert_eq!((v, seen.as_str()), (Verdict::Pass, "latest handshake 100 s ago (peer other…; 2 peer(s))"));
        let (v, seen) = judge_handshakes(&cfg, &format!("a\t{}\nb\t0\n", now - 4000), now).expect("judged");
        assert_eq!(v, Verdict::Fail);
        assert_eq!(seen, "peer a… last handshake 66 min ago; peer b… never completed a handshake (limit 5 min)");
        let wanted = WireguardCheck { peers: vec!["hub".into()], ..cfg.clone() };
        let (v, seen) = judge_handshakes(&wanted, &format!("other\t{now}\n"), now).expect("judged");
        assert_eq!((v, seen.as_str()), (Verdict::Fail, "peer hub… is not on wg0 (limit 5 min)"));
        assert!(judge_handshakes(&cfg, "", now).is_err(), "no peers: nothing to judge");
        assert!(judge_handshakes(&cfg, "a b c\n", now).is_err());
    }

    #[test]
    fn image_line_in_the_notes() {
        let notes = "set up by hand\nedge-image url=http://a/img sha256=ABCDEF\nedge-seed sha256=00";
        assert_eq!(booted_image(notes), Some(("http://a/img".into(), Some("abcdef".into()))));
        assert_eq!(booted_image("edge-image url=http://a/img"), Some(("http://a/img".into(), None)));
        assert_eq!(booted_image("edge-seed sha256=00"), None);
    }

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!([fmt_age(42), fmt_age(600), fmt_age(27 * 3600 + 59)], ["42 s", "10 min", "27 h"]);
    }

    #[test]
    fn apis_come_from_the_providers_variables_and_never_print_secrets() {
        let env = |k: &str| match k {
            "EDGE_PVE_ENDPOINT" => Some("https://10.0.0.1:8006".to_string()),
            "EDGE_PVE_API_TOKEN" => Some("root@pam!edge=SECRET".to_string()),
            _ => None,
        };
        let apis = Apis::from_env(&env);
        assert_eq!(apis.pve.as_ref().and_then(|a| a.api_token.as_deref()), Some("root@pam!edge=SECRET"));
        assert!(apis.pbs.is_none());
        let shown = format!("{apis:?}");
        assert!(shown.contains("10.0.0.1") && !shown.contains("SECRET"), "{shown}");
    }
}
