//! Ceph on the nodes (`/nodes/{node}/ceph/…`): `pveceph init`, status, monitors, managers and
//! OSDs. Pools are in `pools.rs`.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{check_ceph, check_rados, domain, domain_mut, mutate, node_ref, visible_nodes, Cx, DISKS};
use crate::api::{digest_of, p_int, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::NodeState;

pub(super) fn init(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    mutate(lab, |st| {
        let d = domain_mut(st, &store, &node)?;
        d.ceph_initialized = true;
        d.ceph_network = p_str(p, "network");
        if d.ceph_fsid.is_none() {
            d.ceph_fsid = Some(crate::peers_util::random_uuid());
        }
        Ok(Value::Null)
    })
}

/// `GET /nodes/{node}/ceph/status`: pve-manager `PVE::Ceph::Tools::ceph_cluster_status`, the
/// monitors' `status` with `health` replaced by `health detail`. Ceph's maps hold every
/// daemon of the store's Ceph cluster, whatever the PVE cluster says (a node removed with
/// `delnode` keeps its daemons). Daemons live on nodes, so a node that is down has its monitor
/// out of quorum and its OSDs down, and the health checks say so in Ceph's words
/// (`health_checks`). Without a majority of monitors in quorum PVE's RADOS connection gives
/// up after its 5 s timeout: `got timeout`.
pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let now = lab.now_ms();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
        check_rados(&st, cx)?;
    }
    // The OSD map's flags (read from real Ceph outside the state lock): `noout` for
    // maintenance raises OSDMAP_FLAGS like any other check.
    let flags = super::maintenance::osd_flags(lab, &store)?;
    let st = lab.state();
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let nodes: Vec<&NodeState> =
        s.nodes.iter().filter(|n| n.ceph.mon || n.ceph.mgr || !n.ceph.osds.is_empty()).collect();
    let quorum: Vec<&NodeState> = nodes.iter().copied().filter(|n| n.ceph.mon && n.is_up(now)).collect();
    let num_mons = nodes.iter().filter(|n| n.ceph.mon).count();
    if quorum.len() * 2 <= num_mons {
        // librados2-perl `PVE::RADOS::new`: the connection waits `client_mount_timeout` (5 s)
        // for a monitor quorum, under pve-common `run_with_timeout` of the same 5 s.
        return Err(ApiErr::die("got timeout"));
    }
    let osds: usize = nodes.iter().map(|n| n.ceph.osds.len()).sum();
    let down_osds: usize = nodes.iter().filter(|n| !n.is_up(now)).map(|n| n.ceph.osds.len()).sum();
    let mut checks = health_checks(&nodes, &quorum, now);
    if let Some(c) = super::maintenance::flags_check(&flags) {
        checks.insert("OSDMAP_FLAGS".into(), c);
    }
    let mons: Vec<Value> = nodes
        .iter()
        .filter(|n| n.ceph.mon)
        .map(|n| json!({"name": n.name, "addr": format!("{}:6789/0", mon_addr(n))}))
        .collect();
    let health = if !checks.is_empty() || mons.is_empty() || osds < 3 { "HEALTH_WARN" } else { "HEALTH_OK" };
    Ok(json!({
        "fsid": domain(&st, &store, &node)?.ceph_fsid.clone()
            .unwrap_or_else(|| format!("{}-0000-4000-8000-{}", &digest_of(&store)[..8], &digest_of(&node)[..12])),
        "health": {"status": health, "checks": checks, "mutes": []},
        "monmap": {"mons": mons, "epoch": 1},
        "mgrmap": {"available": nodes.iter().any(|n| n.ceph.mgr && n.is_up(now)), "num_standbys": nodes.iter().filter(|n| n.ceph.mgr && n.is_up(now)).count().saturating_sub(1)},
        "osdmap": {"num_osds": osds, "num_up_osds": osds - down_osds, "num_in_osds": osds},
        "pgmap": {"num_pools": s.pools.len(), "num_pgs": s.pools.values().map(|p| p.pg_num).sum::<i64>(), "bytes_used": 0, "bytes_total": osds as u64 * 1_000_204_886_016u64},
        "quorum_names": quorum.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
    }))
}

