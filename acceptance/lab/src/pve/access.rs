//! Tickets and API tokens (`/access`), and the tokens a fresh node's config domain starts with.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{domain, domain_mut, mutate, node_ref, Cx};
use crate::api::{self, digest_of, p_bool, p_int, p_str, random_secret, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::state::{Domain, LabState, StoreState, Token};

/// `GET /access/ticket`: PVE's placeholder for its login form.
pub(super) fn ticket_form(_: &Arc<Lab>, _: &Cx, _: &Params) -> ApiResult {
    Ok(Value::Null)
}

pub(super) fn ticket(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    let dom = st.domains.get(&LabState::domain_key(s, n)).ok_or_else(|| ApiErr::die("no domain"))?;
    let mut user = p_str(p, "username").unwrap_or_default();
    if !user.contains('@') {
        user = format!("{user}@{}", p_str(p, "realm").unwrap_or_else(|| "pam".into()));
    }
    let password = p_str(p, "password").unwrap_or_default();
    // PAM checks root's password on this node: the one its seed set, else the lab's (a node
    // installed by hand). A valid ticket renews itself.
    let restarting = n.auth_restart_until_ms.is_some_and(|t| lab.now_ms() < t);
    let ok = !restarting
        && user == "root@pam"
        && (crate::seed::root_password_ok(&st, &cx.store, &cx.local, &password)
            || api::verify_ticket("PVE", &dom.authkey, &password).as_deref() == Some("root@pam"));
    if !ok {
        return Err(ApiErr::new(401, "authentication failure"));
    }
    let mut out = json!({
        "username": user,
        "ticket": api::make_ticket("PVE", &dom.authkey, &user),
        "CSRFPreventionToken": api::make_csrf(&dom.authkey, &user),
    });
    if let Some(c) = &n.cluster {
        out["clustername"] = json!(c);
    }
    Ok(out)
}

/// The only user the lab has.
const USER: &str = "root@pam";

fn check_user(p: &Params) -> Result<(), ApiErr> {
    let userid = p_str(p, "userid").unwrap_or_default();
    if userid != USER {
        return Err(ApiErr::die(format!("no such user ('{userid}')")));
    }
    Ok(())
}

/// The full token id (`root@pam!NAME`) of a `/token/{tokenid}` path.
fn full_id(p: &Params) -> Result<String, ApiErr> {
    check_user(p)?;
    Ok(format!("{USER}!{}", p_str(p, "tokenid").unwrap_or_default()))
}

fn info(t: &Token) -> Value {
    let mut o = json!({"privsep": t.privsep as i64, "expire": t.expire});
    if let Some(c) = &t.comment {
        o["comment"] = json!(c);
    }
    o
}

pub(super) fn token_list(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    // Without a schema (validation off) nothing rejects a stray `tokenid` here; it selects that
    // one token, as it did when one handler served the list and the token paths.
    if p_str(p, "tokenid").is_some() {
        return token_get(lab, cx, p);
    }
    check_user(p)?;
    let st = lab.state();
    let dom = domain(&st, &cx.store, &cx.local)?;
    Ok(Value::Array(
        dom.tokens
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{USER}!")))
            .map(|(k, t)| {
                let mut o = info(t);
                o["tokenid"] = json!(k.split('!').nth(1).unwrap_or(""));
                o
            })
            .collect(),
    ))
}

pub(super) fn token_get(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let full = full_id(p)?;
    let st = lab.state();
    let dom = domain(&st, &cx.store, &cx.local)?;
    dom.tokens.get(&full).map(info).ok_or_else(|| {
        ApiErr::die(format!("no such token '{}' for user '{USER}'", p_str(p, "tokenid").unwrap_or_default()))
    })
}

pub(super) fn token_create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let full = full_id(p)?;
    mutate(lab, |st| {
        let dom = domain_mut(st, &cx.store, &cx.local)?;
        if dom.tokens.contains_key(&full) {
            return Err(ApiErr::die("Token already exists.".to_string()));
        }
        let t = Token {
            secret: random_secret(),
            privsep: p_bool(p, "privsep").unwrap_or(true),
            comment: p_str(p, "comment"),
            expire: p_int(p, "expire").unwrap_or(0),
            read_only: false,
        };
        let out = json!({"full-tokenid": full, "info": info(&t), "value": t.secret});
        dom.tokens.insert(full, t);
        Ok(out)
    })
}

pub(super) fn token_update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let full = full_id(p)?;
    mutate(lab, |st| {
        let t = domain_mut(st, &cx.store, &cx.local)?.tokens.get_mut(&full).ok_or_else(no_token)?;
        if let Some(c) = p_str(p, "comment") {
            t.comment = Some(c);
        }
        if let Some(b) = p_bool(p, "privsep") {
            t.privsep = b;
        }
        if let Some(e) = p_int(p, "expire") {
            t.expire = e;
        }
        Ok(info(t))
    })
}

pub(super) fn token_delete(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let full = full_id(p)?;
    mutate(lab, |st| {
        domain_mut(st, &cx.store, &cx.local)?.tokens.remove(&full).ok_or_else(no_token)?;
        Ok(Value::Null)
    })
}

fn no_token() -> ApiErr {
    ApiErr::die("no such token")
}

/// A config domain with the store's API token, plus a read-only one: a node an admin set up
/// (`model::Tokens::Store`; the edge image's nodes start without any, `model::reset_os`).
pub fn fresh_domain(store: &StoreState) -> Domain {
    let mut d = Domain { authkey: random_secret(), ..Default::default() };
    d.tokens.insert(
        "root@pam!edge".into(),
        Token {
            secret: store.token_secret.clone(),
            privsep: false,
            comment: Some("edge-lab".into()),
            expire: 0,
            read_only: false,
        },
    );
    d.tokens.insert(
        "root@pam!audit".into(),
        Token {
            secret: audit_secret(store),
            privsep: true,
            comment: Some("read-only".into()),
            expire: 0,
            read_only: true,
        },
    );
    d
}

pub fn audit_secret(store: &StoreState) -> String {
    let h = digest_of(&format!("audit:{}", store.token_secret));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
