//! The Proxmox VE API of one emulated node (`https://ADDR:8006/api2/json`).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::{
    self, delete_list, digest_of, err_resp, p_bool, p_int, p_str, random_hex, random_secret, ApiErr, ApiResult, Caller,
};
use crate::http::{self, Handler, Req, Resp};
use crate::lab::{lock, Lab};
use crate::schema::Product;
use crate::state::{now_s, Domain, LabState, NodeState, Pool, StoreState, Token};

/// Every (METHOD, template) the lab serves; `coverage` compares this with the schema.
pub const IMPLEMENTED: &[(&str, &str)] = &[
    ("GET", "/version"),
    ("GET", "/access/ticket"),
    ("POST", "/access/ticket"),
    ("GET", "/access/users/{userid}/token"),
    ("GET", "/access/users/{userid}/token/{tokenid}"),
    ("POST", "/access/users/{userid}/token/{tokenid}"),
    ("PUT", "/access/users/{userid}/token/{tokenid}"),
    ("DELETE", "/access/users/{userid}/token/{tokenid}"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{node}/status"),
    ("POST", "/nodes/{node}/status"),
    ("GET", "/nodes/{node}/dns"),
    ("PUT", "/nodes/{node}/dns"),
    ("GET", "/nodes/{node}/time"),
    ("PUT", "/nodes/{node}/time"),
    ("GET", "/nodes/{node}/network"),
    ("POST", "/nodes/{node}/network"),
    ("PUT", "/nodes/{node}/network"),
    ("DELETE", "/nodes/{node}/network"),
    ("GET", "/nodes/{node}/network/{iface}"),
    ("PUT", "/nodes/{node}/network/{iface}"),
    ("DELETE", "/nodes/{node}/network/{iface}"),
    ("GET", "/nodes/{node}/disks/list"),
    ("GET", "/cluster/config"),
    ("POST", "/cluster/config"),
    ("GET", "/cluster/config/join"),
    ("POST", "/cluster/config/join"),
    ("GET", "/cluster/config/nodes"),
    ("DELETE", "/cluster/config/nodes/{node}"),
    ("GET", "/cluster/status"),
    ("POST", "/nodes/{node}/ceph/init"),
    ("GET", "/nodes/{node}/ceph/status"),
    ("GET", "/nodes/{node}/ceph/mon"),
    ("POST", "/nodes/{node}/ceph/mon/{monid}"),
    ("DELETE", "/nodes/{node}/ceph/mon/{monid}"),
    ("GET", "/nodes/{node}/ceph/mgr"),
    ("POST", "/nodes/{node}/ceph/mgr/{id}"),
    ("DELETE", "/nodes/{node}/ceph/mgr/{id}"),
    ("GET", "/nodes/{node}/ceph/osd"),
    ("POST", "/nodes/{node}/ceph/osd"),
    ("DELETE", "/nodes/{node}/ceph/osd/{osdid}"),
    ("GET", "/nodes/{node}/ceph/pool"),
    ("POST", "/nodes/{node}/ceph/pool"),
    ("GET", "/nodes/{node}/ceph/pool/{name}"),
    ("PUT", "/nodes/{node}/ceph/pool/{name}"),
    ("DELETE", "/nodes/{node}/ceph/pool/{name}"),
    ("GET", "/nodes/{node}/ceph/pool/{name}/status"),
    ("GET", "/cluster/backup"),
    ("POST", "/cluster/backup"),
    ("GET", "/cluster/backup/{id}"),
    ("PUT", "/cluster/backup/{id}"),
    ("DELETE", "/cluster/backup/{id}"),
    ("GET", "/storage"),
    ("POST", "/storage"),
    ("GET", "/storage/{storage}"),
    ("PUT", "/storage/{storage}"),
    ("DELETE", "/storage/{storage}"),
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}"),
    ("DELETE", "/nodes/{node}/tasks/{upid}"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    // ACME and the node config (src/acme.rs).
    ("GET", "/nodes/{node}/config"),
    ("PUT", "/nodes/{node}/config"),
    ("GET", "/cluster/acme/directories"),
    ("GET", "/cluster/acme/tos"),
    ("GET", "/cluster/acme/account"),
    ("POST", "/cluster/acme/account"),
    ("GET", "/cluster/acme/account/{name}"),
    ("GET", "/cluster/acme/plugins"),
    ("POST", "/cluster/acme/plugins"),
    ("GET", "/cluster/acme/plugins/{id}"),
    ("PUT", "/cluster/acme/plugins/{id}"),
    ("DELETE", "/cluster/acme/plugins/{id}"),
    ("POST", "/nodes/{node}/certificates/acme/certificate"),
    ("GET", "/nodes/{node}/certificates/info"),
];

const DISKS: &[&str] = &["/dev/sdb", "/dev/sdc", "/dev/sdd"];

struct Cx {
    store: String,
    /// The node whose listener got the request.
    local: String,
    /// The node the request is for (after proxying).
    node: String,
    caller: Caller,
    fail: bool,
}

pub fn handler(lab: Arc<Lab>, store: String, node: String) -> Handler {
    Arc::new(move |req: Req| {
        let lab = Arc::clone(&lab);
        let store = store.clone();
        let node = node.clone();
        Box::pin(async move { handle(lab, store, node, req).await })
    })
}

async fn handle(lab: Arc<Lab>, store: String, local: String, req: Req) -> Option<Resp> {
    let Some(path) = req.path.strip_prefix("/api2/json").map(str::to_string) else {
        return Some(Resp::json(501, &json!({"data": null})).with_reason("Unsupported format"));
    };
    let routed = api::route(&lab, Product::Pve, &req.method, &path, IMPLEMENTED);
    let template = routed.as_ref().map(|r| r.template.clone()).unwrap_or_else(|| path.clone());
    let fail = match api::pre_request(&lab, Product::Pve, &req, &template).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let not_impl = |m: String| Some(Resp::json(501, &json!({"data": null})).with_reason(&m));
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
            Err(e) => return Some(err_resp(Product::Pve, e)),
        }
    };
    if caller.read_only && req.method != "GET" {
        return Some(err_resp(Product::Pve, ApiErr::new(403, "Permission check failed (/, Sys.Modify)")));
    }
    if let Err(e) = api::validate(&lab, Product::Pve, &routed, &mut params) {
        return Some(err_resp(Product::Pve, e));
    }
    if !IMPLEMENTED.iter().any(|(m, t)| *m == req.method && *t == routed.template) {
        return not_impl(format!("edge-lab: '{} {}' is not implemented", req.method, routed.template));
    }
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
    let res = dispatch(&lab, &cx, &req.method, &routed.template, &params);
    Some(match res {
        Ok(v) => Resp::data(v),
        Err(e) => err_resp(Product::Pve, e),
    })
}

