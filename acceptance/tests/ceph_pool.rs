//! edge_ceph_pool through real Terraform against the edge lab with real Ceph (`--ceph`): one lab
//! for the whole binary, the cases run in order inside it (Ceph takes ~20 s to start).

use std::process::Command;

use edge_acceptance::{assert_same_except, json, Lab, Tf, Value};

fn hcl(body: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{ edge = {{ source = \"edgeform/edge\" }} }}\n}}\nprovider \"edge\" {{}}\n{body}\n"
    )
}

fn pool_hcl(name: &str, size: u32, extra: &str) -> String {
    pool_hcl_min(name, size, 1, extra)
}

fn pool_hcl_min(name: &str, size: u32, min_size: u32, extra: &str) -> String {
    hcl(&format!(
        r#"
resource "edge_ceph_pool" "vm" {{
  node              = "pve1"
  name              = "{name}"
  size              = {size}
  min_size          = {min_size}
  pg_num            = 16
  pg_autoscale_mode = "off"
  application       = "rbd"
{extra}
}}
"#
    ))
}

fn tf_for(lab: &Lab, hcl: &str) -> Tf {
    let mut tf = Tf::new(hcl);
    for (k, v) in lab.provider_env(0) {
        tf.env(&k, &v);
    }
    tf
}

/// A PVE API call with curl, trusting the lab's CA (set-up steps no resource covers yet).
fn pve(lab: &Lab, method: &str, path: &str, body: &Value) -> Value {
    let store = lab.store(0);
    let url = format!("{}/api2/json{path}", store["pve"]["endpoint"].as_str().unwrap_or_default());
    let auth = format!("Authorization: PVEAPIToken={}", store["pve"]["api_token"].as_str().unwrap_or_default());
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(lab.dir.path().join("ca.pem"))
        .args(["-X", method, "-H", &auth, "-H", "Content-Type: application/json", "--data", &body.to_string(), &url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "{method} {path}: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// `pveceph init` and the first monitor: PVE cannot reach Ceph's pools before a monitor exists.
fn ceph_bootstrap(lab: &Lab) {
    pve(lab, "POST", "/nodes/pve1/ceph/init", &json!({}));
    let upid = pve(lab, "POST", "/nodes/pve1/ceph/mon/pve1", &json!({}))["data"].as_str().expect("UPID").to_string();
    let path = format!("/nodes/pve1/tasks/{}/status", upid.replace(':', "%3A").replace('!', "%21").replace('@', "%40"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut delay = std::time::Duration::from_millis(50);
    loop {
        let st = pve(lab, "GET", &path, &json!({}));
        if st["data"]["status"] == "stopped" {
            assert_eq!(st["data"]["exitstatus"], "OK", "mon create: {st}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "mon create did not finish");
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(500));
    }
}

/// What the lab's model knows of store 0 (its admin API), e.g. the PVE storages.
fn snapshot_store(lab: &Lab) -> Value {
    lab.admin("GET", "/lab/snapshot", None)["stores"][0].clone()
}

fn ceph_conf(lab: &Lab) -> String {
    lab.json["ceph"]["conf"].as_str().expect("lab.json ceph.conf (lab started with --ceph)").to_string()
}

/// What real Ceph says: `ceph osd pool ls detail -f json`.
fn ceph_pool(lab: &Lab, name: &str) -> Option<Value> {
    let out = Command::new("ceph")
        .args(["-c", &ceph_conf(lab), "osd", "pool", "ls", "detail", "-f", "json"])
        .output()
        .expect("ceph CLI");
    assert!(out.status.success(), "ceph osd pool ls: {}", String::from_utf8_lossy(&out.stderr));
    let pools: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ceph JSON");
    pools.into_iter().find(|p| p["pool_name"] == name)
}

fn assert_ceph(lab: &Lab, name: &str, size: u64) {
    assert_ceph_min(lab, name, size, 1);
}

fn assert_ceph_min(lab: &Lab, name: &str, size: u64, min_size: u64) {
    let p = ceph_pool(lab, name).unwrap_or_else(|| panic!("Ceph has no pool {name}"));
    assert_eq!(p["size"], size, "{p:#}");
    assert_eq!(p["min_size"], min_size, "{p:#}");
    assert_eq!(p["pg_num"], 16, "{p:#}");
    assert_eq!(p["pg_autoscale_mode"], "off", "{p:#}");
    assert!(p["application_metadata"].get("rbd").is_some(), "application rbd: {p:#}");
}

/// Writes an object into a pool with `rados` and waits until Ceph's usage statistics see it.
fn put_data(lab: &Lab, pool: &str, dir: &std::path::Path) {
    let file = dir.join("blob");
    std::fs::write(&file, vec![7u8; 256 * 1024]).expect("blob");
    let st = Command::new("rados").args(["-c", &ceph_conf(lab), "-p", pool, "put", "blob"]).arg(&file).status();
    assert!(st.map(|s| s.success()).unwrap_or(false), "rados put");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        let out = Command::new("ceph").args(["-c", &ceph_conf(lab), "df", "-f", "json"]).output().expect("ceph df");
        let df: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let stored = df["pools"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == pool))
            .and_then(|p| p["stats"]["stored"].as_u64())
            .unwrap_or(0);
        if stored > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "ceph df never showed data in {pool}");
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(std::time::Duration::from_secs(2));
    }
}

/// The lifecycle on the oldest profile: PVE 8.4 (whose verbose pool status reports another
/// pool's statistics).
#[test]
fn ceph_pool_on_pve_8_4() {
    let lab = Lab::up(&["--net", "100", "--ceph", "--pve", "8.4"]);
    lifecycle_against_real_ceph(&lab);
}

/// The lifecycle on the newest profile, plus injected faults.
#[test]
fn ceph_pool_on_pve_9_1() {
    let lab = Lab::up(&["--net", "71", "--ceph", "--pve", "9.1"]);
    lifecycle_against_real_ceph(&lab);
    faults_converge(&lab);
}

fn lifecycle_against_real_ceph(lab: &Lab) {
    ceph_bootstrap(lab);

    // Create → empty plan → Ceph shows what was declared.
    let tf = tf_for(lab, &pool_hcl("vmstore", 2, ""));
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    assert_ceph(lab, "vmstore", 2);
    let st = tf.resource("edge_ceph_pool.vm");
    assert_eq!(st["type"], "replicated");
    assert!(st["id"].as_u64().is_some(), "pool number: {st:#}");

    // Change size in place.
    tf.write("main.tf", &pool_hcl("vmstore", 3, ""));
    let plan = tf.plan_output();
    assert!(plan.contains("update in-place") && plan.contains("size"), "{plan}");
    assert!(!plan.contains("forces replacement"), "{plan}");
    tf.apply();
    assert_ceph(lab, "vmstore", 3);
    tf.assert_no_changes();

    // size and min_size together, where PVE's set_pool alone would end wrong: size first makes
    // Ceph reset min_size to 2, and PVE then skips a min_size equal to the old one (4/3 → 5/3
    // would end 5/2). The provider reads back and sets min_size again.
    tf.write("main.tf", &pool_hcl_min("vmstore", 4, 3, ""));
    tf.apply();
    assert_ceph_min(lab, "vmstore", 4, 3);
    tf.write("main.tf", &pool_hcl_min("vmstore", 5, 3, ""));
    tf.apply();
    assert_ceph_min(lab, "vmstore", 5, 3);
    tf.assert_no_changes();
    tf.write("main.tf", &pool_hcl("vmstore", 3, ""));
    tf.apply();
    assert_ceph(lab, "vmstore", 3);

    // Drift behind Terraform's back shows as a diff and is repaired.
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "pool_size", "pool": "vmstore", "value": 2})));
    assert_eq!(ceph_pool(lab, "vmstore").expect("pool")["size"], 2);
    let plan = tf.plan_output();
    assert!(plan.contains("~ size") && plan.contains("2 -> 3"), "{plan}");
    tf.apply();
    assert_ceph(lab, "vmstore", 3);
    tf.assert_no_changes();

    // Another application: Ceph refuses a second one (PVE sends no override), so it is a new pool.
    lab.admin(
        "POST",
        "/lab/drift",
        Some(&json!({"kind": "pool_field", "pool": "vmstore", "field": "application", "value": "rgw"})),
    );
    let plan = tf.plan_output();
    assert!(plan.contains("application") && plan.contains("forces replacement"), "{plan}");
    lab.admin(
        "POST",
        "/lab/drift",
        Some(&json!({"kind": "pool_field", "pool": "vmstore", "field": "application", "value": "rbd"})),
    );
    tf.assert_no_changes();

    // Import by NODE/NAME and by identity give the same state.
    let before = tf.resource("edge_ceph_pool.vm");
    tf.state_rm("edge_ceph_pool.vm");
    tf.import("edge_ceph_pool.vm", "pve1/vmstore");
    assert_same_except(&before, &tf.resource("edge_ceph_pool.vm"), &[], "import by id");
    tf.assert_no_changes();
    tf.state_rm("edge_ceph_pool.vm");
    tf.write(
        "import.tf",
        "import {\n  to       = edge_ceph_pool.vm\n  identity = { node = \"pve1\", name = \"vmstore\" }\n}\n",
    );
    tf.apply();
    assert_same_except(&before, &tf.resource("edge_ceph_pool.vm"), &[], "import by identity");
    std::fs::remove_file(tf.dir().join("import.tf")).expect("rm import.tf");
    tf.assert_no_changes();

    // A pool deleted by hand is planned again.
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "delete_pool", "pool": "vmstore"})));
    assert!(ceph_pool(lab, "vmstore").is_none());
    let plan = tf.plan_output();
    assert!(plan.contains("will be created"), "{plan}");
    tf.apply();
    assert_ceph(lab, "vmstore", 3);

    // A pool with data is not destroyed unless force_destroy is set — also while a pool with a
    // higher id exists, whose statistics PVE 8's verbose pool status reports instead.
    let newer = tf_for(lab, &pool_hcl("newer", 2, "").replace("\"vm\"", "\"newer\""));
    newer.init();
    newer.apply();
    put_data(lab, "vmstore", tf.dir());
    let out = tf.run(&["destroy", "-auto-approve", "-no-color"]);
    assert!(!out.ok(), "destroy of a pool with data must fail:\n{}", out.output());
    assert!(out.output().contains("holds data") && out.output().contains("force_destroy"), "{}", out.output());
    assert!(ceph_pool(lab, "vmstore").is_some());
    newer.destroy();
    tf.write("main.tf", &pool_hcl("vmstore", 3, "  force_destroy = true"));
    tf.apply();
    tf.destroy();
    assert!(ceph_pool(lab, "vmstore").is_none(), "destroy removes the pool from Ceph");

    // PVE's create is not atomic: a setting Ceph refuses leaves the pool. The diagnostic says
    // what is there, and the state records the pool as it is, tainted: Terraform replaces it
    // on the next apply (or removes it on destroy) instead of losing track of it.
    let broken = tf_for(lab, &pool_hcl("halfway", 2, "  crush_rule = \"no-such-rule\""));
    broken.init();
    let out = broken.apply_fails();
    assert!(out.contains("Could not set: crush_rule") && out.contains("left the pool behind"), "{out}");
    assert!(ceph_pool(lab, "halfway").is_some(), "the pool stays after the failed create");
    let show = broken.show();
    let recorded = show["values"]["root_module"]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["address"] == "edge_ceph_pool.vm"))
        .cloned()
        .unwrap_or_else(|| panic!("the pool the failed create made is in state:\n{show:#}"));
    assert_eq!(recorded["tainted"], true, "{recorded:#}");
    assert_eq!(recorded["values"]["crush_rule"], "replicated_rule", "recorded as Ceph has it: {recorded:#}");
    broken.write("main.tf", &pool_hcl("halfway", 2, ""));
    let plan = broken.plan_output();
    assert!(plan.contains("is tainted, so must be replaced"), "{plan}");
    broken.apply();
    broken.assert_no_changes();
    assert_ceph(lab, "halfway", 2);
    broken.destroy();
    assert!(ceph_pool(lab, "halfway").is_none());

    // Erasure coding as PVE makes it: profile pve_ec_<name>, <name>-data (size k+m) and
    // <name>-metadata (the configured size, 32 PGs), a storage <name> with data-pool; destroy
    // removes all of it.
    let ec = tf_for(
        lab,
        &hcl(r#"
resource "edge_ceph_pool" "ec" {
  node     = "pve1"
  name     = "archive"
  pg_num   = 16
  size     = 2
  min_size = 1
  erasure_coding {
    k              = 2
    m              = 1
    failure_domain = "osd"
  }
}
"#),
    );
    ec.init();
    ec.apply();
    ec.assert_no_changes();
    let data = ceph_pool(lab, "archive-data").expect("data pool");
    let meta = ceph_pool(lab, "archive-metadata").expect("metadata pool");
    assert_eq!(
        (data["size"].as_u64(), data["erasure_code_profile"].as_str()),
        (Some(3), Some("pve_ec_archive")),
        "{data:#}"
    );
    assert_eq!((meta["size"].as_u64(), meta["pg_num"].as_u64()), (Some(2), Some(32)), "{meta:#}");
    let storage = &snapshot_store(lab)["storages"]["archive"]["config"];
    assert_eq!(
        (storage["pool"].as_str(), storage["data-pool"].as_str()),
        (Some("archive-metadata"), Some("archive-data")),
        "{storage:#}"
    );
    let plan = {
        ec.write(
            "main.tf",
            &std::fs::read_to_string(ec.dir().join("main.tf"))
                .expect("main.tf")
                .replace("m              = 1", "m              = 2"),
        );
        ec.plan_output()
    };
    assert!(plan.contains("forces replacement"), "erasure_coding changes replace the pool: {plan}");
    ec.destroy();
    assert!(ceph_pool(lab, "archive-data").is_none() && ceph_pool(lab, "archive-metadata").is_none());
    assert!(snapshot_store(lab)["storages"].get("archive").is_none(), "the storage goes too");
}

