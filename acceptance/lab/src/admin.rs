//! The lab's own admin API (plain HTTP on loopback, `Authorization: Bearer TOKEN`): state
//! snapshots for assertions, DR wipes, drift behind Terraform's back, fault injection, and call
//! counters. Documented in README.md.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::http::{self, Handler, Req, Resp};
use crate::lab::{lock, FaultRule, Lab};
use crate::model;
use crate::state::LabState;

pub fn handler(lab: Arc<Lab>) -> Handler {
    Arc::new(move |req: Req| {
        let lab = Arc::clone(&lab);
        Box::pin(async move { Some(handle(&lab, req)) })
    })
}

fn err(status: u16, msg: impl Into<String>) -> Resp {
    Resp::json(status, &json!({"error": msg.into()}))
}

fn handle(lab: &Arc<Lab>, req: Req) -> Resp {
    let token = lab.state().admin_token.clone();
    let ok = http::header(&req, "authorization")
        .is_some_and(|h| h.strip_prefix("Bearer ").is_some_and(|t| t.trim() == token));
    if !ok {
        return err(401, "missing or wrong bearer token");
    }
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return err(400, format!("body is not JSON: {e}")),
        }
    };
    let query: Map<String, Value> = form_urlencoded::parse(req.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let r = match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["lab", "health"]) => Ok(json!({"ok": true, "pid": std::process::id()})),
        ("GET", ["lab", "snapshot"]) => Ok(snapshot(lab)),
        ("GET", ["lab", "nodes", node]) => node_info(lab, node, query.get("store").and_then(Value::as_str)),
        ("POST", ["lab", "wipe"]) => wipe(lab, &body),
        ("POST", ["lab", "drift"]) => drift(lab, &body),
        ("POST", ["lab", "power"]) => power(lab, &body),
        ("POST", ["lab", "install"]) => install(lab, &body),
        ("POST", ["lab", "backups"]) => backup(lab, &body),
        ("POST", ["lab", "backups", "missing-chunk"]) => in_store(lab, &body, None, crate::pve::lose_chunk),
        ("POST", ["lab", "guests"]) => in_store(lab, &body, None, crate::pve::seed_guest),
        ("POST", ["lab", "storage-full"]) => in_store(lab, &body, None, crate::pve::set_storage_full),
        ("POST", ["lab", "stores", store, "backup-jobs", id, "run"]) => {
            in_store(lab, &body, Some(store), |st, sid, b| crate::pve::run_backup_job(st, sid, id, b))
        }
        ("GET", ["lab", "faults"]) => Ok(json!(lab.fault_rules())),
        ("POST", ["lab", "faults"]) => {
            let rules: Result<Vec<FaultRule>, _> = match &body {
                Value::Array(_) => serde_json::from_value(body.clone()),
                Value::Object(o) if o.contains_key("faults") => serde_json::from_value(o["faults"].clone()),
                _ => serde_json::from_value::<FaultRule>(body.clone()).map(|r| vec![r]),
            };
            match rules {
                Ok(rules) => {
                    let mut all = lab.fault_rules();
                    all.extend(rules);
                    lab.set_faults(all).map(|_| json!(lab.fault_rules())).map_err(|e| (400, e))
                }
                Err(e) => Err((400, format!("bad fault rule: {e}"))),
            }
        }
        ("DELETE", ["lab", "faults"]) => lab.set_faults(Vec::new()).map(|_| json!([])).map_err(|e| (400, e)),
        ("GET", ["lab", "calls"]) => Ok(calls(lab)),
        ("DELETE", ["lab", "calls"]) => {
            lock(&lab.calls).clear();
            Ok(json!({"total": 0, "by_endpoint": {}}))
        }
        _ => Err((404, format!("no such admin endpoint: {} {}", req.method, req.path))),
    };
    match r {
        Ok(v) => Resp::json(200, &v),
        Err((s, m)) => err(s, m),
    }
}

fn calls(lab: &Lab) -> Value {
    let c = lock(&lab.calls);
    let total: u64 = c.values().sum();
    json!({"total": total, "by_endpoint": *c})
}

