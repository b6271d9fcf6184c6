//! QEMU guests: the list, the next free vmid, restores from a PBS backup, power, the guest
//! agent's ping, the network of a restored copy, and destroy.
//!
//! PVE answers a missing guest, a locked one and a silent guest agent alike with a 500: the
//! methods decide what went wrong with a follow-up read (the guest list, the guest's status),
//! never from the message text.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PveClient;
use crate::clients::http::{de, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// An entry of `GET /nodes/{node}/qemu`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GuestEntry {
    #[serde(deserialize_with = "de_vmid")]
    pub vmid: u32,
    #[serde(default)]
    pub name: Option<String>,
    /// `running` or `stopped`.
    #[serde(default)]
    pub status: Option<String>,
    /// `create` while a restore writes the guest, `backup` during a backup, ….
    #[serde(default)]
    pub lock: Option<String>,
    /// Disk size in bytes.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub maxdisk: Option<i64>,
}

impl GuestEntry {
    pub fn running(&self) -> bool {
        self.status.as_deref() == Some("running")
    }
}

fn de_vmid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    de::int(&v).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| serde::de::Error::custom("vmid is not a number"))
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GuestStatus {
    /// `running` or `stopped`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub qmpstatus: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The config enables the QEMU guest agent.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub agent: Option<bool>,
    #[serde(default)]
    pub lock: Option<String>,
    /// Bytes the guest read from its disks since it started.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub diskread: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub maxdisk: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub uptime: Option<i64>,
}

impl GuestStatus {
    pub fn running(&self) -> bool {
        self.status.as_deref() == Some("running")
    }
}

/// A restore of a PBS backup into a new guest (`POST /nodes/{node}/qemu` with `archive`).
#[derive(Clone, Debug, Serialize)]
pub struct RestoreRequest {
    pub vmid: u32,
    /// `<pbs-storage-id>:backup/vm/<id>/<RFC3339>` ([`pbs_archive`]).
    pub archive: String,
    /// Where the disks go (default: where the backup's config had them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// New MAC addresses (and other unique ids) instead of the backup's.
    #[serde(serialize_with = "de::ser_opt_flag", skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
    /// Start the guest when restored: never for an isolated copy (it would come up with the
    /// backup's network).
    #[serde(serialize_with = "de::ser_opt_flag", skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,
}

/// The volume id of a PBS snapshot on a PVE storage of type `pbs` (pve-storage
/// `PBSPlugin::print_volid`): `STORAGE:backup/TYPE/ID/YYYY-MM-DDTHH:MM:SSZ`.
pub fn pbs_archive(storage: &str, backup_type: &str, backup_id: &str, backup_time: i64) -> String {
    format!("{storage}:backup/{backup_type}/{backup_id}/{}", rfc3339_utc(backup_time))
}

/// Epoch seconds as `%FT%TZ` (UTC).
pub fn rfc3339_utc(t: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default()
}

/// Why a guest agent ping got no answer, decided from the guest's status after the refusal.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The guest runs and its config enables the agent, but the agent does not answer (not up
    /// yet, or not installed in the guest OS).
    #[error("the QEMU guest agent of VM {vmid} is not running: {source}")]
    NotRunning { vmid: u32, source: ClientError },
    /// The guest's config does not enable the agent.
    #[error("VM {vmid} has no QEMU guest agent configured: {source}")]
    NotConfigured { vmid: u32, source: ClientError },
    /// The guest is not running.
    #[error("VM {vmid} is not running: {source}")]
    GuestStopped { vmid: u32, source: ClientError },
    /// Anything else (the guest is gone, the node unreachable, …).
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl AgentError {
    /// Worth pinging again: the agent of a running guest may still come up.
    pub fn is_not_running(&self) -> bool {
        matches!(self, AgentError::NotRunning { .. })
    }
}

fn guest_path(node: &str, vmid: u32) -> String {
    format!("/nodes/{}/qemu/{vmid}", segment(node))
}

impl PveClient {
    /// The guests whose config is on `node`.
    pub async fn guests(&self, node: &str) -> Result<Vec<GuestEntry>, ClientError> {
        self.api.get(&format!("/nodes/{}/qemu", segment(node))).await
    }

