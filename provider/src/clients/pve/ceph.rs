//! Ceph through PVE: `/nodes/{node}/ceph/init|status|mon|mgr|osd|pool`.
//!
//! PVE answers a node without a usable Ceph (not installed, not initialised, no monitor yet)
//! with a 500, the same status as any failure. A 500 that outlives the retries while the node
//! itself answers is therefore [`ApiErrorKind::NotInitialized`]; a pool that the pool list does
//! not show is absent, whatever the pool's own endpoint said.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{MaybeUpid, PveClient};
use crate::clients::http::{de, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// `GET /nodes/{node}/ceph/status`: what the provider reads of `ceph status`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CephStatus {
    #[serde(default)]
    pub fsid: Option<String>,
    #[serde(default)]
    pub health: Option<CephHealth>,
}

/// `health` of the Ceph status: PVE replaces what `status` says with `health detail`
/// (pve-manager `PVE::Ceph::Tools::ceph_cluster_status`), so every raised check is there with
/// its code, severity and one-line summary.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CephHealth {
    #[serde(default)]
    pub status: Option<String>,
    /// Raised checks by code (`OSD_DOWN`, `MON_DOWN`, …); `None` when the answer has no `checks`.
    #[serde(default)]
    pub checks: Option<std::collections::BTreeMap<String, CephHealthCheck>>,
}

/// One raised Ceph health check.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CephHealthCheck {
    /// `HEALTH_WARN` or `HEALTH_ERR`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub summary: Option<CephCheckSummary>,
    /// Muted by an operator (`ceph health mute`): it no longer raises the status.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub muted: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CephCheckSummary {
    /// Ceph's one line, e.g. `1 osds down`.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub count: Option<i64>,
}

/// An entry of `GET /nodes/{node}/ceph/mon` or `…/mgr`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CephService {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub host: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

impl CephService {
    /// Whether the daemon runs on (or is named after) `node`.
    pub fn on(&self, node: &str) -> bool {
        self.name.as_deref() == Some(node) || self.host.as_deref() == Some(node)
    }
}

/// A Ceph daemon kind PVE creates per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CephDaemon {
    Mon,
    Mgr,
}

impl CephDaemon {
    fn path(self) -> &'static str {
        match self {
            CephDaemon::Mon => "mon",
            CephDaemon::Mgr => "mgr",
        }
    }
}