pub fn snapshot(lab: &Lab) -> Value {
    let now = lab.now_ms();
    let st = lab.state();
    let stores: Vec<Value> = st
        .stores
        .iter()
        .map(|s| {
            let nodes: Vec<Value> = s.nodes.iter().map(|n| model::node_summary(&st, s, n, now)).collect();
            let guests: Map<String, Value> =
                s.nodes.iter().map(|n| (n.name.clone(), json!(n.guests.keys().collect::<Vec<_>>()))).collect();
            let mut clusters = Map::new();
            let mut backup_jobs = Map::new();
            let mut storages = Map::new();
            for (k, d) in st.domains.iter() {
                let Some(rest) = k.split_once(':').map(|x| x.1) else { continue };
                if !rest.starts_with(&format!("{}/", s.id)) {
                    continue;
                }
                if let Some(c) = &d.cluster_name {
                    clusters.insert(c.clone(), json!({"members": d.members, "ceph_initialized": d.ceph_initialized}));
                }
                if let Some(b) = d.collections.get("backup") {
                    for (id, cfg) in b {
                        backup_jobs.insert(id.clone(), json!({"domain": k, "config": cfg}));
                    }
                }
                if let Some(b) = d.collections.get("storage") {
                    for (id, cfg) in b {
                        let mut c = cfg.clone();
                        c.remove("password");
                        storages.insert(id.clone(), json!({"domain": k, "config": c}));
                    }
                }
            }
            json!({
                "id": s.id, "nodes": nodes, "clusters": clusters,
                "pools": s.pools, "backup_jobs": backup_jobs, "storages": storages, "guests": guests,
                "pbs": {"address": s.pbs.address, "datastores": s.pbs.collections.get("datastore"), "remotes": s.pbs.collections.get("remote").map(|r| r.iter().map(|(k, v)| { let mut v = v.clone(); v.remove("password"); (k.clone(), Value::Object(v)) }).collect::<Map<_, _>>()),
                    "sync_jobs": s.pbs.collections.get("sync"), "verify_jobs": s.pbs.collections.get("verify"),
                    "prune_jobs": s.pbs.collections.get("prune"), "gc": s.pbs.gc, "tokens": s.pbs.tokens.keys().collect::<Vec<_>>(),
                    "snapshots": s.pbs.snapshots},
            })
        })
        .collect();
    drop(st);
    json!({"version": 1, "stores": stores, "tasks": lab.task_counts(), "calls": calls(lab), "faults": lab.fault_rules()})
}

type AResult = Result<Value, (u16, String)>;

fn find_store(st: &LabState, store: Option<&str>, node: Option<&str>) -> Result<String, (u16, String)> {
    if let Some(s) = store {
        return st.store(s).map(|s| s.id.clone()).ok_or((404, format!("no such store '{s}'")));
    }
    match node {
        Some(n) => {
            let hits: Vec<&str> = st.stores.iter().filter(|s| s.node(n).is_some()).map(|s| s.id.as_str()).collect();
            match hits.as_slice() {
                [one] => Ok(one.to_string()),
                [] => Err((404, format!("no such node '{n}'"))),
                _ => Err((400, format!("node '{n}' exists in several stores; give \"store\""))),
            }
        }
        None if st.stores.len() == 1 => Ok(st.stores[0].id.clone()),
        None => Err((400, "give \"store\"".into())),
    }
}

fn node_info(lab: &Lab, node: &str, store: Option<&str>) -> AResult {
    let now = lab.now_ms();
    let st = lab.state();
    let sid = find_store(&st, store, Some(node))?;
    let s = st.store(&sid).ok_or((404, "no store".to_string()))?;
    let n = s.node(node).ok_or((404, format!("no such node '{node}'")))?;
    Ok(model::node_summary(&st, s, n, now))
}

