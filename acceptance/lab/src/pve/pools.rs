//! Ceph pools (`/nodes/{node}/ceph/pool`), as pve-manager's `PVE/API2/Ceph/Pool.pm` and
//! `PVE/Ceph/Tools.pm` (`create_pool`, `set_pool`) handle them. In the model, and with `--ceph`
//! also in the real Ceph cluster the lab's stores share (see [`pool_prefix`]): then the mon
//! commands are the ones PVE sends and Ceph's own rules answer them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{check_ceph, dom_key, Cx};
use crate::api::{p_bool, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::{EcProfile, LabState, Pool};

/// What `pveceph init` writes as `osd_pool_default_size`/`min_size` (`PVE/API2/Ceph.pm` `init`):
/// the size of a pool created without one, and the min_size Ceph falls back to on a size change.
const DEFAULT_SIZE: i64 = 3;
const DEFAULT_MIN_SIZE: i64 = 2;
/// Ceph's `mon_max_pg_per_osd`, counted over at least 3 OSDs (`OSDMonitor::check_pg_num`).
const MAX_PG_PER_OSD: i64 = 250;

fn flag(b: bool) -> &'static str {
    // PVE interpolates the flags into strings ("0"/"1") up to 9.1.17 (pve-manager 93f55e8a made
    // them JSON booleans in 9.1.18, newer than every profile).
    if b {
        "1"
    } else {
        "0"
    }
}

/// An entry of `GET /nodes/{node}/ceph/pool` (`lspools`: `osd dump` + `df` + autoscale status).
fn list_entry(pool: &Pool) -> Value {
    let apps: Map<String, Value> = pool.applications.iter().map(|a| (a.clone(), json!({}))).collect();
    json!({
        "pool": pool.id, "pool_name": pool.name, "size": pool.size, "min_size": pool.min_size,
        "pg_num": pool.pg_num, "crush_rule": rule_id(pool), "crush_rule_name": pool.crush_rule,
        "pg_autoscale_mode": pool.pg_autoscale_mode, "bytes_used": pool.bytes_used,
        "percent_used": pool.percent_used, "type": kind(pool), "application_metadata": apps,
        // Assigned from the autoscaler's row even when undefined: null, not absent.
        "autoscale_status": {"pool_name": pool.name, "pg_autoscale_mode": pool.pg_autoscale_mode, "pg_num_final": pool.pg_num},
        "pg_num_final": pool.pg_num, "pg_num_min": pool.pg_num_min, "target_size": pool.target_size,
        "target_size_ratio": pool.target_size_ratio,
    })
}

fn kind(pool: &Pool) -> &'static str {
    if pool.ec_profile.is_some() {
        "erasure"
    } else {
        "replicated"
    }
}

/// `replicated_rule` is rule 0; an erasure-coded pool gets a rule of its own, named after it.
fn rule_id(pool: &Pool) -> i64 {
    if pool.crush_rule == "replicated_rule" {
        0
    } else {
        pool.id
    }
}

/// Pulls real Ceph's view into the model so changes made with the `ceph` CLI (and Ceph's own
/// reactions, like min_size following size) show up.
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
        if (prefix.is_empty() && rp.name.starts_with("store-") && rp.name.contains('.')) || name.starts_with('.') {
            continue;
        }
        seen.insert(name.to_string());
        let p = s.pools.entry(name.to_string()).or_insert_with(|| new_pool(rp.id, name, 1, None));
        p.id = rp.id;
        p.size = rp.size;
        p.min_size = rp.min_size;
        p.pg_num = rp.pg_num;
        p.pg_num_min = rp.pg_num_min;
        p.crush_rule = rp.crush_rule.clone();
        p.pg_autoscale_mode = rp.pg_autoscale_mode.clone();
        p.target_size = rp.target_size_bytes;
        p.target_size_ratio = rp.target_size_ratio;
        p.applications = rp.applications.iter().cloned().collect();
        p.ec_profile = rp.ec_profile.clone().map(|e| e.strip_prefix(&prefix).unwrap_or(&e).to_string());
        p.bytes_used = rp.bytes_used;
        p.percent_used = rp.percent_used;
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

