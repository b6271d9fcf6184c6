//! Tickets and API tokens (`/access`), and the tokens a fresh node's config domain starts with.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{domain, domain_mut, mutate, node_ref, Cx};
use crate::api::{self, digest_of, p_bool, p_int, p_str, random_secret, ApiErr, ApiResult, Caller};
use crate::lab::Lab;
use crate::profile::PveProfile;
use crate::routes::Params;
use crate::state::{AclEntry, Domain, LabState, StoreState, Token};

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
        // pve-access-control `generate_token`: `raise_param_exc({tokenid => …})`, a 400.
        if dom.tokens.contains_key(&full) {
            return Err(ApiErr::param("tokenid", "Token already exists."));
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
        let t = domain_mut(st, &cx.store, &cx.local)?.tokens.get_mut(&full).ok_or_else(|| no_token(p))?;
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
        let dom = domain_mut(st, &cx.store, &cx.local)?;
        dom.tokens.remove(&full).ok_or_else(|| no_token(p))?;
        // PVE leaves the token's `acl:` lines in memory, but `parse_user_config` drops ACL
        // entries of tokens that do not exist ("ignore invalid acl token"), so they are gone
        // from the next read of user.cfg on: nothing the token was granted outlives it.
        dom.acl.retain(|e| !(e.kind == "token" && e.ugid == full));
        Ok(Value::Null)
    })
}

/// pve-access-control `check_token_exist`'s refusal.
fn no_token(p: &Params) -> ApiErr {
    ApiErr::die(format!("no such token '{}' for user '{USER}'", p_str(p, "tokenid").unwrap_or_default()))
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
            read_only: false,
        },
    );
    // What makes it read-only: privilege separation and PVEAuditor on `/`.
    d.acl.push(AclEntry {
        path: "/".into(),
        kind: "token".into(),
        ugid: "root@pam!audit".into(),
        role: "PVEAuditor".into(),
        propagate: true,
    });
    d
}

