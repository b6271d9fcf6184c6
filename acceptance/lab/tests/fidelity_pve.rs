//! PVE behaviours the lab models on pve-manager's source (FIDELITY.md, rows PVE-*): Ceph pools
//! as `PVE/API2/Ceph/Pool.pm` and `PVE/Ceph/Tools.pm` handle them — answered by real Ceph with
//! `--ceph` and by the same rules in the model without — and PVE's error shapes.

mod common;

use common::{enc, TestLab};
use serde_json::Value;

/// Waits for a task; returns (exit status, its log as one string).
fn task(lab: &TestLab, upid: &Value) -> (String, String) {
    let upid = upid.as_str().unwrap_or_else(|| panic!("a UPID, got {upid}"));
    let st = lab.wait_task(0, upid);
    let (_, log) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(upid)), &[("limit", "500")]);
    (st["exitstatus"].as_str().unwrap_or_default().to_string(), log.to_string())
}

fn pool_status(lab: &TestLab, name: &str, verbose: bool) -> Value {
    let q: &[(&str, &str)] = if verbose { &[("verbose", "1")] } else { &[] };
    let (c, v) = lab.pve(0, "GET", &format!("/nodes/pve1/ceph/pool/{name}/status"), q);
    assert_eq!(c, 200, "{v}");
    v["data"].clone()
}

fn listed(lab: &TestLab) -> Vec<Value> {
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool", &[]);
    assert_eq!(c, 200, "{v}");
    v["data"].as_array().cloned().unwrap_or_else(|| panic!("a pool list: {v}"))
}

fn sizes(lab: &TestLab, name: &str) -> (i64, i64) {
    let s = pool_status(lab, name, false);
    (s["size"].as_i64().unwrap_or(-1), s["min_size"].as_i64().unwrap_or(-1))
}

