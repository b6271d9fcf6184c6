//! Proxmox VE API client: one typed method per endpoint the resources use, with typed request
//! and response structs, one file per area. Errors are classified here ([`classify`]); methods
//! that must tell "absent" or "already there" from a failure decide it with a follow-up read,
//! never from the message text. Parameter names follow PVE's published API schema.

mod access;
mod acme;
mod backup;
mod ceph;
mod cluster;
mod guests;
mod maintenance;
mod network;
mod node;
mod tasks;

pub use access::*;
pub use acme::*;
pub use backup::*;
pub use ceph::*;
pub use cluster::*;
pub use guests::*;
pub use network::*;
pub use node::*;
pub use tasks::MaybeUpid;

use crate::clients::http::{ApiClient, ErrorAnswer, Product};
use crate::clients::shared_read::SharedReads;
use crate::clients::version::{Feature, Version, VersionCell};
use crate::clients::{ApiErrorKind, ClientError};
use crate::provider::ApiConfig;

/// How long the pool refreshes of one run may share a node's pool list: a plan refreshes all
/// its pools within moments, and a longer-lived process (a debug-attached provider) must not
/// answer a later command from an old list.
const POOL_LIST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// PVE's error kinds, from the status and (for a 403) the endpoint:
/// - 400 parameter verification, 401 authentication (empty body), 403 permission check;
/// - 403 on a method whose schema has no `permissions` is "only root@pam", which no API token
///   can ever pass (PVE compares the literal user);
/// - 424 (failed dependency), e.g. join information of a node that is in no cluster;
/// - 501 unknown method or path; any other 5xx a handler `die`. PVE answers "does not exist",
///   "already exists" and "not initialised" alike with 500, so endpoints that need to tell
///   those apart read again ([`ClientError::with_kind`]).
pub fn classify(method: &str, path: &str, status: u16) -> ApiErrorKind {
    match status {
        400 => ApiErrorKind::InvalidParams,
        401 => ApiErrorKind::Unauthorized,
        403 if root_only(method, path) => ApiErrorKind::RootOnly,
        403 => ApiErrorKind::Forbidden,
        404 => ApiErrorKind::NotFound,
        424 => ApiErrorKind::NotInitialized,
        501 => ApiErrorKind::NotImplemented,
        500..=599 => ApiErrorKind::Server,
        _ => ApiErrorKind::Other,
    }
}

/// Methods without `permissions` in PVE's schema (8.4 and 9.1 alike): only `root@pam` may
/// call them. `*` is one path segment.
const ROOT_ONLY: &[(&str, &str)] = &[
    ("POST", "/cluster/config"),
    ("POST", "/cluster/config/join"),
    ("POST", "/cluster/config/nodes/*"),
    ("DELETE", "/cluster/config/nodes/*"),
    ("POST", "/cluster/acme/account"),
    ("GET", "/cluster/acme/account/*"),
    ("PUT", "/cluster/acme/account/*"),
    ("DELETE", "/cluster/acme/account/*"),
    ("GET", "/cluster/backup-info"),
    ("GET", "/cluster/sdn/vnets/*/firewall"),
    ("POST", "/nodes/*/ceph/osd"),
    ("DELETE", "/nodes/*/ceph/osd/*"),
    ("PUT", "/nodes/*/disks/wipedisk"),
    ("POST", "/nodes/*/execute"),
    ("POST", "/nodes/*/storage/*/content/*"),
];

pub(crate) fn root_only(method: &str, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    ROOT_ONLY.iter().any(|(m, pattern)| {
        let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        *m == method && pat.len() == segs.len() && pat.iter().zip(&segs).all(|(p, s)| *p == "*" || p == s)
    })
}

/// The error text to show: the body's `message` (pve-http-server 5.2.0 and later), else the
/// reason phrase, which carries the first line of the message on every version.
pub fn error_message(answer: &ErrorAnswer) -> String {
    answer
        .json_message()
        .or_else(|| Some(answer.reason.clone()).filter(|r| !r.is_empty()))
        .unwrap_or_else(|| format!("HTTP {}", answer.status))
}

/// A PVE API endpoint (any node of a cluster answers for the whole cluster).
#[derive(Debug)]
pub struct PveClient {
    api: ApiClient,
    version: VersionCell,
    /// Pool lists by node, shared by the pool refreshes of one run ([`PveClient::pools_for_refresh`]).
    pool_lists: SharedReads<Vec<PoolListEntry>>,
}

/// Behaviour that depends on the PVE release, decided in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PveFeature {
    /// Backup jobs take `notification-mode` (pve-manager 8.1.0).
    BackupNotificationMode,
    /// `GET …/ceph/pool/{name}/status?verbose=1` returns the statistics of the pool asked for;
    /// pve-manager 8.x and 9.1.0–9.1.11 return those of the last pool (highest id).
    PerPoolStatistics,
}