fn authenticate(lab: &Lab, store: &str, local: &str, req: &Req) -> Result<Caller, ApiErr> {
    let st = lab.state();
    let s = st.store(store).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    let n = s.node(local).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    let dom = st.domains.get(&LabState::domain_key(s, n)).ok_or_else(|| ApiErr::new(401, "No ticket"))?;
    if let Some(auth) = http::header(req, "authorization") {
        if let Some(rest) = auth.strip_prefix("PVEAPIToken=").or_else(|| auth.strip_prefix("PVEAPIToken ")) {
            let (id, secret) = rest.trim().rsplit_once('=').ok_or_else(|| ApiErr::new(401, "invalid token value!"))?;
            return match dom.tokens.get(id) {
                Some(t) if t.secret == secret && (t.expire == 0 || t.expire as u64 > now_s()) => Ok(Caller {
                    authid: id.to_string(),
                    user: id.split('!').next().unwrap_or(id).to_string(),
                    read_only: t.read_only,
                    via_ticket: false,
                }),
                _ => Err(ApiErr::new(401, "invalid token value!")),
            };
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

/// Runs `f` on the state and saves it afterwards if `f` succeeded.
fn mutate<R>(lab: &Lab, f: impl FnOnce(&mut LabState) -> Result<R, ApiErr>) -> Result<R, ApiErr> {
    mutate_for(lab, "POST", f)
}

/// [`mutate`] for handlers that serve reads too: a GET changes nothing, so it does not rewrite
/// state.json (which holds every store: with hundreds of stores, saving on every read made each
/// GET cost tens of milliseconds).
fn mutate_for<R>(lab: &Lab, method: &str, f: impl FnOnce(&mut LabState) -> Result<R, ApiErr>) -> Result<R, ApiErr> {
    let mut st = lab.state();
    let r = f(&mut st)?;
    if method != "GET" {
        lab.save(&st);
    }
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

fn dispatch(lab: &Arc<Lab>, cx: &Cx, method: &str, template: &str, p: &Map<String, Value>) -> ApiResult {
    let who = crate::acme::Who {
        store: &cx.store,
        local: &cx.local,
        node: &cx.node,
        authid: &cx.caller.authid,
        fail: cx.fail,
    };
    if let Some(r) = crate::acme::dispatch(lab, &who, method, template, p) {
        return r;
    }
    match (method, template) {
        ("GET", "/version") => {
            let (version, release, repoid) = lab.profiles.pve.version();
            Ok(json!({"version": version, "release": release, "repoid": repoid}))
        }
        ("GET", "/access/ticket") => Ok(Value::Null),
        ("POST", "/access/ticket") => ticket(lab, cx, p),
        ("GET", "/access/users/{userid}/token")
        | ("GET", "/access/users/{userid}/token/{tokenid}")
        | ("POST", "/access/users/{userid}/token/{tokenid}")
        | ("PUT", "/access/users/{userid}/token/{tokenid}")
        | ("DELETE", "/access/users/{userid}/token/{tokenid}") => tokens(lab, cx, method, p),
        ("GET", "/nodes") => {
            let st = lab.state();
            let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let now = lab.now_ms();
            let list: Vec<Value> = visible_nodes(&st, &cx.store, &cx.local)
                .iter()
                .filter_map(|name| s.node(name))
                .map(|n| {
                    let up = n.is_up(now);
                    let mut o = json!({
                        "node": n.name, "status": if up { "online" } else { "offline" }, "id": format!("node/{}", n.name),
                        "type": "node", "level": "", "ssl_fingerprint": n.cert.fingerprint,
                    });
                    if up {
                        o["uptime"] = json!(now_s().saturating_sub(n.boot_time));
                        o["cpu"] = json!(0.012);
                        o["maxcpu"] = json!(8);
                        o["mem"] = json!(3_221_225_472u64);
                        o["maxmem"] = json!(34_359_738_368u64);
                    }
                    o
                })
                .collect();
            Ok(Value::Array(list))
        }
        ("GET", "/nodes/{node}/status") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            Ok(json!({
                "uptime": now_s().saturating_sub(n.boot_time),
                "cpu": 0.012, "wait": 0.0,
                "loadavg": ["0.10", "0.08", "0.05"],
                "cpuinfo": {"cores": 8, "cpus": 8, "sockets": 1, "model": "edge-lab virtual CPU", "mhz": "2400.000", "hvm": "1", "flags": "", "user_hz": 100},
                "memory": {"total": 34_359_738_368u64, "used": 3_221_225_472u64, "free": 31_138_512_896u64, "available": 31_138_512_896u64},
                "swap": {"total": 0, "used": 0, "free": 0},
                "rootfs": {"total": 100_000_000_000u64, "used": 5_000_000_000u64, "free": 95_000_000_000u64, "avail": 95_000_000_000u64},
                "ksm": {"shared": 0},
                "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 x86_64",
                "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2", "machine": "x86_64"},
                "boot-info": {"mode": "efi", "secureboot": 1},
                "pveversion": pveversion(lab),
                "idle": 0,
            }))
        }
        ("POST", "/nodes/{node}/status") => {
            let cmd = p_str(p, "command").unwrap_or_default();
            if cmd == "shutdown" {
                let uuid = mutate(lab, |st| {
                    let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
                    n.power_on = false;
                    Ok(n.system_id.clone())
                })?;
                if let Some(b) = &lab.bmc {
                    let _ = b.set_power(&uuid, false);
                }
            }
            Ok(Value::Null)
        }
        ("GET", "/nodes/{node}/dns") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            let mut o = json!({"search": n.dns.search});
            for (k, v) in [("dns1", &n.dns.dns1), ("dns2", &n.dns.dns2), ("dns3", &n.dns.dns3)] {
                if let Some(v) = v {
                    o[k] = json!(v);
                }
            }
            Ok(o)
        }
        ("PUT", "/nodes/{node}/dns") => mutate(lab, |st| {
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            n.dns.search = p_str(p, "search").unwrap_or_default();
            n.dns.dns1 = p_str(p, "dns1");
            n.dns.dns2 = p_str(p, "dns2");
            n.dns.dns3 = p_str(p, "dns3");
            Ok(Value::Null)
        }),
        ("GET", "/nodes/{node}/time") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            let t = now_s();
            Ok(json!({"timezone": n.timezone, "time": t, "localtime": t}))
        }
        ("PUT", "/nodes/{node}/time") => mutate(lab, |st| {
            let tz = p_str(p, "timezone").unwrap_or_default();
            if !tz.contains('/') && tz != "UTC" && tz != "Etc/UTC" {
                return Err(ApiErr::param("timezone", format!("Invalid timezone '{tz}'")));
            }
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            n.timezone = tz;
            Ok(Value::Null)
        }),
        ("GET", "/nodes/{node}/network")
        | ("POST", "/nodes/{node}/network")
        | ("PUT", "/nodes/{node}/network")
        | ("DELETE", "/nodes/{node}/network")
        | ("GET", "/nodes/{node}/network/{iface}")
        | ("PUT", "/nodes/{node}/network/{iface}")
        | ("DELETE", "/nodes/{node}/network/{iface}") => network(lab, cx, method, template, p),
        ("GET", "/nodes/{node}/disks/list") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            let mut out = vec![
                json!({"devpath": "/dev/sda", "gpt": 1, "mounted": 1, "osdid": -1, "osdid-list": null, "size": 128_035_676_160u64, "used": "BIOS boot", "health": "PASSED", "model": "EDGE-BOOT", "serial": format!("{}-sda", n.name), "vendor": "ATA", "wwn": "unknown", "type": "ssd", "rpm": 0, "by_id_link": ""}),
            ];
            for d in DISKS {
                let osd = n.ceph.osds.iter().find(|o| o.dev == *d);
                let mut o = json!({"devpath": d, "gpt": 0, "mounted": 0, "osdid": osd.map(|o| o.id).unwrap_or(-1), "size": 1_000_204_886_016u64, "health": "PASSED", "model": "EDGE-DATA", "serial": format!("{}-{}", n.name, &d[5..]), "vendor": "ATA", "wwn": "unknown", "type": "ssd", "rpm": 0, "by_id_link": ""});
                match osd {
                    Some(osd) => {
                        o["used"] = json!("LVM");
                        o["osdid-list"] = json!([osd.id]);
                    }
                    None => o["osdid-list"] = Value::Null,
                }
                out.push(o);
            }
            // The schema requires osdid-list on every disk (PVE sends null; an empty list
            // satisfies both clients and the schema).
            for o in out.iter_mut() {
                if o["osdid-list"].is_null() {
                    o["osdid-list"] = json!([]);
                }
            }
            Ok(Value::Array(out))
        }
        ("GET", "/cluster/config") => Ok(
            json!([{"name": "nodes"}, {"name": "join"}, {"name": "totem"}, {"name": "apiversion"}, {"name": "qdevice"}]),
        ),
        ("POST", "/cluster/config") => cluster_create(lab, cx, p),
        ("GET", "/cluster/config/join") => join_info(lab, cx, p),
        ("POST", "/cluster/config/join") => cluster_join(lab, cx, p),
        ("GET", "/cluster/config/nodes") => {
            let st = lab.state();
            let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
            let Some(c) = &n.cluster else {
                return Err(ApiErr::die("Error 2 while reading '/etc/pve/corosync.conf': node is not in a cluster"));
            };
            let dom = st.domains.get(&format!("cluster:{}/{c}", s.id));
            let members = dom.map(|d| d.members.clone()).unwrap_or_default();
            Ok(Value::Array(
                members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let addr = s.node(m).map(|x| x.address.clone()).unwrap_or_default();
                        json!({"node": m, "name": m, "nodeid": (i + 1).to_string(), "quorum_votes": "1", "ring0_addr": addr})
                    })
                    .collect(),
            ))
        }
        ("DELETE", "/cluster/config/nodes/{node}") => delnode(lab, cx, p),
        ("GET", "/cluster/status") => {
            let st = lab.state();
            let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
            let now = lab.now_ms();
            let mut out = Vec::new();
            match &n.cluster {
                None => out.push(json!({"type": "node", "name": n.name, "id": format!("node/{}", n.name), "ip": n.address, "local": 1, "online": 1, "nodeid": 0, "level": ""})),
                Some(c) => {
                    let dom = st.domains.get(&format!("cluster:{}/{c}", s.id));
                    let members = dom.map(|d| d.members.clone()).unwrap_or_default();
                    let online = members.iter().filter(|m| s.node(m).is_some_and(|x| x.is_up(now) && x.cluster.as_deref() == Some(c))).count();
                    out.push(json!({"type": "cluster", "name": c, "id": "cluster", "nodes": members.len(), "quorate": (online * 2 > members.len()) as i64, "version": dom.map(|d| d.config_version).unwrap_or(1)}));
                    for (i, m) in members.iter().enumerate() {
                        let x = s.node(m);
                        let up = x.is_some_and(|x| x.is_up(now) && x.cluster.as_deref() == Some(c));
                        out.push(json!({"type": "node", "name": m, "id": format!("node/{m}"), "ip": x.map(|x| x.address.clone()).unwrap_or_default(), "local": (m == &n.name) as i64, "online": up as i64, "nodeid": i + 1, "level": ""}));
                    }
                }
            }
            Ok(Value::Array(out))
        }
        (_, t) if t.starts_with("/nodes/{node}/ceph/") => ceph(lab, cx, method, template, p),
        (_, t) if t.starts_with("/cluster/backup") => config_collection(lab, cx, method, "backup", "id", p),
        (_, t) if t.starts_with("/storage") => config_collection(lab, cx, method, "storage", "storage", p),
        (_, t) if t.starts_with("/nodes/{node}/tasks") => tasks(lab, cx, method, template, p, Product::Pve),
        _ => Err(ApiErr::new(501, format!("Method '{method} {template}' not implemented"))),
    }
}

