//! Backup jobs (`/cluster/backup`, /etc/pve/jobs.cfg) and storages (`/storage`,
//! /etc/pve/storage.cfg): config stored as given, in the calling node's config domain. One set
//! of handlers serves both; [`Section`] says where they differ.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{domain_mut, mutate, Cx};
use crate::api::{digest_of, edit_entry, p_bool, p_str, random_hex, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::state::LabState;

/// What differs between the config sections served here.
pub(super) trait Section {
    /// The collection in the config domain.
    const COLL: &'static str;
    /// The parameter naming an entry.
    const KEY: &'static str;
    /// GET or PUT of an entry that does not exist.
    fn missing(id: &str) -> String;
    /// POST of an entry that exists.
    fn taken(id: &str) -> String;
    /// DELETE of an entry that does not exist.
    fn gone(id: &str) -> String;
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
    /// The answer to a POST or PUT.
    fn answer(_id: &str, _cfg: &Map<String, Value>) -> Value {
        Value::Null
    }
}

pub(super) struct Backup;
pub(super) struct Storage;

impl Section for Backup {
    const COLL: &'static str = "backup";
    const KEY: &'static str = "id";
    fn missing(id: &str) -> String {
        format!("Job '{id}' does not exist")
    }
    fn taken(id: &str) -> String {
        format!("Job '{id}' already exists")
    }
    fn gone(id: &str) -> String {
        format!("job '{id}' not found")
    }
    fn describe(o: &mut Map<String, Value>, _: &Map<String, Value>) {
        o.insert("type".into(), json!("vzdump"));
    }
    fn complete(cfg: &mut Map<String, Value>, p: &Params) -> Result<(), ApiErr> {
        if !cfg.contains_key("vmid") && !cfg.contains_key("pool") && !p_bool(p, "all").unwrap_or(false) {
            return Err(ApiErr::die("you need to specify either 'vmid', 'pool' or 'all'"));
        }
        cfg.entry("enabled").or_insert(json!(1));
        if !cfg.contains_key("schedule") {
            cfg.insert("schedule".into(), json!("00:00"));
        }
        Ok(())
    }
}

impl Section for Storage {
    const COLL: &'static str = "storage";
    const KEY: &'static str = "storage";
    fn missing(id: &str) -> String {
        format!("storage '{id}' does not exist")
    }
    fn taken(id: &str) -> String {
        format!("storage ID '{id}' already defined")
    }
    fn gone(id: &str) -> String {
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
    c.get(&id).map(|cfg| public::<S>(&id, cfg)).ok_or_else(|| ApiErr::die(S::missing(&id)))
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
    let id = id_of::<S>(p);
    mutate(lab, |st| {
        let cfg = section::<S>(st, cx)?.get_mut(&id).ok_or_else(|| ApiErr::die(S::missing(&id)))?;
        edit_entry(cfg, p, S::KEY)?;
        Ok(S::answer(&id, cfg))
    })
}

pub(super) fn delete<S: Section>(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = id_of::<S>(p);
    mutate(lab, |st| {
        section::<S>(st, cx)?.remove(&id).ok_or_else(|| ApiErr::die(S::gone(&id)))?;
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
