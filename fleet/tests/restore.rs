//! Restore tests against a real edge lab (`edge-lab up`, `--net 163`): guests seeded on pve1,
//! the store's backup job run by the lab (standing for its schedule), then the driver restores
//! each guest's latest snapshot into a scratch VM, checks it and destroys it. Then each injected
//! failure — a chunk missing from the datastore, the target storage full, a guest OS without
//! a running guest agent — ends its test with the step and the reason, and no scratch VM is
//! left. What the lab holds is read from the lab's API, not from the driver's report.
//!
//! Build the lab first: `cargo build -p edge-lab`.

use std::time::Duration;

use edge_acceptance::{json, Lab, Value};
use edge_fleet::restore::{self, RestoreOptions, RestoreOutcome, RestoreTest, STEP_AGENT, STEP_RESTORE};
use edge_provider::clients::pbs::PbsClient;
use edge_provider::clients::pve::PveClient;
use edge_provider::provider::ApiConfig;
use tokio_util::sync::CancellationToken;

const STORAGE: &str = "pbs-edge";

fn field(v: &Value, what: &str) -> String {
    v.as_str().unwrap_or_else(|| panic!("lab.json has no {what}")).to_string()
}

/// The store's APIs with its tokens and pinned certificates (PVE through pve1).
fn clients(lab: &Lab) -> (PveClient, PbsClient) {
    let s = lab.store(0);
    let api = |k: &str| ApiConfig {
        endpoint: Some(field(&s[k]["endpoint"], "endpoint")),
        api_token: Some(field(&s[k]["api_token"], "token")),
        tls_fingerprint: Some(field(&s[k]["tls_fingerprint"], "fingerprint")),
        ..Default::default()
    };
    (PveClient::from_config(&api("pve")).expect("PVE client"), PbsClient::from_config(&api("pbs")).expect("PBS client"))
}

/// The vmids pve1's guest list shows, read through the lab's PVE API.
fn guests_on_pve1(lab: &Lab) -> Vec<u64> {
    let list = lab.pve_root(0, "GET", "/nodes/pve1/qemu", &[]);
    let mut ids: Vec<u64> = list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("guest list: {list}"))
        .iter()
        .filter_map(|g| g["vmid"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// The exit statuses of pve1's tasks of `kind` (`running` while one runs), oldest first.
fn task_exits(lab: &Lab, kind: &str) -> Vec<String> {
    let list = lab.pve_root(0, "GET", "/nodes/pve1/tasks", &[("typefilter", kind), ("limit", "500")]);
    let mut tasks: Vec<(u64, String)> = list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("task list: {list}"))
        .iter()
        .map(|t| (t["pid"].as_u64().unwrap_or(0), t["status"].as_str().unwrap_or("running").to_string()))
        .collect();
    tasks.sort();
    tasks.into_iter().map(|(_, s)| s).collect()
}

fn seed(lab: &Lab, vmid: u32, name: &str, extra: Value) {
    let mut body = json!({"node": "pve1", "vmid": vmid, "name": name, "disk_gb": 4});
    body.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    let r = lab.admin("POST", "/lab/guests", Some(&body));
    assert_eq!(r["vmid"], vmid, "{r}");
}

fn run_job(lab: &Lab) -> Value {
    lab.admin("POST", "/lab/stores/store-001/backup-jobs/daily/run", Some(&json!({})))
}

fn run_driver(lab: &Lab, agent_timeout: Duration) -> Vec<RestoreTest> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (pve, pbs) = clients(lab);
        let mut opts = RestoreOptions::new("pve1", STORAGE, &field(&lab.store(0)["pbs"]["datastore"], "datastore"));
        opts.agent_timeout = agent_timeout;
        opts.task_timeout = Duration::from_secs(60);
        restore::run(&pve, &pbs, &opts, &CancellationToken::new()).await.expect("restore tests ran")
    })
}

fn by_guest(tests: &[RestoreTest], vmid: u32) -> &RestoreTest {
    tests.iter().find(|t| t.guest == vmid).unwrap_or_else(|| panic!("no test of {vmid} in {tests:#?}"))
}

fn assert_failed(t: &RestoreTest, step: &str, needles: &[&str]) {
    match &t.outcome {
        RestoreOutcome::Failed { step: s, reason } => {
            assert_eq!(s, step, "{t:#?}");
            for n in needles {
                assert!(reason.contains(n), "reason of {} lacks {n:?}: {reason}", t.guest);
            }
        }
        other => panic!("guest {} should have failed at {step}: {other:?}", t.guest),
    }
    assert_eq!(t.rto_s, None, "{t:#?}");
}

fn assert_passed(t: &RestoreTest) {
    assert_eq!(t.outcome, RestoreOutcome::Passed, "{t:#?}");
    let rto = t.rto_s.unwrap_or_else(|| panic!("no RTO: {t:#?}"));
    assert!(rto > 0.0 && rto < 60.0, "{t:#?}");
    assert!((0..600).contains(&t.rpo_s), "{t:#?}");
    assert!(t.snapshot.starts_with(&format!("vm/{}/", t.guest)) && t.snapshot.ends_with('Z'), "{t:#?}");
}

