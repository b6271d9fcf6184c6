//! edge_pbs_job through real Terraform against the edge lab (schema validation on): every kind
//! (backup, sync, verify, prune, gc) is created, updated, drifted, imported and destroyed, then
//! the whole chain is applied again under injected faults.

use edge_acceptance::{assert_same_except, json, Lab, Tf, Value};

const NET: &str = "72";

const HEAD: &str = r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
provider "edge" {}
"#;

/// The chain; `v` switches the settings that the update step changes.
fn chain(v: u32) -> String {
    let (sched, keep, comment, depth) = if v == 1 {
        ("mon..fri 02:00", "3", "guests to PBS", "")
    } else {
        ("*-*-* 01:15", "5", "guests to PBS, v2", "    max_depth = 2\n")
    };
    let mut s = HEAD.to_string();
    s.push_str(&format!(
        r#"
resource "edge_pbs_job" "backup" {{
  id       = "nightly"
  schedule = "{sched}"
  comment  = "{comment}"
  backup {{
    storage           = "pbs-store1"
    vmids             = [100, 101]
    mode              = "snapshot"
    prune_backups     = {{ keep_daily = 7, keep_last = {keep} }}
    repeat_missed     = true
    notification_mode = "auto"
  }}
}}

resource "edge_pbs_job" "sync" {{
  id       = "archive-sync"
  schedule = "*-*-* 02:30"
  comment  = "{comment}"
  sync {{
    store           = "archive"
    remote_store    = "store1"
    remove_vanished = true
    group_filter    = ["type:vm"]
    transfer_last   = {keep}
    rate_in         = "10MiB"
  }}
}}

resource "edge_pbs_job" "verify" {{
  id       = "verify-monthly"
  schedule = "sat *-1..7 15:00"
  verify {{
    store           = "store1"
    ignore_verified = true
    outdated_after  = {keep}0
{depth}  }}
}}

resource "edge_pbs_job" "prune" {{
  id       = "prune-daily"
  schedule = "daily"
  disable  = {disable}
  prune {{
    store      = "store1"
    keep_last  = {keep}
    keep_daily = 7
  }}
}}

resource "edge_pbs_job" "gc" {{
  id       = "store1"
  schedule = "{gc}"
  gc {{}}
}}
"#,
        disable = v != 1,
        gc = if v == 1 { "sun 03:00" } else { "daily" },
    ));
    s
}

fn tf_for(lab: &Lab, hcl: &str) -> Tf {
    let mut tf = Tf::new(hcl);
    for (k, v) in lab.provider_env(0) {
        tf.env(&k, &v);
    }
    tf
}

/// The next plan shows all of `expected`; applying it leaves nothing to change.
fn plan_then_converge(tf: &Tf, expected: &[&str]) {
    let plan = tf.plan_output();
    assert!(expected.iter().all(|e| plan.contains(e)), "expected {expected:?} in:\n{plan}");
    tf.apply();
    tf.assert_no_changes();
}

/// A remote on the lab's PBS (`/config/remote`), which the provider does not manage.
fn add_remote(lab: &Lab, name: &str) {
    lab.api(
        "pbs",
        "POST",
        "/config/remote",
        &json!({"name": name, "host": "10.9.0.1", "auth-id": "sync@pbs", "password": "pw"}),
    );
}

fn snapshot(lab: &Lab) -> Value {
    lab.admin("GET", "/lab/snapshot", None)["stores"][0].clone()
}

const ADDRS: [(&str, &str); 5] = [
    ("edge_pbs_job.backup", "backup/nightly"),
    ("edge_pbs_job.sync", "sync/archive-sync"),
    ("edge_pbs_job.verify", "verify/verify-monthly"),
    ("edge_pbs_job.prune", "prune/prune-daily"),
    ("edge_pbs_job.gc", "gc/store1"),
];

