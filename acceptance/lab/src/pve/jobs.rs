//! Backup jobs (`/cluster/backup`, /etc/pve/jobs.cfg) and storages (`/storage`,
//! /etc/pve/storage.cfg): config stored as given, in the calling node's config domain. One set
//! of handlers serves both; [`Section`] says where they differ.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::{json, Map, Value};

use super::{domain_mut, mutate, Cx};
use crate::api::{delete_list, digest_of, edit_entry, p_bool, p_str, p_true, random_hex, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::LabState;

/// What differs between the config sections served here.
pub(super) trait Section {
    /// The collection in the config domain.
    const COLL: &'static str;
    /// The parameter naming an entry.
    const KEY: &'static str;
    /// GET of an entry that does not exist.
    fn missing(id: &str) -> ApiErr;
    /// PUT of an entry that does not exist.
    fn missing_update(id: &str) -> ApiErr {
        Self::missing(id)
    }
    /// POST of an entry that exists.
    fn taken(id: &str) -> String;
    /// DELETE of an entry that does not exist.
    fn gone(id: &str) -> ApiErr;
    /// What a GET shows besides the entry's config and id.
    fn describe(o: &mut Map<String, Value>, cfg: &Map<String, Value>);
    /// Checks made before the config is locked.
    fn check(_lab: &Lab, _p: &Params) -> Result<(), ApiErr> {
        Ok(())
    }
    /// Checks and defaults of a new entry (`cfg`: its parameters but the key).
    fn complete(_cfg: &mut Map<String, Value>, _p: &Params) -> Result<(), ApiErr> {
        Ok(())
    }
    /// Checks of an update made before the config is locked.
    fn check_update(_p: &Params) -> Result<(), ApiErr> {
        Ok(())
    }
    /// Checks of an update made in the lock, before the entry is looked up.
    fn verify_update(_p: &Params) -> Result<(), ApiErr> {
        Ok(())
    }
    /// Checks of the keys an update deletes (after the entry was found).
    fn check_delete(_lab: &Lab, _keys: &[String]) -> Result<(), ApiErr> {
        Ok(())
    }
    /// What an update does besides setting and deleting the given keys, and the check of the
    /// result.
    fn normalize_update(_cfg: &mut Map<String, Value>, _p: &Params) -> Result<(), ApiErr> {
        Ok(())
    }
    /// The answer to a POST or PUT.
    fn answer(_id: &str, _cfg: &Map<String, Value>) -> Value {
        Value::Null
    }
}

pub(super) struct Backup;
pub(super) struct Storage;

/// A parameter exception raised inside `cfs_lock_file`: pve-cluster re-raises it with
/// `die "$@"`, which stringifies it, so the client gets a 500 whose message is the exception's
/// text — `400 Parameter verification failed.` and one `key: error` line — and no `errors`.
fn stringified_param_error(key: &str, msg: &str) -> ApiErr {
    ApiErr::die(format!("400 Parameter verification failed.\n{key}: {msg}\n"))
}

/// The settings PVE keeps as property strings and returns decoded (pve-guest-common
/// `PVE::VZDump::JobBase::decode_value`): `keep-all`/`enabled` as numbers, the rest as strings.
const PROPERTY_STRINGS: &[&str] = &["prune-backups", "fleecing", "performance"];

fn decode_property_string(s: &str) -> Value {
    let o: Map<String, Value> = s
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = match (k, v) {
                ("keep-all" | "enabled", "1" | "true" | "yes" | "on") => json!(1),
                ("keep-all" | "enabled", _) => json!(0),
                _ => json!(v),
            };
            (k.to_string(), v)
        })
        .collect();
    Value::Object(o)
}