pub fn audit_secret(store: &StoreState) -> String {
    let h = digest_of(&format!("audit:{}", store.token_secret));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

// ---------------------------------------------------------------------------------------------
// API token authentication

/// pve-access-control `AccessControl::verify_token`, for the lab's one user root@pam: the token
/// must exist, must not have expired (`expire` set and before now: a token whose `expire` is
/// this very second still works) and must carry its secret. Returns the token's full id.
pub(super) fn verify_token(dom: &Domain, header_value: &str, now: u64) -> Result<String, ApiErr> {
    let (id, secret) = header_value.trim().rsplit_once('=').ok_or_else(|| ApiErr::new(401, "no tokenid specified"))?;
    let (user, name) = id.split_once('!').filter(|(u, n)| u.contains('@') && !n.is_empty()).ok_or_else(|| {
        ApiErr::new(401, format!("'{id}' is not a valid token ID - not able to split into user and token parts"))
    })?;
    if user != USER {
        return Err(ApiErr::new(401, format!("no such user ('{user}')")));
    }
    let t = dom.tokens.get(id).ok_or_else(|| ApiErr::new(401, format!("no such token '{name}' for user '{user}'")))?;
    if t.expire > 0 && (t.expire as u64) < now {
        return Err(ApiErr::new(401, format!("token '{name}' access expired")));
    }
    if t.secret != secret {
        return Err(ApiErr::new(401, "invalid token value!"));
    }
    Ok(id.to_string())
}

// ---------------------------------------------------------------------------------------------
// Roles, ACLs and permission checks

/// One privilege category of pve-access-control's `$privgroups`: privileges only root gets
/// (through Administrator), and the admin, user and audit tiers the built-in roles are cut from.
struct PrivGroup {
    cat: &'static str,
    root: &'static [&'static str],
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

/// The VM category changed between releases: PVE 8 (stable-bookworm) has `VM.Monitor`; PVE 9
/// replaced it with the `VM.GuestAgent.*` privileges and added `VM.Replicate`.
fn priv_groups(profile: PveProfile) -> [PrivGroup; 7] {
    let vm = match profile {
        PveProfile::V8_4 => PrivGroup {
            cat: "VM",
            root: &[],
            admin: &[
                "VM.Config.Disk",
                "VM.Config.CPU",
                "VM.Config.Memory",
                "VM.Config.Network",
                "VM.Config.HWType",
                "VM.Config.Options",
                "VM.Allocate",
                "VM.Clone",
                "VM.Migrate",
                "VM.Monitor",
                "VM.Snapshot",
                "VM.Snapshot.Rollback",
            ],
            user: &["VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.PowerMgmt"],
            audit: &["VM.Audit"],
        },
        PveProfile::V9_1 => PrivGroup {
            cat: "VM",
            root: &[],
            admin: &[
                "VM.Config.Disk",
                "VM.Config.CPU",
                "VM.Config.Memory",
                "VM.Config.Network",
                "VM.Config.HWType",
                "VM.Config.Options",
                "VM.Allocate",
                "VM.Clone",
                "VM.GuestAgent.Unrestricted",
                "VM.Migrate",
                "VM.Replicate",
                "VM.Snapshot",
                "VM.Snapshot.Rollback",
            ],
            user: &[
                "VM.Config.CDROM",
                "VM.Config.Cloudinit",
                "VM.Console",
                "VM.Backup",
                "VM.GuestAgent.FileRead",
                "VM.GuestAgent.FileSystemMgmt",
                "VM.GuestAgent.FileWrite",
                "VM.PowerMgmt",
            ],
            audit: &["VM.Audit", "VM.GuestAgent.Audit"],
        },
    };
    [
        vm,
        PrivGroup {
            cat: "Sys",
            root: &["Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"],
            admin: &["Sys.Console", "Sys.Syslog"],
            user: &[],
            audit: &["Sys.Audit"],
        },
        PrivGroup {
            cat: "Datastore",
            root: &[],
            admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
            user: &["Datastore.AllocateSpace"],
            audit: &["Datastore.Audit"],
        },
        PrivGroup {
            cat: "SDN",
            root: &[],
            admin: &["SDN.Allocate", "SDN.Audit"],
            user: &["SDN.Use"],
            audit: &["SDN.Audit"],
        },
        PrivGroup {
            cat: "User",
            root: &["Realm.Allocate"],
            admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
            user: &[],
            audit: &[],
        },
        PrivGroup { cat: "Pool", root: &[], admin: &["Pool.Allocate"], user: &["Pool.Audit"], audit: &["Pool.Audit"] },
        PrivGroup {
            cat: "Mapping",
            root: &[],
            admin: &["Mapping.Modify"],
            user: &["Mapping.Use"],
            audit: &["Mapping.Audit"],
        },
    ]
}

/// The privileges of built-in role `role` (pve-access-control `create_roles`), `None` for a
/// role PVE does not have. The lab has no custom roles.
pub fn role_privs(profile: PveProfile, role: &str) -> Option<BTreeSet<&'static str>> {
    let groups = priv_groups(profile);
    let tiers = |g: &PrivGroup, root: bool, admin: bool, user: bool| -> Vec<&'static str> {
        let mut v = vec![];
        if root {
            v.extend(g.root);
        }
        if admin {
            v.extend(g.admin);
        }
        if user {
            v.extend(g.user);
        }
        v.extend(g.audit);
        v
    };
    let set: BTreeSet<&'static str> = match role {
        "NoAccess" => BTreeSet::new(),
        "Administrator" => {
            let mut all: BTreeSet<&'static str> = groups.iter().flat_map(|g| tiers(g, true, true, true)).collect();
            all.insert("Permissions.Modify");
            all
        }
        "PVEAuditor" => groups.iter().flat_map(|g| g.audit.iter().copied()).collect(),
        "PVEAdmin" => groups
            .iter()
            .flat_map(|g| tiers(g, false, true, true))
            // Only Administrator, root@pam and PVEMappingAdmin may modify mappings.
            .filter(|p| *p != "Mapping.Modify")
            .collect(),
        "PVETemplateUser" => ["VM.Clone", "VM.Audit"].into_iter().collect(),
        r => {
            let cat = r.strip_prefix("PVE")?;
            if let Some(c) = cat.strip_suffix("Admin") {
                let g = groups.iter().find(|g| g.cat == c)?;
                tiers(g, false, true, true).into_iter().collect()
            } else if let Some(c) = cat.strip_suffix("User") {
                // `PVE<cat>User` exists only for categories with user privileges.
                let g = groups.iter().find(|g| g.cat == c && !g.user.is_empty())?;
                tiers(g, false, false, true).into_iter().collect()
            } else {
                return None;
            }
        }
    };
    Some(set)
}

