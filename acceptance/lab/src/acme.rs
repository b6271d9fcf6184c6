//! ACME on the emulated PVE nodes: the node config (`acme`, `acmedomain0..5` in
//! `/etc/pve/nodes/{node}/config`), accounts and plugins (`/etc/pve/priv/acme/…`, shared by a
//! cluster like the rest of `/etc/pve`), and certificate orders answered by the lab's own
//! "ACME CA" (a second CA in the lab state, published in lab.json as `acme`).
//!
//! What PVE checks before it orders, the lab checks the same way (domain list present, account
//! file exists, every domain's plugin exists, a custom certificate needs `force`). The order
//! itself is a task (`acmenewcert`) with PVE's log lines; DNS validation always succeeds (there
//! is no DNS here) unless the plugin is disabled. The issued certificate becomes the node's
//! `pveproxy-ssl.pem`: the node presents it from the next TLS handshake, so its fingerprint
//! changes, and lab.json is rewritten with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::{delete_list, digest_of, edit_entry, p_bool, p_str, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::pki;
use crate::pve::Cx;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::{now_s, LabState};

/// The lab's ACME directory: the only one that "answers" (the lab has no internet, so a real
/// CA's directory fails the way an offline PVE fails).
pub const DIRECTORY: &str = "https://acme.edge-lab.test/directory";
pub const TOS: &str = "https://acme.edge-lab.test/terms-of-service.pdf";
const CA_NAME: &str = "edge-lab ACME CA";
/// Validity of issued certificates, as Let's Encrypt's.
const CERT_DAYS: u64 = 90;
const ACCOUNTS: &str = "acme_account";
const PLUGINS: &str = "acme_plugin";

// --- node config ---------------------------------------------------------------------------

/// Keys `PUT /nodes/{node}/config` stores (everything but the control parameters).
fn config_keys(p: &Params) -> impl Iterator<Item = (&String, &Value)> {
    p.iter().filter(|(k, _)| !matches!(k.as_str(), "node" | "delete" | "digest"))
}

pub(crate) fn node_config(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let n = st.store(&cx.store).and_then(|s| s.node(&cx.node)).ok_or_else(|| ApiErr::die("node vanished"))?;
    let mut out = Map::new();
    let only = p_str(p, "property").filter(|x| x != "all");
    for (k, v) in &n.config {
        if only.as_ref().is_none_or(|o| o == k) {
            out.insert(k.clone(), json!(v));
        }
    }
    out.insert("digest".into(), json!(digest_of(&n.config)));
    Ok(Value::Object(out))
}

pub(crate) fn set_node_config(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let mut st = lab.state();
    let n = st.store_mut(&cx.store).and_then(|s| s.node_mut(&cx.node)).ok_or_else(|| ApiErr::die("node vanished"))?;
    if let Some(d) = p_str(p, "digest") {
        if d != digest_of(&n.config) {
            return Err(ApiErr::die("detected modified configuration - file changed by other user? Try again."));
        }
    }
    let deleted = delete_list(p);
    for (k, _) in config_keys(p) {
        if deleted.contains(k) {
            return Err(ApiErr::param(k, format!("cannot set and delete '{k}' at the same time")));
        }
    }
    for k in &deleted {
        n.config.remove(k);
    }
    for (k, v) in config_keys(p) {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        n.config.insert(k.clone(), v);
    }
    lab.save(&st);
    Ok(Value::Null)
}

/// `acme: account=…,domains=a;b` and `acmedomainN: [domain=]x,plugin=…,alias=…` → the
/// account name and (domain, plugin) pairs, like PVE::NodeConfig::get_acme_conf.
pub fn acme_conf(config: &BTreeMap<String, String>) -> (String, Vec<(String, String)>) {
    let mut account = "default".to_string();
    let mut domains: Vec<(String, String)> = Vec::new();
    if let Some(acme) = config.get("acme") {
        for part in acme.split(',') {
            match part.split_once('=') {
                Some(("account", a)) => account = a.to_string(),
                Some(("domains", d)) => {
                    for dom in d.split(';').filter(|x| !x.is_empty()) {
                        domains.push((dom.to_string(), "standalone".into()));
                    }
                }
                _ => {}
            }
        }
    }
    for i in 0..6 {
        let Some(entry) = config.get(&format!("acmedomain{i}")) else { continue };
        let (mut domain, mut plugin) = (String::new(), "standalone".to_string());
        for part in entry.split(',') {
            match part.split_once('=') {
                Some(("domain", d)) => domain = d.to_string(),
                Some(("plugin", pl)) => plugin = pl.to_string(),
                Some(_) => {}
                None => domain = part.to_string(),
            }
        }
        if !domain.is_empty() {
            domains.push((domain, plugin));
        }
    }
    (account, domains)
}

