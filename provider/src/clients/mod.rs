//! Typed clients for the systems the resources manage (PVE, PBS, Redfish, SSH). Resources call
//! these; clients never see Terraform types.

pub mod http;
pub mod image;
pub mod pbs;
pub mod poll;
pub mod pve;
pub mod redfish;
pub mod seed_server;
pub mod shared_read;
pub mod ssh;
pub mod version;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::provider::ApiConfig;

/// What kind of refusal an API answer was, decided from its HTTP status (and, where the status
/// alone is ambiguous, the endpoint) by the product's classifier: [`pve::classify`] and
/// [`pbs::classify`]. Endpoint methods that need "absent" or "already there" decide it with a
/// follow-up read and re-kind the error ([`ClientError::with_kind`]); nothing reads the
/// message text to decide, since its wording changes between versions and PVE before
/// pve-http-server 5.2.0 sends none in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The object does not exist.
    NotFound,
    /// The object to create exists already.
    AlreadyExists,
    /// The server refused the parameters (or, on PBS, the request as a whole: it answers most
    /// handler errors with a 400).
    InvalidParams,
    /// Authentication failed (bad or expired token or ticket).
    Unauthorized,
    /// The caller lacks a privilege.
    Forbidden,
    /// A 403 on a method only `root@pam` may call (API tokens never can).
    RootOnly,
    /// The subsystem behind the endpoint is not set up on the node (Ceph not initialised, node
    /// not in a cluster).
    NotInitialized,
    /// The method or path does not exist on this version (PVE 501).
    NotImplemented,
    /// Any other server error (5xx): worth another try for a call that is safe to repeat.
    Server,
    Other,
}

/// Why a TLS handshake refused the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate's fingerprint is not the pinned one.
    PinMismatch,
    /// The certificate does not chain to the configured CA (or is otherwise invalid).
    Untrusted,
}

/// Everything a client call can fail with. Messages never contain secrets. `Clone`: the
/// resources that wait for one shared read ([`shared_read`]) each get its error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client configuration: {0}")]
    Config(String),
    /// The server could not be reached or the connection broke (refused, reset, timed out).
    #[error("{method} {path}: {message}")]
    Transport { method: String, path: String, connect: bool, message: String },
    /// The server was reached but its certificate is not trusted.
    #[error("{method} {path}: {message}")]
    Tls { method: String, path: String, failure: TlsFailure, message: String },
    /// The API answered with an error. `message` is for display only.
    #[error("{method} {path}: HTTP {status}: {message}{}", fmt_errors(.errors))]
    Api {
        kind: ApiErrorKind,
        method: String,
        path: String,
        status: u16,
        message: String,
        errors: BTreeMap<String, String>,
    },
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
    /// Worth another try for a call that is safe to repeat: connection trouble and server errors
    /// (a 501, a refused certificate or a refused request never get better).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Transport { .. } | ClientError::Api { kind: ApiErrorKind::Server, .. })
    }
    /// The server could not be reached at all (refused, reset, timed out): a dark site, as
    /// opposed to a server that answered with an error or a certificate that does not match.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }
    /// The server presented a certificate the client does not trust: not the pinned one, or
    /// not signed by the trusted CA.
    pub fn is_untrusted_certificate(&self) -> bool {
        matches!(self, ClientError::Tls { .. })
    }
    /// Worth waiting through while a node restarts its API (after a cluster create or join):
    /// the connection reset, authentication failing while `/etc/pve` is remounted, the old
    /// certificate gone before the new one is trusted.
    pub fn is_restarting(&self) -> bool {
        matches!(
            self,
            ClientError::Transport { .. }
                | ClientError::Tls { .. }
                | ClientError::Api { kind: ApiErrorKind::Unauthorized, .. }
        ) || self.is_transient()
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
    /// The classified kind of an API error.
    pub fn kind(&self) -> Option<ApiErrorKind> {
        match self {
            ClientError::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }
    pub fn is(&self, kind: ApiErrorKind) -> bool {
        self.kind() == Some(kind)
    }
    /// The same API error with the kind a follow-up read established (e.g. a PVE 500 on a pool
    /// that the pool list no longer shows is `NotFound`). Other errors stay as they are.
    pub fn with_kind(self, kind: ApiErrorKind) -> ClientError {
        match self {
            ClientError::Api { method, path, status, message, errors, .. } => {
                ClientError::Api { kind, method, path, status, message, errors }
            }
            other => other,
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
