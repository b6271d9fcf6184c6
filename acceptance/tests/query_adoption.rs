//! The fleet adoption path through real Terraform 1.15: a store built by hand — a PVE cluster
//! formed, Ceph set up and pools made, backup and PBS jobs configured, all through the lab's
//! APIs the way an operator with 500 hand-built stores did it — is listed by `terraform query`
//! (identities as Terraform's own `-json` output shows them, compared with what the APIs and
//! real Ceph report), `-generate-config-out` writes configuration and import blocks, and the
//! plan that follows imports everything and changes nothing; after the apply the plan is empty,
//! and an adopted node (no image, no BMC) still converges a configuration change. Plus bad list
//! configuration (the diagnostic points at the attribute) and what Terraform 1.0.3 makes of
//! query files.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use edge_acceptance::{json, poll, terraform_legacy_bin, Lab, Run, Tf, Value};

const HEADER: &str =
    "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nprovider \"edge\" {}\n";

const QUERY: &str = r#"list "edge_ceph_pool" "pools" {
  provider = edge
  config {
    node = "pve1"
  }
}

list "edge_pbs_job" "jobs" {
  provider = edge
}

list "edge_proxmox_node" "nodes" {
  provider = edge
}
"#;

fn ceph(lab: &Lab, args: &[&str]) -> Value {
    let conf = lab.json["ceph"]["conf"].as_str().expect("lab.json ceph.conf (--ceph)").to_string();
    let out = Command::new("ceph").args(["-c", &conf]).args(args).args(["-f", "json"]).output().expect("ceph CLI");
    assert!(out.status.success(), "ceph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ceph JSON")
}

/// The store as a hand-built one is: a cluster of the three nodes, Ceph on each (monitor and
/// OSD), three pools, a PVE backup job to PBS, a PBS sync, verify and prune job and a gc
/// schedule — all through the APIs, none through Terraform.
fn build_store_by_hand(lab: &Lab) {
    lab.form_ceph_cluster_by_hand();
    for form in [
        &[("name", "vm-disks"), ("application", "rbd")][..],
        &[
            ("name", "scratch"),
            ("size", "2"),
            ("min_size", "1"),
            ("pg_num", "16"),
            ("pg_autoscale_mode", "off"),
            ("application", "rbd"),
        ],
        &[("name", "fs-data"), ("application", "cephfs"), ("pg_num", "8"), ("target_size", "1G")],
    ] {
        lab.pve_root_task(0, "/nodes/pve1/ceph/pool", form);
    }

    lab.api(
        "pve",
        "POST",
        "/cluster/backup",
        &json!({"id": "nightly", "schedule": "mon..fri 02:00", "storage": "pbs-store1", "vmid": "100,101",
                "mode": "snapshot", "prune-backups": "keep-daily=7,keep-last=3", "comment": "guests to PBS"}),
    );
    lab.api("pbs", "POST", "/config/datastore", &json!({"name": "archive", "path": "/mnt/datastore/archive"}));
    poll("datastore archive", Duration::from_secs(30), || {
        let ds = lab.api("pbs", "GET", "/config/datastore", &json!({}));
        ds["data"].as_array()?.iter().any(|d| d["name"] == "archive").then_some(())
    });
    lab.api(
        "pbs",
        "POST",
        "/config/sync",
        &json!({"id": "archive-sync", "schedule": "*-*-* 02:30", "store": "archive", "remote-store": "store1",
                "remove-vanished": true}),
    );
    lab.api(
        "pbs",
        "POST",
        "/config/verify",
        &json!({"id": "verify-weekly", "schedule": "sat 15:00", "store": "store1", "ignore-verified": true,
                "outdated-after": 30}),
    );
    lab.api(
        "pbs",
        "POST",
        "/config/prune",
        &json!({"id": "prune-daily", "schedule": "daily", "store": "store1", "keep-last": 3, "keep-daily": 7}),
    );
    lab.api("pbs", "PUT", "/config/datastore/store1", &json!({"gc-schedule": "sun 03:00"}));
}

fn tf_for(lab: &Lab, query: &str) -> Tf {
    let mut tf = Tf::new(HEADER);
    tf.write("store.tfquery.hcl", query);
    for (k, v) in lab.provider_env(0) {
        tf.env(&k, &v);
    }
    tf.init();
    tf
}

