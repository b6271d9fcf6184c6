//! Actions through real Terraform 1.15 (`terraform apply -invoke=action.…`, and an
//! `action_trigger` on a resource's lifecycle) against the edge lab: `edge_pbs_verify_now`
//! (PBS's verify task, its log and the snapshots' verify state are the evidence) and
//! `edge_node_reboot` (real Ceph's `ceph osd dump` flags and `ceph health`, the lab's reboot
//! count and the node's new boot are). Terraform 1.0.3 does not know the `action` block: its
//! error is pinned too.

use std::process::Command;
use std::time::Duration;

use edge_acceptance::{json, poll, terraform_legacy_bin, url_encode, Lab, Tf, Value};

fn hcl(body: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{ edge = {{ source = \"edgeform/edge\" }} }}\n}}\nprovider \"edge\" {{}}\n{body}\n"
    )
}

fn tf_for(lab: &Lab, hcl: &str) -> Tf {
    let mut tf = Tf::new(hcl);
    for (k, v) in lab.provider_env(0) {
        tf.env(&k, &v);
    }
    if let Some(log) = std::env::var_os("EDGE_TEST_TF_LOG") {
        tf.env("TF_LOG_PROVIDER", "INFO");
        tf.env("TF_LOG_PATH", &log.to_string_lossy());
    }
    tf.init();
    tf
}

/// The PBS tasks of worker type `wtype`, newest first (the PBS task list).
fn pbs_tasks(lab: &Lab, wtype: &str) -> Vec<Value> {
    let v = lab.api("pbs", "GET", "/nodes/localhost/tasks", &json!({"typefilter": wtype, "limit": "0"}));
    v["data"].as_array().cloned().unwrap_or_default()
}

/// The lines of a PBS task's log, without their time prefix.
fn pbs_task_log(lab: &Lab, upid: &str) -> Vec<String> {
    let v = lab.api("pbs", "GET", &format!("/nodes/localhost/tasks/{}/log", url_encode(upid)), &json!({"limit": "0"}));
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["t"].as_str())
        .map(|t| t.split_once(": ").map(|(_, r)| r).unwrap_or(t).to_string())
        .collect()
}

/// `TYPE/ID/TIME` → verify state, from the PBS snapshot list.
fn verify_states(lab: &Lab, datastore: &str) -> Vec<(String, Value)> {
    let v = lab.api("pbs", "GET", &format!("/admin/datastore/{datastore}/snapshots"), &json!({}));
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                format!(
                    "{}/{}/{}",
                    s["backup-type"].as_str().unwrap_or(""),
                    s["backup-id"].as_str().unwrap_or(""),
                    s["backup-time"]
                ),
                s["verification"]["state"].clone(),
            )
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as PBS names a snapshot's time in its directory.
fn snapshot_time(t: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_086_400;
const T3: i64 = 1_700_172_800;
const T4: i64 = 1_700_259_200;

fn verify_hcl(datastore: &str) -> String {
    hcl(&format!(
        r#"
resource "edge_pbs_job" "verify" {{
  id       = "verify-now"
  schedule = "sat 03:00"
  verify {{
    store = "{datastore}"
  }}
  lifecycle {{
    action_trigger {{
      events  = [after_create, after_update]
      actions = [action.edge_pbs_verify_now.now]
    }}
  }}
}}

action "edge_pbs_verify_now" "now" {{
  config {{
    job     = "verify-now"
    timeout = "2m"
  }}
}}

action "edge_pbs_verify_now" "missing" {{
  config {{
    job = "no-such-job"
  }}
}}
"#
    ))
}

/// The job is created and its `after_create` trigger verifies the datastore; a later
/// `-invoke` finds the chunk lost since and fails naming the job and the snapshot; a job that
/// does not exist is an error on `job`.
#[test]
fn pbs_verify_now_from_a_trigger_and_by_invoke() {
    let lab = Lab::up(&["--net", "211"]);
    let ds = lab.store(0)["pbs"]["datastore"].as_str().expect("datastore").to_string();
    for (ty, id, t) in [("vm", "100", T1), ("vm", "100", T2), ("ct", "101", T3)] {
        lab.admin("POST", "/lab/backups", Some(&json!({"backup_type": ty, "backup_id": id, "backup_time": t})));
    }
    let tf = tf_for(&lab, &verify_hcl(&ds));

    // The trigger: creating the job runs it once.
    let out = tf.apply().output();
    assert!(out.contains("Starting PBS verify job \"verify-now\""), "progress of the triggered action:\n{out}");
    assert!(out.contains("3 snapshot(s) verified, none failed"), "{out}");
    let tasks = pbs_tasks(&lab, "verificationjob");
    assert_eq!(tasks.len(), 1, "one verify task on PBS: {tasks:?}");
    assert_eq!(tasks[0]["status"], "OK", "{tasks:?}");
    assert_eq!(tasks[0]["worker_id"], format!("{ds}:verify-now"));
    let states = verify_states(&lab, &ds);
    assert!(states.iter().all(|(_, s)| s == "ok"), "every snapshot verified ok: {states:?}");

    // A new backup whose chunk is lost: verify finds it (the others were verified already and
    // are skipped, as PBS's `ignore-verified` default does).
    lab.admin("POST", "/lab/backups", Some(&json!({"backup_type": "vm", "backup_id": "100", "backup_time": T4})));
    lab.admin("POST", "/lab/backups/missing-chunk", Some(&json!({"backup_id": "100", "backup_time": T4})));
    let r = tf.run(&["apply", "-auto-approve", "-no-color", "-invoke=action.edge_pbs_verify_now.now"]);
    let out = r.output();
    assert!(!r.ok(), "a failed verification fails the invoke:\n{out}");
    let bad = format!("vm/100/{}", snapshot_time(T4));
    assert!(out.contains("Verify job \"verify-now\" failed"), "{out}");
    assert!(out.contains(&bad), "the error names the damaged snapshot {bad}:\n{out}");
    assert!(out.contains("1 snapshot(s) verified, 1 failed"), "progress before the error:\n{out}");
    let tasks = pbs_tasks(&lab, "verificationjob");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(tasks[0]["status"], "verification failed - please check the log for details");
    let log = pbs_task_log(&lab, tasks[0]["upid"].as_str().expect("upid"));
    assert!(log.iter().any(|l| l == &format!("\t{bad}")), "PBS's log lists it: {log:?}");
    let states = verify_states(&lab, &ds);
    assert!(states.contains(&(format!("vm/100/{T4}"), json!("failed"))), "{states:?}");
    assert!(states.contains(&(format!("vm/100/{T1}"), json!("ok"))), "{states:?}");

    // A job PBS does not have.
    let r = tf.run(&["apply", "-auto-approve", "-no-color", "-invoke=action.edge_pbs_verify_now.missing"]);
    let out = r.output();
    assert!(!r.ok(), "{out}");
    assert!(out.contains("No verify job \"no-such-job\""), "{out}");
    assert!(out.contains("job = \"no-such-job\""), "the error points at the attribute:\n{out}");
    assert_eq!(pbs_tasks(&lab, "verificationjob").len(), 2, "no task was started for it");
}

/// Terraform 1.0.3 has no `action` block: `validate` refuses it by name.
#[test]
fn action_blocks_on_terraform_1_0_3() {
    let tf = Tf::with_terraform(
        &hcl("action \"edge_pbs_verify_now\" \"now\" {\n  config {\n    job = \"verify-now\"\n  }\n}\n"),
        terraform_legacy_bin(),
    );
    let r = tf.run(&["init", "-no-color"]);
    let out = if r.ok() { tf.run(&["validate", "-no-color"]).output() } else { r.output() };
    assert!(out.contains("Unsupported block type"), "{out}");
    assert!(out.contains("Blocks of type \"action\" are not expected here"), "{out}");
}

fn ceph(lab: &Lab, args: &[&str]) -> String {
    let conf = lab.json["ceph"]["conf"].as_str().expect("lab.json ceph.conf (--ceph)").to_string();
    let out = Command::new("ceph").args(["-c", &conf]).args(args).output().expect("ceph CLI");
    assert!(out.status.success(), "ceph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The OSD map's flags, as real Ceph has them.
fn osd_flags(lab: &Lab) -> Vec<String> {
    let dump: Value = serde_json::from_str(&ceph(lab, &["osd", "dump", "-f", "json"])).expect("osd dump JSON");
    dump["flags"].as_str().unwrap_or_default().split(',').map(str::to_string).collect()
}

/// What real Ceph's monitor logged to the cluster log about the OSD map flags (the flags'
/// history: `Health check failed: noout flag(s) set (OSDMAP_FLAGS)`, then `… cleared …`).
fn flag_history(lab: &Lab) -> Vec<String> {
    let log: Value = serde_json::from_str(&ceph(lab, &["log", "last", "1000", "-f", "json"])).expect("log JSON");
    log.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("OSDMAP_FLAGS"))
        .map(str::to_string)
        .collect()
}

fn reboots(lab: &Lab, node: &str) -> u64 {
    lab.admin("GET", &format!("/lab/nodes/{node}"), None)["reboot"]["count"].as_u64().unwrap_or(0)
}

fn reboot_hcl() -> String {
    hcl(r#"
action "edge_node_reboot" "pve2" {
  config {
    node    = "pve2"
    timeout = "5m"
  }
}

action "edge_node_reboot" "hasty" {
  config {
    node    = "pve2"
    timeout = "1s"
  }
}

action "edge_node_reboot" "ghost" {
  config {
    node = "pve9"
  }
}
"#)
}

/// edge_node_reboot against a three-node cluster with real Ceph: refusals at plan time
/// (unknown node, Ceph not HEALTH_OK, quorum at stake), a reboot with noout set and unset
/// around it, and a wait that runs out still unsetting noout.
#[test]
fn node_reboot_drains_ceph_and_waits() {
    let lab = Lab::up(&["--net", "212", "--ceph"]);
    lab.form_ceph_cluster_by_hand();
    let tf = tf_for(&lab, &reboot_hcl());
    let invoke = |name: &str| {
        tf.run(&["apply", "-auto-approve", "-no-color", &format!("-invoke=action.edge_node_reboot.{name}")])
    };

    // Refused before anything changes.
    let r = invoke("ghost");
    assert!(!r.ok() && r.output().contains("No node \"pve9\" in cluster \"edge\""), "{}", r.output());
    assert!(r.output().contains("node = \"pve9\""), "points at node:\n{}", r.output());
    ceph(&lab, &["osd", "set", "noscrub"]);
    let r = invoke("pve2");
    assert!(!r.ok(), "{}", r.output());
    assert!(r.output().contains("Ceph is not healthy: not rebooting pve2"), "{}", r.output());
    assert!(r.output().contains("noscrub flag(s) set"), "names the check:\n{}", r.output());
    ceph(&lab, &["osd", "unset", "noscrub"]);
    lab.admin("POST", "/lab/power", Some(&json!({"node": "pve3", "on": false})));
    let r = invoke("pve2");
    assert!(!r.ok(), "{}", r.output());
    assert!(r.output().contains("Rebooting pve2 would cost cluster \"edge\" its quorum"), "{}", r.output());
    assert!(r.output().contains("Bring pve3 back online first"), "{}", r.output());
    lab.admin("POST", "/lab/power", Some(&json!({"node": "pve3", "on": true})));
    assert_eq!(reboots(&lab, "pve2"), 0, "nothing was rebooted");
    assert!(!osd_flags(&lab).contains(&"noout".to_string()));

    // The reboot.
    let before = flag_history(&lab).len();
    let r = invoke("pve2");
    let out = r.output();
    assert!(r.ok(), "{out}");
    let steps = [
        "Checking quorum and Ceph health before rebooting pve2",
        "cluster \"edge\" keeps quorum without pve2: 2 of 3 nodes stay online; Ceph is HEALTH_OK",
        "Setting Ceph flag noout",
        "Rebooting pve2",
        "pve2 is down",
        "pve2 is back",
        "pve2 is online in the cluster",
        "Ceph has recovered (HEALTH_OK but for the noout flag)",
        "Unsetting Ceph flag noout",
        "Ceph is HEALTH_OK",
    ];
    let mut at = 0;
    for s in steps {
        let found = out[at..].find(s).unwrap_or_else(|| panic!("progress {s:?} (in order) missing:\n{out}"));
        at += found + s.len();
    }
    assert_eq!(reboots(&lab, "pve2"), 1, "the lab saw one reboot");
    let uptime = lab.api("pve", "GET", "/nodes/pve2/status", &json!({}))["data"]["uptime"].as_u64().expect("uptime");
    assert!(uptime < 60, "pve2 runs a new boot: up {uptime} s");
    assert!(!osd_flags(&lab).contains(&"noout".to_string()), "noout unset: {:?}", osd_flags(&lab));
    let history: Vec<String> = flag_history(&lab).into_iter().skip(before).collect();
    assert!(history.iter().any(|m| m.contains("noout flag(s) set")), "Ceph logged noout set: {history:?}");
    assert!(history.iter().any(|m| m.contains("cleared: OSDMAP_FLAGS")), "and cleared: {history:?}");
    let health: Value = serde_json::from_str(&ceph(&lab, &["health", "-f", "json"])).expect("health JSON");
    assert_eq!(health["status"], "HEALTH_OK", "real Ceph: {health}");

    // The wait runs out while pve2 is down: noout is unset all the same, and the error says so.
    let r = invoke("hasty");
    let out = r.output();
    assert!(!r.ok(), "{out}");
    assert!(out.contains("Reboot of pve2 did not complete"), "{out}");
    assert!(out.contains("The noout flag was unset again"), "{out}");
    assert!(!osd_flags(&lab).contains(&"noout".to_string()), "noout unset after the failed wait");
    assert_eq!(reboots(&lab, "pve2"), 2);
    poll("pve2 back", Duration::from_secs(60), || {
        let v = lab.api("pve", "GET", "/cluster/status", &json!({}));
        v["data"].as_array()?.iter().any(|e| e["name"] == "pve2" && e["online"] == 1).then_some(())
    });
}
