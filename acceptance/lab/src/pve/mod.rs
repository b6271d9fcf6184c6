//! The Proxmox VE API of one emulated node (`https://ADDR:8006/api2/json`).
//!
//! [`ROUTES`] is the one list of what it serves; each area's handlers live beside it, one
//! function per endpoint: `access` (tickets, tokens), `nodes` (version, node status, DNS, time,
//! disks), `network`, `cluster`, `ceph`, `pools` (Ceph pools), `jobs` (backup jobs, storages), `qemu` (guests, restores from PBS),
//! `tasks` (shared with the PBS API), and ACME and the node config in `crate::acme`.

mod access;
mod ceph;
mod cluster;
mod jobs;
mod maintenance;
mod network;
mod nodes;
mod pools;
mod qemu;
pub(crate) mod tasks;

use std::sync::Arc;

use serde_json::json;

use crate::acme;
use crate::api::{self, err_resp, p_str, ApiErr, ApiResult, Caller};
use crate::http::{self, Handler, Req, Resp};
use crate::lab::Lab;
use crate::routes::{self, Route};
use crate::schema::Product;
use crate::state::{now_s, Domain, LabState, NodeState, StoreState};

pub use access::{audit_secret, fresh_domain};
pub use maintenance::reboot_summary;
pub use network::fresh_network;
pub use pools::{apply_pool_field, pool_prefix, refresh_pools_from_backend};
pub use qemu::{lose_chunk, run_backup_job, seed_guest, set_storage_full, AGENT_BOOT_MS};

use ceph::{MGR, MON};
use jobs::{Backup, Storage};