fn faults_converge(lab: &Lab) {
    // Faults: 20 % 5xx and 200 ms latency on the pool and task endpoints; apply converges.
    lab.admin(
        "POST",
        "/lab/faults",
        Some(&json!({"pattern": "/ceph/pool|/tasks/", "error_rate": 0.2, "latency_ms": 200, "seed": 7})),
    );
    let faulty = tf_for(lab, &pool_hcl("faulty", 2, ""));
    faulty.init();
    faulty.apply();
    faulty.assert_no_changes();
    lab.admin("DELETE", "/lab/faults", None);
    assert_ceph(lab, "faulty", 2);

    // A failed task surfaces its log.
    lab.admin("POST", "/lab/faults", Some(&json!({"pattern": "PUT .*/ceph/pool/faulty", "fail_tasks": 1.0})));
    faulty.write("main.tf", &pool_hcl("faulty", 3, ""));
    let out = faulty.apply_fails();
    assert!(out.contains("Ceph pool update failed"), "{out}");
    assert!(out.contains("TASK ERROR") && out.contains("injected fault"), "the task log is in the diagnostic: {out}");
    lab.admin("DELETE", "/lab/faults", None);
    faulty.apply();
    assert_ceph(lab, "faulty", 3);
    faulty.destroy();
    assert!(ceph_pool(lab, "faulty").is_none());
}
