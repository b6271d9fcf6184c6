//! Ceph pools (`/nodes/{node}/ceph/pool`): in the model, and with `--ceph` also in the real
//! Ceph cluster the lab's stores share (see [`pool_prefix`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{check_ceph, dom_key, Cx};
use crate::api::{p_bool, p_int, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::{LabState, Pool};

fn pool_json(pool: &Pool) -> Value {
    let mut o = json!({
        "pool": pool.id, "pool_name": pool.name, "size": pool.size, "min_size": pool.min_size,
        "pg_num": pool.pg_num, "pg_num_final": pool.pg_num, "crush_rule": 0, "crush_rule_name": pool.crush_rule,
        "pg_autoscale_mode": pool.pg_autoscale_mode, "bytes_used": pool.bytes_used,
        "percent_used": pool.percent_used,
        "type": "replicated",
        "application_metadata": {pool.application.clone(): {}},
        "autoscale_status": {"pool_name": pool.name, "pg_autoscale_mode": pool.pg_autoscale_mode},
    });
    if let Some(m) = pool.pg_num_min {
        o["pg_num_min"] = json!(m);
    }
    if let Some(t) = pool.target_size {
        o["target_size"] = json!(t);
    }
    if let Some(r) = pool.target_size_ratio {
        o["target_size_ratio"] = json!(r);
    }
    o
}

/// Pull real Ceph's view into the model so drift made with the `ceph` CLI shows up.
pub fn refresh_pools_from_backend(lab: &Lab, store: &str) {
    let Some(b) = &lab.pools else { return };
    let Ok(real) = b.list() else { return };
    let mut st = lab.state();
    let prefix = pool_prefix(&st, store);
    let Some(s) = st.store_mut(store) else { return };
    let mut seen = BTreeSet::new();
    for rp in real {
        let Some(name) = rp.name.strip_prefix(&prefix) else {
            continue;
        };
        if prefix.is_empty() && rp.name.starts_with("store-") && rp.name.contains('.') {
            continue;
        }
        if name == ".mgr" || name.starts_with('.') {
            continue;
        }
        seen.insert(name.to_string());
        let next_id = s.next_pool_id + 1;
        let p = s.pools.entry(name.to_string()).or_insert_with(|| Pool {
            id: if rp.id > 0 { rp.id } else { next_id },
            name: name.to_string(),
            size: rp.size,
            min_size: rp.min_size,
            pg_num: rp.pg_num,
            pg_num_min: None,
            crush_rule: "replicated_rule".into(),
            application: "rbd".into(),
            pg_autoscale_mode: "warn".into(),
            target_size: None,
            target_size_ratio: None,
            bytes_used: 0,
            percent_used: 0.0,
        });
        p.size = rp.size;
        p.min_size = rp.min_size;
        p.pg_num = rp.pg_num;
        p.bytes_used = rp.bytes_used;
        p.percent_used = rp.percent_used;
        if let Some(app) = rp.application {
            p.application = app;
        }
        if rp.id > 0 {
            p.id = rp.id;
        }
    }
    s.pools.retain(|k, _| seen.contains(k));
}

/// Real Ceph is shared by the lab's stores: store-001 uses plain pool names, others a prefix.
pub fn pool_prefix(st: &LabState, store: &str) -> String {
    match st.stores.iter().position(|s| s.id == store) {
        Some(0) | None => String::new(),
        Some(_) => format!("{store}."),
    }
}

pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let store = cx.store.clone();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
    }
    refresh_pools_from_backend(lab, &store);
    let st = lab.state();
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    Ok(Value::Array(s.pools.values().map(pool_json).collect()))
}