/// `pve-manager/VERSION/REPOID`, as `GET /nodes/{node}/status` reports it.
fn pveversion(lab: &Lab) -> String {
    let (version, _, repoid) = lab.profiles.pve.version();
    format!("pve-manager/{version}/{repoid}")
}

fn ticket(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let st = lab.state();
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    let dom = st.domains.get(&LabState::domain_key(s, n)).ok_or_else(|| ApiErr::die("no domain"))?;
    let mut user = p_str(p, "username").unwrap_or_default();
    if !user.contains('@') {
        user = format!("{user}@{}", p_str(p, "realm").unwrap_or_else(|| "pam".into()));
    }
    let password = p_str(p, "password").unwrap_or_default();
    let ok = user == "root@pam"
        && (password == s.root_password
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

fn tokens(lab: &Arc<Lab>, cx: &Cx, method: &str, p: &Map<String, Value>) -> ApiResult {
    let userid = p_str(p, "userid").unwrap_or_default();
    if userid != "root@pam" {
        return Err(ApiErr::die(format!("no such user ('{userid}')")));
    }
    let tokenid = p_str(p, "tokenid");
    let full = tokenid.as_ref().map(|t| format!("{userid}!{t}"));
    let info = |t: &Token| {
        let mut o = json!({"privsep": t.privsep as i64, "expire": t.expire});
        if let Some(c) = &t.comment {
            o["comment"] = json!(c);
        }
        o
    };
    mutate_for(lab, method, |st| {
        let dom = domain_mut(st, &cx.store, &cx.local)?;
        match (method, full) {
            ("GET", None) => Ok(Value::Array(
                dom.tokens
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("{userid}!")))
                    .map(|(k, t)| {
                        let mut o = info(t);
                        o["tokenid"] = json!(k.split('!').nth(1).unwrap_or(""));
                        o
                    })
                    .collect(),
            )),
            ("GET", Some(f)) => dom.tokens.get(&f).map(info).ok_or_else(|| {
                ApiErr::die(format!("no such token '{}' for user '{userid}'", tokenid.clone().unwrap_or_default()))
            }),
            ("POST", Some(f)) => {
                if dom.tokens.contains_key(&f) {
                    return Err(ApiErr::die("Token already exists.".to_string()));
                }
                let t = Token {
                    secret: random_secret(),
                    privsep: p_bool(p, "privsep").unwrap_or(true),
                    comment: p_str(p, "comment"),
                    expire: p_int(p, "expire").unwrap_or(0),
                    read_only: false,
                };
                let out = json!({"full-tokenid": f, "info": info(&t), "value": t.secret});
                dom.tokens.insert(f, t);
                Ok(out)
            }
            ("PUT", Some(f)) => {
                let t = dom.tokens.get_mut(&f).ok_or_else(|| ApiErr::die("no such token"))?;
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
            }
            ("DELETE", Some(f)) => {
                dom.tokens.remove(&f).ok_or_else(|| ApiErr::die("no such token"))?;
                Ok(Value::Null)
            }
            _ => Err(ApiErr::new(501, "not implemented")),
        }
    })
}

