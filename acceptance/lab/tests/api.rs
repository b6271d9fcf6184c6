//! The lab's PVE/PBS APIs through real HTTPS, started with the real binary.

mod common;

use common::{enc, TestLab};
use serde_json::{json, Value};

#[test]
fn schema_rejections_have_pve_error_shape() {
    let lab = TestLab::up(60, &[]);
    assert_eq!(lab.json["schema_validation"], true, "schema files must be found for this test");
    lab.ceph_bootstrap(0);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("name", "p"), ("application", "nfs")],
            "application",
            "value 'nfs' does not have a value in the enumeration 'rbd, cephfs, rgw'",
        ),
        (&[("name", "p"), ("size", "9")], "size", "value must have a maximum value of 7"),
        (&[("name", "p"), ("min_size", "0")], "min_size", "value must have a minimum value of 1"),
        (&[("name", "p"), ("pg_num", "many")], "pg_num", "type check ('integer') failed - got 'many'"),
        (
            &[("name", "p"), ("bogus", "1")],
            "bogus",
            "property is not defined in schema and the schema does not allow additional properties",
        ),
        (&[("name", "a/b")], "name", "value does not match the regex pattern"),
        (&[("size", "3")], "name", "property is missing and it is not optional"),
        (&[("name", "p"), ("add_storages", "maybe")], "add_storages", "type check ('boolean') failed - got 'maybe'"),
        (&[("name", "p"), ("erasure-coding", "k=2")], "erasure-coding", "m: property is missing"),
    ];
    for (form, param, msg) in cases {
        let (code, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", form);
        assert_eq!(code, 400, "{form:?} -> {v}");
        assert_eq!(v["data"], Value::Null);
        let got = v["errors"][param].as_str().unwrap_or_else(|| panic!("{form:?}: no error for {param}: {v}"));
        assert!(got.contains(msg), "{param}: '{got}' lacks '{msg}'");
        // pve-http-server ≥ 5.2.0: data, errors and the message (Formatter/Standard.pm).
        assert_eq!(v["message"], "Parameter verification failed.\n", "{v}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(3), "exactly data+errors+message: {v}");
    }
    // Path params count: an invalid node name is rejected by its format.
    let (code, v) = lab.pve(0, "GET", "/nodes/bad_node/status", &[]);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["errors"]["node"], "value does not look like a valid node name");
    // Formats: configid and calendar events.
    let (code, v) = lab.pve(0, "POST", "/cluster/backup", &[("id", "1bad"), ("all", "1")]);
    assert_eq!((code, v["errors"]["id"].as_str()), (400, Some("invalid configuration ID '1bad'")));
    // Boolean 0/1 coercion is accepted; good request passes.
    let (code, v) =
        lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "good"), ("add_storages", "0"), ("size", "3")]);
    assert_eq!(code, 200, "{v}");
    // PBS: its schema is enforced too, and refusals are its text (tests/fidelity_pbs.rs).
    let (code, v) = lab.pbs("POST", "/config/verify", &[("id", "x"), ("store", "store1")]);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v, "parameter verification failed - 'id': value must be at least 3 characters long");
}

