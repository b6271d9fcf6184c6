//! The Proxmox Backup Server API of a store (`https://ADDR:8007/api2/json`). [`ROUTES`] is the
//! one list of what it serves, one handler per endpoint; the task endpoints are PVE's
//! (`crate::pve::tasks`), shown the PBS way.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::{self, err_resp, p_bool, p_int, p_str, random_secret, ApiErr, ApiResult, Caller};
use crate::http::{self, Handler, Req, Resp};
use crate::lab::Lab;
use crate::pve::tasks::{self, TaskScope};
use crate::routes::{self, Params, Route};
use crate::schema::Product;
use crate::state::{now_s, StoreState, Token};

type PbsResult = Result<(Value, Option<String>), ApiErr>;

/// What a PBS handler answers: the data, or the data and the digest of the config file it was
/// read from (PBS puts that beside `data`).
enum Serve {
    Data(routes::Handler<PbsCx, ApiResult>),
    WithDigest(routes::Handler<PbsCx, PbsResult>),
}

use Serve::{Data, WithDigest};

/// Everything the lab's PBS serves, in the order `coverage --verbose` lists it.
const ROUTES: &[Route<Serve>] = &[
    Route::get("/version", Data(version)),
    Route::post("/access/ticket", Data(ticket)),
    Route::get("/access/users/{userid}/token", Data(token_list)),
    Route::get("/access/users/{userid}/token/{token-name}", Data(token_get)),
    Route::post("/access/users/{userid}/token/{token-name}", Data(token_create)),
    Route::delete("/access/users/{userid}/token/{token-name}", Data(token_delete)),
    Route::get("/config/datastore", WithDigest(config_list::<Datastores>)),
    Route::post("/config/datastore", Data(config_create::<Datastores>)),
    Route::get("/config/datastore/{name}", WithDigest(config_get::<Datastores>)),
    Route::put("/config/datastore/{name}", Data(config_update::<Datastores>)),
    Route::delete("/config/datastore/{name}", Data(config_delete::<Datastores>)),
    Route::get("/config/remote", WithDigest(config_list::<Remotes>)),
    Route::post("/config/remote", Data(config_create::<Remotes>)),
    Route::get("/config/remote/{name}", WithDigest(config_get::<Remotes>)),
    Route::put("/config/remote/{name}", Data(config_update::<Remotes>)),
    Route::delete("/config/remote/{name}", Data(config_delete::<Remotes>)),
    Route::get("/config/sync", WithDigest(config_list::<SyncJobs>)),
    Route::post("/config/sync", Data(config_create::<SyncJobs>)),
    Route::get("/config/sync/{id}", WithDigest(config_get::<SyncJobs>)),
    Route::put("/config/sync/{id}", Data(config_update::<SyncJobs>)),
    Route::delete("/config/sync/{id}", Data(config_delete::<SyncJobs>)),
    Route::get("/config/verify", WithDigest(config_list::<VerifyJobs>)),
    Route::post("/config/verify", Data(config_create::<VerifyJobs>)),
    Route::get("/config/verify/{id}", WithDigest(config_get::<VerifyJobs>)),
    Route::put("/config/verify/{id}", Data(config_update::<VerifyJobs>)),
    Route::delete("/config/verify/{id}", Data(config_delete::<VerifyJobs>)),
    Route::get("/config/prune", WithDigest(config_list::<PruneJobs>)),
    Route::post("/config/prune", Data(config_create::<PruneJobs>)),
    Route::get("/config/prune/{id}", WithDigest(config_get::<PruneJobs>)),
    Route::put("/config/prune/{id}", Data(config_update::<PruneJobs>)),
    Route::delete("/config/prune/{id}", Data(config_delete::<PruneJobs>)),
    Route::get("/admin/datastore", Data(datastores)),
    Route::get("/admin/datastore/{store}/gc", Data(gc)),
    Route::post("/admin/datastore/{store}/gc", Data(start_gc)),
    Route::get("/nodes/{node}/tasks", Data(tasks::list)),
    Route::get("/nodes/{node}/tasks/{upid}", Data(tasks::index)),
    Route::delete("/nodes/{node}/tasks/{upid}", Data(tasks::stop)),
    Route::get("/nodes/{node}/tasks/{upid}/status", Data(tasks::status)),
    Route::get("/nodes/{node}/tasks/{upid}/log", Data(tasks::log)),
];

/// Every (METHOD, template) in [`ROUTES`]; `coverage` compares this with the schema.
pub const IMPLEMENTED: &[(&str, &str)] = &routes::endpoints::<_, { ROUTES.len() }>(ROUTES);