fn wipe(lab: &Arc<Lab>, body: &Value) -> AResult {
    let store = body.get("store").and_then(Value::as_str);
    let node = body.get("node").and_then(Value::as_str);
    let (uuids, pools) = {
        let mut st = lab.state();
        let sid = find_store(&st, store, node)?;
        let prefix = crate::pve::pool_prefix(&st, &sid);
        let pools: Vec<String> =
            st.store(&sid).map(|s| s.pools.keys().map(|k| format!("{prefix}{k}")).collect()).unwrap_or_default();
        let r = match node {
            Some(n) => {
                if st.store(&sid).and_then(|s| s.node(n)).is_none() {
                    return Err((404, format!("no such node '{n}'")));
                }
                (model::wipe_node(&mut st, &sid, n).into_iter().collect::<Vec<_>>(), Vec::new())
            }
            None => {
                let pbs = body.get("pbs").and_then(Value::as_bool).unwrap_or(false);
                (model::wipe_store(&mut st, &sid, pbs), pools)
            }
        };
        lab.save(&st);
        r
    };
    let mut peer_errors = Vec::new();
    if let Some(b) = &lab.bmc {
        for u in &uuids {
            if let Err(e) = b.set_power(u, false) {
                peer_errors.push(format!("bmc power off {u}: {e}"));
            }
            if let Err(e) = b.eject(u) {
                peer_errors.push(format!("bmc eject {u}: {e}"));
            }
        }
    }
    if let Some(p) = &lab.pools {
        for name in &pools {
            if let Err(e) = p.remove(name) {
                peer_errors.push(format!("ceph pool rm {name}: {e}"));
            }
        }
    }
    Ok(json!({"wiped_systems": uuids, "removed_pools": pools, "peer_errors": peer_errors}))
}

/// Power a node on/off: through the BMC when there is one, else directly in the model
/// (power on boots the installed disk).
fn power(lab: &Arc<Lab>, body: &Value) -> AResult {
    let node = body.get("node").and_then(Value::as_str).ok_or((400, "missing \"node\"".to_string()))?;
    let on = body.get("on").and_then(Value::as_bool).ok_or((400, "missing \"on\" (bool)".to_string()))?;
    let uuid = {
        let mut st = lab.state();
        let sid = find_store(&st, body.get("store").and_then(Value::as_str), Some(node))?;
        let n = st.store_mut(&sid).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
        if lab.bmc.is_none() {
            n.power_on = on;
            if on {
                n.boot_time = crate::state::now_s();
            }
        }
        let u = n.system_id.clone();
        lab.save(&st);
        u
    };
    if let Some(b) = &lab.bmc {
        b.set_power(&uuid, on).map_err(|e| (502, format!("bmc: {e}")))?;
    }
    Ok(json!({"node": node, "on": on, "via_bmc": lab.bmc.is_some()}))
}

/// Without a BMC: (re)install a node as if it had booted `image_url` (default: none recorded).
fn install(lab: &Arc<Lab>, body: &Value) -> AResult {
    if lab.bmc.is_some() {
        return Err((409, "this lab has a BMC: install through Redfish virtual media".into()));
    }
    let node = body.get("node").and_then(Value::as_str).ok_or((400, "missing \"node\"".to_string()))?;
    let mut st = lab.state();
    let sid = find_store(&st, body.get("store").and_then(Value::as_str), Some(node))?;
    if st.store(&sid).and_then(|s| s.node(node)).is_none() {
        return Err((404, format!("no such node '{node}'")));
    }
    let install_ms = st.options.install_ms;
    // The image carries no token; without a BMC there is no seed either: root keeps the lab's
    // password (as after an install by hand).
    model::reset_os(&mut st, &sid, node, model::Tokens::None).map_err(|e| (500, e))?;
    let image = body.get("image_url").and_then(Value::as_str).map(|u| crate::state::BootedImage {
        url: u.to_string(),
        sha256: body.get("sha256").and_then(Value::as_str).map(str::to_string),
        booted_at: crate::state::now_s(),
    });
    if let Some(n) = st.store_mut(&sid).and_then(|s| s.node_mut(node)) {
        n.power_on = true;
        n.installed = true;
        n.install_until_ms = Some(crate::state::now_ms() + install_ms);
        n.image = image;
        model::record_image(n);
    }
    lab.save(&st);
    drop(st);
    crate::serve::refresh_lab_json(lab).map_err(|e| (500, format!("rewriting lab.json: {e}")))?;
    Ok(json!({"node": node, "store": sid, "ready_in_ms": install_ms}))
}

