//! The Proxmox Backup Server API of a store (`https://ADDR:8007/api2/json`).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::{self, delete_list, err_resp, p_bool, p_int, p_str, random_secret, ApiErr, ApiResult, Caller};
use crate::http::{self, Handler, Req, Resp};
use crate::lab::Lab;
use crate::pve::tasks::{self, TaskScope};
use crate::schema::Product;
use crate::state::{now_s, StoreState, Token};

pub const IMPLEMENTED: &[(&str, &str)] = &[
    ("GET", "/version"),
    ("POST", "/access/ticket"),
    ("GET", "/access/users/{userid}/token"),
    ("GET", "/access/users/{userid}/token/{token-name}"),
    ("POST", "/access/users/{userid}/token/{token-name}"),
    ("DELETE", "/access/users/{userid}/token/{token-name}"),
    ("GET", "/config/datastore"),
    ("POST", "/config/datastore"),
    ("GET", "/config/datastore/{name}"),
    ("PUT", "/config/datastore/{name}"),
    ("DELETE", "/config/datastore/{name}"),
    ("GET", "/config/remote"),
    ("POST", "/config/remote"),
    ("GET", "/config/remote/{name}"),
    ("PUT", "/config/remote/{name}"),
    ("DELETE", "/config/remote/{name}"),
    ("GET", "/config/sync"),
    ("POST", "/config/sync"),
    ("GET", "/config/sync/{id}"),
    ("PUT", "/config/sync/{id}"),
    ("DELETE", "/config/sync/{id}"),
    ("GET", "/config/verify"),
    ("POST", "/config/verify"),
    ("GET", "/config/verify/{id}"),
    ("PUT", "/config/verify/{id}"),
    ("DELETE", "/config/verify/{id}"),
    ("GET", "/config/prune"),
    ("POST", "/config/prune"),
    ("GET", "/config/prune/{id}"),
    ("PUT", "/config/prune/{id}"),
    ("DELETE", "/config/prune/{id}"),
    ("GET", "/admin/datastore"),
    ("GET", "/admin/datastore/{store}/gc"),
    ("POST", "/admin/datastore/{store}/gc"),
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}"),
    ("DELETE", "/nodes/{node}/tasks/{upid}"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
];

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
    if !IMPLEMENTED.iter().any(|(m, t)| *m == req.method && *t == routed.template) {
        return Some(err_resp(
            Product::Pbs,
            ApiErr::new(501, format!("edge-lab: '{} {}' is not implemented", req.method, routed.template)),
        ));
    }
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
    let res = dispatch(&lab, &cx, &req.method, &routed.template, &params);
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

type PbsResult = Result<(Value, Option<String>), ApiErr>;

