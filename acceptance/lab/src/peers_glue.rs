//! Glue between the emulator's peer traits (`PoolBackend`, `Bmc`) and the real-peer modules
//! (`ceph`, `redfish`). The peer modules are async; the emulator calls its traits from worker
//! threads and request handlers, so each call runs on the lab's runtime via `block_in_place`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::ceph::{CephCluster, CephOptions, EcProfile};
use crate::lab::{Bmc, BmcSystem, PoolBackend, RealPool};
use crate::peers_util as util;
use crate::redfish::{RedfishOptions, RedfishPeer, SystemSpec};
use crate::state::{LabState, PowerDelay};

/// The peers a lab runs with: real Ceph for pools, a Redfish BMC for bare metal.
pub type Peers = (Option<Box<dyn PoolBackend>>, Option<Box<dyn Bmc>>);

fn run<F: Future>(handle: &tokio::runtime::Handle, f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        // On a runtime worker: tell tokio this thread blocks for a while.
        Ok(_) => tokio::task::block_in_place(|| handle.block_on(f)),
        Err(_) => handle.block_on(f),
    }
}

/// Ceph mon ports per `--net`, so parallel labs with `--ceph` do not collide. Below Linux's
/// ephemeral range (32768–60999): a port in it can be taken at any moment by some client
/// connection's local end, and the mon then fails to bind ("Address already in use").
pub fn ceph_ports(net: u8) -> (u16, u16) {
    let base = 20000 + 2 * net as u16;
    (base, base + 1)
}

pub fn start_peers(dir: &Path, st: &LabState) -> anyhow::Result<Peers> {
    let handle = tokio::runtime::Handle::current();
    let net = st.options.net;
    let bmc: Option<Box<dyn Bmc>> = if st.options.redfish {
        let systems: Vec<SystemSpec> = st
            .stores
            .iter()
            .flat_map(|s| {
                s.nodes.iter().map(move |n| SystemSpec {
                    uuid: n.system_id.clone(),
                    name: format!("{}-{}", s.id, n.name),
                    mac: n.mac.clone(),
                })
            })
            .collect();
        let (user, pass) = st.redfish_credentials.clone().unwrap_or_else(|| ("edge".into(), "edge-lab".into()));
        let bind = SocketAddr::from(([127, net, 0, 2], 8000));
        let opts =
            RedfishOptions { instant_power: st.options.bmc_power_delay == PowerDelay::Instant, ..Default::default() };
        let peer = run(&handle, RedfishPeer::start_with(&dir.join("redfish"), bind, systems, &user, &pass, &opts))
            .context("starting sushy-emulator")?;
        Some(Box::new(RedfishBmc { peer, handle: handle.clone() }))
    } else {
        None
    };
    let pools: Option<Box<dyn PoolBackend>> = if st.options.ceph {
        let (v2, v1) = ceph_ports(net);
        let opts = CephOptions { mon_v2_port: v2, mon_v1_port: v1, ..Default::default() };
        let cluster = match run(&handle, CephCluster::start(&dir.join("ceph"), &opts)).context("starting Ceph") {
            Ok(c) => c,
            Err(e) => {
                if let Some(b) = &bmc {
                    b.stop();
                }
                return Err(e);
            }
        };
        Some(Box::new(CephPools { cluster, handle: handle.clone() }))
    } else {
        None
    };
    Ok((pools, bmc))
}

struct CephPools {
    cluster: CephCluster,
    handle: tokio::runtime::Handle,
}

impl CephPools {
    /// A mon command; a refusal comes back as the mon's status text, which is what PVE's RADOS
    /// binding shows (`mon_cmd failed - <status>`): the CLI's `Error EPERM: ` prefix removed.
    fn mon(&self, args: &[&str]) -> Result<(), String> {
        run(&self.handle, self.cluster.admin_cmd(args)).map(|_| ()).map_err(|e| match e {
            crate::ceph::CephError::Command { stderr, .. } => mon_status(&stderr),
            other => other.to_string(),
        })
    }
}

/// `Error EPERM: Are you SURE? …` → `Are you SURE? …` (the last line: the CLI may log before it).
fn mon_status(stderr: &str) -> String {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    match line.strip_prefix("Error ").and_then(|r| r.split_once(": ")) {
        Some((code, text)) if code.starts_with('E') && code.chars().skip(1).all(|c| c.is_ascii_uppercase()) => {
            text.to_string()
        }
        _ => line.to_string(),
    }
}

