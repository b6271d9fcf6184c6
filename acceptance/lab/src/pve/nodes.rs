//! The node itself: `/version`, `/nodes`, and a node's status, DNS, time and disks.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{mutate, node_ref, store_mut, visible_nodes, Cx, DISKS};
use crate::api::{p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::now_s;

pub(super) fn version(lab: &Arc<Lab>, _: &Cx, _: &Params) -> ApiResult {
    let (version, release, repoid) = lab.profiles.pve.version();
    Ok(json!({"version": version, "release": release, "repoid": repoid}))
}

pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let now = lab.now_ms();
    let list: Vec<Value> = visible_nodes(&st, &cx.store, &cx.local)
        .iter()
        .filter_map(|name| s.node(name))
        .map(|n| {
            let up = n.is_up(now);
            let mut o = json!({
                "node": n.name, "status": if up { "online" } else { "offline" }, "id": format!("node/{}", n.name),
                "type": "node", "level": "", "ssl_fingerprint": n.cert.fingerprint,
            });
            if up {
                o["uptime"] = json!(now_s().saturating_sub(n.booted_at(now)));
                o["cpu"] = json!(0.012);
                o["maxcpu"] = json!(8);
                o["mem"] = json!(3_221_225_472u64);
                o["maxmem"] = json!(34_359_738_368u64);
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    Ok(json!({
        "uptime": now_s().saturating_sub(n.booted_at(lab.now_ms())),
        "cpu": 0.012, "wait": 0.0,
        "loadavg": ["0.10", "0.08", "0.05"],
        "cpuinfo": {"cores": 8, "cpus": 8, "sockets": 1, "model": "edge-lab virtual CPU", "mhz": "2400.000", "hvm": "1", "flags": "", "user_hz": 100},
        "memory": {"total": 34_359_738_368u64, "used": 3_221_225_472u64, "free": 31_138_512_896u64, "available": 31_138_512_896u64},
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {"total": 100_000_000_000u64, "used": 5_000_000_000u64, "free": 95_000_000_000u64, "avail": 95_000_000_000u64},
        "ksm": {"shared": 0},
        "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 x86_64",
        "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2", "machine": "x86_64"},
        "boot-info": {"mode": "efi", "secureboot": 1},
        "pveversion": pveversion(lab),
        "idle": 0,
    }))
}

/// `shutdown` powers the node off (through the BMC when there is one); `reboot` takes the node
/// down for a moment (`super::maintenance::reboot`).
pub(super) fn command(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let cmd = p_str(p, "command").unwrap_or_default();
    if cmd == "reboot" {
        return super::maintenance::reboot(lab, cx);
    }
    if cmd == "shutdown" {
        let uuid = mutate(lab, |st| {
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            n.power_on = false;
            Ok(n.system_id.clone())
        })?;
        if let Some(b) = &lab.bmc {
            let _ = b.set_power(&uuid, false);
        }
    }
    Ok(Value::Null)
}

pub(super) fn dns(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    let mut o = json!({"search": n.dns.search});
    for (k, v) in [("dns1", &n.dns.dns1), ("dns2", &n.dns.dns2), ("dns3", &n.dns.dns3)] {
        if let Some(v) = v {
            o[k] = json!(v);
        }
    }
    Ok(o)
}

pub(super) fn set_dns(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        n.dns.search = p_str(p, "search").unwrap_or_default();
        n.dns.dns1 = p_str(p, "dns1");
        n.dns.dns2 = p_str(p, "dns2");
        n.dns.dns3 = p_str(p, "dns3");
        Ok(Value::Null)
    })
}

pub(super) fn time(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    let t = now_s();
    Ok(json!({"timezone": n.timezone, "time": t, "localtime": t}))
}

