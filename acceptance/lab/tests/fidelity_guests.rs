//! QEMU guests, backup job runs and restores from PBS as qemu-server, pve-manager, pve-storage
//! and proxmox-backup answer them (FIDELITY.md rows PVE-QEMU-*, PVE-NEXTID, PVE-VZDUMP-SELECT,
//! DIFF-VZDUMP-RUN, DIFF-QEMU-MODEL). One lab (`--net 124`) per test.

mod common;

use common::{enc, TestLab};
use serde_json::{json, Value};

const STORAGE: &str = "pbs-edge";

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().trim_end().to_string()
}

/// A PBS storage on pve1 pointing at the store's datastore, and the backup job `daily`.
fn storage_and_job(lab: &TestLab, selection: &[(&str, &str)]) -> String {
    let pbs =
        lab.store(0)["pbs"]["endpoint"].as_str().unwrap().trim_start_matches("https://").trim_end_matches(":8007");
    let ds = lab.store(0)["pbs"]["datastore"].as_str().unwrap().to_string();
    let fp = lab.store(0)["pbs"]["tls_fingerprint"].as_str().unwrap().to_string();
    let pw = lab.store(0)["pbs"]["root_password"].as_str().unwrap().to_string();
    let (c, v) = lab.pve(
        0,
        "POST",
        "/storage",
        &[
            ("storage", STORAGE),
            ("type", "pbs"),
            ("server", pbs),
            ("datastore", &ds),
            ("username", "root@pam"),
            ("password", &pw),
            ("fingerprint", &fp),
        ],
    );
    assert_eq!(c, 200, "{v}");
    let mut form = vec![("id", "daily"), ("schedule", "02:00"), ("storage", STORAGE)];
    form.extend_from_slice(selection);
    let (c, v) = lab.pve(0, "POST", "/cluster/backup", &form);
    assert_eq!(c, 200, "{v}");
    ds
}

fn seed(lab: &TestLab, node: &str, vmid: u32, extra: Value) {
    let mut body = json!({"node": node, "vmid": vmid, "name": format!("g{vmid}"), "disk_gb": 2});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let (c, v) = lab.admin("POST", "/lab/guests", Some(body));
    assert_eq!(c, 200, "{v}");
}

fn run_job(lab: &TestLab) -> Value {
    let (c, v) = lab.admin("POST", "/lab/stores/store-001/backup-jobs/daily/run", Some(json!({})));
    assert_eq!(c, 200, "{v}");
    v
}

fn task_log(lab: &TestLab, upid: &str) -> Vec<String> {
    let (c, v) = lab.pve(0, "GET", &format!("/nodes/pve1/tasks/{}/log", enc(upid)), &[("limit", "500")]);
    assert_eq!(c, 200, "{v}");
    v["data"].as_array().unwrap().iter().map(|l| l["t"].as_str().unwrap_or_default().to_string()).collect()
}

fn vmids(lab: &TestLab, node: usize, name: &str) -> Vec<u64> {
    let (c, v) = lab.pve(node, "GET", &format!("/nodes/{name}/qemu"), &[]);
    assert_eq!(c, 200, "{v}");
    let mut ids: Vec<u64> = v["data"].as_array().unwrap().iter().filter_map(|g| g["vmid"].as_u64()).collect();
    ids.sort();
    ids
}

