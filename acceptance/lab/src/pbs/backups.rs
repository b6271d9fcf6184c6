//! Backup snapshots: `GET /admin/datastore/{store}/snapshots` (proxmox-backup
//! `src/api2/admin/datastore.rs` `list_snapshots`, `list_snapshots_blocking`,
//! `read_backup_index`), and the snapshots the admin API adds (`POST /lab/backups`): backups
//! are made by clients the lab does not run (vzdump through a PBS storage,
//! proxmox-backup-client), so a test says which exist.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{config, no_datastore, PbsCx, HOSTNAME};
use crate::api::{p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::state::{now_s, BackupSnapshot, LabState};

/// The manifest every finished snapshot has (`MANIFEST_BLOB_NAME`); a backup writes it last.
const MANIFEST: &str = "index.json.blob";

/// `GET /admin/datastore/{store}/snapshots`: the snapshots of the namespace (`ns`, root by
/// default), optionally of one backup type and/or id. A snapshot whose manifest cannot be read
/// (a backup still running or one that died) is listed with its files' names only: no `size`,
/// no sizes, no verification. A missing datastore fails its lookup (`no such datastore`).
pub(super) fn list(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let name = p_str(p, "store").unwrap_or_default();
    config::datastore(s, &name).ok_or_else(|| no_datastore(&name))?;
    let ns = p_str(p, "ns").unwrap_or_default();
    let (ty, id) = (p_str(p, "backup-type"), p_str(p, "backup-id"));
    let mut snaps: Vec<&BackupSnapshot> = s
        .pbs
        .snapshots
        .get(&name)
        .into_iter()
        .flatten()
        .filter(|b| b.ns == ns)
        .filter(|b| ty.as_ref().is_none_or(|t| *t == b.backup_type))
        .filter(|b| id.as_ref().is_none_or(|i| *i == b.backup_id))
        .collect();
    // PBS lists in directory order; sorted here so answers are reproducible.
    snaps.sort_by(|a, b| {
        (&a.backup_type, &a.backup_id, a.backup_time).cmp(&(&b.backup_type, &b.backup_id, b.backup_time))
    });
    Ok(Value::Array(snaps.into_iter().map(item).collect()))
}

/// One `SnapshotListItem` as PBS serialises it.
fn item(b: &BackupSnapshot) -> Value {
    let mut o = json!({
        "backup-type": b.backup_type, "backup-id": b.backup_id, "backup-time": b.backup_time,
        "owner": b.owner, "protected": false,
    });
    if b.finished {
        // `read_backup_index`: the manifest's files with crypt mode and size, then the manifest
        // itself; `size` is their sum.
        let mut files: Vec<Value> =
            b.files.iter().map(|(f, n)| json!({"filename": f, "crypt-mode": "none", "size": n})).collect();
        let manifest_size = manifest_size(b);
        files.push(json!({"filename": MANIFEST, "crypt-mode": "none", "size": manifest_size}));
        o["files"] = Value::Array(files);
        o["size"] = json!(b.files.iter().map(|(_, n)| n).sum::<u64>() + manifest_size);
        if let Some((state, upid)) = &b.verification {
            o["verification"] = json!({"state": state, "upid": upid});
        }
    } else {
        o["files"] = Value::Array(b.files.iter().map(|(f, _)| json!({"filename": f})).collect());
    }
    o
}

/// A plausible size of the manifest blob: a header and a line per archive.
fn manifest_size(b: &BackupSnapshot) -> u64 {
    300 + 120 * b.files.len() as u64
}

/// The archives a backup of `backup_type` writes, with made-up sizes.
fn archives(backup_type: &str) -> Vec<(String, u64)> {
    let v: &[(&str, u64)] = match backup_type {
        "vm" => &[("qemu-server.conf.blob", 512), ("drive-scsi0.img.fidx", 8 << 30)],
        "ct" => &[("pct.conf.blob", 384), ("root.pxar.didx", 2 << 30), ("catalog.pcat1.didx", 1 << 20)],
        _ => &[("root.pxar.didx", 1 << 30), ("catalog.pcat1.didx", 1 << 20)],
    };
    v.iter().map(|(f, n)| (f.to_string(), *n)).collect()
}

/// `POST /lab/backups`: `{"store"?, "datastore"?, "ns"?, "backup_type", "backup_id",
/// "backup_time", "finished"?: true, "verify"?: "ok"|"failed"}`. The datastore defaults to the
/// store's own; the group keeps the owner of its first snapshot (`root@pam`, as a PVE
/// storage logging in as root makes it).
pub fn add(st: &mut LabState, store: &str, body: &Value) -> Result<Value, (u16, String)> {
    let str_of = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let backup_type = str_of("backup_type").ok_or((400, "missing \"backup_type\"".to_string()))?;
    if !["vm", "ct", "host"].contains(&backup_type.as_str()) {
        return Err((400, format!("backup_type {backup_type:?} is not vm, ct or host")));
    }
    let backup_id = str_of("backup_id").ok_or((400, "missing \"backup_id\"".to_string()))?;
    let id_ok = backup_id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && backup_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !id_ok {
        return Err((400, format!("backup_id {backup_id:?} is not a backup id")));
    }
    let backup_time = body
        .get("backup_time")
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
        .ok_or((400, "missing \"backup_time\" (epoch seconds)".to_string()))?;
    let finished = match body.get("finished") {
        None => true,
        Some(v) => v.as_bool().ok_or((400, "\"finished\" is a boolean".to_string()))?,
    };
    let verify = str_of("verify");
    if verify.as_deref().is_some_and(|v| v != "ok" && v != "failed") || (verify.is_some() && !finished) {
        return Err((400, "\"verify\" is \"ok\" or \"failed\", for a finished backup".into()));
    }
    let ns = str_of("ns").unwrap_or_default();
    let s = st.store_mut(store).ok_or((404, format!("no such store '{store}'")))?;
    let datastore = str_of("datastore").unwrap_or_else(|| super::datastore_name(s));
    if config::datastore(s, &datastore).is_none() {
        return Err((404, format!("no such datastore '{datastore}'")));
    }
    let pstart = s.pbs.pstart;
    let snaps = s.pbs.snapshots.entry(datastore.clone()).or_default();
    let same_group = |b: &&BackupSnapshot| b.ns == ns && b.backup_type == backup_type && b.backup_id == backup_id;
    if snaps.iter().filter(same_group).any(|b| b.backup_time == backup_time) {
        return Err((409, format!("snapshot {backup_type}/{backup_id}/{backup_time} exists already")));
    }
    let owner = snaps.iter().find(same_group).map(|b| b.owner.clone()).unwrap_or_else(|| "root@pam".into());
    let verification = verify.map(|state| {
        let upid = super::Upid {
            node: HOSTNAME.into(),
            pid: u64::from(std::process::id()),
            pstart,
            task_id: 0,
            starttime: now_s(),
            worker_type: "verify_snapshot".into(),
            worker_id: Some(format!("{datastore}:{backup_type}/{backup_id}/{backup_time}")),
            auth_id: "root@pam".into(),
        };
        (state, upid.to_string())
    });
    let snap = BackupSnapshot {
        ns,
        backup_type: backup_type.clone(),
        backup_id,
        backup_time,
        owner,
        finished,
        files: archives(&backup_type),
        verification,
        guest: None,
        missing_chunk: None,
    };
    let out = json!({"datastore": datastore, "snapshot": item(&snap)});
    snaps.push(snap);
    Ok(out)
}