/// Everything the lab serves, in the order `coverage --verbose` lists it.
const ROUTES: &[Route<routes::Handler<Cx, ApiResult>>] = &[
    Route::get("/version", nodes::version),
    Route::get("/access/ticket", access::ticket_form),
    Route::post("/access/ticket", access::ticket),
    Route::get("/access/users/{userid}/token", access::token_list),
    Route::get("/access/users/{userid}/token/{tokenid}", access::token_get),
    Route::post("/access/users/{userid}/token/{tokenid}", access::token_create),
    Route::put("/access/users/{userid}/token/{tokenid}", access::token_update),
    Route::delete("/access/users/{userid}/token/{tokenid}", access::token_delete),
    Route::get("/access/acl", access::acl_list),
    Route::put("/access/acl", access::acl_update),
    Route::get("/nodes", nodes::list),
    Route::get("/nodes/{node}/status", nodes::status),
    Route::post("/nodes/{node}/status", nodes::command),
    Route::get("/nodes/{node}/dns", nodes::dns),
    Route::put("/nodes/{node}/dns", nodes::set_dns),
    Route::get("/nodes/{node}/time", nodes::time),
    Route::put("/nodes/{node}/time", nodes::set_time),
    Route::get("/nodes/{node}/network", network::list),
    Route::post("/nodes/{node}/network", network::create),
    Route::put("/nodes/{node}/network", network::apply),
    Route::delete("/nodes/{node}/network", network::revert),
    Route::get("/nodes/{node}/network/{iface}", network::get),
    Route::put("/nodes/{node}/network/{iface}", network::update),
    Route::delete("/nodes/{node}/network/{iface}", network::delete),
    Route::get("/nodes/{node}/disks/list", nodes::disks),
    Route::put("/nodes/{node}/disks/wipedisk", nodes::wipe_disk),
    Route::get("/cluster/config", cluster::config_index),
    Route::post("/cluster/config", cluster::create),
    Route::get("/cluster/config/join", cluster::join_info),
    Route::post("/cluster/config/join", cluster::join),
    Route::get("/cluster/config/nodes", cluster::nodes),
    Route::delete("/cluster/config/nodes/{node}", cluster::delnode),
    Route::get("/cluster/status", cluster::status),
    Route::get("/cluster/ceph/flags", maintenance::list),
    Route::get("/cluster/ceph/flags/{flag}", maintenance::get),
    Route::put("/cluster/ceph/flags/{flag}", maintenance::update),
    Route::post("/nodes/{node}/ceph/init", ceph::init),
    Route::get("/nodes/{node}/ceph/status", ceph::status),
    Route::get("/nodes/{node}/ceph/mon", ceph::daemons::<MON>),
    Route::post("/nodes/{node}/ceph/mon/{monid}", ceph::create::<MON>),
    Route::delete("/nodes/{node}/ceph/mon/{monid}", ceph::destroy::<MON>),
    Route::get("/nodes/{node}/ceph/mgr", ceph::daemons::<MGR>),
    Route::post("/nodes/{node}/ceph/mgr/{id}", ceph::create::<MGR>),
    Route::delete("/nodes/{node}/ceph/mgr/{id}", ceph::destroy::<MGR>),
    Route::get("/nodes/{node}/ceph/osd", ceph::osd_list),
    Route::post("/nodes/{node}/ceph/osd", ceph::osd_create),
    Route::delete("/nodes/{node}/ceph/osd/{osdid}", ceph::osd_destroy),
    Route::get("/nodes/{node}/ceph/pool", pools::list),
    Route::post("/nodes/{node}/ceph/pool", pools::create),
    Route::get("/nodes/{node}/ceph/pool/{name}", pools::index),
    Route::put("/nodes/{node}/ceph/pool/{name}", pools::update),
    Route::delete("/nodes/{node}/ceph/pool/{name}", pools::destroy),
    Route::get("/nodes/{node}/ceph/pool/{name}/status", pools::status),
    Route::get("/cluster/backup", jobs::list::<Backup>),
    Route::post("/cluster/backup", jobs::create::<Backup>),
    Route::get("/cluster/backup/{id}", jobs::get::<Backup>),
    Route::put("/cluster/backup/{id}", jobs::update::<Backup>),
    Route::delete("/cluster/backup/{id}", jobs::delete::<Backup>),
    Route::get("/storage", jobs::list::<Storage>),
    Route::post("/storage", jobs::create::<Storage>),
    Route::get("/storage/{storage}", jobs::get::<Storage>),
    Route::put("/storage/{storage}", jobs::update::<Storage>),
    Route::delete("/storage/{storage}", jobs::delete::<Storage>),
    Route::get("/cluster/nextid", qemu::nextid),
    Route::get("/nodes/{node}/qemu", qemu::list),
    Route::post("/nodes/{node}/qemu", qemu::create),
    Route::delete("/nodes/{node}/qemu/{vmid}", qemu::destroy),
    Route::get("/nodes/{node}/qemu/{vmid}/config", qemu::config_get),
    Route::put("/nodes/{node}/qemu/{vmid}/config", qemu::config_put),
    Route::get("/nodes/{node}/qemu/{vmid}/status/current", qemu::status_current),
    Route::post("/nodes/{node}/qemu/{vmid}/status/start", qemu::start),
    Route::post("/nodes/{node}/qemu/{vmid}/status/stop", qemu::stop),
    Route::post("/nodes/{node}/qemu/{vmid}/agent/ping", qemu::agent_ping),
    Route::get("/nodes/{node}/tasks", tasks::list),
    Route::get("/nodes/{node}/tasks/{upid}", tasks::index),
    Route::delete("/nodes/{node}/tasks/{upid}", tasks::stop),
    Route::get("/nodes/{node}/tasks/{upid}/status", tasks::status),
    Route::get("/nodes/{node}/tasks/{upid}/log", tasks::log),
    // ACME and the node config (src/acme.rs).
    Route::get("/nodes/{node}/config", acme::node_config),
    Route::put("/nodes/{node}/config", acme::set_node_config),
    Route::get("/cluster/acme/directories", acme::directories),
    Route::get("/cluster/acme/tos", acme::tos),
    Route::get("/cluster/acme/account", acme::accounts),
    Route::post("/cluster/acme/account", acme::account_create),
    Route::get("/cluster/acme/account/{name}", acme::account),
    Route::get("/cluster/acme/plugins", acme::plugins),
    Route::post("/cluster/acme/plugins", acme::plugin_create),
    Route::get("/cluster/acme/plugins/{id}", acme::plugin),
    Route::put("/cluster/acme/plugins/{id}", acme::plugin_update),
    Route::delete("/cluster/acme/plugins/{id}", acme::plugin_delete),
    Route::post("/nodes/{node}/certificates/acme/certificate", acme::order),
    Route::get("/nodes/{node}/certificates/info", acme::cert_info),
    Route::delete("/nodes/{node}/certificates/custom", acme::delete_custom_cert),
];