impl PoolBackend for CephPools {
    fn create(&self, name: &str, pg_num: i64, ec_profile: Option<&str>) -> Result<(), String> {
        let pg = pg_num.clamp(1, 32768).to_string();
        match ec_profile {
            Some(profile) => self.mon(&["osd", "pool", "create", name, &pg, &pg, "erasure", profile]),
            None => self.mon(&["osd", "pool", "create", name, &pg, &pg, "replicated"]),
        }
    }
    fn set(&self, name: &str, key: &str, value: &str) -> Result<(), String> {
        self.mon(&["osd", "pool", "set", name, key, value])
    }
    fn application_enable(&self, name: &str, app: &str) -> Result<(), String> {
        self.mon(&["osd", "pool", "application", "enable", name, app])
    }
    fn set_by_hand(&self, name: &str, key: &str, value: &str) -> Result<(), String> {
        self.mon(&["osd", "pool", "set", name, key, value, "--yes-i-really-mean-it"])
    }
    fn application_replace(&self, name: &str, app: &str) -> Result<(), String> {
        let pools = run(&self.handle, self.cluster.pools()).map_err(|e| e.to_string())?;
        let old: Vec<String> = pools
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.application_metadata.keys().cloned().collect())
            .unwrap_or_default();
        for a in old.iter().filter(|a| *a != app) {
            self.mon(&["osd", "pool", "application", "disable", name, a, "--yes-i-really-mean-it"])?;
        }
        self.application_enable(name, app)
    }
    fn ec_profile_set(&self, name: &str, p: &crate::state::EcProfile) -> Result<(), String> {
        let profile = EcProfile {
            k: p.k.clamp(1, 32) as u32,
            m: p.m.clamp(1, 32) as u32,
            failure_domain: Some(p.failure_domain.clone()),
            device_class: p.device_class.clone(),
        };
        run(&self.handle, self.cluster.erasure_code_profile_set(name, &profile)).map_err(|e| e.to_string())
    }
    fn ec_profile_rm(&self, name: &str) -> Result<(), String> {
        run(&self.handle, self.cluster.erasure_code_profile_rm(name)).map_err(|e| e.to_string())
    }
    fn remove(&self, name: &str) -> Result<(), String> {
        run(&self.handle, self.cluster.pool_rm(name)).map_err(|e| e.to_string())
    }
    fn list(&self) -> Result<Vec<RealPool>, String> {
        let pools = run(&self.handle, self.cluster.pools()).map_err(|e| e.to_string())?;
        let rules = run(&self.handle, self.cluster.crush_rules()).unwrap_or_default();
        // One `ceph df` for everyone's usage (PVE's pool list shows bytes_used/percent_used).
        let usage = run(&self.handle, self.cluster.pool_stats_all()).unwrap_or_default();
        let opt_i = |p: &crate::ceph::PoolDetail, k: &str| p.options.get(k).and_then(|v| v.as_i64());
        Ok(pools
            .into_iter()
            .map(|p| {
                let u = usage.get(&p.name);
                RealPool {
                    id: p.id,
                    size: p.size as i64,
                    min_size: p.min_size as i64,
                    pg_num: p.pg_num as i64,
                    pg_num_min: opt_i(&p, "pg_num_min"),
                    crush_rule: rules.get(&p.crush_rule).cloned().unwrap_or_else(|| p.crush_rule.to_string()),
                    pg_autoscale_mode: p.pg_autoscale_mode.clone(),
                    target_size_bytes: opt_i(&p, "target_size_bytes"),
                    target_size_ratio: p.options.get("target_size_ratio").and_then(|v| v.as_f64()),
                    applications: p.application_metadata.keys().cloned().collect(),
                    ec_profile: (p.pool_type == 3).then(|| p.erasure_code_profile.clone()),
                    bytes_used: u.map(|s| s.bytes_used as i64).unwrap_or(0),
                    percent_used: u.map(|s| s.percent_used).unwrap_or(0.0),
                    name: p.name,
                }
            })
            .collect())
    }
    fn stop(&self) {
        if let Err(e) = run(&self.handle, self.cluster.stop()) {
            tracing::warn!(error = %e, "stopping ceph");
        }
    }
    fn conf(&self) -> Option<String> {
        Some(self.cluster.conf_path().display().to_string())
    }
    fn osd_flag(&self, flag: &str, set: bool) -> Result<(), String> {
        self.mon(&["osd", if set { "set" } else { "unset" }, flag])
    }
    fn osd_flags(&self) -> Result<Vec<String>, String> {
        let dump = run(&self.handle, self.cluster.admin_json(&["osd", "dump"])).map_err(|e| e.to_string())?;
        let flags = dump.get("flags").and_then(serde_json::Value::as_str).unwrap_or_default();
        Ok(flags.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect())
    }
}

struct RedfishBmc {
    peer: RedfishPeer,
    handle: tokio::runtime::Handle,
}

