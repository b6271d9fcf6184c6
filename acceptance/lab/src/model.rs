//! Lifecycle of the modelled hardware: building a new lab, installing a node's OS, wiping.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::pki;
use crate::state::{now_s, CephRoles, Dns, LabOptions, LabState, NodeState, StoreState};

fn uuid_from(rng: &mut rand_chacha::ChaCha8Rng) -> String {
    let b: [u8; 16] = rng.gen();
    let h = hex::encode(b);
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn secret_from(rng: &mut rand_chacha::ChaCha8Rng) -> String {
    uuid_from(rng)
}

pub fn node_ip(net: u8, store: u32, node: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, net, store as u8, node as u8)
}

pub fn pbs_ip(net: u8, store: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, net, store as u8, 200)
}

/// A new lab; `--seed` makes secrets and ids reproducible (keys/certs are always random).
pub fn build(opts: LabOptions) -> Result<LabState, pki::PkiError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let ca = pki::new_ca()?;
    let mut stores = Vec::new();
    for si in 1..=opts.stores {
        let mut nodes = Vec::new();
        for ni in 1..=opts.nodes_per_store {
            let ip = node_ip(opts.net, si, ni);
            let name = format!("pve{ni}");
            let cert = pki::issue(&ca, &name, IpAddr::V4(ip))?;
            nodes.push(NodeState {
                name,
                address: ip.to_string(),
                mac: format!("52:54:00:{:02x}:{:02x}:{:02x}", opts.net, si, ni),
                system_id: uuid_from(&mut rng),
                cert,
                power_on: !opts.redfish,
                installed: !opts.redfish,
                install_until_ms: None,
                image: None,
                dns: Dns::default(),
                timezone: "UTC".into(),
                cluster: None,
                ceph: CephRoles::default(),
                network: crate::pve::fresh_network(&ip.to_string()),
                pstart: rng.gen_range(1000..100_000),
                boot_time: now_s(),
                config: Default::default(),
                base_cert: None,
                seed: None,
                api_restart_until_ms: None,
                auth_restart_until_ms: None,
                used_disks: Default::default(),
                seed_tamper: false,
                guests: Default::default(),
                full_storages: Default::default(),
                reboot: Default::default(),
            });
        }
        let mut s = StoreState {
            id: format!("store-{si:03}"),
            index: si,
            root_password: secret_from(&mut rng),
            token_secret: secret_from(&mut rng),
            pbs_token_secret: secret_from(&mut rng),
            nodes,
            pools: Default::default(),
            ec_profiles: Default::default(),
            next_pool_id: 1,
            pbs: Default::default(),
            ceph_flags: Default::default(),
        };
        let pip = pbs_ip(opts.net, si);
        let mut pbs = crate::pbs::fresh_pbs(&s);
        pbs.address = pip.to_string();
        pbs.cert = Some(pki::issue(&ca, crate::pbs::HOSTNAME, IpAddr::V4(pip))?);
        s.pbs = pbs;
        stores.push(s);
    }
    let mut st = LabState {
        version: 1,
        admin_token: secret_from(&mut rng),
        redfish_credentials: Some(("edge".into(), secret_from(&mut rng)[..18].to_string())),
        options: opts,
        ca,
        stores,
        domains: Default::default(),
        counter: 0,
        acme_ca: None,
    };
    crate::acme::ensure_ca(&mut st).map_err(pki::PkiError::Stored)?;
    let pairs: Vec<(String, String)> = st
        .stores
        .iter()
        .flat_map(|s| s.nodes.iter().filter(|n| n.installed).map(|n| (s.id.clone(), n.name.clone())))
        .collect();
    for (s, n) in pairs {
        // Nodes that are there from the start were set up by hand, token included.
        reset_os(&mut st, &s, &n, Tokens::Store).map_err(pki::PkiError::Stored)?;
    }
    Ok(st)
}

/// Which API tokens a freshly installed node's `/etc/pve` has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// The store's `root@pam!edge` (and the read-only audit token): a node an admin prepared.
    Store,
    /// None: what the edge image installs (it carries no secret; docs/design/node-bootstrap.md).
    None,
}

/// A freshly installed OS: a new `/etc/pve` (its own CA and node certificate, as PVE's first
/// boot makes them — `pvecm updatecerts` via pveproxy's ExecStartPre), no cluster, no Ceph,
/// default DNS/time/network, and `tokens`.
pub fn reset_os(st: &mut LabState, store: &str, node: &str, tokens: Tokens) -> Result<(), String> {
    st.domains.remove(&format!("node:{store}/{node}"));
    let Some(s) = st.store(store) else { return Err(format!("no store {store}")) };
    let mut dom = crate::pve::fresh_domain(s);
    if tokens == Tokens::None {
        dom.tokens.clear();
    }
    let ca = pki::new_intermediate(&st.ca, &format!("Proxmox Virtual Environment {store}/{node}"))
        .map_err(|e| e.to_string())?;
    let Some(n) = st.store_mut(store).and_then(|s| s.node_mut(node)) else {
        return Err(format!("no node {node}"));
    };
    let ip: IpAddr = n.address.parse().map_err(|e| format!("{e}"))?;
    n.cert = pki::issue_for(&ca, &n.name, &[n.name.clone(), "localhost".to_string()], Some(ip), Some(730))
        .map_err(|e| e.to_string())?;
    n.base_cert = None;
    n.seed = None;
    dom.ca = Some(ca);
    n.cluster = None;
    n.ceph = CephRoles::default();
    n.dns = Dns::default();
    n.timezone = "UTC".into();
    n.network = crate::pve::fresh_network(&n.address);
    n.pstart = n.pstart.wrapping_add(1000) % 0xffff_ffff;
    n.boot_time = now_s();
    n.config.clear();
    n.api_restart_until_ms = None;
    n.auth_restart_until_ms = None;
    // The machine's disks: /dev/sdb–sdd blank, /dev/sde with an old partition table on it.
    n.used_disks = BTreeMap::from([("/dev/sde".to_string(), "partitions".to_string())]);
    st.domains.insert(format!("node:{store}/{node}"), dom);
    Ok(())
}

