//! Typed clients for the systems the resources manage (PVE, PBS, Redfish, SSH). Resources call
//! these; clients never see Terraform types.

pub mod http;
pub mod image;
pub mod pbs;
pub mod pve;
pub mod redfish;
pub mod ssh;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::provider::ApiConfig;

/// Everything a client call can fail with. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client configuration: {0}")]
    Config(String),
    #[error("{method} {path}: {message}")]
    Transport { method: String, path: String, connect: bool, message: String },
    #[error("{method} {path}: HTTP {status}: {message}{}", fmt_errors(.errors))]
    Api { method: String, path: String, status: u16, message: String, errors: BTreeMap<String, String> },
    #[error("{method} {path}: unexpected response: {message}")]
    Decode { method: String, path: String, message: String },
    #[error("task {upid} failed: {exitstatus}\n{}", .log.join("\n"))]
    TaskFailed { upid: String, exitstatus: String, log: Vec<String> },
    #[error(
        "task {upid} still running after {after:?} (it goes on on the server; raise the timeout or check the task log)"
    )]
    Timeout { upid: String, after: Duration },
    #[error("cancelled while waiting for task {upid} (it goes on on the server)")]
    Cancelled { upid: String },
}

fn fmt_errors(errors: &BTreeMap<String, String>) -> String {
    errors.iter().map(|(k, v)| format!("\n  {k}: {v}")).collect()
}

impl ClientError {
    /// Worth another try for a call that is safe to repeat: connection trouble, timeouts, 5xx
    /// (except 501, which never gets better).
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate that does not match the pin or CA will not match on a retry either.
            ClientError::Transport { message, .. } => !message.contains("certificate"),
            // PVE answers "Ceph not initialized" with a 500 that no retry will change.
            ClientError::Api { status, message, .. } => {
                *status >= 500 && *status != 501 && !message.contains("not initialized")
            }
            _ => false,
        }
    }
    /// The server could not be reached at all (refused, reset, timed out): a dark site, as
    /// opposed to a server that answered with an error or a certificate that does not match.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Transport { message, .. } if !message.contains("certificate"))
    }
    /// The request never reached the server (connecting failed), so even a POST may be repeated.
    pub fn never_sent(&self) -> bool {
        matches!(self, ClientError::Transport { connect: true, .. })
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The server's message (for matching "already exists" / "does not exist").
    pub fn message(&self) -> String {
        match self {
            ClientError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
    /// Parameter errors the API reported, by parameter name.
    pub fn param_errors(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            ClientError::Api { errors, .. } if !errors.is_empty() => Some(errors),
            _ => None,
        }
    }
}

type Cache<T> = OnceLock<Mutex<HashMap<String, Arc<T>>>>;

/// Clients are cached per configuration so all resources of one provider share connections.
fn cached<T>(
    cache: &'static Cache<T>,
    cfg: &ApiConfig,
    build: impl FnOnce() -> Result<T, ClientError>,
) -> Result<Arc<T>, ClientError> {
    // The key holds the token; it lives only in this process's memory, like the config itself.
    let key = serde_json::to_string(cfg).map_err(|e| ClientError::Config(e.to_string()))?;
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(c) = map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(Arc::clone(c));
    }
    let c = Arc::new(build()?);
    map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::clone(&c));
    Ok(c)
}

/// The shared PVE client for this configuration.
pub fn pve(cfg: &ApiConfig) -> Result<Arc<pve::PveClient>, ClientError> {
    static CACHE: Cache<pve::PveClient> = OnceLock::new();
    cached(&CACHE, cfg, || pve::PveClient::from_config(cfg))
}

/// The shared PBS client for this configuration.
pub fn pbs(cfg: &ApiConfig) -> Result<Arc<pbs::PbsClient>, ClientError> {
    static CACHE: Cache<pbs::PbsClient> = OnceLock::new();
    cached(&CACHE, cfg, || pbs::PbsClient::from_config(cfg))
}