impl Section for Backup {
    const COLL: &'static str = "backup";
    const KEY: &'static str = "id";
    /// `read`: a parameter exception outside any lock, a real 400 (`PVE/API2/Backup.pm`).
    fn missing(id: &str) -> ApiErr {
        ApiErr::param("id", format!("No such job '{id}'"))
    }
    fn missing_update(_id: &str) -> ApiErr {
        ApiErr::die("no such vzdump job")
    }
    fn taken(id: &str) -> String {
        format!("Job '{id}' already exists")
    }
    /// `delete` raises the same exception inside the config lock: stringified into a 500.
    fn gone(id: &str) -> ApiErr {
        stringified_param_error("id", &format!("No such job '{id}'"))
    }
    fn describe(o: &mut Map<String, Value>, _: &Map<String, Value>) {
        o.insert("type".into(), json!("vzdump"));
        for k in PROPERTY_STRINGS {
            if let Some(Value::String(s)) = o.get(*k) {
                let decoded = decode_property_string(s);
                o.insert((*k).to_string(), decoded);
            }
        }
    }
    /// Before the lock (real 403s and 400s): the resource pool, then `$schedule_param_check`
    /// with the schedule required.
    fn check(_lab: &Lab, p: &Params) -> Result<(), ApiErr> {
        check_pool_exists(p)?;
        schedule_param_check(p)?;
        if p_str(p, "schedule").is_none() && p_str(p, "starttime").is_none() {
            return Err(ApiErr::param("schedule", "neither 'starttime' nor 'schedule' were set"));
        }
        Ok(())
    }
    /// `verify_vzdump_parameters` inside the lock (`PVE/VZDump.pm`).
    fn complete(cfg: &mut Map<String, Value>, p: &Params) -> Result<(), ApiErr> {
        verify_vzdump_parameters(cfg, true)?;
        if p_bool(p, "enabled").is_none() {
            cfg.insert("enabled".into(), json!(1));
        }
        Ok(())
    }
    /// `update_job` checks the schedule without requiring one: an update may leave it alone.
    fn check_update(p: &Params) -> Result<(), ApiErr> {
        check_pool_exists(p)?;
        schedule_param_check(p)
    }
    /// In the lock, before the job is looked up: something to change, and the given
    /// parameters on their own (`verify_vzdump_parameters` without the selection check).
    fn verify_update(p: &Params) -> Result<(), ApiErr> {
        if !p.keys().any(|k| k != "id" && k != "delete") && delete_list(p).is_empty() {
            return Err(ApiErr::die("no options specified"));
        }
        verify_vzdump_parameters(&mut p.clone(), false)
    }
    /// Only vzdump options (`PVE::VZDump::option_exists`), `comment` and `repeat-missed` can be
    /// deleted: the update method's parameters but the job's own keys.
    fn check_delete(lab: &Lab, keys: &[String]) -> Result<(), ApiErr> {
        let schema = lab.schema(Product::Pve).and_then(|s| s.endpoint("/cluster/backup/{id}"));
        let Some(props) =
            schema.and_then(|e| e.info.get("PUT")).and_then(|m| m["parameters"]["properties"].as_object())
        else {
            return Ok(());
        };
        let job_only = ["id", "schedule", "starttime", "dow", "delete", "enabled"];
        match keys.iter().find(|k| !props.contains_key(k.as_str()) || job_only.contains(&k.as_str())) {
            Some(k) => Err(stringified_param_error("delete", &format!("unknown option '{k}'"))),
            None => Ok(()),
        }
    }
    /// `update_job`: a new selection replaces the old one — vmid, else `all` (also the one
    /// `verify_vzdump_parameters` set for an `exclude` without pool), else the job's pool —
    /// then the job as a whole is verified.
    fn normalize_update(cfg: &mut Map<String, Value>, p: &Params) -> Result<(), ApiErr> {
        let remove = |cfg: &mut Map<String, Value>, keys: &[&str]| keys.iter().for_each(|k| drop(cfg.remove(*k)));
        let all = p_bool(p, "all").unwrap_or(false) || (p.contains_key("exclude") && !p_true(p, "pool"));
        if all || (cfg.contains_key("exclude") && !cfg.contains_key("pool")) {
            cfg.insert("all".into(), json!(1));
        }
        if p.contains_key("vmid") {
            remove(cfg, &["all", "exclude", "pool"]);
        } else if all {
            remove(cfg, &["vmid", "pool"]);
        } else if p_true(cfg, "pool") {
            remove(cfg, &["vmid", "all", "exclude"]);
        }
        verify_vzdump_parameters(cfg, true)
    }
}

/// A job's `pool` must be a resource pool (`$rpcenv->check_pool_exist`, pve-access-control
/// `PVE::RPCEnvironment`): the lab has none, like a fresh install, so any pool is refused.
fn check_pool_exists(p: &Params) -> Result<(), ApiErr> {
    if p_true(p, "pool") {
        let pool = p_str(p, "pool").unwrap_or_default();
        return Err(ApiErr::new(403, format!("Permission check failed (pool '{pool}' does not exist)")));
    }
    Ok(())
}