#[test]
fn auth_ticket_csrf_tokens_and_401_403() {
    let lab = TestLab::up(61, &[]);
    let ep = lab.node_ep(0, 0);
    let pw = lab.store(0)["pve"]["root_password"].as_str().unwrap().to_string();
    // No credentials.
    let r = lab.client.get(format!("{ep}/api2/json/nodes")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Wrong password.
    let r = lab
        .client
        .post(format!("{ep}/api2/json/access/ticket"))
        .form(&[("username", "root@pam"), ("password", "nope")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Ticket login.
    let r = lab
        .client
        .post(format!("{ep}/api2/json/access/ticket"))
        .form(&[("username", "root@pam"), ("password", pw.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    let ticket = v["data"]["ticket"].as_str().unwrap().to_string();
    let csrf = v["data"]["CSRFPreventionToken"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("PVE:root@pam:"), "{ticket}");
    let cookie = format!("PVEAuthCookie={}", enc(&ticket));
    let r = lab.client.get(format!("{ep}/api2/json/nodes")).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Write without CSRF token: 401; with: 200.
    let r = lab
        .client
        .put(format!("{ep}/api2/json/nodes/pve1/dns"))
        .header("Cookie", &cookie)
        .form(&[("search", "lab"), ("dns1", "1.1.1.1")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = lab
        .client
        .put(format!("{ep}/api2/json/nodes/pve1/dns"))
        .header("Cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .form(&[("search", "lab"), ("dns1", "1.1.1.1")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Bad token: 401; read-only token: 403 on writes, 200 on reads.
    let (c, _) = lab.call(&format!("{ep}/api2/json/nodes"), "PVEAPIToken=root@pam!edge=wrong", "GET", &[]);
    assert_eq!(c, 401);
    let audit = format!("PVEAPIToken={}", lab.store(0)["pve"]["audit_token"].as_str().unwrap());
    assert_eq!(lab.call(&format!("{ep}/api2/json/nodes"), &audit, "GET", &[]).0, 200);
    assert_eq!(lab.call(&format!("{ep}/api2/json/nodes/pve1/dns"), &audit, "PUT", &[("search", "x")]).0, 403);
    // PBS: ticket + token (colon separator).
    let pbs = lab.store(0)["pbs"]["endpoint"].as_str().unwrap().to_string();
    let r = lab
        .client
        .post(format!("{pbs}/api2/json/access/ticket"))
        .form(&[("username", "root@pam"), ("password", pw.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert!(v["data"]["ticket"].as_str().unwrap().starts_with("PBS:root@pam:"));
    assert_eq!(lab.pbs("GET", "/config/datastore", &[]).0, 200);
    assert_eq!(
        lab.call(&format!("{pbs}/api2/json/config/datastore"), "PBSAPIToken=root@pam!edge:nope", "GET", &[]).0,
        401
    );
    // The fingerprint in lab.json is the served certificate's.
    let fp = lab.store(0)["nodes"][0]["tls_fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 32 * 3 - 1);
    let (_, nodes) = lab.pve(0, "GET", "/nodes", &[]);
    assert_eq!(nodes["data"][0]["ssl_fingerprint"], fp);
}

#[test]
fn upid_task_lifecycle() {
    let lab = TestLab::up(62, &[]);
    lab.ceph_bootstrap(0);
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "rbd1"), ("size", "2")]);
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().unwrap().to_string();
    let f: Vec<&str> = upid.split(':').collect();
    assert_eq!(f.len(), 9, "UPID + 8 fields + trailing empty: {upid}");
    assert_eq!((f[0], f[1], f[5], f[6], f[7], f[8]), ("UPID", "pve1", "cephcreatepool", "rbd1", "root@pam!edge", ""));
    for hexf in [f[2], f[3], f[4]] {
        assert!(u64::from_str_radix(hexf, 16).is_ok() && hexf.len() == 8, "{hexf}");
    }
    let st = lab.wait_task(0, &upid);
    assert_eq!(st["exitstatus"], "OK");
    let (_, log) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(&upid)), &[]);
    assert_eq!(log["data"].as_array().unwrap().last().unwrap()["t"], "TASK OK");
    let (_, list) = lab.pve(0, "GET", "/nodes/pve1/tasks", &[("typefilter", "cephcreatepool")]);
    assert!(list["data"].as_array().unwrap().iter().any(|t| t["upid"] == upid.as_str()));
    // A failed task: the pool is gone, so deleting it again fails in the worker.
    let (_, v) = lab.pve(0, "DELETE", "/nodes/pve1/ceph/pool/rbd1", &[]);
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    let (_, v) = lab.pve(0, "PUT", "/nodes/pve1/ceph/pool/rbd1", &[("size", "3")]);
    let st = lab.wait_task(0, v["data"].as_str().unwrap());
    assert_eq!(st["exitstatus"], "error with 'osd pool get': mon_cmd failed - unrecognized pool 'rbd1'");
    // Ceph's rule min_size <= size fails that setting (PVE collects it), the mon's text in the log.
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "odd"), ("size", "2"), ("min_size", "3")]);
    let upid = v["data"].as_str().unwrap().to_string();
    let st = lab.wait_task(0, &upid);
    assert_eq!(st["exitstatus"], "Could not set: min_size", "{st}");
    let (_, log) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(&upid)), &[]);
    assert!(log.to_string().contains("pool min_size must be between 1 and size, which is set to 2"), "{log}");
    // Injected task failures are deterministic per seed.
    let (c, _) =
        lab.admin("POST", "/lab/faults", Some(json!({"pattern": "POST .*/ceph/pool$", "fail_tasks": 1.0, "seed": 7})));
    assert_eq!(c, 200);
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "doomed")]);
    let st = lab.wait_task(0, v["data"].as_str().unwrap());
    assert!(st["exitstatus"].as_str().unwrap().contains("injected"), "{st}");
    lab.admin("DELETE", "/lab/faults", None);
    // PBS UPIDs carry a task id (9 fields).
    let (c, v) = lab.pbs("POST", "/admin/datastore/store1/gc", &[]);
    assert_eq!(c, 200, "{v}");
    let pupid = v["data"].as_str().unwrap().to_string();
    assert_eq!(pupid.split(':').count(), 10, "{pupid}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, s) = lab.pbs("GET", &format!("/nodes/localhost/tasks/{}/status", enc(&pupid)), &[]);
        if s["data"]["status"] == "stopped" {
            assert_eq!(s["data"]["exitstatus"], "OK");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn cluster_create_join_and_token_vanishing() {
    let lab = TestLab::up(63, &[]);
    let pw = lab.store(0)["pve"]["root_password"].as_str().unwrap().to_string();
    // A token created on pve2 before it joins.
    let (c, v) = lab.pve(1, "POST", "/access/users/root@pam/token/own", &[("privsep", "0")]);
    assert_eq!(c, 200, "{v}");
    let own = format!("PVEAPIToken=root@pam!own={}", v["data"]["value"].as_str().unwrap());
    let ep2 = lab.node_ep(0, 1);
    assert_eq!(lab.call(&format!("{ep2}/api2/json/version"), &own, "GET", &[]).0, 200);
    // Standalone: pve1 cannot see pve2.
    assert_eq!(lab.pve(0, "GET", "/nodes/pve2/status", &[]).0, 500);
    let (c, v) = lab.pve_root(0, "POST", "/cluster/config", &[("clustername", "edge1")]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    let fp1 = lab.store(0)["nodes"][0]["tls_fingerprint"].as_str().unwrap().to_string();
    let addr1 = lab.store(0)["nodes"][0]["address"].as_str().unwrap().to_string();
    let join = [("hostname", addr1.as_str()), ("fingerprint", fp1.as_str()), ("password", pw.as_str())];
    // One join at a time: a second one while the first finishes finds no quorum.
    for n in [1, 2] {
        let (c, v) = lab.pve_root(n, "POST", "/cluster/config/join", &join);
        assert_eq!(c, 200, "{v}");
        assert_eq!(lab.wait_task(n, v["data"].as_str().unwrap())["exitstatus"], "OK");
    }
    // The joined node's own token vanished; the cluster's token works everywhere.
    assert_eq!(lab.call(&format!("{ep2}/api2/json/version"), &own, "GET", &[]).0, 401);
    let (c, v) = lab.pve(0, "GET", "/cluster/config/nodes", &[]);
    assert_eq!(c, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    let (_, v) = lab.pve(2, "GET", "/cluster/status", &[]);
    assert_eq!(v["data"][0]["type"], "cluster");
    assert_eq!(v["data"][0]["quorate"], 1);
    // Proxying: pve1 answers for pve3, and cluster-wide config is shared.
    assert_eq!(lab.pve(0, "GET", "/nodes/pve3/status", &[]).0, 200);
    lab.pve(
        0,
        "POST",
        "/cluster/backup",
        &[("id", "nightly"), ("all", "1"), ("schedule", "sat 02:00"), ("storage", "pbs1")],
    );
    let (c, v) = lab.pve(2, "GET", "/cluster/backup/nightly", &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["data"]["schedule"], "sat 02:00");
    let (_, snap) = lab.admin("GET", "/lab/snapshot", None);
    assert_eq!(snap["stores"][0]["clusters"]["edge1"]["members"], json!(["pve1", "pve2", "pve3"]));
    // DR: pve3 is wiped and reinstalled; its old name blocks a rejoin until `delnode`.
    assert_eq!(lab.admin("POST", "/lab/wipe", Some(json!({"node": "pve3"}))).0, 200);
    assert_eq!(lab.admin("POST", "/lab/install", Some(json!({"node": "pve3"}))).0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab
        .client
        .get(format!("{}/api2/json/version", lab.node_ep(0, 2)))
        .header("Authorization", lab.token(0))
        .send()
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "reinstalled pve3 never came up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The reinstalled node knows no token; its name is still in the cluster, so the join fails
    // in its task until `delnode`.
    assert_eq!(lab.pve(2, "GET", "/version", &[]).0, 401, "a reinstalled node knows no token");
    let (c, v) = lab.pve_root(2, "POST", "/cluster/config/join", &join);
    assert_eq!(c, 200, "{v}");
    let st = lab.wait_task_root(2, v["data"].as_str().unwrap());
    assert_eq!(st["exitstatus"], "Cluster join aborted!");
    assert_eq!(lab.pve_root(0, "DELETE", "/cluster/config/nodes/pve1", &[]).0, 500, "cannot delete myself");
    assert_eq!(lab.pve_root(0, "DELETE", "/cluster/config/nodes/pve3", &[]).0, 200);
    let (c, v) = lab.pve_root(2, "POST", "/cluster/config/join", &join);
    assert_eq!(c, 200, "{v}");
    assert_eq!(lab.wait_task_root(2, v["data"].as_str().unwrap())["exitstatus"], "OK");
    // Joined, it has the cluster's tokens.
    assert_eq!(lab.pve(2, "GET", "/version", &[]).0, 200);
}

#[test]
fn down_up_persists_state() {
    let mut lab = TestLab::up(64, &[]);
    lab.ceph_bootstrap(0);
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "keep"), ("size", "2")]);
    let upid = v["data"].as_str().unwrap().to_string();
    lab.wait_task(0, &upid);
    lab.pve(0, "POST", "/cluster/backup", &[("id", "job1"), ("all", "1"), ("schedule", "daily")]);
    let fp = lab.store(0)["nodes"][0]["tls_fingerprint"].clone();
    let token = lab.token(0);
    lab.down();
    lab.start();
    assert_eq!(lab.store(0)["nodes"][0]["tls_fingerprint"], fp, "certificates survive");
    assert_eq!(lab.token(0), token);
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool", &[]);
    assert_eq!(c, 200);
    assert_eq!(v["data"][0]["pool_name"], "keep");
    assert_eq!(v["data"][0]["size"], 2);
    assert_eq!(lab.pve(0, "GET", "/cluster/backup/job1", &[]).0, 200);
    assert_eq!(lab.wait_task(0, &upid)["exitstatus"], "OK", "task history survives down/up");
}

#[test]
fn bad_requests_never_crash_the_lab() {
    let lab = TestLab::up(65, &[]);
    let ep = lab.node_ep(0, 0);
    let tok = lab.token(0);
    let weird = [
        ("GET", "/api2/json/nodes/pve1/tasks/UPID:garbage/status"),
        ("GET", "/api2/json/nodes/%ff%fe/status"),
        ("POST", "/api2/json/nodes/pve1/ceph/pool/x/y/z"),
        ("PATCH", "/api2/json/version"),
        ("GET", "/api2/extjs/version"),
        ("GET", "/"),
        ("DELETE", "/api2/json/cluster/backup/nope"),
        ("GET", "/api2/json/nodes/pve1/ceph/pool"),
    ];
    for (m, p) in weird {
        let (c, v) = lab.call(&format!("{ep}{p}"), &tok, m, &[("x", "\u{0}\u{7f}")]);
        assert!((400..=599).contains(&c), "{m} {p} -> {c} {v}");
    }
    // Garbage JSON body and a huge parameter.
    let r = lab
        .client
        .post(format!("{ep}/api2/json/cluster/backup"))
        .header("Authorization", &tok)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let big = "a".repeat(100_000);
    let (c, _) = lab.pve(0, "POST", "/cluster/backup", &[("id", "j"), ("comment", &big)]);
    assert_eq!(c, 400);
    // Still alive and answering.
    assert_eq!(lab.pve(0, "GET", "/version", &[]).0, 200);
    let (c, v) = lab.pve(0, "GET", "/nonexistent/path", &[]);
    assert_eq!(c, 501, "{v}");
}

#[test]
fn pbs_datastore_and_jobs() {
    let lab = TestLab::up(66, &[]);
    let (c, v) = lab.pbs(
        "POST",
        "/config/remote",
        &[("name", "peer1"), ("host", "10.0.0.2"), ("auth-id", "sync@pbs"), ("password", "x")],
    );
    assert_eq!(c, 200, "{v}");
    let (c, v) = lab.pbs(
        "POST",
        "/config/sync",
        &[
            ("id", "sync-1"),
            ("store", "store1"),
            ("remote", "peer1"),
            ("remote-store", "bstore"),
            ("schedule", "hourly"),
        ],
    );
    assert_eq!(c, 200, "{v}");
    // PBS checks only the format of the datastore and remote a job names, not that they exist.
    let (c, v) = lab.pbs(
        "POST",
        "/config/sync",
        &[("id", "sync-2"), ("store", "nope"), ("remote", "peer1"), ("remote-store", "bstore")],
    );
    assert_eq!(c, 200, "{v}");
    assert_eq!(
        lab.pbs("POST", "/config/verify", &[("id", "verify-1"), ("store", "store1"), ("schedule", "daily")]).0,
        200
    );
    assert_eq!(
        lab.pbs(
            "POST",
            "/config/prune",
            &[("id", "prune-1"), ("store", "store1"), ("schedule", "daily"), ("keep-last", "3")]
        )
        .0,
        200
    );
    let (c, v) = lab.pbs("POST", "/config/prune", &[("id", "prune-2"), ("store", "store1"), ("schedule", "whenever")]);
    assert_eq!(c, 400, "{v}");
    let (c, v) = lab.pbs("GET", "/config/sync/sync-1", &[]);
    assert_eq!(c, 200);
    assert_eq!(v["data"]["remote-store"], "bstore");
    let digest = v["digest"].as_str().unwrap().to_string();
    assert_eq!(lab.pbs("PUT", "/config/sync/sync-1", &[("schedule", "daily"), ("digest", &digest)]).0, 200);
    assert_eq!(
        lab.pbs("PUT", "/config/sync/sync-1", &[("schedule", "daily"), ("digest", &digest)]).0,
        400,
        "stale digest"
    );
    assert_eq!(lab.pbs("DELETE", "/config/sync/sync-1", &[]).0, 200);
    assert_eq!(lab.pbs("GET", "/config/sync/sync-1", &[]), (400, json!("no such sync 'sync-1'")));
    // A PVE storage of type pbs really checks the PBS (datastore, fingerprint, credentials).
    let pbs = lab.store(0)["pbs"].clone();
    let (tokid, secret) = pbs["api_token"].as_str().unwrap().split_once(':').unwrap();
    let fp = pbs["tls_fingerprint"].as_str().unwrap();
    let addr = pbs["address"].as_str().unwrap();
    let base = [
        ("storage", "pbs1"),
        ("type", "pbs"),
        ("server", addr),
        ("datastore", "store1"),
        ("username", tokid),
        ("password", secret),
        ("fingerprint", fp),
        ("content", "backup"),
    ];
    let mut wrong = base;
    wrong[3] = ("datastore", "nosuch");
    assert_eq!(lab.pve(0, "POST", "/storage", &wrong).0, 500);
    let (c, v) = lab.pve(0, "POST", "/storage", &base);
    assert_eq!(c, 200, "{v}");
    let (_, v) = lab.pve(0, "GET", "/storage/pbs1", &[]);
    assert!(v["data"].get("password").is_none(), "password is never returned: {v}");
}

#[test]
fn admin_snapshot_drift_faults_wipe() {
    let lab = TestLab::up(67, &[]);
    lab.ceph_bootstrap(0);
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "vm"), ("size", "3")]);
    lab.wait_task(0, v["data"].as_str().unwrap());
    lab.pve(0, "POST", "/cluster/backup", &[("id", "b1"), ("all", "1"), ("schedule", "daily")]);
    // Drift.
    let (c, v) = lab.admin("POST", "/lab/drift", Some(json!({"kind": "pool_size", "pool": "vm", "value": 2})));
    assert_eq!(c, 200, "{v}");
    let (_, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool", &[]);
    assert_eq!(v["data"][0]["size"], 2);
    assert_eq!(lab.admin("POST", "/lab/drift", Some(json!({"kind": "delete_backup_job", "id": "b1"}))).0, 200);
    // PVE answers a missing job's GET with a parameter error (400), see FIDELITY PVE-JOB-MISSING.
    assert_eq!(lab.pve(0, "GET", "/cluster/backup/b1", &[]).0, 400);
    assert_eq!(
        lab.admin("POST", "/lab/drift", Some(json!({"kind": "dns", "node": "pve2", "servers": ["9.9.9.9"]}))).0,
        200
    );
    let (_, v) = lab.pve(1, "GET", "/nodes/pve2/dns", &[]);
    assert_eq!(v["data"]["dns1"], "9.9.9.9");
    assert_eq!(lab.admin("POST", "/lab/drift", Some(json!({"kind": "nonsense"}))).0, 400);
    // Faults: 5xx for a pattern, deterministic with the seed; other endpoints unaffected.
    let (c, _) =
        lab.admin("POST", "/lab/faults", Some(json!({"pattern": "GET .*/dns$", "error_rate": 1.0, "seed": 1})));
    assert_eq!(c, 200);
    assert_eq!(lab.pve(0, "GET", "/nodes/pve1/dns", &[]).0, 500);
    assert_eq!(lab.pve(0, "GET", "/version", &[]).0, 200);
    lab.admin("DELETE", "/lab/faults", None);
    assert_eq!(lab.pve(0, "GET", "/nodes/pve1/dns", &[]).0, 200);
    // The same seed gives the same sequence of failures.
    let pattern = |lab: &TestLab| -> Vec<u16> {
        lab.admin("DELETE", "/lab/faults", None);
        lab.admin("POST", "/lab/faults", Some(json!({"pattern": "GET .*/status$", "error_rate": 0.5, "seed": 42})));
        (0..24).map(|_| lab.pve(0, "GET", "/nodes/pve1/status", &[]).0).collect()
    };
    let (a, b) = (pattern(&lab), pattern(&lab));
    assert_eq!(a, b, "fault sequence must be reproducible");
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
    lab.admin("DELETE", "/lab/faults", None);
    // Dropped connections and latency.
    lab.admin("POST", "/lab/faults", Some(json!([{"pattern": "GET .*/time$", "drop_rate": 1.0, "seed": 3}, {"pattern": "GET /api2/json/version", "latency_ms": 300}])));
    let url = format!("{}/api2/json/nodes/pve1/time", lab.node_ep(0, 0));
    assert!(lab.client.get(url).header("Authorization", lab.token(0)).send().is_err(), "connection must be dropped");
    let t = std::time::Instant::now();
    assert_eq!(lab.pve(0, "GET", "/version", &[]).0, 200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(lab.admin("GET", "/lab/faults", None).1.as_array().map(Vec::len), Some(2));
    lab.admin("DELETE", "/lab/faults", None);
    // Call counts per endpoint.
    let (_, calls) = lab.admin("GET", "/lab/calls", None);
    assert!(calls["total"].as_u64().unwrap() >= 8);
    assert!(calls["by_endpoint"]["pve GET /nodes/{node}/dns"].as_u64().unwrap() >= 3, "{calls}");
    // Wipe a node: powered off, API gone.
    let (c, v) = lab.admin("POST", "/lab/wipe", Some(json!({"node": "pve3"})));
    assert_eq!(c, 200, "{v}");
    let (_, n) = lab.admin("GET", "/lab/nodes/pve3", None);
    assert_eq!((n["power_on"].as_bool(), n["installed"].as_bool()), (Some(false), Some(false)));
    let url = format!("{}/api2/json/version", lab.node_ep(0, 2));
    assert!(lab.client.get(url).header("Authorization", lab.token(0)).send().is_err(), "wiped node must not answer");
    // Reinstall it (no BMC in this lab): fresh and up again after --install-ms.
    let (c, v) = lab.admin("POST", "/lab/install", Some(json!({"node": "pve3", "image_url": "http://x/img.raw"})));
    assert_eq!(c, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab
        .client
        .get(format!("{}/api2/json/version", lab.node_ep(0, 2)))
        .header("Authorization", lab.token(0))
        .send()
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "reinstalled node never came up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(lab.admin("GET", "/lab/nodes/pve3", None).1["image"]["url"], "http://x/img.raw");
    // Wipe the store: pools and jobs gone.
    assert_eq!(lab.admin("POST", "/lab/wipe", Some(json!({"store": "store-001"}))).0, 200);
    let (_, snap) = lab.admin("GET", "/lab/snapshot", None);
    assert_eq!(snap["stores"][0]["pools"], json!({}));
    assert!(snap["stores"][0]["nodes"].as_array().unwrap().iter().all(|n| n["up"] == false));
    // Unauthorized admin call.
    let r =
        reqwest::blocking::get(format!("{}/lab/snapshot", lab.json["admin"]["endpoint"].as_str().unwrap())).unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn up_time_without_ceph_is_reported() {
    let lab = TestLab::up(68, &["--stores", "2"]);
    // Reported, not asserted: timing depends on the machine.
    eprintln!("edge-lab up (2 stores x 3 nodes, no ceph): {:.3} s", lab.up_secs);
    assert_eq!(lab.json["stores"].as_array().unwrap().len(), 2);
    assert_eq!(lab.store(1)["nodes"][0]["address"], "127.68.2.1");
    assert_eq!(lab.store(1)["pbs"]["endpoint"], "https://127.68.2.200:8007");
    let (ok, out) = common::run(&["status", "--dir", &lab.path().display().to_string()]);
    assert!(ok && out.contains("running: true"), "{out}");
}

/// The lab carries its schemas: a copy of the binary far from any checkout (no
/// `../shared/reference` anywhere above it) still validates every request.
#[test]
fn validates_without_the_reference_files() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("edge-lab");
    std::fs::copy(common::BIN, &bin).unwrap();
    let lab_dir = dir.path().join("lab");
    let d = lab_dir.display().to_string();
    let out = std::process::Command::new(&bin)
        .args(["up", "--dir", &d, "--net", "77"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let down = || {
        let o = std::process::Command::new(&bin).args(["down", "--dir", &d]).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if !out.status.success() {
        down();
        panic!("up failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(lab_dir.join("lab.json")).unwrap()).unwrap();
    let ca = reqwest::Certificate::from_pem(v["ca_pem"].as_str().unwrap().as_bytes()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(ca).build().unwrap();
    let store = &v["stores"][0];
    let r = client
        .post(format!("{}/api2/json/nodes/pve1/ceph/pool", store["nodes"][0]["endpoint"].as_str().unwrap()))
        .header("Authorization", format!("PVEAPIToken={}", store["pve"]["api_token"].as_str().unwrap()))
        .form(&[("name", "p"), ("size", "99")])
        .send()
        .unwrap();
    let (code, body) = common::decode(r);
    let (ok, text) = down();
    assert!(ok, "{text}");
    assert_eq!(v["schema_validation"], true);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["errors"]["size"], "value must have a maximum value of 7", "{body}");
}

/// SHA-256 fingerprint (PVE spelling) of the certificate a node presents, trusting anything:
/// the caller compares it with what it expects.
fn presented_fingerprint(lab: &TestLab, n: usize) -> String {
    use sha2::Digest;
    let client =
        reqwest::blocking::Client::builder().danger_accept_invalid_certs(true).tls_info(true).build().expect("client");
    let r = client.get(format!("{}/api2/json/version", lab.node_ep(0, n))).send().expect("GET /version");
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    let der = info.peer_certificate().expect("peer certificate");
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn lab_json_now(lab: &TestLab) -> Value {
    serde_json::from_str(&std::fs::read_to_string(lab.path().join("lab.json")).expect("lab.json")).expect("json")
}

#[test]
fn cert_drift_and_acme_orders_change_the_presented_certificate() {
    let lab = TestLab::up(87, &["--install-ms", "0"]);
    let fp0 = lab.store(0)["nodes"][0]["tls_fingerprint"].as_str().unwrap().to_string();
    assert_eq!(presented_fingerprint(&lab, 0), fp0);

    // Cert drift: a new certificate from the next handshake on; lab.json and /nodes follow.
    let (c, v) = lab.admin("POST", "/lab/drift", Some(json!({"kind": "cert", "node": "pve1"})));
    assert_eq!(c, 200, "{v}");
    let fp1 = v["tls_fingerprint"].as_str().unwrap().to_string();
    assert_eq!(v["old_fingerprint"], fp0.as_str());
    assert_ne!(fp1, fp0);
    assert_eq!(presented_fingerprint(&lab, 0), fp1);
    assert_eq!(lab_json_now(&lab)["stores"][0]["nodes"][0]["tls_fingerprint"], fp1.as_str());
    assert_eq!(lab_json_now(&lab)["stores"][0]["nodes"][0]["tls_fingerprint"], fp1.as_str());
    let (_, nodes) = lab.pve(0, "GET", "/nodes", &[]);
    assert_eq!(nodes["data"][0]["ssl_fingerprint"], fp1.as_str());
    assert_eq!(presented_fingerprint(&lab, 1), lab.store(0)["nodes"][1]["tls_fingerprint"].as_str().unwrap());

    // ACME: what PVE checks before ordering.
    let order = |lab: &TestLab| lab.pve(0, "POST", "/nodes/pve1/certificates/acme/certificate", &[]);
    let (c, v) = order(&lab);
    assert_eq!(c, 400, "no domains: {v}");
    let (c, v) = lab.pve(0, "PUT", "/nodes/pve1/config", &[("acmedomain0", "not_a_domain")]);
    assert_eq!(c, 400, "domain format is checked: {v}");
    let (c, _) = lab.pve(0, "PUT", "/nodes/pve1/config", &[("acmedomain0", "pve1.store1.example,plugin=dns1")]);
    assert_eq!(c, 200);
    let (c, v) = order(&lab);
    assert_eq!(c, 500, "no account yet: {v}");
    // Accounts are root@pam's alone (no `permissions` in the schema).
    let contact = [("contact", "ops@store1.example"), ("tos_url", "https://x.example/tos")];
    assert_eq!(lab.pve(0, "POST", "/cluster/acme/account", &contact).0, 403);
    let (c, v) = lab.pve_root(0, "POST", "/cluster/acme/account", &contact);
    assert_eq!(c, 500, "the default (Let's Encrypt) directory is unreachable from the lab: {v}");
    let dir = lab.json["acme"]["directory"].as_str().unwrap();
    let tos = lab.json["acme"]["tos"].as_str().unwrap();
    let (c, v) = lab.pve_root(
        0,
        "POST",
        "/cluster/acme/account",
        &[("contact", "ops@store1.example"), ("directory", dir), ("tos_url", tos)],
    );
    assert_eq!(c, 200, "{v}");
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    let (c, v) = order(&lab);
    assert_eq!(c, 500, "plugin dns1 missing: {v}");
    let (c, v) = lab.pve(0, "POST", "/cluster/acme/plugins", &[("id", "dns1"), ("type", "dns"), ("api", "pdns")]);
    assert_eq!(c, 200, "{v}");
    let (c, v) = order(&lab);
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().unwrap().to_string();
    assert!(upid.contains(":acmenewcert:"), "{upid}");
    assert_eq!(lab.wait_task(0, &upid)["exitstatus"], "OK");
    let fp2 = presented_fingerprint(&lab, 0);
    assert_ne!(fp2, fp1, "the ordered certificate is presented");
    assert_eq!(lab_json_now(&lab)["stores"][0]["nodes"][0]["tls_fingerprint"], fp2.as_str());
    let (_, info) = lab.pve(0, "GET", "/nodes/pve1/certificates/info", &[]);
    let proxy = info["data"].as_array().unwrap().iter().find(|c| c["filename"] == "pveproxy-ssl.pem").cloned();
    let proxy = proxy.unwrap_or_else(|| panic!("pveproxy-ssl.pem listed: {info}"));
    assert_eq!(proxy["fingerprint"], fp2.as_str());
    assert!(proxy["issuer"].as_str().unwrap().contains("ACME"), "{proxy}");
    assert!(proxy["san"].to_string().contains("pve1.store1.example"), "{proxy}");
    // A second order needs force (a custom certificate exists).
    let (c, v) = order(&lab);
    assert_eq!(c, 400, "{v}");
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/certificates/acme/certificate", &[("force", "1")]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    assert_ne!(presented_fingerprint(&lab, 0), fp2);

    // A reinstall: the ACME certificate is gone with the old disk, and so is the node's own:
    // a new node CA and certificate (lab.json follows); the booted image is stated in the node
    // notes.
    let body = json!({"node": "pve1", "image_url": "http://x.example/node.img", "sha256": "ab12"});
    assert_eq!(lab.admin("POST", "/lab/install", Some(body)).0, 200);
    let fp3 = presented_fingerprint(&lab, 0);
    assert!(![fp0.as_str(), fp1.as_str(), fp2.as_str()].contains(&fp3.as_str()), "a new certificate");
    assert_eq!(lab_json_now(&lab)["stores"][0]["nodes"][0]["tls_fingerprint"], fp3.as_str());
    let (_, cfg) = lab.pve_root(0, "GET", "/nodes/pve1/config", &[]);
    assert_eq!(cfg["data"]["description"], "edge-image url=http://x.example/node.img sha256=ab12", "{cfg}");
    assert!(cfg["data"]["acmedomain0"].is_null(), "the ACME config went with the old disk: {cfg}");
}
