//! The store agent's cycle: poll the channel, check the manifest, fetch and check the bundle,
//! apply it with the store's own Terraform, and write a signed report. Outbound only: it fetches
//! from the hub and never listens.
//!
//! Layout of the agent's directory (`state_dir`):
//! - `accepted.json`: the last manifest accepted (version, release) — anti-rollback's memory;
//! - `applied.json`: the release the working directory holds and applied successfully (gone
//!   after a failed apply: the directory then holds the failed release's files, so a manifest
//!   naming the last good release applies it again rather than counting as "up to date");
//! - `bundles/<id>/`: verified bundles (a cache: a re-apply or a roll-back needs no download);
//! - `work/`: the Terraform working directory — the bundle's files are replaced on each apply,
//!   `terraform.tfstate*` and `.terraform/` stay (the store's state never leaves the store);
//! - `reports/<version>.json`: the signed report of each cycle that applied something (or
//!   waited for its maintenance window, or saw the store's health change);
//! - `outbox/`: reports not yet delivered to the hub; [`Agent::deliver`] posts them and removes
//!   each one the hub answered (a hub that is down loses nothing).
//!
//! Nothing is recorded as accepted until the manifest and the bundle both verified, so a refused
//! manifest or a tampered bundle leaves the store exactly as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_images::canonical;
use edge_images::keys::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::channel::{Accepted, Channel, ChannelError, Policy, SignedChannel};
use crate::files::{read_json, write_atomic, write_json, FileError};
use crate::health::{self, CheckResult, HealthConfig};
use crate::images::{ImageCache, ImageCacheError};
use crate::release::{open_bundle, Release, ReleaseError};
use crate::rollout::Outcome;
use crate::window::MaintenanceWindow;

const REPORT_DOMAIN: &[u8] = b"edgeform-report-v1\n";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("manifest refused: {0}")]
    Refused(ChannelError),
    #[error("ALARM: {0}")]
    Expired(ChannelError),
    #[error("bundle refused: {0}")]
    Bundle(ReleaseError),
    #[error("image refused: {0}")]
    Image(ImageCacheError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    State(String),
}

pub struct Agent {
    /// Base URL of the hub's static tree: `channels/<channel>.json`, `bundles/<id>/…`.
    pub hub: String,
    pub store: String,
    pub policy: Policy,
    pub state_dir: PathBuf,
    pub terraform: PathBuf,
    /// The store's own key: reports are signed with it.
    pub key: SecretKey,
    pub http: reqwest::blocking::Client,
    /// Applies start only inside it; outside, the release waits (reported as pending).
    pub window: Option<MaintenanceWindow>,
    /// Checks run after each successful apply and on every cycle after it; their verdicts
    /// decide the report's outcome ([`health::combine`]).
    pub health: Option<HealthConfig>,
    /// Trusted image-signing keys (the provider's `trusted_image_keys`). When given, each
    /// release's node image is fetched once into the store-local cache ([`crate::images`]) and
    /// verified before the release is accepted.
    pub image_keys: Vec<PublicKey>,
    /// Trusted Cosign keys (PEM P-256) for the same check: a manifest passes with a valid Cosign
    /// signature (`manifest.json.sig` beside it on the hub) by one of these instead.
    pub image_cosign_keys: Vec<edge_images::cosign::CosignPublicKey>,
    /// Apply results and durations for the store's Prometheus (`agent run --metrics-listen`).
    pub metrics: Option<std::sync::Arc<crate::metrics::AgentMetrics>>,
}

/// What a cycle reports, signed by the store's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub store: String,
    pub channel: String,
    pub version: u64,
    pub release: String,
    pub outcome: Outcome,
    pub at: String,
    /// The end of Terraform's output (what failed, in its words).
    pub detail: Vec<String>,
    /// The health checks' verdicts, when the agent runs any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedReport {
    pub report: serde_json::Value,
    pub signature: Signature,
}