/// `$schedule_param_check` (`PVE/API2/Backup.pm`): `schedule` replaces the deprecated
/// `starttime`, so both at once is a parameter error.
fn schedule_param_check(p: &Params) -> Result<(), ApiErr> {
    if p_str(p, "schedule").is_some() && p_str(p, "starttime").is_some() {
        return Err(ApiErr::param("starttime", "'starttime' and 'schedule' cannot both be set"));
    }
    Ok(())
}

/// `PVE::VZDump::verify_vzdump_parameters`, as the job handlers call it inside the config lock
/// (so its parameter errors are stringified): `all`, `exclude` and `pool` exclude `vmid`; the
/// notes template is checked; an `exclude` without pool means `all`; with `check_missing` the
/// job must select something.
fn verify_vzdump_parameters(cfg: &mut Map<String, Value>, check_missing: bool) -> Result<(), ApiErr> {
    for k in ["all", "exclude", "pool"] {
        if p_true(cfg, k) && p_true(cfg, "vmid") {
            return Err(stringified_param_error(k, "option conflicts with option 'vmid'"));
        }
    }
    if let Some(t) = cfg.get("notes-template").and_then(Value::as_str) {
        verify_notes_template(t).map_err(|e| stringified_param_error("notes-template", &e))?;
    }
    if cfg.contains_key("exclude") && !p_true(cfg, "pool") {
        cfg.insert("all".into(), json!(1));
    }
    if check_missing && !["all", "stop", "pool", "vmid"].iter().any(|k| p_true(cfg, k)) {
        return Err(stringified_param_error("vmid", "property is missing"));
    }
    Ok(())
}

/// `$verify_notes_template` (`PVE/VZDump.pm`): one line; escapes only `\n` and `\\`; variables
/// only cluster, guestname, node and vmid. Positions are counted as Perl's `pos` does.
fn verify_notes_template(t: &str) -> Result<(), String> {
    static VAR: OnceLock<Regex> = OnceLock::new();
    if t.contains('\n') {
        return Err("contains a line feed\n".into());
    }
    let chars: Vec<char> = t.chars().collect();
    let mut problems = Vec::new();
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i] == '\\' {
            if !matches!(chars[i + 1], 'n' | '\\') {
                problems.push(format!("escape sequence '\\{}' at char {i}", chars[i + 1]));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    for c in crate::formats::re(&VAR, r"\{\{([^\s{}]+)\}\}").captures_iter(t) {
        let (Some(whole), Some(var)) = (c.get(0), c.get(1)) else { continue };
        if !matches!(var.as_str(), "cluster" | "guestname" | "node" | "vmid") {
            // pos() after the match minus the variable's length.
            let end = t[..whole.end()].chars().count();
            problems.push(format!("variable '{}' at char {}", var.as_str(), end - var.as_str().chars().count()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("found unknown: {}\n", problems.join(", ")))
    }
}

impl Section for Storage {
    const COLL: &'static str = "storage";
    const KEY: &'static str = "storage";
    fn missing(id: &str) -> ApiErr {
        ApiErr::die(format!("storage '{id}' does not exist"))
    }
    fn taken(id: &str) -> String {
        format!("storage ID '{id}' already defined")
    }
    fn gone(id: &str) -> ApiErr {
        Self::missing(id)
    }
    fn describe(o: &mut Map<String, Value>, cfg: &Map<String, Value>) {
        o.insert("digest".into(), json!(digest_of(cfg)));
    }
    fn check(lab: &Lab, p: &Params) -> Result<(), ApiErr> {
        check_pbs_storage(lab, p)
    }
    fn answer(id: &str, cfg: &Map<String, Value>) -> Value {
        json!({"storage": id, "type": cfg.get("type").cloned().unwrap_or(json!("dir"))})
    }
}

type Coll = BTreeMap<String, Map<String, Value>>;

/// The section in the calling node's config domain; created empty on first use, also by a
/// read (which then leaves it unsaved).
fn section<'a, S: Section>(st: &'a mut LabState, cx: &Cx) -> Result<&'a mut Coll, ApiErr> {
    let dom = domain_mut(st, &cx.store, &cx.local)?;
    Ok(dom.collections.entry(S::COLL.to_string()).or_default())
}

/// An entry as GET shows it: without its password, with its id.
fn public<S: Section>(id: &str, cfg: &Map<String, Value>) -> Value {
    let mut o = cfg.clone();
    o.remove("password");
    o.insert(S::KEY.to_string(), json!(id));
    S::describe(&mut o, cfg);
    Value::Object(o)
}

fn id_of<S: Section>(p: &Params) -> String {
    p_str(p, S::KEY).unwrap_or_default()
}

pub(super) fn list<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    // Without a schema (validation off) nothing rejects a stray `{KEY}` parameter here; it
    // selects that one entry, as it did when one handler served the list and the entry paths.
    if p_str(p, S::KEY).is_some() {
        return get::<S>(lab, cx, p);
    }
    let filter = p_str(p, "type");
    let mut st = lab.state();
    let c = section::<S>(&mut st, cx)?;
    Ok(Value::Array(
        c.iter()
            .filter(|(_, cfg)| {
                filter.as_ref().is_none_or(|f| cfg.get("type").and_then(Value::as_str) == Some(f.as_str()))
            })
            .map(|(k, cfg)| public::<S>(k, cfg))
            .collect(),
    ))
}