#[test]
fn every_kind_lifecycle() {
    let lab = Lab::up(&["--net", NET]);
    assert_eq!(lab.json["schema_validation"], true, "the lab must validate requests against the PVE/PBS schema");
    let pbs = lab.store(0)["pbs"].clone();
    // What the chain needs around it: a second datastore, and the PVE storage of type pbs.
    lab.api("pbs", "POST", "/config/datastore", &json!({"name": "archive", "path": "/mnt/datastore/archive"}));
    let token = pbs["api_token"].as_str().unwrap_or_default();
    let (user, secret) = token.rsplit_once(':').unwrap_or_default();
    lab.api(
        "pve",
        "POST",
        "/storage",
        &json!({"storage": "pbs-store1", "type": "pbs", "server": pbs["address"], "datastore": "store1",
                "username": user, "password": secret, "fingerprint": pbs["tls_fingerprint"], "content": "backup"}),
    );

    // Create.
    let tf = tf_for(&lab, &chain(1));
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    let snap = snapshot(&lab);
    let backup = &snap["backup_jobs"]["nightly"]["config"];
    assert_eq!(backup["schedule"], "mon..fri 02:00", "{snap:#}");
    assert_eq!(backup["storage"], "pbs-store1");
    assert_eq!(backup["prune-backups"], "keep-daily=7,keep-last=3");
    assert_eq!(snap["pbs"]["sync_jobs"]["archive-sync"]["remote-store"], "store1", "{snap:#}");
    assert_eq!(snap["pbs"]["verify_jobs"]["verify-monthly"]["schedule"], "sat *-1..7 15:00");
    assert_eq!(snap["pbs"]["prune_jobs"]["prune-daily"]["keep-last"], 3);
    assert_eq!(snap["pbs"]["datastores"]["store1"]["gc-schedule"], "sun 03:00");
    for (addr, _) in ADDRS {
        assert_eq!(tf.resource(addr)["kind"], addr.trim_start_matches("edge_pbs_job."));
    }

    // Update in place.
    tf.write("main.tf", &chain(2));
    let plan = tf.plan_output();
    assert!(plan.contains("0 to add, 5 to change, 0 to destroy"), "{plan}");
    tf.apply();
    tf.assert_no_changes();
    let snap = snapshot(&lab);
    assert_eq!(snap["backup_jobs"]["nightly"]["config"]["prune-backups"], "keep-daily=7,keep-last=5");
    assert_eq!(snap["pbs"]["sync_jobs"]["archive-sync"]["transfer-last"], 5);
    assert_eq!(snap["pbs"]["verify_jobs"]["verify-monthly"]["max-depth"], 2);
    let disabled = &snap["pbs"]["prune_jobs"]["prune-daily"]["disable"];
    assert!(*disabled == json!(true) || *disabled == json!(1), "prune disable: {disabled}");
    assert_eq!(snap["pbs"]["datastores"]["store1"]["gc-schedule"], "daily");

    // Drift behind Terraform's back: every kind shows a diff, apply repairs it.
    lab.admin(
        "POST",
        "/lab/drift",
        Some(&json!({"kind": "backup_job_field", "id": "nightly", "field": "schedule", "value": "weekly"})),
    );
    for (coll, id) in [("sync", "archive-sync"), ("verify", "verify-monthly"), ("prune", "prune-daily")] {
        lab.admin(
            "POST",
            "/lab/drift",
            Some(&json!({"kind": "pbs_job_field", "job_type": coll, "id": id, "field": "schedule", "value": "weekly"})),
        );
    }
    lab.api("pbs", "PUT", "/config/datastore/store1", &json!({"gc-schedule": "weekly"}));
    let plan = tf.plan_output();
    assert!(plan.contains("0 to add, 5 to change, 0 to destroy"), "{plan}");
    assert!(plan.contains("\"weekly\" -> \"*-*-* 01:15\""), "{plan}");
    tf.apply();
    tf.assert_no_changes();

    // A job deleted by hand is created again.
    lab.admin(
        "POST",
        "/lab/drift",
        Some(&json!({"kind": "delete_pbs_job", "job_type": "verify", "id": "verify-monthly"})),
    );
    let plan = tf.plan_output();
    assert!(plan.contains("1 to add, 0 to change, 0 to destroy"), "{plan}");
    tf.apply();
    tf.assert_no_changes();

    // Import by KIND/ID gives the same state.
    for (addr, id) in ADDRS {
        let before = tf.resource(addr);
        tf.state_rm(addr);
        tf.import(addr, id);
        assert_same_except(&before, &tf.resource(addr), &[], addr);
    }
    tf.assert_no_changes();

    // Destroy removes every job; the gc schedule is taken off the datastore.
    tf.destroy();
    let snap = snapshot(&lab);
    assert!(snap["backup_jobs"].get("nightly").is_none(), "{snap:#}");
    for coll in ["sync_jobs", "verify_jobs", "prune_jobs"] {
        assert!(snap["pbs"][coll].as_object().is_none_or(|o| o.is_empty()), "{coll}: {snap:#}");
    }
    assert!(snap["pbs"]["datastores"]["store1"].get("gc-schedule").is_none(), "{snap:#}");

    // Faults: 20 % 5xx and 200 ms latency on every endpoint the jobs use; apply converges.
    lab.admin(
        "POST",
        "/lab/faults",
        Some(&json!({"pattern": "/config/|/cluster/backup", "error_rate": 0.2, "latency_ms": 200, "seed": 11})),
    );
    tf.write("main.tf", &chain(1));
    tf.apply();
    tf.assert_no_changes();
    tf.destroy();
    lab.admin("DELETE", "/lab/faults", None);
    let calls = lab.admin("GET", "/lab/calls", None);
    assert!(calls["total"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn import_by_identity_and_refusals() {
    let lab = Lab::up(&["--net", "73"]);
    let job = |keep: u32| {
        format!(
            "{HEAD}\nresource \"edge_pbs_job\" \"p\" {{\n  id = \"keep\"\n  schedule = \"daily\"\n  prune {{\n    store = \"store1\"\n    keep_last = {keep}\n  }}\n}}\n"
        )
    };
    let tf = tf_for(&lab, &job(2));
    tf.init();
    // A plan that has nothing to read makes no API call: neither Terraform's validation-only
    // provider process nor configure opens a connection (clients connect on first use).
    lab.admin("DELETE", "/lab/calls", None);
    assert_eq!(tf.plan_code(), 2, "a job to create");
    let calls = lab.admin("GET", "/lab/calls", None);
    assert_eq!(calls["total"].as_u64(), Some(0), "{calls:#}");
    tf.apply();
    let before = tf.resource("edge_pbs_job.p");
    tf.state_rm("edge_pbs_job.p");
    tf.write(
        "import.tf",
        "import {\n  to       = edge_pbs_job.p\n  identity = { kind = \"prune\", id = \"keep\" }\n}\n",
    );
    tf.apply();
    assert_same_except(&before, &tf.resource("edge_pbs_job.p"), &[], "import by identity");
    std::fs::remove_file(tf.dir().join("import.tf")).expect("rm import.tf");
    tf.assert_no_changes();

    // A job exactly as planned is what an apply killed before saving its state left behind:
    // the next apply adopts it (nothing duplicated, nothing orphaned).
    tf.state_rm("edge_pbs_job.p");
    tf.apply();
    tf.assert_no_changes();
    // A job with other settings is somebody else's: create points at import instead.
    tf.state_rm("edge_pbs_job.p");
    tf.write("main.tf", &job(3));
    let out = tf.apply_fails();
    assert!(out.contains("already exists") && out.contains("prune/keep"), "{out}");
    tf.write("main.tf", &job(2));

    // TLS: a wrong pin is refused and says what the server presented; the lab CA works too.
    let job = "\nresource \"edge_pbs_job\" \"v\" {\n  id = \"tls\"\n  schedule = \"daily\"\n  verify {\n    store = \"store1\"\n  }\n}\n";
    let wrong = ["AB"; 32].join(":");
    let pinned = tf_for(
        &lab,
        &format!("{HEAD}{job}").replace(
            "provider \"edge\" {}",
            &format!("provider \"edge\" {{\n  pbs = {{ tls_fingerprint = \"{wrong}\" }}\n}}"),
        ),
    );
    pinned.init();
    let out = pinned.apply_fails();
    assert!(out.contains("fingerprint mismatch"), "{out}");
    let presented = lab.store(0)["pbs"]["tls_fingerprint"].as_str().unwrap_or("?").to_uppercase();
    assert!(out.to_uppercase().contains(&presented), "names the presented fingerprint: {out}");
    let ca = lab.dir.path().join("ca.pem").display().to_string();
    let mut by_ca = tf_for(
        &lab,
        &format!("{HEAD}{job}").replace(
            "provider \"edge\" {}",
            &format!("provider \"edge\" {{\n  pbs = {{ ca_pem = file(\"{ca}\") }}\n}}"),
        ),
    );
    by_ca.env("EDGE_PBS_TLS_FINGERPRINT", "");
    by_ca.init();
    by_ca.apply();
    by_ca.assert_no_changes();
    by_ca.destroy();

    // A gc job for a datastore PBS does not have.
    let bad = tf_for(
        &lab,
        &format!(
            "{HEAD}\nresource \"edge_pbs_job\" \"g\" {{\n  id = \"nostore\"\n  schedule = \"daily\"\n  gc {{}}\n}}\n"
        ),
    );
    bad.init();
    let out = bad.apply_fails();
    assert!(out.contains("No such datastore") && out.contains("gc {}"), "{out}");
}

/// The PBS kinds on the oldest PBS profile (3.2.4: no sync directions, pull-only lists), where
/// they differ from the newest: every PBS kind's lifecycle, an explicit `pull` that 3.2 must not
/// be sent, and push refused at plan time (or, when the value is only known at apply, before
/// anything changes).
#[test]
fn pbs_kinds_on_pbs_3_2() {
    let lab = Lab::up(&["--net", "98", "--pbs", "3.2"]);
    add_remote(&lab, "central");
    let chain = |sched: &str| {
        format!(
            r#"{HEAD}
resource "edge_pbs_job" "pull" {{
  id       = "pull-central"
  schedule = "{sched}"
  comment  = "from central"
  sync {{
    store           = "store1"
    remote          = "central"
    remote_store    = "edge-001"
    remove_vanished = true
    group_filter    = ["type:vm"]
    max_depth       = 3
  }}
}}

resource "edge_pbs_job" "local" {{
  id       = "local-copy"
  schedule = "daily"
  sync {{
    store          = "archive"
    remote_store   = "store1"
    sync_direction = "pull"
  }}
}}

resource "edge_pbs_job" "verify" {{
  id       = "verify-weekly"
  schedule = "{sched}"
  verify {{
    store           = "store1"
    ignore_verified = true
    outdated_after  = 30
  }}
}}

resource "edge_pbs_job" "prune" {{
  id       = "prune-daily"
  schedule = "{sched}"
  prune {{
    store      = "store1"
    keep_last  = 3
    keep_daily = 7
  }}
}}

resource "edge_pbs_job" "gc" {{
  id       = "store1"
  schedule = "{sched}"
  gc {{}}
}}
"#
        )
    };
    let tf = tf_for(&lab, &chain("sat 02:00"));
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    let pbs = &snapshot(&lab)["pbs"];
    let pull = &pbs["sync_jobs"]["pull-central"];
    assert_eq!(
        (&pull["remote"], &pull["max-depth"], &pull["remove-vanished"]),
        (&json!("central"), &json!(3), &json!(true)),
        "{pbs:#}"
    );
    // 3.2.4 knows no directions: nothing was sent for the explicit pull either.
    assert!(
        pull.get("sync-direction").is_none() && pbs["sync_jobs"]["local-copy"].get("sync-direction").is_none(),
        "{pbs:#}"
    );
    assert_eq!(pbs["datastores"]["store1"]["gc-schedule"], "sat 02:00");

    // Drift on every kind is repaired; a job deleted by hand (PBS 3.2 answers its GET with
    // 400) is created again.
    for (coll, id, field) in [
        ("sync", "pull-central", "schedule"),
        ("verify", "verify-weekly", "schedule"),
        ("prune", "prune-daily", "schedule"),
        ("datastore", "store1", "gc-schedule"),
    ] {
        lab.admin(
            "POST",
            "/lab/drift",
            Some(&json!({"kind": "pbs_job_field", "job_type": coll, "id": id, "field": field, "value": "weekly"})),
        );
    }
    plan_then_converge(&tf, &["0 to add, 4 to change, 0 to destroy"]);
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "delete_pbs_job", "job_type": "sync", "id": "pull-central"})));
    plan_then_converge(&tf, &["1 to add, 0 to change, 0 to destroy"]);

    // Import reproduces the state (the explicit pull is not on the PBS to read back: see the
    // docs, "Proxmox versions").
    for (addr, id) in [
        ("edge_pbs_job.pull", "sync/pull-central"),
        ("edge_pbs_job.verify", "verify/verify-weekly"),
        ("edge_pbs_job.prune", "prune/prune-daily"),
        ("edge_pbs_job.gc", "gc/store1"),
    ] {
        let before = tf.resource(addr);
        tf.state_rm(addr);
        tf.import(addr, id);
        assert_same_except(&before, &tf.resource(addr), &[], addr);
    }
    tf.assert_no_changes();

    // Push needs PBS 3.3: refused at plan, on the attribute, naming both versions.
    let push = format!(
        "{HEAD}\nresource \"edge_pbs_job\" \"push\" {{\n  id = \"push-central\"\n  schedule = \"daily\"\n  sync {{\n    store = \"store1\"\n    remote = \"central\"\n    remote_store = \"edge-001\"\n    sync_direction = \"push\"\n  }}\n}}\n"
    );
    let refused = tf_for(&lab, &push);
    refused.init();
    let r = refused.run(&["plan", "-no-color"]);
    let out = r.output();
    assert!(!r.ok(), "plan must fail:\n{out}");
    assert!(out.contains("sync_direction = \"push\"") && out.contains("3.3.0") && out.contains("3.2.4"), "{out}");
    assert!(out.contains("Push sync needs a newer PBS"), "{out}");
    // Known only at apply: refused there, before anything is created.
    let late = push.replace("sync_direction = \"push\"", "sync_direction = terraform_data.direction.output")
        + "\nresource \"terraform_data\" \"direction\" {\n  input = \"push\"\n}\n";
    refused.write("main.tf", &late);
    let out = refused.apply_fails();
    assert!(out.contains("Push sync needs a newer PBS") && out.contains("3.2.4"), "{out}");
    assert!(snapshot(&lab)["pbs"]["sync_jobs"].get("push-central").is_none(), "nothing created");
    // (A destroy would plan the push job again and be refused; drop it from the configuration.)
    refused.write("main.tf", HEAD);
    refused.apply();

    // Destroy leaves nothing behind.
    tf.destroy();
    let pbs = &snapshot(&lab)["pbs"];
    for coll in ["sync_jobs", "verify_jobs", "prune_jobs"] {
        assert!(pbs[coll].as_object().is_none_or(|o| o.is_empty()), "{coll}: {pbs:#}");
    }
    assert!(pbs["datastores"]["store1"].get("gc-schedule").is_none(), "{pbs:#}");
}

