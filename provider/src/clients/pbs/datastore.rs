//! Datastores: `/config/datastore` (the settings, incl. `gc-schedule`) and the garbage
//! collection status (`/admin/datastore/{store}/gc`).

use serde::{Deserialize, Serialize};

use super::PbsClient;
use crate::clients::http::{de, segment};
use crate::clients::{ApiErrorKind, ClientError};

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

/// `GET /admin/datastore/{store}/gc`: the last garbage collection and the schedule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GcStatus {
    #[serde(default)]
    pub store: Option<String>,
    /// The last run's task; `null` before the first run.
    #[serde(default)]
    pub upid: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub next_run: Option<i64>,
    #[serde(default)]
    pub last_run_state: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub removed_bytes: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub disk_bytes: Option<i64>,
}

impl PbsClient {
    pub async fn datastores(&self) -> Result<Vec<DatastoreConfig>, ClientError> {
        self.api.get("/config/datastore").await
    }
    /// One datastore's settings; `None` when there is no such datastore (PBS answers 400 on
    /// GET and 404 on DELETE: the list decides).
    pub async fn datastore(&self, name: &str) -> Result<Option<DatastoreConfig>, ClientError> {
        match self.api.get(&format!("/config/datastore/{}", segment(name))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(ApiErrorKind::NotFound) => Ok(None),
            Err(e) if e.is(ApiErrorKind::InvalidParams) => match self.datastores().await {
                Ok(all) if !all.iter().any(|d| d.name.as_deref() == Some(name)) => Ok(None),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
    /// Sets or (with `None`) removes a datastore's garbage-collection schedule.
    pub async fn set_gc_schedule(&self, store: &str, schedule: Option<&str>) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Update<'a> {
            #[serde(rename = "gc-schedule", skip_serializing_if = "Option::is_none")]
            gc_schedule: Option<&'a str>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            delete: Vec<&'static str>,
        }
        let body =
            Update { gc_schedule: schedule, delete: if schedule.is_none() { vec!["gc-schedule"] } else { vec![] } };
        self.api
            .put::<_, serde::de::IgnoredAny>(&format!("/config/datastore/{}", segment(store)), &body)
            .await
            .map(drop)
    }
    pub async fn gc_status(&self, store: &str) -> Result<GcStatus, ClientError> {
        self.api.get(&format!("/admin/datastore/{}/gc", segment(store))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_status_before_the_first_run() {
        let g: GcStatus = serde_json::from_value(serde_json::json!({
            "store": "a", "upid": null, "index-file-count": 0, "disk-bytes": 0, "schedule": "daily", "next-run": "1700000000"
        }))
        .unwrap();
        assert_eq!((g.upid, g.schedule.as_deref(), g.next_run), (None, Some("daily"), Some(1_700_000_000)));
    }
}