/// A backup snapshot in a PBS datastore, as a backup client would have written it (see
/// `pbs::add_backup` for the body).
fn backup(lab: &Arc<Lab>, body: &Value) -> AResult {
    let mut st = lab.state();
    let sid = find_store(&st, body.get("store").and_then(Value::as_str), None)?;
    let r = crate::pbs::add_backup(&mut st, &sid, body)?;
    lab.save(&st);
    Ok(r)
}

/// Runs `f` on the store the body (`"store"`, else `"node"`) or `store` names, and saves.
fn in_store(
    lab: &Arc<Lab>,
    body: &Value,
    store: Option<&str>,
    f: impl FnOnce(&mut LabState, &str, &Value) -> AResult,
) -> AResult {
    let mut st = lab.state();
    let store = store.or_else(|| body.get("store").and_then(Value::as_str));
    let sid = find_store(&st, store, body.get("node").and_then(Value::as_str))?;
    let r = f(&mut st, &sid, body)?;
    lab.save(&st);
    Ok(r)
}

/// Changes made behind Terraform's back. `{"kind": ..., ...}`; see README for the kinds.
fn drift(lab: &Arc<Lab>, body: &Value) -> AResult {
    let kind = body.get("kind").and_then(Value::as_str).ok_or((400, "missing \"kind\"".to_string()))?;
    let s_arg = body.get("store").and_then(Value::as_str);
    let n_arg = body.get("node").and_then(Value::as_str);
    let str_of =
        |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string).ok_or((400, format!("missing \"{k}\"")));
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    let vstr = match &value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let mut ceph_set: Option<(String, String, String)> = None;
    let mut publish = false;
    let res = {
        let mut st = lab.state();
        let sid = find_store(&st, s_arg, n_arg)?;
        let prefix = crate::pve::pool_prefix(&st, &sid);
        let r = match kind {
            "pool_size" | "pool_field" => {
                let pool = str_of("pool")?;
                let field = if kind == "pool_size" { "size".to_string() } else { str_of("field")? };
                let s = st.store_mut(&sid).ok_or((404, "no store".to_string()))?;
                let p = s.pools.get_mut(&pool).ok_or((404, format!("no such pool '{pool}'")))?;
                crate::pve::apply_pool_field(p, &field, &vstr);
                ceph_set = Some((format!("{prefix}{pool}"), field, vstr.clone()));
                json!(p)
            }
            "delete_pool" => {
                let pool = str_of("pool")?;
                let s = st.store_mut(&sid).ok_or((404, "no store".to_string()))?;
                s.pools.remove(&pool).ok_or((404, format!("no such pool '{pool}'")))?;
                ceph_set = Some((format!("{prefix}{pool}"), "__rm".into(), String::new()));
                json!({"deleted": pool})
            }
            "delete_backup_job" | "backup_job_field" | "delete_storage" | "storage_field" => {
                let (coll, idk) = if kind.contains("backup") { ("backup", "id") } else { ("storage", "storage") };
                let id = str_of(idk).or_else(|_| str_of("id"))?;
                let mut hit = None;
                for (k, d) in st.domains.iter_mut() {
                    if !k.contains(&format!(":{sid}/")) {
                        continue;
                    }
                    if let Some(c) = d.collections.get_mut(coll) {
                        if kind.starts_with("delete") {
                            if c.remove(&id).is_some() {
                                hit = Some(json!({"deleted": id, "domain": k}));
                            }
                        } else if let Some(cfg) = c.get_mut(&id) {
                            let field = body
                                .get("field")
                                .and_then(Value::as_str)
                                .ok_or((400, "missing \"field\"".to_string()))?;
                            if value.is_null() {
                                cfg.remove(field);
                            } else {
                                cfg.insert(field.to_string(), value.clone());
                            }
                            hit = Some(json!({"id": id, "domain": k, "config": cfg}));
                        }
                    }
                }
                hit.ok_or((404, format!("no such {coll} entry '{id}'")))?
            }
            "dns" => {
                let node = n_arg.ok_or((400, "missing \"node\"".to_string()))?;
                let n =
                    st.store_mut(&sid).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
                let servers: Vec<String> = body
                    .get("servers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                n.dns.dns1 = servers.first().cloned();
                n.dns.dns2 = servers.get(1).cloned();
                n.dns.dns3 = servers.get(2).cloned();
                if let Some(search) = body.get("search").and_then(Value::as_str) {
                    n.dns.search = search.to_string();
                }
                json!(n.dns)
            }
            "cert" => {
                // `pvenode cert set`, or pveproxy generating a new self-signed certificate: the
                // node presents another certificate (signed by the lab CA) from the next handshake.
                let node = n_arg.ok_or((400, "missing \"node\"".to_string()))?;
                let ca = st.ca.clone();
                let n =
                    st.store_mut(&sid).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
                let ip: std::net::IpAddr =
                    n.address.parse().map_err(|e| (500, format!("node address {}: {e}", n.address)))?;
                let old = n.cert.fingerprint.clone();
                n.cert = crate::pki::issue(&ca, &n.name, ip).map_err(|e| (500, e.to_string()))?;
                publish = true;
                json!({"node": node, "old_fingerprint": old, "tls_fingerprint": n.cert.fingerprint})
            }
            "seed_tamper" => {
                // A man in the middle of the BMC's seed download: the node's next install
                // boots with another bootstrap certificate than the seed's.
                let node = n_arg.ok_or((400, "missing \"node\"".to_string()))?;
                let n =
                    st.store_mut(&sid).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
                n.seed_tamper = true;
                json!({"node": node, "seed_tamper": true})
            }
            "timezone" => {
                let node = n_arg.ok_or((400, "missing \"node\"".to_string()))?;
                let n =
                    st.store_mut(&sid).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
                n.timezone = vstr.clone();
                json!({"timezone": n.timezone})
            }
            "pbs_job_field" | "delete_pbs_job" => {
                let coll = body
                    .get("job_type")
                    .or_else(|| body.get("collection"))
                    .and_then(Value::as_str)
                    .unwrap_or("sync")
                    .to_string();
                let id = str_of("id")?;
                let s = st.store_mut(&sid).ok_or((404, "no store".to_string()))?;
                let c = s.pbs.collections.get_mut(&coll).ok_or((404, format!("no PBS {coll} entries")))?;
                if kind == "delete_pbs_job" {
                    c.remove(&id).ok_or((404, format!("no such PBS {coll} '{id}'")))?;
                    json!({"deleted": id})
                } else {
                    let cfg = c.get_mut(&id).ok_or((404, format!("no such PBS {coll} '{id}'")))?;
                    let field =
                        body.get("field").and_then(Value::as_str).ok_or((400, "missing \"field\"".to_string()))?;
                    if value.is_null() {
                        cfg.remove(field);
                    } else {
                        cfg.insert(field.to_string(), value.clone());
                    }
                    json!(cfg)
                }
            }
            other => return Err((400, format!("unknown drift kind '{other}'"))),
        };
        lab.save(&st);
        r
    };
    if publish {
        crate::serve::refresh_lab_json(lab).map_err(|e| (500, format!("rewriting lab.json: {e}")))?;
    }
    if let (Some(b), Some((pool, field, v))) = (&lab.pools, ceph_set) {
        let r = match field.as_str() {
            "__rm" => b.remove(&pool),
            "application" => b.application_replace(&pool, &v),
            "target_size" => b.set_by_hand(&pool, "target_size_bytes", &v),
            _ => b.set_by_hand(&pool, &field, &v),
        };
        if let Err(e) = r {
            return Err((500, format!("drift applied to the model but real Ceph refused: {e}")));
        }
    }
    Ok(res)
}