// --- accounts and plugins (cluster-wide, in the node's config domain) ------------------------

fn no_account(name: &str) -> ApiErr {
    ApiErr::die(format!("ACME account config file '{name}' does not exist."))
}

fn directory_of(p: &Params) -> Result<String, ApiErr> {
    let dir = p_str(p, "directory").unwrap_or_else(|| "https://acme-v02.api.letsencrypt.org/directory".into());
    if dir != DIRECTORY {
        let host = dir.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or(&dir).to_string();
        return Err(ApiErr::die(format!(
            "Can't connect to {host}:443 (Name or service not known) - the edge lab is offline; its ACME directory is {DIRECTORY}"
        )));
    }
    Ok(dir)
}

pub(crate) fn directories(_: &Arc<Lab>, _: &Cx, _: &Params) -> ApiResult {
    Ok(json!([{"name": "edge-lab ACME", "url": DIRECTORY}]))
}

pub(crate) fn tos(_: &Arc<Lab>, _: &Cx, p: &Params) -> ApiResult {
    directory_of(p).map(|_| json!(TOS))
}

type Coll = BTreeMap<String, Map<String, Value>>;

/// Runs `f` on a collection of the config domain of `local`, the node whose listener got the
/// request.
fn with_collection(lab: &Lab, store: &str, local: &str, coll: &str, f: impl FnOnce(&Coll) -> ApiResult) -> ApiResult {
    let st = lab.state();
    let (s, n) =
        st.store(store).and_then(|s| s.node(local).map(|n| (s, n))).ok_or_else(|| ApiErr::die("node vanished"))?;
    let empty = Coll::new();
    let c = st.domains.get(&LabState::domain_key(s, n)).and_then(|d| d.collections.get(coll)).unwrap_or(&empty);
    f(c)
}

/// [`with_collection`] for a change: saves the state if `f` succeeded.
fn mutate_collection(
    lab: &Lab,
    store: &str,
    local: &str,
    coll: &str,
    f: impl FnOnce(&mut Coll) -> ApiResult,
) -> ApiResult {
    let mut st = lab.state();
    let key = {
        let (s, n) =
            st.store(store).and_then(|s| s.node(local).map(|n| (s, n))).ok_or_else(|| ApiErr::die("node vanished"))?;
        LabState::domain_key(s, n)
    };
    let dom = st.domains.get_mut(&key).ok_or_else(|| ApiErr::die("configuration domain missing"))?;
    let r = f(dom.collections.entry(coll.to_string()).or_default())?;
    lab.save(&st);
    Ok(r)
}

pub(crate) fn accounts(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    with_collection(lab, &cx.store, &cx.local, ACCOUNTS, |c| {
        Ok(Value::Array(c.keys().map(|k| json!({"name": k})).collect()))
    })
}

pub(crate) fn account(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let name = p_str(p, "name").unwrap_or_else(|| "default".into());
    with_collection(lab, &cx.store, &cx.local, ACCOUNTS, |c| {
        c.get(&name).map(|a| Value::Object(a.clone())).ok_or_else(|| no_account(&name))
    })
}