/// Runs `f` on the store's state; saves state.json afterwards unless the request was a GET
/// (reads change nothing, and the file holds every store of the lab).
fn mutate<R>(
    lab: &Lab,
    store: &str,
    method: &str,
    f: impl FnOnce(&mut StoreState) -> Result<R, ApiErr>,
) -> Result<R, ApiErr> {
    let mut st = lab.state();
    let s = st.store_mut(store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let r = f(s)?;
    if method != "GET" {
        lab.save(&st);
    }
    Ok(r)
}

fn plain(r: ApiResult) -> PbsResult {
    r.map(|v| (v, None))
}

fn dispatch(lab: &Arc<Lab>, cx: &PbsCx, method: &str, template: &str, p: &Map<String, Value>) -> PbsResult {
    match (method, template) {
        ("GET", "/version") => plain(Ok(json!({"version": "4.0", "release": "14", "repoid": "0ab2c4e6f8a1b3c5"}))),
        ("POST", "/access/ticket") => plain(ticket(lab, cx, p)),
        (_, t) if t.starts_with("/access/users/") => plain(tokens(lab, cx, method, p)),
        (_, t) if t.starts_with("/config/datastore") => collection(lab, cx, method, "datastore", "name", p),
        (_, t) if t.starts_with("/config/remote") => collection(lab, cx, method, "remote", "name", p),
        (_, t) if t.starts_with("/config/sync") => collection(lab, cx, method, "sync", "id", p),
        (_, t) if t.starts_with("/config/verify") => collection(lab, cx, method, "verify", "id", p),
        (_, t) if t.starts_with("/config/prune") => collection(lab, cx, method, "prune", "id", p),
        ("GET", "/admin/datastore") => {
            let st = lab.state();
            let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let list = s
                .pbs
                .collections
                .get("datastore")
                .map(|d| {
                    d.iter()
                        .map(|(k, c)| {
                            let mut o =
                                json!({"store": k, "backend-type": "filesystem", "mount-status": "nonremovable"});
                            if let Some(cm) = c.get("comment") {
                                o["comment"] = cm.clone();
                            }
                            o
                        })
                        .collect()
                })
                .unwrap_or_default();
            plain(Ok(Value::Array(list)))
        }
        ("GET", "/admin/datastore/{store}/gc") => {
            let st = lab.state();
            let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let name = p_str(p, "store").unwrap_or_default();
            let ds =
                s.pbs.collections.get("datastore").and_then(|d| d.get(&name)).ok_or_else(|| no_datastore(&name))?;
            let mut o = s.pbs.gc.get(&name).cloned().map(Value::Object).unwrap_or_else(|| gc_status(&name, None));
            if let Some(sched) = ds.get("gc-schedule") {
                o["schedule"] = sched.clone();
            }
            plain(Ok(o))
        }
        ("POST", "/admin/datastore/{store}/gc") => {
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
            let upid = lab.spawn_task(
                Product::Pbs,
                &cx.store,
                HOSTNAME,
                "garbage_collection",
                &name,
                &cx.caller.authid,
                cx.fail,
                {
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
                },
            );
            *crate::lab::lock(&upid_cell) = upid.clone();
            plain(Ok(json!(upid)))
        }
        ("GET", "/nodes/{node}/tasks") => plain(tasks::list(lab, cx, p)),
        ("GET", "/nodes/{node}/tasks/{upid}") => plain(tasks::index(lab, cx, p)),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => plain(tasks::stop(lab, cx, p)),
        ("GET", "/nodes/{node}/tasks/{upid}/status") => plain(tasks::status(lab, cx, p)),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => plain(tasks::log(lab, cx, p)),
        _ => Err(ApiErr::new(501, "not implemented")),
    }
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

fn ticket(lab: &Arc<Lab>, cx: &PbsCx, p: &Map<String, Value>) -> ApiResult {
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

fn tokens(lab: &Arc<Lab>, cx: &PbsCx, method: &str, p: &Map<String, Value>) -> ApiResult {
    let userid = p_str(p, "userid").unwrap_or_default();
    if userid != "root@pam" {
        return Err(ApiErr::new(404, format!("no such user '{userid}'")));
    }
    let name = p_str(p, "token-name");
    mutate(lab, &cx.store, method, |s| {
        let info = |id: &str, t: &Token| {
            let mut o = json!({"tokenid": id, "enable": true, "expire": t.expire});
            if let Some(c) = &t.comment {
                o["comment"] = json!(c);
            }
            o
        };
        match (method, name) {
            ("GET", None) => Ok(Value::Array(
                s.pbs
                    .tokens
                    .iter()
                    .map(|(k, t)| {
                        let mut o = info(k, t);
                        o["token-name"] = json!(k.split('!').nth(1).unwrap_or(""));
                        o
                    })
                    .collect(),
            )),
            ("GET", Some(n)) => {
                let id = format!("{userid}!{n}");
                s.pbs
                    .tokens
                    .get(&id)
                    .map(|t| info(&id, t))
                    .ok_or_else(|| ApiErr::new(404, format!("no such token '{id}'")))
            }
            ("POST", Some(n)) => {
                let id = format!("{userid}!{n}");
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
            }
            ("DELETE", Some(n)) => {
                let id = format!("{userid}!{n}");
                s.pbs.tokens.remove(&id).ok_or_else(|| ApiErr::new(404, format!("no such token '{id}'")))?;
                Ok(Value::Null)
            }
            _ => Err(ApiErr::new(501, "not implemented")),
        }
    })
}

/// PBS config sections (datastore.cfg, remote.cfg, sync.cfg, verification.cfg, prune.cfg).
fn collection(lab: &Arc<Lab>, cx: &PbsCx, method: &str, coll: &str, key: &str, p: &Map<String, Value>) -> PbsResult {
    let id = p_str(p, key);
    let label = match coll {
        "datastore" => "datastore",
        "remote" => "remote",
        _ => "job",
    };
    // Referential checks PBS makes on job configs.
    if (method == "POST" || method == "PUT") && matches!(coll, "sync" | "verify" | "prune") {
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
    }
    if method == "POST" && coll == "prune" {
        if let Some(s) = p_str(p, "schedule") {
            crate::formats::check_calendar_event(&s).map_err(|m| ApiErr::param("schedule", m))?;
        }
    }
    mutate(lab, &cx.store, method, |s| {
        let c = s.pbs.collections.entry(coll.to_string()).or_default();
        let digest = api::digest256_of(&*c);
        let public = |id: &str, cfg: &Map<String, Value>| {
            let mut o = cfg.clone();
            o.remove("password");
            o.insert(key.to_string(), json!(id));
            Value::Object(o)
        };
        let missing = |id: &str| ApiErr::new(404, format!("{label} '{id}' does not exist."));
        let check_digest = |p: &Map<String, Value>| -> Result<(), ApiErr> {
            match p_str(p, "digest") {
                Some(d) if d != digest => {
                    Err(ApiErr::new(400, "detected modified configuration - file changed by other user? Try again."))
                }
                _ => Ok(()),
            }
        };
        match (method, id) {
            ("GET", None) => Ok((Value::Array(c.iter().map(|(k, v)| public(k, v)).collect()), Some(digest))),
            ("GET", Some(id)) => c.get(&id).map(|v| (public(&id, v), Some(digest.clone()))).ok_or_else(|| missing(&id)),
            ("POST", Some(id)) => {
                if c.contains_key(&id) {
                    return Err(ApiErr::new(400, format!("{label} '{id}' already exists.")));
                }
                let mut cfg = Map::new();
                for (k, v) in p {
                    if k != key
                        && k != "digest"
                        && !(coll == "datastore" && matches!(k.as_str(), "overwrite-in-use" | "reuse-datastore"))
                    {
                        cfg.insert(k.clone(), v.clone());
                    }
                }
                c.insert(id, cfg);
                Ok((Value::Null, None))
            }
            ("PUT", Some(id)) => {
                check_digest(p)?;
                let cfg = c.get_mut(&id).ok_or_else(|| missing(&id))?;
                for k in delete_list(p) {
                    cfg.remove(&k);
                }
                for (k, v) in p {
                    if k != key && k != "delete" && k != "digest" {
                        cfg.insert(k.clone(), v.clone());
                    }
                }
                Ok((Value::Null, None))
            }
            ("DELETE", Some(id)) => {
                check_digest(p)?;
                c.remove(&id).ok_or_else(|| missing(&id))?;
                if coll == "datastore" {
                    s.pbs.gc.remove(&id);
                    let keep_jobs = p_bool(p, "keep-job-configs").unwrap_or(false);
                    if !keep_jobs {
                        for j in ["sync", "verify", "prune"] {
                            if let Some(jobs) = s.pbs.collections.get_mut(j) {
                                jobs.retain(|_, v| v.get("store").and_then(Value::as_str) != Some(id.as_str()));
                            }
                        }
                    }
                    // PBS removes a datastore in a worker task.
                    return Ok((Value::String(format!("DEFER:{id}")), None));
                }
                Ok((Value::Null, None))
            }
            _ => Err(ApiErr::new(501, "not implemented")),
        }
    })
    .map(|(v, d)| match v.as_str().and_then(|s| s.strip_prefix("DEFER:")) {
        Some(id) => {
            let upid = lab.spawn_task(
                Product::Pbs,
                &cx.store,
                HOSTNAME,
                "delete-datastore",
                id,
                &cx.caller.authid,
                cx.fail,
                |_| Ok(vec!["removing datastore config".into()]),
            );
            (json!(upid), d)
        }
        None => (v, d),
    })
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
