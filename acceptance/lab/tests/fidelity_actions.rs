//! What the provider's actions drive: a PBS verify job run now (PBS-VERIFY-RUN), Ceph's OSD
//! flags through PVE (PVE-CEPH-FLAGS, against the real Ceph of `--ceph`) and a node reboot
//! (PVE-NODE-REBOOT).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{decode, enc, poll, TestLab};
use serde_json::{json, Value};

/// Waits for a PBS task; (exit status, log lines without their time prefix).
fn pbs_task(lab: &TestLab, upid: &str) -> (String, Vec<String>) {
    let path = format!("/nodes/localhost/tasks/{}", enc(upid));
    let st = poll(&format!("task {upid}"), 30, || {
        let (c, v) = lab.pbs("GET", &format!("{path}/status"), &[]);
        (c == 200 && v["data"]["status"] == "stopped").then(|| v["data"].clone())
    });
    let (_, log) = lab.pbs("GET", &format!("{path}/log"), &[("limit", "0")]);
    let lines = log["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["t"].as_str())
        .map(|t| t.split_once(": ").map(|(_, r)| r).unwrap_or(t).to_string())
        .collect();
    (st["exitstatus"].as_str().unwrap_or_default().to_string(), lines)
}

fn states(lab: &TestLab, ds: &str) -> Vec<(i64, Value)> {
    let (_, v) = lab.pbs("GET", &format!("/admin/datastore/{ds}/snapshots"), &[]);
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["backup-time"].as_i64().unwrap_or(0), s["verification"]["state"].clone()))
        .collect()
}

/// PBS-VERIFY-RUN: `POST /admin/verify/{id}/run` starts a `verificationjob` task
/// (`STORE:JOB`), whose log walks the groups and names what failed, and which records each
/// snapshot's verdict; a job that is not configured is refused with the section config's text.
#[test]
fn verify_job_runs_now() {
    let lab = TestLab::up(213, &[]);
    let ds = lab.store(0)["pbs"]["datastore"].as_str().expect("datastore").to_string();
    for (ty, id, t) in [("vm", "100", 1_700_000_000i64), ("ct", "101", 1_700_000_100)] {
        let (c, v) =
            lab.admin("POST", "/lab/backups", Some(json!({"backup_type": ty, "backup_id": id, "backup_time": t})));
        assert_eq!(c, 200, "{v}");
    }
    let (c, v) = lab.pbs("POST", "/config/verify", &[("id", "weekly"), ("store", &ds)]);
    assert_eq!(c, 200, "{v}");

    let (c, v) = lab.pbs("POST", "/admin/verify/nope/run", &[]);
    assert_eq!((c, v.as_str()), (400, Some("no such verification 'nope'")), "{v}");

    let (c, v) = lab.pbs("POST", "/admin/verify/weekly/run", &[]);
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().expect("UPID").to_string();
    assert!(upid.contains(&format!(":verificationjob:{ds}\\x3aweekly:")), "worker type and id: {upid}");
    let (exit, log) = pbs_task(&lab, &upid);
    assert_eq!(exit, "OK", "{log:?}");
    assert!(log.contains(&format!("Starting datastore verify job '{ds}:weekly'")), "{log:?}");
    assert!(log.contains(&"found 2 groups".to_string()), "{log:?}");
    assert!(log.contains(&format!("verify {ds}:vm/100/2023-11-14T22:13:20Z")), "{log:?}");
    assert!(states(&lab, &ds).iter().all(|(_, s)| s == "ok"), "{:?}", states(&lab, &ds));

    // A newer snapshot with a chunk gone; the verified ones are skipped (`ignore-verified`
    // defaults to true, no `outdated-after`).
    let t = 1_700_086_400i64;
    lab.admin("POST", "/lab/backups", Some(json!({"backup_type": "vm", "backup_id": "100", "backup_time": t})));
    let (c, v) = lab.admin("POST", "/lab/backups/missing-chunk", Some(json!({"backup_id": "100", "backup_time": t})));
    assert_eq!(c, 200, "{v}");
    let (_, v) = lab.pbs("POST", "/admin/verify/weekly/run", &[]);
    let (exit, log) = pbs_task(&lab, v["data"].as_str().expect("UPID"));
    assert_eq!(exit, "verification failed - please check the log for details", "{log:?}");
    assert!(log.contains(&format!("SKIPPED: verify {ds}:vm/100/2023-11-14T22:13:20Z (recently verified)")), "{log:?}");
    let failed = log.iter().position(|l| l == "Failed to verify the following snapshots/groups:").expect("heading");
    assert_eq!(log[failed + 1], "\tvm/100/2023-11-15T22:13:20Z", "{log:?}");
    assert!(log.iter().any(|l| l.ends_with("failed: chunks could not be verified")), "{log:?}");
    assert!(states(&lab, &ds).contains(&(t, json!("failed"))), "{:?}", states(&lab, &ds));
}