/// The checks Ceph raises for daemons on nodes that are down, as `health detail` words them:
/// `MON_DOWN` (ceph `src/mon/HealthMonitor.cc` `check_for_mon_down`), and from
/// `src/osd/OSDMap.cc` `check_health` `OSD_DOWN`, one `OSD_<TYPE>_DOWN` per CRUSH level whose
/// subtree is down entirely (PVE's CRUSH map: `root default` > `host <node>` > `osd.N`).
/// Ceph marks the OSDs of a dead host down after the heartbeat grace and out after
/// `mon_osd_down_out_interval`; the lab marks them down at once and never out.
fn health_checks(nodes: &[&NodeState], quorum: &[&NodeState], now: u64) -> Map<String, Value> {
    let check = |message: String, count: usize, detail: Vec<String>| {
        json!({
            "severity": "HEALTH_WARN", "summary": {"message": message, "count": count},
            "detail": detail.into_iter().map(|m| json!({"message": m})).collect::<Vec<_>>(), "muted": false,
        })
    };
    let mut checks = Map::new();
    let mons: Vec<(usize, &NodeState)> = nodes.iter().copied().filter(|n| n.ceph.mon).enumerate().collect();
    if quorum.len() < mons.len() {
        let down: Vec<String> = mons
            .iter()
            .filter(|(_, n)| !n.is_up(now))
            .map(|(rank, n)| {
                let a = mon_addr(n);
                format!("mon.{} (rank {rank}) addr [v2:{a}:3300/0,v1:{a}:6789/0] is down (out of quorum)", n.name)
            })
            .collect();
        let names: Vec<&str> = quorum.iter().map(|n| n.name.as_str()).collect();
        let message = format!("{}/{} mons down, quorum {}", down.len(), mons.len(), names.join(","));
        checks.insert("MON_DOWN".into(), check(message, down.len(), down));
    }
    let total: usize = nodes.iter().map(|n| n.ceph.osds.len()).sum();
    let hosts: Vec<&NodeState> = nodes.iter().copied().filter(|n| !n.is_up(now) && !n.ceph.osds.is_empty()).collect();
    let down: usize = hosts.iter().map(|n| n.ceph.osds.len()).sum();
    if down == 0 {
        return checks;
    }
    if down == total {
        let message = format!("1 root ({total} osds) down");
        checks.insert("OSD_ROOT_DOWN".into(), check(message, 1, vec![format!("root default ({total} osds) is down")]));
    }
    let plural = if hosts.len() > 1 { "s" } else { "" };
    let detail = hosts
        .iter()
        .rev()
        .map(|n| format!("host {} (root=default) ({} osds) is down", n.name, n.ceph.osds.len()))
        .collect();
    checks.insert(
        "OSD_HOST_DOWN".into(),
        check(format!("{} host{plural} ({down} osds) down", hosts.len()), hosts.len(), detail),
    );
    let mut ids: Vec<(i64, &str)> =
        hosts.iter().flat_map(|n| n.ceph.osds.iter().map(|o| (o.id, n.name.as_str()))).collect();
    ids.sort();
    let detail = ids.iter().map(|(id, host)| format!("osd.{id} (root=default,host={host}) is down")).collect();
    checks.insert("OSD_DOWN".into(), check(format!("{down} osds down"), down, detail));
    checks
}

/// Which daemon the monitor and manager handlers serve: `ceph::create::<MON>`, `…::<MGR>`.
pub(super) const MON: bool = true;
pub(super) const MGR: bool = false;

pub(super) fn create<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    if IS_MON {
        mon_create(lab, cx, p)
    } else {
        let id = p_str(p, "id").unwrap_or_else(|| cx.node.clone());
        check_ceph(&lab.state(), cx)?;
        Ok(json!(mgr_create_task(lab, &cx.store, &cx.node, &id, &cx.caller.authid, cx.fail)))
    }
}

pub(super) fn destroy<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    if IS_MON {
        mon_destroy(lab, cx, p)
    } else {
        mgr_destroy(lab, cx, p)
    }
}

