//! Backup snapshots: `GET /admin/datastore/{store}/snapshots`.
//!
//! Read for what backups exist and when the last one finished. The groups list
//! (`…/groups`) is not used for that: its `last-backup` can be a snapshot still being written
//! (proxmox-backup `list_groups` folds over the snapshots without skipping unfinished ones
//! after the first), while the snapshot list says per snapshot whether it finished.

use serde::Deserialize;

use super::PbsClient;
use crate::clients::http::{de, segment};
use crate::clients::{ApiErrorKind, ClientError};

/// An entry of the snapshot list (`SnapshotListItem`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// `vm`, `ct` or `host`.
    #[serde(default)]
    pub backup_type: Option<String>,
    #[serde(default)]
    pub backup_id: Option<String>,
    /// When the backup started (epoch seconds; also the snapshot's name).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub backup_time: Option<i64>,
    /// Sum of the archive sizes from the manifest: PBS sends it only when it could read the
    /// snapshot's manifest, which a backup writes last.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub size: Option<i64>,
    /// The last verify task's verdict, if one ran.
    #[serde(default)]
    pub verification: Option<SnapshotVerification>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub protected: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SnapshotVerification {
    /// `ok` or `failed`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub upid: Option<String>,
}

impl Snapshot {
    /// The backup completed: its manifest exists (proxmox-backup `list_snapshots_blocking`
    /// leaves `size` out exactly when reading the manifest failed, i.e. a backup still
    /// running or one that died).
    pub fn finished(&self) -> bool {
        self.size.is_some()
    }
    /// A verify task found the snapshot damaged.
    pub fn verify_failed(&self) -> bool {
        self.verification.as_ref().and_then(|v| v.state.as_deref()) == Some("failed")
    }
    /// `TYPE/ID` (`vm/100`), the group as PBS names it.
    pub fn group(&self) -> Option<String> {
        Some(format!("{}/{}", self.backup_type.as_deref()?, self.backup_id.as_deref()?))
    }
}

impl PbsClient {
    /// The snapshots of datastore `store` in namespace `ns` (the root namespace when `None`);
    /// `None` when PBS has no such datastore (it answers that with a 400 like any refused
    /// request: the datastore list decides).
    pub async fn snapshots(&self, store: &str, ns: Option<&str>) -> Result<Option<Vec<Snapshot>>, ClientError> {
        let path = format!("/admin/datastore/{}/snapshots", segment(store));
        let query: Vec<(&str, &str)> = ns.map(|n| vec![("ns", n)]).unwrap_or_default();
        match self.api.get_query(&path, &query).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(ApiErrorKind::InvalidParams) => match self.datastores().await {
                Ok(all) if !all.iter().any(|d| d.name.as_deref() == Some(store)) => Ok(None),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_tell_finished_from_running() {
        let list: Vec<Snapshot> = serde_json::from_value(serde_json::json!([
            {"backup-type": "vm", "backup-id": "100", "backup-time": 1_700_000_000, "size": 1234,
             "files": [{"filename": "index.json.blob", "size": 500, "crypt-mode": "none"}], "owner": "root@pam!edge",
             "protected": false, "verification": {"state": "ok", "upid": "UPID:pbs:x"}},
            {"backup-type": "vm", "backup-id": "100", "backup-time": "1700003600",
             "files": [{"filename": "drive-scsi0.img.fidx"}], "protected": false},
            {"backup-type": "ct", "backup-id": "101", "backup-time": 1_700_000_100, "size": 0, "files": [],
             "protected": true, "verification": {"state": "failed", "upid": "UPID:pbs:y"}},
        ]))
        .unwrap();
        assert_eq!(list.iter().map(Snapshot::finished).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(list.iter().map(Snapshot::verify_failed).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(list[1].backup_time, Some(1_700_003_600), "a number in a string is still a time");
        assert_eq!(list[2].group().as_deref(), Some("ct/101"));
        assert_eq!(Snapshot::default().group(), None);
    }
}