/// PVE-QEMU-LIST, PVE-NEXTID, PVE-QEMU-AGENT, PVE-QEMU-POWER, PVE-QEMU-DESTROY, PVE-QEMU-CONFIG.
#[test]
fn guests_power_agent_and_destroy_as_qemu_server_answers() {
    let lab = TestLab::up(124, &[]);
    seed(&lab, "pve1", 100, json!({"running": false}));
    seed(&lab, "pve1", 101, json!({"agent": false}));
    seed(&lab, "pve1", 102, json!({"os_agent": false}));

    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/qemu", &[]);
    assert_eq!(c, 200, "{v}");
    let g100 = v["data"].as_array().unwrap().iter().find(|g| g["vmid"] == 100).unwrap().clone();
    assert_eq!(
        (g100["status"].as_str(), g100["name"].as_str(), g100["maxdisk"].as_u64()),
        (Some("stopped"), Some("g100"), Some(2 << 30))
    );
    // nextid: the lowest free id; a given one echoed as given; a taken one a parameter error.
    assert_eq!(lab.pve(0, "GET", "/cluster/nextid", &[]).1["data"], json!(103));
    assert_eq!(lab.pve(0, "GET", "/cluster/nextid", &[("vmid", "9000")]).1["data"], json!("9000"));
    let (c, v) = lab.pve(0, "GET", "/cluster/nextid", &[("vmid", "101")]);
    assert_eq!((c, v["errors"]["vmid"].as_str()), (400, Some("VM 101 already exists")), "{v}");

    // The agent: not configured, guest stopped, agent not up, answering.
    let ping = |vmid: u32| lab.pve(0, "POST", &format!("/nodes/pve1/qemu/{vmid}/agent/ping"), &[]);
    let (c, v) = ping(101);
    assert_eq!((c, message(&v)), (500, "No QEMU guest agent configured".into()));
    // `agent: 0` is configured (`defined`), so the running guest is pinged, and nothing answers.
    let (c, v) = lab.pve(0, "PUT", "/nodes/pve1/qemu/101/config", &[("agent", "0")]);
    assert_eq!(c, 200, "{v}");
    let (c, v) = ping(101);
    assert_eq!((c, message(&v)), (500, "QEMU guest agent is not running".into()));
    let (c, v) = ping(100);
    assert_eq!((c, message(&v)), (500, "VM 100 is not running".into()));
    let (c, v) = ping(102);
    assert_eq!((c, message(&v)), (500, "QEMU guest agent is not running".into()));
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    assert_eq!(c, 200, "{v}");
    let st = lab.wait_task(0, v["data"].as_str().unwrap());
    assert_eq!(
        (st["exitstatus"].as_str(), st["type"].as_str(), st["id"].as_str()),
        (Some("OK"), Some("qmstart"), Some("100"))
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (c, v) = ping(100);
        if c == 200 {
            assert_eq!(v["data"], json!({"result": {}}));
            break;
        }
        assert_eq!(message(&v), "QEMU guest agent is not running", "while the guest boots");
        assert!(std::time::Instant::now() < deadline, "the agent never answered");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/qemu/100/status/current", &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(
        (v["data"]["status"].as_str(), v["data"]["qmpstatus"].as_str(), v["data"]["agent"].as_i64()),
        (Some("running"), Some("running"), Some(1))
    );
    assert!(v["data"]["diskread"].as_u64().unwrap() > 0, "a booted guest has read its disk: {v}");
    assert_eq!(v["data"]["ha"], json!({"managed": 0}));
    // Starting a running guest fails in its task.
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "VM 100 already running");

    // Config: the network device goes with `delete`; the digest changes.
    let (_, before) = lab.pve(0, "GET", "/nodes/pve1/qemu/101/config", &[]);
    assert!(before["data"]["net0"].as_str().unwrap().contains("bridge=vmbr0"), "{before}");
    let (c, v) = lab.pve(0, "PUT", "/nodes/pve1/qemu/101/config", &[("delete", "net0")]);
    assert_eq!((c, &v["data"]), (200, &Value::Null), "{v}");
    let (_, after) = lab.pve(0, "GET", "/nodes/pve1/qemu/101/config", &[]);
    assert!(after["data"].get("net0").is_none() && after["data"]["digest"] != before["data"]["digest"], "{after}");

    // Destroy: refused while running, a missing config is load_config's error.
    let (c, v) = lab.pve(0, "DELETE", "/nodes/pve1/qemu/100", &[("purge", "1")]);
    assert_eq!((c, message(&v)), (500, "VM 100 is running - destroy failed".into()));
    let (c, v) = lab.pve(0, "DELETE", "/nodes/pve1/qemu/555", &[]);
    assert_eq!((c, message(&v)), (500, "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist".into()));
    let (c, v) = lab.pve(0, "GET", "/nodes/pve1/qemu/555/status/current", &[]);
    assert_eq!((c, message(&v)), (500, "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist".into()));
    let (_, v) = lab.pve(0, "POST", "/nodes/pve1/qemu/100/status/stop", &[]);
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    let (c, v) = lab.pve(0, "DELETE", "/nodes/pve1/qemu/100", &[("purge", "1")]);
    assert_eq!(c, 200, "{v}");
    let st = lab.wait_task(0, v["data"].as_str().unwrap());
    assert_eq!((st["exitstatus"].as_str(), st["type"].as_str()), (Some("OK"), Some("qmdestroy")));
    assert_eq!(vmids(&lab, 0, "pve1"), [101, 102]);
    // Standalone nodes: each has its own vmlist.
    assert_eq!(lab.pve(1, "GET", "/cluster/nextid", &[]).1["data"], json!(100));
}