/// The monitors (`IS_MON`) or managers of the nodes visible from this one. Monitors come from
/// the services PVE knows and swallow RADOS errors (MON.pm `listmon`: `[]` before the first);
/// managers need RADOS (MGR.pm `index`: 500 before the first monitor).
pub(super) fn daemons<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let st = lab.state();
    check_ceph(&st, cx)?;
    if !IS_MON {
        check_rados(&st, cx)?;
    }
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let (version, short) = lab.profiles.pve.ceph_version();
    let mut out = Vec::new();
    let mut first_mgr = true;
    for (rank, m) in visible_nodes(&st, &store, &node).iter().enumerate() {
        let Some(n) = s.node(m) else { continue };
        if IS_MON && n.ceph.mon {
            out.push(json!({"name": n.name, "addr": format!("{}:6789/0", mon_addr(n)), "rank": rank, "quorum": 1, "state": "running", "service": 1, "direxists": "1", "ceph_version": version, "ceph_version_short": short}));
        } else if !IS_MON && n.ceph.mgr {
            out.push(json!({"name": n.name, "host": n.name, "addr": n.address, "state": if first_mgr { "active" } else { "standby" }}));
            first_mgr = false;
        }
    }
    Ok(Value::Array(out))
}

fn mon_addr(n: &NodeState) -> &str {
    n.ceph.mon_address.as_deref().unwrap_or(&n.address)
}

/// The node's addresses that are up (its active interfaces' `address`/`cidr`).
fn local_ips(n: &NodeState) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = n
        .network
        .active
        .values()
        .filter_map(|i| i.get("address").and_then(Value::as_str).or_else(|| i.get("cidr")?.as_str()?.split('/').next()))
        .filter_map(|a| a.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn in_network(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net)), Ok(bits)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net)), Ok(bits)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// pve-manager `API2/Ceph/MON.pm` `$find_mon_ips`: the monitor's address in the Ceph public
/// network — exactly one local address there, or the one `mon-address` names.
fn find_mon_ip(net: Option<&str>, n: &NodeState, mon_address: Option<&str>) -> Result<String, ApiErr> {
    let Some(net) = net else {
        return Ok(mon_address.map(str::to_string).unwrap_or_else(|| n.address.clone()));
    };
    let local = local_ips(n);
    if let Some(want) = mon_address {
        let ok = want.parse::<IpAddr>().is_ok_and(|ip| local.contains(&ip) && in_network(ip, net));
        if !ok {
            return Err(ApiErr::die(format!("Specified monitor IP '{want}' not configured or up on {}!", n.name)));
        }
        return Ok(want.to_string());
    }
    let found: Vec<String> = local.iter().filter(|ip| in_network(**ip, net)).map(|ip| ip.to_string()).collect();
    match found.as_slice() {
        [] => Err(ApiErr::die(format!(
            "No active IP found for the requested ceph public network '{net}' on node '{}'",
            n.name
        ))),
        [one] => Ok(one.clone()),
        many => Err(ApiErr::die(format!(
            "Multiple IPs for ceph public network '{net}' detected on {}:\n{}\nuse 'mon-address' to specify one of them.",
            n.name,
            many.join("\n")
        ))),
    }
}