pub const HOSTNAME: &str = "pbs";

struct PbsCx {
    store: String,
    caller: Caller,
    fail: bool,
}

impl TaskScope for PbsCx {
    const PRODUCT: Product = Product::Pbs;
    fn owns(&self, t: &crate::lab::Task) -> bool {
        t.store == self.store
    }
}

pub fn handler(lab: Arc<Lab>, store: String) -> Handler {
    Arc::new(move |req: Req| {
        let lab = Arc::clone(&lab);
        let store = store.clone();
        Box::pin(async move { handle(lab, store, req).await })
    })
}

async fn handle(lab: Arc<Lab>, store: String, req: Req) -> Option<Resp> {
    let Some(path) = req.path.strip_prefix("/api2/json").map(str::to_string) else {
        return Some(Resp::json(400, &json!({"data": null})).with_reason("Unsupported output format"));
    };
    let routed = api::route(&lab, Product::Pbs, &req.method, &path, IMPLEMENTED);
    let template = routed.as_ref().map(|r| r.template.clone()).unwrap_or_else(|| path.clone());
    let fail = match api::pre_request(&lab, Product::Pbs, &req, &template).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(routed) = routed else {
        return Some(err_resp(Product::Pbs, ApiErr::new(404, "Path not found.")));
    };
    if lab.schema(Product::Pbs).is_some() && routed.info.is_none() {
        return Some(err_resp(Product::Pbs, ApiErr::new(405, format!("method {} not allowed", req.method))));
    }
    let mut params = match api::params_of(&req, Product::Pbs) {
        Ok(p) => p,
        Err(r) => return Some(r),
    };
    let caller = if api::is_world(&routed.info) || routed.template == "/access/ticket" {
        Caller { authid: String::new(), user: String::new(), read_only: false, via_ticket: false }
    } else {
        match authenticate(&lab, &store, &req) {
            Ok(c) => c,
            Err(e) => return Some(err_resp(Product::Pbs, e)),
        }
    };
    if caller.read_only && req.method != "GET" {
        return Some(err_resp(Product::Pbs, ApiErr::new(403, "permission check failed")));
    }
    if let Err(e) = api::validate(&lab, Product::Pbs, &routed, &mut params) {
        return Some(err_resp(Product::Pbs, e));
    }
    let Some(route) = routes::find(ROUTES, &req.method, &routed.template) else {
        return Some(err_resp(
            Product::Pbs,
            ApiErr::new(501, format!("edge-lab: '{} {}' is not implemented", req.method, routed.template)),
        ));
    };
    if routed.template.starts_with("/nodes/{node}") {
        let node = routed.path_params.iter().find(|(k, _)| k == "node").map(|(_, v)| v.clone()).unwrap_or_default();
        if node != "localhost" && node != HOSTNAME {
            return Some(err_resp(Product::Pbs, ApiErr::new(400, format!("no such node '{node}'"))));
        }
        // PBS task paths may omit node/upid from the schema; make them available anyway.
        for (k, v) in &routed.path_params {
            params.entry(k.clone()).or_insert(Value::String(v.clone()));
        }
    }
    let cx = PbsCx { store, caller, fail };
    let res = match route.handler {
        Data(h) => h(&lab, &cx, &params).map(|v| (v, None)),
        WithDigest(h) => h(&lab, &cx, &params),
    };
    Some(match res {
        Ok((v, digest)) => {
            let mut body = json!({"data": v});
            if let Some(d) = digest {
                body["digest"] = json!(d);
            }
            Resp::json(200, &body)
        }
        Err(e) => err_resp(Product::Pbs, e),
    })
}

