//! A node's network (`/nodes/{node}/network`): changes stay pending until applied, like
//! `/etc/network/interfaces.new`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{mutate, node_ref, store_mut, Cx};
use crate::api::{delete_list, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::NodeState;

fn default_network(address: &str) -> BTreeMap<String, Map<String, Value>> {
    let mut m = BTreeMap::new();
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    // PVE's list leaves out the loopback interface.
    m.insert("eno1".into(), obj(json!({"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"], "active": 1, "exists": 1, "priority": 2})));
    m.insert("vmbr0".into(), obj(json!({"iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual", "families": ["inet"], "active": 1, "autostart": 1, "priority": 3, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0", "cidr": format!("{address}/8"), "address": address, "netmask": "8", "gateway": "127.0.0.1"})));
    m
}

pub fn fresh_network(address: &str) -> crate::state::Network {
    crate::state::Network { active: default_network(address), pending: Default::default() }
}

fn merged_network(n: &NodeState) -> BTreeMap<String, Map<String, Value>> {
    let mut m = n.network.active.clone();
    for (k, v) in &n.network.pending {
        match v {
            Some(c) => {
                m.insert(k.clone(), c.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
    m
}

/// An interface's config from the request: given keys, `method` from whether it has an
/// address, `address`/`netmask` from `cidr`.
fn iface_cfg(p: &Params, iface: &str) -> Map<String, Value> {
    let mut c = Map::new();
    for (k, v) in p {
        if !matches!(k.as_str(), "node" | "delete" | "digest") {
            c.insert(k.clone(), v.clone());
        }
    }
    c.insert("iface".into(), json!(iface));
    let method = if c.contains_key("cidr") || c.contains_key("address") { "static" } else { "manual" };
    c.entry("method").or_insert(json!(method));
    c.entry("families").or_insert(json!(["inet"]));
    if let (Some(Value::String(cidr)), false) = (c.get("cidr").cloned(), c.contains_key("address")) {
        if let Some((a, m)) = cidr.split_once('/') {
            c.insert("address".into(), json!(a));
            c.insert("netmask".into(), json!(m));
        }
    }
    c
}

pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    let filter = p_str(p, "type");
    let merged = merged_network(n);
    Ok(Value::Array(
        merged
            .values()
            .filter(|c| match &filter {
                None => true,
                Some(f) if f == "any_bridge" || f == "any_local_bridge" => {
                    c.get("type").and_then(Value::as_str) == Some("bridge")
                }
                Some(f) => c.get("type").and_then(Value::as_str) == Some(f.as_str()),
            })
            .map(|c| Value::Object(c.clone()))
            .collect(),
    ))
}

pub(super) fn get(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    let iface = p_str(p, "iface").unwrap_or_default();
    merged_network(n)
        .get(&iface)
        .map(|c| Value::Object(c.clone()))
        .ok_or_else(|| ApiErr::die(format!("network interface '{iface}' does not exist")))
}

/// A new interface, pending until `PUT /nodes/{node}/network` applies it.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let iface = p_str(p, "iface").unwrap_or_default();
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        if merged_network(n).contains_key(&iface) {
            return Err(ApiErr::die("interface already exists"));
        }
        n.network.pending.insert(iface.clone(), Some(iface_cfg(p, &iface)));
        Ok(Value::Null)
    })
}

pub(super) fn update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let iface = p_str(p, "iface").unwrap_or_default();
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        let Some(mut cur) = merged_network(n).get(&iface).cloned() else {
            return Err(ApiErr::die("interface does not exist"));
        };
        for k in delete_list(p) {
            cur.remove(&k);
        }
        for (k, v) in iface_cfg(p, &iface) {
            cur.insert(k, v);
        }
        n.network.pending.insert(iface, Some(cur));
        Ok(Value::Null)
    })
}

pub(super) fn delete(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let iface = p_str(p, "iface").unwrap_or_default();
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        if !merged_network(n).contains_key(&iface) {
            return Err(ApiErr::die("interface does not exist"));
        }
        n.network.pending.insert(iface, None);
        Ok(Value::Null)
    })
}

/// Drops the pending changes.
pub(super) fn revert(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    mutate(lab, |st| {
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        n.network.pending.clear();
        Ok(Value::Null)
    })
}

/// Applies the pending changes in a `srvreload` task, like `ifreload -a`.
pub(super) fn apply(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.node,
        "srvreload",
        "networking",
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            let mut st = lab.state();
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            let merged = merged_network(n);
            n.network.active = merged;
            n.network.pending.clear();
            lab.save(&st);
            Ok(vec!["ifreload -a".into()])
        },
    );
    Ok(json!(upid))
}