/// Every (METHOD, template) in [`ROUTES`]; `coverage` compares this with the schema.
pub const IMPLEMENTED: &[(&str, &str)] = &routes::endpoints::<_, { ROUTES.len() }>(ROUTES);

/// The data disks of every node: /dev/sdb–sdd blank, /dev/sde with an old partition table
/// (`model::reset_os`).
const DISKS: &[&str] = &["/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/sde"];

pub(crate) struct Cx {
    pub(crate) store: String,
    /// The node whose listener got the request.
    pub(crate) local: String,
    /// The node the request is for (after proxying).
    pub(crate) node: String,
    pub(crate) caller: Caller,
    pub(crate) fail: bool,
}

pub fn handler(lab: Arc<Lab>, store: String, node: String) -> Handler {
    Arc::new(move |req: Req| {
        let lab = Arc::clone(&lab);
        let store = store.clone();
        let node = node.clone();
        Box::pin(async move {
            let legacy = lab.profiles.pve_http_server_legacy;
            handle(lab, store, node, req).await.map(|r| if legacy { legacy_error_body(r) } else { r })
        })
    })
}

/// Before pve-http-server 5.2.0 (commit 9a2112e, 2025-01-28; PVE 8.0 to early 8.3) an error's
/// text was only in the HTTP reason phrase: the JSON body said `{"data":null}` (and `errors`).
fn legacy_error_body(mut r: Resp) -> Resp {
    if r.status >= 400 && !r.body.is_empty() {
        if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice::<serde_json::Value>(&r.body) {
            o.remove("message");
            r.body = serde_json::to_vec(&o).unwrap_or_default();
        }
    }
    r
}

/// A 401 from pveproxy's authentication (`PVE::APIServer::AnyEvent`
/// `authenticate_and_handle_request`): the reason phrase only, no body even after 5.2.0.
/// pve-manager 8.4.17 / 9.1.5 (commit 26c10a2e) say `Authentication failed!` for every bad
/// credential and log the detail; releases before name the reason. `No ticket` stays.
fn auth_failure(lab: &Lab, e: ApiErr) -> Resp {
    let generic = !lab.profiles.pve_http_server_legacy && e.msg != "No ticket";
    Resp::status_only(e.status, if generic { "Authentication failed!" } else { &e.msg })
}