/// PVE-CEPH-FLAGS: `PUT /cluster/ceph/flags/{flag}` is `osd set|unset` on the real cluster,
/// `GET` reads `osd dump`; a set flag raises `OSDMAP_FLAGS` in the status in Ceph's words.
#[test]
fn ceph_flags_are_the_real_clusters() {
    let lab = TestLab::up(214, &["--ceph"]);
    let conf = lab.json["ceph"]["conf"].as_str().expect("ceph conf").to_string();
    let ceph = |args: &[&str]| -> Value {
        let out = Command::new("ceph").args(["-c", &conf]).args(args).args(["-f", "json"]).output().expect("ceph");
        assert!(out.status.success(), "ceph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("ceph JSON")
    };
    let (c, v) = lab.pve(0, "GET", "/cluster/ceph/flags/noout", &[]);
    assert_eq!(c, 500, "before pveceph init: {v}");
    lab.ceph_bootstrap(0);
    assert_eq!(lab.pve(0, "GET", "/cluster/ceph/flags/noout", &[]).1["data"], 0);
    let (c, v) = lab.pve(0, "PUT", "/cluster/ceph/flags/noout", &[("value", "1")]);
    assert_eq!((c, &v["data"]), (200, &Value::Null), "{v}");
    let flags = ceph(&["osd", "dump"])["flags"].as_str().unwrap_or_default().to_string();
    assert!(flags.split(',').any(|f| f == "noout"), "real Ceph has it: {flags}");
    assert_eq!(lab.pve(0, "GET", "/cluster/ceph/flags/noout", &[]).1["data"], 1);
    let (_, all) = lab.pve(0, "GET", "/cluster/ceph/flags", &[]);
    let entry = all["data"].as_array().and_then(|a| a.iter().find(|f| f["name"] == "noout")).cloned();
    assert_eq!(entry.map(|e| e["value"].clone()), Some(json!(1)), "{all}");
    // The status's check says what real Ceph says.
    let real = ceph(&["health", "detail"]);
    let (_, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
    let lab_msg = &st["data"]["health"]["checks"]["OSDMAP_FLAGS"]["summary"]["message"];
    assert_eq!(lab_msg, &real["checks"]["OSDMAP_FLAGS"]["summary"]["message"], "lab {st} vs real {real}");
    assert_eq!(lab_msg, "noout flag(s) set");
    let (c, _) = lab.pve(0, "PUT", "/cluster/ceph/flags/noout", &[("value", "0")]);
    assert_eq!(c, 200);
    let flags = ceph(&["osd", "dump"])["flags"].as_str().unwrap_or_default().to_string();
    assert!(!flags.split(',').any(|f| f == "noout"), "unset on real Ceph: {flags}");
    let (_, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
    assert!(st["data"]["health"]["checks"].get("OSDMAP_FLAGS").is_none(), "{st}");
}

/// PVE-NODE-REBOOT: `command=reboot` answers `null` at once; the node then goes away (its API
/// does not answer) and comes back with a new boot.
#[test]
fn reboot_takes_the_node_down_and_back() {
    let lab = TestLab::up(215, &[]);
    let url = format!("{}/api2/json/nodes/pve1/status", lab.node_ep(0, 0));
    let status = || -> Option<Value> {
        let r =
            lab.client.get(&url).header("Authorization", lab.token(0)).timeout(Duration::from_secs(5)).send().ok()?;
        let (c, v) = decode(r);
        (c == 200).then(|| v["data"].clone())
    };
    assert!(status().is_some(), "pve1 answers");
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let asked = now();
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/status", &[("command", "reboot")]);
    assert_eq!((c, &v["data"]), (200, &Value::Null), "{v}");
    poll("pve1 goes down", 30, || status().is_none().then_some(()));
    let (_, info) = lab.admin("GET", "/lab/nodes/pve1", None);
    assert_eq!(info["reboot"]["rebooting"], true, "{info}");
    let after = poll("pve1 comes back", 30, status);
    let up = after["uptime"].as_u64().expect("uptime");
    assert!(now() - up >= asked, "a boot after the request: up {up} s, asked at {asked}");
    let (_, info) = lab.admin("GET", "/lab/nodes/pve1", None);
    assert_eq!(
        (info["reboot"]["count"].clone(), info["reboot"]["rebooting"].clone()),
        (json!(1), json!(false)),
        "{info}"
    );
}
