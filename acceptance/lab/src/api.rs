//! The request pipeline shared by the PVE and PBS APIs: faults, call counting, routing by the
//! published schema, authentication (tickets + CSRF, API tokens), parameter validation, and
//! errors in Proxmox's shape.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::http::{self, Req, Resp};
use crate::lab::Lab;
use crate::schema::{ParamErrors, Product};
use crate::state::now_s;

#[derive(Debug)]
pub struct ApiErr {
    pub status: u16,
    pub msg: String,
    pub errors: Option<ParamErrors>,
}

pub type ApiResult = Result<Value, ApiErr>;

impl ApiErr {
    pub fn new(status: u16, msg: impl Into<String>) -> ApiErr {
        ApiErr { status, msg: msg.into(), errors: None }
    }
    /// A handler `die`: PVE answers 500 with the message as status text.
    pub fn die(msg: impl Into<String>) -> ApiErr {
        ApiErr::new(500, msg)
    }
    pub fn param(name: &str, msg: impl Into<String>) -> ApiErr {
        let mut e = ParamErrors::new();
        e.insert(name.to_string(), msg.into());
        ApiErr { status: 400, msg: "Parameter verification failed.".into(), errors: Some(e) }
    }
}

pub fn err_resp(product: Product, e: ApiErr) -> Resp {
    match (&e.errors, product) {
        // PVE (pve-http-server Formatter/Standard.pm): the message is the body's `message` too,
        // with its newline, since 5.2.0; `crate::pve` strips it again for the legacy profile.
        (Some(errs), Product::Pve) => {
            Resp::json(400, &json!({"data": null, "errors": errs, "message": format!("{}\n", e.msg)}))
                .with_reason(&e.msg)
        }
        // A `die` ends its message with a newline (without one Perl appends " at FILE line N.").
        (None, Product::Pve) => {
            let msg = if e.msg.ends_with('\n') { e.msg.clone() } else { format!("{}\n", e.msg) };
            Resp::json(e.status, &json!({"data": null, "message": msg})).with_reason(&e.msg)
        }
        // PBS: the bare message under a JSON content type, the standard reason phrase
        // (src/pbs/mod.rs has the details).
        (Some(errs), Product::Pbs) => {
            let list = errs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Resp::text(400, &crate::pbs::params::ParamErrors(list).to_string())
        }
        (None, Product::Pbs) => Resp::text(e.status, &e.msg),
    }
}

/// Who is calling, after authentication.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `root@pam` or `root@pam!edge`.
    pub authid: String,
    pub user: String,
    pub read_only: bool,
    pub via_ticket: bool,
}

fn sign(key: &str, payload: &str) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(payload.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h.finalize())
}

/// `PVE:root@pam:6741E2F1::SIG` (PBS: `PBS:` prefix).
pub fn make_ticket(prefix: &str, authkey: &str, user: &str) -> String {
    let payload = format!("{prefix}:{user}:{:08X}", now_s());
    format!("{payload}::{}", sign(authkey, &payload))
}

pub fn verify_ticket(prefix: &str, authkey: &str, ticket: &str) -> Option<String> {
    let (payload, sig) = ticket.split_once("::")?;
    if sign(authkey, payload) != sig {
        return None;
    }
    let mut parts = payload.split(':');
    if parts.next()? != prefix {
        return None;
    }
    let user = parts.next()?.to_string();
    let ts = u64::from_str_radix(parts.next()?, 16).ok()?;
    // Tickets live two hours, like Proxmox's.
    if now_s().saturating_sub(ts) > 7200 {
        return None;
    }
    Some(user)
}

pub fn make_csrf(authkey: &str, user: &str) -> String {
    let ts = format!("{:08X}", now_s());
    format!("{ts}:{}", sign(authkey, &format!("csrf:{ts}:{user}")))
}

pub fn verify_csrf(authkey: &str, user: &str, token: &str) -> bool {
    let Some((ts, sig)) = token.split_once(':') else {
        return false;
    };
    let Ok(t) = u64::from_str_radix(ts, 16) else {
        return false;
    };
    now_s().saturating_sub(t) <= 7200 && sign(authkey, &format!("csrf:{ts}:{user}")) == sig
}

pub fn random_secret() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub fn random_hex(n: usize) -> String {
    let v: Vec<u8> = (0..n.div_ceil(2)).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)[..n].to_string()
}

/// Resolves a request to (template, path params, method info) via the schema, or via the
/// implemented list when the schema file is absent.
pub struct Routed {
    pub template: String,
    pub path_params: Vec<(String, String)>,
    pub info: Option<Value>,
}

pub fn route(lab: &Lab, product: Product, method: &str, path: &str, implemented: &[(&str, &str)]) -> Option<Routed> {
    if let Some(schema) = lab.schema(product) {
        let (ep, pp) = schema.route(path)?;
        return Some(Routed { template: ep.path.clone(), path_params: pp, info: ep.info.get(method).cloned() });
    }
    // Validation off: match against our own templates.
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut best: Option<(usize, Routed)> = None;
    for (_, t) in implemented {
        let ts: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
        if ts.len() != segs.len() {
            continue;
        }
        let mut pp = Vec::new();
        let mut lit = 0;
        let ok = ts.iter().zip(&segs).all(|(a, b)| {
            if a.starts_with('{') {
                pp.push((a.trim_matches(|c| c == '{' || c == '}').to_string(), crate::schema::pct_decode(b)));
                true
            } else {
                lit += 1;
                a == b
            }
        });
        if ok && best.as_ref().is_none_or(|b| lit > b.0) {
            best = Some((lit, Routed { template: t.to_string(), path_params: pp, info: Some(json!({})) }));
        }
    }
    best.map(|b| b.1)
}