/// pve-access-control `normalize_path`.
pub fn normalize_path(p: &str) -> Option<String> {
    if p.is_empty() {
        return None;
    }
    let mut s = String::new();
    for c in p.chars() {
        if !(c == '/' && s.ends_with('/')) {
            s.push(c);
        }
    }
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    if s.is_empty() {
        s.push('/');
    }
    if !s.starts_with('/') {
        s.insert(0, '/');
    }
    s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)).then_some(s)
}

/// pve-access-control `check_path`: the paths an ACL entry may be set on (the lab knows no SDN,
/// mapping or pool subtrees beyond their names).
fn valid_acl_path(p: &str) -> bool {
    let seg = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => true,
        ["access"] | ["nodes"] | ["pool"] | ["sdn"] | ["storage"] | ["vms"] | ["mapping"] => true,
        ["access", "groups" | "realm"] => true,
        ["access", "groups" | "realm", x] | ["nodes", x] | ["storage", x] | ["mapping", x] => seg(x),
        ["mapping", x, y] => seg(x) && seg(y),
        ["pool", rest @ ..] if (1..=3).contains(&rest.len()) => rest.iter().all(|s| seg(s)),
        ["vms", id] => id.len() >= 3 && !id.starts_with('0') && id.chars().all(|c| c.is_ascii_digit()),
        ["sdn", ..] => parts.iter().all(|s| seg(s)),
        _ => false,
    }
}

/// The roles `ugid` has on `path` (pve-access-control `AccessControl::roles`): walk the ACL
/// tree from `/` down to the path; at each level the entries for `ugid` replace what was
/// inherited, an entry on a parent counts only if it propagates; NoAccess wins over every
/// other role. Pools and groups are not modelled (the lab has neither).
fn roles_on(dom: &Domain, ugid: &str, path: &str) -> BTreeSet<String> {
    let mut levels = vec!["/".to_string()];
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        levels.push(at.clone());
    }
    let mut roles = BTreeSet::new();
    for (i, level) in levels.iter().enumerate() {
        let last = i + 1 == levels.len();
        let here: BTreeSet<String> = dom
            .acl
            .iter()
            .filter(|e| &e.path == level && e.ugid == ugid && (last || e.propagate))
            .map(|e| e.role.clone())
            .collect();
        if !here.is_empty() {
            roles = here;
        }
    }
    if roles.contains("NoAccess") {
        return ["NoAccess".to_string()].into_iter().collect();
    }
    roles
}

/// The privileges `authid` has on `path` (pve-access-control `RPCEnvironment::permissions`):
/// root@pam has all of them; a token without privilege separation has its user's; a token with
/// it has what its own ACL entries grant — intersected with its user's, which for root@pam (the
/// lab's only user) is everything, so nothing is taken away.
pub fn permissions(profile: PveProfile, dom: &Domain, authid: &str, path: &str) -> BTreeSet<&'static str> {
    let all = || role_privs(profile, "Administrator").unwrap_or_default();
    if authid == USER {
        return all();
    }
    let Some((user, _)) = authid.split_once('!') else {
        // Users other than root@pam do not exist in the lab.
        return BTreeSet::new();
    };
    let Some(t) = dom.tokens.get(authid) else { return BTreeSet::new() };
    let user_privs = if user == USER { all() } else { BTreeSet::new() };
    if !t.privsep {
        return user_privs;
    }
    let mine: BTreeSet<&'static str> =
        roles_on(dom, authid, path).iter().filter_map(|r| role_privs(profile, r)).flatten().collect();
    mine.intersection(&user_privs).copied().collect()
}

fn perm_exc(what: Option<String>) -> ApiErr {
    ApiErr::new(
        403,
        match what {
            Some(w) => format!("Permission check failed ({w})"),
            None => "Permission check failed".into(),
        },
    )
}