/// `pveceph pool create`, in a task; with `erasure-coding` a data and a metadata pool.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let name = p_str(p, "name").unwrap_or_default();
    let store = cx.store.clone();
    let dkey = {
        let st = lab.state();
        check_ceph(&st, cx)?;
        dom_key(&st, &cx.store, &cx.node)?
    };
    let ec = p_str(p, "erasure-coding");
    let mut names = vec![(name.clone(), "replicated")];
    if ec.is_some() {
        names = vec![(format!("{name}-data"), "erasure"), (format!("{name}-metadata"), "replicated")];
    }
    let size = p_int(p, "size").unwrap_or(3);
    let min_size = p_int(p, "min_size").unwrap_or(2);
    let pg_num = p_int(p, "pg_num").unwrap_or(128);
    let application = p_str(p, "application").unwrap_or_else(|| "rbd".into());
    let mode = p_str(p, "pg_autoscale_mode").unwrap_or_else(|| "warn".into());
    let crush = p_str(p, "crush_rule").unwrap_or_else(|| "replicated_rule".into());
    let add_storages = p_bool(p, "add_storages").unwrap_or(ec.is_some());
    let pg_num_min = p_int(p, "pg_num_min");
    let target_size = p_str(p, "target_size").and_then(|v| parse_size(&v));
    let target_ratio = p_str(p, "target_size_ratio").and_then(|v| v.parse().ok());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.node,
        "cephcreatepool",
        &name.clone(),
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            if min_size > size {
                return Err(min_size_error(size));
            }
            let prefix = pool_prefix(&lab.state(), &store);
            let mut log = Vec::new();
            for (pname, _kind) in &names {
                if let Some(b) = &lab.pools {
                    b.create(&format!("{prefix}{pname}"), pg_num, size, min_size, &application)?;
                    if mode != "warn" {
                        b.set(&format!("{prefix}{pname}"), "pg_autoscale_mode", &mode)?;
                    }
                }
                log.push(format!("pool {pname}: applying size = {size}"));
                log.push(format!("pool {pname}: applying min_size = {min_size}"));
                log.push(format!("pool {pname}: applying application = {application}"));
                log.push(format!("pool {pname}: applying pg_num = {pg_num}"));
            }
            let mut st = lab.state();
            let s = st.store_mut(&store).ok_or("store vanished")?;
            for (pname, _) in &names {
                let id = match s.pools.get(pname) {
                    Some(p) => p.id,
                    None => {
                        s.next_pool_id += 1;
                        s.next_pool_id
                    }
                };
                s.pools.insert(
                    pname.clone(),
                    Pool {
                        id,
                        name: pname.clone(),
                        size,
                        min_size,
                        pg_num,
                        pg_num_min,
                        crush_rule: crush.clone(),
                        application: application.clone(),
                        pg_autoscale_mode: mode.clone(),
                        target_size,
                        target_size_ratio: target_ratio,
                        bytes_used: 0,
                        percent_used: 0.0,
                    },
                );
            }
            if add_storages {
                let sto = st.domains.get_mut(&dkey).map(|d| d.collections.entry("storage".into()).or_default());
                if let Some(c) = sto {
                    let mut cfg = Map::new();
                    cfg.insert("type".into(), json!("rbd"));
                    cfg.insert("pool".into(), json!(names.last().map(|n| n.0.clone()).unwrap_or_default()));
                    cfg.insert("content".into(), json!("rootdir,images"));
                    cfg.insert("krbd".into(), json!(0));
                    c.insert(name.clone(), cfg);
                }
            }
            lab.save(&st);
            Ok(log)
        },
    );
    Ok(json!(upid))
}

pub(super) fn index(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let store = cx.store.clone();
    let st = lab.state();
    check_ceph(&st, cx)?;
    let name = p_str(p, "name").unwrap_or_default();
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    if !s.pools.contains_key(&name) {
        return Err(ApiErr::die(format!("pool '{name}' not found")));
    }
    Ok(json!([{"name": "status"}]))
}

pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let store = cx.store.clone();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
    }
    refresh_pools_from_backend(lab, &store);
    let st = lab.state();
    let name = p_str(p, "name").unwrap_or_default();
    let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let pool = s.pools.get(&name).ok_or_else(|| ApiErr::die(format!("pool '{name}' not found")))?;
    let mut o = json!({
        "id": pool.id, "name": pool.name, "size": pool.size, "min_size": pool.min_size, "pg_num": pool.pg_num,
        "pgp_num": pool.pg_num, "crush_rule": pool.crush_rule, "pg_autoscale_mode": pool.pg_autoscale_mode,
        "application": pool.application, "application_list": [pool.application],
        "fast_read": 0, "hashpspool": 1, "nodeep-scrub": 0, "nodelete": 0, "nopgchange": 0, "noscrub": 0,
        "nosizechange": 0, "use_gmt_hitset": 1, "write_fadvise_dontneed": 0,
    });
    if p_bool(p, "verbose").unwrap_or(false) {
        o["statistics"] = json!({"bytes_used": pool.bytes_used, "max_avail": 1_000_000_000_000u64, "percent_used": pool.percent_used, "stored": pool.bytes_used});
    }
    if let Some(m) = pool.pg_num_min {
        o["pg_num_min"] = json!(m);
    }
    if let Some(r) = pool.target_size_ratio {
        o["target_size_ratio"] = json!(r);
    }
    if let Some(t) = pool.target_size {
        o["target_size"] = json!(t.to_string());
    }
    Ok(o)
}