fn authenticate(lab: &Lab, store: &str, req: &Req) -> Result<Caller, ApiErr> {
    let st = lab.state();
    let s = st.store(store).ok_or_else(|| ApiErr::new(401, "authentication failed - missing credentials"))?;
    if let Some(auth) = http::header(req, "authorization") {
        if let Some(rest) = auth.strip_prefix("PBSAPIToken=").or_else(|| auth.strip_prefix("PBSAPIToken ")) {
            let (id, secret) =
                rest.trim().split_once(':').ok_or_else(|| ApiErr::new(401, "authentication failed - invalid token"))?;
            return match s.pbs.tokens.get(id) {
                Some(t) if t.secret == secret => Ok(Caller {
                    authid: id.to_string(),
                    user: id.split('!').next().unwrap_or(id).to_string(),
                    read_only: t.read_only,
                    via_ticket: false,
                }),
                _ => Err(ApiErr::new(401, "authentication failed - invalid token")),
            };
        }
    }
    if let Some(ticket) = http::cookie(req, "PBSAuthCookie") {
        let user = api::verify_ticket("PBS", &s.pbs.authkey, &ticket)
            .ok_or_else(|| ApiErr::new(401, "authentication failed - invalid ticket"))?;
        if req.method != "GET" {
            let ok =
                http::header(req, "csrfpreventiontoken").is_some_and(|t| api::verify_csrf(&s.pbs.authkey, &user, &t));
            if !ok {
                return Err(ApiErr::new(401, "authentication failed - invalid csrf token"));
            }
        }
        return Ok(Caller { authid: user.clone(), user, read_only: false, via_ticket: true });
    }
    Err(ApiErr::new(401, "authentication failed - missing credentials"))
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

fn ticket(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let user = p_str(p, "username").unwrap_or_default();
    let password = p_str(p, "password").unwrap_or_default();
    let ok = user == "root@pam"
        && (password == s.root_password
            || api::verify_ticket("PBS", &s.pbs.authkey, &password).as_deref() == Some("root@pam"));
    if !ok {
        return Err(ApiErr::new(401, "authentication failure"));
    }
    Ok(json!({
        "username": user,
        "ticket": api::make_ticket("PBS", &s.pbs.authkey, &user),
        "CSRFPreventionToken": api::make_csrf(&s.pbs.authkey, &user),
    }))
}

/// The only user the lab's PBS has.
const USER: &str = "root@pam";

fn check_user(p: &Params) -> Result<(), ApiErr> {
    let userid = p_str(p, "userid").unwrap_or_default();
    if userid != USER {
        return Err(ApiErr::new(404, format!("no such user '{userid}'")));
    }
    Ok(())
}

/// The full token id (`root@pam!NAME`) of a `/token/{token-name}` path.
fn full_id(p: &Params) -> Result<String, ApiErr> {
    check_user(p)?;
    Ok(format!("{USER}!{}", p_str(p, "token-name").unwrap_or_default()))
}

fn token_info(id: &str, t: &Token) -> Value {
    let mut o = json!({"tokenid": id, "enable": true, "expire": t.expire});
    if let Some(c) = &t.comment {
        o["comment"] = json!(c);
    }
    o
}

fn no_token(id: &str) -> ApiErr {
    ApiErr::new(404, format!("no such token '{id}'"))
}

fn token_list(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    // Without a schema (validation off) nothing rejects a stray `token-name` here; it selects
    // that one token, as it did when one handler served the list and the token paths.
    if p_str(p, "token-name").is_some() {
        return token_get(lab, cx, p);
    }
    check_user(p)?;
    let mut st = lab.state();
    let s = store_mut(&mut st, &cx.store)?;
    Ok(Value::Array(
        s.pbs
            .tokens
            .iter()
            .map(|(k, t)| {
                let mut o = token_info(k, t);
                o["token-name"] = json!(k.split('!').nth(1).unwrap_or(""));
                o
            })
            .collect(),
    ))
}

fn token_get(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = full_id(p)?;
    let mut st = lab.state();
    let s = store_mut(&mut st, &cx.store)?;
    s.pbs.tokens.get(&id).map(|t| token_info(&id, t)).ok_or_else(|| no_token(&id))
}

fn token_create(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = full_id(p)?;
    mutate(lab, &cx.store, |s| {
        if s.pbs.tokens.contains_key(&id) {
            return Err(ApiErr::new(400, format!("token '{id}' already exists.")));
        }
        let t = Token {
            secret: random_secret(),
            privsep: true,
            comment: p_str(p, "comment"),
            expire: p_int(p, "expire").unwrap_or(0),
            read_only: false,
        };
        let out = json!({"tokenid": id, "value": t.secret});
        s.pbs.tokens.insert(id, t);
        Ok(out)
    })
}

fn token_delete(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = full_id(p)?;
    mutate(lab, &cx.store, |s| {
        s.pbs.tokens.remove(&id).ok_or_else(|| no_token(&id))?;
        Ok(Value::Null)
    })
}

/// A PBS config file: datastore.cfg, remote.cfg, sync.cfg, verification.cfg, prune.cfg.
trait Section {
    /// The collection in the store's PBS state.
    const COLL: &'static str;
    /// The parameter naming an entry.
    const KEY: &'static str;
}

/// Declares the marker type of one config file, for handlers like `config_list::<Remotes>`.
macro_rules! section {
    ($name:ident, $coll:literal, $key:literal) => {
        struct $name;
        impl Section for $name {
            const COLL: &'static str = $coll;
            const KEY: &'static str = $key;
        }
    };
}

section!(Datastores, "datastore", "name");
section!(Remotes, "remote", "name");
section!(SyncJobs, "sync", "id");
section!(VerifyJobs, "verify", "id");
section!(PruneJobs, "prune", "id");

type Coll = std::collections::BTreeMap<String, Map<String, Value>>;

/// The section in the store's PBS state; created empty on first use, also by a read (which
/// then leaves it unsaved).
fn section<S: Section>(s: &mut StoreState) -> &mut Coll {
    s.pbs.collections.entry(S::COLL.to_string()).or_default()
}

/// How messages name an entry of the section.
fn label<S: Section>() -> &'static str {
    match S::COLL {
        "datastore" => "datastore",
        "remote" => "remote",
        _ => "job",
    }
}

