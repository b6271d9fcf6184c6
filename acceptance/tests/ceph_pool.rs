//! edge_ceph_pool through real Terraform against the edge lab with real Ceph (`--ceph`): one lab
//! for the whole binary, the cases run in order inside it (Ceph takes ~20 s to start).

use std::process::Command;

use edge_acceptance::{assert_same_except, json, Lab, Tf, Value};

const NET: &str = "71";

fn hcl(body: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{ edge = {{ source = \"edgeform/edge\" }} }}\n}}\nprovider \"edge\" {{}}\n{body}\n"
    )
}

fn pool_hcl(name: &str, size: u32, extra: &str) -> String {
    hcl(&format!(
        r#"
resource "edge_ceph_pool" "vm" {{
  node              = "pve1"
  name              = "{name}"
  size              = {size}
  min_size          = 1
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
    let p = ceph_pool(lab, name).unwrap_or_else(|| panic!("Ceph has no pool {name}"));
    assert_eq!(p["size"], size, "{p:#}");
    assert_eq!(p["min_size"], 1, "{p:#}");
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

#[test]
fn ceph_pool_against_real_ceph() {
    let lab = Lab::up(&["--net", NET, "--ceph"]);
    pve(&lab, "POST", "/nodes/pve1/ceph/init", &json!({}));

    // Create → empty plan → Ceph shows what was declared.
    let tf = tf_for(&lab, &pool_hcl("vmstore", 2, ""));
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    assert_ceph(&lab, "vmstore", 2);
    let st = tf.resource("edge_ceph_pool.vm");
    assert_eq!(st["type"], "replicated");
    assert!(st["id"].as_u64().is_some(), "pool number: {st:#}");

    // Change size in place.
    tf.write("main.tf", &pool_hcl("vmstore", 3, ""));
    let plan = tf.plan_output();
    assert!(plan.contains("update in-place") && plan.contains("size"), "{plan}");
    assert!(!plan.contains("forces replacement"), "{plan}");
    tf.apply();
    assert_ceph(&lab, "vmstore", 3);
    tf.assert_no_changes();

    // Drift behind Terraform's back shows as a diff and is repaired.
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "pool_size", "pool": "vmstore", "value": 2})));
    assert_eq!(ceph_pool(&lab, "vmstore").expect("pool")["size"], 2);
    let plan = tf.plan_output();
    assert!(plan.contains("~ size") && plan.contains("2 -> 3"), "{plan}");
    tf.apply();
    assert_ceph(&lab, "vmstore", 3);
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
    assert!(ceph_pool(&lab, "vmstore").is_none());
    let plan = tf.plan_output();
    assert!(plan.contains("will be created"), "{plan}");
    tf.apply();
    assert_ceph(&lab, "vmstore", 3);

    // A pool with data is not destroyed unless force_destroy is set.
    put_data(&lab, "vmstore", tf.dir());
    let out = tf.run(&["destroy", "-auto-approve", "-no-color"]);
    assert!(!out.ok(), "destroy of a pool with data must fail:\n{}", out.output());
    assert!(out.output().contains("holds data") && out.output().contains("force_destroy"), "{}", out.output());
    assert!(ceph_pool(&lab, "vmstore").is_some());
    tf.write("main.tf", &pool_hcl("vmstore", 3, "  force_destroy = true"));
    tf.apply();
    tf.destroy();
    assert!(ceph_pool(&lab, "vmstore").is_none(), "destroy removes the pool from Ceph");

    // Erasure coding: PVE makes <name>-data and <name>-metadata; destroy removes both.
    let ec = tf_for(
        &lab,
        &hcl(r#"
resource "edge_ceph_pool" "ec" {
  node = "pve1"
  name = "archive"
  pg_num = 16
  erasure_coding {
    k = 2
    m = 1
  }
}
"#),
    );
    ec.init();
    ec.apply();
    ec.assert_no_changes();
    assert!(ceph_pool(&lab, "archive-data").is_some() && ceph_pool(&lab, "archive-metadata").is_some());
    let plan = {
        ec.write(
            "main.tf",
            &std::fs::read_to_string(ec.dir().join("main.tf")).expect("main.tf").replace("m = 1", "m = 2"),
        );
        ec.plan_output()
    };
    assert!(plan.contains("forces replacement"), "erasure_coding changes replace the pool: {plan}");
    ec.destroy();
    assert!(ceph_pool(&lab, "archive-data").is_none() && ceph_pool(&lab, "archive-metadata").is_none());

    // Faults: 20 % 5xx and 200 ms latency on the pool and task endpoints; apply converges.
    lab.admin(
        "POST",
        "/lab/faults",
        Some(&json!({"pattern": "/ceph/pool|/tasks/", "error_rate": 0.2, "latency_ms": 200, "seed": 7})),
    );
    let faulty = tf_for(&lab, &pool_hcl("faulty", 2, ""));
    faulty.init();
    faulty.apply();
    faulty.assert_no_changes();
    lab.admin("DELETE", "/lab/faults", None);
    assert_ceph(&lab, "faulty", 2);

    // A failed task surfaces its log.
    lab.admin("POST", "/lab/faults", Some(&json!({"pattern": "PUT .*/ceph/pool/faulty", "fail_tasks": 1.0})));
    faulty.write("main.tf", &pool_hcl("faulty", 3, ""));
    let out = faulty.apply_fails();
    assert!(out.contains("Ceph pool update failed"), "{out}");
    assert!(out.contains("TASK ERROR") && out.contains("injected fault"), "the task log is in the diagnostic: {out}");
    lab.admin("DELETE", "/lab/faults", None);
    faulty.apply();
    assert_ceph(&lab, "faulty", 3);
    faulty.destroy();
    assert!(ceph_pool(&lab, "faulty").is_none());
}