/// pve-common `Tools::template_replace`: `{name}` becomes the parameter's value, `-` when absent
/// (or false to Perl: empty, `0`).
fn template_replace(tmpl: &str, params: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(&p_str(params, name).filter(|v| !v.is_empty() && v != "0").unwrap_or_else(|| "-".into()));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

struct Checker<'a> {
    profile: PveProfile,
    dom: &'a Domain,
    authid: &'a str,
    params: &'a Map<String, Value>,
}

impl Checker<'_> {
    fn has(&self, path: &str, privs: &[&str], any: bool) -> bool {
        let mine = permissions(self.profile, self.dom, self.authid, path);
        if any {
            privs.iter().any(|p| mine.contains(p))
        } else {
            privs.iter().all(|p| mine.contains(p))
        }
    }

    /// pve-access-control `RPCEnvironment::exec_api2_perm_check`. `Ok(false)` only with `noerr`.
    fn exec(&self, check: &[Value], noerr: bool) -> Result<bool, ApiErr> {
        let strs = |v: &Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
        };
        let fail = |what: Option<String>| if noerr { Ok(false) } else { Err(perm_exc(what)) };
        match check.first().and_then(Value::as_str) {
            Some("and") => {
                for sub in &check[1..] {
                    self.exec(sub.as_array().map(Vec::as_slice).unwrap_or_default(), false)?;
                }
                Ok(true)
            }
            Some("or") => {
                for sub in &check[1..] {
                    if self.exec(sub.as_array().map(Vec::as_slice).unwrap_or_default(), true)? {
                        return Ok(true);
                    }
                }
                fail(None)
            }
            Some("perm") => {
                let tmpl = check.get(1).and_then(Value::as_str).unwrap_or("/");
                let privs = check.get(2).map(strs).unwrap_or_default();
                let mut any = false;
                let mut require = None;
                for kv in check[3.min(check.len())..].chunks(2) {
                    match (kv[0].as_str(), kv.get(1)) {
                        (Some("any"), Some(v)) => any = crate::schema::truthy(v),
                        (Some("require_param"), Some(v)) => require = v.as_str(),
                        _ => {}
                    }
                }
                if require.is_some_and(|r| !self.params.contains_key(r)) {
                    return fail(None);
                }
                let path = normalize_path(&template_replace(tmpl, self.params)).unwrap_or_else(|| "/".into());
                let refs: Vec<&str> = privs.iter().map(String::as_str).collect();
                if self.has(&path, &refs, any) {
                    return Ok(true);
                }
                // `check_any` names every privilege, `check` the first one missing.
                let what = if any {
                    refs.join("|")
                } else {
                    let mine = permissions(self.profile, self.dom, self.authid, &path);
                    refs.iter().find(|p| !mine.contains(*p)).copied().unwrap_or_default().to_string()
                };
                fail(Some(format!("{path}, {what}")))
            }
            Some("userid-group") => {
                // Any of the privileges on /access/groups covers every user; the lab has no
                // groups to grant them more narrowly.
                let privs = check.get(1).map(strs).unwrap_or_default();
                let refs: Vec<&str> = privs.iter().map(String::as_str).collect();
                if self.has("/access/groups", &refs, true) {
                    Ok(true)
                } else {
                    fail(None)
                }
            }
            Some("userid-param") => {
                let userid = p_str(self.params, "userid").unwrap_or_default();
                match check.get(1).and_then(Value::as_str) {
                    // A token's user is its full id, so `self` never matches a token.
                    Some("self") if userid == self.authid && userid == USER => Ok(true),
                    Some("Realm.AllocateUser") => {
                        let realm = userid.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
                        let path = format!("/access/realm/{realm}");
                        if self.has(&path, &["Realm.AllocateUser"], false) {
                            Ok(true)
                        } else {
                            fail(Some(format!("{path}, Realm.AllocateUser")))
                        }
                    }
                    _ => fail(None),
                }
            }
            Some("perm-modify") => {
                // `check_perm_modify`: Permissions.Modify on the path, or the allocate
                // privilege of its subtree.
                let tmpl = check.get(1).and_then(Value::as_str).unwrap_or("/");
                let Some(path) = normalize_path(&template_replace(tmpl, self.params)) else {
                    return fail(None);
                };
                let mut privs = vec!["Permissions.Modify"];
                if path.starts_with("/storage/") {
                    privs.push("Datastore.Allocate");
                } else if path.starts_with("/vms/") {
                    privs.push("VM.Allocate");
                } else if path.starts_with("/pool/") {
                    privs.push("Pool.Allocate");
                }
                if self.has(&path, &privs, true) {
                    Ok(true)
                } else {
                    fail(Some(format!("{path}, {}", privs.join("|"))))
                }
            }
            other => Err(ApiErr::die(format!("unknown permission test {other:?}"))),
        }
    }
}

