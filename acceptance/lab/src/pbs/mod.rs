//! The Proxmox Backup Server API of a store (`https://ADDR:8007/api2/json`). [`ROUTES`] is the
//! one list of what it serves, one handler per endpoint. A request goes through PBS's own
//! pipeline (proxmox-rest-server `Formatted::handle_request`): the output format, the method
//! lookup, authentication (before a missing path is reported), parameters read and checked
//! the proxmox-schema way, then the handler. Errors are PBS's: the bare message as the body
//! under a JSON content type (authentication failures without one), the status from the
//! error or 400, the standard reason phrase.
//!
//! Modules: [`access`] (authentication, ticket, tokens), [`config`] (the config files),
//! [`backups`] (backup snapshots), [`params`] (parameter reading and messages), [`tasks`]
//! (UPIDs and task endpoints).

mod access;
mod backups;
pub(crate) mod config;
pub(crate) mod params;
mod tasks;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::api::{self, p_str, random_secret, ApiErr, ApiResult, Caller};
use crate::http::{self, Handler, Req, Resp};
use crate::lab::{Lab, NewTask, TaskFaults};
use crate::routes::{self, Params, Route};
use crate::schema::Product;
use crate::state::{now_s, StoreState, Token};
use config::{Datastores, PruneJobs, Remotes, SyncJobs, VerifyJobs};

pub use backups::add as add_backup;
pub use tasks::Upid;

/// Data and the digest of the config file it was read from (PBS sets it as a result
/// attribute, beside `data`).
type PbsResult = Result<(Value, Option<String>), ApiErr>;

/// Data and other result attributes (the task list's `total`).
type AttrsResult = Result<(Value, Map<String, Value>), ApiErr>;

/// What a PBS handler answers.
enum Serve {
    /// `{"data": …}`.
    Data(routes::Handler<PbsCx, ApiResult>),
    /// `{"data": …, "digest": …}`.
    WithDigest(routes::Handler<PbsCx, PbsResult>),
    /// `{"data": …}` plus other result attributes (the task list's `total`).
    WithAttrs(routes::Handler<PbsCx, AttrsResult>),
    /// A body the handler builds itself (the task log).
    Own(routes::Handler<PbsCx, Result<Resp, ApiErr>>),
    /// Starting a garbage collection: first the GC job lock, which PBS waits up to 10 s for.
    AfterGcLock(routes::Handler<PbsCx, ApiResult>),
}

use Serve::{AfterGcLock, Data, Own, WithAttrs, WithDigest};