    /// One guest of `node`, or `None` when its config is not there.
    pub async fn guest(&self, node: &str, vmid: u32) -> Result<Option<GuestEntry>, ClientError> {
        Ok(self.guests(node).await?.into_iter().find(|g| g.vmid == vmid))
    }

    /// The lowest vmid from `from` on that the cluster does not use (`GET /cluster/nextid`,
    /// which with `vmid` answers that id when free and a parameter error when taken). Without
    /// `from`, PVE's own next id.
    pub async fn next_free_vmid(&self, from: Option<u32>) -> Result<u32, ClientError> {
        let Some(mut id) = from else {
            let v: serde_json::Value = self.api.get("/cluster/nextid").await?;
            return vmid_value(&v);
        };
        let last = id.saturating_add(10_000);
        loop {
            let q = [("vmid", id.to_string())];
            match self.api.get_query::<_, serde_json::Value>("/cluster/nextid", &q).await {
                Ok(v) => return vmid_value(&v),
                Err(e) if e.is(ApiErrorKind::InvalidParams) && id < last => id += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a restore of a PBS backup into the new guest `req.vmid` on `node`: the UPID of
    /// its `qmrestore` task ([`PveClient::wait_task`]). Not retried: a repeat would find the
    /// vmid taken by the first.
    pub async fn restore_guest(&self, node: &str, req: &RestoreRequest) -> Result<String, ClientError> {
        self.api.post(&format!("/nodes/{}/qemu", segment(node)), req, Retry::Once).await
    }

    /// [`PveClient::restore_guest`] and its task, until `deadline`.
    pub async fn restore_guest_and_wait(
        &self,
        node: &str,
        req: &RestoreRequest,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let upid = self.restore_guest(node, req).await?;
        self.wait_task(&upid, deadline, stop).await
    }

    /// `GET …/status/current`; a guest whose config is not on `node` is [`ApiErrorKind::NotFound`].
    pub async fn guest_status(&self, node: &str, vmid: u32) -> Result<GuestStatus, ClientError> {
        match self.api.get(&format!("{}/status/current", guest_path(node, vmid))).await {
            Ok(s) => Ok(s),
            Err(e) => Err(self.absent_or(node, vmid, e).await),
        }
    }

    /// Starts the guest: the UPID of its `qmstart` task.
    pub async fn start_guest(&self, node: &str, vmid: u32) -> Result<String, ClientError> {
        let path = format!("{}/status/start", guest_path(node, vmid));
        match self.api.post(&path, &serde_json::json!({}), Retry::Once).await {
            Ok(u) => Ok(u),
            Err(e) => Err(self.absent_or(node, vmid, e).await),
        }
    }

    /// Stops the guest (hard, like pulling the plug): the UPID of its `qmstop` task.
    pub async fn stop_guest(&self, node: &str, vmid: u32) -> Result<String, ClientError> {
        let path = format!("{}/status/stop", guest_path(node, vmid));
        match self.api.post(&path, &serde_json::json!({}), Retry::Idempotent).await {
            Ok(u) => Ok(u),
            Err(e) => Err(self.absent_or(node, vmid, e).await),
        }
    }

    /// Pings the guest's QEMU guest agent once. A refusal is classified by the guest's
    /// status: stopped, no agent configured, or the agent not (yet) answering.
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<(), AgentError> {
        let path = format!("{}/agent/ping", guest_path(node, vmid));
        let e = match self.api.post::<_, serde::de::IgnoredAny>(&path, &serde_json::json!({}), Retry::Once).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is(ApiErrorKind::Server) => e,
            Err(e) => return Err(AgentError::Client(e)),
        };
        let status = self.guest_status(node, vmid).await?;
        Err(if !status.running() {
            AgentError::GuestStopped { vmid, source: e }
        } else if status.agent != Some(true) {
            AgentError::NotConfigured { vmid, source: e }
        } else {
            AgentError::NotRunning { vmid, source: e }
        })
    }

    /// Removes the guest's network devices (`net0`, …) from its config, so that it can only
    /// start without network. Synchronous on PVE.
    pub async fn remove_guest_network(&self, node: &str, vmid: u32, nets: &[String]) -> Result<(), ClientError> {
        if nets.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({"delete": nets.join(",")});
        let path = format!("{}/config", guest_path(node, vmid));
        match self.api.put::<_, serde::de::IgnoredAny>(&path, &body).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.absent_or(node, vmid, e).await),
        }
    }

