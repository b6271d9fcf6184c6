//! Proxmox VE API client: generic typed calls on any path (`get/post/put/delete`), task
//! waiting, and typed wrappers for the endpoints the resources use (Ceph pools, backup jobs).
//! Parameter names follow PVE's published API schema (`pve-apidata.json`).

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clients::http::{de, segment, ApiClient, Product, Retry};
use crate::clients::ClientError;
use crate::provider::ApiConfig;

/// A PVE API endpoint (any node of a cluster answers for the whole cluster).
#[derive(Debug)]
pub struct PveClient {
    api: ApiClient,
}

/// The generic calls (`get`, `get_query`, `post`, `put`, `delete`, `wait_task`) are
/// [`ApiClient`]'s; this type adds the typed endpoints.
impl std::ops::Deref for PveClient {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// What a mutating PVE call returns: a task UPID for long work, or nothing.
pub type MaybeUpid = Option<String>;

impl PveClient {
    pub fn from_config(cfg: &ApiConfig) -> Result<PveClient, ClientError> {
        Ok(PveClient { api: ApiClient::from_config(Product::Pve, cfg)? })
    }
    pub fn new(api: ApiClient) -> PveClient {
        PveClient { api }
    }

    /// Waits for the task if the call started one.
    pub async fn wait_maybe(
        &self,
        upid: MaybeUpid,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        match upid.filter(|u| u.starts_with("UPID:")) {
            Some(u) => self.wait_task(&u, deadline, stop).await,
            None => Ok(()),
        }
    }

    // --- Ceph pools -------------------------------------------------------------------------

    pub async fn pools(&self, node: &str) -> Result<Vec<PoolListEntry>, ClientError> {
        self.get(&format!("/nodes/{}/ceph/pool", segment(node))).await
    }
    /// `GET …/pool/{name}/status?verbose=1` (with usage statistics).
    pub async fn pool_status(&self, node: &str, name: &str) -> Result<PoolStatus, ClientError> {
        self.get_query(&format!("/nodes/{}/ceph/pool/{}/status", segment(node), segment(name)), &[("verbose", "1")])
            .await
    }
    /// Creates a pool. Retried after a 5xx too: the caller treats "already exists" on a
    /// repeat as success after checking the pool is there.
    pub async fn pool_create(&self, node: &str, p: &PoolCreate) -> Result<MaybeUpid, ClientError> {
        self.post(&format!("/nodes/{}/ceph/pool", segment(node)), p, Retry::Idempotent).await
    }
    pub async fn pool_update(&self, node: &str, name: &str, p: &PoolUpdate) -> Result<MaybeUpid, ClientError> {
        self.put(&format!("/nodes/{}/ceph/pool/{}", segment(node), segment(name)), p).await
    }
    pub async fn pool_delete(&self, node: &str, name: &str, p: &PoolDelete) -> Result<MaybeUpid, ClientError> {
        self.delete(&format!("/nodes/{}/ceph/pool/{}", segment(node), segment(name)), p).await
    }

    // --- Backup jobs (/cluster/backup, vzdump) ------------------------------------------------

    pub async fn backup_jobs(&self) -> Result<Vec<BackupJob>, ClientError> {
        self.get("/cluster/backup").await
    }
    /// One job, or `None` when it does not exist (read through the list: PVE answers a
    /// missing job with a 500, which is indistinguishable from a server fault).
    pub async fn backup_job(&self, id: &str) -> Result<Option<BackupJob>, ClientError> {
        Ok(self.backup_jobs().await?.into_iter().find(|j| j.id.as_deref() == Some(id)))
    }
    pub async fn backup_job_create(&self, job: &BackupJob) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/cluster/backup", job, Retry::Idempotent).await?;
        Ok(())
    }
    /// Updates a job; `delete` lists settings to remove (PVE's `delete` parameter).
    pub async fn backup_job_update(&self, id: &str, job: &BackupJob, delete: &[String]) -> Result<(), ClientError> {
        let mut body = serde_json::to_value(job).map_err(|e| ClientError::Config(e.to_string()))?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
            if !delete.is_empty() {
                o.insert("delete".into(), delete.join(",").into());
            }
        }
        let _: serde_json::Value = self.put(&format!("/cluster/backup/{}", segment(id)), &body).await?;
        Ok(())
    }
    pub async fn backup_job_delete(&self, id: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self.delete(&format!("/cluster/backup/{}", segment(id)), &()).await?;
        Ok(())
    }
}

/// An entry of `GET /nodes/{node}/ceph/pool`.
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
    #[serde(default)]
    pub statistics: Option<PoolStatistics>,
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

/// A vzdump job in `/cluster/backup` (PVE's `jobs.cfg`), the settings edge manages.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct BackupJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub compress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_backups: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub vmid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub exclude: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub repeat_missed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_status_reads_strings_and_numbers() {
        let s: PoolStatus = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "rbd", "size": "3", "min_size": 2, "pg_num": 32, "crush_rule": "replicated_rule",
            "target_size": 1024, "target_size_ratio": "0.5", "statistics": {"bytes_used": 10, "percent_used": 0.1}
        }))
        .unwrap();
        assert_eq!(s.size, Some(3));
        assert_eq!(s.target_size.as_deref(), Some("1024"));
        assert_eq!(s.target_size_ratio, Some(0.5));
        assert_eq!(s.statistics.and_then(|s| s.bytes_used), Some(10));
    }

    #[test]
    fn backup_job_uses_pve_names() {
        let j = BackupJob {
            id: Some("j".into()),
            prune_backups: Some("keep-last=3".into()),
            repeat_missed: Some(true),
            ..Default::default()
        };
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["prune-backups"], "keep-last=3");
        assert_eq!(v["repeat-missed"], true);
        let back: BackupJob =
            serde_json::from_value(serde_json::json!({"id": "j", "enabled": "1", "all": 0, "vmid": 100})).unwrap();
        assert_eq!(back.enabled, Some(true));
        assert_eq!(back.all, Some(false));
        assert_eq!(back.vmid.as_deref(), Some("100"));
    }
}
