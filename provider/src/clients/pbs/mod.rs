//! Proxmox Backup Server API client: typed job configuration (`/config/sync|verify|prune`,
//! [`jobs`]), datastores (`/config/datastore`, garbage collection, [`datastore`]) and the
//! backups in them ([`snapshots`]). Errors are
//! classified here ([`classify`]); absence and presence are decided by status and follow-up
//! reads, never by the message. Parameter names follow PBS's published API schema; what a
//! release lacks is decided by [`PbsFeature`] against `GET /version` (read once per client).

mod datastore;
mod jobs;
mod snapshots;
mod verify;

pub use datastore::*;
pub use jobs::*;
pub use snapshots::*;
pub use verify::*;

use std::collections::BTreeMap;

use crate::clients::http::{ApiClient, ErrorAnswer, Product};
use crate::clients::version::{Feature, Version, VersionCell};
use crate::clients::{ApiErrorKind, ClientError};
use crate::provider::ApiConfig;

/// PBS's error kinds, from the status: an error is its `HttpError` code, or 400 for anything
/// else. So a 400 is ambiguous (a missing job, an id that exists, a bad parameter, a stale
/// digest all answer 400) and endpoints that need to know read again; a 404 is a missing
/// object (DELETE of a sync job, remote, datastore) or an unknown path.
pub fn classify(_method: &str, _path: &str, status: u16) -> ApiErrorKind {
    match status {
        400 => ApiErrorKind::InvalidParams,
        401 => ApiErrorKind::Unauthorized,
        403 => ApiErrorKind::Forbidden,
        404 => ApiErrorKind::NotFound,
        501 => ApiErrorKind::NotImplemented,
        500..=599 => ApiErrorKind::Server,
        _ => ApiErrorKind::Other,
    }
}

/// The error text to show: PBS sends the bare message as the body (under a JSON content type,
/// and with no content type at all for authentication failures); a JSON `message` (a proxy in
/// front of PBS) is read too. Its reason phrase is always the standard one.
pub fn error_message(answer: &ErrorAnswer) -> String {
    answer
        .json_message()
        .or_else(|| answer.text())
        .or_else(|| Some(answer.reason.clone()).filter(|r| !r.is_empty()))
        .unwrap_or_else(|| format!("HTTP {}", answer.status))
}

/// The parameters PBS refused, by name, from its text (proxmox-schema's `ParameterError`):
/// `parameter verification failed - 'NAME': REASON` for one, a heading and `- 'NAME': REASON`
/// lines for several. A nested value (`delete/[0]`) counts for its top-level parameter, with
/// the rest of its name in the reason. Empty for any other error.
pub fn param_errors(answer: &ErrorAnswer) -> BTreeMap<String, String> {
    let text = answer.text().unwrap_or_default();
    let lines: Vec<&str> = if let Some(one) = text.strip_prefix("parameter verification failed - ") {
        vec![one]
    } else if let Some(many) = text.strip_prefix("parameter verification failed:") {
        many.lines().filter_map(|l| l.trim().strip_prefix("- ")).collect()
    } else {
        Vec::new()
    };
    let mut out = BTreeMap::new();
    for l in lines {
        let Some((name, reason)) = l.strip_prefix('\'').and_then(|r| r.split_once("': ")) else { continue };
        let (top, sub) = name.split_once('/').map_or((name, None), |(t, s)| (t, Some(s)));
        let reason = match sub {
            Some(sub) => format!("{sub}: {reason}"),
            None => reason.to_string(),
        };
        out.entry(top.to_string()).and_modify(|r: &mut String| *r = format!("{r}; {reason}")).or_insert(reason);
    }
    out
}

#[derive(Debug)]
pub struct PbsClient {
    api: ApiClient,
    version: VersionCell,
}

/// Behaviour that depends on the PBS release, decided in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PbsFeature {
    /// Sync jobs without `remote` (between local datastores): API since 3.0.5, UI since 3.1.
    LocalSync,
    /// Sync jobs take `sync-direction` (push): 3.3.0 (3.2 rejects the unknown parameter).
    SyncDirection,
}

impl Feature for PbsFeature {
    /// The first PBS release with the feature.
    fn since(self) -> Version {
        match self {
            PbsFeature::LocalSync => Version::new(3, 1, 0),
            PbsFeature::SyncDirection => Version::new(3, 3, 0),
        }
    }
}

