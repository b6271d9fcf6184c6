//! Who is calling, and the access endpoints: authentication as proxmox-auth-api's
//! `http_check_auth` does it (ticket cookie first, then the `PBSAPIToken` header), the ticket
//! endpoint, and API tokens (`/access/users/{userid}/token[/{token-name}]`, proxmox-backup
//! `src/api2/access/user.rs`).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{mutate, PbsCx, PbsResult};
use crate::api::{self, p_str, random_secret, ApiErr, ApiResult, Caller};
use crate::http::{self, Req};
use crate::lab::Lab;
use crate::routes::Params;
use crate::state::{StoreState, Token};

/// The reason an authentication failed, as PBS words it after `authentication failed - `.
pub type AuthFailure = String;

/// Authenticates a request (proxmox-rs @ 890d9e58 `proxmox-auth-api/src/api/mod.rs`
/// `http_check_auth`, `extract_auth_data`; proxmox-backup `pbs-config/src/token_shadow.rs`
/// `verify_secret`). `host_cookie`: the release also reads the `__Host-` prefixed cookie
/// (and prefers it).
pub fn authenticate(s: &StoreState, req: &Req, host_cookie: bool) -> Result<Caller, AuthFailure> {
    let ticket = host_cookie
        .then(|| http::cookie(req, "__Host-PBSAuthCookie"))
        .flatten()
        .or_else(|| http::cookie(req, "PBSAuthCookie"));
    if let Some(ticket) = ticket {
        let user = api::verify_ticket("PBS", &s.pbs.authkey, &ticket)
            .ok_or_else(|| "ticket with invalid signature".to_string())?;
        if req.method != "GET" {
            let token = http::header(req, "csrfpreventiontoken").ok_or("missing CSRF prevention token")?;
            if !api::verify_csrf(&s.pbs.authkey, &user, &token) {
                return Err("invalid csrf token - invalid signature.".into());
            }
        }
        return Ok(Caller { authid: user.clone(), user, read_only: false, via_ticket: true });
    }
    let header = http::header(req, "authorization").unwrap_or_default();
    // The prefix must be followed by a space or `=`; anything else is no credentials at all.
    let Some(rest) = header.strip_prefix("PBSAPIToken").and_then(|r| r.strip_prefix([' ', '='])) else {
        return Err("no authentication credentials provided.".into());
    };
    let (tokenid, secret) = match rest.split_once(':') {
        Some((id, secret)) => (id, Some(secret)),
        None => (rest, None),
    };
    // The token must be active before its secret is even looked at.
    let t = s.pbs.tokens.get(tokenid).ok_or("user account or token disabled or expired.")?;
    let secret = secret.ok_or("failed to split API token header")?;
    let secret = percent_encoding::percent_decode_str(secret)
        .decode_utf8()
        .map_err(|_| "failed to decode API token header".to_string())?;
    if t.secret != secret {
        return Err("invalid credentials".into());
    }
    Ok(Caller {
        authid: tokenid.to_string(),
        user: tokenid.split('!').next().unwrap_or(tokenid).to_string(),
        read_only: t.read_only,
        via_ticket: false,
    })
}

/// `POST /access/ticket`: a wrong password is a 401 through the formatter, `permission check
/// failed.` (proxmox-auth-api `api/access.rs` `create_ticket`).
pub fn ticket(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let user = p_str(p, "username").unwrap_or_default();
    let password = p_str(p, "password").unwrap_or_default();
    let ok = user == "root@pam"
        && (password == s.root_password
            || api::verify_ticket("PBS", &s.pbs.authkey, &password).as_deref() == Some("root@pam"));
    if !ok {
        return Err(ApiErr::new(401, "permission check failed."));
    }
    Ok(json!({
        "username": user,
        "ticket": api::make_ticket("PBS", &s.pbs.authkey, &user),
        "CSRFPreventionToken": api::make_csrf(&s.pbs.authkey, &user),
    }))
}

/// The token's config entry as PBS returns it (`ApiToken`): unset fields are left out.
fn token_info(id: &str, t: &Token) -> Value {
    let mut o = json!({"tokenid": id});
    if let Some(c) = &t.comment {
        o["comment"] = json!(c);
    }
    if t.expire > 0 {
        o["expire"] = json!(t.expire);
    }
    o
}

/// The digest of user.cfg (tokens are sections of it).
fn tokens_digest(s: &StoreState) -> String {
    let all: Map<String, Value> = s.pbs.tokens.iter().map(|(k, t)| (k.clone(), token_info(k, t))).collect();
    api::digest256_of(&all)
}

fn ids(p: &Params) -> (String, String, String) {
    let user = p_str(p, "userid").unwrap_or_default();
    let name = p_str(p, "token-name").unwrap_or_default();
    (format!("{user}!{name}"), user, name)
}

/// `GET …/token`: the user's tokens; an unknown user simply has none (`list_tokens`).
pub fn list(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    let user = p_str(p, "userid").unwrap_or_default();
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let list = s
        .pbs
        .tokens
        .iter()
        .filter_map(|(k, t)| {
            let (owner, name) = k.split_once('!')?;
            (owner == user).then(|| {
                let mut o = token_info(k, t);
                o["token-name"] = json!(name);
                o
            })
        })
        .collect();
    Ok((Value::Array(list), Some(tokens_digest(s))))
}

/// `GET …/token/{token-name}`: a section lookup, `no such token 'user@realm!name'`.
pub fn get(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> PbsResult {
    let (id, _, _) = ids(p);
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let t = s.pbs.tokens.get(&id).ok_or_else(|| ApiErr::new(400, format!("no such token '{id}'")))?;
    Ok((token_info(&id, t), Some(tokens_digest(s))))
}

/// `POST …/token/{token-name}`: the secret is shown once; an existing token is a plain 400
/// (`generate_token`). PBS 3.2.4 does not check that the user exists.
pub fn create(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let (id, user, name) = ids(p);
    mutate(lab, &cx.store, |s| {
        super::config::check_digest(p, &tokens_digest(s))?;
        if s.pbs.tokens.contains_key(&id) {
            return Err(ApiErr::new(400, format!("token '{name}' for user '{user}' already exists.")));
        }
        let t = Token {
            secret: random_secret(),
            privsep: true,
            comment: p_str(p, "comment"),
            expire: api::p_int(p, "expire").unwrap_or(0),
            read_only: false,
        };
        let out = json!({"tokenid": id, "value": t.secret});
        s.pbs.tokens.insert(id, t);
        Ok(out)
    })
}

/// `DELETE …/token/{token-name}` (`delete_token`).
pub fn delete(lab: &Arc<Lab>, cx: &PbsCx, p: &Params) -> ApiResult {
    let (id, user, name) = ids(p);
    mutate(lab, &cx.store, |s| {
        super::config::check_digest(p, &tokens_digest(s))?;
        s.pbs
            .tokens
            .remove(&id)
            .ok_or_else(|| ApiErr::new(400, format!("token '{name}' of user '{user}' does not exist.")))?;
        Ok(Value::Null)
    })
}