pub(super) fn get<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = id_of::<S>(p);
    let mut st = lab.state();
    let c = section::<S>(&mut st, cx)?;
    c.get(&id).map(|cfg| public::<S>(&id, cfg)).ok_or_else(|| S::missing(&id))
}

pub(super) fn create<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    S::check(lab, p)?;
    mutate(lab, |st| {
        let c = section::<S>(st, cx)?;
        let id = p_str(p, S::KEY).unwrap_or_else(|| format!("backup-{}", random_hex(12)));
        if c.contains_key(&id) {
            return Err(ApiErr::die(S::taken(&id)));
        }
        let mut cfg: Map<String, Value> =
            p.iter().filter(|(k, _)| *k != S::KEY).map(|(k, v)| (k.clone(), v.clone())).collect();
        S::complete(&mut cfg, p)?;
        let out = S::answer(&id, &cfg);
        c.insert(id, cfg);
        Ok(out)
    })
}

pub(super) fn update<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    S::check_update(p)?;
    let id = id_of::<S>(p);
    mutate(lab, |st| {
        S::verify_update(p)?;
        let cfg = section::<S>(st, cx)?.get_mut(&id).ok_or_else(|| S::missing_update(&id))?;
        S::check_delete(lab, &delete_list(p))?;
        // Changed on a copy: a failed check leaves the entry as it was.
        let mut new = cfg.clone();
        edit_entry(&mut new, p, S::KEY)?;
        S::normalize_update(&mut new, p)?;
        *cfg = new;
        Ok(S::answer(&id, cfg))
    })
}

pub(super) fn delete<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = id_of::<S>(p);
    mutate(lab, |st| {
        section::<S>(st, cx)?.remove(&id).ok_or_else(|| S::gone(&id))?;
        Ok(Value::Null)
    })
}

/// Like PVE's PBS storage plugin: adding a `pbs` storage really talks to the PBS.
fn check_pbs_storage(lab: &Lab, p: &Params) -> Result<(), ApiErr> {
    if p_str(p, "type").as_deref() != Some("pbs") {
        return Ok(());
    }
    let server =
        p_str(p, "server").ok_or_else(|| ApiErr::param("server", "property is missing and it is not optional"))?;
    let datastore = p_str(p, "datastore")
        .ok_or_else(|| ApiErr::param("datastore", "property is missing and it is not optional"))?;
    let username = p_str(p, "username").unwrap_or_default();
    let password = p_str(p, "password").unwrap_or_default();
    let st = lab.state();
    let s = st
        .stores
        .iter()
        .find(|s| s.pbs.address == server)
        .ok_or_else(|| ApiErr::die(format!("pbs error: Can't connect to {server}:8007 (Connection refused)")))?;
    if let (Some(fp), Some(cert)) = (p_str(p, "fingerprint"), &s.pbs.cert) {
        if !fp.eq_ignore_ascii_case(&cert.fingerprint) {
            return Err(ApiErr::die("pbs error: certificate validation failed - fingerprint mismatch"));
        }
    }
    let auth_ok = match username.split_once('!') {
        Some(_) => s.pbs.tokens.get(&username).is_some_and(|t| t.secret == password),
        None => username == "root@pam" && password == s.root_password,
    };
    if !auth_ok {
        return Err(ApiErr::die("pbs error: authentication failure"));
    }
    let exists = s.pbs.collections.get("datastore").is_some_and(|d| d.contains_key(&datastore));
    if !exists {
        return Err(ApiErr::die(format!("pbs error: datastore '{datastore}' does not exist")));
    }
    Ok(())
}