#[test]
fn restore_tests_pass_and_report_each_injected_failure() {
    let lab = Lab::up(&["--net", "163"]);
    let pbs_host = field(&lab.store(0)["pbs"]["endpoint"], "PBS endpoint")
        .trim_start_matches("https://")
        .trim_end_matches(":8007")
        .to_string();
    let datastore = field(&lab.store(0)["pbs"]["datastore"], "datastore");
    let fingerprint = field(&lab.store(0)["pbs"]["tls_fingerprint"], "PBS fingerprint");
    let password = field(&lab.store(0)["pbs"]["root_password"], "PBS root password");
    let storage = lab.pve_root(
        0,
        "POST",
        "/storage",
        &[
            ("storage", STORAGE),
            ("type", "pbs"),
            ("server", &pbs_host),
            ("datastore", &datastore),
            ("username", "root@pam"),
            ("password", &password),
            ("fingerprint", &fingerprint),
            ("content", "backup"),
        ],
    );
    assert!(storage.get("errors").is_none() && storage.get("message").is_none(), "{storage}");
    let job = lab.pve_root(
        0,
        "POST",
        "/cluster/backup",
        &[("id", "daily"), ("schedule", "02:00"), ("storage", STORAGE), ("vmid", "100,101,102"), ("mode", "snapshot")],
    );
    assert!(job.get("errors").is_none() && job.get("message").is_none(), "{job}");
    seed(&lab, 100, "web", json!({}));
    seed(&lab, 101, "db", json!({}));
    seed(&lab, 102, "files", json!({}));
    // Not in the job: never backed up.
    seed(&lab, 103, "scratchpad", json!({}));
    let ran = run_job(&lab);
    assert_eq!(ran["snapshots"].as_array().map(Vec::len), Some(3), "{ran}");
    let listed = lab.pve_root(0, "GET", "/nodes/pve1/qemu", &[]);
    assert_eq!(guests_on_pve1(&lab), [100, 101, 102, 103], "{listed}");

    // Everything passes; the guest without a backup says so.
    let tests = run_driver(&lab, Duration::from_secs(20));
    assert_eq!(tests.iter().map(|t| t.guest).collect::<Vec<_>>(), [100, 101, 102, 103]);
    for vmid in [100, 101, 102] {
        assert_passed(by_guest(&tests, vmid));
    }
    assert_eq!(by_guest(&tests, 100).guest_name.as_deref(), Some("web"));
    assert_eq!(by_guest(&tests, 103).outcome, RestoreOutcome::NoBackup);
    assert_eq!(guests_on_pve1(&lab), [100, 101, 102, 103], "no scratch VM is left");
    assert_eq!(task_exits(&lab, "qmrestore"), ["OK", "OK", "OK"]);
    assert_eq!(task_exits(&lab, "qmdestroy"), ["OK", "OK", "OK"]);

    // A guest whose OS runs no guest agent joins the job; one chunk of db's newest backup is
    // lost from the datastore.
    seed(&lab, 104, "appliance", json!({"os_agent": false}));
    let upd = lab.pve_root(0, "PUT", "/cluster/backup/daily", &[("vmid", "100,101,102,104")]);
    assert!(upd.get("errors").is_none() && upd.get("message").is_none(), "{upd}");
    let ran = run_job(&lab);
    assert_eq!(ran["snapshots"].as_array().map(Vec::len), Some(4), "{ran}");
    let lost = lab.admin("POST", "/lab/backups/missing-chunk", Some(&json!({"backup_id": "101"})));
    let chunk = field(&lost["chunk"], "chunk digest");
    let tests = run_driver(&lab, Duration::from_secs(3));
    assert_passed(by_guest(&tests, 100));
    assert_passed(by_guest(&tests, 102));
    assert_failed(
        by_guest(&tests, 101),
        STEP_RESTORE,
        &[
            &format!("/.chunks/{}/{chunk}\" failed: No such file or directory (os error 2)", &chunk[..4]),
            "exit code 255",
        ],
    );
    assert_failed(by_guest(&tests, 104), STEP_AGENT, &["QEMU guest agent is not running"]);
    assert_eq!(guests_on_pve1(&lab), [100, 101, 102, 103, 104], "no scratch VM is left");
    let restores = task_exits(&lab, "qmrestore");
    assert_eq!(restores.len(), 7, "{restores:?}");
    let failed: Vec<&String> = restores.iter().filter(|s| *s != "OK").collect();
    assert_eq!(failed.len(), 1, "{restores:?}");
    assert!(
        failed[0].starts_with("command '/usr/bin/pbs-restore") && failed[0].ends_with("failed: exit code 255"),
        "{restores:?}"
    );

    // The target storage is full: every restore fails before any chunk is read.
    let full = lab.admin("POST", "/lab/storage-full", Some(&json!({"node": "pve1", "storage": "local-lvm"})));
    assert_eq!(full["full_storages"], json!(["local-lvm"]), "{full}");
    let tests = run_driver(&lab, Duration::from_secs(3));
    for vmid in [100, 101, 102, 104] {
        assert_failed(
            by_guest(&tests, vmid),
            STEP_RESTORE,
            &["lvcreate 'pve/vm-9000-disk-0' error:", "free space in thin pool pve/data reached threshold"],
        );
    }
    assert_eq!(by_guest(&tests, 103).outcome, RestoreOutcome::NoBackup);
    assert_eq!(guests_on_pve1(&lab), [100, 101, 102, 103, 104], "no scratch VM is left");
    let snap = lab.admin("GET", "/lab/snapshot", None);
    assert_eq!(
        snap["stores"][0]["guests"]["pve1"],
        json!([100, 101, 102, 103, 104]),
        "{}",
        snap["stores"][0]["guests"]
    );
}