impl Feature for PveFeature {
    /// The first pve-manager release with the feature.
    fn since(self) -> Version {
        match self {
            PveFeature::BackupNotificationMode => Version::new(8, 1, 0),
            PveFeature::PerPoolStatistics => Version::new(9, 1, 12),
        }
    }
}

impl PveClient {
    pub fn from_config(cfg: &ApiConfig) -> Result<PveClient, ClientError> {
        Ok(PveClient::new(ApiClient::from_config(Product::Pve, cfg)?))
    }
    pub fn new(api: ApiClient) -> PveClient {
        PveClient { api, version: VersionCell::default(), pool_lists: SharedReads::new(POOL_LIST_MAX_AGE) }
    }

    /// The pve-manager version (`GET /version`), read once per client.
    pub async fn version(&self) -> Result<Version, ClientError> {
        self.version.get(&self.api, Version::from_pve).await
    }

    /// Whether this PVE has `feature`.
    pub async fn supports(&self, feature: PveFeature) -> Result<bool, ClientError> {
        Ok(feature.available_in(self.version().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pve_statuses_map_to_kinds() {
        assert_eq!(classify("GET", "/cluster/backup/x", 400), ApiErrorKind::InvalidParams);
        assert_eq!(classify("GET", "/nodes/pve1/status", 401), ApiErrorKind::Unauthorized);
        assert_eq!(classify("PUT", "/nodes/pve1/dns", 403), ApiErrorKind::Forbidden);
        assert_eq!(classify("POST", "/nodes/pve1/ceph/osd", 403), ApiErrorKind::RootOnly);
        assert_eq!(classify("DELETE", "/cluster/config/nodes/pve3", 403), ApiErrorKind::RootOnly);
        assert_eq!(classify("GET", "/cluster/config/nodes", 403), ApiErrorKind::Forbidden);
        assert_eq!(classify("POST", "/cluster/config", 403), ApiErrorKind::RootOnly);
        assert_eq!(classify("GET", "/cluster/config/join", 424), ApiErrorKind::NotInitialized);
        assert_eq!(classify("GET", "/nodes/pve1/nothing", 501), ApiErrorKind::NotImplemented);
        assert_eq!(classify("GET", "/nodes/pve1/ceph/status", 500), ApiErrorKind::Server);
        assert_eq!(classify("GET", "/nodes/pve1/ceph/status", 503), ApiErrorKind::Server);
        assert_eq!(classify("GET", "/x", 302), ApiErrorKind::Other);
    }

    #[test]
    fn pve_message_from_body_or_reason_phrase() {
        let new = ErrorAnswer {
            status: 500,
            reason: "pool 'x' not found".into(),
            body: br#"{"data":null,"message":"pool 'x' not found\n"}"#.to_vec(),
        };
        assert_eq!(error_message(&new), "pool 'x' not found");
        let old = ErrorAnswer { body: br#"{"data":null}"#.to_vec(), ..new.clone() };
        assert_eq!(error_message(&old), "pool 'x' not found", "before pve-http-server 5.2.0: the reason phrase");
        let auth = ErrorAnswer { status: 401, reason: "Authentication failed!".into(), body: vec![] };
        assert_eq!(error_message(&auth), "Authentication failed!", "a 401 has an empty body");
        let params = ErrorAnswer {
            status: 400,
            reason: "Parameter verification failed.".into(),
            body: br#"{"data":null,"errors":{"size":"value must be <= 7"}}"#.to_vec(),
        };
        assert_eq!(error_message(&params), "Parameter verification failed.");
        assert_eq!(params.param_errors().get("size").map(String::as_str), Some("value must be <= 7"));
        assert_eq!(error_message(&ErrorAnswer { status: 502, ..Default::default() }), "HTTP 502");
    }

    #[test]
    fn pve_feature_gates() {
        let v = |a, b, c| Version::new(a, b, c);
        assert!(!PveFeature::BackupNotificationMode.available_in(v(8, 0, 4)));
        assert!(PveFeature::BackupNotificationMode.available_in(v(8, 1, 0)));
        assert!(PveFeature::BackupNotificationMode.available_in(v(9, 0, 0)));
        assert!(!PveFeature::PerPoolStatistics.available_in(v(8, 4, 21)), "never fixed on 8.x");
        assert!(!PveFeature::PerPoolStatistics.available_in(v(9, 1, 11)));
        assert!(PveFeature::PerPoolStatistics.available_in(v(9, 1, 12)));
        assert!(PveFeature::PerPoolStatistics.available_in(v(9, 2, 0)));
    }
}
