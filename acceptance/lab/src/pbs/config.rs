//! The PBS config files the lab serves: datastore.cfg, remote.cfg, sync.cfg,
//! verification.cfg, prune.cfg (`/config/{datastore,remote,sync,verify,prune}[/{id}]`,
//! proxmox-backup `src/api2/config/*.rs`). One digest per file, the lookups and their
//! messages, the order of the checks, and what each kind adds (sync directions, the remote a
//! sync job uses, datastores created and removed in worker tasks).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::params::ParamErrors;
use super::{mutate, PbsCx, PbsResult};
use crate::api::{self, p_bool, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::state::StoreState;

/// One config file.
pub trait Section {
    /// The collection in the store's PBS state.
    const COLL: &'static str;
    /// The parameter naming an entry.
    const KEY: &'static str;
    /// The section type, as a failed lookup names it (`no such verification 'x'`).
    const TYPE: &'static str;
    /// How create and delete name an entry (`job 'x' already exists.`).
    const NOUN: &'static str;
    /// DELETE looks the entry up (a 400 when it is missing) before it compares the digest;
    /// the others compare first and answer a missing entry with 404.
    const DELETE_LOOKS_UP_FIRST: bool = false;
    /// PUT trims `comment` and removes it when blank (prune stores it as given).
    const TRIMS_COMMENT: bool = true;
}

/// Declares the marker type of one config file, for handlers like `list::<Remotes>`.
macro_rules! section {
    ($name:ident, $coll:literal, $key:literal, $ty:literal, $noun:literal $(, $c:ident = $v:expr)*) => {
        pub struct $name;
        impl Section for $name {
            const COLL: &'static str = $coll;
            const KEY: &'static str = $key;
            const TYPE: &'static str = $ty;
            const NOUN: &'static str = $noun;
            $(const $c: bool = $v;)*
        }
    };
}

section!(Datastores, "datastore", "name", "datastore", "datastore");
section!(Remotes, "remote", "name", "remote", "remote");
section!(SyncJobs, "sync", "id", "sync", "job");
section!(VerifyJobs, "verify", "id", "verification", "job", DELETE_LOOKS_UP_FIRST = true);
section!(PruneJobs, "prune", "id", "prune", "job", DELETE_LOOKS_UP_FIRST = true, TRIMS_COMMENT = false);

type Coll = BTreeMap<String, Map<String, Value>>;

/// The file in the store's PBS state; created empty on first use, also by a read (which then
/// leaves it unsaved).
fn section<S: Section>(s: &mut StoreState) -> &mut Coll {
    s.pbs.collections.entry(S::COLL.to_string()).or_default()
}

/// The file's digest: sha256 over the whole file, so a change to one entry invalidates a
/// digest read from another (`pbs-config` `config()`).
fn digest<S: Section>(s: &mut StoreState) -> String {
    api::digest256_of(&*section::<S>(s))
}

/// PBS refuses a change when the client sent the digest of another version of the file; it
/// compares only when one is sent (`detect_modified_configuration_file`).
pub fn check_digest(p: &Params, digest: &str) -> Result<(), ApiErr> {
    match p_str(p, "digest") {
        Some(d) if d != digest => {
            Err(ApiErr::new(400, "detected modified configuration - file changed by other user? Try again."))
        }
        _ => Ok(()),
    }
}

fn param_err(name: &str, reason: String) -> ApiErr {
    ApiErr::new(400, ParamErrors::one(name, reason).to_string())
}

fn no_such<S: Section>(id: &str) -> ApiErr {
    ApiErr::new(400, format!("no such {} '{id}'", S::TYPE))
}

/// An entry as GET shows it: without its password, with its id.
fn public<S: Section>(id: &str, cfg: &Map<String, Value>) -> Value {
    let mut o = cfg.clone();
    o.remove("password");
    o.insert(S::KEY.to_string(), json!(id));
    Value::Object(o)
}

/// A sync job's direction; jobs without one pull.
fn direction(job: &Map<String, Value>) -> &str {
    job.get("sync-direction").and_then(Value::as_str).unwrap_or("pull")
}

/// `GET /config/{kind}`: every entry and the file's digest. Sync lists know directions from
/// PBS 3.3.0 on and show pull jobs unless asked for `push` or `all`
/// (`src/api2/admin/sync.rs` `ListSyncDirection`, default `pull`).
pub fn list<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    let mut st = lab.state();
    let s = super::store_mut(&mut st, &cx.store)?;
    let want = p_str(p, "sync-direction").unwrap_or_else(|| "pull".into());
    let directions = S::COLL == "sync" && lab.profiles.pbs.sync_direction();
    let d = digest::<S>(s);
    let entries = section::<S>(s)
        .iter()
        .filter(|(_, v)| !directions || want == "all" || direction(v) == want)
        .map(|(k, v)| public::<S>(k, v))
        .collect();
    Ok((Value::Array(entries), Some(d)))
}