fn default_network(address: &str) -> std::collections::BTreeMap<String, Map<String, Value>> {
    let mut m = std::collections::BTreeMap::new();
    let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
    // PVE's list leaves out the loopback interface.
    m.insert("eno1".into(), obj(json!({"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual", "families": ["inet"], "active": 1, "exists": 1, "priority": 2})));
    m.insert("vmbr0".into(), obj(json!({"iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual", "families": ["inet"], "active": 1, "autostart": 1, "priority": 3, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0", "cidr": format!("{address}/8"), "address": address, "netmask": "8", "gateway": "127.0.0.1"})));
    m
}

pub fn fresh_network(address: &str) -> crate::state::Network {
    crate::state::Network { active: default_network(address), pending: Default::default() }
}

fn merged_network(n: &NodeState) -> std::collections::BTreeMap<String, Map<String, Value>> {
    let mut m = n.network.active.clone();
    for (k, v) in &n.network.pending {
        match v {
            Some(c) => {
                m.insert(k.clone(), c.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
    m
}

fn network(lab: &Arc<Lab>, cx: &Cx, method: &str, template: &str, p: &Map<String, Value>) -> ApiResult {
    let iface_cfg = |p: &Map<String, Value>, iface: &str| {
        let mut c = Map::new();
        for (k, v) in p {
            if !matches!(k.as_str(), "node" | "delete" | "digest") {
                c.insert(k.clone(), v.clone());
            }
        }
        c.insert("iface".into(), json!(iface));
        let method = if c.contains_key("cidr") || c.contains_key("address") { "static" } else { "manual" };
        c.entry("method").or_insert(json!(method));
        c.entry("families").or_insert(json!(["inet"]));
        if let (Some(Value::String(cidr)), false) = (c.get("cidr").cloned(), c.contains_key("address")) {
            if let Some((a, m)) = cidr.split_once('/') {
                c.insert("address".into(), json!(a));
                c.insert("netmask".into(), json!(m));
            }
        }
        c
    };
    match (method, template) {
        ("GET", "/nodes/{node}/network") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            let filter = p_str(p, "type");
            let merged = merged_network(n);
            Ok(Value::Array(
                merged
                    .values()
                    .filter(|c| match &filter {
                        None => true,
                        Some(f) if f == "any_bridge" || f == "any_local_bridge" => {
                            c.get("type").and_then(Value::as_str) == Some("bridge")
                        }
                        Some(f) => c.get("type").and_then(Value::as_str) == Some(f.as_str()),
                    })
                    .map(|c| Value::Object(c.clone()))
                    .collect(),
            ))
        }
        ("GET", "/nodes/{node}/network/{iface}") => {
            let st = lab.state();
            let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
            let iface = p_str(p, "iface").unwrap_or_default();
            merged_network(n)
                .get(&iface)
                .map(|c| Value::Object(c.clone()))
                .ok_or_else(|| ApiErr::die(format!("network interface '{iface}' does not exist")))
        }
        ("POST", "/nodes/{node}/network") => mutate(lab, |st| {
            let iface = p_str(p, "iface").unwrap_or_default();
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            if merged_network(n).contains_key(&iface) {
                return Err(ApiErr::die("interface already exists"));
            }
            n.network.pending.insert(iface.clone(), Some(iface_cfg(p, &iface)));
            Ok(Value::Null)
        }),
        ("PUT", "/nodes/{node}/network/{iface}") => mutate(lab, |st| {
            let iface = p_str(p, "iface").unwrap_or_default();
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            let Some(mut cur) = merged_network(n).get(&iface).cloned() else {
                return Err(ApiErr::die("interface does not exist"));
            };
            for k in delete_list(p) {
                cur.remove(&k);
            }
            for (k, v) in iface_cfg(p, &iface) {
                cur.insert(k, v);
            }
            n.network.pending.insert(iface, Some(cur));
            Ok(Value::Null)
        }),
        ("DELETE", "/nodes/{node}/network/{iface}") => mutate(lab, |st| {
            let iface = p_str(p, "iface").unwrap_or_default();
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            if !merged_network(n).contains_key(&iface) {
                return Err(ApiErr::die("interface does not exist"));
            }
            n.network.pending.insert(iface, None);
            Ok(Value::Null)
        }),
        ("DELETE", "/nodes/{node}/network") => mutate(lab, |st| {
            let n = store_mut(st, &cx.store)?.node_mut(&cx.node).ok_or_else(|| ApiErr::die("no node"))?;
            n.network.pending.clear();
            Ok(Value::Null)
        }),
        ("PUT", "/nodes/{node}/network") => {
            let (store, node) = (cx.store.clone(), cx.node.clone());
            let upid = lab.spawn_task(
                Product::Pve,
                &cx.store,
                &cx.node,
                "srvreload",
                "networking",
                &cx.caller.authid,
                cx.fail,
                move |lab| {
                    let mut st = lab.state();
                    let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                    let merged = merged_network(n);
                    n.network.active = merged;
                    n.network.pending.clear();
                    lab.save(&st);
                    Ok(vec!["ifreload -a".into()])
                },
            );
            Ok(json!(upid))
        }
        _ => Err(ApiErr::new(501, "not implemented")),
    }
}

fn cluster_create(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let name = p_str(p, "clustername").unwrap_or_default();
    {
        let st = lab.state();
        let (_, n) = node_ref(&st, &cx.store, &cx.local)?;
        if n.cluster.is_some() {
            return Err(ApiErr::die("cluster config '/etc/pve/corosync.conf' already exists"));
        }
    }
    let (store, node) = (cx.store.clone(), cx.local.clone());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.local,
        "clustercreate",
        &name.clone(),
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            let mut st = lab.state();
            let s = st.store(&store).ok_or("store vanished")?;
            let n = s.node(&node).ok_or("node vanished")?;
            if n.cluster.is_some() {
                return Err("cluster config '/etc/pve/corosync.conf' already exists".into());
            }
            let old = LabState::domain_key(s, n);
            let mut dom = st.domains.remove(&old).unwrap_or_default();
            dom.cluster_name = Some(name.clone());
            dom.members = vec![node.clone()];
            dom.config_version = 1;
            st.domains.insert(format!("cluster:{store}/{name}"), dom);
            if let Some(n) = st.store_mut(&store).and_then(|s| s.node_mut(&node)) {
                n.cluster = Some(name.clone());
            }
            lab.save(&st);
            Ok(vec![
                "Writing corosync key to /etc/corosync/authkey".into(),
                "Writing corosync config to /etc/pve/corosync.conf".into(),
                "Restart corosync and cluster filesystem".into(),
            ])
        },
    );
    Ok(json!(upid))
}

/// `pvecm delnode`: drop a member from the cluster configuration.
fn delnode(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let target = p_str(p, "node").unwrap_or_default();
    if target == cx.local {
        return Err(ApiErr::die("Cannot delete myself from cluster!"));
    }
    mutate(lab, |st| {
        let (_, me) = node_ref(st, &cx.store, &cx.local)?;
        let cluster = me.cluster.clone().ok_or_else(|| ApiErr::die("node is not in a cluster"))?;
        let key = format!("cluster:{}/{cluster}", cx.store);
        let dom = st.domains.get_mut(&key).ok_or_else(|| ApiErr::die("no cluster configuration"))?;
        if !dom.members.contains(&target) {
            return Err(ApiErr::die(format!("Node/IP: {target} is not a known host of the cluster.")));
        }
        dom.members.retain(|m| m != &target);
        dom.config_version += 1;
        // The removed node keeps running on its own, outside the cluster.
        let still_in = st
            .store(&cx.store)
            .and_then(|s| s.node(&target))
            .is_some_and(|n| n.cluster.as_deref() == Some(cluster.as_str()));
        if still_in {
            let fresh = st.store(&cx.store).map(fresh_domain);
            if let Some(n) = st.store_mut(&cx.store).and_then(|s| s.node_mut(&target)) {
                n.cluster = None;
            }
            if let Some(d) = fresh {
                st.domains.insert(format!("node:{}/{target}", cx.store), d);
            }
        }
        Ok(Value::Null)
    })
}

fn join_info(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let st = lab.state();
    let target = p_str(p, "node").unwrap_or_else(|| cx.local.clone());
    let (s, n) = node_ref(&st, &cx.store, &cx.local)?;
    let Some(c) = &n.cluster else {
        return Err(ApiErr::die("node is not in a cluster, no join info available!"));
    };
    let dom = st.domains.get(&format!("cluster:{}/{c}", s.id)).ok_or_else(|| ApiErr::die("no cluster domain"))?;
    let nodelist: Vec<Value> = dom
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| s.node(m).map(|x| (i, x)))
        .map(|(i, x)| json!({"name": x.name, "nodeid": i + 1, "pve_addr": x.address, "pve_fp": x.cert.fingerprint, "quorum_votes": 1, "ring0_addr": x.address}))
        .collect();
    Ok(json!({
        "config_digest": digest_of(&dom.members),
        "nodelist": nodelist,
        "preferred_node": target,
        "totem": {"cluster_name": c, "config_version": dom.config_version.to_string(), "version": "2", "ip_version": "ipv4-6", "secauth": "on", "link_mode": "passive", "interface": {"0": {"linknumber": "0"}}},
    }))
}

fn cluster_join(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let host = p_str(p, "hostname").unwrap_or_default();
    let fp = p_str(p, "fingerprint").unwrap_or_default();
    let password = p_str(p, "password").unwrap_or_default();
    let cluster = {
        let st = lab.state();
        let (s, me) = node_ref(&st, &cx.store, &cx.local)?;
        if me.cluster.is_some() {
            return Err(ApiErr::die("cluster config '/etc/pve/corosync.conf' already exists"));
        }
        let peer = s
            .nodes
            .iter()
            .find(|x| x.address == host || x.name == host)
            .filter(|x| x.is_up(lab.now_ms()))
            .ok_or_else(|| ApiErr::die(format!("500 Can't connect to {host}:8006 (Connection refused)")))?;
        if !peer.cert.fingerprint.eq_ignore_ascii_case(&fp) {
            return Err(ApiErr::die(format!("500 Can't connect to {host}:8006 (certificate fingerprint mismatch)")));
        }
        if password != s.root_password {
            return Err(ApiErr::die("500 authentication failure"));
        }
        let cluster = peer.cluster.clone().ok_or_else(|| {
            ApiErr::die("error fetching join information - node is not in a cluster, no join info available!")
        })?;
        let members =
            st.domains.get(&format!("cluster:{}/{cluster}", s.id)).map(|d| d.members.clone()).unwrap_or_default();
        if members.contains(&me.name) && !p_bool(p, "force").unwrap_or(false) {
            return Err(ApiErr::die(format!(
                "detected the following error(s):\n* this host's name '{}' is already used in the cluster - remove it with 'pvecm delnode' or use 'force'",
                me.name
            )));
        }
        cluster
    };
    let (store, node) = (cx.store.clone(), cx.local.clone());
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.local, "clusterjoin", "", &cx.caller.authid, cx.fail, move |lab| {
            let mut st = lab.state();
            let key = format!("cluster:{store}/{cluster}");
            if !st.domains.contains_key(&key) {
                return Err(format!("cluster '{cluster}' vanished"));
            }
            // Like PVE: the joining node's /etc/pve is replaced by the cluster's (its tokens vanish).
            st.domains.remove(&format!("node:{store}/{node}"));
            if let Some(d) = st.domains.get_mut(&key) {
                if !d.members.contains(&node) {
                    d.members.push(node.clone());
                }
                d.config_version += 1;
            }
            if let Some(n) = st.store_mut(&store).and_then(|s| s.node_mut(&node)) {
                n.cluster = Some(cluster.clone());
            }
            lab.save(&st);
            Ok(vec![
                "Request addition of this node".into(),
                "Join request OK, finishing setup locally".into(),
                "stopping pve-cluster service".into(),
                "merge authentication key".into(),
                "waiting for quorum...OK".into(),
                "successfully added node to cluster.".into(),
            ])
        });
    Ok(json!(upid))
}

fn pool_json(pool: &Pool) -> Value {
    let mut o = json!({
        "pool": pool.id, "pool_name": pool.name, "size": pool.size, "min_size": pool.min_size,
        "pg_num": pool.pg_num, "pg_num_final": pool.pg_num, "crush_rule": 0, "crush_rule_name": pool.crush_rule,
        "pg_autoscale_mode": pool.pg_autoscale_mode, "bytes_used": pool.bytes_used,
        "percent_used": pool.percent_used,
        "type": "replicated",
        "application_metadata": {pool.application.clone(): {}},
        "autoscale_status": {"pool_name": pool.name, "pg_autoscale_mode": pool.pg_autoscale_mode},
    });
    if let Some(m) = pool.pg_num_min {
        o["pg_num_min"] = json!(m);
    }
    if let Some(t) = pool.target_size {
        o["target_size"] = json!(t);
    }
    if let Some(r) = pool.target_size_ratio {
        o["target_size_ratio"] = json!(r);
    }
    o
}

/// Pull real Ceph's view into the model so drift made with the `ceph` CLI shows up.
pub fn refresh_pools_from_backend(lab: &Lab, store: &str) {
    let Some(b) = &lab.pools else { return };
    let Ok(real) = b.list() else { return };
    let mut st = lab.state();
    let prefix = pool_prefix(&st, store);
    let Some(s) = st.store_mut(store) else { return };
    let mut seen = std::collections::BTreeSet::new();
    for rp in real {
        let Some(name) = rp.name.strip_prefix(&prefix) else {
            continue;
        };
        if prefix.is_empty() && rp.name.starts_with("store-") && rp.name.contains('.') {
            continue;
        }
        if name == ".mgr" || name.starts_with('.') {
            continue;
        }
        seen.insert(name.to_string());
        let next_id = s.next_pool_id + 1;
        let p = s.pools.entry(name.to_string()).or_insert_with(|| Pool {
            id: if rp.id > 0 { rp.id } else { next_id },
            name: name.to_string(),
            size: rp.size,
            min_size: rp.min_size,
            pg_num: rp.pg_num,
            pg_num_min: None,
            crush_rule: "replicated_rule".into(),
            application: "rbd".into(),
            pg_autoscale_mode: "warn".into(),
            target_size: None,
            target_size_ratio: None,
            bytes_used: 0,
            percent_used: 0.0,
        });
        p.size = rp.size;
        p.min_size = rp.min_size;
        p.pg_num = rp.pg_num;
        p.bytes_used = rp.bytes_used;
        p.percent_used = rp.percent_used;
        if let Some(app) = rp.application {
            p.application = app;
        }
        if rp.id > 0 {
            p.id = rp.id;
        }
    }
    s.pools.retain(|k, _| seen.contains(k));
}

/// Real Ceph is shared by the lab's stores: store-001 uses plain pool names, others a prefix.
pub fn pool_prefix(st: &LabState, store: &str) -> String {
    match st.stores.iter().position(|s| s.id == store) {
        Some(0) | None => String::new(),
        Some(_) => format!("{store}."),
    }
}

fn ceph(lab: &Arc<Lab>, cx: &Cx, method: &str, template: &str, p: &Map<String, Value>) -> ApiResult {
    let node = cx.node.clone();
    let store = cx.store.clone();
    match (method, template) {
        ("POST", "/nodes/{node}/ceph/init") => mutate(lab, |st| {
            let d = domain_mut(st, &store, &node)?;
            d.ceph_initialized = true;
            d.ceph_network = p_str(p, "network");
            if d.ceph_fsid.is_none() {
                d.ceph_fsid = Some(crate::peers_util::random_uuid());
            }
            Ok(Value::Null)
        }),
        ("GET", "/nodes/{node}/ceph/status") => {
            let st = lab.state();
            check_ceph(&st, cx)?;
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let members = visible_nodes(&st, &store, &node);
            let nodes: Vec<&NodeState> = members.iter().filter_map(|m| s.node(m)).collect();
            let osds: usize = nodes.iter().map(|n| n.ceph.osds.len()).sum();
            let mons: Vec<Value> = nodes
                .iter()
                .filter(|n| n.ceph.mon)
                .map(|n| json!({"name": n.name, "addr": format!("{}:6789/0", n.address)}))
                .collect();
            let health = if mons.is_empty() {
                "HEALTH_WARN"
            } else if osds >= 3 {
                "HEALTH_OK"
            } else {
                "HEALTH_WARN"
            };
            Ok(json!({
                "fsid": domain(&st, &store, &node)?.ceph_fsid.clone()
                    .unwrap_or_else(|| format!("{}-0000-4000-8000-{}", &digest_of(&store)[..8], &digest_of(&node)[..12])),
                "health": {"status": health, "checks": {}},
                "monmap": {"mons": mons, "epoch": 1},
                "mgrmap": {"available": nodes.iter().any(|n| n.ceph.mgr), "num_standbys": nodes.iter().filter(|n| n.ceph.mgr).count().saturating_sub(1)},
                "osdmap": {"num_osds": osds, "num_up_osds": osds, "num_in_osds": osds},
                "pgmap": {"num_pools": s.pools.len(), "num_pgs": s.pools.values().map(|p| p.pg_num).sum::<i64>(), "bytes_used": 0, "bytes_total": osds as u64 * 1_000_204_886_016u64},
                "quorum_names": nodes.iter().filter(|n| n.ceph.mon).map(|n| n.name.clone()).collect::<Vec<_>>(),
            }))
        }
        ("GET", "/nodes/{node}/ceph/mon") | ("GET", "/nodes/{node}/ceph/mgr") => {
            let st = lab.state();
            check_ceph(&st, cx)?;
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let is_mon = template.ends_with("/mon");
            let mut out = Vec::new();
            let mut first_mgr = true;
            for (rank, m) in visible_nodes(&st, &store, &node).iter().enumerate() {
                let Some(n) = s.node(m) else { continue };
                if is_mon && n.ceph.mon {
                    out.push(json!({"name": n.name, "addr": format!("{}:6789/0", n.address), "rank": rank, "quorum": 1, "state": "running", "service": 1, "direxists": "1", "ceph_version": "ceph version 19.2.3 (c92aebb279828e9c3c1f5d24613efca272649e62) squid (stable)", "ceph_version_short": "19.2.3"}));
                } else if !is_mon && n.ceph.mgr {
                    out.push(json!({"name": n.name, "host": n.name, "addr": n.address, "state": if first_mgr { "active" } else { "standby" }}));
                    first_mgr = false;
                }
            }
            Ok(Value::Array(out))
        }
        ("POST", "/nodes/{node}/ceph/mon/{monid}")
        | ("DELETE", "/nodes/{node}/ceph/mon/{monid}")
        | ("POST", "/nodes/{node}/ceph/mgr/{id}")
        | ("DELETE", "/nodes/{node}/ceph/mgr/{id}") => {
            let is_mon = template.contains("/mon/");
            let create = method == "POST";
            let id = p_str(p, if is_mon { "monid" } else { "id" }).unwrap_or_else(|| node.clone());
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
                let (_, n) = node_ref(&st, &store, &node)?;
                let has = if is_mon { n.ceph.mon } else { n.ceph.mgr };
                let what = if is_mon { "monitor" } else { "manager" };
                if create && has {
                    return Err(ApiErr::die(format!("ceph {what} '{id}' already exists")));
                }
                if !create && !has {
                    return Err(ApiErr::die(format!("no such {what} id '{id}'")));
                }
            }
            let wtype = match (is_mon, create) {
                (true, true) => "cephcreatemon",
                (true, false) => "cephdestroymon",
                (false, true) => "cephcreatemgr",
                (false, false) => "cephdestroymgr",
            };
            let wid = format!("{}.{id}", if is_mon { "mon" } else { "mgr" });
            let upid = lab.spawn_task(Product::Pve, &store, &node, wtype, &wid.clone(), &cx.caller.authid, cx.fail, {
                let (store, node) = (store.clone(), node.clone());
                move |lab| {
                    let mut st = lab.state();
                    let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                    if is_mon {
                        n.ceph.mon = create;
                    } else {
                        n.ceph.mgr = create;
                    }
                    lab.save(&st);
                    Ok(vec![format!("{wtype} {wid}")])
                }
            });
            Ok(json!(upid))
        }
        ("GET", "/nodes/{node}/ceph/osd") => {
            let st = lab.state();
            check_ceph(&st, cx)?;
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let hosts: Vec<Value> = visible_nodes(&st, &store, &node)
                .iter()
                .filter_map(|m| s.node(m))
                .enumerate()
                .map(|(i, n)| {
                    let children: Vec<Value> = n.ceph.osds.iter().map(|o| json!({"id": o.id, "name": format!("osd.{}", o.id), "type": "osd", "status": "up", "in": 1, "host": n.name, "crush_weight": 0.9, "device_class": "ssd", "leaf": 1})).collect();
                    json!({"id": -2 - i as i64, "name": n.name, "type": "host", "children": children, "leaf": 0})
                })
                .collect();
            Ok(
                json!({"root": {"id": -1, "name": "default", "type": "root", "children": hosts, "leaf": 0}, "flags": ""}),
            )
        }
        ("POST", "/nodes/{node}/ceph/osd") => {
            let dev = p_str(p, "dev").unwrap_or_default();
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
                let (_, n) = node_ref(&st, &store, &node)?;
                if !DISKS.contains(&dev.as_str()) {
                    return Err(ApiErr::die(format!("unable to get device info for '{dev}'")));
                }
                if n.ceph.osds.iter().any(|o| o.dev == dev) {
                    return Err(ApiErr::die(format!("device '{dev}' is already in use")));
                }
            }
            let wid = dev.trim_start_matches("/dev/").to_string();
            let upid =
                lab.spawn_task(Product::Pve, &store, &node, "cephcreateosd", &wid, &cx.caller.authid, cx.fail, {
                    let (store, node) = (store.clone(), node.clone());
                    move |lab| {
                        let mut st = lab.state();
                        let s = st.store_mut(&store).ok_or("store vanished")?;
                        let id = s
                            .nodes
                            .iter()
                            .flat_map(|n| n.ceph.osds.iter().map(|o| o.id))
                            .max()
                            .map(|m| m + 1)
                            .unwrap_or(0);
                        let n = s.node_mut(&node).ok_or("node vanished")?;
                        n.ceph.osds.push(crate::state::Osd { id, dev: dev.clone() });
                        lab.save(&st);
                        Ok(vec![format!("create OSD on {dev} (bluestore)"), format!("osd.{id} created")])
                    }
                });
            Ok(json!(upid))
        }
        ("DELETE", "/nodes/{node}/ceph/osd/{osdid}") => {
            let id = p_int(p, "osdid").unwrap_or(-1);
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
                let (_, n) = node_ref(&st, &store, &node)?;
                if !n.ceph.osds.iter().any(|o| o.id == id) {
                    return Err(ApiErr::die(format!("osd.{id} is not on this node")));
                }
            }
            let upid = lab.spawn_task(
                Product::Pve,
                &store,
                &node,
                "cephdestroyosd",
                &id.to_string(),
                &cx.caller.authid,
                cx.fail,
                {
                    let (store, node) = (store.clone(), node.clone());
                    move |lab| {
                        let mut st = lab.state();
                        let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
                        n.ceph.osds.retain(|o| o.id != id);
                        lab.save(&st);
                        Ok(vec![format!("destroy OSD osd.{id}")])
                    }
                },
            );
            Ok(json!(upid))
        }
        ("GET", "/nodes/{node}/ceph/pool") => {
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
            }
            refresh_pools_from_backend(lab, &store);
            let st = lab.state();
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            Ok(Value::Array(s.pools.values().map(pool_json).collect()))
        }
        ("GET", "/nodes/{node}/ceph/pool/{name}") => {
            let st = lab.state();
            check_ceph(&st, cx)?;
            let name = p_str(p, "name").unwrap_or_default();
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            if !s.pools.contains_key(&name) {
                return Err(ApiErr::die(format!("pool '{name}' not found")));
            }
            Ok(json!([{"name": "status"}]))
        }
        ("GET", "/nodes/{node}/ceph/pool/{name}/status") => {
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
            }
            refresh_pools_from_backend(lab, &store);
            let st = lab.state();
            let name = p_str(p, "name").unwrap_or_default();
            let s = st.store(&store).ok_or_else(|| ApiErr::die("store vanished"))?;
            let pool = s.pools.get(&name).ok_or_else(|| ApiErr::die(format!("pool '{name}' not found")))?;
            let mut o = json!({
                "id": pool.id, "name": pool.name, "size": pool.size, "min_size": pool.min_size, "pg_num": pool.pg_num,
                "pgp_num": pool.pg_num, "crush_rule": pool.crush_rule, "pg_autoscale_mode": pool.pg_autoscale_mode,
                "application": pool.application, "application_list": [pool.application],
                "fast_read": 0, "hashpspool": 1, "nodeep-scrub": 0, "nodelete": 0, "nopgchange": 0, "noscrub": 0,
                "nosizechange": 0, "use_gmt_hitset": 1, "write_fadvise_dontneed": 0,
            });
            if p_bool(p, "verbose").unwrap_or(false) {
                o["statistics"] = json!({"bytes_used": pool.bytes_used, "max_avail": 1_000_000_000_000u64, "percent_used": pool.percent_used, "stored": pool.bytes_used});
            }
            if let Some(m) = pool.pg_num_min {
                o["pg_num_min"] = json!(m);
            }
            if let Some(r) = pool.target_size_ratio {
                o["target_size_ratio"] = json!(r);
            }
            if let Some(t) = pool.target_size {
                o["target_size"] = json!(t.to_string());
            }
            Ok(o)
        }
        ("POST", "/nodes/{node}/ceph/pool") => pool_create(lab, cx, p),
        ("PUT", "/nodes/{node}/ceph/pool/{name}") => {
            let name = p_str(p, "name").unwrap_or_default();
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
            }
            let mut changes: Vec<(String, String)> = Vec::new();
            for k in [
                "size",
                "min_size",
                "pg_num",
                "pg_num_min",
                "crush_rule",
                "application",
                "pg_autoscale_mode",
                "target_size",
                "target_size_ratio",
            ] {
                if let Some(v) = p_str(p, k) {
                    changes.push((k.to_string(), v));
                }
            }
            let upid = lab.spawn_task(
                Product::Pve,
                &store,
                &node,
                "cephsetpool",
                &name.clone(),
                &cx.caller.authid,
                cx.fail,
                {
                    let store = store.clone();
                    move |lab| {
                        let prefix = pool_prefix(&lab.state(), &store);
                        {
                            let st = lab.state();
                            let s = st.store(&store).ok_or("store vanished")?;
                            let Some(cur) = s.pools.get(&name) else {
                                return Err(format!("pool '{name}' does not exist"));
                            };
                            // Ceph's own consistency rule, as the mon reports it.
                            let mut after = cur.clone();
                            for (k, v) in &changes {
                                apply_pool_field(&mut after, k, v);
                            }
                            if after.min_size > after.size {
                                return Err(min_size_error(after.size));
                            }
                        }
                        let mut log = Vec::new();
                        for (k, v) in &changes {
                            if let Some(b) = &lab.pools {
                                let (ck, cv) = ceph_key(k, v);
                                if let Some(ck) = ck {
                                    b.set(&format!("{prefix}{name}"), ck, &cv)?;
                                }
                            }
                            log.push(format!("pool {name}: applying {k} = {v}"));
                        }
                        let mut st = lab.state();
                        let pool = st.store_mut(&store).and_then(|s| s.pools.get_mut(&name)).ok_or("pool vanished")?;
                        for (k, v) in &changes {
                            apply_pool_field(pool, k, v);
                        }
                        lab.save(&st);
                        Ok(log)
                    }
                },
            );
            Ok(json!(upid))
        }
        ("DELETE", "/nodes/{node}/ceph/pool/{name}") => {
            let name = p_str(p, "name").unwrap_or_default();
            {
                let st = lab.state();
                check_ceph(&st, cx)?;
            }
            let remove_storages = p_bool(p, "remove_storages").unwrap_or(false);
            let dkey = {
                let st = lab.state();
                dom_key(&st, &store, &node)?
            };
            let upid = lab.spawn_task(
                Product::Pve,
                &store,
                &node,
                "cephdestroypool",
                &name.clone(),
                &cx.caller.authid,
                cx.fail,
                {
                    let store = store.clone();
                    move |lab| {
                        let prefix = pool_prefix(&lab.state(), &store);
                        {
                            let st = lab.state();
                            let s = st.store(&store).ok_or("store vanished")?;
                            if !s.pools.contains_key(&name) {
                                return Err(format!("pool '{name}' does not exist"));
                            }
                            let used: Vec<String> = st
                                .domains
                                .get(&dkey)
                                .and_then(|d| d.collections.get("storage"))
                                .map(|c| {
                                    c.iter()
                                        .filter(|(_, v)| v.get("pool").and_then(Value::as_str) == Some(name.as_str()))
                                        .map(|(k, _)| k.clone())
                                        .collect()
                                })
                                .unwrap_or_default();
                            if !used.is_empty() && !remove_storages {
                                return Err(format!("pool '{name}' still in use by storages: {}", used.join(", ")));
                            }
                        }
                        if let Some(b) = &lab.pools {
                            b.remove(&format!("{prefix}{name}"))?;
                        }
                        let mut st = lab.state();
                        if let Some(s) = st.store_mut(&store) {
                            s.pools.remove(&name);
                        }
                        if remove_storages {
                            if let Some(c) = st.domains.get_mut(&dkey).and_then(|d| d.collections.get_mut("storage")) {
                                c.retain(|_, v| v.get("pool").and_then(Value::as_str) != Some(name.as_str()));
                            }
                        }
                        lab.save(&st);
                        Ok(vec![format!("pool {name}: removed")])
                    }
                },
            );
            Ok(json!(upid))
        }
        _ => Err(ApiErr::new(501, "not implemented")),
    }
}