pub(super) fn update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let name = p_str(p, "name").unwrap_or_default();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
    }
    let mut changes: Vec<(String, String)> = Vec::new();
    for k in [
        "size",
        "min_size",
        "pg_num",
        "pg_num_min",
        "crush_rule",
        "application",
        "pg_autoscale_mode",
        "target_size",
        "target_size_ratio",
    ] {
        if let Some(v) = p_str(p, k) {
            changes.push((k.to_string(), v));
        }
    }
    let upid = lab.spawn_task(Product::Pve, &store, &node, "cephsetpool", &name.clone(), &cx.caller.authid, cx.fail, {
        let store = store.clone();
        move |lab| {
            let prefix = pool_prefix(&lab.state(), &store);
            {
                let st = lab.state();
                let s = st.store(&store).ok_or("store vanished")?;
                let Some(cur) = s.pools.get(&name) else {
                    return Err(format!("pool '{name}' does not exist"));
                };
                // Ceph's own consistency rule, as the mon reports it.
                let mut after = cur.clone();
                for (k, v) in &changes {
                    apply_pool_field(&mut after, k, v);
                }
                if after.min_size > after.size {
                    return Err(min_size_error(after.size));
                }
            }
            let mut log = Vec::new();
            for (k, v) in &changes {
                if let Some(b) = &lab.pools {
                    let (ck, cv) = ceph_key(k, v);
                    if let Some(ck) = ck {
                        b.set(&format!("{prefix}{name}"), ck, &cv)?;
                    }
                }
                log.push(format!("pool {name}: applying {k} = {v}"));
            }
            let mut st = lab.state();
            let pool = st.store_mut(&store).and_then(|s| s.pools.get_mut(&name)).ok_or("pool vanished")?;
            for (k, v) in &changes {
                apply_pool_field(pool, k, v);
            }
            lab.save(&st);
            Ok(log)
        }
    });
    Ok(json!(upid))
}

pub(super) fn destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let name = p_str(p, "name").unwrap_or_default();
    {
        let st = lab.state();
        check_ceph(&st, cx)?;
    }
    let remove_storages = p_bool(p, "remove_storages").unwrap_or(false);
    let dkey = {
        let st = lab.state();
        dom_key(&st, &store, &node)?
    };
    let upid =
        lab.spawn_task(Product::Pve, &store, &node, "cephdestroypool", &name.clone(), &cx.caller.authid, cx.fail, {
            let store = store.clone();
            move |lab| {
                let prefix = pool_prefix(&lab.state(), &store);
                {
                    let st = lab.state();
                    let s = st.store(&store).ok_or("store vanished")?;
                    if !s.pools.contains_key(&name) {
                        return Err(format!("pool '{name}' does not exist"));
                    }
                    let used: Vec<String> = st
                        .domains
                        .get(&dkey)
                        .and_then(|d| d.collections.get("storage"))
                        .map(|c| {
                            c.iter()
                                .filter(|(_, v)| v.get("pool").and_then(Value::as_str) == Some(name.as_str()))
                                .map(|(k, _)| k.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    if !used.is_empty() && !remove_storages {
                        return Err(format!("pool '{name}' still in use by storages: {}", used.join(", ")));
                    }
                }
                if let Some(b) = &lab.pools {
                    b.remove(&format!("{prefix}{name}"))?;
                }
                let mut st = lab.state();
                if let Some(s) = st.store_mut(&store) {
                    s.pools.remove(&name);
                }
                if remove_storages {
                    if let Some(c) = st.domains.get_mut(&dkey).and_then(|d| d.collections.get_mut("storage")) {
                        c.retain(|_, v| v.get("pool").and_then(Value::as_str) != Some(name.as_str()));
                    }
                }
                lab.save(&st);
                Ok(vec![format!("pool {name}: removed")])
            }
        });
    Ok(json!(upid))
}

fn min_size_error(size: i64) -> String {
    format!("mon_command failed - pool min_size must be between 1 and size, which is set to {size}")
}

fn ceph_key<'a>(k: &'a str, v: &str) -> (Option<&'a str>, String) {
    match k {
        "size" | "min_size" | "pg_num" | "pg_num_min" | "crush_rule" | "pg_autoscale_mode" | "target_size_ratio" => {
            (Some(k), v.to_string())
        }
        "target_size" => (Some("target_size_bytes"), v.to_string()),
        _ => (None, v.to_string()),
    }
}

pub fn apply_pool_field(pool: &mut Pool, k: &str, v: &str) {
    let int = |s: &str| s.parse::<i64>().ok();
    match k {
        "size" => pool.size = int(v).unwrap_or(pool.size),
        "min_size" => pool.min_size = int(v).unwrap_or(pool.min_size),
        "pg_num" => pool.pg_num = int(v).unwrap_or(pool.pg_num),
        "pg_num_min" => pool.pg_num_min = int(v),
        "crush_rule" => pool.crush_rule = v.to_string(),
        "application" => pool.application = v.to_string(),
        "pg_autoscale_mode" => pool.pg_autoscale_mode = v.to_string(),
        "target_size" => pool.target_size = parse_size(v),
        "target_size_ratio" => pool.target_size_ratio = v.parse().ok(),
        _ => {}
    }
}

fn parse_size(v: &str) -> Option<i64> {
    let v = v.trim();
    let (num, mult) = match v.chars().last() {
        Some('K') => (&v[..v.len() - 1], 1i64 << 10),
        Some('M') => (&v[..v.len() - 1], 1 << 20),
        Some('G') => (&v[..v.len() - 1], 1 << 30),
        Some('T') => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<f64>().ok().map(|f| (f * mult as f64) as i64)
}