fn missing<S: Section>(id: &str) -> ApiErr {
    ApiErr::new(404, format!("{} '{id}' does not exist.", label::<S>()))
}

/// An entry as GET shows it: without its password, with its id.
fn public<S: Section>(id: &str, cfg: &Map<String, Value>) -> Value {
    let mut o = cfg.clone();
    o.remove("password");
    o.insert(S::KEY.to_string(), json!(id));
    Value::Object(o)
}

/// PBS refuses a change to a section whose file changed since the client read its digest.
fn check_digest(p: &Params, digest: &str) -> Result<(), ApiErr> {
    match p_str(p, "digest") {
        Some(d) if d != digest => {
            Err(ApiErr::new(400, "detected modified configuration - file changed by other user? Try again."))
        }
        _ => Ok(()),
    }
}

/// The referential checks PBS makes on job configs: their datastore and remote exist.
fn check_job<S: Section>(lab: &Lab, cx: &PbsCx, p: &Params) -> Result<(), ApiErr> {
    if !matches!(S::COLL, "sync" | "verify" | "prune") {
        return Ok(());
    }
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    if let Some(store) = p_str(p, "store") {
        if !s.pbs.collections.get("datastore").is_some_and(|d| d.contains_key(&store)) {
            return Err(no_datastore(&store));
        }
    }
    if let Some(remote) = p_str(p, "remote") {
        if !s.pbs.collections.get("remote").is_some_and(|d| d.contains_key(&remote)) {
            return Err(ApiErr::new(400, format!("remote '{remote}' does not exist")));
        }
    }
    Ok(())
}

fn config_list<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    // Without a schema (validation off) nothing rejects a stray `{KEY}` parameter here; it
    // selects that one entry, as it did when one handler served the list and the entry paths.
    if p_str(p, S::KEY).is_some() {
        return config_get::<S>(lab, cx, p);
    }
    let mut st = lab.state();
    let c = section::<S>(store_mut(&mut st, &cx.store)?);
    let digest = api::digest256_of(&*c);
    Ok((Value::Array(c.iter().map(|(k, v)| public::<S>(k, v)).collect()), Some(digest)))
}

fn config_get<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    let id = p_str(p, S::KEY).unwrap_or_default();
    let mut st = lab.state();
    let c = section::<S>(store_mut(&mut st, &cx.store)?);
    let digest = api::digest256_of(&*c);
    c.get(&id).map(|v| (public::<S>(&id, v), Some(digest))).ok_or_else(|| missing::<S>(&id))
}

fn config_create<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    check_job::<S>(lab, cx, p)?;
    if S::COLL == "prune" {
        if let Some(s) = p_str(p, "schedule") {
            crate::formats::check_calendar_event(&s).map_err(|m| ApiErr::param("schedule", m))?;
        }
    }
    mutate(lab, &cx.store, |s| {
        let c = section::<S>(s);
        // Without a schema nothing requires the key.
        let Some(id) = p_str(p, S::KEY) else {
            return Err(ApiErr::new(501, "not implemented"));
        };
        if c.contains_key(&id) {
            return Err(ApiErr::new(400, format!("{} '{id}' already exists.", label::<S>())));
        }
        let mut cfg = Map::new();
        for (k, v) in p {
            if k != S::KEY
                && k != "digest"
                && !(S::COLL == "datastore" && matches!(k.as_str(), "overwrite-in-use" | "reuse-datastore"))
            {
                cfg.insert(k.clone(), v.clone());
            }
        }
        c.insert(id, cfg);
        Ok(Value::Null)
    })
}

fn config_update<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    check_job::<S>(lab, cx, p)?;
    let id = p_str(p, S::KEY).unwrap_or_default();
    mutate(lab, &cx.store, |s| {
        let c = section::<S>(s);
        check_digest(p, &api::digest256_of(&*c))?;
        let cfg = c.get_mut(&id).ok_or_else(|| missing::<S>(&id))?;
        api::set_entry(cfg, p, S::KEY);
        Ok(Value::Null)
    })
}