/// A pool as `osd pool create` leaves it, before PVE's `set_pool` (Ceph's defaults are what
/// `pveceph init` configured).
fn new_pool(id: i64, name: &str, pg_num: i64, ec: Option<(&str, &EcProfile)>) -> Pool {
    let (size, min_size, rule, profile) = match ec {
        // Ceph's prepare_pool_size for erasure pools: k+m, and k + min(1, m-1).
        Some((pname, p)) => (p.k + p.m, p.k + 1.min(p.m - 1), name.to_string(), Some(pname.to_string())),
        None => (DEFAULT_SIZE, DEFAULT_MIN_SIZE, "replicated_rule".to_string(), None),
    };
    Pool {
        id,
        name: name.to_string(),
        size,
        min_size,
        pg_num,
        pg_num_min: None,
        crush_rule: rule,
        applications: BTreeSet::new(),
        ec_profile: profile,
        // Ceph's own default (PVE's `warn` arrives through set_pool).
        pg_autoscale_mode: "on".into(),
        target_size: None,
        target_size_ratio: None,
        bytes_used: 0,
        percent_used: 0.0,
    }
}

fn check_ready(lab: &Lab, cx: &Cx) -> Result<(), ApiErr> {
    let st = lab.state();
    check_ceph(&st, cx)?;
    super::check_rados(&st, cx)
}

pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    check_ready(lab, cx)?;
    refresh_pools_from_backend(lab, &cx.store);
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let mut pools: Vec<&Pool> = s.pools.values().collect();
    pools.sort_by_key(|p| p.id);
    Ok(Value::Array(pools.into_iter().map(list_entry).collect()))
}

/// `GET …/pool/{name}`: a directory index that never looks at Ceph, so it answers for any name.
pub(super) fn index(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    check_ceph(&lab.state(), cx)?;
    Ok(json!([{"name": "status"}]))
}

fn unrecognized(name: &str) -> String {
    format!("error with 'osd pool get': mon_cmd failed - unrecognized pool '{name}'")
}

/// `GET …/pool/{name}/status` (`getpool`): `osd pool get <name> all`, and with `verbose` the
/// applications, the autoscaler's row and the statistics from `ceph df`.
pub(super) fn status(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    check_ready(lab, cx)?;
    refresh_pools_from_backend(lab, &cx.store);
    let st = lab.state();
    let name = p_str(p, "name").unwrap_or_default();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let pool = s.pools.get(&name).ok_or_else(|| ApiErr::die(unrecognized(&name)))?;
    let mut o = json!({
        "id": pool.id, "name": pool.name, "size": pool.size, "min_size": pool.min_size, "pg_num": pool.pg_num,
        "pgp_num": pool.pg_num, "crush_rule": pool.crush_rule, "pg_autoscale_mode": pool.pg_autoscale_mode,
        "pg_num_min": pool.pg_num_min, "target_size": pool.target_size, "target_size_ratio": pool.target_size_ratio,
        "fast_read": flag(false), "hashpspool": flag(true), "nodeep-scrub": flag(false), "nodelete": flag(false),
        "nopgchange": flag(false), "noscrub": flag(false), "nosizechange": flag(false),
        "use_gmt_hitset": flag(true), "write_fadvise_dontneed": flag(false),
    });
    // No `application` key, although the schema inherits it from the create options: only the
    // verbose `application_list` says which applications a pool has.
    if p_bool(p, "verbose").unwrap_or(false) {
        let stats_of = if lab.profiles.pve.per_pool_statistics() {
            pool
        } else {
            // PVE 8 and 9.1 before 9.1.12: every `ceph df` entry overwrites the result, so the
            // pool with the highest id wins (`getpool`, the filter fixed by b0f4269e).
            s.pools.values().max_by_key(|p| p.id).unwrap_or(pool)
        };
        o["application_list"] = json!(pool.applications.iter().collect::<Vec<_>>());
        o["autoscale_status"] = json!({"pool_name": pool.name, "pg_autoscale_mode": pool.pg_autoscale_mode});
        o["statistics"] = json!({
            "bytes_used": stats_of.bytes_used, "stored": stats_of.bytes_used, "objects": 0,
            "kb_used": stats_of.bytes_used / 1024, "percent_used": stats_of.percent_used, "max_avail": 1_000_000_000_000u64,
        });
    }
    Ok(o)
}

