//! Running a verify job now: `POST /admin/verify/{id}/run` (proxmox-backup
//! `src/api2/admin/verify.rs` `run_verification_job`, `src/server/verify_job.rs`
//! `do_verification_job`, `src/backup/verify.rs` `verify_all_backups`, `verify_backup_group`,
//! `verify_backup_dir_with_lock`, `verify_filter`). The job is looked up in `verify.cfg`; a
//! `verificationjob` task with worker id `STORE:JOB` walks the groups of the job's namespace in
//! order, each group's snapshots newest first, and records each verdict in the snapshot (the
//! snapshot list's `verification`). A snapshot one of whose chunks is gone from the chunk
//! store (`POST /lab/backups/missing-chunk`) fails; so does the task, naming it.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{config, no_datastore, PbsCx, Upid, HOSTNAME};
use crate::api::{p_str, ApiErr, ApiResult};
use crate::lab::{lock, Lab, NewTask, TaskFaults};
use crate::routes::Params;
use crate::schema::Product;
use crate::state::{now_s, BackupSnapshot};

/// `proxmox_time::epoch_to_rfc3339_utc`, as a snapshot directory names its time.
fn snapshot_time(t: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default()
}

/// `TYPE/ID/TIME`, with the namespace in front the way `print_ns_and_snapshot` shows it.
fn snapshot_dir(b: &BackupSnapshot) -> String {
    let dir = format!("{}/{}/{}", b.backup_type, b.backup_id, snapshot_time(b.backup_time));
    if b.ns.is_empty() {
        dir
    } else {
        let ns: Vec<String> = b.ns.split('/').map(|c| format!("ns/{c}")).collect();
        format!("{}/{dir}", ns.join("/"))
    }
}

/// Whether `ns` is `root` or below it, at most `depth` levels down.
fn in_scope(ns: &str, root: &str, depth: i64) -> bool {
    let levels = |s: &str| if s.is_empty() { 0 } else { s.split('/').count() as i64 };
    let below = root.is_empty() || ns == root || ns.starts_with(&format!("{root}/"));
    below && levels(ns) - levels(root) <= depth
}

/// `verify_filter`: with `ignore-verified` (the default) a snapshot verified before is skipped,
/// unless `outdated-after` days have passed since that verify task started.
fn wanted(b: &BackupSnapshot, ignore_verified: bool, outdated_after: Option<i64>, now: i64) -> bool {
    if !ignore_verified {
        return true;
    }
    let Some((_, upid)) = &b.verification else { return true };
    let Some(last) = Upid::parse(upid) else { return true };
    match outdated_after {
        None => false,
        Some(days) => (now - last.starttime as i64) / 86400 > days,
    }
}