/// `GET /config/{kind}/{id}`: a missing entry is the section lookup's 400.
pub fn get<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    let id = p_str(p, S::KEY).unwrap_or_default();
    let mut st = lab.state();
    let s = super::store_mut(&mut st, &cx.store)?;
    let d = digest::<S>(s);
    section::<S>(s).get(&id).map(|v| (public::<S>(&id, v), Some(d))).ok_or_else(|| no_such::<S>(&id))
}

/// The checks a sync job's settings get before it is written (`create_sync_job`,
/// `update_sync_job`, `check_sync_job_modify_access`): a push job without a remote fails the
/// access check (there is no remote path to check), a local job cannot sync a datastore onto
/// itself (create only), push jobs take no `resync-corrupt`.
fn check_sync(job: &Map<String, Value>, creating: bool) -> Result<(), ApiErr> {
    let push = direction(job) == "push";
    if push && !job.contains_key("remote") {
        return Err(ApiErr::new(400, "permission check failed"));
    }
    if creating && !job.contains_key("remote") && job.get("store") == job.get("remote-store") {
        return Err(ApiErr::new(400, "source and target datastore can't be the same"));
    }
    Ok(())
}

fn resync_corrupt_on_push(p: &Params) -> Result<(), ApiErr> {
    if p_str(p, "sync-direction").as_deref() == Some("push") && p.contains_key("resync-corrupt") {
        return Err(ApiErr::new(400, "push jobs do not support resync-corrupt option"));
    }
    Ok(())
}

/// `POST /config/{kind}`. Job configs are not checked against the datastores and remotes
/// they name (PBS checks only their format). A datastore is created by a worker task, which
/// writes the config; the answer is its UPID.
pub fn create<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = p_str(p, S::KEY).ok_or_else(|| ApiErr::new(400, format!("missing '{}'", S::KEY)))?;
    let mut cfg: Map<String, Value> =
        p.iter().filter(|(k, _)| *k != S::KEY).map(|(k, v)| (k.clone(), v.clone())).collect();
    if S::COLL == "sync" {
        check_sync(&cfg, true)?;
        resync_corrupt_on_push(p)?;
    }
    if S::COLL == "datastore" {
        cfg.remove("reuse-datastore");
        cfg.remove("overwrite-in-use");
    }
    let exists = || param_err(S::KEY, format!("{} '{id}' already exists.", S::NOUN));
    if S::COLL != "datastore" {
        return mutate(lab, &cx.store, |s| {
            let c = section::<S>(s);
            if c.contains_key(&id) {
                return Err(exists());
            }
            c.insert(id.clone(), cfg);
            Ok(Value::Null)
        });
    }
    {
        let mut st = lab.state();
        if section::<S>(super::store_mut(&mut st, &cx.store)?).contains_key(&id) {
            return Err(exists());
        }
    }
    let path = cfg.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
    if lab.profiles.pbs.datastore_path_checked_up_front() && !path.starts_with('/') {
        return Err(param_err("path", format!("expected an abolute path, '{path}' is not")));
    }
    let wid = id.clone();
    Ok(json!(cx.spawn(lab, "create-datastore", &wid, move |lab, store| {
        if !path.starts_with('/') {
            return Err(format!("expected absolute path - got {path:?}"));
        }
        let mut st = lab.state();
        let s = st.store_mut(store).ok_or("store vanished")?;
        section::<S>(s).insert(id.clone(), cfg);
        lab.save(&st);
        Ok(vec![format!("Chunkstore create: 1%"), format!("Chunkstore create: 100%")])
    })))
}