fn min_size_error(size: i64) -> String {
    format!("mon_command failed - pool min_size must be between 1 and size, which is set to {size}")
}

fn ceph_key<'a>(k: &'a str, v: &str) -> (Option<&'a str>, String) {
    match k {
        "size" | "min_size" | "pg_num" | "pg_num_min" | "crush_rule" | "pg_autoscale_mode" | "target_size_ratio" => {
            (Some(k), v.to_string())
        }
        "target_size" => (Some("target_size_bytes"), v.to_string()),
        _ => (None, v.to_string()),
    }
}

pub fn apply_pool_field(pool: &mut Pool, k: &str, v: &str) {
    let int = |s: &str| s.parse::<i64>().ok();
    match k {
        "size" => pool.size = int(v).unwrap_or(pool.size),
        "min_size" => pool.min_size = int(v).unwrap_or(pool.min_size),
        "pg_num" => pool.pg_num = int(v).unwrap_or(pool.pg_num),
        "pg_num_min" => pool.pg_num_min = int(v),
        "crush_rule" => pool.crush_rule = v.to_string(),
        "application" => pool.application = v.to_string(),
        "pg_autoscale_mode" => pool.pg_autoscale_mode = v.to_string(),
        "target_size" => pool.target_size = parse_size(v),
        "target_size_ratio" => pool.target_size_ratio = v.parse().ok(),
        _ => {}
    }
}

