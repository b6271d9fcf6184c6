//! Ceph on the nodes (`/nodes/{node}/ceph/…`): `pveceph init`, status, monitors, managers and
//! OSDs. Pools are in `pools.rs`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{check_ceph, domain, domain_mut, mutate, node_ref, visible_nodes, Cx, DISKS};
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

pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let st = lab.state();
    check_ceph(&st, cx)?;
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let members = visible_nodes(&st, &store, &node);
    let nodes: Vec<&NodeState> = members.iter().filter_map(|m| s.node(m)).collect();
    let osds: usize = nodes.iter().map(|n| n.ceph.osds.len()).sum();
    let mons: Vec<Value> = nodes
        .iter()
        .filter(|n| n.ceph.mon)
        .map(|n| json!({"name": n.name, "addr": format!("{}:6789/0", n.address)}))
        .collect();
    let health = if mons.is_empty() {
        "HEALTH_WARN"
    } else if osds >= 3 {
        "HEALTH_OK"
    } else {
        "HEALTH_WARN"
    };
    Ok(json!({
        "fsid": domain(&st, &store, &node)?.ceph_fsid.clone()
            .unwrap_or_else(|| format!("{}-0000-4000-8000-{}", &digest_of(&store)[..8], &digest_of(&node)[..12])),
        "health": {"status": health, "checks": {}},
        "monmap": {"mons": mons, "epoch": 1},
        "mgrmap": {"available": nodes.iter().any(|n| n.ceph.mgr), "num_standbys": nodes.iter().filter(|n| n.ceph.mgr).count().saturating_sub(1)},
        "osdmap": {"num_osds": osds, "num_up_osds": osds, "num_in_osds": osds},
        "pgmap": {"num_pools": s.pools.len(), "num_pgs": s.pools.values().map(|p| p.pg_num).sum::<i64>(), "bytes_used": 0, "bytes_total": osds as u64 * 1_000_204_886_016u64},
        "quorum_names": nodes.iter().filter(|n| n.ceph.mon).map(|n| n.name.clone()).collect::<Vec<_>>(),
    }))
}

/// Which daemon the monitor and manager handlers serve: `ceph::create::<MON>`, `…::<MGR>`.
pub(super) const MON: bool = true;
pub(super) const MGR: bool = false;

pub(super) fn create<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    daemon_task(lab, cx, p, IS_MON, true)
}

pub(super) fn destroy<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    daemon_task(lab, cx, p, IS_MON, false)
}

/// The monitors (`IS_MON`) or managers of the nodes visible from this one.
pub(super) fn daemons<const IS_MON: bool>(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let st = lab.state();
    check_ceph(&st, cx)?;
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let mut out = Vec::new();
    let mut first_mgr = true;
    for (rank, m) in visible_nodes(&st, &store, &node).iter().enumerate() {
        let Some(n) = s.node(m) else { continue };
        if IS_MON && n.ceph.mon {
            out.push(json!({"name": n.name, "addr": format!("{}:6789/0", n.address), "rank": rank, "quorum": 1, "state": "running", "service": 1, "direxists": "1", "ceph_version": "ceph version 19.2.3 (c92aebb279828e9c3c1f5d24613efca272649e62) squid (stable)", "ceph_version_short": "19.2.3"}));
        } else if !IS_MON && n.ceph.mgr {
            out.push(json!({"name": n.name, "host": n.name, "addr": n.address, "state": if first_mgr { "active" } else { "standby" }}));
            first_mgr = false;
        }
    }
    Ok(Value::Array(out))
}

/// Creates or destroys the node's monitor (`is_mon`) or manager in a task.
fn daemon_task(lab: &Arc<Lab>, cx: &Cx, p: &Params, is_mon: bool, create: bool) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let id = p_str(p, if is_mon { "monid" } else { "id" }).unwrap_or_else(|| node.clone());
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
        let (_, n) = node_ref(&st, &store, &node)?;
        let has = if is_mon { n.ceph.mon } else { n.ceph.mgr };
        let what = if is_mon { "monitor" } else { "manager" };
        if create && has {
            return Err(ApiErr::die(format!("ceph {what} '{id}' already exists")));
        }
        if !create && !has {
            return Err(ApiErr::die(format!("no such {what} id '{id}'")));
        }
    }
    let wtype = match (is_mon, create) {
        (true, true) => "cephcreatemon",
        (true, false) => "cephdestroymon",
        (false, true) => "cephcreatemgr",
        (false, false) => "cephdestroymgr",
    };
    let wid = format!("{}.{id}", if is_mon { "mon" } else { "mgr" });
    let upid = lab.spawn_task(Product::Pve, &store, &node, wtype, &wid.clone(), &cx.caller.authid, cx.fail, {
        let (store, node) = (store.clone(), node.clone());
        move |lab| {
            let mut st = lab.state();
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            if is_mon {
                n.ceph.mon = create;
            } else {
                n.ceph.mgr = create;
            }
            lab.save(&st);
            Ok(vec![format!("{wtype} {wid}")])
        }
    });
    Ok(json!(upid))
}

pub(super) fn osd_list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let st = lab.state();
    check_ceph(&st, cx)?;
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
        if !DISKS.contains(&dev.as_str()) {
            return Err(ApiErr::die(format!("unable to get device info for '{dev}'")));
        }
        if n.ceph.osds.iter().any(|o| o.dev == dev) {
            return Err(ApiErr::die(format!("device '{dev}' is already in use")));
        }
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
