//! Clusters (`/cluster/config`, `/cluster/status`): create, join, members, `pvecm delnode`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{fresh_domain, mutate, node_ref, Cx};
use crate::api::{digest_of, p_bool, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::LabState;

pub(super) fn config_index(_: &Arc<Lab>, _: &Cx, _: &Params) -> ApiResult {
    Ok(json!([{"name": "nodes"}, {"name": "join"}, {"name": "totem"}, {"name": "apiversion"}, {"name": "qdevice"}]))
}

/// `pvecm create`: the node's config domain becomes the cluster's.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let name = p_str(p, "clustername").unwrap_or_default();
    {
        let st = lab.state();
        let (_, n) = node_ref(&st, &cx.store, &cx.local)?;
        if n.cluster.is_some() {
            return Err(ApiErr::die("cluster config '/etc/pve/corosync.conf' already exists"));
        }
    }
    let (store, node) = (cx.store.clone(), cx.local.clone());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.local,
        "clustercreate",
        &name.clone(),
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            let mut st = lab.state();
            let s = st.store(&store).ok_or("store vanished")?;
            let n = s.node(&node).ok_or("node vanished")?;
            if n.cluster.is_some() {
                return Err("cluster config '/etc/pve/corosync.conf' already exists".into());
            }
            let old = LabState::domain_key(s, n);
            let mut dom = st.domains.remove(&old).unwrap_or_default();
            dom.cluster_name = Some(name.clone());
            dom.members = vec![node.clone()];
            dom.config_version = 1;
            st.domains.insert(format!("cluster:{store}/{name}"), dom);
            if let Some(n) = st.store_mut(&store).and_then(|s| s.node_mut(&node)) {
                n.cluster = Some(name.clone());
            }
            lab.save(&st);
            Ok(vec![
                "Writing corosync key to /etc/corosync/authkey".into(),
                "Writing corosync config to /etc/pve/corosync.conf".into(),
                "Restart corosync and cluster filesystem".into(),
            ])
        },
    );
    Ok(json!(upid))
}

/// `pvecm delnode`: drop a member from the cluster configuration.
pub(super) fn delnode(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let target = p_str(p, "node").unwrap_or_default();
    if target == cx.local {
        return Err(ApiErr::die("Cannot delete myself from cluster!"));
    }
    mutate(lab, |st| {
        let (_, me) = node_ref(st, &cx.store, &cx.local)?;
        let cluster = me.cluster.clone().ok_or_else(|| ApiErr::die("node is not in a cluster"))?;
        let key = format!("cluster:{}/{cluster}", cx.store);
        let dom = st.domains.get_mut(&key).ok_or_else(|| ApiErr::die("no cluster configuration"))?;
        if !dom.members.contains(&target) {
            return Err(ApiErr::die(format!("Node/IP: {target} is not a known host of the cluster.")));
        }
        dom.members.retain(|m| m != &target);
        dom.config_version += 1;
        // The removed node keeps running on its own, outside the cluster.
        let still_in = st
            .store(&cx.store)
            .and_then(|s| s.node(&target))
            .is_some_and(|n| n.cluster.as_deref() == Some(cluster.as_str()));
        if still_in {
            let fresh = st.store(&cx.store).map(fresh_domain);
            if let Some(n) = st.store_mut(&cx.store).and_then(|s| s.node_mut(&target)) {
                n.cluster = None;
            }
            if let Some(d) = fresh {
                st.domains.insert(format!("node:{}/{target}", cx.store), d);
            }
        }
        Ok(Value::Null)
    })
}

pub(super) fn join_info(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let target = p_str(p, "node").unwrap_or_else(|| cx.local.clone());
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    // pve-cluster `join_info`: a PVE::Exception with HTTP_FAILED_DEPENDENCY, then a plain die
    // for a node the corosync nodelist lacks.
    let Some(c) = &n.cluster else {
        return Err(ApiErr::new(424, "node is not in a cluster, no join info available!"));
    };
    let dom = st.domains.get(&format!("cluster:{}/{c}", s.id)).ok_or_else(|| ApiErr::die("no cluster domain"))?;
    if !dom.members.contains(&target) {
        return Err(ApiErr::die(format!("unknown node '{target}'")));
    }
    let nodelist: Vec<Value> = dom
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| s.node(m).map(|x| (i, x)))
        .map(|(i, x)| json!({"name": x.name, "nodeid": i + 1, "pve_addr": x.address, "pve_fp": x.cert.fingerprint, "quorum_votes": 1, "ring0_addr": x.address}))
        .collect();
    Ok(json!({
        "config_digest": digest_of(&dom.members),
        "nodelist": nodelist,
        "preferred_node": target,
        "totem": {"cluster_name": c, "config_version": dom.config_version.to_string(), "version": "2", "ip_version": "ipv4-6", "secauth": "on", "link_mode": "passive", "interface": {"0": {"linknumber": "0"}}},
    }))
}