/// pve-access-control `RPCEnvironment::check_api2_permissions` for a method's `permissions`
/// (`info` is the method's schema entry): root@pam passes everything, `user: all` anyone
/// authenticated, else the `check` decides; no `permissions` at all is root@pam only (handled
/// before this, PVE-NODE-ROOTONLY). The lab runs it before parameter validation, as
/// pve-manager's `rest_handler` does.
pub(super) fn check_api2_permissions(
    lab: &Lab,
    dom: &Domain,
    caller: &Caller,
    info: &Value,
    params: &Map<String, Value>,
) -> Result<(), ApiErr> {
    if caller.authid == USER {
        return Ok(());
    }
    let Some(perm) = info.get("permissions") else { return Ok(()) };
    if perm.get("user").and_then(Value::as_str).is_some_and(|u| u == "all" || u == "world") {
        return Ok(());
    }
    let Some(check) = perm.get("check").and_then(Value::as_array) else {
        return Err(perm_exc(None));
    };
    let c = Checker { profile: lab.profiles.pve, dom, authid: &caller.authid, params };
    c.exec(check, false).map(drop)
}

/// `GET /access/acl` (pve-access-control `API2::ACL` `read_acl`): every entry for a caller with
/// Sys.Audit on `/access`, else those on paths where it may modify permissions.
pub(super) fn acl_list(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let dom = domain(&st, &cx.store, &cx.local)?;
    let profile = lab.profiles.pve;
    let audit = permissions(profile, dom, &cx.caller.authid, "/access").contains("Sys.Audit");
    Ok(Value::Array(
        dom.acl
            .iter()
            .filter(|e| audit || permissions(profile, dom, &cx.caller.authid, &e.path).contains("Permissions.Modify"))
            .map(|e| {
                json!({"path": e.path, "type": e.kind, "ugid": e.ugid, "roleid": e.role,
                       "propagate": e.propagate as i64})
            })
            .collect(),
    ))
}

