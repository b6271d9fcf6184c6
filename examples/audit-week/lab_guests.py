#!/usr/bin/env python3
"""Gives a lab store what a restore test needs, as a real store has it (week.sh uses it):

    lab_guests.py LAB_JSON STORE [--agentless VMID]

- a PVE storage of type `pbs` (`pbs-edge`) pointing at the store's PBS datastore;
- two guests on pve1, 100 (pos) and 101 (back-office), with the QEMU guest agent enabled in
  their config; `--agentless VMID` gives that guest an OS in which the agent never runs (the
  failure a restore test must report);
- the nightly backup job (`/cluster/backup`, 02:00) of both to that storage, run once by the lab
  (standing for its schedule firing), so the datastore holds a finished snapshot of each.
PVE is called as root@pam with a ticket, as an administrator would set this up.
"""
import json
import ssl
import sys
import urllib.parse
import urllib.request

lab_path, store = sys.argv[1], sys.argv[2]
agentless = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--agentless" else None
lab = json.load(open(lab_path))
st = next(s for s in lab["stores"] if s["id"] == store)
ctx = ssl.create_default_context(cafile=lab_path.rsplit("/", 1)[0] + "/ca.pem")


def call(url, data=None, method=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{method or 'GET'} {url}: {e.code} {e.read().decode(errors='replace')}")


pve = st["nodes"][0]["endpoint"]
login = call(pve + "/api2/json/access/ticket",
             urllib.parse.urlencode({"username": "root@pam", "password": st["pve"]["root_password"]}).encode())["data"]
auth = {"Cookie": "PVEAuthCookie=" + login["ticket"], "CSRFPreventionToken": login["CSRFPreventionToken"]}


def pve_post(path, form):
    return call(pve + "/api2/json" + path, urllib.parse.urlencode(form).encode(), "POST", auth)


def admin(path, body):
    return call(lab["admin"]["endpoint"] + path, json.dumps(body).encode(), "POST",
                {"Authorization": "Bearer " + lab["admin"]["token"], "Content-Type": "application/json"})


pbs_host = urllib.parse.urlparse(st["pbs"]["endpoint"]).hostname
pve_post("/storage", {"storage": "pbs-edge", "type": "pbs", "server": pbs_host, "datastore": st["pbs"]["datastore"],
                      "username": "root@pam", "password": st["pbs"]["root_password"],
                      "fingerprint": st["pbs"]["tls_fingerprint"], "content": "backup"})
for vmid, name in ((100, "pos"), (101, "back-office")):
    guest = {"store": store, "node": "pve1", "vmid": vmid, "name": name, "disk_gb": 4}
    if vmid == agentless:
        guest["os_agent"] = False
    admin("/lab/guests", guest)
pve_post("/cluster/backup", {"id": "nightly", "schedule": "02:00", "storage": "pbs-edge", "vmid": "100,101",
                             "mode": "snapshot"})
ran = admin(f"/lab/stores/{store}/backup-jobs/nightly/run", {})
assert len(ran["snapshots"]) == 2 and not ran["not_found"], ran
print(f"{store}: guests 100, 101 backed up to PBS ({', '.join(s['snapshot'] for s in ran['snapshots'])})")