impl Bmc for RedfishBmc {
    fn system(&self, uuid: &str) -> Result<BmcSystem, String> {
        let s = run(&self.handle, self.peer.system(uuid)).map_err(|e| e.to_string())?;
        Ok(BmcSystem {
            power_on: s.power_on,
            boot_override_target: Some(s.boot_override_target),
            media_inserted: s.media_inserted,
            media_image: s.media_image,
            seed_media: s.removable_image,
        })
    }
    fn set_power(&self, uuid: &str, on: bool) -> Result<(), String> {
        run(&self.handle, self.peer.set_power(uuid, on)).map_err(|e| e.to_string())
    }
    fn eject(&self, uuid: &str) -> Result<(), String> {
        run(&self.handle, self.peer.eject(uuid)).map_err(|e| e.to_string())?;
        run(&self.handle, self.peer.eject_on(uuid, crate::redfish::Device::Removable)).map_err(|e| e.to_string())
    }
    fn endpoint(&self) -> String {
        let base = &self.peer.endpoint().base_url;
        base.trim_end_matches('/').trim_end_matches("/redfish/v1").to_string()
    }
    fn credentials(&self) -> (String, String) {
        let e = self.peer.endpoint();
        (e.username.clone(), e.password.clone())
    }
    fn stop(&self) {
        if let Err(e) = run(&self.handle, self.peer.stop()) {
            tracing::warn!(error = %e, "stopping sushy-emulator");
        }
    }
}

/// Fails when an address a peer is about to listen on is taken, so `serve` stops before it
/// starts anything (the peers themselves would fail only after seconds of setup).
pub fn check_ports_free(st: &LabState) -> anyhow::Result<()> {
    let net = st.options.net;
    let mut addrs = Vec::new();
    if st.options.redfish {
        addrs.push(("the Redfish BMC", SocketAddr::from(([127, net, 0, 2], 8000))));
    }
    if st.options.ceph {
        let (v2, v1) = ceph_ports(net);
        addrs.push(("the Ceph mon (msgr2)", SocketAddr::from(([127, 0, 0, 1], v2))));
        addrs.push(("the Ceph mon (msgr1)", SocketAddr::from(([127, 0, 0, 1], v1))));
    }
    for (what, addr) in addrs {
        // Bound and released at once: nothing listens there now, so the peer can bind it.
        std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr} for {what}"))?;
    }
    Ok(())
}

/// What identifies a peer process of the lab in `dir`: its configuration file, which is on its
/// command line (`ceph-osd -c DIR/ceph/ceph.conf -i 0`, `sushy-emulator --config DIR/redfish/sushy.conf`).
/// Found by command line rather than pid file, so a daemon whose pid file was never written
/// (a serve killed half-way through starting Ceph) is found too.
fn peer_needles(dir: &Path) -> [String; 2] {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    [
        dir.join("ceph").join("ceph.conf").display().to_string(),
        dir.join("redfish").join("sushy.conf").display().to_string(),
    ]
}

/// Live peer processes of the lab in `dir`, as `name (pid N)`.
pub fn live_peers(dir: &Path) -> Vec<String> {
    peer_needles(dir)
        .iter()
        .flat_map(|needle| util::pids_with_cmdline_containing(needle))
        .map(|pid| format!("{} (pid {pid})", process_label(pid)))
        .collect()
}

/// `ceph-osd.2`, `sushy-emulator`, … from a process's command line.
fn process_label(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> =
        raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).filter(|a| !a.is_empty()).collect();
    let base = |a: &String| Path::new(a).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(tool) = args.iter().map(base).find(|b| b.starts_with("ceph-")) {
        let id = args.iter().position(|a| a == "-i").and_then(|i| args.get(i + 1)).cloned().unwrap_or_default();
        return format!("{tool}.{id}");
    }
    if args.iter().any(|a| a.contains("sushy-emulator")) {
        return "sushy-emulator".into();
    }
    args.first().map(base).unwrap_or_else(|| "process".into())
}

/// Stops every peer of the lab in `dir` that still runs (after `down`, or after a serve that
/// was killed): Ceph cleanly by its pid files first (so memstore keeps its objects), then
/// whatever still runs with the lab's configuration files on its command line. Returns what
/// it stopped.
pub fn stop_leftovers(dir: &Path) -> Vec<String> {
    let before = live_peers(dir);
    if before.is_empty() {
        return before;
    }
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
        if let Ok(c) = CephCluster::open_dir(&dir.join("ceph")) {
            if let Err(e) = rt.block_on(c.stop()) {
                tracing::warn!(error = %e, "stopping ceph by its pid files");
            }
        }
        if let Ok(r) = RedfishPeer::attach(&dir.join("redfish")) {
            let _ = rt.block_on(r.stop());
        }
        let rest: Vec<(u32, String)> = peer_needles(dir)
            .into_iter()
            .flat_map(|n| util::pids_with_cmdline_containing(&n).into_iter().map(move |p| (p, n.clone())))
            .collect();
        let left = rt.block_on(util::terminate_all(&rest, std::time::Duration::from_secs(10)));
        if !left.is_empty() {
            tracing::warn!(?left, "peer processes survived SIGKILL");
        }
    }
    before
}