/// `createmon`: the checks are synchronous (address, then id: `$assert_mon_prerequisites`); the
/// first monitor of a cluster also starts the manager named after the node, as a separate
/// `cephcreatemgr` task (MON.pm, after the ceph.conf lock: `createmgr` forks its own worker).
fn mon_create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let id = p_str(p, "monid").unwrap_or_else(|| node.clone());
    let (addr, first) = {
        let st = lab.state();
        check_ceph(&st, cx)?;
        let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
        let (_, n) = node_ref(&st, &store, &node)?;
        let visible: Vec<&NodeState> = visible_nodes(&st, &store, &node).iter().filter_map(|m| s.node(m)).collect();
        let first = !visible.iter().any(|x| x.ceph.mon);
        let net = domain(&st, &store, &node)?.ceph_network.clone();
        let addr = find_mon_ip(net.as_deref(), n, p_str(p, "mon-address").as_deref())?;
        if visible.iter().any(|x| x.ceph.mon && mon_addr(x) == addr) {
            return Err(ApiErr::die(format!("monitor address '{addr}' already in use")));
        }
        if n.ceph.mon {
            return Err(ApiErr::die(format!("monitor '{id}' already exists")));
        }
        (addr, first)
    };
    let wid = format!("mon.{id}");
    let authid = cx.caller.authid.clone();
    let fail = cx.fail;
    let upid = lab.spawn_task(Product::Pve, &store, &node, "cephcreatemon", &wid.clone(), &cx.caller.authid, fail, {
        let (store, node) = (store.clone(), node.clone());
        move |lab| {
            {
                let mut st = lab.state();
                let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                n.ceph.mon = true;
                n.ceph.mon_address = Some(addr.clone());
                lab.save(&st);
            }
            let mut log = vec![
                format!("creating new monitor keyring"),
                format!("monmaptool: monmap file /tmp/monmap"),
                format!("starting service 'ceph-mon@{id}.service'"),
            ];
            if first {
                let mgr = mgr_create_task(lab, &store, &node, &node, &authid, false);
                log.push(format!("creating manager in task {mgr}"));
            }
            Ok(log)
        }
    });
    Ok(json!(upid))
}

/// `destroymon`: needs RADOS; refuses an unknown id and the last monitor.
fn mon_destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let id = p_str(p, "monid").unwrap_or_else(|| node.clone());
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
        check_rados(&st, cx)?;
        let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
        let (_, n) = node_ref(&st, &store, &node)?;
        if !n.ceph.mon || id != node {
            return Err(ApiErr::die(format!("no such monitor id '{id}'")));
        }
        let mons = visible_nodes(&st, &store, &node).iter().filter_map(|m| s.node(m)).filter(|x| x.ceph.mon).count();
        if mons <= 1 {
            return Err(ApiErr::die("can't remove last monitor"));
        }
    }
    let wid = format!("mon.{id}");
    let upid = lab.spawn_task(Product::Pve, &store, &node, "cephdestroymon", &wid, &cx.caller.authid, cx.fail, {
        let (store, node) = (store.clone(), node.clone());
        move |lab| {
            let mut st = lab.state();
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            n.ceph.mon = false;
            n.ceph.mon_address = None;
            lab.save(&st);
            Ok(vec![format!("destroy monitor mon.{id}")])
        }
    });
    Ok(json!(upid))
}

/// `createmgr`'s worker (`Ceph/Services.pm` `create_mgr`): RADOS first, then the node's local
/// manager directory must not exist — there is no cluster-wide duplicate check.
fn mgr_create_task(lab: &Arc<Lab>, store: &str, node: &str, id: &str, user: &str, fail: bool) -> String {
    let dir = format!("/var/lib/ceph/mgr/ceph-{id}");
    let wid = format!("mgr.{id}");
    let (store2, node2, id) = (store.to_string(), node.to_string(), id.to_string());
    lab.spawn_task(Product::Pve, store, node, "cephcreatemgr", &wid.clone(), user, fail, move |lab| {
        let mut st = lab.state();
        let s = st.store(&store2).ok_or("store vanished")?;
        let has_mon = visible_nodes(&st, &store2, &node2).iter().filter_map(|m| s.node(m)).any(|n| n.ceph.mon);
        if !has_mon {
            return Err("rados_connect failed - No such file or directory".into());
        }
        let n = st.store_mut(&store2).and_then(|s| s.node_mut(&node2)).ok_or("node vanished")?;
        if n.ceph.mgr {
            return Err(format!("ceph manager directory '{dir}' already exists"));
        }
        n.ceph.mgr = true;
        lab.save(&st);
        Ok(vec![
            format!("creating manager directory '{dir}'"),
            format!("creating keys for '{wid}'"),
            format!("enabling service 'ceph-mgr@{id}.service'"),
            format!("starting service 'ceph-mgr@{id}.service'"),
        ])
    })
}