impl PveClient {
    /// `POST /nodes/{node}/ceph/init` (synchronous; PVE keeps an existing fsid, so a repeat is safe).
    pub async fn ceph_init(&self, node: &str, network: Option<&str>) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            network: Option<&'a str>,
        }
        let path = format!("/nodes/{}/ceph/init", segment(node));
        self.api.post::<_, serde::de::IgnoredAny>(&path, &Body { network }, Retry::Idempotent).await.map(drop)
    }
    /// `ceph status` through `node`; [`ApiErrorKind::NotInitialized`] when Ceph is not set up there.
    pub async fn ceph_status(&self, node: &str) -> Result<CephStatus, ClientError> {
        self.ceph_get(node, &format!("/nodes/{}/ceph/status", segment(node)), &[]).await
    }
    /// The monitors or managers of the cluster, as `node` sees them.
    pub async fn ceph_daemons(&self, node: &str, kind: CephDaemon) -> Result<Vec<CephService>, ClientError> {
        self.ceph_get(node, &format!("/nodes/{}/ceph/{}", segment(node), kind.path()), &[]).await
    }
    /// Creates a monitor or manager named after `node` on `node` (a task; not repeated blindly).
    /// `address`: the monitor's address (`mon-address`), needed when the node has several in
    /// the Ceph public network; managers take none.
    pub async fn ceph_create_daemon(
        &self,
        node: &str,
        kind: CephDaemon,
        address: Option<&str>,
    ) -> Result<MaybeUpid, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "mon-address", skip_serializing_if = "Option::is_none")]
            mon_address: Option<&'a str>,
        }
        let path = format!("/nodes/{n}/ceph/{}/{n}", kind.path(), n = segment(node));
        let mon_address = address.filter(|_| kind == CephDaemon::Mon);
        self.api.post(&path, &Body { mon_address }, Retry::Once).await
    }
    /// Creates an OSD on `dev` (a task; PVE allows only root@pam: [`ApiErrorKind::RootOnly`]).
    pub async fn ceph_create_osd(&self, node: &str, dev: &str) -> Result<MaybeUpid, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            dev: &'a str,
        }
        self.api.post(&format!("/nodes/{}/ceph/osd", segment(node)), &Body { dev }, Retry::Once).await
    }

    // --- pools -----------------------------------------------------------------------------

    pub async fn pools(&self, node: &str) -> Result<Vec<PoolListEntry>, ClientError> {
        self.ceph_get(node, &format!("/nodes/{}/ceph/pool", segment(node)), &[]).await
    }
    /// [`Self::pools`] for refreshes: the pools of one node that Terraform refreshes together
    /// share one list, unless this client wrote anything since it was read
    /// ([`crate::clients::shared_read`]). Anything that decides a write reads [`Self::pools`].
    pub async fn pools_for_refresh(&self, node: &str) -> Result<std::sync::Arc<Vec<PoolListEntry>>, ClientError> {
        self.pool_lists.get(node, self.api.write_stamp(), || self.pools(node)).await
    }
    /// The list entry of pool `name`; `None` when Ceph has no such pool.
    pub async fn pool(&self, node: &str, name: &str) -> Result<Option<PoolListEntry>, ClientError> {
        Ok(self.pools(node).await?.into_iter().find(|p| p.pool_name.as_deref() == Some(name)))
    }
    /// `GET …/pool/{name}/status?verbose=1` (with usage statistics); `None` when the pool is
    /// gone (PVE answers that with a 500: the pool list decides).
    pub async fn pool_status(&self, node: &str, name: &str) -> Result<Option<PoolStatus>, ClientError> {
        let path = format!("/nodes/{}/ceph/pool/{}/status", segment(node), segment(name));
        match self.api.get_query(&path, &[("verbose", "1")]).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind().is_some() => match self.pool(node, name).await {
                Ok(None) => Ok(None),
                Ok(Some(_)) => Err(e),
                Err(list) => Err(list),
            },
            Err(e) => Err(e),
        }
    }
    /// Creates a pool. Retried after a 5xx too, since a repeat cannot create a second pool; a
    /// failure while the pool list shows the pool is [`ApiErrorKind::AlreadyExists`].
    pub async fn pool_create(&self, node: &str, p: &PoolCreate) -> Result<MaybeUpid, ClientError> {
        match self.api.post(&format!("/nodes/{}/ceph/pool", segment(node)), p, Retry::Idempotent).await {
            Err(e) if e.kind().is_some() && matches!(self.pool(node, &p.name).await, Ok(Some(_))) => {
                Err(e.with_kind(ApiErrorKind::AlreadyExists))
            }
            r => r,
        }
    }
    pub async fn pool_update(&self, node: &str, name: &str, p: &PoolUpdate) -> Result<MaybeUpid, ClientError> {
        self.api.put(&format!("/nodes/{}/ceph/pool/{}", segment(node), segment(name)), p).await
    }
    /// Destroys pool `name` and waits for PVE's task. A pool that is gone is done: PVE starts
    /// the task for a missing pool too and fails it, so after a failure the pool list decides.
    pub async fn pool_destroy(
        &self,
        node: &str,
        name: &str,
        p: &PoolDelete,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let path = format!("/nodes/{}/ceph/pool/{}", segment(node), segment(name));
        let result = match self.api.delete(&path, p).await {
            Ok(upid) => self.wait_maybe(upid, deadline, stop).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if matches!(e, ClientError::Api { .. } | ClientError::TaskFailed { .. }) => {
                match self.pool(node, name).await {
                    Ok(None) => {
                        tracing::warn!(pool = %name, error = %e, "pool delete reported a failure, but the pool is gone");
                        Ok(())
                    }
                    _ => Err(e),
                }
            }
            r => r,
        }
    }

    /// A Ceph read through `node`: a server error that outlived the retries while the node
    /// itself answers means Ceph is not set up there.
    async fn ceph_get<T: DeserializeOwned>(
        &self,
        node: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        match self.api.get_query(path, query).await {
            Err(e) if e.is(ApiErrorKind::Server) && self.node_status(node).await.is_ok() => {
                Err(e.with_kind(ApiErrorKind::NotInitialized))
            }
            r => r,
        }
    }
}

/// An entry of `GET /nodes/{node}/ceph/pool` (`lspools`: `osd dump`, `df` and the autoscaler).
/// Its usage figures are the pool's own on every release — unlike the verbose pool status
/// before pve-manager 9.1.12, which reports another pool's statistics.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PoolListEntry {
    #[serde(default, alias = "pool_name")]
    pub pool_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pool: Option<i64>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bytes_used: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_float")]
    pub percent_used: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pg_num_final: Option<i64>,
    /// The applications enabled on the pool, as keys (`{"rbd": {}}`).
    #[serde(default)]
    pub application_metadata: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
}