/// `POST /admin/verify/{id}/run`: the task's UPID.
pub(super) fn run(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = p_str(p, "id").unwrap_or_default();
    let job = {
        let st = lab.state();
        let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
        let job = s.pbs.collections.get("verify").and_then(|c| c.get(&id)).cloned();
        let job = job.ok_or_else(|| ApiErr::new(400, format!("no such verification '{id}'")))?;
        let ds = job.get("store").and_then(Value::as_str).unwrap_or_default().to_string();
        // `DataStore::lookup_datastore` comes before the task starts.
        config::datastore(s, &ds).ok_or_else(|| no_datastore(&ds))?;
        job
    };
    let ds = job.get("store").and_then(Value::as_str).unwrap_or_default().to_string();
    let ns = job.get("ns").and_then(Value::as_str).unwrap_or_default().to_string();
    let depth = job.get("max-depth").and_then(Value::as_i64).unwrap_or(7);
    let ignore_verified = job.get("ignore-verified").and_then(Value::as_bool).unwrap_or(true);
    let outdated_after = job.get("outdated-after").and_then(Value::as_i64);
    let worker_id = format!("{ds}:{id}");
    let upid_cell = Arc::new(Mutex::new(String::new()));
    let cell = Arc::clone(&upid_cell);
    let store = cx.store.clone();
    let task = NewTask {
        product: Product::Pbs,
        store: &cx.store,
        node: HOSTNAME,
        wtype: "verificationjob",
        wid: &worker_id,
        user: &cx.caller.authid,
    };
    let faults = TaskFaults { fail: cx.fail, delay: cx.task_delay };
    let wid = worker_id.clone();
    let upid = lab.spawn_task_with(faults, task, move |lab, log| {
        let upid = lock(&cell).clone();
        let now = now_s() as i64;
        let mut st = lab.state();
        let s = st.store_mut(&store).ok_or("store vanished")?;
        log.push(format!("Starting datastore verify job '{wid}'"));
        log.push(format!("verify datastore {ds}"));
        let snaps = s.pbs.snapshots.entry(ds.clone()).or_default();
        let mut groups: Vec<(String, String, String)> = snaps
            .iter()
            .filter(|b| in_scope(&b.ns, &ns, depth))
            .map(|b| (b.ns.clone(), b.backup_type.clone(), b.backup_id.clone()))
            .collect();
        groups.sort();
        groups.dedup();
        log.push(format!("found {} groups", groups.len()));
        let mut failed = Vec::new();
        for (gns, gtype, gid) in &groups {
            let mut members: Vec<&mut BackupSnapshot> = snaps
                .iter_mut()
                .filter(|b| &b.ns == gns && &b.backup_type == gtype && &b.backup_id == gid)
                .collect();
            members.sort_by_key(|b| std::cmp::Reverse(b.backup_time));
            log.push(format!("verify group {ds}:{gtype}/{gid} ({} snapshots)", members.len()));
            for b in members {
                let dir = snapshot_dir(b);
                if !b.finished {
                    // A backup still being written holds its snapshot lock exclusively.
                    log.push(format!(
                        "SKIPPED: verify {ds}:{dir} - could not acquire snapshot lock: locked by another operation"
                    ));
                    continue;
                }
                if !wanted(b, ignore_verified, outdated_after, now) {
                    log.push(format!("SKIPPED: verify {ds}:{dir} (recently verified)"));
                    continue;
                }
                log.push(format!("verify {ds}:{dir}"));
                let mut ok = true;
                // The missing chunk belongs to the snapshot's first chunked archive.
                let broken = b.missing_chunk.as_ref().and_then(|c| {
                    b.files.iter().find(|(f, _)| f.ends_with(".fidx") || f.ends_with(".didx")).map(|(f, _)| (f, c))
                });
                for (file, size) in &b.files {
                    log.push(format!("  check {file}"));
                    if !(file.ends_with(".fidx") || file.ends_with(".didx")) {
                        continue;
                    }
                    let mib = *size as f64 / (1024.0 * 1024.0);
                    match broken {
                        Some((f, digest)) if f == file => {
                            log.push(format!(
                                "can't verify chunk, load failed - store '{ds}', unable to load chunk '{digest}' - No such file or directory (os error 2)"
                            ));
                            log.push(format!(
                                "  verified {mib:.2}/{mib:.2} MiB in 0.01 seconds, speed 0.00/0.00 MiB/s (1 errors)"
                            ));
                            log.push(format!("verify {ds}:{dir}/{file} failed: chunks could not be verified"));
                            ok = false;
                        }
                        _ => log.push(format!(
                            "  verified {mib:.2}/{mib:.2} MiB in 0.01 seconds, speed 0.00/0.00 MiB/s (0 errors)"
                        )),
                    }
                }
                let state = if ok { "ok" } else { "failed" };
                b.verification = Some((state.to_string(), upid.clone()));
                if !ok {
                    failed.push(dir);
                }
            }
        }
        lab.save(&st);
        if failed.is_empty() {
            return Ok(());
        }
        log.push("Failed to verify the following snapshots/groups:".into());
        log.extend(failed.iter().map(|d| format!("\t{d}")));
        Err("verification failed - please check the log for details".into())
    });
    *lock(&upid_cell) = upid.clone();
    Ok(json!(upid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_in_scope() {
        assert!(in_scope("", "", 7));
        assert!(in_scope("a/b", "", 7));
        assert!(!in_scope("a/b", "", 1));
        assert!(in_scope("a", "a", 0));
        assert!(!in_scope("ab", "a", 7));
        assert!(in_scope("a/b", "a", 1));
    }

    #[test]
    fn snapshot_dirs_print_like_pbs() {
        let b = BackupSnapshot {
            ns: String::new(),
            backup_type: "vm".into(),
            backup_id: "100".into(),
            backup_time: 1_700_000_000,
            owner: "root@pam".into(),
            finished: true,
            files: vec![],
            verification: None,
            guest: None,
            missing_chunk: None,
        };
        assert_eq!(snapshot_dir(&b), "vm/100/2023-11-14T22:13:20Z");
        let b = BackupSnapshot { ns: "a/b".into(), ..b };
        assert_eq!(snapshot_dir(&b), "ns/a/ns/b/vm/100/2023-11-14T22:13:20Z");
    }
}