impl PbsClient {
    pub fn from_config(cfg: &ApiConfig) -> Result<PbsClient, ClientError> {
        Ok(PbsClient::new(ApiClient::from_config(Product::Pbs, cfg)?))
    }
    pub fn new(api: ApiClient) -> PbsClient {
        PbsClient { api, version: VersionCell::default() }
    }

    /// The PBS version (`GET /version`: major.minor in `version`, the patch in `release`),
    /// read once per client.
    pub async fn version(&self) -> Result<Version, ClientError> {
        self.version.get(&self.api, Version::from_pbs).await
    }

    /// Whether this PBS has `feature`.
    pub async fn supports(&self, feature: PbsFeature) -> Result<bool, ClientError> {
        Ok(feature.available_in(self.version().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbs_statuses_map_to_kinds() {
        assert_eq!(classify("GET", "/config/sync/x", 400), ApiErrorKind::InvalidParams);
        assert_eq!(classify("DELETE", "/config/sync/x", 404), ApiErrorKind::NotFound);
        assert_eq!(classify("GET", "/config/sync", 401), ApiErrorKind::Unauthorized);
        assert_eq!(classify("GET", "/config/sync", 403), ApiErrorKind::Forbidden);
        assert_eq!(classify("GET", "/x", 501), ApiErrorKind::NotImplemented);
        assert_eq!(classify("GET", "/x", 503), ApiErrorKind::Server);
    }

    #[test]
    fn pbs_message_is_the_text_body() {
        let a = ErrorAnswer { status: 400, reason: "Bad Request".into(), body: b"no such sync 'x'".to_vec() };
        assert_eq!(error_message(&a), "no such sync 'x'");
        let a = ErrorAnswer {
            status: 400,
            reason: "Bad Request".into(),
            body: b"parameter verification failed - 'id': job 'x' already exists.".to_vec(),
        };
        assert_eq!(error_message(&a), "parameter verification failed - 'id': job 'x' already exists.");
        let a = ErrorAnswer {
            status: 401,
            reason: "Unauthorized".into(),
            body: b"authentication failed - no credentials\n".to_vec(),
        };
        assert_eq!(error_message(&a), "authentication failed - no credentials");
        // A JSON message (a proxy's) is read as well; an empty body shows the reason.
        let a = ErrorAnswer {
            status: 404,
            reason: "Not Found".into(),
            body: br#"{"data":null,"message":"gone"}"#.to_vec(),
        };
        assert_eq!(error_message(&a), "gone");
        let a = ErrorAnswer { status: 404, reason: "Not Found".into(), body: vec![] };
        assert_eq!(error_message(&a), "Not Found");
    }

    #[test]
    fn pbs_parameter_errors_are_read_from_the_text() {
        let answer = |body: &str| ErrorAnswer { status: 400, reason: "Bad Request".into(), body: body.into() };
        let one = param_errors(&answer(
            "parameter verification failed - 'sync-direction': schema does not allow additional properties",
        ));
        assert_eq!(one.get("sync-direction").map(String::as_str), Some("schema does not allow additional properties"));
        let many = param_errors(&answer(
            "parameter verification failed:\n- 'delete/[1]': value 'x' is not defined in the enumeration.\n- 'id': value must be at least 3 characters long",
        ));
        assert_eq!(many.len(), 2, "{many:?}");
        assert_eq!(many.get("delete").map(String::as_str), Some("[1]: value 'x' is not defined in the enumeration."));
        assert_eq!(many.get("id").map(String::as_str), Some("value must be at least 3 characters long"));
        assert!(param_errors(&answer("no such sync 'x'")).is_empty());
        assert!(param_errors(&answer("permission check failed")).is_empty());
    }

    #[test]
    fn pbs_feature_gates() {
        let v = |a, b, c| Version::new(a, b, c);
        assert!(!PbsFeature::SyncDirection.available_in(v(3, 2, 4)));
        assert!(PbsFeature::SyncDirection.available_in(v(3, 3, 0)));
        assert!(PbsFeature::SyncDirection.available_in(v(4, 0, 11)));
        assert!(!PbsFeature::LocalSync.available_in(v(3, 0, 4)));
        assert!(PbsFeature::LocalSync.available_in(v(3, 1, 2)));
    }
}