    /// The guest's network devices (`net0`, `net1`, …) as its config lists them.
    pub async fn guest_networks(&self, node: &str, vmid: u32) -> Result<Vec<String>, ClientError> {
        let path = format!("{}/config", guest_path(node, vmid));
        let cfg: serde_json::Map<String, serde_json::Value> = match self.api.get(&path).await {
            Ok(c) => c,
            Err(e) => return Err(self.absent_or(node, vmid, e).await),
        };
        Ok(cfg
            .keys()
            .filter(|k| k.strip_prefix("net").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
            .cloned()
            .collect())
    }

    /// Destroys the guest and its disks (`purge`: also from backup and replication jobs): the
    /// UPID of the `qmdestroy` task, or `None` when the guest is gone already (PVE answers that
    /// with a 500 like any refusal: the guest list decides).
    pub async fn destroy_guest(&self, node: &str, vmid: u32) -> Result<Option<String>, ClientError> {
        let q = [("purge", "1"), ("destroy-unreferenced-disks", "1")];
        match self.api.delete(&guest_path(node, vmid), &q).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.kind().is_some() => match self.guest(node, vmid).await {
                Ok(None) => Ok(None),
                Ok(Some(_)) => Err(e),
                Err(list) => Err(list),
            },
            Err(e) => Err(e),
        }
    }

    /// A refusal for a guest that the list does not show is [`ApiErrorKind::NotFound`].
    async fn absent_or(&self, node: &str, vmid: u32, e: ClientError) -> ClientError {
        if !e.is(ApiErrorKind::Server) {
            return e;
        }
        match self.guest(node, vmid).await {
            Ok(None) => e.with_kind(ApiErrorKind::NotFound),
            _ => e,
        }
    }
}

/// A vmid as `nextid` returns it: a number, or the `vmid` parameter echoed as a string.
fn vmid_value(v: &serde_json::Value) -> Result<u32, ClientError> {
    de::int(v).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| ClientError::Decode {
        method: "GET".into(),
        path: "/cluster/nextid".into(),
        message: format!("not a vmid: {v}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_volume_ids_as_pve_prints_them() {
        assert_eq!(pbs_archive("pbs", "vm", "100", 1_700_000_000), "pbs:backup/vm/100/2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn guest_entries_read_numbers_in_any_form() {
        let l: Vec<GuestEntry> = serde_json::from_value(serde_json::json!([
            {"vmid": 100, "name": "web", "status": "running", "maxdisk": 8589934592_i64},
            {"vmid": "105", "status": "stopped", "lock": "create"},
        ]))
        .unwrap();
        assert_eq!((l[0].vmid, l[0].running(), l[0].maxdisk), (100, true, Some(8 << 30)));
        assert_eq!((l[1].vmid, l[1].running(), l[1].lock.as_deref()), (105, false, Some("create")));
        let s: GuestStatus =
            serde_json::from_value(serde_json::json!({"status": "running", "agent": 1, "diskread": "42", "ha": {}}))
                .unwrap();
        assert_eq!((s.running(), s.agent, s.diskread), (true, Some(true), Some(42)));
        assert_eq!(vmid_value(&serde_json::json!("105")).unwrap(), 105);
        assert_eq!(vmid_value(&serde_json::json!(100)).unwrap(), 100);
        let r = RestoreRequest {
            vmid: 9000,
            archive: "pbs:backup/vm/100/2023-11-14T22:13:20Z".into(),
            storage: None,
            unique: Some(true),
            start: Some(false),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"vmid": 9000, "archive": "pbs:backup/vm/100/2023-11-14T22:13:20Z", "unique": 1, "start": 0})
        );
    }
}