/// `pvecm add`: checks the peer like PVE, then joins in a task.
pub(super) fn join(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let host = p_str(p, "hostname").unwrap_or_default();
    let fp = p_str(p, "fingerprint").unwrap_or_default();
    let password = p_str(p, "password").unwrap_or_default();
    let cluster = {
        let st = lab.state();
        let (s, me) = node_ref(&st, &cx.store, &cx.local)?;
        if me.cluster.is_some() {
            return Err(ApiErr::die("cluster config '/etc/pve/corosync.conf' already exists"));
        }
        let peer = s
            .nodes
            .iter()
            .find(|x| x.address == host || x.name == host)
            .filter(|x| x.is_up(lab.now_ms()))
            .ok_or_else(|| ApiErr::die(format!("500 Can't connect to {host}:8006 (Connection refused)")))?;
        if !peer.cert.fingerprint.eq_ignore_ascii_case(&fp) {
            return Err(ApiErr::die(format!("500 Can't connect to {host}:8006 (certificate fingerprint mismatch)")));
        }
        if password != s.root_password {
            return Err(ApiErr::die("500 authentication failure"));
        }
        let cluster = peer.cluster.clone().ok_or_else(|| {
            ApiErr::die("error fetching join information - node is not in a cluster, no join info available!")
        })?;
        let members =
            st.domains.get(&format!("cluster:{}/{cluster}", s.id)).map(|d| d.members.clone()).unwrap_or_default();
        if members.contains(&me.name) && !p_bool(p, "force").unwrap_or(false) {
            return Err(ApiErr::die(format!(
                "detected the following error(s):\n* this host's name '{}' is already used in the cluster - remove it with 'pvecm delnode' or use 'force'",
                me.name
            )));
        }
        cluster
    };
    let (store, node) = (cx.store.clone(), cx.local.clone());
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.local, "clusterjoin", "", &cx.caller.authid, cx.fail, move |lab| {
            let mut st = lab.state();
            let key = format!("cluster:{store}/{cluster}");
            if !st.domains.contains_key(&key) {
                return Err(format!("cluster '{cluster}' vanished"));
            }
            // Like PVE: the joining node's /etc/pve is replaced by the cluster's (its tokens vanish).
            st.domains.remove(&format!("node:{store}/{node}"));
            if let Some(d) = st.domains.get_mut(&key) {
                if !d.members.contains(&node) {
                    d.members.push(node.clone());
                }
                d.config_version += 1;
            }
            if let Some(n) = st.store_mut(&store).and_then(|s| s.node_mut(&node)) {
                n.cluster = Some(cluster.clone());
            }
            lab.save(&st);
            Ok(vec![
                "Request addition of this node".into(),
                "Join request OK, finishing setup locally".into(),
                "stopping pve-cluster service".into(),
                "merge authentication key".into(),
                "waiting for quorum...OK".into(),
                "successfully added node to cluster.".into(),
            ])
        });
    Ok(json!(upid))
}

pub(super) fn nodes(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    let Some(c) = &n.cluster else {
        return Err(ApiErr::die("Error 2 while reading '/etc/pve/corosync.conf': node is not in a cluster"));
    };
    let dom = st.domains.get(&format!("cluster:{}/{c}", s.id));
    let members = dom.map(|d| d.members.clone()).unwrap_or_default();
    Ok(Value::Array(
        members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let addr = s.node(m).map(|x| x.address.clone()).unwrap_or_default();
                json!({"node": m, "name": m, "nodeid": (i + 1).to_string(), "quorum_votes": "1", "ring0_addr": addr})
            })
            .collect(),
    ))
}

pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    let now = lab.now_ms();
    let mut out = Vec::new();
    match &n.cluster {
        None => out.push(json!({"type": "node", "name": n.name, "id": format!("node/{}", n.name), "ip": n.address, "local": 1, "online": 1, "nodeid": 0, "level": ""})),
        Some(c) => {
            let dom = st.domains.get(&format!("cluster:{}/{c}", s.id));
            let members = dom.map(|d| d.members.clone()).unwrap_or_default();
            let online = members.iter().filter(|m| s.node(m).is_some_and(|x| x.is_up(now) && x.cluster.as_deref() == Some(c))).count();
            out.push(json!({"type": "cluster", "name": c, "id": "cluster", "nodes": members.len(), "quorate": (online * 2 > members.len()) as i64, "version": dom.map(|d| d.config_version).unwrap_or(1)}));
            for (i, m) in members.iter().enumerate() {
                let x = s.node(m);
                let up = x.is_some_and(|x| x.is_up(now) && x.cluster.as_deref() == Some(c));
                out.push(json!({"type": "node", "name": m, "id": format!("node/{m}"), "ip": x.map(|x| x.address.clone()).unwrap_or_default(), "local": (m == &n.name) as i64, "online": up as i64, "nodeid": i + 1, "level": ""}));
            }
        }
    }
    Ok(Value::Array(out))
}