/// Registers an account with the lab's CA, in an `acmeregister` task.
pub(crate) fn account_create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let name = p_str(p, "name").unwrap_or_else(|| "default".into());
    let contact = p_str(p, "contact").unwrap_or_default();
    let directory = directory_of(p)?;
    if p_str(p, "tos_url").is_none() {
        // PVE passes tos_url to the CA as agreement; a CA with terms refuses without it.
        return Err(ApiErr::die(format!("ACME CA requires agreeing to its Terms of Service: set tos_url to {TOS}")));
    }
    with_collection(lab, &cx.store, &cx.local, ACCOUNTS, |c| {
        if c.contains_key(&name) {
            return Err(ApiErr::die(format!("ACME account config file '{name}' already exists.")));
        }
        Ok(Value::Null)
    })?;
    let (store, local) = (cx.store.clone(), cx.local.clone());
    let upid = lab.spawn_task(Product::Pve, &cx.store, &cx.local, "acmeregister", &name, &cx.caller.authid, cx.fail, {
        let name = name.clone();
        move |lab| {
            let contacts: Vec<String> =
                contact.split([',', ';', ' ']).filter(|x| !x.is_empty()).map(|m| format!("mailto:{m}")).collect();
            let id = crate::api::random_hex(8);
            let mut acct = Map::new();
            acct.insert(
                "account".into(),
                json!({"status": "valid", "contact": contacts, "createdAt": now_s(), "termsOfServiceAgreed": true}),
            );
            acct.insert("directory".into(), json!(directory));
            acct.insert("location".into(), json!(format!("https://acme.edge-lab.test/acme/acct/{id}")));
            acct.insert("tos".into(), json!(TOS));
            mutate_collection(lab, &store, &local, ACCOUNTS, |c| {
                if c.contains_key(&name) {
                    return Err(ApiErr::die(format!("ACME account config file '{name}' already exists.")));
                }
                c.insert(name.clone(), acct);
                Ok(Value::Null)
            })
            .map_err(|e| e.msg)?;
            Ok(vec![
                "Generating ACME account key..".into(),
                "Registering new ACME account..".into(),
                format!("Registration successful, account URL: 'https://acme.edge-lab.test/acme/acct/{id}'"),
            ])
        }
    });
    Ok(json!(upid))
}

/// `standalone` always exists in PVE (`$plugins->{ids}->{standalone} //= {type => 'standalone'}`).
fn plugins_with_standalone(c: &Coll) -> BTreeMap<String, Map<String, Value>> {
    let mut all = c.clone();
    all.entry("standalone".into()).or_insert_with(|| {
        let mut m = Map::new();
        m.insert("type".into(), json!("standalone"));
        m
    });
    all
}

fn plugin_public(id: &str, cfg: &Map<String, Value>) -> Value {
    let mut o = cfg.clone();
    o.insert("plugin".into(), json!(id));
    o.insert("digest".into(), json!(digest_of(cfg)));
    Value::Object(o)
}

pub(crate) fn plugins(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let filter = p_str(p, "type");
    with_collection(lab, &cx.store, &cx.local, PLUGINS, |c| {
        Ok(Value::Array(
            plugins_with_standalone(c)
                .into_iter()
                .filter(|(_, cfg)| filter.as_deref().is_none_or(|f| cfg["type"] == f))
                .map(|(id, cfg)| plugin_public(&id, &cfg))
                .collect(),
        ))
    })
}

pub(crate) fn plugin(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = p_str(p, "id").unwrap_or_default();
    with_collection(lab, &cx.store, &cx.local, PLUGINS, |c| {
        plugins_with_standalone(c)
            .remove(&id)
            .map(|cfg| plugin_public(&id, &cfg))
            .ok_or_else(|| ApiErr::die(format!("ACME plugin '{id}' not defined")))
    })
}

pub(crate) fn plugin_create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = p_str(p, "id").unwrap_or_default();
    let kind = p_str(p, "type").unwrap_or_default();
    if kind == "dns" && p_str(p, "api").is_none() {
        return Err(ApiErr::param("api", "DNS plugins need an API plugin name"));
    }
    mutate_collection(lab, &cx.store, &cx.local, PLUGINS, |c| {
        if c.contains_key(&id) || id == "standalone" {
            return Err(ApiErr::die(format!("ACME plugin ID '{id}' already defined")));
        }
        let cfg: Map<String, Value> =
            p.iter().filter(|(k, _)| *k != "id").map(|(k, v)| (k.clone(), v.clone())).collect();
        c.insert(id.clone(), cfg);
        Ok(Value::Null)
    })
}