/// Validates the request against the method's schema; path params not declared by the schema
/// (some PBS methods) are not counted as unknown.
pub fn validate(lab: &Lab, product: Product, routed: &Routed, params: &mut Map<String, Value>) -> Result<(), ApiErr> {
    let Some(schema) = lab.schema(product) else {
        for (k, v) in &routed.path_params {
            params.insert(k.clone(), Value::String(v.clone()));
        }
        return Ok(());
    };
    let Some(info) = &routed.info else {
        return Ok(());
    };
    let declared = info.get("parameters").and_then(|p| p.get("properties")).and_then(Value::as_object);
    for (k, v) in &routed.path_params {
        if declared.is_some_and(|d| d.contains_key(k)) {
            params.insert(k.clone(), Value::String(v.clone()));
        }
    }
    schema.validate(info, params).map_err(|errors| ApiErr {
        status: 400,
        msg: "Parameter verification failed.".into(),
        errors: Some(errors),
    })?;
    for (k, v) in &routed.path_params {
        params.entry(k.clone()).or_insert(Value::String(v.clone()));
    }
    Ok(())
}

/// Applies fault rules and counts the call; returns Err(response or drop) when a fault fires.
pub async fn pre_request(lab: &Arc<Lab>, product: Product, req: &Req, template: &str) -> Result<bool, Option<Resp>> {
    let tag = match product {
        Product::Pve => "pve",
        Product::Pbs => "pbs",
    };
    lab.count_call(format!("{tag} {} {template}", req.method));
    let d = lab.decide_faults(&format!("{} {}", req.method, req.path));
    if d.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(d.latency_ms)).await;
    }
    if d.drop {
        return Err(None);
    }
    if d.error {
        return Err(Some(err_resp(product, ApiErr::new(500, "injected fault: internal server error"))));
    }
    Ok(d.fail_tasks)
}

pub fn is_world(info: &Option<Value>) -> bool {
    info.as_ref()
        .and_then(|i| i.get("permissions"))
        .and_then(|p| p.get("user"))
        .and_then(Value::as_str)
        .is_some_and(|u| u == "world")
}

/// A method without `permissions` in its schema: only the user root@pam may call it
/// (pve-access-control `RPCEnvironment::check_api2_permissions`).
pub fn is_root_only(info: &Option<Value>) -> bool {
    info.as_ref().is_some_and(|i| i.get("permissions").is_none())
}

pub fn params_of(req: &Req, product: Product) -> Result<Map<String, Value>, Resp> {
    http::parse_params(req).map_err(|m| err_resp(product, ApiErr::new(400, m)))
}

// Small accessors for validated params.
pub fn p_str(p: &Map<String, Value>, k: &str) -> Option<String> {
    p.get(k).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

pub fn p_int(p: &Map<String, Value>, k: &str) -> Option<i64> {
    p.get(k).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
}

/// A parameter Perl counts as true (`if $param->{k}`): given, neither empty nor "0".
pub fn p_true(p: &Map<String, Value>, k: &str) -> bool {
    p_str(p, k).is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn p_bool(p: &Map<String, Value>, k: &str) -> Option<bool> {
    p.get(k).map(crate::schema::truthy)
}

/// Config digest like PVE's (sha1 of the config file); sha256 prefix here.
pub fn digest_of(v: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..20])
}

/// PBS digests are full SHA-256 hex.
pub fn digest256_of(v: &impl serde::Serialize) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(v).unwrap_or_default()))
}

/// `delete` lists: comma/space/semicolon separated keys.
pub fn delete_list(p: &Map<String, Value>) -> Vec<String> {
    match p.get("delete") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A PUT on a config entry, as PVE makes it: the entry must still be the one the client read
/// (`digest`, when given), then [`set_entry`].
pub fn edit_entry(cfg: &mut Map<String, Value>, p: &Map<String, Value>, key: &str) -> Result<(), ApiErr> {
    if let Some(d) = p_str(p, "digest") {
        if d != digest_of(&*cfg) {
            return Err(ApiErr::die("detected modified configuration - file changed by other user? Try again."));
        }
    }
    set_entry(cfg, p, key);
    Ok(())
}

/// The changes a PUT makes to a config entry: `delete` removes keys, then every parameter but
/// the entry's `key`, `delete` and `digest` is set.
pub fn set_entry(cfg: &mut Map<String, Value>, p: &Map<String, Value>, key: &str) {
    for k in delete_list(p) {
        cfg.remove(&k);
    }
    for (k, v) in p {
        if k != key && k != "delete" && k != "digest" {
            cfg.insert(k.clone(), v.clone());
        }
    }
}