fn parse_size(v: &str) -> Option<i64> {
    let v = v.trim();
    let (num, mult) = match v.chars().last() {
        Some('K') => (&v[..v.len() - 1], 1i64 << 10),
        Some('M') => (&v[..v.len() - 1], 1 << 20),
        Some('G') => (&v[..v.len() - 1], 1 << 30),
        Some('T') => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<f64>().ok().map(|f| (f * mult as f64) as i64)
}

fn pool_create(lab: &Arc<Lab>, cx: &Cx, p: &Map<String, Value>) -> ApiResult {
    let name = p_str(p, "name").unwrap_or_default();
    let store = cx.store.clone();
    let dkey = {
        let st = lab.state();
        check_ceph(&st, cx)?;
        dom_key(&st, &cx.store, &cx.node)?
    };
    let ec = p_str(p, "erasure-coding");
    let mut names = vec![(name.clone(), "replicated")];
    if ec.is_some() {
        names = vec![(format!("{name}-data"), "erasure"), (format!("{name}-metadata"), "replicated")];
    }
    let size = p_int(p, "size").unwrap_or(3);
    let min_size = p_int(p, "min_size").unwrap_or(2);
    let pg_num = p_int(p, "pg_num").unwrap_or(128);
    let application = p_str(p, "application").unwrap_or_else(|| "rbd".into());
    let mode = p_str(p, "pg_autoscale_mode").unwrap_or_else(|| "warn".into());
    let crush = p_str(p, "crush_rule").unwrap_or_else(|| "replicated_rule".into());
    let add_storages = p_bool(p, "add_storages").unwrap_or(ec.is_some());
    let pg_num_min = p_int(p, "pg_num_min");
    let target_size = p_str(p, "target_size").and_then(|v| parse_size(&v));
    let target_ratio = p_str(p, "target_size_ratio").and_then(|v| v.parse().ok());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.node,
        "cephcreatepool",
        &name.clone(),
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            if min_size > size {
                return Err(min_size_error(size));
            }
            let prefix = pool_prefix(&lab.state(), &store);
            let mut log = Vec::new();
            for (pname, _kind) in &names {
                if let Some(b) = &lab.pools {
                    b.create(&format!("{prefix}{pname}"), pg_num, size, min_size, &application)?;
                    if mode != "warn" {
                        b.set(&format!("{prefix}{pname}"), "pg_autoscale_mode", &mode)?;
                    }
                }
                log.push(format!("pool {pname}: applying size = {size}"));
                log.push(format!("pool {pname}: applying min_size = {min_size}"));
                log.push(format!("pool {pname}: applying application = {application}"));
                log.push(format!("pool {pname}: applying pg_num = {pg_num}"));
            }
            let mut st = lab.state();
            let s = st.store_mut(&store).ok_or("store vanished")?;
            for (pname, _) in &names {
                let id = match s.pools.get(pname) {
                    Some(p) => p.id,
                    None => {
                        s.next_pool_id += 1;
                        s.next_pool_id
                    }
                };
                s.pools.insert(
                    pname.clone(),
                    Pool {
                        id,
                        name: pname.clone(),
                        size,
                        min_size,
                        pg_num,
                        pg_num_min,
                        crush_rule: crush.clone(),
                        application: application.clone(),
                        pg_autoscale_mode: mode.clone(),
                        target_size,
                        target_size_ratio: target_ratio,
                        bytes_used: 0,
                        percent_used: 0.0,
                    },
                );
            }
            if add_storages {
                let sto = st.domains.get_mut(&dkey).map(|d| d.collections.entry("storage".into()).or_default());
                if let Some(c) = sto {
                    let mut cfg = Map::new();
                    cfg.insert("type".into(), json!("rbd"));
                    cfg.insert("pool".into(), json!(names.last().map(|n| n.0.clone()).unwrap_or_default()));
                    cfg.insert("content".into(), json!("rootdir,images"));
                    cfg.insert("krbd".into(), json!(0));
                    c.insert(name.clone(), cfg);
                }
            }
            lab.save(&st);
            Ok(log)
        },
    );
    Ok(json!(upid))
}