/// The same checks on the model and on real Ceph: the model's rules must answer like Ceph.
fn pool_settings(lab: &TestLab) {
    lab.ceph_bootstrap(0);
    let started = |(c, v): (u16, Value)| {
        assert_eq!(c, 200, "a task was expected: {v}");
        task(lab, &v["data"])
    };
    let create = |form: &[(&str, &str)]| started(lab.pve(0, "POST", "/nodes/pve1/ceph/pool", form));
    let set =
        |name: &str, form: &[(&str, &str)]| started(lab.pve(0, "PUT", &format!("/nodes/pve1/ceph/pool/{name}"), form));
    let base = [("name", "a"), ("pg_num", "16"), ("pg_autoscale_mode", "off")];
    let (st, _) = create(&[&base[..], &[("size", "4"), ("min_size", "3")]].concat());
    assert_eq!(st, "OK");
    assert_eq!(sizes(lab, "a"), (4, 3));

    // PVE-POOL-SET: size first; Ceph resets min_size to min(2, size); PVE compares the other
    // settings with what it read before, so min_size 3 (= the old one) is skipped: 5/2.
    let (st, log) = set("a", &[("size", "5"), ("min_size", "3")]);
    assert_eq!(st, "OK", "{log}");
    assert_eq!(sizes(lab, "a"), (5, 2));
    assert!(log.contains("skipping 'min_size', did not change"), "{log}");
    let (st, _) = set("a", &[("size", "4")]);
    assert_eq!((st.as_str(), sizes(lab, "a")), ("OK", (4, 2)));

    // PVE-POOL-CREATE: no check that the pool is new; a second create re-applies the settings.
    let (st, log) = create(&[&base[..], &[("size", "3")]].concat());
    assert_eq!(st, "OK", "{log}");
    assert_eq!(sizes(lab, "a"), (3, 2));

    // PVE-POOL-APP: one application per pool; the status never names it, verbose lists it.
    let (st, log) = set("a", &[("application", "cephfs")]);
    assert_eq!(st, "Could not set: application");
    assert!(log.contains("Are you SURE? Pool 'a' already has an enabled application"), "{log}");
    assert!(pool_status(lab, "a", false).get("application").is_none());
    assert_eq!(pool_status(lab, "a", true)["application_list"], serde_json::json!(["rbd"]));
    let entry = listed(lab).into_iter().find(|p| p["pool_name"] == "a").expect("listed");
    assert_eq!(entry["application_metadata"], serde_json::json!({"rbd": {}}));

    // PVE-POOL-SIZE1: size 1 needs a flag PVE never sends.
    let (st, log) = set("a", &[("size", "1")]);
    assert_eq!(st, "Could not set: size");
    assert!(log.contains("--yes-i-really-mean-it"), "{log}");

    // PVE-POOL-ATOMIC: a setting Ceph refuses leaves the pool (and adds no storage).
    let (st, log) = create(&[("name", "bb"), ("pg_num", "8"), ("crush_rule", "nope"), ("add_storages", "1")]);
    assert_eq!(st, "Could not set: crush_rule", "{log}");
    assert!(log.contains("crush rule nope does not exist"), "{log}");
    assert!(listed(lab).iter().any(|p| p["pool_name"] == "bb"), "the pool stays after the failed create");
    assert_eq!(lab.pve(0, "GET", "/storage/bb", &[]).0, 500, "no storage for the failed pool");
    // A storage id must be 2+ characters (pve-common parse_storage_id): refused before the task.
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", "b"), ("add_storages", "1")]);
    assert_eq!((c, v["message"].as_str()), (500, Some("storage ID 'b' contains illegal characters\n")));

    // PVE-POOL-MISSING: the index answers for any name; the status is a 500 with Ceph's text;
    // update and delete start a task that fails with it.
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool/nosuch", &[]);
    assert_eq!((c, v["data"].clone()), (200, serde_json::json!([{"name": "status"}])));
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool/nosuch/status", &[]);
    assert_eq!(c, 500);
    assert_eq!(v["message"], "error with 'osd pool get': mon_cmd failed - unrecognized pool 'nosuch'\n");
    let (st, _) = set("nosuch", &[("size", "3")]);
    assert_eq!(st, "error with 'osd pool get': mon_cmd failed - unrecognized pool 'nosuch'");
    let (st, _) = started(lab.pve(0, "DELETE", "/nodes/pve1/ceph/pool/nosuch", &[]));
    assert_eq!(st, "error with 'osd pool get': mon_cmd failed - unrecognized pool 'nosuch'");

    // PVE-POOL-EC: a profile pve_ec_<name>, <name>-data (k+m, a rule of its own) and
    // <name>-metadata (32 PGs), a storage with data-pool; size on the data pool is ignored.
    let (st, log) = create(&[("name", "ec"), ("pg_num", "8"), ("erasure-coding", "k=2,m=1,failure-domain=osd")]);
    assert_eq!(st, "OK", "{log}");
    assert!(log.contains("created new erasure code profile 'pve_ec_ec'"), "{log}");
    let data = pool_status(lab, "ec-data", false);
    assert_eq!((data["size"].as_i64(), data["min_size"].as_i64()), (Some(3), Some(2)), "{data}");
    assert_eq!(pool_status(lab, "ec-metadata", false)["pg_num"], 32);
    let kinds: Vec<(String, String)> = listed(lab)
        .iter()
        .filter_map(|p| Some((p["pool_name"].as_str()?.to_string(), p["type"].as_str()?.to_string())))
        .filter(|(n, _)| n.starts_with("ec-"))
        .collect();
    assert_eq!(kinds, vec![("ec-data".into(), "erasure".into()), ("ec-metadata".into(), "replicated".into())]);
    let (c, v) = lab.pve(0, "GET", "/storage/ec", &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!((v["data"]["pool"].as_str(), v["data"]["data-pool"].as_str()), (Some("ec-metadata"), Some("ec-data")));
    let (st, log) = set("ec-data", &[("size", "5")]);
    assert_eq!(st, "OK");
    assert!(log.contains("cannot set 'size' for erasure coded pool"), "{log}");
    assert_eq!(pool_status(lab, "ec-data", false)["size"], 3);

    // PVE-POOL-PGLIMIT: Ceph counts PG replicas against 250 per OSD (at least 3 OSDs).
    let (st, _) = create(&[("name", "big"), ("pg_num", "256"), ("size", "3")]);
    assert!(st.starts_with("error with 'osd pool create': mon_cmd failed -  pg_num 256 size 3 would mean "), "{st}");
    assert!(st.contains("which exceeds max 750 (mon_max_pg_per_osd 250 * num_in_osds 3)"), "{st}");
}

#[test]
fn pool_settings_in_the_model() {
    pool_settings(&TestLab::up(101, &[]));
}

#[test]
fn pool_settings_on_real_ceph() {
    pool_settings(&TestLab::up(102, &["--ceph"]));
}

/// PVE-CEPH-RADOS: after `pveceph init` but before the first monitor PVE cannot connect to
/// the cluster: every pool call fails in the handler with librados' error.
#[test]
fn pool_calls_before_the_first_monitor() {
    let lab = TestLab::up(103, &[]);
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool", &[]);
    assert_eq!(c, 500);
    assert!(v["message"].as_str().unwrap_or_default().starts_with("pveceph configuration not initialized"), "{v}");
    assert_eq!(lab.pve(0, "POST", "/nodes/pve1/ceph/init", &[]).0, 200);
    for (method, path, form) in [
        ("GET", "/nodes/pve1/ceph/pool", vec![]),
        ("POST", "/nodes/pve1/ceph/pool", vec![("name", "p")]),
        ("GET", "/nodes/pve1/ceph/pool/p/status", vec![]),
    ] {
        let (c, v) = lab.pve(0, method, path, &form);
        assert_eq!(
            (c, v["message"].as_str()),
            (500, Some("rados_connect failed - No such file or directory\n")),
            "{method} {path}"
        );
    }
}

/// PVE-POOL-STATS and PVE-POOL-FORCE on real Ceph: data written with `rados` into the older of
/// two pools. PVE 8 reports the newest pool's statistics for it (9.1.12 fixed that); the pool
/// list reports each pool's own everywhere. PVE destroys the pool with its data without
/// `force` (force only concerns VM images in PVE storages; this pool has none).
#[test]
fn pool_statistics_and_destroy_per_profile() {
    for (pve, own_stats) in [("8.4", false), ("9.1", true)] {
        let lab = TestLab::up(104, &["--ceph", "--pve", pve]);
        lab.ceph_bootstrap(0);
        for name in ["older", "newer"] {
            let (_, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/pool", &[("name", name), ("pg_num", "8")]);
            assert_eq!(task(&lab, &v["data"]).0, "OK");
        }
        let conf = lab.json["ceph"]["conf"].as_str().expect("ceph conf").to_string();
        let blob = lab.path().join("blob");
        std::fs::write(&blob, vec![1u8; 128 * 1024]).expect("blob");
        let ok = std::process::Command::new("rados")
            .args(["-c", &conf, "-p", "older", "put", "blob"])
            .arg(&blob)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "rados put");
        let used = |name: &str| {
            listed(&lab).iter().find(|p| p["pool_name"] == name).and_then(|p| p["bytes_used"].as_i64()).unwrap_or(-1)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while used("older") <= 0 {
            assert!(std::time::Instant::now() < deadline, "ceph df never showed the data");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let reported = pool_status(&lab, "older", true)["statistics"]["bytes_used"].as_i64();
        let want = if own_stats { used("older") } else { used("newer") };
        assert_eq!(reported, Some(want), "PVE {pve}: verbose status of 'older'");
        assert_ne!(used("older"), used("newer"), "the two pools differ, so the check can fail");
        let (_, v) = lab.pve(0, "DELETE", "/nodes/pve1/ceph/pool/older", &[]);
        assert_eq!(task(&lab, &v["data"]).0, "OK", "a pool with data and no storage goes without force");
        assert!(!listed(&lab).iter().any(|p| p["pool_name"] == "older"));
    }
}

/// PVE-ERR-BODY and PVE-ERR-LEGACY: a handler's error is a 500 whose reason phrase is the
/// message's first line; pve-http-server 5.2.0 added it to the JSON body as `message`.
/// PVE-AUTH-401: authentication failures have no body at all.
#[test]
fn error_shapes_per_http_server_release() {
    for legacy in [false, true] {
        let args: &[&str] = if legacy { &["--pve", "8.4", "--pve-http-server-legacy"] } else { &["--pve", "8.4"] };
        let lab = TestLab::up(105, args);
        let url = format!("{}/api2/json/nodes/pve1/ceph/pool", lab.node_ep(0, 0));
        let r = lab.client.get(&url).header("Authorization", lab.token(0)).send().expect("GET");
        assert_eq!(r.status().as_u16(), 500);
        assert_eq!(r.status().canonical_reason(), Some("Internal Server Error"), "the standard text is not sent");
        let text = r.text().expect("body");
        let body: Value = serde_json::from_str(&text).expect("JSON body");
        if legacy {
            assert_eq!(body, serde_json::json!({"data": null}), "before 5.2.0 the text is in the reason phrase only");
        } else {
            assert!(
                body["message"].as_str().is_some_and(|m| m.starts_with("pveceph configuration not initialized")),
                "{body}"
            );
        }
        // The reason phrase carries the text on both: read it from the raw status line.
        let line = raw_status_line(&lab, "/api2/json/nodes/pve1/ceph/pool");
        assert!(line.starts_with("HTTP/1.1 500 pveceph configuration not initialized"), "{line}");
        // Authentication failures: no body, the reason phrase only.
        let r = lab.client.get(&url).header("Authorization", "PVEAPIToken=root@pam!edge=wrong").send().expect("GET");
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(r.text().expect("body"), "");
    }
}

/// The status line of a GET with the store's token, read off the socket (HTTP clients hide a
/// custom reason phrase).
fn raw_status_line(lab: &TestLab, path: &str) -> String {
    use std::io::{Read, Write};
    use std::sync::Arc;
    let ca = lab.json["ca_pem"].as_str().expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile_certs(ca) {
        roots.add(c).expect("ca cert");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = lab.store(0)["nodes"][0]["address"].as_str().expect("address").to_string();
    let name = rustls::pki_types::ServerName::try_from(addr.clone()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("tls");
    let mut sock = std::net::TcpStream::connect(format!("{addr}:8006")).expect("connect");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n", lab.token(0))
        .expect("send");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|b| b.split("-----END CERTIFICATE-----").next())
        .filter_map(|b| {
            let clean: String = b.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(clean).ok()
        })
        .map(rustls::pki_types::CertificateDer::from)
        .collect()
}

/// PVE-JOB-OBJECTS, PVE-JOB-MISSING, PVE-JOB-NORMALIZE: backup jobs as `PVE/API2/Backup.pm`
/// stores and answers them.
#[test]
fn backup_jobs_as_pve_keeps_them() {
    let lab = TestLab::up(106, &[]);
    let job = [
        ("id", "j1"),
        ("schedule", "sun 01:00"),
        ("storage", "local"),
        ("all", "1"),
        ("prune-backups", "keep-daily=7,keep-last=3"),
        ("fleecing", "enabled=1,storage=local"),
    ];
    let (c, v) = lab.pve(0, "POST", "/cluster/backup", &job);
    assert_eq!(c, 200, "{v}");
    // Property strings come back decoded (pve-guest-common JobBase::decode_value), booleans as
    // numbers; `enabled` defaults to 1; `type` is vzdump.
    let (_, one) = lab.pve(0, "GET", "/cluster/backup/j1", &[]);
    let one = &one["data"];
    assert_eq!(one["prune-backups"], serde_json::json!({"keep-daily": "7", "keep-last": "3"}), "{one}");
    assert_eq!(one["fleecing"], serde_json::json!({"enabled": 1, "storage": "local"}), "{one}");
    assert_eq!((one["enabled"].as_i64(), one["type"].as_str()), (Some(1), Some("vzdump")), "{one}");
    let (_, list) = lab.pve(0, "GET", "/cluster/backup", &[]);
    let listed = list["data"].as_array().and_then(|a| a.iter().find(|j| j["id"] == "j1")).cloned().expect("listed");
    assert_eq!(listed["prune-backups"], one["prune-backups"]);

    // A missing job: GET is a parameter error (400); DELETE raises it inside the config lock,
    // where it is stringified into a 500 without `errors`; PUT says no such vzdump job.
    let (c, v) = lab.pve(0, "GET", "/cluster/backup/nope", &[]);
    assert_eq!((c, v["errors"]["id"].as_str()), (400, Some("No such job 'nope'")), "{v}");
    let (c, v) = lab.pve(0, "DELETE", "/cluster/backup/nope", &[]);
    assert_eq!((c, v["message"].as_str()), (500, Some("400 Parameter verification failed.\nid: No such job 'nope'\n")));
    assert!(v.get("errors").is_none(), "{v}");
    let (c, v) = lab.pve(0, "PUT", "/cluster/backup/nope", &[("comment", "x")]);
    assert_eq!((c, v["message"].as_str()), (500, Some("no such vzdump job\n")));
    let (c, v) = lab.pve(0, "POST", "/cluster/backup", &job);
    assert_eq!((c, v["message"].as_str()), (500, Some("Job 'j1' already exists\n")));
    let (c, v) = lab.pve(0, "POST", "/cluster/backup", &[("id", "j2"), ("all", "1")]);
    assert_eq!((c, v["errors"]["schedule"].as_str()), (400, Some("neither 'starttime' nor 'schedule' were set")));
    let (c, v) =
        lab.pve(0, "POST", "/cluster/backup", &[("id", "j2"), ("schedule", "daily"), ("vmid", "100"), ("all", "1")]);
    assert_eq!(
        (c, v["message"].as_str()),
        (500, Some("400 Parameter verification failed.\nall: option conflicts with option 'vmid'\n"))
    );
    let (c, v) = lab.pve(0, "POST", "/cluster/backup", &[("id", "j2"), ("schedule", "daily")]);
    assert_eq!(
        (c, v["message"].as_str()),
        (500, Some("400 Parameter verification failed.\nvmid: property is missing\n"))
    );

    // A new selection replaces the old one: vmid on an `all` job drops `all`.
    assert_eq!(lab.pve(0, "PUT", "/cluster/backup/j1", &[("vmid", "100,101")]).0, 200);
    let (_, one) = lab.pve(0, "GET", "/cluster/backup/j1", &[]);
    assert!(one["data"].get("all").is_none() && one["data"]["vmid"] == "100,101", "{one}");
    let (c, v) = lab.pve(0, "PUT", "/cluster/backup/j1", &[]);
    assert_eq!((c, v["message"].as_str()), (500, Some("no options specified\n")));
}

/// PVE-TASK-MISSING: a task status for a UPID this node has no log of is a parameter error;
/// the log endpoint has no such check and answers the failed open as its one line.
#[test]
fn task_endpoints_for_unknown_upids() {
    let lab = TestLab::up(107, &[]);
    let unknown = "UPID:pve1:0000ABCD:00001234:6500AAAA:cephcreatepool:x:root@pam:";
    let (c, v) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/status", enc(unknown)), &[]);
    assert_eq!((c, v["errors"]["upid"].as_str()), (400, Some("no such task")), "{v}");
    let (c, v) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(unknown)), &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["data"], serde_json::json!([{"n": 1, "t": "unable to open file - No such file or directory"}]));
}