/// `PUT /access/acl` (pve-access-control `API2::ACL` `update_acl`): adds (or with `delete`
/// removes) each role for each user and token on one path. Without Permissions.Modify the
/// caller may only hand out privileges it holds itself (and propagate only what propagates
/// for it: the lab's privileges always do).
pub(super) fn acl_update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let users = p_str(p, "users").unwrap_or_default();
    let groups = p_str(p, "groups").unwrap_or_default();
    let tokens = p_str(p, "tokens").unwrap_or_default();
    if users.is_empty() && groups.is_empty() && tokens.is_empty() {
        let msg = "either 'users', 'groups' or 'tokens' is required.";
        let mut e = ApiErr::param("users", msg);
        if let Some(errs) = e.errors.as_mut() {
            errs.insert("groups".into(), msg.into());
            errs.insert("tokens".into(), msg.into());
        }
        return Err(e);
    }
    let raw = p_str(p, "path").unwrap_or_default();
    let delete = p_bool(p, "delete").unwrap_or(false);
    let path = normalize_path(&raw)
        .filter(|path| delete || valid_acl_path(path))
        .ok_or_else(|| ApiErr::param("path", format!("invalid ACL path '{raw}'")))?;
    let propagate = p_bool(p, "propagate").unwrap_or(true);
    let list = |s: &str| -> Vec<String> {
        s.split([',', ';', ' ']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
    };
    let profile = lab.profiles.pve;
    mutate(lab, |st| {
        let dom = domain_mut(st, &cx.store, &cx.local)?;
        let mine = permissions(profile, dom, &cx.caller.authid, &path);
        let verb = if delete { "remove" } else { "add" };
        for role in list(&p_str(p, "roles").unwrap_or_default()) {
            let privs =
                role_privs(profile, &role).ok_or_else(|| ApiErr::die(format!("role '{role}' does not exist")))?;
            if !mine.contains("Permissions.Modify") {
                if privs.iter().any(|x| !mine.contains(x)) {
                    return Err(ApiErr::param(
                        "role",
                        format!(
                            "Cannot {verb} role '{role}' - requires 'Permissions.Modify' or superset of privileges."
                        ),
                    ));
                }
                if role == "NoAccess" {
                    return Err(ApiErr::param(
                        "role",
                        format!("Cannot {verb} role '{role}' - requires 'Permissions.Modify'"),
                    ));
                }
            }
            if let Some(g) = list(&groups).first() {
                return Err(ApiErr::die(format!("group '{g}' does not exist")));
            }
            let mut targets = vec![];
            for u in list(&users) {
                if u != USER {
                    return Err(ApiErr::die(format!("user '{u}' does not exist")));
                }
                targets.push(("user", u));
            }
            for t in list(&tokens) {
                let Some((u, name)) = t.split_once('!').filter(|(u, n)| u.contains('@') && !n.is_empty()) else {
                    return Err(ApiErr::die(format!(
                        "'{t}' is not a valid token ID - not able to split into user and token parts"
                    )));
                };
                if u != USER {
                    return Err(ApiErr::die(format!("no such user ('{u}')")));
                }
                if !dom.tokens.contains_key(&t) {
                    return Err(ApiErr::die(format!("no such token '{name}' for user '{u}'")));
                }
                targets.push(("token", t));
            }
            for (kind, ugid) in targets {
                let at = dom.acl.iter().position(|e| e.path == path && e.ugid == ugid && e.role == role);
                match (delete, at) {
                    (true, Some(i)) => {
                        dom.acl.remove(i);
                    }
                    (true, None) => {}
                    (false, Some(i)) => dom.acl[i].propagate = propagate,
                    (false, None) => dom.acl.push(AclEntry {
                        path: path.clone(),
                        kind: kind.into(),
                        ugid,
                        role: role.clone(),
                        propagate,
                    }),
                }
            }
        }
        Ok(Value::Null)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roles_as_create_roles_cuts_them() {
        let r = |n| role_privs(PveProfile::V9_1, n).unwrap();
        assert!(r("Administrator").contains("Permissions.Modify"));
        assert!(r("Administrator").contains("Sys.Modify"));
        assert!(!r("PVEAdmin").contains("Sys.Modify"), "Sys.Modify is a root-tier privilege");
        assert!(!r("PVEAdmin").contains("Mapping.Modify"));
        assert_eq!(r("PVEAuditor").len(), 7);
        assert!(r("PVEDatastoreUser").contains("Datastore.AllocateSpace"));
        assert!(role_privs(PveProfile::V9_1, "PVESysUser").is_none(), "Sys has no user tier");
        assert!(role_privs(PveProfile::V9_1, "Nobody").is_none());
        assert!(role_privs(PveProfile::V8_4, "PVEVMAdmin").unwrap().contains("VM.Monitor"));
        assert!(!r("PVEVMAdmin").contains("VM.Monitor"));
    }

    #[test]
    fn paths_normalise_as_pve_does() {
        assert_eq!(normalize_path("//nodes//pve1/").as_deref(), Some("/nodes/pve1"));
        assert_eq!(normalize_path("nodes").as_deref(), Some("/nodes"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a b"), None);
        assert!(valid_acl_path("/storage/local") && valid_acl_path("/vms/100") && !valid_acl_path("/vms/1"));
        assert!(!valid_acl_path("/nodes/pve1/qemu"));
    }

    #[test]
    fn templates_fill_in_parameters() {
        let mut p = Map::new();
        p.insert("node".into(), json!("pve1"));
        assert_eq!(template_replace("/nodes/{node}", &p), "/nodes/pve1");
        assert_eq!(template_replace("/storage/{storage}", &p), "/storage/-");
    }
}