/// PVE-VZDUMP-SELECT, DIFF-VZDUMP-RUN, PVE-QEMU-RESTORE, PVE-QEMU-RESTORE-CHUNK,
/// PVE-QEMU-RESTORE-FULL, DIFF-QEMU-MODEL.
#[test]
fn backup_job_runs_and_restores_as_qemu_server_runs_them() {
    let lab = TestLab::up(125, &[]);
    let ds = storage_and_job(&lab, &[("all", "1"), ("exclude", "102")]);
    for vmid in [100, 101, 102] {
        seed(&lab, "pve1", vmid, json!({}));
    }
    // `all` with `exclude`: every guest but 102, one snapshot each, the config recorded.
    let ran = run_job(&lab);
    let names: Vec<&str> =
        ran["snapshots"].as_array().unwrap().iter().map(|s| s["snapshot"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{ran}");
    assert!(names[0].starts_with("vm/100/") && names[1].starts_with("vm/101/"), "{ran}");
    let (c, snaps) = lab.pbs("GET", &format!("/admin/datastore/{ds}/snapshots"), &[("backup-id", "100")]);
    assert_eq!(c, 200, "{snaps}");
    let files: Vec<&str> =
        snaps["data"][0]["files"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert_eq!(files, ["qemu-server.conf.blob", "drive-scsi0.img.fidx", "index.json.blob"]);
    let time = snaps["data"][0]["backup-time"].as_i64().unwrap();
    // A `vmid` list names guests that may not exist: those are not backed up.
    let (c, v) = lab.pve(0, "PUT", "/cluster/backup/daily", &[("vmid", "102,177")]);
    assert_eq!(c, 200, "{v}");
    let ran = run_job(&lab);
    assert_eq!((ran["snapshots"].as_array().unwrap().len(), &ran["not_found"]), (1, &json!([177])), "{ran}");

    let archive = |t: i64| format!("{STORAGE}:backup/vm/100/{}", rfc3339(t));
    // Refused before the task.
    let restore = |vmid: &str, archive: &str, extra: &[(&str, &str)]| {
        let mut form = vec![("vmid", vmid), ("archive", archive)];
        form.extend_from_slice(extra);
        lab.pve(0, "POST", "/nodes/pve1/qemu", &form)
    };
    let (c, v) = restore("9000", &format!("{STORAGE}:backup/vm/100/2024-01-01 00:00:00"), &[]);
    assert_eq!((c, message(&v)), (500, "unable to parse PBS volume name 'backup/vm/100/2024-01-01 00:00:00'".into()));
    let (c, v) = restore("9000", "nope:backup/vm/100/2024-01-01T00:00:00Z", &[]);
    assert_eq!((c, message(&v)), (500, "storage 'nope' does not exist".into()));
    let (c, v) = restore("101", &archive(time), &[]);
    assert_eq!((c, message(&v)), (500, "VM 101 already exists on node 'pve1'".into()));
    let (c, v) = restore("9000", &archive(time), &[("storage", "nope")]);
    assert_eq!((c, message(&v)), (500, "storage 'nope' does not exist".into()));

    // A restore: the backup's config with new MACs (`unique`), the disk on the backup's storage,
    // not started.
    let (c, v) = restore("9000", &archive(time), &[("unique", "1")]);
    assert_eq!(c, 200, "{v}");
    let upid = v["data"].as_str().unwrap().to_string();
    assert!(upid.contains(":qmrestore:9000:"), "{upid}");
    assert_eq!(lab.wait_task(0, &upid)["exitstatus"], "OK");
    let log = task_log(&lab, &upid);
    assert!(log.iter().any(|l| l == "new volume ID is 'local-lvm:vm-9000-disk-0'"), "{log:#?}");
    assert!(
        log.iter().any(|l| l.starts_with("restore proxmox backup image: /usr/bin/pbs-restore --repository root@pam@")),
        "{log:#?}"
    );
    let (_, orig) = lab.pve(0, "GET", "/nodes/pve1/qemu/100/config", &[]);
    let (_, copy) = lab.pve(0, "GET", "/nodes/pve1/qemu/9000/config", &[]);
    assert_eq!(copy["data"]["name"], orig["data"]["name"]);
    assert_eq!(copy["data"]["scsi0"], "local-lvm:vm-9000-disk-0,size=2G");
    assert_ne!(copy["data"]["net0"], orig["data"]["net0"], "unique: a new MAC");
    assert!(copy["data"]["net0"].as_str().unwrap().ends_with(",bridge=vmbr0,firewall=1"), "{copy}");
    let (_, st) = lab.pve(0, "GET", "/nodes/pve1/qemu/9000/status/current", &[]);
    assert_eq!(st["data"]["status"], "stopped");

    // A chunk missing from the chunk store: pbs-restore fails reading it, the task names the
    // command, the log the chunk; the config goes with the volumes.
    let (c, lost) = lab.admin("POST", "/lab/backups/missing-chunk", Some(json!({"backup_id": "101"})));
    assert_eq!(c, 200, "{lost}");
    let chunk = lost["chunk"].as_str().unwrap().to_string();
    let (_, v) = restore(
        "9001",
        &format!("{STORAGE}:backup/vm/101/{}", lost["snapshot"].as_str().unwrap().rsplit('/').next().unwrap()),
        &[],
    );
    let upid = v["data"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    let st = lab.wait_task(0, &upid);
    let exit = st["exitstatus"].as_str().unwrap();
    assert!(
        exit.starts_with("command '/usr/bin/pbs-restore --repository root@pam@")
            && exit.ends_with("' failed: exit code 255"),
        "{exit}"
    );
    let log = task_log(&lab, &upid);
    let path = format!("/mnt/datastore/store1/.chunks/{}/{chunk}", &chunk[..4]);
    let want = format!("restore failed: reading file \"{path}\" failed: No such file or directory (os error 2)");
    assert!(log.contains(&want), "{log:#?}");
    assert_eq!(log.last().unwrap(), &format!("TASK ERROR: {exit}"));
    assert_eq!(vmids(&lab, 0, "pve1"), [100, 101, 102, 9000], "a failed restore leaves no config");

    // The target storage full: lvcreate refuses the thin volume before anything is read.
    let (c, v) = lab.admin("POST", "/lab/storage-full", Some(json!({"node": "pve1", "storage": "local-lvm"})));
    assert_eq!(c, 200, "{v}");
    let (_, v) = restore("9002", &archive(time), &[]);
    let st = lab.wait_task(0, v["data"].as_str().unwrap());
    assert_eq!(
        st["exitstatus"],
        "lvcreate 'pve/vm-9002-disk-0' error:   Cannot create new thin volume, free space in thin pool pve/data reached threshold."
    );
    assert_eq!(vmids(&lab, 0, "pve1"), [100, 101, 102, 9000]);
    // Only PBS archives and restores are modelled.
    let (c, v) = lab.pve(0, "POST", "/nodes/pve1/qemu", &[("vmid", "9003")]);
    assert_eq!(c, 500, "{v}");
    assert!(message(&v).starts_with("edge-lab: "), "{v}");
}

/// `%FT%TZ`, as PVE's PBS plugin names snapshots.
fn rfc3339(t: i64) -> String {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%FT%TZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