/// Terraform's `-json` output, one event a line.
fn events(r: &Run) -> Vec<Value> {
    r.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

type Identity = (String, Vec<(String, String)>);

fn identity(address: &str, id: &Value) -> Identity {
    let mut kv: Vec<(String, String)> = id
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    kv.sort();
    (address.to_string(), kv)
}

fn expected(address: &str, pairs: &[(&str, &str)]) -> Identity {
    identity(address, &Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
}

/// What the store holds, read from the APIs and real Ceph (not from the provider): every
/// identity `terraform query` must list.
fn store_as_the_apis_report_it(lab: &Lab) -> BTreeSet<Identity> {
    let mut want = BTreeSet::new();
    // Ceph's pools, less the manager's own (application mgr / mgr_devicehealth).
    let pools = ceph(lab, &["osd", "pool", "ls", "detail"]);
    let own = |p: &Value| {
        p["pool_name"].as_str().is_some_and(|n| n.starts_with('.'))
            || p["application_metadata"].as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("mgr")))
    };
    let all: Vec<&Value> = pools.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    assert!(all.iter().any(|p| own(p)), "Ceph made a pool of its own (the case left out): {pools}");
    for p in all.into_iter().filter(|p| !own(p)) {
        let name = p["pool_name"].as_str().unwrap_or_default();
        want.insert(expected("list.edge_ceph_pool.pools", &[("node", "pve1"), ("name", name)]));
    }
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v["data"].as_array().into_iter().flatten().filter_map(|j| j[key].as_str().map(String::from)).collect()
    };
    for id in ids(&lab.api("pve", "GET", "/cluster/backup", &json!({})), "id") {
        want.insert(expected("list.edge_pbs_job.jobs", &[("kind", "backup"), ("id", &id)]));
    }
    for kind in ["sync", "verify", "prune"] {
        for id in ids(&lab.api("pbs", "GET", &format!("/config/{kind}"), &json!({})), "id") {
            want.insert(expected("list.edge_pbs_job.jobs", &[("kind", kind), ("id", &id)]));
        }
    }
    let stores = lab.api("pbs", "GET", "/config/datastore", &json!({}));
    for d in stores["data"].as_array().into_iter().flatten().filter(|d| d["gc-schedule"].is_string()) {
        let name = d["name"].as_str().unwrap_or_default();
        want.insert(expected("list.edge_pbs_job.jobs", &[("kind", "gc"), ("id", name)]));
    }
    let status = lab.try_pve_root(0, "GET", "/cluster/status", &[]).expect("cluster status");
    for n in status["data"].as_array().into_iter().flatten().filter(|e| e["type"] == "node") {
        want.insert(expected("list.edge_proxmox_node.nodes", &[("name", n["name"].as_str().unwrap_or_default())]));
    }
    want
}