impl SignedReport {
    /// The report, if `key` signed exactly it.
    pub fn verify(&self, key: &PublicKey) -> Option<StatusReport> {
        let ok = self.signature.key_name == key.name
            && key.verify(&canonical::signed_bytes(REPORT_DOMAIN, &self.report), &self.signature);
        ok.then(|| serde_json::from_value(self.report.clone()).ok()).flatten()
    }
}

/// What one cycle did.
#[derive(Debug)]
pub enum Cycle {
    /// The manifest names the release already applied.
    UpToDate { version: u64 },
    /// Applied (or failed to apply) a release; the signed report was written.
    Ran { report: StatusReport, path: PathBuf },
    /// A new release is verified and cached, but the maintenance window is closed: nothing
    /// applied; the hub hears `pending` once per manifest version.
    Deferred { version: u64, opens: Option<OffsetDateTime> },
}

impl Agent {
    pub fn cycle(&self) -> Result<Cycle, AgentError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| io(&self.state_dir, e))?;
        let url = format!("{}/channels/{}.json", self.hub.trim_end_matches('/'), self.policy.channel);
        let manifest = SignedChannel::from_json(&self.get(&url)?).map_err(AgentError::Refused)?;
        let last: Option<Accepted> = read_json(&self.state_dir.join("accepted.json"))?;
        let channel = match manifest.verify(&self.policy, last.as_ref(), OffsetDateTime::now_utc()) {
            Ok(c) => c.clone(),
            Err(e @ ChannelError::Expired { .. }) => return Err(AgentError::Expired(e)),
            Err(e) => return Err(AgentError::Refused(e)),
        };
        let applied: Option<Accepted> = read_json(&self.state_dir.join("applied.json"))?;
        if applied.as_ref().is_some_and(|a| a.release == channel.release) {
            write_json(
                &self.state_dir.join("accepted.json"),
                &Accepted { version: channel.version, release: channel.release.clone() },
            )?;
            return self.recheck(&channel);
        }
        let bundle = self.fetch_bundle(&channel.release)?;
        if !self.image_keys.is_empty() || !self.image_cosign_keys.is_empty() {
            // Once per store, over the WAN; the BMCs and the provider read the LAN copy.
            let cache = ImageCache::new(&self.state_dir, &self.hub, self.image_keys.clone(), self.http.clone())
                .with_cosign_keys(self.image_cosign_keys.clone());
            // (It logs what it fetched: `fetched_bytes`, the WAN cost of this release's image.)
            cache.ensure_release(&bundle.1).map_err(AgentError::Image)?;
        }
        // Both verified: from here on this manifest is the store's.
        let accepted = Accepted { version: channel.version, release: channel.release.clone() };
        write_json(&self.state_dir.join("accepted.json"), &accepted)?;
        let now = OffsetDateTime::now_utc();
        if let Some(w) = self.window.as_ref().filter(|w| !w.contains(now)) {
            let opens = w.opens_next(now);
            let path = self.report_path(channel.version);
            if !path.exists() {
                let when = opens.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "never".into());
                let detail = vec![format!("outside the maintenance window {w}: waiting until {when}")];
                self.write_report(&channel, Outcome::Pending, detail, Vec::new())?;
            }
            return Ok(Cycle::Deferred { version: channel.version, opens });
        }
        let started = std::time::Instant::now();
        let (outcome, detail) = self.apply(&bundle, &channel.release)?;
        if let Some(m) = &self.metrics {
            m.applied(outcome, started.elapsed());
        }
        let applied_path = self.state_dir.join("applied.json");
        if outcome == Outcome::Succeeded {
            // Applied is applied, whatever the checks say next: a store that is unhealthy
            // after a good apply needs a fix or a revert, not the same apply again.
            write_json(&applied_path, &accepted)?;
        } else if let Err(e) = std::fs::remove_file(&applied_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io(&applied_path, e));
            }
        }
        let (outcome, checks) = match outcome {
            Outcome::Succeeded => self.check(&bundle.1),
            other => (other, Vec::new()),
        };
        let (report, path) = self.write_report(&channel, outcome, detail, checks)?;
        Ok(Cycle::Ran { report, path })
    }

    /// The release is applied: with health checks, run them again and report when the outcome
    /// moved (a store that fails after its wave passed still counts against the budget, and
    /// one that was pending on an unreachable check can now succeed).
    fn recheck(&self, channel: &Channel) -> Result<Cycle, AgentError> {
        let up_to_date = Cycle::UpToDate { version: channel.version };
        if self.health.is_none() {
            return Ok(up_to_date);
        }
        let dir = self.state_dir.join("bundles").join(&channel.release);
        let release = open_bundle(&dir, &channel.release).map_err(AgentError::Bundle)?;
        let (outcome, checks) = self.check(&release);
        let last: Option<SignedReport> = read_json(&self.report_path(channel.version))?;
        let last = last.and_then(|r| serde_json::from_value::<StatusReport>(r.report).ok());
        if last.is_some_and(|r| r.release == channel.release && r.outcome == outcome) {
            return Ok(up_to_date);
        }
        let detail = vec![format!("health checks on release {}: {outcome:?}", channel.release)];
        let (report, path) = self.write_report(channel, outcome, detail, checks)?;
        Ok(Cycle::Ran { report, path })
    }

    /// The health checks' outcome for `release` (succeeded when none are configured).
    fn check(&self, release: &Release) -> (Outcome, Vec<CheckResult>) {
        let Some(cfg) = &self.health else { return (Outcome::Succeeded, Vec::new()) };
        let checks = health::run(&cfg.for_release(release));
        (health::combine(&checks), checks)
    }

    fn report_path(&self, version: u64) -> PathBuf {
        self.state_dir.join("reports").join(format!("{version}.json"))
    }

    /// Signs a report about `channel`, keeps it under `reports/` and queues it in `outbox/`.
    fn write_report(
        &self,
        channel: &Channel,
        outcome: Outcome,
        detail: Vec<String>,
        checks: Vec<CheckResult>,
    ) -> Result<(StatusReport, PathBuf), AgentError> {
        let report = StatusReport {
            store: self.store.clone(),
            channel: channel.channel.clone(),
            version: channel.version,
            release: channel.release.clone(),
            outcome,
            at: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            detail,
            checks,
        };
        let value = serde_json::to_value(&report).map_err(|e| AgentError::State(e.to_string()))?;
        let signature = self.key.sign(&canonical::signed_bytes(REPORT_DOMAIN, &value));
        let signed = SignedReport { report: value, signature };
        let path = self.report_path(channel.version);
        write_json(&path, &signed)?;
        // Named so that the outbox sorts oldest first and a second report of one version
        // (the window opened, the health changed) queues behind the first.
        let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
        write_json(&self.state_dir.join("outbox").join(format!("{:020}-{stamp}.json", channel.version)), &signed)?;
        Ok((report, path))
    }

    /// Posts the queued reports to the hub (`POST /v1/reports`), oldest first. A report the hub
    /// took, or refused for good (4xx: not signed by this store's registered key, older than one
    /// it has), leaves the outbox; on any other failure the rest wait for the next cycle.
    /// Returns how many were delivered.
    pub fn deliver(&self) -> Result<usize, AgentError> {
        let outbox = self.state_dir.join("outbox");
        let mut queued: Vec<PathBuf> = match std::fs::read_dir(&outbox) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&outbox, e)),
        };
        queued.sort();
        let url = format!("{}/v1/reports", self.hub.trim_end_matches('/'));
        let mut delivered = 0;
        for p in queued {
            let body = std::fs::read(&p).map_err(|e| io(&p, e))?;
            let resp = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .map_err(|e| AgentError::Fetch { url: url.clone(), message: e.to_string() })?;
            let status = resp.status();
            if status.is_success() {
                delivered += 1;
            } else if status.is_client_error() {
                let why = resp.text().unwrap_or_default();
                tracing::warn!(report = %p.display(), %status, %why, "the hub refused a report; dropped");
            } else {
                return Err(AgentError::Fetch { url, message: format!("HTTP {status}") });
            }
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
        Ok(delivered)
    }

    fn get(&self, url: &str) -> Result<Vec<u8>, AgentError> {
        let fail = |message: String| AgentError::Fetch { url: url.to_string(), message };
        let resp = self.http.get(url).send().map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        resp.bytes().map(|b| b.to_vec()).map_err(|e| fail(e.to_string()))
    }

    /// The verified bundle of `id` in the cache, downloading it first if needed.
    fn fetch_bundle(&self, id: &str) -> Result<(PathBuf, Release), AgentError> {
        let dir = self.state_dir.join("bundles").join(id);
        if let Ok(r) = open_bundle(&dir, id) {
            return Ok((dir, r));
        }
        let tmp = self.state_dir.join("bundles").join(format!("{id}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        let base = format!("{}/bundles/{id}", self.hub.trim_end_matches('/'));
        let release_json = self.get(&format!("{base}/release.json"))?;
        write_atomic(&tmp.join("release.json"), &release_json)?;
        // The list of files comes from a release.json that must hash to the id before any of
        // its paths is used.
        let listed: Release = match open_bundle(&tmp, id) {
            Err(ReleaseError::Missing(_)) | Ok(_) => serde_json::from_slice(&release_json)
                .map_err(|e| AgentError::Bundle(ReleaseError::Parse(e.to_string())))?,
            Err(e) => return Err(AgentError::Bundle(e)),
        };
        for f in &listed.files {
            crate::release::safe_relative(&f.path).map_err(AgentError::Bundle)?;
        }
        for f in &listed.files {
            let body = self.get(&format!("{base}/files/{}", f.path))?;
            write_atomic(&tmp.join("files").join(&f.path), &body)?;
        }
        let release = open_bundle(&tmp, id).map_err(AgentError::Bundle)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
        Ok((dir, release))
    }

    /// Puts the bundle's files into the working directory (keeping state and `.terraform/`) and
    /// runs `terraform init` + `apply`. A failed apply is a report, not an error.
    fn apply(&self, (dir, release): &(PathBuf, Release), id: &str) -> Result<(Outcome, Vec<String>), AgentError> {
        let work = self.state_dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
        for e in std::fs::read_dir(&work).map_err(|e| io(&work, e))? {
            let e = e.map_err(|err| io(&work, err))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".terraform" || name.starts_with("terraform.tfstate") {
                continue;
            }
            let p = e.path();
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|err| io(&p, err))?;
        }
        for f in &release.files {
            let to = work.join(&f.path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::copy(dir.join("files").join(&f.path), &to).map_err(|e| io(&to, e))?;
        }
        let mut detail = Vec::new();
        // -lock-timeout: a backend shared by many stores (pg) takes a database-wide lock for an
        // instant on every lock; stores applying at the same moment retry instead of failing.
        for args in [
            &["init", "-input=false", "-no-color"][..],
            &["apply", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=300s"],
        ] {
            let out = Command::new(&self.terraform)
                .args(args)
                .current_dir(&work)
                .env("TF_IN_AUTOMATION", "1")
                .output()
                .map_err(|e| io(&self.terraform, e))?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            detail = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
            // What failed, in Terraform's words: from its first error on (the refresh lines
            // before it say nothing), at most 20 lines.
            let first_error = detail.iter().position(|l| l.trim_start_matches(['│', ' ']).starts_with("Error:"));
            let from = first_error.unwrap_or(detail.len().saturating_sub(20));
            detail.drain(..from);
            detail.truncate(20);
            if !out.status.success() {
                detail.insert(0, format!("terraform {} failed for release {id}", args[0]));
                return Ok((Outcome::Failed, detail));
            }
        }
        Ok((Outcome::Succeeded, detail))
    }
}

fn io(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::Io { path: path.to_path_buf(), source }
}