/// The settings `set_pool` applies, with the defaults `createpool` fills in.
fn create_settings(p: &Params) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for k in [
        "size",
        "min_size",
        "pg_num",
        "pg_num_min",
        "crush_rule",
        "application",
        "pg_autoscale_mode",
        "target_size_ratio",
    ] {
        if let Some(v) = p_str(p, k) {
            m.insert(k.to_string(), v);
        }
    }
    if let Some(t) = p_str(p, "target_size").and_then(|v| parse_size(&v)) {
        m.insert("target_size_bytes".into(), t.to_string());
    }
    for (k, d) in
        [("size", "3"), ("min_size", "2"), ("pg_num", "128"), ("application", "rbd"), ("pg_autoscale_mode", "warn")]
    {
        m.entry(k.to_string()).or_insert_with(|| d.to_string());
    }
    m
}

/// `erasure-coding` = `k=K,m=M[,failure-domain=…][,device-class=…][,profile=…]`.
fn parse_ec(s: &str) -> (Option<String>, EcProfile) {
    let mut p = EcProfile { k: 0, m: 0, failure_domain: "host".into(), device_class: None };
    let mut profile = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("k", v)) => p.k = v.parse().unwrap_or(0),
            Some(("m", v)) => p.m = v.parse().unwrap_or(0),
            Some(("failure-domain", v)) => p.failure_domain = v.into(),
            Some(("device-class", v)) => p.device_class = Some(v.into()),
            Some(("profile", v)) => profile = Some(v.to_string()),
            _ => {}
        }
    }
    (profile, p)
}

/// `POST /nodes/{node}/ceph/pool` (`createpool`). No check that the pool is new: Ceph's `osd
/// pool create` on an existing pool of the same type succeeds, so a second create re-applies
/// the given (or default) settings. Not atomic either: a setting that fails leaves the pool.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let name = p_str(p, "name").unwrap_or_default();
    let ec = p_str(p, "erasure-coding").map(|s| parse_ec(&s));
    let add_storages = p_bool(p, "add_storages").unwrap_or(ec.is_some());
    let dkey = {
        let st = lab.state();
        check_ceph(&st, cx)?;
        super::check_rados(&st, cx)?;
        if let Some((Some(profile), _)) = &ec {
            let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
            if !s.ec_profiles.contains_key(profile) {
                return Err(ApiErr::die(format!("Erasure code profile '{profile}' does not exist.")));
            }
        }
        if add_storages && !valid_storage_id(&name) {
            return Err(ApiErr::die(format!("storage ID '{name}' contains illegal characters")));
        }
        dom_key(&st, &cx.store, &cx.node)?
    };
    let settings = create_settings(p);
    let store = cx.store.clone();
    let wid = name.clone();
    let upid =
        lab.spawn_task_logged(Product::Pve, &cx.store, &cx.node, "cephcreatepool", &wid, &cx.caller.authid, cx.fail, {
            move |lab, log| {
                let storage_pools = match ec {
                    Some((named, profile)) => create_ec(lab, &store, &name, named, &profile, &settings, log)?,
                    None => {
                        let pg = settings.get("pg_num").and_then(|v| v.parse().ok()).unwrap_or(128);
                        osd_pool_create(lab, &store, &name, pg, None)?;
                        set_pool(lab, &store, &name, &settings, log)?;
                        (name.clone(), None)
                    }
                };
                if add_storages {
                    add_storage(lab, &dkey, &name, storage_pools)?;
                }
                Ok(())
            }
        });
    Ok(json!(upid))
}

/// An erasure-coded "pool": profile `pve_ec_<name>` (unless one is named), the data pool
/// `<name>-data` (size, min_size and crush_rule come from the profile) and the metadata pool
/// `<name>-metadata` (replicated, always 32 PGs). Returns (storage pool, data pool).
fn create_ec(
    lab: &Arc<Lab>,
    store: &str,
    name: &str,
    named: Option<String>,
    profile: &EcProfile,
    settings: &BTreeMap<String, String>,
    log: &mut Vec<String>,
) -> Result<(String, Option<String>), String> {
    let pname = match named {
        Some(n) => n,
        None => {
            let pname = format!("pve_ec_{name}");
            let prefix = pool_prefix(&lab.state(), store);
            if let Some(b) = &lab.pools {
                b.ec_profile_set(&format!("{prefix}{pname}"), profile).map_err(|e| {
                    format!("could not create erasure code profile '{pname}': error with 'osd erasure-code-profile set': mon_cmd failed - {e}\n")
                })?;
            }
            let mut st = lab.state();
            st.store_mut(store).ok_or("store vanished")?.ec_profiles.insert(pname.clone(), profile.clone());
            lab.save(&st);
            log.push(format!("created new erasure code profile '{pname}'"));
            pname
        }
    };
    let (data, meta) = (format!("{name}-data"), format!("{name}-metadata"));
    let pg = settings.get("pg_num").and_then(|v| v.parse().ok()).unwrap_or(128);
    osd_pool_create(lab, store, &data, pg, Some(&pname))?;
    let mut data_settings = settings.clone();
    for k in ["size", "min_size", "crush_rule"] {
        data_settings.remove(k);
    }
    data_settings.insert("allow_ec_overwrites".into(), "true".into());
    set_pool(lab, store, &data, &data_settings, log)?;
    let mut meta_settings = settings.clone();
    meta_settings.insert("pg_num".into(), "32".into());
    osd_pool_create(lab, store, &meta, 32, None)?;
    set_pool(lab, store, &meta, &meta_settings, log)?;
    Ok((meta, Some(data)))
}