/// Removes an entry; a datastore goes with its GC status and (unless `keep-job-configs`) its
/// jobs, and PBS removes it in a worker task.
fn config_delete<S: Section>(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let id = p_str(p, S::KEY).unwrap_or_default();
    let datastore = S::COLL == "datastore";
    mutate(lab, &cx.store, |s| {
        let c = section::<S>(s);
        check_digest(p, &api::digest256_of(&*c))?;
        c.remove(&id).ok_or_else(|| missing::<S>(&id))?;
        if datastore {
            s.pbs.gc.remove(&id);
            let keep_jobs = p_bool(p, "keep-job-configs").unwrap_or(false);
            if !keep_jobs {
                for j in ["sync", "verify", "prune"] {
                    if let Some(jobs) = s.pbs.collections.get_mut(j) {
                        jobs.retain(|_, v| v.get("store").and_then(Value::as_str) != Some(id.as_str()));
                    }
                }
            }
        }
        Ok(())
    })?;
    if !datastore {
        return Ok(Value::Null);
    }
    let upid =
        lab.spawn_task(Product::Pbs, &cx.store, HOSTNAME, "delete-datastore", &id, &cx.caller.authid, cx.fail, |_| {
            Ok(vec!["removing datastore config".into()])
        });
    Ok(json!(upid))
}

/// `GET /admin/datastore`: the datastores with their status.
fn datastores(lab: &Arc<Lab>, cx: &PbsCx, _: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let list = s
        .pbs
        .collections
        .get("datastore")
        .map(|d| {
            d.iter()
                .map(|(k, c)| {
                    let mut o = json!({"store": k});
                    // Removable datastores (3.3.0) brought `mount-status`; `backend-type`
                    // (4.1.7) is newer than every PBS profile of the lab.
                    if lab.profiles.pbs.removable_datastores() {
                        o["mount-status"] = json!("nonremovable");
                    }
                    if let Some(cm) = c.get("comment") {
                        o["comment"] = cm.clone();
                    }
                    o
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Value::Array(list))
}

/// The datastore's last garbage collection.
fn gc(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let name = p_str(p, "store").unwrap_or_default();
    let ds = s.pbs.collections.get("datastore").and_then(|d| d.get(&name)).ok_or_else(|| no_datastore(&name))?;
    let mut o = s.pbs.gc.get(&name).cloned().map(Value::Object).unwrap_or_else(|| gc_status(&name, None));
    if let Some(sched) = ds.get("gc-schedule") {
        o["schedule"] = sched.clone();
    }
    Ok(o)
}

/// Runs a garbage collection in a task.
fn start_gc(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let name = p_str(p, "store").unwrap_or_default();
    {
        let st = lab.state();
        let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
        if !s.pbs.collections.get("datastore").is_some_and(|d| d.contains_key(&name)) {
            return Err(no_datastore(&name));
        }
    }
    let store = cx.store.clone();
    let upid_cell = Arc::new(std::sync::Mutex::new(String::new()));
    let cell = Arc::clone(&upid_cell);
    let upid =
        lab.spawn_task(Product::Pbs, &cx.store, HOSTNAME, "garbage_collection", &name, &cx.caller.authid, cx.fail, {
            let name = name.clone();
            move |lab| {
                let upid = crate::lab::lock(&cell).clone();
                let mut st = lab.state();
                let s = st.store_mut(&store).ok_or("store vanished")?;
                if let Value::Object(o) = gc_status(&name, Some(&upid)) {
                    s.pbs.gc.insert(name.clone(), o);
                }
                lab.save(&st);
                Ok(vec![
                    format!("starting garbage collection on store {name}"),
                    "Start GC phase1 (mark used chunks)".into(),
                    "Start GC phase2 (sweep unused chunks)".into(),
                ])
            }
        });
    *crate::lab::lock(&upid_cell) = upid.clone();
    Ok(json!(upid))
}

fn no_datastore(name: &str) -> ApiErr {
    ApiErr::new(400, format!("no such datastore '{name}'"))
}

fn gc_status(store: &str, upid: Option<&str>) -> Value {
    let mut o = json!({
        "store": store, "disk-bytes": 0, "disk-chunks": 0, "index-data-bytes": 0, "index-file-count": 0,
        "pending-bytes": 0, "pending-chunks": 0, "removed-bad": 0, "removed-bytes": 0, "removed-chunks": 0, "still-bad": 0,
    });
    if let Some(u) = upid {
        o["upid"] = json!(u);
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