pub(crate) fn plugin_update(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = p_str(p, "id").unwrap_or_default();
    mutate_collection(lab, &cx.store, &cx.local, PLUGINS, |c| {
        let cfg = c.get_mut(&id).ok_or_else(|| ApiErr::die(format!("ACME plugin '{id}' not defined")))?;
        edit_entry(cfg, p, "id")?;
        Ok(Value::Null)
    })
}

pub(crate) fn plugin_delete(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let id = p_str(p, "id").unwrap_or_default();
    mutate_collection(lab, &cx.store, &cx.local, PLUGINS, |c| {
        c.remove(&id);
        Ok(Value::Null)
    })
}

// --- certificates --------------------------------------------------------------------------

/// The lab's ACME CA, created on first use and kept in the state.
fn acme_ca(st: &mut LabState) -> Result<pki::Ca, String> {
    if let Some(ca) = &st.acme_ca {
        return Ok(ca.clone());
    }
    let ca = pki::new_named_ca(CA_NAME).map_err(|e| e.to_string())?;
    st.acme_ca = Some(ca.clone());
    Ok(ca)
}

/// Creates the lab's ACME CA if the state has none yet (labs from before ACME); true if it did.
pub fn ensure_ca(st: &mut LabState) -> Result<bool, String> {
    let had = st.acme_ca.is_some();
    acme_ca(st)?;
    Ok(!had)
}

/// Orders a certificate for the node's ACME domains, in an `acmenewcert` task.
pub(crate) fn order(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let force = p_bool(p, "force").unwrap_or(false);
    let (account, domains, plugins) = {
        let st = lab.state();
        let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
        let n = s.node(&cx.node).ok_or_else(|| ApiErr::die("node vanished"))?;
        let (account, domains) = acme_conf(&n.config);
        if domains.is_empty() {
            return Err(ApiErr::new(400, "ACME domain list in node configuration is missing!"));
        }
        if n.base_cert.is_some() && !force {
            return Err(ApiErr::param("force", "Custom certificate exists but 'force' is not set."));
        }
        let dom = st.domains.get(&LabState::domain_key(s, n));
        let accounts = dom.and_then(|d| d.collections.get(ACCOUNTS));
        if !accounts.is_some_and(|a| a.contains_key(&account)) {
            return Err(no_account(&account));
        }
        let plugins = plugins_with_standalone(dom.and_then(|d| d.collections.get(PLUGINS)).unwrap_or(&Coll::new()));
        for (d, pl) in &domains {
            if !plugins.contains_key(pl) {
                return Err(ApiErr::die(format!("plugin '{pl}' for domain '{d}' not found!")));
            }
        }
        (account, domains, plugins)
    };
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.node, "acmenewcert", "", &cx.caller.authid, cx.fail, move |lab| {
            let mut log = vec![
                "Loading ACME account details".to_string(),
                format!("Placing ACME order (account '{account}')"),
                format!("Order URL: https://acme.edge-lab.test/acme/order/{}", crate::api::random_hex(8)),
            ];
            for (d, pl) in &domains {
                let cfg = &plugins[pl];
                log.push(format!("Getting authorization details from 'https://acme.edge-lab.test/acme/authz/{d}'"));
                log.push(format!("The validation for {d} is pending!"));
                if crate::schema::truthy(cfg.get("disable").unwrap_or(&Value::Null)) {
                    return Err(format!("plugin '{pl}' is disabled: validation for {d} failed"));
                }
                let kind = cfg.get("type").and_then(Value::as_str).unwrap_or("standalone");
                let api = cfg.get("api").and_then(Value::as_str).unwrap_or("");
                log.push(format!("Setting up validation ({kind} plugin '{pl}' {api})"));
                log.push("Triggering validation".into());
                log.push(format!("Status is 'valid', domain '{d}' OK!"));
            }
            log.push("All domains validated!".into());
            log.push("Creating CSR".into());
            log.push("Checking order status".into());
            log.push("Order is ready, finalizing order".into());
            log.push("valid!".into());
            log.push("Downloading certificate".into());
            let mut st = lab.state();
            let ca = acme_ca(&mut st)?;
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            let ip: Option<IpAddr> = n.address.parse().ok();
            let names: Vec<String> = domains.iter().map(|(d, _)| d.clone()).collect();
            let cert = pki::issue_for(&ca, &names[0], &names, ip, Some(CERT_DAYS)).map_err(|e| e.to_string())?;
            log.push("Setting pveproxy certificate and key".into());
            let fp = cert.fingerprint.clone();
            if n.base_cert.is_none() {
                n.base_cert = Some(n.cert.clone());
            }
            n.cert = cert;
            lab.save(&st);
            drop(st);
            if let Err(e) = crate::serve::refresh_lab_json(lab) {
                tracing::warn!(error = %e, "rewriting lab.json after an ACME order");
            }
            log.push(format!("Restarting pveproxy (new certificate fingerprint {fp})"));
            Ok(log)
        });
    Ok(json!(upid))
}