/// Ceph's `osd pool create`: a new pool with Ceph's defaults, nothing when one of that type
/// exists already, refused when it exists with another type or the PGs would exceed the limit.
fn osd_pool_create(lab: &Arc<Lab>, store: &str, name: &str, pg_num: i64, ec: Option<&str>) -> Result<(), String> {
    let fail = |e: String| format!("error with 'osd pool create': mon_cmd failed - {e}");
    let prefix = pool_prefix(&lab.state(), store);
    if let Some(b) = &lab.pools {
        b.create(&format!("{prefix}{name}"), pg_num, ec.map(|p| format!("{prefix}{p}")).as_deref()).map_err(fail)?;
        refresh_pools_from_backend(lab, store);
        return Ok(());
    }
    let mut st = lab.state();
    let s = st.store_mut(store).ok_or("store vanished")?;
    if let Some(existing) = s.pools.get(name) {
        if existing.ec_profile.is_some() != ec.is_some() {
            let t = if ec.is_some() { "erasure" } else { "replicated" };
            return Err(fail(format!("pool '{name}' cannot change to type {t}")));
        }
        return Ok(());
    }
    let profile = ec.and_then(|p| s.ec_profiles.get(p).map(|e| (p, e.clone())));
    let pool = new_pool(s.next_pool_id + 1, name, pg_num, profile.as_ref().map(|(n, e)| (*n, e)));
    check_pg_limit(lab_osds(s), s.pools.values(), Some(&pool), pool.pg_num, pool.size).map_err(fail)?;
    s.next_pool_id += 1;
    s.pools.insert(name.to_string(), pool);
    lab.save(&st);
    Ok(())
}

fn lab_osds(s: &crate::state::StoreState) -> i64 {
    s.nodes.iter().map(|n| n.ceph.osds.len() as i64).sum()
}

/// Ceph's PG limit (`OSDMonitor::check_pg_num`): all pools' PG replicas, with `pool` at
/// `pg_num`/`size`, against `mon_max_pg_per_osd` × max(OSDs, 3). The wording is Pacific's, the
/// release the lab's real Ceph runs.
fn check_pg_limit<'a>(
    osds: i64,
    pools: impl Iterator<Item = &'a Pool>,
    pool: Option<&Pool>,
    pg_num: i64,
    size: i64,
) -> Result<(), String> {
    let others: i64 = pools.filter(|p| pool.is_none_or(|q| q.name != p.name)).map(|p| p.pg_num * p.size).sum();
    let total = others + pg_num * size;
    let in_osds = osds.max(3);
    let max = MAX_PG_PER_OSD * in_osds;
    if total > max {
        // The mon's status text starts with a space (as Pacific's `ceph` CLI shows it too).
        return Err(format!(
            " pg_num {pg_num} size {size} would mean {total} total pgs, which exceeds max {max} (mon_max_pg_per_osd {MAX_PG_PER_OSD} * num_in_osds {in_osds})"
        ));
    }
    Ok(())
}

