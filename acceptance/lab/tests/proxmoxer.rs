//! Conformance: Debian's python3-proxmoxer, a PVE client we did not write, works against the
//! lab unchanged.

mod common;

use common::TestLab;

const SCRIPT: &str = r#"
import json, sys, time
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

lab = json.load(open(sys.argv[1]))
s = lab["stores"][0]
host = s["nodes"][0]["address"]
user, rest = s["pve"]["api_token"].split("!", 1)
tname, tvalue = rest.split("=", 1)

def wait(node, upid):
    deadline = time.time() + 30
    while time.time() < deadline:
        st = node.tasks(upid).status.get()
        if st["status"] == "stopped":
            return st
        time.sleep(0.1)
    raise SystemExit("task %s did not finish" % upid)

# Token login.
tok = ProxmoxAPI(host, port=8006, user=user, token_name=tname, token_value=tvalue, verify_ssl=False)
nodes = tok.nodes.get()
assert [n["node"] for n in nodes] == ["pve1"], nodes
assert nodes[0]["status"] == "online"

# Ticket login (password), then everything with the ticket + CSRF token.
px = ProxmoxAPI(host, port=8006, user="root@pam", password=s["pve"]["root_password"], verify_ssl=False)
assert px.version.get()["version"].startswith("9.")
node = px.nodes("pve1")
node.ceph.init.post(network="127.0.0.0/8")
# Pools need a monitor: PVE cannot connect to Ceph before the first one exists.
assert wait(node, node.ceph.mon("pve1").post())["exitstatus"] == "OK"

# A bad parameter gets PVE's 400.
try:
    node.ceph.pool.post(name="bad", size=99)
    raise SystemExit("size=99 was accepted")
except ResourceException as e:
    assert e.status_code == 400, (e.status_code, str(e))
    assert "Parameter verification failed" in str(e), str(e)

# Create a pool, wait for its task, see it, delete it.
upid = node.ceph.pool.post(name="pxpool", size=3, min_size=2, pg_num=32, application="rbd")
assert upid.startswith("UPID:pve1:"), upid
st = wait(node, upid)
assert st["exitstatus"] == "OK", st
pools = {p["pool_name"]: p for p in node.ceph.pool.get()}
assert pools["pxpool"]["size"] == 3, pools
log = node.tasks(upid).log.get()
assert log[-1]["t"] == "TASK OK", log
upid = node.ceph.pool("pxpool").delete()
assert wait(node, upid)["exitstatus"] == "OK"
assert "pxpool" not in [p["pool_name"] for p in node.ceph.pool.get()]

# A backup job.
px.cluster.backup.post(id="px-nightly", all=1, schedule="sun 01:00", storage="local", mode="snapshot")
job = px.cluster.backup("px-nightly").get()
assert job["schedule"] == "sun 01:00", job

# PBS through the same client (token with ':' separator).
pbs = s["pbs"]
puser, prest = pbs["api_token"].split("!", 1)
pname, pvalue = prest.split(":", 1)
pb = ProxmoxAPI(pbs["address"], port=8007, service="PBS", user=puser, token_name=pname, token_value=pvalue, verify_ssl=False)
stores = [d["name"] for d in pb.config.datastore.get()]
assert pbs["datastore"] in stores, stores
print("PROXMOXER-OK")
"#;

#[test]
fn proxmoxer_works_unchanged() {
    let python = "/usr/bin/python3";
    let probe = std::process::Command::new(python).args(["-c", "import proxmoxer"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "python3-proxmoxer is required (apt-get install python3-proxmoxer): {probe:?}"
    );
    let lab = TestLab::up(70, &[]);
    let script = lab.path().join("conformance.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(lab.path().join("lab.json"))
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("PROXMOXER-OK"), "proxmoxer script failed:\n{text}");
}