/// The whole adoption path on one hand-built store.
#[test]
fn a_hand_built_store_is_adopted_with_imports_and_nothing_else() {
    let lab = Lab::up(&["--net", "231", "--ceph"]);
    build_store_by_hand(&lab);
    let want = store_as_the_apis_report_it(&lab);
    assert_eq!(want.len(), 11, "3 pools, 5 jobs, 3 nodes: {want:#?}");
    let tf = tf_for(&lab, QUERY);

    // 1. `terraform query -json`: every object, with its identity, and nothing else.
    let r = tf.must(&["query", "-json", "-no-color"]);
    let ev = events(&r);
    let found: Vec<&Value> = ev.iter().filter(|e| e["type"] == "list_resource_found").collect();
    let got: BTreeSet<Identity> = found
        .iter()
        .map(|e| {
            identity(
                e["list_resource_found"]["address"].as_str().unwrap_or_default(),
                &e["list_resource_found"]["identity"],
            )
        })
        .collect();
    assert_eq!(got, want, "terraform query lists exactly what the APIs report:\n{}", r.stdout);
    assert_eq!(found.len(), want.len(), "no object listed twice");
    for e in &found {
        let f = &e["list_resource_found"];
        assert_eq!(f["identity_version"], 0, "{f}");
        assert!(f["display_name"].as_str().is_some_and(|d| !d.is_empty()), "{f}");
        assert_eq!(f["address"].as_str().map(|a| a.split('.').nth(1)), Some(f["resource_type"].as_str()), "{f}");
    }
    let completes: Vec<&Value> = ev.iter().filter(|e| e["type"] == "list_complete").collect();
    assert_eq!(completes.len(), 3, "{}", r.stdout);
    assert!(!ev.iter().any(|e| e["@level"] == "error" || e["type"] == "diagnostic"), "{}", r.stdout);

    // 2. Configuration and import blocks, written by Terraform.
    let r = tf.must(&["query", "-no-color", "-generate-config-out=generated.tf"]);
    let generated = std::fs::read_to_string(tf.dir().join("generated.tf")).expect("generated.tf");
    assert_eq!(generated.matches("\nresource \"edge_").count(), 11, "{}\n{generated}", r.output());
    assert_eq!(generated.matches("\nimport {").count(), 11, "{generated}");
    assert_eq!(generated.matches("  identity = {").count(), 11, "imports by identity:\n{generated}");
    assert!(!generated.contains("image {") && !generated.contains("bmc {"), "{generated}");

    // 3. The plan imports every object and changes none (Terraform's JSON UI and plan file).
    let r = tf.must(&["plan", "-json", "-no-color", "-out=adopt.plan"]);
    let ev = events(&r);
    let changes: Vec<&Value> =
        ev.iter().filter(|e| e["type"] == "planned_change" || e["type"] == "resource_drift").collect();
    assert_eq!(changes.len(), 11, "{}", r.stdout);
    for c in &changes {
        assert_eq!(c["type"], "planned_change", "no drift: {c}");
        assert_eq!(c["change"]["action"], "import", "{c}");
        assert!(c["change"]["importing"].is_object(), "{c}");
    }
    let summary = ev.iter().find(|e| e["type"] == "change_summary").expect("change summary");
    assert_eq!(summary["@message"], "Plan: 11 to import, 0 to add, 0 to change, 0 to destroy.", "{summary}");
    let show = tf.must(&["show", "-json", "-no-color", "adopt.plan"]);
    let plan: Value = serde_json::from_str(&show.stdout).expect("plan JSON");
    let rc = plan["resource_changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(rc.len(), 11, "{plan:#}");
    let mut imported = BTreeSet::new();
    for c in &rc {
        assert_eq!(c["change"]["actions"], json!(["no-op"]), "{c:#}");
        assert_eq!(c["change"]["before"], c["change"]["after"], "{c:#}");
        let ty = c["type"].as_str().unwrap_or_default();
        let list = match ty {
            "edge_ceph_pool" => "list.edge_ceph_pool.pools",
            "edge_pbs_job" => "list.edge_pbs_job.jobs",
            _ => "list.edge_proxmox_node.nodes",
        };
        imported.insert(identity(list, &c["change"]["importing"]["identity"]));
    }
    assert_eq!(imported, want, "the plan imports what was listed");
    assert!(plan["resource_drift"].as_array().is_none_or(|d| d.is_empty()), "{:#}", plan["resource_drift"]);

    // 4. Apply, then nothing to do.
    let r = tf.must(&["apply", "-no-color", "adopt.plan"]);
    assert!(r.stdout.contains("Resources: 11 imported, 0 added, 0 changed, 0 destroyed."), "{}", r.output());
    tf.assert_no_changes();
    let state = tf.show();
    let scratch = state["values"]["root_module"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["type"] == "edge_ceph_pool" && r["values"]["name"] == "scratch")
        .cloned()
        .expect("scratch in state");
    let live = ceph(&lab, &["osd", "pool", "ls", "detail"]);
    let live = live.as_array().into_iter().flatten().find(|p| p["pool_name"] == "scratch").cloned().expect("pool");
    assert_eq!(scratch["values"]["size"], live["size"], "{scratch:#}");
    assert_eq!(scratch["values"]["min_size"], live["min_size"], "{scratch:#}");
    assert_eq!(scratch["values"]["pg_num"], live["pg_num"], "{scratch:#}");

    // 5. An adopted node (no image, no BMC) is managed from now on: a change converges.
    let edited = retime(&generated, "pve2", "Europe/Berlin");
    tf.write("generated.tf", &edited);
    let plan = tf.plan_output();
    assert!(plan.contains("timezone") && plan.contains("-> \"Europe/Berlin\""), "{plan}");
    assert!(plan.contains("0 to add, 1 to change, 0 to destroy"), "{plan}");
    tf.apply();
    let time = lab.try_pve_root(1, "GET", "/nodes/pve2/time", &[]).expect("pve2 time");
    assert_eq!(time["data"]["timezone"], "Europe/Berlin", "{time}");
    tf.assert_no_changes();
}

/// `generated` with the `timezone` of node `name`'s resource block set to `tz`.
fn retime(generated: &str, name: &str, tz: &str) -> String {
    let blocks: Vec<&str> = generated.split("\nresource ").collect();
    let mut out = String::from(blocks[0]);
    let mut done = false;
    for b in &blocks[1..] {
        let mut b = b.to_string();
        let names_it = |l: &str| {
            let (k, v) = l.split_once('=').unwrap_or_default();
            k.trim() == "name" && v.trim() == format!("{name:?}")
        };
        if b.starts_with("\"edge_proxmox_node\"") && b.lines().any(names_it) {
            let line = b.lines().find(|l| l.trim_start().starts_with("timezone ")).expect("timezone line").to_string();
            b = b.replacen(&line, &format!("  timezone          = \"{tz}\""), 1);
            done = true;
        }
        out.push_str("\nresource ");
        out.push_str(&b);
    }
    assert!(done, "no resource for node {name} in:\n{generated}");
    out
}

/// Bad list configuration: refused before anything is listed, the diagnostic on the attribute
/// (Terraform shows its line); a node the cluster does not have is named with the ones it has.
#[test]
fn bad_list_configuration_points_at_the_attribute() {
    let lab = Lab::up(&["--net", "232"]);
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let cases: [(&str, &[&str]); 4] = [
        (
            "list \"edge_ceph_pool\" \"p\" {\n  provider = edge\n  config {\n    node        = \"pve1\"\n    application = \"nfs\"\n  }\n}\n",
            &["Error: Unknown pool application", "application = \"nfs\"", "use one of rbd, cephfs, rgw"],
        ),
        (
            "list \"edge_ceph_pool\" \"p\" {\n  provider = edge\n  config {\n    node = \"pve 1\"\n  }\n}\n",
            &["Error: Invalid node name", "node = \"pve 1\"", "e.g. \"pve1\""],
        ),
        (
            "list \"edge_pbs_job\" \"j\" {\n  provider = edge\n  config {\n    kinds = [\"sync\", \"snapshot\"]\n  }\n}\n",
            &["Error: Unknown job kind", "kinds = [\"sync\", \"snapshot\"]", "\"snapshot\": use one of backup, sync, verify, prune, gc"],
        ),
        (
            "list \"edge_ceph_pool\" \"p\" {\n  provider = edge\n  config {\n    node = \"pve9\"\n  }\n}\n",
            // The lab's nodes are in no cluster yet: the endpoint's node knows only itself.
            &["Error: No such node", "node = \"pve9\"", "(its nodes: pve1)"],
        ),
    ];
    for (query, wants) in cases {
        let tf = tf_for(&lab, query);
        let r = tf.run(&["query", "-no-color"]);
        let out = flat(&r.output());
        assert!(!r.ok(), "{out}");
        for w in wants {
            assert!(out.contains(w), "missing {w:?} in:\n{out}");
        }
        assert!(out.contains("on store.tfquery.hcl line"), "{out}");
        // The JSON diagnostic carries the attribute's range, not the list block's.
        let ev = events(&tf.run(&["query", "-json", "-no-color"]));
        let d = ev.iter().find(|e| e["type"] == "diagnostic").expect("diagnostic event");
        let snippet = d["diagnostic"]["snippet"]["code"].as_str().unwrap_or_default();
        assert!(!snippet.contains("list \""), "points below the list block: {d}");
        assert!(snippet.contains(wants[1].split(' ').next().unwrap_or_default()), "{d}");
    }
}

/// Terraform 1.0.3 knows no `terraform query`: it ignores `*.tfquery.hcl` files (validate and
/// plan pass as if they were not there), has no `query` command, and refuses a `list` block in
/// a `.tf` file by name.
#[test]
fn query_files_on_terraform_1_0_3() {
    let tf = Tf::with_terraform(HEADER, terraform_legacy_bin());
    tf.write("store.tfquery.hcl", QUERY);
    tf.init();
    let r = tf.must(&["validate", "-no-color"]);
    assert!(r.stdout.contains("Success! The configuration is valid."), "{}", r.output());
    let r = tf.run(&["plan", "-detailed-exitcode", "-no-color"]);
    assert_eq!(r.code, 0, "the query file is ignored:\n{}", r.output());
    assert!(r.output().contains("No changes."), "{}", r.output());
    let r = tf.run(&["query", "-no-color"]);
    assert!(!r.ok(), "{}", r.output());
    assert!(r.output().contains("Terraform has no command named \"query\"."), "{}", r.output());
    tf.write("list.tf", QUERY);
    let r = tf.run(&["validate", "-no-color"]);
    assert!(!r.ok(), "{}", r.output());
    assert!(r.output().contains("Blocks of type \"list\" are not expected here."), "{}", r.output());
}
