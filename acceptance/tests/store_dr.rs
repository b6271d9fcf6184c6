//! The whole store, as users run it: `examples/store-001` (the store module) against a lab with
//! real Ceph and a real Redfish BMC.
//!
//! - The quarterly disaster-recovery drill: converge, wipe the store through the lab's admin API
//!   (every node powered off with a blank disk, pools and jobs gone), apply again, and check the
//!   store is back exactly — by Terraform's plan, the `ceph` CLI and the lab's snapshot.
//! - Fault tolerance: the store converges while the lab injects 5xx answers, latency and failed
//!   tasks, and after a `terraform apply` killed with SIGKILL mid-run; afterwards the lab holds
//!   exactly what the state holds (nothing duplicated, nothing orphaned).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_acceptance::{json, Lab, Tf, Value};

#[path = "support/store.rs"]
mod store;
use store::{example_store, run};

fn ceph_pools(lab: &Lab) -> Vec<String> {
    let conf = lab.json["ceph"]["conf"].as_str().expect("ceph conf");
    let out = run(Command::new("ceph").args(["-c", conf, "osd", "pool", "ls", "-f", "json"]));
    serde_json::from_str::<Vec<String>>(&out).expect("ceph json")
}

fn ceph_pool_size(lab: &Lab, name: &str) -> Option<u64> {
    let conf = lab.json["ceph"]["conf"].as_str().expect("ceph conf");
    let out =
        Command::new("ceph").args(["-c", conf, "osd", "pool", "get", name, "size", "-f", "json"]).output().ok()?;
    serde_json::from_slice::<Value>(&out.stdout).ok()?["size"].as_u64()
}