/// A new `pve-ssl.pem` for a node, signed by the CA of the `/etc/pve` it is in now (after a join:
/// the cluster's; pve-cluster `updatecerts_and_ssh(1)` in `finish_join`). A custom certificate it
/// presented lived in its old `/etc/pve` and is gone.
pub fn reissue_node_cert(st: &mut LabState, store: &str, node: &str) -> Result<(), String> {
    let ca = {
        let s = st.store(store).ok_or("store vanished")?;
        let n = s.node(node).ok_or("node vanished")?;
        let dom = st.domains.get(&LabState::domain_key(s, n)).ok_or("no config domain")?;
        dom.ca.clone().ok_or("the cluster has no CA")?
    };
    let n = st.store_mut(store).and_then(|s| s.node_mut(node)).ok_or("node vanished")?;
    let ip: IpAddr = n.address.parse().map_err(|e| format!("{e}"))?;
    n.cert = pki::issue_for(&ca, &n.name, &[n.name.clone(), "localhost".to_string()], Some(ip), Some(730))
        .map_err(|e| e.to_string())?;
    n.base_cert = None;
    Ok(())
}

/// What the installed image's first boot leaves in the node notes (`description` in
/// `/etc/pve/nodes/{node}/config`, read with `GET /nodes/{node}/config`): the one place in
/// PVE's published API where a node's own OS can state which image it booted, schema-valid,
/// readable with the provider's token. Format: `edge-image url=URL sha256=HEX` (sha256 when
/// the artifact server knew the file).
pub fn image_note(image: &crate::state::BootedImage) -> String {
    let mut s = format!("edge-image url={}", image.url);
    if let Some(h) = &image.sha256 {
        s.push_str(&format!(" sha256={h}"));
    }
    s
}

/// Records the booted image in the node notes (after `reset_os`, which cleared them).
pub fn record_image(n: &mut NodeState) {
    if let Some(img) = &n.image {
        n.config.insert("description".into(), image_note(img));
    }
}

/// Disaster: the node is powered off and its disks are blank.
pub fn wipe_node(st: &mut LabState, store: &str, node: &str) -> Option<String> {
    st.domains.remove(&format!("node:{store}/{node}"));
    let n = st.store_mut(store)?.node_mut(node)?;
    n.power_on = false;
    n.installed = false;
    n.install_until_ms = None;
    n.image = None;
    n.cluster = None;
    n.ceph = CephRoles::default();
    // The guests' configs and disks were on the node.
    n.guests.clear();
    n.full_storages.clear();
    Some(n.system_id.clone())
}

/// Wipes every node of a store and everything that lived on them: clusters, pools, jobs.
/// PBS keeps its datastores and remotes (the backups are what DR restores from) but loses
/// its jobs; with `pbs` it is reset completely.
pub fn wipe_store(st: &mut LabState, store: &str, pbs: bool) -> Vec<String> {
    let names: Vec<String> =
        st.store(store).map(|s| s.nodes.iter().map(|n| n.name.clone()).collect()).unwrap_or_default();
    let mut uuids = Vec::new();
    for n in &names {
        if let Some(u) = wipe_node(st, store, n) {
            uuids.push(u);
        }
    }
    st.domains.retain(|k, _| !k.starts_with(&format!("cluster:{store}/")));
    if let Some(s) = st.store_mut(store) {
        s.pools.clear();
        s.ec_profiles.clear();
        if pbs {
            let addr = s.pbs.address.clone();
            let cert = s.pbs.cert.clone();
            let mut fresh = crate::pbs::fresh_pbs(s);
            fresh.address = addr;
            fresh.cert = cert;
            s.pbs = fresh;
        } else {
            for j in ["sync", "verify", "prune"] {
                s.pbs.collections.remove(j);
            }
        }
    }
    uuids
}

pub fn node_summary(st: &LabState, s: &StoreState, n: &NodeState, now_ms: u64) -> serde_json::Value {
    let dom = st.domains.get(&LabState::domain_key(s, n));
    json!({
        "name": n.name, "store": s.id, "address": n.address, "mac": n.mac, "system_id": n.system_id,
        "power_on": n.power_on, "installed": n.installed, "up": n.is_up(now_ms),
        "installing": n.install_until_ms.is_some_and(|t| now_ms < t),
        "image": n.image, "dns": n.dns, "timezone": n.timezone, "cluster": n.cluster,
        "ceph": {"mon": n.ceph.mon, "mgr": n.ceph.mgr, "osds": n.ceph.osds, "initialized": dom.map(|d| d.ceph_initialized)},
        "network": {"active": n.network.active, "pending": n.network.pending},
        "tokens": dom.map(|d| d.tokens.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "tls_fingerprint": n.cert.fingerprint,
        "reboot": crate::pve::reboot_summary(n, now_ms),
    })
}
