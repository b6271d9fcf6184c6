//! Job configuration: `/config/sync`, `/config/verify`, `/config/prune`.
//!
//! PBS answers a missing job with 400 on GET (`no such sync 'x'`), 404 or 400 on DELETE
//! (sync vs verify/prune), and an existing id on POST with 400: the job list decides. From
//! 3.3.0 the sync list shows pull jobs only unless asked for `sync-direction=all`, so the list
//! asks for all where the release knows directions.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{PbsClient, PbsFeature};
use crate::clients::http::{de, removed_keys, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

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

/// A job config type and the collection it lives in.
pub trait PbsJobConfig: Serialize + DeserializeOwned {
    const KIND: JobKind;
}

impl PbsJobConfig for SyncJob {
    const KIND: JobKind = JobKind::Sync;
}
impl PbsJobConfig for VerifyJob {
    const KIND: JobKind = JobKind::Verify;
}
impl PbsJobConfig for PruneJob {
    const KIND: JobKind = JobKind::Prune;
}

/// A job's settings, of any kind (what create and update send).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobConfig {
    Sync(SyncJob),
    Verify(VerifyJob),
    Prune(PruneJob),
}

impl JobConfig {
    pub fn kind(&self) -> JobKind {
        match self {
            JobConfig::Sync(_) => JobKind::Sync,
            JobConfig::Verify(_) => JobKind::Verify,
            JobConfig::Prune(_) => JobKind::Prune,
        }
    }
    pub fn id(&self) -> Option<&str> {
        match self {
            JobConfig::Sync(j) => j.id.as_deref(),
            JobConfig::Verify(j) => j.id.as_deref(),
            JobConfig::Prune(j) => j.id.as_deref(),
        }
    }
    /// The same settings without `id` (an update names the job in its path).
    fn without_id(&self) -> JobConfig {
        match self {
            JobConfig::Sync(j) => JobConfig::Sync(SyncJob { id: None, ..j.clone() }),
            JobConfig::Verify(j) => JobConfig::Verify(VerifyJob { id: None, ..j.clone() }),
            JobConfig::Prune(j) => JobConfig::Prune(PruneJob { id: None, ..j.clone() }),
        }
    }
    /// The settings `self` has that `new` leaves out: what an update must `delete`.
    pub fn removed_in(&self, new: &JobConfig) -> Vec<String> {
        removed_keys(self, new)
    }
}

/// Just the id of a job in a list.
#[derive(Deserialize)]
struct JobRef {
    #[serde(default)]
    id: Option<String>,
}