/// Backup jobs (/etc/pve/jobs.cfg) and storages (/etc/pve/storage.cfg): config stored as
/// given, in the calling node's config domain.
fn config_collection(
    lab: &Arc<Lab>,
    cx: &Cx,
    method: &str,
    coll: &str,
    key: &str,
    p: &Map<String, Value>,
) -> ApiResult {
    let id = p_str(p, key);
    let what = if coll == "backup" { "Job" } else { "storage ID" };
    if method == "POST" && coll == "storage" {
        check_pbs_storage(lab, p)?;
    }
    mutate_for(lab, method, |st| {
        let dom = domain_mut(st, &cx.store, &cx.local)?;
        let c = dom.collections.entry(coll.to_string()).or_default();
        let public = |id: &str, cfg: &Map<String, Value>| {
            let mut o = cfg.clone();
            o.remove("password");
            o.insert(key.to_string(), json!(id));
            if coll == "backup" {
                o.insert("type".into(), json!("vzdump"));
            } else {
                o.insert("digest".into(), json!(digest_of(cfg)));
            }
            Value::Object(o)
        };
        match (method, id) {
            ("GET", None) => {
                let filter = p_str(p, "type");
                Ok(Value::Array(
                    c.iter()
                        .filter(|(_, cfg)| {
                            filter.as_ref().is_none_or(|f| cfg.get("type").and_then(Value::as_str) == Some(f.as_str()))
                        })
                        .map(|(k, cfg)| public(k, cfg))
                        .collect(),
                ))
            }
            ("GET", Some(id)) => c.get(&id).map(|cfg| public(&id, cfg)).ok_or_else(|| {
                ApiErr::die(if coll == "backup" {
                    format!("Job '{id}' does not exist")
                } else {
                    format!("storage '{id}' does not exist")
                })
            }),
            ("POST", id) => {
                let id = id.unwrap_or_else(|| format!("backup-{}", random_hex(12)));
                if c.contains_key(&id) {
                    return Err(ApiErr::die(if coll == "backup" {
                        format!("Job '{id}' already exists")
                    } else {
                        format!("storage ID '{id}' already defined")
                    }));
                }
                let mut cfg = Map::new();
                for (k, v) in p {
                    if k != key {
                        cfg.insert(k.clone(), v.clone());
                    }
                }
                if coll == "backup" {
                    if !cfg.contains_key("vmid") && !cfg.contains_key("pool") && !p_bool(p, "all").unwrap_or(false) {
                        return Err(ApiErr::die("you need to specify either 'vmid', 'pool' or 'all'"));
                    }
                    cfg.entry("enabled").or_insert(json!(1));
                    if !cfg.contains_key("schedule") {
                        cfg.insert("schedule".into(), json!("00:00"));
                    }
                }
                let out = if coll == "storage" {
                    json!({"storage": id, "type": cfg.get("type").cloned().unwrap_or(json!("dir"))})
                } else {
                    Value::Null
                };
                c.insert(id, cfg);
                Ok(out)
            }
            ("PUT", Some(id)) => {
                let cfg = c.get_mut(&id).ok_or_else(|| {
                    ApiErr::die(if coll == "backup" {
                        format!("Job '{id}' does not exist")
                    } else {
                        format!("storage '{id}' does not exist")
                    })
                })?;
                if let Some(d) = p_str(p, "digest") {
                    if d != digest_of(&*cfg) {
                        return Err(ApiErr::die(
                            "detected modified configuration - file changed by other user? Try again.",
                        ));
                    }
                }
                for k in delete_list(p) {
                    cfg.remove(&k);
                }
                for (k, v) in p {
                    if k != key && k != "delete" && k != "digest" {
                        cfg.insert(k.clone(), v.clone());
                    }
                }
                if coll == "storage" {
                    Ok(json!({"storage": id, "type": cfg.get("type").cloned().unwrap_or(json!("dir"))}))
                } else {
                    Ok(Value::Null)
                }
            }
            ("DELETE", Some(id)) => {
                c.remove(&id).ok_or_else(|| {
                    ApiErr::die(if coll == "backup" {
                        format!("job '{id}' not found")
                    } else {
                        format!("storage '{id}' does not exist")
                    })
                })?;
                Ok(Value::Null)
            }
            _ => Err(ApiErr::new(501, format!("{what}: not implemented"))),
        }
    })
}