/// Everything the lab's PBS serves, in the order `coverage --verbose` lists it.
const ROUTES: &[Route<Serve>] = &[
    Route::get("/version", Data(version)),
    Route::post("/access/ticket", Data(access::ticket)),
    Route::get("/access/users/{userid}/token", WithDigest(access::list)),
    Route::get("/access/users/{userid}/token/{token-name}", WithDigest(access::get)),
    Route::post("/access/users/{userid}/token/{token-name}", Data(access::create)),
    Route::delete("/access/users/{userid}/token/{token-name}", Data(access::delete)),
    Route::get("/config/datastore", WithDigest(config::list::<Datastores>)),
    Route::post("/config/datastore", Data(config::create::<Datastores>)),
    Route::get("/config/datastore/{name}", WithDigest(config::get::<Datastores>)),
    Route::put("/config/datastore/{name}", Data(config::update::<Datastores>)),
    Route::delete("/config/datastore/{name}", Data(config::delete::<Datastores>)),
    Route::get("/config/remote", WithDigest(config::list::<Remotes>)),
    Route::post("/config/remote", Data(config::create::<Remotes>)),
    Route::get("/config/remote/{name}", WithDigest(config::get::<Remotes>)),
    Route::put("/config/remote/{name}", Data(config::update::<Remotes>)),
    Route::delete("/config/remote/{name}", Data(config::delete::<Remotes>)),
    Route::get("/config/sync", WithDigest(config::list::<SyncJobs>)),
    Route::post("/config/sync", Data(config::create::<SyncJobs>)),
    Route::get("/config/sync/{id}", WithDigest(config::get::<SyncJobs>)),
    Route::put("/config/sync/{id}", Data(config::update::<SyncJobs>)),
    Route::delete("/config/sync/{id}", Data(config::delete::<SyncJobs>)),
    Route::get("/config/verify", WithDigest(config::list::<VerifyJobs>)),
    Route::post("/config/verify", Data(config::create::<VerifyJobs>)),
    Route::get("/config/verify/{id}", WithDigest(config::get::<VerifyJobs>)),
    Route::put("/config/verify/{id}", Data(config::update::<VerifyJobs>)),
    Route::delete("/config/verify/{id}", Data(config::delete::<VerifyJobs>)),
    Route::get("/config/prune", WithDigest(config::list::<PruneJobs>)),
    Route::post("/config/prune", Data(config::create::<PruneJobs>)),
    Route::get("/config/prune/{id}", WithDigest(config::get::<PruneJobs>)),
    Route::put("/config/prune/{id}", Data(config::update::<PruneJobs>)),
    Route::delete("/config/prune/{id}", Data(config::delete::<PruneJobs>)),
    Route::get("/admin/datastore", Data(datastores)),
    Route::get("/admin/datastore/{store}/gc", Data(gc)),
    Route::post("/admin/datastore/{store}/gc", AfterGcLock(start_gc)),
    Route::get("/admin/datastore/{store}/snapshots", Data(backups::list)),
    Route::post("/admin/verify/{id}/run", Data(verify::run)),
    Route::get("/nodes/{node}/tasks", WithAttrs(tasks::list)),
    Route::get("/nodes/{node}/tasks/{upid}", Data(tasks::index)),
    Route::delete("/nodes/{node}/tasks/{upid}", Data(tasks::stop)),
    Route::get("/nodes/{node}/tasks/{upid}/status", Data(tasks::status)),
    Route::get("/nodes/{node}/tasks/{upid}/log", Own(tasks::log)),
];

/// Every (METHOD, template) in [`ROUTES`]; `coverage` compares this with the schema.
pub const IMPLEMENTED: &[(&str, &str)] = &routes::endpoints::<_, { ROUTES.len() }>(ROUTES);

/// The host name in the lab PBS's UPIDs and certificate.
pub const HOSTNAME: &str = "pbs";

/// The context of one request.
pub(crate) struct PbsCx {
    store: String,
    caller: Caller,
    /// Fault rules decided that tasks this request starts fail.
    fail: bool,
    /// Fault rules make tasks this request starts run this much longer.
    task_delay: Duration,
}

impl PbsCx {
    /// Starts a worker task of this request (`WorkerTask::new_thread`): the caller gets the
    /// UPID at once, `op` runs in the background on the store's state.
    fn spawn<F>(&self, lab: &Arc<Lab>, wtype: &str, wid: &str, op: F) -> String
    where
        F: FnOnce(&Arc<Lab>, &str) -> Result<Vec<String>, String> + Send + 'static,
    {
        let store = self.store.clone();
        let faults = TaskFaults { fail: self.fail, delay: self.task_delay };
        let task = NewTask {
            product: Product::Pbs,
            store: &self.store,
            node: HOSTNAME,
            wtype,
            wid,
            user: &self.caller.authid,
        };
        lab.spawn_task_with(faults, task, move |lab, log| {
            log.extend(op(lab, &store)?);
            Ok(())
        })
    }
}

pub fn handler(lab: Arc<Lab>, store: String) -> Handler {
    Arc::new(move |req: Req| {
        let lab = Arc::clone(&lab);
        let store = store.clone();
        Box::pin(async move { handle(lab, store, req).await })
    })
}