fn info_of(filename: &str, e: &pki::CertEntry) -> Value {
    let mut o = json!({"filename": filename, "fingerprint": e.fingerprint, "pem": e.cert_pem,
                       "public-key-type": "id-ecPublicKey", "public-key-bits": 256});
    if let Some(i) = &e.info {
        o["subject"] = json!(i.subject);
        o["issuer"] = json!(i.issuer);
        o["san"] = json!(i.san);
        o["notbefore"] = json!(i.notbefore);
        o["notafter"] = json!(i.notafter);
    }
    o
}

pub(crate) fn cert_info(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    let st = lab.state();
    let s = st.store(&cx.store).ok_or_else(|| ApiErr::die("store vanished"))?;
    let n = s.node(&cx.node).ok_or_else(|| ApiErr::die("node vanished"))?;
    // pve-root-ca.pem is the CA of the /etc/pve the node is in (its own, or its cluster's).
    let ca = st.domains.get(&LabState::domain_key(s, n)).and_then(|d| d.ca.as_ref()).unwrap_or(&st.ca);
    let mut out = vec![info_of("pve-root-ca.pem", &ca.cert)];
    match &n.base_cert {
        // An ACME (or custom) certificate is pveproxy-ssl.pem; pve-ssl.pem stays.
        Some(base) => {
            out.push(info_of("pve-ssl.pem", base));
            out.push(info_of("pveproxy-ssl.pem", &n.cert));
        }
        None => out.push(info_of("pve-ssl.pem", &n.cert)),
    }
    Ok(Value::Array(out))
}

/// `DELETE /nodes/{node}/certificates/custom` (pve-manager `API2/Certificates.pm`
/// `remove_custom_cert`): pveproxy-ssl.pem goes, the node presents its pve-ssl.pem again — from
/// the next connection after pveproxy restarts (`restart`), as the lab serves it from the next
/// handshake.
pub(crate) fn delete_custom_cert(lab: &Arc<Lab>, cx: &Cx, _: &Params) -> ApiResult {
    {
        let mut st = lab.state();
        let n =
            st.store_mut(&cx.store).and_then(|s| s.node_mut(&cx.node)).ok_or_else(|| ApiErr::die("node vanished"))?;
        if let Some(base) = n.base_cert.take() {
            n.cert = base;
        }
        lab.save(&st);
    }
    if let Err(e) = crate::serve::refresh_lab_json(lab) {
        tracing::warn!(error = %e, "rewriting lab.json after removing a custom certificate");
    }
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_conf_reads_both_spellings() {
        let mut c = BTreeMap::new();
        c.insert("acme".to_string(), "account=prod,domains=a.example;b.example".to_string());
        c.insert("acmedomain0".to_string(), "c.example,plugin=dns1".to_string());
        c.insert("acmedomain2".to_string(), "domain=d.example,alias=x.example".to_string());
        let (acct, doms) = acme_conf(&c);
        assert_eq!(acct, "prod");
        let want: Vec<(String, String)> = [
            ("a.example", "standalone"),
            ("b.example", "standalone"),
            ("c.example", "dns1"),
            ("d.example", "standalone"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(doms, want);
        assert_eq!(acme_conf(&BTreeMap::new()), ("default".to_string(), vec![]));
    }
}