/// PVE's `set_pool`: the pool's settings are read once; `size` goes first (Ceph resets
/// min_size when size changes, tracker #44862), the others follow by name; a setting equal to
/// what was read is skipped — also a min_size that Ceph has just reset, PVE's stale snapshot.
/// Every failure is printed and collected; the ones that worked stay.
fn set_pool(
    lab: &Arc<Lab>,
    store: &str,
    name: &str,
    settings: &BTreeMap<String, String>,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let snapshot =
        lab.state().store(store).and_then(|s| s.pools.get(name).cloned()).ok_or_else(|| unrecognized(name))?;
    let mut order: Vec<(&String, &String)> = settings.iter().collect();
    order.sort_by_key(|(k, _)| (k.as_str() != "size", k.as_str()));
    let mut failed = Vec::new();
    for (k, v) in order {
        if snapshot.ec_profile.is_some() && (k == "size" || k == "crush_rule") {
            log.push(format!("cannot set '{k}' for erasure coded pool"));
            continue;
        }
        if current(&snapshot, k).as_deref() == Some(v.as_str()) {
            log.push(format!("skipping '{k}', did not change"));
            continue;
        }
        log.push(format!("pool {name}: applying {k} = {v}"));
        if let Err(e) = ceph_set(lab, store, name, k, v) {
            let cmd = if k == "application" { "osd pool application enable" } else { "osd pool set" };
            log.push(format!("error with '{cmd}': mon_cmd failed - {e}"));
            failed.push(k.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        failed.sort();
        Err(format!("Could not set: {}", failed.join(", ")))
    }
}

/// A setting as `osd pool get <pool> all` shows it (applications never are there, so PVE
/// always sends `application enable`).
fn current(p: &Pool, k: &str) -> Option<String> {
    match k {
        "size" => Some(p.size.to_string()),
        "min_size" => Some(p.min_size.to_string()),
        "pg_num" => Some(p.pg_num.to_string()),
        "pg_num_min" => p.pg_num_min.map(|v| v.to_string()),
        "crush_rule" => Some(p.crush_rule.clone()),
        "pg_autoscale_mode" => Some(p.pg_autoscale_mode.clone()),
        "target_size_bytes" => p.target_size.map(|v| v.to_string()),
        "target_size_ratio" => p.target_size_ratio.map(|v| v.to_string()),
        _ => None,
    }
}

/// One `osd pool set` / `application enable`, answered by real Ceph with `--ceph`, else by the
/// same rules in the model (Ceph's `OSDMonitor::prepare_command_pool_set` and
/// `prepare_command_pool_application`, as Pacific words them).
fn ceph_set(lab: &Arc<Lab>, store: &str, name: &str, k: &str, v: &str) -> Result<(), String> {
    if let Some(b) = &lab.pools {
        let full = format!("{}{name}", pool_prefix(&lab.state(), store));
        let r = if k == "application" { b.application_enable(&full, v) } else { b.set(&full, k, v) };
        refresh_pools_from_backend(lab, store);
        return r;
    }
    let mut st = lab.state();
    let s = st.store_mut(store).ok_or("store vanished")?;
    let osds = lab_osds(s);
    let others: Vec<Pool> = s.pools.values().cloned().collect();
    let pool = s.pools.get_mut(name).ok_or_else(|| format!("unrecognized pool '{name}'"))?;
    let int = || v.parse::<i64>().map_err(|_| format!("error parsing integer value '{v}'"));
    match k {
        "size" => {
            let n = int()?;
            if pool.ec_profile.is_some() {
                return Err("can not change the size of an erasure-coded pool".into());
            }
            if !(1..=10).contains(&n) {
                return Err("pool size must be between 1 and 10".into());
            }
            if n == 1 {
                return Err("WARNING: setting pool size 1 could lead to data loss without recovery. If you are *ABSOLUTELY CERTAIN* that is what you want, pass the flag --yes-i-really-mean-it.".into());
            }
            check_pg_limit(osds, others.iter(), Some(pool), pool.pg_num, n)?;
            pool.size = n;
            pool.min_size = DEFAULT_MIN_SIZE.min(n);
        }
        "min_size" => {
            let n = int()?;
            if n < 1 || n > pool.size {
                return Err(format!("pool min_size must be between 1 and size, which is set to {}", pool.size));
            }
            pool.min_size = n;
        }
        "pg_num" => {
            let n = int()?;
            if !(1..=65536).contains(&n) {
                return Err("'pg_num' must be greater than 0 and less than or equal to 65536 (you may adjust 'mon max pool pg num' for higher values)".into());
            }
            if pool.pg_num_min.is_some_and(|m| n < m) {
                return Err(format!("specified pg_num {n} < pg_num_min {}", pool.pg_num_min.unwrap_or(0)));
            }
            check_pg_limit(osds, others.iter(), Some(pool), n, pool.size)?;
            pool.pg_num = n;
        }
        "pg_num_min" => {
            let n = int()?;
            if n > pool.pg_num {
                return Err(format!("specified pg_num_min {n} > pg_num {}", pool.pg_num));
            }
            pool.pg_num_min = Some(n);
        }
        "crush_rule" => {
            if v != "replicated_rule" {
                return Err(format!("crush rule {v} does not exist"));
            }
            pool.crush_rule = v.to_string();
        }
        "application" => {
            if !pool.applications.is_empty() && !pool.applications.contains(v) {
                return Err(format!(
                    "Are you SURE? Pool '{name}' already has an enabled application; pass --yes-i-really-mean-it to proceed anyway"
                ));
            }
            pool.applications.insert(v.to_string());
        }
        "pg_autoscale_mode" => pool.pg_autoscale_mode = v.to_string(),
        "target_size_bytes" => pool.target_size = Some(int()?),
        "target_size_ratio" => {
            let r: f64 = v.parse().map_err(|_| format!("error parsing value '{v}'"))?;
            if r < 0.0 {
                return Err("target_size_ratio cannot be negative".into());
            }
            pool.target_size_ratio = Some(r);
        }
        "allow_ec_overwrites" => {}
        _ => return Err(format!("unrecognized variable '{k}'")),
    }
    lab.save(&st);
    Ok(())
}

/// PVE's storage ids: `^[a-z][a-z0-9\-\_\.]*[a-z0-9]$`i (`parse_storage_id`).
fn valid_storage_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// `add_storages`: an RBD storage named after the pool (`PVE/API2/Ceph/Pool.pm` `add_storage`).
fn add_storage(
    lab: &Arc<Lab>,
    dkey: &str,
    name: &str,
    (pool, data_pool): (String, Option<String>),
) -> Result<(), String> {
    let mut st = lab.state();
    let c = st
        .domains
        .get_mut(dkey)
        .map(|d| d.collections.entry("storage".into()).or_default())
        .ok_or("domain vanished")?;
    if c.contains_key(name) {
        return Err(format!(
            "adding PVE storage for ceph pool '{name}' failed: create storage failed: storage ID '{name}' already defined\n\n"
        ));
    }
    let mut cfg = Map::new();
    cfg.insert("type".into(), json!("rbd"));
    cfg.insert("pool".into(), json!(pool));
    if let Some(d) = data_pool {
        cfg.insert("data-pool".into(), json!(d));
    }
    cfg.insert("content".into(), json!("rootdir,images"));
    cfg.insert("krbd".into(), json!(0));
    c.insert(name.to_string(), cfg);
    lab.save(&st);
    Ok(())
}

/// `PUT …/pool/{name}` (`setpool`): `set_pool` in a task; the pool's existence is found out there.
pub(super) fn update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    check_ceph(&lab.state(), cx)?;
    let name = p_str(p, "name").unwrap_or_default();
    let mut settings = BTreeMap::new();
    for k in [
        "size",
        "min_size",
        "pg_num",
        "pg_num_min",
        "crush_rule",
        "application",
        "pg_autoscale_mode",
        "target_size_ratio",
    ] {
        if let Some(v) = p_str(p, k) {
            settings.insert(k.to_string(), v);
        }
    }
    if let Some(t) = p_str(p, "target_size").and_then(|v| parse_size(&v)) {
        settings.insert("target_size_bytes".into(), t.to_string());
    }
    let store = cx.store.clone();
    let wid = name.clone();
    let upid =
        lab.spawn_task_logged(Product::Pve, &cx.store, &cx.node, "cephsetpool", &wid, &cx.caller.authid, cx.fail, {
            move |lab, log| set_pool(lab, &store, &name, &settings, log)
        });
    Ok(json!(upid))
}

/// `DELETE …/pool/{name}` (`destroypool`), in a task. `force` only skips PVE's check for VM and
/// container images (`vm-*`, `base-*`) in the PVE storages on the pool: a pool holding other
/// data, or no storage at all, is destroyed without it. The lab's storages hold no images.
pub(super) fn destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    check_ceph(&lab.state(), cx)?;
    let name = p_str(p, "name").unwrap_or_default();
    let remove_storages = p_bool(p, "remove_storages").unwrap_or(false);
    let force = p_bool(p, "force").unwrap_or(false);
    let remove_ecprofile = p_bool(p, "remove_ecprofile").unwrap_or(true);
    let dkey = dom_key(&lab.state(), &cx.store, &cx.node)?;
    let store = cx.store.clone();
    let wid = name.clone();
    let upid = lab.spawn_task_logged(
        Product::Pve,
        &cx.store,
        &cx.node,
        "cephdestroypool",
        &wid,
        &cx.caller.authid,
        cx.fail,
        {
            move |lab, log| {
                // `$get_storages`: the RBD storages whose pool (default `rbd`) or data pool it is.
                let uses = |v: &Map<String, Value>| {
                    let field = |k: &str| v.get(k).and_then(Value::as_str);
                    field("type") == Some("rbd")
                        && (field("pool").unwrap_or("rbd") == name || field("data-pool") == Some(name.as_str()))
                };
                let storages: Vec<(String, bool)> = {
                    let st = lab.state();
                    let c = st.domains.get(&dkey).and_then(|d| d.collections.get("storage"));
                    let disabled = |v: &Map<String, Value>| v.get("disable").is_some_and(crate::schema::truthy);
                    c.map(|c| c.iter().filter(|(_, v)| uses(v)).map(|(k, v)| (k.clone(), disabled(v))).collect())
                        .unwrap_or_default()
                };
                // Without `force` PVE lists each storage's images (`vdisk_list`, which first
                // insists the storage is enabled); the lab's storages hold none.
                if !force {
                    for (s, disabled) in &storages {
                        log.push(format!("checking storage '{s}' for RBD images.."));
                        if *disabled {
                            return Err(format!("storage '{s}' is disabled"));
                        }
                    }
                }
                let pool = lab
                    .state()
                    .store(&store)
                    .and_then(|s| s.pools.get(&name).cloned())
                    .ok_or_else(|| unrecognized(&name))?;
                let prefix = pool_prefix(&lab.state(), &store);
                if let Some(b) = &lab.pools {
                    b.remove(&format!("{prefix}{name}"))
                        .map_err(|e| format!("error with 'osd pool delete': mon_cmd failed - {e}"))?;
                }
                {
                    let mut st = lab.state();
                    if let Some(s) = st.store_mut(&store) {
                        s.pools.remove(&name);
                    }
                    lab.save(&st);
                }
                if let Some(profile) = &pool.ec_profile {
                    log.push(format!("found erasure coded profile '{profile}', destroying its CRUSH rule"));
                    if remove_ecprofile {
                        log.push(format!("destroying erasure coded profile '{profile}'"));
                        if let Some(b) = &lab.pools {
                            if let Err(e) = b.ec_profile_rm(&format!("{prefix}{profile}")) {
                                log.push(format!("removing profile '{profile}' failed: {e}"));
                            }
                        }
                        let mut st = lab.state();
                        if let Some(s) = st.store_mut(&store) {
                            s.ec_profiles.remove(profile);
                        }
                        lab.save(&st);
                    }
                }
                if remove_storages {
                    let mut st = lab.state();
                    if let Some(c) = st.domains.get_mut(&dkey).and_then(|d| d.collections.get_mut("storage")) {
                        c.retain(|_, v| !uses(v));
                    }
                    lab.save(&st);
                }
                Ok(())
            }
        },
    );
    Ok(json!(upid))
}

/// Drift by hand (admin API): sets a field in the model; the caller mirrors it into Ceph.
pub fn apply_pool_field(pool: &mut Pool, k: &str, v: &str) {
    let int = |s: &str| s.parse::<i64>().ok();
    match k {
        "size" => pool.size = int(v).unwrap_or(pool.size),
        "min_size" => pool.min_size = int(v).unwrap_or(pool.min_size),
        "pg_num" => pool.pg_num = int(v).unwrap_or(pool.pg_num),
        "pg_num_min" => pool.pg_num_min = int(v),
        "crush_rule" => pool.crush_rule = v.to_string(),
        "application" => pool.applications = BTreeSet::from([v.to_string()]),
        "pg_autoscale_mode" => pool.pg_autoscale_mode = v.to_string(),
        "target_size" => pool.target_size = parse_size(v),
        "target_size_ratio" => pool.target_size_ratio = v.parse().ok(),
        _ => {}
    }
}

/// `target_size` as PVE parses it (`parse_size`: a number with an optional K, M, G or T).
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