/// An error as PBS's JSON formatter sends it: the message as the body, under the JSON
/// content type, with the standard reason phrase (proxmox-rest-server `formatter.rs`
/// `error_to_response`).
fn formatted(e: ApiErr) -> Resp {
    Resp::text(e.status, &e.msg)
}

/// An error raised before the formatter is chosen (output format, authentication): the
/// message as the body and no content type (`ApiService::call`).
fn unformatted(status: u16, msg: &str) -> Resp {
    Resp::bare(status, msg)
}

async fn handle(lab: Arc<Lab>, store: String, req: Req) -> Option<Resp> {
    let parts: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|p| p.starts_with('.')) {
        return Some(unformatted(400, "path contains illegal components"));
    }
    let full_path = format!("/{}", parts.join("/"));
    match parts.as_slice() {
        ["api2"] => return Some(unformatted(404, "invalid api path '/api2'")),
        ["api2", "json", ..] => {}
        ["api2", "extjs", ..] => return Some(unformatted(501, "edge-lab: the extjs output format is not served")),
        ["api2", other, ..] => return Some(unformatted(400, &format!("Unsupported output format '{other}'."))),
        _ => return Some(formatted(ApiErr::new(404, format!("Path '{full_path}' not found.")))),
    }
    let path = format!("/{}", parts[2..].join("/"));
    let routed = api::route(&lab, Product::Pbs, &req.method, &path, IMPLEMENTED);
    let template = routed.as_ref().map(|r| r.template.clone()).unwrap_or_else(|| path.clone());
    let fail = match api::pre_request(&lab, Product::Pbs, &req, &template).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let task_delay = lab.task_delay(&format!("{} {}", req.method, req.path));
    let schema = lab.schema(Product::Pbs);
    // Only these four methods exist; a path without the method is a missing path.
    let found = routed
        .filter(|_| matches!(req.method.as_str(), "GET" | "PUT" | "POST" | "DELETE"))
        .filter(|r| schema.is_none() || r.info.is_some());
    let world = found.as_ref().is_some_and(|r| api::is_world(&r.info) || r.template == "/access/ticket");
    let caller = if world {
        Caller { authid: String::new(), user: String::new(), read_only: false, via_ticket: false }
    } else {
        let profile = lab.profiles.pbs;
        let auth = {
            let st = lab.state();
            match st.store(&store) {
                Some(s) => access::authenticate(s, &req, profile.host_auth_cookie()),
                None => Err("no authentication credentials provided.".into()),
            }
        };
        match auth {
            Ok(c) => c,
            Err(reason) => {
                let msg = if profile.auth_failure_reason() {
                    format!("authentication failed - {reason}")
                } else {
                    "authentication failed".into()
                };
                let mut r = unformatted(401, &msg);
                if profile.host_auth_cookie() {
                    // rest-server 1.0.1 tells browsers to drop the HttpOnly cookie on a 401.
                    r = r.header(
                        "set-cookie",
                        "__Host-PBSAuthCookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; SameSite=Lax; HttpOnly; Path=/;"
                            .into(),
                    );
                }
                return Some(r);
            }
        }
    };
    let Some(routed) = found else {
        return Some(formatted(ApiErr::new(404, format!("Path '{full_path}' not found."))));
    };
    if caller.read_only && req.method != "GET" {
        return Some(formatted(ApiErr::new(403, "permission check failed")));
    }
    let mut params = match (schema, &routed.info) {
        (Some(schema), Some(info)) => {
            match params::read(schema, info, &req, &routed.path_params, lab.profiles.pbs.max_request_body()) {
                Ok(p) => p,
                Err(refusal) => return Some(formatted(ApiErr::new(400, refusal.to_string()))),
            }
        }
        // Validation off (no schema): take what came, as it came.
        _ => match http::parse_params(&req) {
            Ok(p) => p,
            Err(m) => return Some(formatted(ApiErr::new(400, m))),
        },
    };
    // Path parameters the schema leaves out (the task index) are still the handler's.
    for (k, v) in &routed.path_params {
        params.entry(k.clone()).or_insert(Value::String(v.clone()));
    }
    let Some(route) = routes::find(ROUTES, &req.method, &routed.template) else {
        return Some(formatted(ApiErr::new(
            501,
            format!("edge-lab: '{} {}' is not implemented", req.method, routed.template),
        )));
    };
    let cx = PbsCx { store, caller, fail, task_delay };
    let res = match route.handler {
        Data(h) => h(&lab, &cx, &params).map(|v| (v, Map::new())),
        WithDigest(h) => h(&lab, &cx, &params)
            .map(|(v, d)| (v, d.map(|d| Map::from_iter([("digest".to_string(), json!(d))])).unwrap_or_default())),
        WithAttrs(h) => h(&lab, &cx, &params),
        Own(h) => return Some(h(&lab, &cx, &params).unwrap_or_else(formatted)),
        AfterGcLock(h) => {
            wait_for_gc(&lab, &cx, &params).await;
            h(&lab, &cx, &params).map(|v| (v, Map::new()))
        }
    };
    Some(match res {
        Ok((v, attrs)) => {
            let mut body = Map::from_iter([("data".to_string(), v)]);
            body.extend(attrs);
            Resp::json(200, &Value::Object(body))
        }
        Err(e) => formatted(e),
    })
}

