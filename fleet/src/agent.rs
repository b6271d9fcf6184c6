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
//! - `reports/<version>.json`: the signed report of each cycle that applied something.
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

use crate::channel::{Accepted, ChannelError, Policy, SignedChannel};
use crate::files::{read_json, write_atomic, write_json, FileError};
use crate::release::{open_bundle, Release, ReleaseError};
use crate::rollout::Outcome;

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
            return Ok(Cycle::UpToDate { version: channel.version });
        }
        let bundle = self.fetch_bundle(&channel.release)?;
        // Both verified: from here on this manifest is the store's.
        let accepted = Accepted { version: channel.version, release: channel.release.clone() };
        write_json(&self.state_dir.join("accepted.json"), &accepted)?;
        let (outcome, detail) = self.apply(&bundle, &channel.release)?;
        let applied_path = self.state_dir.join("applied.json");
        if outcome == Outcome::Succeeded {
            write_json(&applied_path, &accepted)?;
        } else if let Err(e) = std::fs::remove_file(&applied_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io(&applied_path, e));
            }
        }
        let report = StatusReport {
            store: self.store.clone(),
            channel: channel.channel.clone(),
            version: channel.version,
            release: channel.release.clone(),
            outcome,
            at: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            detail,
        };
        let value = serde_json::to_value(&report).map_err(|e| AgentError::State(e.to_string()))?;
        let signature = self.key.sign(&canonical::signed_bytes(REPORT_DOMAIN, &value));
        let path = self.state_dir.join("reports").join(format!("{}.json", channel.version));
        write_json(&path, &SignedReport { report: value, signature })?;
        Ok(Cycle::Ran { report, path })
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
        for args in
            [&["init", "-input=false", "-no-color"][..], &["apply", "-auto-approve", "-input=false", "-no-color"]]
        {
            let out = Command::new(&self.terraform)
                .args(args)
                .current_dir(&work)
                .env("TF_IN_AUTOMATION", "1")
                .output()
                .map_err(|e| io(&self.terraform, e))?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            detail = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
            let keep = detail.len().saturating_sub(20);
            detail.drain(..keep);
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
