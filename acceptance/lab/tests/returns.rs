//! Walks every implemented PVE and PBS endpoint and checks each answer against the method's
//! `returns` schema from Proxmox's published API description.

mod common;

use std::collections::BTreeSet;

use common::{enc, TestLab};
use edge_lab::schema::{check_returns, Product, Schema};
use serde_json::{json, Value};

/// Answers real Proxmox gives although its own `returns` says otherwise (the API server does
/// not check responses), reproduced on purpose: (method, template, what the checker says, the
/// FIDELITY.md row).
const KNOWN_DEVIATIONS: &[(&str, &str, &str, &str)] = &[
    ("GET", "/nodes/{node}/ceph/pool/{name}/status", "expected boolean, got \"", "PVE-POOL-FLAGS"),
    ("GET", "/admin/datastore/{store}/snapshots", "expected string, got {", "PBS-SNAPSHOTS-FILES"),
];

struct Walker<'a> {
    lab: &'a TestLab,
    pve: Schema,
    pbs: Schema,
    seen: BTreeSet<(Product, String, String)>,
    failures: Vec<String>,
}

impl Walker<'_> {
    fn check(&mut self, product: Product, node: usize, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        self.check_as(false, product, node, method, path, form)
    }

    /// [`Walker::check`] as root@pam (a ticket): methods without `permissions` refuse tokens.
    fn check_root(&mut self, node: usize, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        self.check_as(true, Product::Pve, node, method, path, form)
    }

    fn check_as(
        &mut self,
        root: bool,
        product: Product,
        node: usize,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Value {
        let (code, v) = match product {
            Product::Pve if root => self.lab.pve_root(node, method, path, form),
            Product::Pve => self.lab.pve(node, method, path, form),
            Product::Pbs => self.lab.pbs(method, path, form),
        };
        let schema = if product == Product::Pve { &self.pve } else { &self.pbs };
        let (ep, _) = schema.route(path).unwrap_or_else(|| panic!("{path} not in schema"));
        let template = ep.path.clone();
        assert_eq!(code, 200, "{product:?} {method} {path}: {v}");
        let returns = ep.info.get(method).and_then(|i| i.get("returns")).cloned().unwrap_or(Value::Null);
        for e in check_returns(schema, &returns, &v["data"]) {
            let known =
                KNOWN_DEVIATIONS.iter().any(|(m, t, needle, _)| *m == method && *t == template && e.contains(needle));
            if !known {
                self.failures.push(format!("{product:?} {method} {template}: {e}"));
            }
        }
        self.seen.insert((product, method.to_string(), template));
        v["data"].clone()
    }

    fn task(&mut self, product: Product, node: usize, upid: &Value) {
        let upid = upid.as_str().expect("a UPID").to_string();
        let n = upid.split(':').nth(1).unwrap().to_string();
        if product == Product::Pve {
            // Through a cluster create or join the node's API is briefly away (pmxcfs, pveproxy
            // restarting): wait that out, then check the status answer.
            self.lab.wait_task_root(node, &upid);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let path = match product {
                Product::Pve => format!("/nodes/{n}/tasks/{}/status", enc(&upid)),
                Product::Pbs => format!("/nodes/localhost/tasks/{}/status", enc(&upid)),
            };
            let st = self.check(product, node, "GET", &path, &[]);
            if st["status"] == "stopped" {
                assert_eq!(st["exitstatus"], "OK", "{upid}: {st}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "task {upid} hangs");
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
    }
}

#[test]
fn every_implemented_endpoint_matches_returns_on_the_newest_releases() {
    walk_everything("9.1", "4.0", 69);
}

#[test]
fn every_implemented_endpoint_matches_returns_on_the_oldest_releases() {
    walk_everything("8.4", "3.2", 74);
}

/// Calls every implemented endpoint once on a lab of the given profiles and checks each answer
/// against that release's `returns`.
fn walk_everything(pve_version: &str, pbs_version: &str, net: u8) {
    let pve = Schema::embedded(Product::Pve, pve_version).expect("pve schema");
    let pbs = Schema::embedded(Product::Pbs, pbs_version).expect("pbs schema");
    let lab = TestLab::up(net, &["--pve", pve_version, "--pbs", pbs_version]);
    assert_eq!(lab.json["profiles"]["pve"], pve_version);
    assert_eq!(lab.json["profiles"]["pbs"], pbs_version);
    let pw = lab.store(0)["pve"]["root_password"].as_str().unwrap().to_string();
    let mut w = Walker { lab: &lab, pve, pbs, seen: BTreeSet::new(), failures: Vec::new() };
    use Product::{Pbs, Pve};

    // --- PVE ---
    w.check(Pve, 0, "GET", "/version", &[]);
    w.check(Pve, 0, "GET", "/access/ticket", &[]);
    w.check(Pve, 0, "POST", "/access/ticket", &[("username", "root@pam"), ("password", &pw)]);
    w.check(Pve, 0, "POST", "/access/users/root@pam/token/t1", &[("comment", "c")]);
    w.check(Pve, 0, "GET", "/access/users/root@pam/token", &[]);
    w.check(Pve, 0, "GET", "/access/users/root@pam/token/t1", &[]);
    w.check(Pve, 0, "PUT", "/access/users/root@pam/token/t1", &[("comment", "d")]);
    w.check(Pve, 0, "PUT", "/access/acl", &[("path", "/"), ("roles", "PVEAuditor"), ("tokens", "root@pam!t1")]);
    w.check(Pve, 0, "GET", "/access/acl", &[]);
    w.check(Pve, 0, "DELETE", "/access/users/root@pam/token/t1", &[]);
    w.check(Pve, 0, "GET", "/nodes", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/status", &[]);
    w.check(Pve, 0, "PUT", "/nodes/pve1/dns", &[("search", "edge.lan"), ("dns1", "10.0.0.1")]);
    w.check(Pve, 0, "GET", "/nodes/pve1/dns", &[]);
    w.check(Pve, 0, "PUT", "/nodes/pve1/time", &[("timezone", "Europe/Vienna")]);
    w.check(Pve, 0, "GET", "/nodes/pve1/time", &[]);
    w.check(
        Pve,
        0,
        "POST",
        "/nodes/pve1/network",
        &[("iface", "vmbr1"), ("type", "bridge"), ("cidr", "10.1.0.11/24"), ("autostart", "1")],
    );
    w.check(Pve, 0, "GET", "/nodes/pve1/network", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/network/vmbr1", &[]);
    w.check(Pve, 0, "PUT", "/nodes/pve1/network/vmbr1", &[("type", "bridge"), ("comments", "ceph")]);
    let up = w.check(Pve, 0, "PUT", "/nodes/pve1/network", &[]);
    w.task(Pve, 0, &up);
    w.check(Pve, 0, "DELETE", "/nodes/pve1/network/vmbr1", &[]);
    w.check(Pve, 0, "DELETE", "/nodes/pve1/network", &[]);
    // Cluster (pve2 joins; Ceph below uses both nodes; delnode at the end).
    w.check(Pve, 0, "GET", "/cluster/config", &[]);
    let t = w.check_root(0, "POST", "/cluster/config", &[("clustername", "edge")]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/cluster/config/join", &[]);
    let fp = lab.store(0)["nodes"][0]["tls_fingerprint"].as_str().unwrap().to_string();
    let addr = lab.store(0)["nodes"][0]["address"].as_str().unwrap().to_string();
    let t = w.check_root(
        1,
        "POST",
        "/cluster/config/join",
        &[("hostname", &addr), ("fingerprint", &fp), ("password", &pw), ("link0", &addr)],
    );
    w.task(Pve, 1, &t);
    w.check(Pve, 0, "GET", "/cluster/config/nodes", &[]);
    w.check(Pve, 0, "GET", "/cluster/status", &[]);
    // Ceph roles and pools. The first monitor brings its manager (a task of its own).
    w.check(Pve, 0, "POST", "/nodes/pve1/ceph/init", &[]);
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/ceph/mon/pve1", &[]);
    w.task(Pve, 0, &t);
    let mgr = loop {
        let list = w.check(Pve, 0, "GET", "/nodes/pve1/tasks", &[("typefilter", "cephcreatemgr")]);
        if let Some(t) = list.as_array().and_then(|a| a.first()) {
            break t["upid"].clone();
        }
    };
    w.task(Pve, 0, &mgr);
    let t = w.check(Pve, 0, "DELETE", "/nodes/pve1/ceph/mgr/pve1", &[]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/ceph/mgr/pve1", &[]);
    w.task(Pve, 0, &t);
    let t = w.check_root(0, "POST", "/nodes/pve1/ceph/osd", &[("dev", "/dev/sdb")]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/status", &[]);
    w.check(Pve, 0, "GET", "/cluster/ceph/flags", &[]);
    w.check(Pve, 0, "PUT", "/cluster/ceph/flags/noout", &[("value", "1")]);
    w.check(Pve, 0, "GET", "/cluster/ceph/flags/noout", &[]);
    w.check(Pve, 0, "PUT", "/cluster/ceph/flags/noout", &[("value", "0")]);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/mon", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/mgr", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/osd", &[]);
    let t = w.check(
        Pve,
        0,
        "POST",
        "/nodes/pve1/ceph/pool",
        &[("name", "vm-pool"), ("size", "3"), ("min_size", "2"), ("pg_num", "32"), ("add_storages", "1")],
    );
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/pool", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/pool/vm-pool", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/ceph/pool/vm-pool/status", &[("verbose", "1")]);
    let t = w.check(Pve, 0, "PUT", "/nodes/pve1/ceph/pool/vm-pool", &[("size", "2"), ("target_size_ratio", "0.5")]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "DELETE", "/nodes/pve1/ceph/pool/vm-pool", &[("remove_storages", "1")]);
    w.task(Pve, 0, &t);
    let t = w.check_root(0, "DELETE", "/nodes/pve1/ceph/osd/0", &[]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "DELETE", "/nodes/pve1/ceph/mgr/pve1", &[]);
    w.task(Pve, 0, &t);
    // The last monitor cannot go: a second one on pve2 (through pve1), removed again.
    let t = w.check(Pve, 0, "POST", "/nodes/pve2/ceph/mon/pve2", &[]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "DELETE", "/nodes/pve2/ceph/mon/pve2", &[]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/nodes/pve1/disks/list", &[]);
    let t = w.check_root(0, "PUT", "/nodes/pve1/disks/wipedisk", &[("disk", "/dev/sde")]);
    w.task(Pve, 0, &t);
    w.check_root(0, "DELETE", "/cluster/config/nodes/pve2", &[]);
    // Backup jobs and storages.
    w.check(
        Pve,
        0,
        "POST",
        "/storage",
        &[("storage", "local2"), ("type", "dir"), ("path", "/var/lib/vz2"), ("content", "images,backup")],
    );
    w.check(Pve, 0, "GET", "/storage", &[]);
    w.check(Pve, 0, "GET", "/storage/local2", &[]);
    w.check(Pve, 0, "PUT", "/storage/local2", &[("content", "backup")]);
    w.check(
        Pve,
        0,
        "POST",
        "/cluster/backup",
        &[("id", "nightly"), ("all", "1"), ("schedule", "mon..fri 02:30"), ("storage", "local2"), ("mode", "snapshot")],
    );
    w.check(Pve, 0, "GET", "/cluster/backup", &[]);
    w.check(Pve, 0, "GET", "/cluster/backup/nightly", &[]);
    w.check(Pve, 0, "PUT", "/cluster/backup/nightly", &[("schedule", "sun 01:00"), ("delete", "mode")]);
    w.check(Pve, 0, "DELETE", "/cluster/backup/nightly", &[]);
    w.check(Pve, 0, "DELETE", "/storage/local2", &[]);
    // Guests: one seeded, backed up by a run of its job into the store's datastore, restored
    // into a new guest through a PBS storage, started, stopped, destroyed.
    let pbs = w.lab.store(0)["pbs"].clone();
    let (pbs_host, store_ds) = (
        pbs["endpoint"].as_str().unwrap().trim_start_matches("https://").trim_end_matches(":8007").to_string(),
        pbs["datastore"].as_str().unwrap().to_string(),
    );
    let (pbs_fp, pbs_pw) = (pbs["tls_fingerprint"].as_str().unwrap(), pbs["root_password"].as_str().unwrap());
    w.check(
        Pve,
        0,
        "POST",
        "/storage",
        &[
            ("storage", "pbs1"),
            ("type", "pbs"),
            ("server", &pbs_host),
            ("datastore", &store_ds),
            ("username", "root@pam"),
            ("password", pbs_pw),
            ("fingerprint", pbs_fp),
        ],
    );
    w.check(
        Pve,
        0,
        "POST",
        "/cluster/backup",
        &[("id", "guests"), ("vmid", "100"), ("schedule", "02:00"), ("storage", "pbs1")],
    );
    let seeded = w.lab.admin("POST", "/lab/guests", Some(json!({"node": "pve1", "vmid": 100, "name": "web"})));
    assert_eq!(seeded.0, 200, "{}", seeded.1);
    let (code, ran) = w.lab.admin("POST", "/lab/stores/store-001/backup-jobs/guests/run", Some(json!({})));
    assert_eq!(code, 200, "{ran}");
    let snap = ran["snapshots"][0]["snapshot"].as_str().expect("a snapshot").to_string();
    w.check(Pve, 0, "GET", "/cluster/nextid", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/qemu", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/qemu/100/status/current", &[]);
    w.check(Pve, 0, "GET", "/nodes/pve1/qemu/100/config", &[]);
    w.check(Pve, 0, "POST", "/nodes/pve1/qemu/100/agent/ping", &[]);
    let archive = format!("pbs1:backup/{snap}");
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/qemu", &[("vmid", "9000"), ("archive", &archive), ("unique", "1")]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "PUT", "/nodes/pve1/qemu/9000/config", &[("delete", "net0")]);
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/qemu/9000/status/start", &[]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/qemu/9000/status/stop", &[]);
    w.task(Pve, 0, &t);
    let t = w.check(Pve, 0, "DELETE", "/nodes/pve1/qemu/9000", &[("purge", "1")]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "DELETE", "/cluster/backup/guests", &[]);
    w.check(Pve, 0, "DELETE", "/storage/pbs1", &[]);
    // ACME: directory, account, plugins, node config, an order, certificate info.
    let dirs = w.check(Pve, 0, "GET", "/cluster/acme/directories", &[]);
    let dir = dirs[0]["url"].as_str().unwrap().to_string();
    let tos = w.check(Pve, 0, "GET", "/cluster/acme/tos", &[("directory", &dir)]);
    let t = w.check_root(
        0,
        "POST",
        "/cluster/acme/account",
        &[("contact", "ops@store1.example"), ("directory", &dir), ("tos_url", tos.as_str().unwrap())],
    );
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/cluster/acme/account", &[]);
    w.check_root(0, "GET", "/cluster/acme/account/default", &[]);
    w.check(
        Pve,
        0,
        "POST",
        "/cluster/acme/plugins",
        &[("id", "dns1"), ("type", "dns"), ("api", "pdns"), ("data", "UEROU19Ub2tlbj14")],
    );
    w.check(Pve, 0, "PUT", "/cluster/acme/plugins/dns1", &[("validation-delay", "0")]);
    w.check(Pve, 0, "GET", "/cluster/acme/plugins", &[]);
    w.check(Pve, 0, "GET", "/cluster/acme/plugins/dns1", &[]);
    w.check(
        Pve,
        0,
        "PUT",
        "/nodes/pve1/config",
        &[("acme", "account=default"), ("acmedomain0", "domain=pve1.store1.example,plugin=dns1")],
    );
    w.check(Pve, 0, "GET", "/nodes/pve1/config", &[]);
    let t = w.check(Pve, 0, "POST", "/nodes/pve1/certificates/acme/certificate", &[]);
    w.task(Pve, 0, &t);
    w.check(Pve, 0, "GET", "/nodes/pve1/certificates/info", &[]);
    w.check(Pve, 0, "DELETE", "/nodes/pve1/certificates/custom", &[]);
    w.check(Pve, 0, "PUT", "/nodes/pve1/config", &[("delete", "acme,acmedomain0")]);
    w.check(Pve, 0, "DELETE", "/cluster/acme/plugins/dns1", &[]);
    // Tasks.
    let list = w.check(Pve, 0, "GET", "/nodes/pve1/tasks", &[("limit", "5")]);
    let upid = list[0]["upid"].as_str().unwrap().to_string();
    w.check(Pve, 0, "GET", &format!("/nodes/pve1/tasks/{}", enc(&upid)), &[]);
    w.check(Pve, 0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(&upid)), &[("start", "0"), ("limit", "10")]);
    w.check(Pve, 0, "DELETE", &format!("/nodes/pve1/tasks/{}", enc(&upid)), &[]);

    // --- PBS ---
    w.check(Pbs, 0, "GET", "/version", &[]);
    w.check(Pbs, 0, "POST", "/access/ticket", &[("username", "root@pam"), ("password", &pw)]);
    w.check(Pbs, 0, "POST", "/access/users/root@pam/token/sync1", &[("comment", "c")]);
    w.check(Pbs, 0, "GET", "/access/users/root@pam/token", &[]);
    w.check(Pbs, 0, "GET", "/access/users/root@pam/token/sync1", &[]);
    w.check(Pbs, 0, "DELETE", "/access/users/root@pam/token/sync1", &[]);
    // A datastore is created by a worker task (the answer is its UPID).
    let t = w.check(
        Pbs,
        0,
        "POST",
        "/config/datastore",
        &[("name", "ds2"), ("path", "/mnt/ds2"), ("gc-schedule", "daily")],
    );
    w.task(Pbs, 0, &t);
    w.check(Pbs, 0, "GET", "/config/datastore", &[]);
    w.check(Pbs, 0, "GET", "/config/datastore/ds2", &[]);
    w.check(Pbs, 0, "PUT", "/config/datastore/ds2", &[("comment", "second")]);
    w.check(Pbs, 0, "GET", "/admin/datastore", &[]);
    w.check(
        Pbs,
        0,
        "POST",
        "/config/remote",
        &[("name", "offsite"), ("host", "10.9.0.1"), ("auth-id", "sync@pbs"), ("password", "pw")],
    );
    w.check(Pbs, 0, "GET", "/config/remote", &[]);
    w.check(Pbs, 0, "GET", "/config/remote/offsite", &[]);
    w.check(Pbs, 0, "PUT", "/config/remote/offsite", &[("comment", "x")]);
    w.check(
        Pbs,
        0,
        "POST",
        "/config/sync",
        &[
            ("id", "pull-1"),
            ("store", "ds2"),
            ("remote", "offsite"),
            ("remote-store", "store9"),
            ("schedule", "hourly"),
        ],
    );
    w.check(Pbs, 0, "GET", "/config/sync", &[]);
    w.check(Pbs, 0, "GET", "/config/sync/pull-1", &[]);
    w.check(Pbs, 0, "PUT", "/config/sync/pull-1", &[("schedule", "daily")]);
    w.check(Pbs, 0, "DELETE", "/config/sync/pull-1", &[]);
    w.check(Pbs, 0, "POST", "/config/verify", &[("id", "verify-1"), ("store", "ds2"), ("schedule", "daily")]);
    w.check(Pbs, 0, "GET", "/config/verify", &[]);
    w.check(Pbs, 0, "GET", "/config/verify/verify-1", &[]);
    w.check(Pbs, 0, "PUT", "/config/verify/verify-1", &[("outdated-after", "30")]);
    let t = w.check(Pbs, 0, "POST", "/admin/verify/verify-1/run", &[]);
    w.task(Pbs, 0, &t);
    w.check(Pbs, 0, "DELETE", "/config/verify/verify-1", &[]);
    w.check(
        Pbs,
        0,
        "POST",
        "/config/prune",
        &[("id", "prune-1"), ("store", "ds2"), ("schedule", "daily"), ("keep-last", "7")],
    );
    w.check(Pbs, 0, "GET", "/config/prune", &[]);
    w.check(Pbs, 0, "GET", "/config/prune/prune-1", &[]);
    w.check(Pbs, 0, "PUT", "/config/prune/prune-1", &[("keep-daily", "7")]);
    w.check(Pbs, 0, "DELETE", "/config/prune/prune-1", &[]);
    w.check(Pbs, 0, "DELETE", "/config/remote/offsite", &[]);
    let t = w.check(Pbs, 0, "POST", "/admin/datastore/ds2/gc", &[]);
    w.task(Pbs, 0, &t);
    w.check(Pbs, 0, "GET", "/admin/datastore/ds2/gc", &[]);
    let t = w.check(Pbs, 0, "DELETE", "/config/datastore/ds2", &[]);
    w.task(Pbs, 0, &t);
    let ds = w.lab.store(0)["pbs"]["datastore"].as_str().expect("datastore").to_string();
    for extra in [json!({"verify": "ok"}), json!({"finished": false, "backup_time": 1_700_003_600})] {
        let mut body = json!({"backup_type": "vm", "backup_id": "100", "backup_time": 1_700_000_000});
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        assert_eq!(w.lab.admin("POST", "/lab/backups", Some(body)).0, 200);
    }
    let snaps = w.check(Pbs, 0, "GET", &format!("/admin/datastore/{ds}/snapshots"), &[]);
    // The two added here and the guest backup of the job run above.
    assert_eq!(snaps.as_array().map(Vec::len), Some(3), "{snaps}");
    let list = w.check(Pbs, 0, "GET", "/nodes/localhost/tasks", &[]);
    let upid = list[0]["upid"].as_str().unwrap().to_string();
    w.check(Pbs, 0, "GET", &format!("/nodes/localhost/tasks/{}", enc(&upid)), &[]);
    w.check(Pbs, 0, "GET", &format!("/nodes/localhost/tasks/{}/log", enc(&upid)), &[]);
    w.check(Pbs, 0, "DELETE", &format!("/nodes/localhost/tasks/{}", enc(&upid)), &[]);
    // Last of all: the node goes away for a moment after a reboot (PVE-NODE-REBOOT).
    w.check(Pve, 0, "POST", "/nodes/pve1/status", &[("command", "reboot")]);

    // Every implemented endpoint was walked.
    let mut missing = Vec::new();
    for (p, list) in [(Pve, edge_lab::pve::IMPLEMENTED), (Pbs, edge_lab::pbs::IMPLEMENTED)] {
        for (m, t) in list {
            if !w.seen.contains(&(p, m.to_string(), t.to_string())) {
                missing.push(format!("{p:?} {m} {t}"));
            }
        }
    }
    assert!(missing.is_empty(), "implemented but not walked: {missing:#?}");
    assert!(w.failures.is_empty(), "responses violating `returns`:\n{}", w.failures.join("\n"));
    eprintln!("walked {} endpoints against `returns`", w.seen.len());
}

#[test]
fn coverage_command_passes() {
    let (ok, out) = common::run(&["coverage"]);
    assert!(ok, "{out}");
    for p in ["Pve 8.4:", "Pve 9.1:", "Pbs 3.2:", "Pbs 3.4:", "Pbs 4.0:"] {
        assert!(out.contains(p), "{p} missing in {out}");
    }
    eprintln!("{out}");
}