pub(super) fn set_time(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let tz = p_str(p, "timezone").unwrap_or_default();
        // The lab has no zoneinfo database: a name of the `Area/Location` form (or UTC) stands
        // for a known one. PVE checks `timedatectl list-timezones` (pve-common
        // `PVE::Systemd::set_timezone`; 8.x: the file under /usr/share/zoneinfo) with this message.
        if !tz.contains('/') && tz != "UTC" && tz != "Etc/UTC" {
            return Err(ApiErr::param("timezone", "No such timezone"));
        }
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        n.timezone = tz;
        Ok(Value::Null)
    })
}

pub(super) fn disks(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    let mut out = vec![
        json!({"devpath": "/dev/sda", "gpt": 1, "mounted": 1, "osdid": -1, "osdid-list": null, "size": 128_035_676_160u64, "used": "BIOS boot", "health": "PASSED", "model": "EDGE-BOOT", "serial": format!("{}-sda", n.name), "vendor": "ATA", "wwn": "unknown", "type": "ssd", "rpm": 0, "by_id_link": ""}),
    ];
    for d in DISKS {
        let osd = n.ceph.osds.iter().find(|o| o.dev == *d);
        let used = n.used_disks.get(*d);
        let mut o = json!({"devpath": d, "gpt": used.is_some_and(|u| u == "partitions") as i64, "mounted": 0, "osdid": osd.map(|o| o.id).unwrap_or(-1), "size": 1_000_204_886_016u64, "health": "PASSED", "model": "EDGE-DATA", "serial": format!("{}-{}", n.name, &d[5..]), "vendor": "ATA", "wwn": "unknown", "type": "ssd", "rpm": 0, "by_id_link": ""});
        match (osd, used) {
            (Some(osd), _) => {
                o["used"] = json!("LVM");
                o["osdid-list"] = json!([osd.id]);
            }
            (None, Some(u)) => {
                o["used"] = json!(u);
                o["osdid-list"] = Value::Null;
            }
            (None, None) => o["osdid-list"] = Value::Null,
        }
        out.push(o);
    }
    // The schema requires osdid-list on every disk (PVE sends null; an empty list
    // satisfies both clients and the schema).
    for o in out.iter_mut() {
        if o["osdid-list"].is_null() {
            o["osdid-list"] = json!([]);
        }
    }
    Ok(Value::Array(out))
}

/// `pve-manager/VERSION/REPOID`, as `GET /nodes/{node}/status` reports it.
fn pveversion(lab: &Lab) -> String {
    let (version, _, repoid) = lab.profiles.pve.version();
    format!("pve-manager/{version}/{repoid}")
}

/// `PUT /nodes/{node}/disks/wipedisk` (pve-storage `API2/Disks.pm` `wipe_disk`, root@pam only by
/// its schema): refuses only mounted disks and disks with holders (an active OSD's LVM);
/// the `wipedisk` task clears what was on the disk.
pub(super) fn wipe_disk(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let disk = p_str(p, "disk").unwrap_or_default();
    {
        let st = lab.state();
        let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
        if disk == "/dev/sda" {
            return Err(ApiErr::die(format!("disk/partition '{disk}' is mounted")));
        }
        if !DISKS.contains(&disk.as_str()) {
            // pve-storage `Diskmanage.pm` `assert_blockdev`: the text names no path.
            return Err(ApiErr::die("not a valid block device"));
        }
        if n.ceph.osds.iter().any(|o| o.dev == disk) {
            return Err(ApiErr::die(format!("disk/partition '{disk}' has a holder")));
        }
    }
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let wid = disk.trim_start_matches("/dev/").to_string();
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.node, "wipedisk", &wid, &cx.caller.authid, cx.fail, move |lab| {
            let mut st = lab.state();
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            let mut log = Vec::new();
            if n.used_disks.remove(&disk).is_some_and(|u| u == "partitions") {
                log.push(format!("found child partitions to wipe: {disk}1"));
            }
            log.push(format!("wiping block device {disk}"));
            log.push("200+0 records in".into());
            log.push("200+0 records out".into());
            lab.save(&st);
            Ok(log)
        });
    Ok(json!(upid))
}