async fn handle(lab: Arc<Lab>, store: String, local: String, req: Req) -> Option<Resp> {
    let Some(path) = req.path.strip_prefix("/api2/json").map(str::to_string) else {
        return Some(Resp::json(501, &json!({"data": null})).with_reason("Unsupported format"));
    };
    // pveproxy restarting after a join (`finish_join`: `systemctl reload-or-restart pveproxy`):
    // the connection is reset; the next one gets the new certificate.
    if restarting(&lab, &store, &local, |n| n.api_restart_until_ms) {
        return None;
    }
    let routed = api::route(&lab, Product::Pve, &req.method, &path, IMPLEMENTED);
    let template = routed.as_ref().map(|r| r.template.clone()).unwrap_or_else(|| path.clone());
    let fail = match api::pre_request(&lab, Product::Pve, &req, &template).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let not_impl = |m: String| Some(Resp::json(501, &json!({"data": null, "message": m})).with_reason(&m));
    let Some(routed) = routed else {
        return not_impl(format!("Method '{} {}' not implemented", req.method, path));
    };
    if lab.schema(Product::Pve).is_some() && routed.info.is_none() {
        return not_impl(format!("Method '{} {}' not implemented", req.method, path));
    }
    let mut params = match api::params_of(&req, Product::Pve) {
        Ok(p) => p,
        Err(r) => return Some(r),
    };
    let caller = if api::is_world(&routed.info) || routed.template == "/access/ticket" {
        Caller { authid: String::new(), user: String::new(), read_only: false, via_ticket: false }
    } else {
        match authenticate(&lab, &store, &local, &req) {
            Ok(c) => c,
            Err(e) => return Some(auth_failure(&lab, e)),
        }
    };
    // pve-access-control `RPCEnvironment::check_api2_permissions`: a method whose schema has no
    // `permissions` is for the literal user root@pam; a token's user is its full id
    // (`root@pam!edge`), so every token is refused, before the parameters are looked at.
    if api::is_root_only(&routed.info) && caller.authid != "root@pam" {
        return Some(err_resp(Product::Pve, ApiErr::new(403, "Permission check failed (user != root@pam)")));
    }
    // Then the method's `permissions` (privilege-separated tokens get only what their ACL
    // entries grant), also before the parameters are validated.
    if let Some(info) = &routed.info {
        let mut all = params.clone();
        for (k, v) in &routed.path_params {
            all.entry(k.clone()).or_insert(serde_json::Value::String(v.clone()));
        }
        let checked = {
            let st = lab.state();
            domain(&st, &store, &local).and_then(|dom| access::check_api2_permissions(&lab, dom, &caller, info, &all))
        };
        if let Err(e) = checked {
            return Some(err_resp(Product::Pve, e));
        }
    }
    if let Err(e) = api::validate(&lab, Product::Pve, &routed, &mut params) {
        return Some(err_resp(Product::Pve, e));
    }
    let Some(route) = routes::find(ROUTES, &req.method, &routed.template) else {
        return not_impl(format!("edge-lab: '{} {}' is not implemented", req.method, routed.template));
    };
    // Proxy like pveproxy: /nodes/{other}/... is served for a node of the same cluster.
    let mut node = local.clone();
    if let Some(target) = p_str(&params, "node") {
        if routed.template.starts_with("/nodes/{node}") && target != local {
            match proxy_target(&lab, &store, &local, &target) {
                Ok(()) => node = target,
                Err(e) => return Some(err_resp(Product::Pve, e)),
            }
        }
    }
    let cx = Cx { store, local, node, caller, fail };
    Some(match (route.handler)(&lab, &cx, &params) {
        Ok(v) => Resp::data(v),
        Err(e) => err_resp(Product::Pve, e),
    })
}

fn authenticate(lab: &Lab, store: &str, local: &str, req: &Req) -> Result<Caller, ApiErr> {
    // pmxcfs restarting after `pvecm create` (`systemctl restart corosync pve-cluster`):
    // /etc/pve, with the keys that check tickets and tokens, is briefly not there.
    if restarting(lab, store, local, |n| n.auth_restart_until_ms) {
        return Err(ApiErr::new(401, "authentication failure: /etc/pve is not mounted"));
    }
    let st = lab.state();
    let s = st.store(store).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    let n = s.node(local).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    let dom = st.domains.get(&LabState::domain_key(s, n)).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    if let Some(auth) = http::header(req, "authorization") {
        if let Some(rest) = auth.strip_prefix("PVEAPIToken=").or_else(|| auth.strip_prefix("PVEAPIToken ")) {
            let id = access::verify_token(dom, rest, now_s())?;
            let user = id.split('!').next().unwrap_or(&id).to_string();
            return Ok(Caller { authid: id, user, read_only: false, via_ticket: false });
        }
    }
    if let Some(ticket) = http::cookie(req, "PVEAuthCookie") {
        let user = api::verify_ticket("PVE", &dom.authkey, &ticket)
            .ok_or_else(|| ApiErr::new(401, "permission denied - invalid PVE ticket"))?;
        if req.method != "GET" {
            let ok =
                http::header(req, "csrfpreventiontoken").is_some_and(|t| api::verify_csrf(&dom.authkey, &user, &t));
            if !ok {
                return Err(ApiErr::new(401, "Permission denied - invalid csrf token"));
            }
        }
        return Ok(Caller { authid: user.clone(), user, read_only: false, via_ticket: true });
    }
    Err(ApiErr::new(401, "No ticket"))
}

/// Whether the node is inside the restart window `until` reads from its state.
fn restarting(lab: &Lab, store: &str, node: &str, until: impl Fn(&NodeState) -> Option<u64>) -> bool {
    let st = lab.state();
    st.store(store).and_then(|s| s.node(node)).and_then(until).is_some_and(|t| lab.now_ms() < t)
}