/// `destroymgr`: a task that fails when the local directory is not there.
fn mgr_destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let id = p_str(p, "id").unwrap_or_else(|| node.clone());
    check_ceph(&lab.state(), cx)?;
    let dir = format!("/var/lib/ceph/mgr/ceph-{id}");
    let upid = lab.spawn_task(
        Product::Pve,
        &store,
        &node,
        "cephdestroymgr",
        &format!("mgr.{id}"),
        &cx.caller.authid,
        cx.fail,
        {
            let (store, node) = (store.clone(), node.clone());
            move |lab| {
                let mut st = lab.state();
                let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                if !n.ceph.mgr {
                    return Err(format!("ceph manager directory '{dir}' not found"));
                }
                n.ceph.mgr = false;
                lab.save(&st);
                Ok(vec![
                    format!("disabling service 'ceph-mgr@{id}.service'"),
                    format!("removing manager directory '{dir}'"),
                ])
            }
        },
    );
    Ok(json!(upid))
}

pub(super) fn osd_list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let st = lab.state();
    check_ceph(&st, cx)?;
    check_rados(&st, cx)?;
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let hosts: Vec<Value> = visible_nodes(&st, &store, &node)
        .iter()
        .filter_map(|m| s.node(m))
        .enumerate()
        .map(|(i, n)| {
            let children: Vec<Value> = n.ceph.osds.iter().map(|o| json!({"id": o.id, "name": format!("osd.{}", o.id), "type": "osd", "status": "up", "in": 1, "host": n.name, "crush_weight": 0.9, "device_class": "ssd", "leaf": 1})).collect();
            json!({"id": -2 - i as i64, "name": n.name, "type": "host", "children": children, "leaf": 0})
        })
        .collect();
    Ok(json!({"root": {"id": -1, "name": "default", "type": "root", "children": hosts, "leaf": 0}, "flags": ""}))
}

pub(super) fn osd_create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let dev = p_str(p, "dev").unwrap_or_default();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
        let (_, n) = node_ref(&st, &store, &node)?;
        // OSD.pm `$test_disk_requirements`: any `used` the disk list reports refuses the disk
        // (partitions, LVM, a filesystem, a mount); then RADOS.
        if !DISKS.contains(&dev.as_str()) {
            return Err(ApiErr::die(format!("unable to get device info for '{dev}'")));
        }
        if n.ceph.osds.iter().any(|o| o.dev == dev) || n.used_disks.contains_key(&dev) {
            return Err(ApiErr::die(format!("device '{dev}' is already in use")));
        }
        check_rados(&st, cx)?;
    }
    let wid = dev.trim_start_matches("/dev/").to_string();
    let upid = lab.spawn_task(Product::Pve, &store, &node, "cephcreateosd", &wid, &cx.caller.authid, cx.fail, {
        let (store, node) = (store.clone(), node.clone());
        move |lab| {
            let mut st = lab.state();
            let s = st.store_mut(&store).ok_or("store vanished")?;
            let id = s.nodes.iter().flat_map(|n| n.ceph.osds.iter().map(|o| o.id)).max().map(|m| m + 1).unwrap_or(0);
            let n = s.node_mut(&node).ok_or("node vanished")?;
            n.ceph.osds.push(crate::state::Osd { id, dev: dev.clone() });
            lab.save(&st);
            Ok(vec![format!("create OSD on {dev} (bluestore)"), format!("osd.{id} created")])
        }
    });
    Ok(json!(upid))
}

pub(super) fn osd_destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let id = p_int(p, "osdid").unwrap_or(-1);
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
        let (_, n) = node_ref(&st, &store, &node)?;
        if !n.ceph.osds.iter().any(|o| o.id == id) {
            return Err(ApiErr::die(format!("osd.{id} is not on this node")));
        }
    }
    let upid =
        lab.spawn_task(Product::Pve, &store, &node, "cephdestroyosd", &id.to_string(), &cx.caller.authid, cx.fail, {
            let (store, node) = (store.clone(), node.clone());
            move |lab| {
                let mut st = lab.state();
                let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                n.ceph.osds.retain(|o| o.id != id);
                lab.save(&st);
                Ok(vec![format!("destroy OSD osd.{id}")])
            }
        });
    Ok(json!(upid))
}
