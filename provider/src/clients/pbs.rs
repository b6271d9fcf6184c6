//! Proxmox Backup Server API client: generic typed calls, task waiting, and the job
//! configuration endpoints (`/config/sync|verify|prune`, the datastore's `gc-schedule`).
//! Parameter names follow PBS's published API schema (`pbs-apidata.json`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clients::http::{de, segment, ApiClient, Product, Retry};
use crate::clients::ClientError;
use crate::provider::ApiConfig;

#[derive(Debug)]
pub struct PbsClient {
    api: ApiClient,
}

/// The generic calls (`get`, `get_query`, `post`, `put`, `delete`, `wait_task`) are
/// [`ApiClient`]'s; this type adds the typed endpoints.
impl std::ops::Deref for PbsClient {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// The PBS job collections under `/config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Sync,
    Verify,
    Prune,
}

impl JobKind {
    pub fn path(self) -> &'static str {
        match self {
            JobKind::Sync => "/config/sync",
            JobKind::Verify => "/config/verify",
            JobKind::Prune => "/config/prune",
        }
    }
}

impl PbsClient {
    pub fn from_config(cfg: &ApiConfig) -> Result<PbsClient, ClientError> {
        Ok(PbsClient { api: ApiClient::from_config(Product::Pbs, cfg)? })
    }
    pub fn new(api: ApiClient) -> PbsClient {
        PbsClient { api }
    }

    /// One job's config as JSON (PBS answers a missing job with 404 → `None`).
    pub async fn job<T: DeserializeOwned>(&self, kind: JobKind, id: &str) -> Result<Option<T>, ClientError> {
        match self.get(&format!("{}/{}", kind.path(), segment(id))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Creates a job. A 5xx is retried; the caller treats "already exists" on a repeat as done.
    pub async fn job_create<B: Serialize + ?Sized>(&self, kind: JobKind, body: &B) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(kind.path(), body, Retry::Idempotent).await?;
        Ok(())
    }
    /// Updates a job; `delete` lists settings to remove.
    pub async fn job_update<B: Serialize + ?Sized>(
        &self,
        kind: JobKind,
        id: &str,
        body: &B,
        delete: &[String],
    ) -> Result<(), ClientError> {
        let body = with_delete(body, delete)?;
        let _: serde_json::Value = self.put(&format!("{}/{}", kind.path(), segment(id)), &body).await?;
        Ok(())
    }
    pub async fn job_delete(&self, kind: JobKind, id: &str) -> Result<(), ClientError> {
        match self.delete::<_, serde_json::Value>(&format!("{}/{}", kind.path(), segment(id)), &()).await {
            Ok(_) => Ok(()),
            // Gone already (e.g. a repeat after a 5xx): that is what we wanted.
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn datastore(&self, name: &str) -> Result<Option<DatastoreConfig>, ClientError> {
        match self.get(&format!("/config/datastore/{}", segment(name))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            // PBS says 400 "no such datastore" on some versions.
            Err(e) if e.status() == Some(400) && e.message().contains("no such datastore") => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Sets or (with `None`) removes a datastore's garbage-collection schedule.
    pub async fn set_gc_schedule(&self, store: &str, schedule: Option<&str>) -> Result<(), ClientError> {
        let body = match schedule {
            Some(s) => serde_json::json!({"gc-schedule": s}),
            None => serde_json::json!({"delete": ["gc-schedule"]}),
        };
        let _: serde_json::Value = self.put(&format!("/config/datastore/{}", segment(store)), &body).await?;
        Ok(())
    }
}

fn with_delete<B: Serialize + ?Sized>(body: &B, delete: &[String]) -> Result<serde_json::Value, ClientError> {
    let mut v = serde_json::to_value(body).map_err(|e| ClientError::Config(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        if !delete.is_empty() {
            o.insert("delete".into(), delete.to_vec().into());
        }
    }
    Ok(v)
}

/// `/config/sync/{id}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct SyncJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub remove_vanished: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_strings")]
    pub group_filter: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub transfer_last: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub rate_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub rate_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub burst_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub burst_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `/config/verify/{id}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct VerifyJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub ignore_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub outdated_after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub max_depth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `/config/prune/{id}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct PruneJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_last: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_hourly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_daily: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_weekly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_monthly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub keep_yearly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub max_depth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub disable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The part of `/config/datastore/{name}` the gc job uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DatastoreConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub gc_schedule: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_carries_delete_list_not_id() {
        let j = SyncJob { id: Some("s".into()), store: Some("a".into()), ..Default::default() };
        let v = with_delete(&j, &["comment".into()]).unwrap();
        assert_eq!(v, serde_json::json!({"store": "a", "delete": ["comment"]}));
    }

    #[test]
    fn jobs_read_pbs_json() {
        let s: SyncJob = serde_json::from_value(serde_json::json!({
            "id": "s", "store": "a", "remote-store": "b", "remove-vanished": true, "group-filter": "type:vm", "transfer-last": "3"
        }))
        .unwrap();
        assert_eq!(s.remote_store.as_deref(), Some("b"));
        assert_eq!(s.group_filter, Some(vec!["type:vm".to_string()]));
        assert_eq!(s.transfer_last, Some(3));
    }
}