impl PoolListEntry {
    /// The enabled applications, sorted.
    pub fn applications(&self) -> Vec<String> {
        self.application_metadata.as_ref().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

/// `GET /nodes/{node}/ceph/pool/{name}/status`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PoolStatus {
    #[serde(default, deserialize_with = "de::opt_int")]
    pub id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub size: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub min_size: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pg_num: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pg_num_min: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub pg_num_final: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub crush_rule: Option<String>,
    #[serde(default)]
    pub pg_autoscale_mode: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub target_size: Option<String>,
    #[serde(default, deserialize_with = "de::opt_float")]
    pub target_size_ratio: Option<f64>,
    /// The applications enabled on the pool (`verbose=1`; PVE itself never sends `application`).
    #[serde(default, deserialize_with = "de::opt_strings")]
    pub application_list: Option<Vec<String>>,
    /// Pool flags: `"0"`/`"1"` strings up to pve-manager 9.1.17, booleans from 9.1.18.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub nodelete: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub nopgchange: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub nosizechange: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub noscrub: Option<bool>,
    #[serde(default, rename = "nodeep-scrub", deserialize_with = "de::opt_bool")]
    pub nodeep_scrub: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub hashpspool: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub fast_read: Option<bool>,
    /// Usage (`verbose=1`). Before [`PveFeature::PerPoolStatistics`] these are another pool's.
    ///
    /// [`PveFeature::PerPoolStatistics`]: super::PveFeature::PerPoolStatistics
    #[serde(default)]
    pub statistics: Option<PoolStatistics>,
}

impl PoolStatus {
    /// The pool's applications: `application_list` (verbose), else an `application` key.
    pub fn applications(&self) -> Vec<String> {
        let mut v =
            self.application_list.clone().or_else(|| self.application.clone().map(|a| vec![a])).unwrap_or_default();
        v.sort();
        v
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PoolStatistics {
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bytes_used: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_float")]
    pub percent_used: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub stored: Option<i64>,
}

/// `POST /nodes/{node}/ceph/pool`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolCreate {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_num: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_num_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_autoscale_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crush_rule: Option<String>,
    #[serde(rename = "erasure-coding", skip_serializing_if = "Option::is_none")]
    pub erasure_coding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_size_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_storages: Option<bool>,
}

/// `PUT /nodes/{node}/ceph/pool/{name}`: only what changes.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PoolUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_num: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_num_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_autoscale_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crush_rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_size_ratio: Option<f64>,
}

impl PoolUpdate {
    pub fn is_empty(&self) -> bool {
        *self == PoolUpdate::default()
    }
}

/// `DELETE /nodes/{node}/ceph/pool/{name}` (query).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolDelete {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_storages: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_ecprofile: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_status_reads_strings_numbers_and_booleans() {
        let s: PoolStatus = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "rbd", "size": "3", "min_size": 2, "pg_num": 32, "crush_rule": "replicated_rule",
            "target_size": 1024, "target_size_ratio": "0.5", "statistics": {"bytes_used": 10, "percent_used": 0.1},
            "nodelete": "0", "nosizechange": "1", "nodeep-scrub": false, "fast_read": true, "hashpspool": 1,
            "application_list": ["rbd"], "pg_num_min": null
        }))
        .unwrap();
        assert_eq!(s.size, Some(3));
        assert_eq!(s.target_size.as_deref(), Some("1024"));
        assert_eq!(s.target_size_ratio, Some(0.5));
        assert_eq!(s.pg_num_min, None);
        assert_eq!(s.statistics.as_ref().and_then(|s| s.bytes_used), Some(10));
        assert_eq!(
            (s.nodelete, s.nosizechange, s.nodeep_scrub, s.fast_read, s.hashpspool),
            (Some(false), Some(true), Some(false), Some(true), Some(true))
        );
        assert_eq!(s.applications(), vec!["rbd".to_string()], "from application_list: PVE sends no application");
        let e: PoolListEntry = serde_json::from_value(
            serde_json::json!({"pool_name": "p", "application_metadata": {"rgw": {}, "rbd": {"x": 1}}}),
        )
        .unwrap();
        assert_eq!(e.applications(), vec!["rbd".to_string(), "rgw".to_string()]);
        let st: CephStatus =
            serde_json::from_value(serde_json::json!({"fsid": "abc", "health": {"status": "HEALTH_OK", "checks": {}}}))
                .unwrap();
        assert_eq!(st.fsid.as_deref(), Some("abc"));
        assert_eq!(st.health.and_then(|h| h.checks).map(|c| c.len()), Some(0));
        let st: CephStatus = serde_json::from_value(serde_json::json!({"health": {"status": "HEALTH_WARN", "checks": {
            "OSD_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1 osds down", "count": 1}, "detail": [], "muted": false},
            "MON_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1/3 mons down, quorum pve1,pve2"}, "muted": 1}
        }, "mutes": []}}))
        .unwrap();
        let checks = st.health.and_then(|h| h.checks).expect("checks");
        let osd = &checks["OSD_DOWN"];
        assert_eq!(osd.summary.as_ref().and_then(|s| s.message.as_deref()), Some("1 osds down"));
        assert_eq!((osd.muted, checks["MON_DOWN"].muted), (Some(false), Some(true)));
        let mons: Vec<CephService> =
            serde_json::from_value(serde_json::json!([{"name": "pve1", "addr": "x", "rank": 0}, {"name": "a", "host": "pve2", "direxists": true}])).unwrap();
        assert!(mons[0].on("pve1") && mons[1].on("pve2") && !mons[1].on("pve1"));
    }
}