/// `PUT /config/{kind}/{id}`: digest, then the lookup, then `delete` (an array of property
/// names) and the new values.
pub fn update<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = p_str(p, S::KEY).unwrap_or_default();
    mutate(lab, &cx.store, |s| {
        check_digest(p, &digest::<S>(s))?;
        let cfg = section::<S>(s).get_mut(&id).ok_or_else(|| no_such::<S>(&id))?;
        if S::COLL == "sync" {
            resync_corrupt_on_push(p)?;
        }
        let mut new = cfg.clone();
        if let Some(Value::Array(del)) = p.get("delete") {
            for k in del.iter().filter_map(Value::as_str) {
                new.remove(k);
            }
        }
        for (k, v) in p.iter().filter(|(k, _)| !matches!(k.as_str(), "delete" | "digest") && *k != S::KEY) {
            new.insert(k.clone(), v.clone());
        }
        if S::TRIMS_COMMENT {
            if let Some(c) = p_str(p, "comment") {
                match c.trim() {
                    "" => new.remove("comment"),
                    t => new.insert("comment".into(), json!(t)),
                };
            }
        }
        if S::COLL == "sync" {
            check_sync(&new, false)?;
        }
        *cfg = new;
        Ok(Value::Null)
    })
}

/// `DELETE /config/{kind}/{id}`. A remote still used by a sync job is refused first. A
/// datastore takes the jobs on it with it (unless `keep-job-configs`) at once, and is removed
/// from the config by a worker task; the answer is its UPID.
pub fn delete<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = p_str(p, S::KEY).unwrap_or_default();
    let datastore = S::COLL == "datastore";
    let push_jobs_go_too = lab.profiles.pbs.datastore_delete_removes_push_jobs();
    mutate(lab, &cx.store, |s| {
        if S::COLL == "remote" {
            let user = s
                .pbs
                .collections
                .get("sync")
                .into_iter()
                .flatten()
                .find(|(_, j)| j.get("remote").and_then(Value::as_str) == Some(id.as_str()));
            if let Some((job, j)) = user {
                let store = j.get("store").and_then(Value::as_str).unwrap_or_default();
                return Err(param_err(
                    "name",
                    format!("remote '{id}' is used by sync job '{job}' (datastore '{store}')"),
                ));
            }
        }
        let d = digest::<S>(s);
        if S::DELETE_LOOKS_UP_FIRST && !section::<S>(s).contains_key(&id) {
            return Err(no_such::<S>(&id));
        }
        check_digest(p, &d)?;
        if !section::<S>(s).contains_key(&id) {
            return Err(ApiErr::new(404, format!("{} '{id}' does not exist.", S::NOUN)));
        }
        if !datastore {
            section::<S>(s).remove(&id);
        } else if !p_bool(p, "keep-job-configs").unwrap_or(false) {
            for kind in ["verify", "sync", "prune"] {
                if let Some(jobs) = s.pbs.collections.get_mut(kind) {
                    // Before PBS 4.1.1 the cleanup listed sync jobs with the default
                    // direction (pull), so push jobs on the datastore stayed.
                    jobs.retain(|_, j| {
                        j.get("store").and_then(Value::as_str) != Some(id.as_str())
                            || (kind == "sync" && direction(j) == "push" && !push_jobs_go_too)
                    });
                }
            }
        }
        Ok(())
    })?;
    if !datastore {
        return Ok(Value::Null);
    }
    let wid = id.clone();
    Ok(json!(cx.spawn(lab, "delete-datastore", &wid, move |lab, store| {
        let mut st = lab.state();
        let s = st.store_mut(store).ok_or("store vanished")?;
        section::<S>(s).remove(&id);
        s.pbs.gc.remove(&id);
        lab.save(&st);
        Ok(vec![format!("removing datastore '{id}' from config")])
    })))
}

/// A store's datastore, if it has one of that name.
pub fn datastore<'a>(s: &'a StoreState, name: &str) -> Option<&'a Map<String, Value>> {
    s.pbs.collections.get(Datastores::COLL).and_then(|d| d.get(name))
}