/// Power state as the BMC itself reports it (sushy applies changes late).
fn bmc_power(lab: &Lab, endpoint: &str) -> String {
    let user = format!(
        "{}:{}",
        lab.json["redfish"]["username"].as_str().unwrap_or_default(),
        lab.json["redfish"]["password"].as_str().unwrap_or_default()
    );
    let out = run(Command::new("curl").args(["-sS", "-u", &user, endpoint]));
    serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["PowerState"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Pids of the processes whose working directory is `dir`.
fn processes_in(dir: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(50);
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Everything of the store the lab holds that the state should account for: cluster members,
/// pools, PBS job ids.
fn lab_inventory(lab: &Lab) -> (Vec<String>, Vec<String>, Vec<String>) {
    let snap = lab.admin("GET", "/lab/snapshot", None);
    let store = snap["stores"].as_array().and_then(|s| s.first()).cloned().unwrap_or(Value::Null);
    let mut members: Vec<String> = store["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| !n["cluster"].is_null())
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    members.sort();
    let mut pools: Vec<String> = match &store["pools"] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => {
            a.iter().filter_map(|p| p["name"].as_str().or(p["pool_name"].as_str())).map(str::to_string).collect()
        }
        _ => vec![],
    };
    // Ceph's own pools (the mgr creates `device_health_metrics` / `.mgr`) are nobody's resource.
    pools.retain(|p| p != "device_health_metrics" && !p.starts_with('.'));
    pools.sort();
    let mut jobs = Vec::new();
    collect_job_ids(&store["pbs"], &mut jobs);
    jobs.sort();
    jobs.dedup();
    (members, pools, jobs)
}

fn collect_job_ids(v: &Value, out: &mut Vec<String>) {
    for kind in ["sync_jobs", "verify_jobs", "prune_jobs", "sync", "verify", "prune"] {
        match &v[kind] {
            Value::Array(a) => out.extend(a.iter().filter_map(|j| j["id"].as_str().map(str::to_string))),
            Value::Object(m) => out.extend(m.keys().cloned()),
            _ => {}
        }
    }
}

/// The same inventory, as Terraform's state has it.
fn state_inventory(tf: &Tf) -> (Vec<String>, Vec<String>, Vec<String>) {
    let show = tf.show();
    let mut all = Vec::new();
    gather(&show["values"]["root_module"], &mut all);
    let mut members = Vec::new();
    let mut pools = Vec::new();
    let mut jobs = Vec::new();
    for r in all {
        let v = &r["values"];
        match r["type"].as_str() {
            Some("edge_proxmox_node") => members.extend(v["name"].as_str().map(str::to_string)),
            Some("edge_ceph_pool") => pools.extend(v["name"].as_str().map(str::to_string)),
            Some("edge_pbs_job") if v["gc"].is_null() => jobs.extend(v["id"].as_str().map(str::to_string)),
            _ => {}
        }
    }
    members.sort();
    pools.sort();
    jobs.sort();
    (members, pools, jobs)
}

fn gather(module: &Value, out: &mut Vec<Value>) {
    out.extend(module["resources"].as_array().into_iter().flatten().cloned());
    for m in module["child_modules"].as_array().into_iter().flatten() {
        gather(m, out);
    }
}

#[test]
fn a_wiped_store_comes_back_exactly() {
    wiped_store_comes_back("90", "9.1");
}

#[test]
fn a_wiped_store_comes_back_exactly_on_pve_8_4() {
    wiped_store_comes_back("126", "8.4");
}

fn wiped_store_comes_back(net: &str, pve: &str) {
    let lab = store::store_lab(net, pve);
    let keys = tempfile::tempdir().expect("temp dir");
    let tf = example_store(&lab, keys.path());
    tf.apply();
    tf.assert_no_changes();
    let before = state_inventory(&tf);
    assert_eq!(lab_inventory(&lab), before, "the lab holds what the state holds");
    assert_eq!(ceph_pool_size(&lab, "vm-disks"), Some(3), "vm-disks in real Ceph");
    let fsid = tf.outputs()["ceph_fsid"]["value"].clone();
    let ca = tf.outputs()["cluster_ca_pem"]["value"].clone();
    let fingerprints = tf.outputs()["node_fingerprints"]["value"].clone();

    // The disaster: every node off with a blank disk, pools and jobs gone.
    let wiped = lab.admin("POST", "/lab/wipe", Some(&json!({"store": "store-001"})));
    assert_eq!(wiped["peer_errors"], json!([]), "{wiped}");
    assert!(!ceph_pools(&lab).contains(&"vm-disks".to_string()), "the wipe removed the pool from Ceph");
    let bmcs: Vec<String> = lab.store(0)["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["bmc"]["endpoint"].as_str().map(str::to_string))
        .collect();
    wait_until("every BMC reports Off", Duration::from_secs(60), || bmcs.iter().all(|b| bmc_power(&lab, b) == "Off"));

    // The plan sees the dark store, says what apply will do, and does not fail on it.
    let plan = tf.run(&["plan", "-detailed-exitcode", "-no-color"]);
    assert_eq!(plan.code, 2, "the plan sees the wiped store:\n{}", plan.output());
    let text = plan.output();
    if let Some(log) = std::env::var_os("EDGE_TEST_TF_LOG") {
        let _ = std::fs::write(format!("{}.plan", log.to_string_lossy()), &text);
    }
    assert!(text.contains("The node is powered off") && text.contains("re-imaged"), "{text}");
    assert!(text.contains("ceph_fsid"), "pools are checked again on the rebuilt cluster:\n{text}");

    // The drill: the same apply brings the store back, in one go.
    tf.apply();
    tf.assert_no_changes();
    assert_eq!(ceph_pool_size(&lab, "vm-disks"), Some(3), "vm-disks back in real Ceph");
    assert_eq!(lab_inventory(&lab), before, "the same cluster members, pools and jobs as before the wipe");
    assert_ne!(tf.outputs()["ceph_fsid"]["value"], fsid, "the rebuilt store has a new Ceph cluster");
    // New machines, new certificates: a new cluster CA and new node certificates, trusted in the
    // same apply with nothing re-pinned (the pools and jobs reached the cluster through the new
    // CA). PVE's own view agrees with the state.
    let ca2 = tf.outputs()["cluster_ca_pem"]["value"].clone();
    assert_ne!(ca2, ca, "a new cluster CA");
    let fps2 = tf.outputs()["node_fingerprints"]["value"].clone();
    for (name, fp) in fps2.as_object().into_iter().flatten() {
        assert_ne!(&fingerprints[name], fp, "{name} presents a new certificate");
        assert_eq!(lab.admin("GET", &format!("/lab/nodes/{name}"), None)["tls_fingerprint"], *fp);
        let i = name.trim_start_matches("pve").parse::<usize>().expect("pveN") - 1;
        assert_eq!(lab.pve_root(i, "GET", &format!("/nodes/{name}/certificates/info"), &[])["data"][0]["pem"], ca2);
    }
    let snap = lab.admin("GET", "/lab/snapshot", None);
    for n in snap["stores"][0]["nodes"].as_array().into_iter().flatten() {
        assert_eq!(n["installed"], true, "{} re-imaged: {n}", n["name"]);
    }

    tf.destroy();
    assert!(!ceph_pools(&lab).contains(&"vm-disks".to_string()), "destroy removed the pool");
}

#[test]
fn the_store_converges_through_faults_and_a_killed_apply() {
    converges_through_faults_and_a_kill("91", "9.1");
}

#[test]
fn the_store_converges_through_faults_and_a_killed_apply_on_pve_8_4() {
    converges_through_faults_and_a_kill("127", "8.4");
}

fn converges_through_faults_and_a_kill(net: &str, pve: &str) {
    let lab = store::store_lab(net, pve);
    let keys = tempfile::tempdir().expect("temp dir");
    let tf = example_store(&lab, keys.path());
    // 10 % of PVE/PBS answers are 5xx, every answer is 50 ms late, 10 % of tasks fail.
    let faults = json!({"pattern": ".*", "error_rate": 0.1, "latency_ms": 50, "fail_tasks": 0.1, "seed": 11});
    // For the kill only: reading pools back takes 3 s more, so the provider is still working on
    // the pool it just created when the test sees it in Ceph (otherwise the apply could end
    // between two looks and there would be nothing to kill).
    let slow_pool_reads = json!({"pattern": "GET .*/ceph/pool", "latency_ms": 3000});
    lab.admin("POST", "/lab/faults", Some(&json!([faults, slow_pool_reads])));

    // Kill Terraform (SIGKILL: no chance to save state) once the pool exists in Ceph — created,
    // not yet in the state. An apply that an injected fault ends earlier is simply run again
    // (each node's converge is some 40 calls and tasks, so several applies fail first).
    let mut killed = false;
    for _ in 0..12 {
        let mut child = tf
            .command(&["apply", "-auto-approve", "-no-color"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start terraform apply");
        let mut ended = false;
        wait_until("the pool in Ceph, or the end of the apply", Duration::from_secs(600), || {
            ended = matches!(child.try_wait(), Ok(Some(_)));
            ended || ceph_pools(&lab).iter().any(|p| p == "vm-disks")
        });
        if !ended {
            assert!(
                !processes_in(tf.dir()).is_empty(),
                "Terraform and its providers run in the configuration's directory"
            );
            child.kill().expect("SIGKILL terraform");
            let _ = child.wait();
            killed = true;
            break;
        }
    }
    assert!(killed, "every apply ended (by injected faults) before the pool was created");
    lab.admin("DELETE", "/lab/faults", None);
    lab.admin("POST", "/lab/faults", Some(&faults));
    assert!(
        state_inventory(&tf).1.is_empty(),
        "the killed apply did not get to save the pool in the state (otherwise this tests nothing)"
    );
    // The provider notices its parent is gone and exits too: no process is left working in this
    // configuration's directory (Terraform starts its providers there).
    wait_until("no process left in the killed run's directory", Duration::from_secs(20), || {
        processes_in(tf.dir()).is_empty()
    });

    // Re-apply until it converges: injected failed tasks may fail an apply; each run must make
    // progress and none may duplicate anything.
    let mut last = String::new();
    let converged = (0..8).any(|_| {
        let r = tf.run(&["apply", "-auto-approve", "-no-color"]);
        last = r.output();
        r.ok()
    });
    assert!(converged, "no convergence after 8 applies under faults; last:\n{last}");
    lab.admin("DELETE", "/lab/faults", None);
    tf.assert_no_changes();
    let (members, pools, jobs) = state_inventory(&tf);
    assert_eq!(lab_inventory(&lab), (members.clone(), pools, jobs), "the lab has exactly what the state has");
    assert_eq!(members.len(), 3);
    let snap = lab.admin("GET", "/lab/snapshot", None);
    let clusters = snap["stores"][0]["clusters"]
        .as_array()
        .map(Vec::len)
        .or(snap["stores"][0]["clusters"].as_object().map(|m| m.len()));
    assert_eq!(clusters, Some(1), "one cluster, not two: {}", snap["stores"][0]["clusters"]);
    assert_eq!(ceph_pool_size(&lab, "vm-disks"), Some(3));
    tf.destroy();
}