fn proxy_target(lab: &Lab, store: &str, local: &str, target: &str) -> Result<(), ApiErr> {
    let st = lab.state();
    let lookup = || {
        ApiErr::die(format!(
            "hostname lookup '{target}' failed - failed to get address info for: {target}: Name or service not known"
        ))
    };
    let s = st.store(store).ok_or_else(lookup)?;
    let me = s.node(local).ok_or_else(lookup)?;
    let other = s.node(target).ok_or_else(lookup)?;
    match (&me.cluster, &other.cluster) {
        (Some(a), Some(b)) if a == b => {
            if other.is_up(lab.now_ms()) {
                Ok(())
            } else {
                Err(ApiErr::new(595, format!("Connect to {}:8006 failed: No route to host", other.address)))
            }
        }
        _ => Err(lookup()),
    }
}

/// Runs `f` on the state and saves it afterwards if `f` succeeded. GET handlers lock the state
/// without it: a read changes nothing, so it does not rewrite state.json (which holds every
/// store: with hundreds of stores, saving on every read made each GET cost tens of
/// milliseconds).
fn mutate<R>(lab: &Lab, f: impl FnOnce(&mut LabState) -> Result<R, ApiErr>) -> Result<R, ApiErr> {
    let mut st = lab.state();
    let r = f(&mut st)?;
    lab.save(&st);
    Ok(r)
}

fn store_mut<'a>(st: &'a mut LabState, store: &str) -> Result<&'a mut StoreState, ApiErr> {
    st.store_mut(store).ok_or_else(|| ApiErr::die("store vanished"))
}

fn node_ref<'a>(st: &'a LabState, store: &str, node: &str) -> Result<(&'a StoreState, &'a NodeState), ApiErr> {
    let s = st.store(store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let n = s.node(node).ok_or_else(|| ApiErr::die(format!("no such node '{node}'")))?;
    Ok((s, n))
}

fn dom_key(st: &LabState, store: &str, node: &str) -> Result<String, ApiErr> {
    let (s, n) = node_ref(st, store, node)?;
    Ok(LabState::domain_key(s, n))
}

fn domain_mut<'a>(st: &'a mut LabState, store: &str, node: &str) -> Result<&'a mut Domain, ApiErr> {
    let k = dom_key(st, store, node)?;
    st.domains.get_mut(&k).ok_or_else(|| ApiErr::die("configuration domain missing"))
}

fn domain<'a>(st: &'a LabState, store: &str, node: &str) -> Result<&'a Domain, ApiErr> {
    let k = dom_key(st, store, node)?;
    st.domains.get(&k).ok_or_else(|| ApiErr::die("configuration domain missing"))
}

/// Nodes visible from `node`: its cluster members that exist, or just itself.
fn visible_nodes(st: &LabState, store: &str, node: &str) -> Vec<String> {
    let Ok((s, n)) = node_ref(st, store, node) else {
        return vec![];
    };
    match &n.cluster {
        Some(c) => s.nodes.iter().filter(|m| m.cluster.as_deref() == Some(c)).map(|m| m.name.clone()).collect(),
        None => vec![n.name.clone()],
    }
}

fn check_ceph(st: &LabState, cx: &Cx) -> Result<(), ApiErr> {
    if !domain(st, &cx.store, &cx.node)?.ceph_initialized {
        return Err(ApiErr::die("pveceph configuration not initialized - missing '/etc/pve/ceph.conf'"));
    }
    Ok(())
}

/// Before the first monitor exists PVE cannot connect to the cluster (`PVE::RADOS->new()` in
/// the handler, outside any eval): the librados error of an empty `mon_host`.
fn check_rados(st: &LabState, cx: &Cx) -> Result<(), ApiErr> {
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let has_mon = visible_nodes(st, &cx.store, &cx.node).iter().filter_map(|m| s.node(m)).any(|n| n.ceph.mon);
    if has_mon {
        Ok(())
    } else {
        Err(ApiErr::die("rados_connect failed - No such file or directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_routed_once() {
        assert_eq!(routes::repeated(ROUTES), Vec::<String>::new());
    }
}
