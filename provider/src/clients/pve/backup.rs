//! Backup jobs: `/cluster/backup` (vzdump jobs in PVE's `jobs.cfg`).
//!
//! PVE answers a missing job with a 400 on GET but a 500 on DELETE, and an existing id on POST
//! with a 500: the job list decides absence and presence.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PveClient;
use crate::clients::http::{de, removed_keys, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// A job's retention (`prune-backups`), by PVE key (`keep-last`, …, `keep-all`). PVE stores it
/// as a property string and returns it as an object (pve-guest-common decodes it), with the
/// numbers as strings; both forms read into the same value, and it goes out as the string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneBackups(pub BTreeMap<String, i64>);

impl PruneBackups {
    /// `keep-daily=7,keep-last=3`.
    pub fn to_property_string(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
    pub fn parse(s: &str) -> PruneBackups {
        PruneBackups(
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
                .collect(),
        )
    }
}

impl Serialize for PruneBackups {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_property_string())
    }
}

impl<'de> Deserialize<'de> for PruneBackups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Object(o) => {
                PruneBackups(o.iter().filter_map(|(k, v)| Some((k.clone(), de::int(v)?))).collect())
            }
            serde_json::Value::String(s) => PruneBackups::parse(&s),
            _ => PruneBackups::default(),
        })
    }
}

impl PveClient {
    pub async fn backup_jobs(&self) -> Result<Vec<BackupJob>, ClientError> {
        self.api.get("/cluster/backup").await
    }
    /// One job, or `None` when it does not exist (read through the list, which answers 200
    /// either way).
    pub async fn backup_job(&self, id: &str) -> Result<Option<BackupJob>, ClientError> {
        Ok(self.backup_jobs().await?.into_iter().find(|j| j.id.as_deref() == Some(id)))
    }
    /// Creates a job (retried after a 5xx: a repeat cannot create a second job with its id). A
    /// failure while the list shows the id is [`ApiErrorKind::AlreadyExists`].
    pub async fn backup_job_create(&self, job: &BackupJob) -> Result<(), ClientError> {
        match self.api.post::<_, serde::de::IgnoredAny>("/cluster/backup", job, Retry::Idempotent).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind().is_some() => match job.id.as_deref() {
                Some(id) if matches!(self.backup_job(id).await, Ok(Some(_))) => {
                    Err(e.with_kind(ApiErrorKind::AlreadyExists))
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
    /// Updates a job; `delete` lists settings to remove (PVE's `delete` parameter).
    pub async fn backup_job_update(&self, id: &str, job: &BackupJob, delete: &[String]) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Update<'a> {
            #[serde(flatten)]
            job: &'a BackupJob,
            #[serde(skip_serializing_if = "Option::is_none")]
            delete: Option<String>,
        }
        let job = BackupJob { id: None, ..job.clone() };
        let body = Update { job: &job, delete: (!delete.is_empty()).then(|| delete.join(",")) };
        self.api.put::<_, serde::de::IgnoredAny>(&format!("/cluster/backup/{}", segment(id)), &body).await.map(drop)
    }
    /// Deletes a job. One that is gone already (deleted by hand, or a repeat after a 5xx) is
    /// done: PVE answers a missing job with a 500, so the list decides.
    pub async fn backup_job_delete(&self, id: &str) -> Result<(), ClientError> {
        match self.api.delete::<_, serde::de::IgnoredAny>(&format!("/cluster/backup/{}", segment(id)), &()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind().is_some() => match self.backup_job(id).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(e),
                Err(list) => Err(list),
            },
            Err(e) => Err(e),
        }
    }
}

impl BackupJob {
    /// The settings `self` has that `new` leaves out: what an update must `delete`.
    pub fn removed_in(&self, new: &BackupJob) -> Vec<String> {
        removed_keys(self, new)
    }
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
    pub prune_backups: Option<PruneBackups>,
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
    fn backup_job_uses_pve_names() {
        let j = BackupJob {
            id: Some("j".into()),
            prune_backups: Some(PruneBackups::parse("keep-last=3")),
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
        let old = BackupJob { comment: Some("c".into()), ..j.clone() };
        assert_eq!(old.removed_in(&j), vec!["comment".to_string()]);
    }

    #[test]
    fn prune_backups_read_as_object_or_string() {
        let want = PruneBackups(BTreeMap::from([("keep-daily".to_string(), 7), ("keep-last".to_string(), 3)]));
        // Real PVE: an object, numbers as strings (pve-guest-common's decode_value).
        let j: BackupJob = serde_json::from_value(
            serde_json::json!({"id": "j", "prune-backups": {"keep-last": "3", "keep-daily": 7}}),
        )
        .unwrap();
        assert_eq!(j.prune_backups.as_ref(), Some(&want));
        // As stored (and as the lab answers): the property string.
        let j: BackupJob =
            serde_json::from_value(serde_json::json!({"id": "j", "prune-backups": "keep-daily=7, keep-last=3"}))
                .unwrap();
        assert_eq!(j.prune_backups.as_ref(), Some(&want));
        let j: BackupJob = serde_json::from_value(serde_json::json!({"prune-backups": {"keep-all": 1}})).unwrap();
        assert_eq!(j.prune_backups.map(|p| p.to_property_string()).as_deref(), Some("keep-all=1"));
        assert_eq!(serde_json::to_value(&want).unwrap(), "keep-daily=7,keep-last=3");
    }
}