/// Runs `f` on the store's state and saves state.json afterwards if `f` succeeded. GET
/// handlers lock the state without it: reads change nothing, and the file holds every store of
/// the lab.
fn mutate<R>(lab: &Lab, store: &str, f: impl FnOnce(&mut StoreState) -> Result<R, ApiErr>) -> Result<R, ApiErr> {
    let mut st = lab.state();
    let r = f(store_mut(&mut st, store)?)?;
    lab.save(&st);
    Ok(r)
}

fn store_mut<'a>(st: &'a mut crate::state::LabState, store: &str) -> Result<&'a mut StoreState, ApiErr> {
    st.store_mut(store).ok_or_else(|| ApiErr::die("store vanished"))
}

fn version(lab: &Arc<Lab>, _: &PbsCx, _: &Params) -> ApiResult {
    let (version, release, repoid) = lab.profiles.pbs.version();
    Ok(json!({"version": version, "release": release, "repoid": repoid}))
}

/// `GET /admin/datastore`: the datastores with their status; `comment` is always there (null
/// when unset).
fn datastores(lab: &Arc<Lab>, cx: &PbsCx, _: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let list = s
        .pbs
        .collections
        .get("datastore")
        .into_iter()
        .flatten()
        .map(|(k, c)| {
            let mut o = json!({"store": k, "comment": c.get("comment")});
            // Removable datastores (3.3.0) brought `mount-status`; `backend-type` (4.1.7) is
            // newer than every PBS profile of the lab.
            if lab.profiles.pbs.removable_datastores() {
                o["mount-status"] = json!("nonremovable");
            }
            if let Some(m) = c.get("maintenance-mode") {
                o["maintenance"] = m.clone();
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

fn has_datastore(lab: &Lab, store: &str, name: &str) -> bool {
    lab.state().store(store).is_some_and(|s| config::datastore(s, name).is_some())
}

/// The garbage collection of a datastore running now, if any.
fn running_gc(lab: &Lab, store: &str, datastore: &str) -> bool {
    crate::lab::lock(&lab.tasks).values().any(|t| {
        t.product == Product::Pbs
            && t.store == store
            && t.wtype == "garbage_collection"
            && t.id == datastore
            && t.exitstatus.is_none()
    })
}

/// The GC job lock: PBS waits up to 10 s for it (`open_backup_lockfile`'s default) before it
/// gives up. Only for an existing datastore: a missing one fails its lookup first.
async fn wait_for_gc(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) {
    let name = p_str(p, "store").unwrap_or_default();
    if !has_datastore(lab, &cx.store, &name) {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_millis(20);
    while running_gc(lab, &cx.store, &name) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(delay.min(deadline - tokio::time::Instant::now())).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// `GET /admin/datastore/{store}/gc`: the last garbage collection. Before the first one the
/// counters are 0 and `upid` is null (`garbage_collection_status`).
fn gc(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let name = p_str(p, "store").unwrap_or_default();
    let ds = config::datastore(s, &name).ok_or_else(|| no_datastore(&name))?;
    let mut o = s.pbs.gc.get(&name).cloned().map(Value::Object).unwrap_or_else(|| gc_status(&name, None));
    if let Some(sched) = ds.get("gc-schedule") {
        o["schedule"] = sched.clone();
    }
    Ok(o)
}

/// `POST /admin/datastore/{store}/gc`: a `garbage_collection` task; while one still runs after
/// the lock wait, `garbage collection already running` (`start_garbage_collection`).
fn start_gc(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let name = p_str(p, "store").unwrap_or_default();
    if !has_datastore(lab, &cx.store, &name) {
        return Err(no_datastore(&name));
    }
    if running_gc(lab, &cx.store, &name) {
        return Err(ApiErr::new(400, "garbage collection already running"));
    }
    let upid_cell = Arc::new(std::sync::Mutex::new(String::new()));
    let cell = Arc::clone(&upid_cell);
    let gc_name = name.clone();
    let upid = cx.spawn(lab, "garbage_collection", &name, move |lab, store| {
        let upid = crate::lab::lock(&cell).clone();
        let mut st = lab.state();
        let s = st.store_mut(store).ok_or("store vanished")?;
        if let Value::Object(o) = gc_status(&gc_name, Some(&upid)) {
            s.pbs.gc.insert(gc_name.clone(), o);
        }
        lab.save(&st);
        Ok(vec![
            format!("starting garbage collection on store {gc_name}"),
            "Start GC phase1 (mark used chunks)".into(),
            "Start GC phase2 (sweep unused chunks)".into(),
        ])
    });
    *crate::lab::lock(&upid_cell) = upid.clone();
    Ok(json!(upid))
}

fn no_datastore(name: &str) -> ApiErr {
    ApiErr::new(400, format!("no such datastore '{name}'"))
}

/// `GarbageCollectionJobStatus`: `upid` is serialised even when unset.
fn gc_status(store: &str, upid: Option<&str>) -> Value {
    let mut o = json!({
        "store": store, "upid": upid, "disk-bytes": 0, "disk-chunks": 0, "index-data-bytes": 0,
        "index-file-count": 0, "pending-bytes": 0, "pending-chunks": 0, "removed-bad": 0, "removed-bytes": 0,
        "removed-chunks": 0, "still-bad": 0,
    });
    if upid.is_some() {
        o["last-run-state"] = json!("ok");
        o["last-run-endtime"] = json!(now_s());
        o["duration"] = json!(1);
    }
    o
}

/// A fresh PBS: one datastore, the store's token.
pub fn fresh_pbs(s: &StoreState) -> crate::state::PbsState {
    let mut pbs =
        crate::state::PbsState { authkey: random_secret(), pstart: now_s() & 0xffff_ffff, ..Default::default() };
    pbs.tokens.insert(
        "root@pam!edge".into(),
        Token {
            secret: s.pbs_token_secret.clone(),
            privsep: false,
            comment: Some("edge-lab".into()),
            expire: 0,
            read_only: false,
        },
    );
    let mut ds = Map::new();
    ds.insert("path".into(), json!(format!("/mnt/datastore/store{}", s.index)));
    ds.insert("gc-schedule".into(), json!("daily"));
    pbs.collections.entry("datastore".into()).or_default().insert(format!("store{}", s.index), ds);
    pbs
}

pub fn datastore_name(s: &StoreState) -> String {
    format!("store{}", s.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_routed_once() {
        assert_eq!(routes::repeated(ROUTES), Vec::<String>::new());
    }
}
