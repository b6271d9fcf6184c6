//! A node's network (`/nodes/{node}/network`): changes stay pending until applied, like
//! `/etc/network/interfaces.new`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{mutate, node_ref, store_mut, Cx};
use crate::api::{delete_list, p_str, p_true, ApiErr, ApiResult};
use crate::formats::split_list;
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
    merged_network(n).get(&iface).map(|c| Value::Object(c.clone())).ok_or_else(no_iface)
}

/// pve-manager `PVE/API2/Network.pm` raises its checks as parameter exceptions inside
/// `PVE::Tools::lock_file` and re-raises them with `die $@` (the object, not its text), so they
/// stay 400s with `errors`.
fn no_iface() -> ApiErr {
    ApiErr::param("iface", "interface does not exist")
}

/// `$map_cidr_to_address_netmask`: `cidr` becomes `address` and `netmask`, so it conflicts with
/// either of them (`cidr6` likewise). The netmask errors are unreachable through the API: the
/// schema's `requires` wants the address with a netmask and reports that first.
fn check_cidr(p: &Params) -> Result<(), ApiErr> {
    for (cidr, address, netmask) in [("cidr", "address", "netmask"), ("cidr6", "address6", "netmask6")] {
        if p_true(p, cidr) {
            if let Some(k) = [address, netmask].into_iter().find(|k| p_true(p, k)) {
                return Err(ApiErr::param(k, format!("{k} conflicts with {cidr}")));
            }
        }
    }
    Ok(())
}

/// The parameters that name an interface's ports, in the order `$check_duplicate_ports` reads them.
const PORT_KEYS: [&str; 4] = ["bridge_ports", "ovs_ports", "slaves", "ovs_bonds"];

fn ports(cfg: &Map<String, Value>) -> Vec<String> {
    let joined: Vec<String> = PORT_KEYS.iter().filter_map(|k| p_str(cfg, k)).collect();
    split_list(&joined.join(" ")).map(str::to_string).collect()
}

/// `$check_duplicate_ports`: a port belongs to one interface only; the error is keyed by the
/// first port parameter of the request.
fn check_ports(ifaces: &BTreeMap<String, Map<String, Value>>, iface: &str, p: &Params) -> Result<(), ApiErr> {
    let Some(key) = PORT_KEYS.into_iter().find(|k| p_true(p, k)) else {
        return Ok(());
    };
    let new = ports(p);
    for (name, cfg) in ifaces.iter().filter(|(name, _)| *name != iface) {
        if let Some(port) = ports(cfg).into_iter().find(|port| new.contains(port)) {
            return Err(ApiErr::param(key, format!("{port} is already used on interface '{name}'.")));
        }
    }
    Ok(())
}

/// A `bridge_vids` list without items: the schema's list format allows it, the handler not.
fn check_vids(p: &Params) -> Result<(), ApiErr> {
    match p_str(p, "bridge_vids") {
        Some(v) if p_true(p, "bridge_vids") && split_list(&v).next().is_none() => {
            Err(ApiErr::param("bridge_vids", "VLAN list items are empty"))
        }
        _ => Ok(()),
    }
}

/// A new interface, pending until `PUT /nodes/{node}/network` applies it.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let iface = p_str(p, "iface").unwrap_or_default();
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        let merged = merged_network(n);
        if merged.contains_key(&iface) {
            return Err(ApiErr::param("iface", "interface already exists"));
        }
        check_ports(&merged, &iface, p)?;
        check_cidr(p)?;
        // A fresh PVE install has no Open vSwitch (`openvswitch-switch` is an extra package).
        if p_str(p, "type").is_some_and(|t| t.starts_with("OVS")) {
            return Err(ApiErr::die("Open VSwitch is not installed (need package 'openvswitch-switch')"));
        }
        check_vids(p)?;
        n.network.pending.insert(iface.clone(), Some(iface_cfg(p, &iface)));
        Ok(Value::Null)
    })
}

pub(super) fn update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    mutate(lab, |st| {
        let iface = p_str(p, "iface").unwrap_or_default();
        let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
        let merged = merged_network(n);
        let Some(mut cur) = merged.get(&iface).cloned() else {
            return Err(no_iface());
        };
        check_cidr(p)?;
        check_ports(&merged, &iface, p)?;
        check_vids(p)?;
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
            return Err(no_iface());
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