/// Like PVE's PBS storage plugin: adding a `pbs` storage really talks to the PBS.
fn check_pbs_storage(lab: &Lab, p: &Map<String, Value>) -> Result<(), ApiErr> {
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

pub(crate) fn tasks(
    lab: &Arc<Lab>,
    cx_node: &impl TaskScope,
    method: &str,
    template: &str,
    p: &Map<String, Value>,
    product: Product,
) -> ApiResult {
    let upid = p_str(p, "upid");
    let tasks = lock(&lab.tasks);
    let status_json = |t: &crate::lab::Task| {
        let mut o = json!({
            "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
            "type": t.wtype, "id": t.id, "user": t.user.split('!').next().unwrap_or(&t.user),
            "status": if t.exitstatus.is_some() { "stopped" } else { "running" },
        });
        if product == Product::Pbs {
            if let Some(m) = o.as_object_mut() {
                m.remove("id");
                m.insert("id".into(), json!(t.id));
            }
            if let Some((_, tok)) = t.user.split_once('!') {
                o["tokenid"] = json!(tok);
            }
        } else if t.user.contains('!') {
            o["tokenid"] = json!(t.user.split('!').nth(1));
        }
        if let Some(e) = &t.exitstatus {
            o["exitstatus"] = json!(e);
        }
        // PBS reports `endtime` in the task status from 4.2.1 on (proxmox-backup 2683bca43),
        // later than every PBS profile of the lab.
        o
    };
    let find = |u: &str| -> Result<&crate::lab::Task, ApiErr> {
        if !u.starts_with("UPID:") {
            return Err(ApiErr::die(format!("unable to parse worker upid '{u}'")));
        }
        tasks.get(u).filter(|t| t.product == product && cx_node.owns(t)).ok_or_else(|| ApiErr::die("no such task"))
    };
    match (method, template, upid) {
        ("GET", "/nodes/{node}/tasks", _) => {
            let limit = p_int(p, "limit").unwrap_or(50).max(0) as usize;
            let start = p_int(p, "start").unwrap_or(0).max(0) as usize;
            let typefilter = p_str(p, "typefilter");
            let only_running = p_str(p, "source").as_deref() == Some("active") || p_bool(p, "running").unwrap_or(false);
            let errors_only = p_bool(p, "errors").unwrap_or(false);
            let mut list: Vec<&crate::lab::Task> = tasks
                .values()
                .filter(|t| t.product == product && cx_node.owns(t))
                .filter(|t| typefilter.as_ref().is_none_or(|f| &t.wtype == f))
                .filter(|t| !only_running || t.exitstatus.is_none())
                .filter(|t| !errors_only || t.exitstatus.as_deref().is_some_and(|e| e != "OK"))
                .collect();
            list.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
            let out: Vec<Value> = list
                .into_iter()
                .skip(start)
                .take(limit)
                .map(|t| {
                    let mut o = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime, "user": t.user.split('!').next().unwrap_or(&t.user)});
                    if product == Product::Pve {
                        o["type"] = json!(t.wtype);
                        o["id"] = json!(t.id);
                    } else {
                        o["worker_type"] = json!(t.wtype);
                        o["worker_id"] = json!(t.id);
                    }
                    if let Some(e) = &t.exitstatus {
                        o["status"] = json!(e);
                    }
                    if let Some(e) = t.endtime {
                        o["endtime"] = json!(e);
                    }
                    o
                })
                .collect();
            Ok(Value::Array(out))
        }
        ("GET", "/nodes/{node}/tasks/{upid}", Some(u)) => {
            find(&u)?;
            Ok(if product == Product::Pve { json!([{"name": "log"}, {"name": "status"}]) } else { Value::Null })
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status", Some(u)) => Ok(status_json(find(&u)?)),
        ("GET", "/nodes/{node}/tasks/{upid}/log", Some(u)) => {
            let t = find(&u)?;
            let start = p_int(p, "start").unwrap_or(0).max(0) as usize;
            let limit = p_int(p, "limit").unwrap_or(50).max(0) as usize;
            Ok(Value::Array(
                t.log.iter().enumerate().skip(start).take(limit).map(|(i, l)| json!({"n": i + 1, "t": l})).collect(),
            ))
        }
        ("DELETE", "/nodes/{node}/tasks/{upid}", Some(u)) => {
            find(&u)?;
            drop(tasks);
            let mut tasks = lock(&lab.tasks);
            if let Some(t) = tasks.get_mut(&u) {
                if t.exitstatus.is_none() {
                    t.exitstatus = Some("interrupted by signal".into());
                    t.endtime = Some(now_s());
                    t.log.push("TASK ERROR: interrupted by signal".into());
                }
            }
            Ok(Value::Null)
        }
        _ => Err(ApiErr::new(501, "not implemented")),
    }
}

/// Which tasks a `/nodes/{node}/tasks` request may see.
pub(crate) trait TaskScope {
    fn owns(&self, t: &crate::lab::Task) -> bool;
}

impl TaskScope for Cx {
    fn owns(&self, t: &crate::lab::Task) -> bool {
        t.store == self.store && t.node == self.node
    }
}

/// A freshly installed node's config domain: the store's API token, plus a read-only one.
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