/// Push sync on the newest PBS profile (4.0): PBS 3.3+ lists push jobs only when asked, so a
/// push job deleted by hand must still read as gone, and import must find it.
#[test]
fn push_sync_on_pbs_4_0() {
    let lab = Lab::up(&["--net", "99", "--pbs", "4.0"]);
    add_remote(&lab, "central");
    let hcl = |sched: &str| {
        format!(
            "{HEAD}\nresource \"edge_pbs_job\" \"push\" {{\n  id = \"push-central\"\n  schedule = \"{sched}\"\n  sync {{\n    store = \"store1\"\n    remote = \"central\"\n    remote_store = \"edge-001\"\n    sync_direction = \"push\"\n    remove_vanished = true\n  }}\n}}\n"
        )
    };
    let tf = tf_for(&lab, &hcl("daily"));
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    assert_eq!(snapshot(&lab)["pbs"]["sync_jobs"]["push-central"]["sync-direction"], "push");
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "pbs_job_field", "job_type": "sync", "id": "push-central", "field": "schedule", "value": "weekly"})));
    plan_then_converge(&tf, &["0 to add, 1 to change, 0 to destroy", "\"weekly\" -> \"daily\""]);
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "delete_pbs_job", "job_type": "sync", "id": "push-central"})));
    plan_then_converge(&tf, &["1 to add, 0 to change, 0 to destroy"]);
    let before = tf.resource("edge_pbs_job.push");
    tf.state_rm("edge_pbs_job.push");
    tf.import("edge_pbs_job.push", "sync/push-central");
    assert_same_except(&before, &tf.resource("edge_pbs_job.push"), &[], "import of a push job");
    tf.assert_no_changes();
    tf.destroy();
    let pbs = &snapshot(&lab)["pbs"];
    assert!(pbs["sync_jobs"].as_object().is_none_or(|o| o.is_empty()), "{pbs:#}");
}