impl PbsClient {
    /// One job's config; `None` when it does not exist.
    pub async fn job<T: PbsJobConfig>(&self, id: &str) -> Result<Option<T>, ClientError> {
        self.job_get(T::KIND, id).await
    }
    /// Whether a job with this id exists in `kind`'s collection.
    pub async fn job_exists(&self, kind: JobKind, id: &str) -> Result<bool, ClientError> {
        Ok(self.job_get::<serde::de::IgnoredAny>(kind, id).await?.is_some())
    }
    /// Creates a job. A 5xx is retried (a repeat cannot create a second job with its id); a
    /// failure while the job exists is [`ApiErrorKind::AlreadyExists`].
    pub async fn job_create(&self, job: &JobConfig) -> Result<(), ClientError> {
        let kind = job.kind();
        let job = &self.for_release(job).await?;
        match self.api.post::<_, serde::de::IgnoredAny>(kind.path(), job, Retry::Idempotent).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind().is_some() => match job.id() {
                Some(id) if matches!(self.job_ids(kind).await, Ok(ids) if ids.iter().any(|i| i == id)) => {
                    Err(e.with_kind(ApiErrorKind::AlreadyExists))
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
    /// Updates job `id`; `delete` lists settings to remove.
    pub async fn job_update(&self, id: &str, job: &JobConfig, delete: &[String]) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Update<'a> {
            #[serde(flatten)]
            job: &'a JobConfig,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            delete: &'a [String],
        }
        let job = self.for_release(job).await?;
        let directions = job.kind() != JobKind::Sync || self.supports(PbsFeature::SyncDirection).await?;
        // Before 3.3 `sync-direction` is no property a PUT may delete.
        let delete: Vec<String> = delete.iter().filter(|d| directions || *d != SYNC_DIRECTION).cloned().collect();
        let body = Update { job: &job.without_id(), delete: &delete };
        self.api
            .put::<_, serde::de::IgnoredAny>(&format!("{}/{}", job.kind().path(), segment(id)), &body)
            .await
            .map(drop)
    }
    /// Deletes a job; one that is gone already (deleted by hand, or a repeat after a 5xx) is done.
    pub async fn job_delete(&self, kind: JobKind, id: &str) -> Result<(), ClientError> {
        match self.api.delete::<_, serde::de::IgnoredAny>(&format!("{}/{}", kind.path(), segment(id)), &()).await {
            Ok(_) => Ok(()),
            Err(e) if self.absent_after(&e, kind, id).await => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn job_get<T: DeserializeOwned>(&self, kind: JobKind, id: &str) -> Result<Option<T>, ClientError> {
        match self.api.get(&format!("{}/{}", kind.path(), segment(id))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.absent_after(&e, kind, id).await => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether error `e` on job `id` means the job is not there: a 404, or a 400 (PBS's answer
    /// to a missing verify or prune job, and to a missing sync job on GET) while the list
    /// does not show the id.
    async fn absent_after(&self, e: &ClientError, kind: JobKind, id: &str) -> bool {
        match e.kind() {
            Some(ApiErrorKind::NotFound) => true,
            Some(ApiErrorKind::InvalidParams) => {
                matches!(self.job_ids(kind).await, Ok(ids) if !ids.iter().any(|i| i == id))
            }
            _ => false,
        }
    }

    /// Every job id of the collection, push sync jobs included (also what `terraform query`
    /// lists).
    pub async fn job_ids(&self, kind: JobKind) -> Result<Vec<String>, ClientError> {
        let jobs: Vec<JobRef> = if kind == JobKind::Sync && self.supports(PbsFeature::SyncDirection).await? {
            self.api.get_query(kind.path(), &[(SYNC_DIRECTION, "all")]).await?
        } else {
            self.api.get(kind.path()).await?
        };
        Ok(jobs.into_iter().filter_map(|j| j.id).collect())
    }

    /// The job as this release takes it: before 3.3.0 PBS refuses `sync-direction` as an
    /// unknown parameter, and every sync job pulls, so an explicit `pull` is left out (`push`
    /// stays, for PBS to refuse: callers check [`PbsFeature::SyncDirection`] first).
    async fn for_release(&self, job: &JobConfig) -> Result<JobConfig, ClientError> {
        match job {
            JobConfig::Sync(s)
                if s.sync_direction.as_deref() == Some("pull") && !self.supports(PbsFeature::SyncDirection).await? =>
            {
                Ok(JobConfig::Sync(SyncJob { sync_direction: None, ..s.clone() }))
            }
            other => Ok(other.clone()),
        }
    }
}

/// The sync job property (and list parameter) of PBS 3.3.0+.
const SYNC_DIRECTION: &str = "sync-direction";

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
    /// `pull` or `push` (PBS 3.3.0+); PBS leaves it out when it was never set (pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_bool")]
    pub remove_vanished: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub max_depth: Option<i64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_carries_delete_list_not_id() {
        let j = JobConfig::Sync(SyncJob { id: Some("s".into()), store: Some("a".into()), ..Default::default() });
        let v = serde_json::to_value(j.without_id()).unwrap();
        assert_eq!(v, serde_json::json!({"store": "a"}));
        let old = JobConfig::Sync(SyncJob { comment: Some("x".into()), ..Default::default() });
        let new = JobConfig::Sync(SyncJob::default());
        assert_eq!(old.removed_in(&new), vec!["comment".to_string()]);
        assert_eq!(j.kind(), JobKind::Sync);
        assert_eq!(j.id(), Some("s"));
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
        let p: PruneJob =
            serde_json::from_value(serde_json::json!({"id": "p", "store": "a", "keep-last": "2", "disable": 1}))
                .unwrap();
        assert_eq!((p.keep_last, p.disable), (Some(2), Some(true)));
        let v: VerifyJob =
            serde_json::from_value(serde_json::json!({"id": "v", "ignore-verified": "false", "outdated-after": 30}))
                .unwrap();
        assert_eq!((v.ignore_verified, v.outdated_after), (Some(false), Some(30)));
    }
}
