//! `edge-lab serve`: build or load the lab, attach peers, bind every listener, write lab.json,
//! drive the bare-metal state machine, and shut everything down on SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::lab::{lock, Lab};
use crate::schema::{Product, Schema};
use crate::state::{now_ms, write_atomic, BootedImage, LabOptions, LabState};
use crate::{admin, artifacts, http, model, pbs, pki, pve, seed};

pub const PID_FILE: &str = "edge-lab.pid";
pub const LAB_JSON: &str = "lab.json";
pub const LOG_FILE: &str = "edge-lab.log";

/// Starts real peers for a lab; the default build wires in the peers engineer's modules.
pub type PeerStarter = fn(&Path, &LabState) -> anyhow::Result<crate::peers_glue::Peers>;

pub async fn run(dir: PathBuf, opts: LabOptions, peers: PeerStarter) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    write_atomic(&dir.join(PID_FILE), std::process::id().to_string().as_bytes())?;
    let res = serve_until_shutdown(&dir, opts, peers).await;
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    res
}

async fn serve_until_shutdown(dir: &Path, opts: LabOptions, peers: PeerStarter) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    let state_path = dir.join("state.json");
    let st = match LabState::load(&state_path)? {
        Some(st) => {
            tracing::info!(stores = st.stores.len(), "resuming lab state");
            st
        }
        None => {
            let st = model::build(opts)?;
            st.save(&state_path)?;
            st
        }
    };
    let mut st = st;
    // Labs from before ACME get their ACME CA now, saved so lab.json's `acme.ca_pem` is stable.
    if crate::acme::ensure_ca(&mut st).map_err(anyhow::Error::msg)? {
        st.save(&state_path)?;
    }
    let profiles = st.options.profiles;
    let pve_schema = Schema::embedded(Product::Pve, profiles.pve.name())?;
    let pbs_schema = Schema::embedded(Product::Pbs, profiles.pbs.name())?;
    tracing::info!(
        pve = profiles.pve.name(),
        pbs = profiles.pbs.name(),
        legacy_http = profiles.pve_http_server_legacy,
        pve_endpoints = pve_schema.endpoints.len(),
        pbs_endpoints = pbs_schema.endpoints.len(),
        "version profiles"
    );
    let (pve_schema, pbs_schema) = (Some(pve_schema), Some(pbs_schema));
    let artifacts_dir = PathBuf::from(&st.options.artifacts_dir);
    std::fs::create_dir_all(&artifacts_dir)?;

    // Peers of an earlier serve that was killed still run under this directory: starting new
    // ones beside them would fight over ports and data. `edge-lab down` stops them.
    let live = crate::peers_glue::live_peers(&dir);
    if !live.is_empty() {
        anyhow::bail!(
            "peers of an earlier lab still run in {}: {}; stop them with `edge-lab down --dir {}`",
            dir.display(),
            live.join(", "),
            dir.display()
        );
    }
    // Every listener is claimed before any peer starts, so a busy address fails here, in
    // milliseconds, with nothing started (Ceph takes seconds to come up and would be left behind).
    let listeners = Listeners::bind(&dir, &st).await?;
    crate::peers_glue::check_ports_free(&st)?;

    let (pools, bmc) = peers(&dir, &st).context("starting real peers")?;
    let lab = Arc::new(Lab::new(dir.clone(), st, pve_schema, pbs_schema, pools, bmc));
    // From here on the peers run: whatever fails stops them again.
    if let Err(e) = start_serving(&lab, listeners, &artifacts_dir) {
        stop_peers(&lab);
        return Err(e);
    }
    tracing::info!(admin = %lock(&lab.admin_endpoint), "edge-lab ready");

    wait_for_shutdown().await;
    tracing::info!("shutting down");
    {
        let st = lab.state();
        lab.save(&st);
    }
    save_tasks(&lab);
    stop_peers(&lab);
    Ok(())
}

fn stop_peers(lab: &Lab) {
    if let Some(b) = &lab.bmc {
        b.stop();
    }
    if let Some(p) = &lab.pools {
        p.stop();
    }
}

/// Every socket the lab serves on: admin, artifacts, each node's PVE API, each store's PBS.
struct Listeners {
    admin: TcpListener,
    artifacts: TcpListener,
    /// (store, node, listener)
    nodes: Vec<(String, String, TcpListener)>,
    /// (store, listener)
    pbs: Vec<(String, TcpListener)>,
}

impl Listeners {
    async fn bind(dir: &Path, st: &LabState) -> anyhow::Result<Listeners> {
        let net = st.options.net;
        let admin = bind_reuse(dir, "admin", SocketAddr::from(([127, net, 0, 1], 0))).await?;
        let artifacts = bind_reuse(dir, "artifacts", SocketAddr::from(([127, net, 0, 1], 0))).await?;
        let mut nodes = Vec::new();
        let mut pbs = Vec::new();
        for s in &st.stores {
            for n in &s.nodes {
                nodes.push((s.id.clone(), n.name.clone(), bind(&format!("{}:8006", n.address)).await?));
            }
            pbs.push((s.id.clone(), bind(&format!("{}:8007", s.pbs.address)).await?));
        }
        Ok(Listeners { admin, artifacts, nodes, pbs })
    }
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr.parse()?;
    TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

/// Serves every listener and writes lab.json (the sign `up` waits for).
fn start_serving(lab: &Arc<Lab>, l: Listeners, artifacts_dir: &Path) -> anyhow::Result<()> {
    load_tasks(lab);
    let admin_ep = format!("http://{}", l.admin.local_addr()?);
    let art_ep = format!("http://{}", l.artifacts.local_addr()?);
    *lock(&lab.admin_endpoint) = admin_ep.clone();
    *lock(&lab.artifacts_endpoint) = art_ep.clone();
    tokio::spawn(http::serve(l.admin, None, None, admin::handler(Arc::clone(lab))));
    tokio::spawn(http::serve(l.artifacts, None, None, artifacts::handler(artifacts_dir.to_path_buf())));

    let ca = lab.state().ca.clone();
    for (sid, nname, listener) in l.nodes {
        // The node's certificate can change while the lab runs (cert drift, ACME order).
        let cert_lab = Arc::clone(lab);
        let (csid, cname) = (sid.clone(), nname.clone());
        let current: pki::CurrentCert = Arc::new(move || {
            let st = cert_lab.state();
            st.store(&csid).and_then(|s| s.node(&cname)).map(|n| n.cert.clone())
        });
        let tls = pki::live_server_config(current, &ca)?;
        let gate_lab = Arc::clone(lab);
        let (gsid, gname) = (sid.clone(), nname.clone());
        let gate: http::Gate = Arc::new(move || {
            let st = gate_lab.state();
            st.store(&gsid).and_then(|s| s.node(&gname)).is_some_and(|n| n.is_up(now_ms()))
        });
        tokio::spawn(http::serve(listener, Some(tls), Some(gate), pve::handler(Arc::clone(lab), sid, nname)));
    }
    for (sid, listener) in l.pbs {
        let cert = lab.state().store(&sid).and_then(|s| s.pbs.cert.clone()).context("PBS certificate missing")?;
        tokio::spawn(http::serve(
            listener,
            Some(pki::server_config(&cert, &ca)?),
            None,
            pbs::handler(Arc::clone(lab), sid),
        ));
    }
    if lab.bmc.is_some() {
        tokio::spawn(bare_metal_loop(Arc::clone(lab)));
    }
    write_lab_json(lab, &admin_ep, &art_ep, artifacts_dir)
}

const TASKS_FILE: &str = "tasks.json";
/// Task history kept across down/up, like PVE's /var/log/pve/tasks (most recent first).
const TASKS_KEPT: usize = 2000;

fn save_tasks(lab: &Lab) {
    let tasks = lock(&lab.tasks);
    let mut list: Vec<&crate::lab::Task> = tasks.values().collect();
    list.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    list.truncate(TASKS_KEPT);
    match serde_json::to_vec(&list) {
        Ok(bytes) => {
            if let Err(e) = write_atomic(&lab.dir.join(TASKS_FILE), &bytes) {
                tracing::warn!(error = %e, "saving task history");
            }
        }
        Err(e) => tracing::warn!(error = %e, "encoding task history"),
    }
}

/// Tasks still running when the lab stopped ended with it, as after a PVE node reboot.
fn load_tasks(lab: &Lab) {
    let Ok(text) = std::fs::read_to_string(lab.dir.join(TASKS_FILE)) else { return };
    let Ok(list) = serde_json::from_str::<Vec<crate::lab::Task>>(&text) else {
        tracing::warn!("task history unreadable; starting without it");
        return;
    };
    let mut tasks = lock(&lab.tasks);
    for mut t in list {
        if t.exitstatus.is_none() {
            t.exitstatus = Some("unexpected status".into());
            t.endtime = Some(crate::state::now_s());
        }
        tasks.insert(t.upid.clone(), t);
    }
}

/// Reuses the port of the previous run when it is free, so endpoints stay stable across
/// down/up; otherwise any free port.
async fn bind_reuse(dir: &Path, what: &str, any: SocketAddr) -> anyhow::Result<TcpListener> {
    let prev = std::fs::read_to_string(dir.join(LAB_JSON))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v[what]["endpoint"].as_str().map(str::to_string))
        .and_then(|e| e.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
    if let Some(port) = prev {
        if let Ok(l) = TcpListener::bind(SocketAddr::new(any.ip(), port)).await {
            return Ok(l);
        }
    }
    TcpListener::bind(any).await.with_context(|| format!("binding {any}"))
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

pub fn lab_json(lab: &Lab, admin_ep: &str, art_ep: &str, artifacts_dir: &Path) -> Value {
    let st = lab.state();
    let net = st.options.net;
    let stores: Vec<Value> = st
        .stores
        .iter()
        .map(|s| {
            let token = format!("root@pam!edge={}", s.token_secret);
            let first = &s.nodes[0];
            let cluster_name = s.nodes.iter().find_map(|n| n.cluster.clone());
            let nodes: Vec<Value> = s
                .nodes
                .iter()
                .map(|n| {
                    let bmc = lab.bmc.as_ref().map(|b| {
                        json!({"system_id": n.system_id, "endpoint": format!("{}/redfish/v1/Systems/{}", b.endpoint(), n.system_id)})
                    });
                    json!({
                        "name": n.name, "address": n.address, "endpoint": format!("https://{}:8006", n.address),
                        "tls_fingerprint": n.cert.fingerprint, "api_token": token, "mac": n.mac, "bmc": bmc,
                    })
                })
                .collect();
            let pbs_fp = s.pbs.cert.as_ref().map(|c| c.fingerprint.clone()).unwrap_or_default();
            json!({
                "id": s.id, "cluster_name": cluster_name,
                "pve": {"endpoint": format!("https://{}:8006", first.address), "api_token": token,
                        "tls_fingerprint": first.cert.fingerprint, "root_password": s.root_password,
                        "audit_token": format!("root@pam!audit={}", pve::audit_secret(s))},
                "pbs": {"endpoint": format!("https://{}:8007", s.pbs.address), "api_token": format!("root@pam!edge:{}", s.pbs_token_secret),
                        "tls_fingerprint": pbs_fp, "datastore": pbs::datastore_name(s), "address": s.pbs.address,
                        "root_password": s.root_password},
                "nodes": nodes,
            })
        })
        .collect();
    let redfish = lab.bmc.as_ref().map(|b| {
        let (u, p) = b.credentials();
        json!({"endpoint": b.endpoint(), "username": u, "password": p})
    });
    let ceph = lab.pools.as_ref().map(|p| json!({"conf": p.conf()}));
    let acme = json!({"directory": crate::acme::DIRECTORY, "tos": crate::acme::TOS,
                      "ca_pem": st.acme_ca.as_ref().map(|c| c.cert.cert_pem.clone())});
    json!({
        "version": 1, "net": net, "pid": std::process::id(), "dir": lab.dir,
        "ca_pem": st.ca.cert.cert_pem,
        "admin": {"endpoint": admin_ep, "token": st.admin_token},
        "artifacts": {"endpoint": art_ep, "dir": artifacts_dir},
        "redfish": redfish, "ceph": ceph, "acme": acme,
        "schema_validation": lab.pve_schema.is_some() && lab.pbs_schema.is_some(),
        "install_ms": st.options.install_ms,
        "profiles": {"pve": st.options.profiles.pve.name(), "pbs": st.options.profiles.pbs.name(),
                     "pve_http_server_legacy": st.options.profiles.pve_http_server_legacy},
        "bmc_power_delay": st.options.bmc_power_delay.as_str(),
        "stores": stores,
    })
}

/// Rewrites lab.json after a change it publishes (a node's certificate), so it stays the truth.
pub fn refresh_lab_json(lab: &Lab) -> anyhow::Result<()> {
    let admin_ep = lock(&lab.admin_endpoint).clone();
    let art_ep = lock(&lab.artifacts_endpoint).clone();
    let artifacts_dir = PathBuf::from(&lab.state().options.artifacts_dir);
    write_lab_json(lab, &admin_ep, &art_ep, &artifacts_dir)
}

fn write_lab_json(lab: &Lab, admin_ep: &str, art_ep: &str, artifacts_dir: &Path) -> anyhow::Result<()> {
    let v = lab_json(lab, admin_ep, art_ep, artifacts_dir);
    write_atomic(&lab.dir.join(LAB_JSON), serde_json::to_string_pretty(&v)?.as_bytes())?;
    std::fs::write(lab.dir.join("ca.pem"), lab.state().ca.cert.cert_pem.as_bytes())?;
    Ok(())
}

/// Watches the BMC of every node: power + boot override Cd + inserted media on a power-on
/// installs the image; power off takes the API down; power on without media boots the disk.
async fn bare_metal_loop(lab: Arc<Lab>) {
    // With an instant BMC the lab's own watch would be the slowest part of a boot; 100 ms keeps
    // it small (each tick costs two Redfish GETs per node).
    let tick = match lab.state().options.bmc_power_delay {
        crate::state::PowerDelay::Instant => Duration::from_millis(100),
        crate::state::PowerDelay::Real => Duration::from_millis(300),
    };
    loop {
        let lab2 = Arc::clone(&lab);
        let _ = tokio::task::spawn_blocking(move || bare_metal_tick(&lab2)).await;
        tokio::time::sleep(tick).await;
    }
}

fn bare_metal_tick(lab: &Lab) {
    let Some(bmc) = &lab.bmc else { return };
    let nodes: Vec<(String, String, String, bool)> = {
        let st = lab.state();
        st.stores
            .iter()
            .flat_map(|s| s.nodes.iter().map(|n| (s.id.clone(), n.name.clone(), n.system_id.clone(), n.power_on)))
            .collect()
    };
    let art_ep = lock(&lab.artifacts_endpoint).clone();
    for (sid, name, uuid, was_on) in nodes {
        let sys = match bmc.system(&uuid) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "bmc query failed");
                continue;
            }
        };
        // A blank machine that is on does not stay stuck at "no bootable device" once a CD
        // override and media are there: it boots the installer. (With an instant BMC a provider's
        // off/on cycle can fall between two ticks, so this is also how the lab sees that reboot.)
        let blank_with_media = sys.power_on
            && sys.media_inserted
            && sys.boot_override_target.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("cd"))
            && lab.state().store(&sid).and_then(|s| s.node(&name)).is_some_and(|n| !n.installed);
        if sys.power_on == was_on && !blank_with_media {
            continue;
        }
        // A boot reads the seed medium (images/nixos/seed.nix): fetched here, outside the state
        // lock, applied below when this boot installs or the seed is new to the node.
        let seed = sys
            .seed_media
            .as_deref()
            .map(|url| tokio::runtime::Handle::current().block_on(seed::fetch(url)).and_then(|b| seed::parse(&b)));
        let mut st = lab.state();
        let mut reinstalled = false;
        let install_ms = st.options.install_ms;
        let artifacts_dir = PathBuf::from(&st.options.artifacts_dir);
        if !sys.power_on {
            if let Some(n) = st.store_mut(&sid).and_then(|s| s.node_mut(&name)) {
                n.power_on = false;
                n.install_until_ms = None;
            }
            tracing::info!(node = %name, "powered off");
        } else {
            let boots_cd = sys.boot_override_target.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("cd"));
            let media = if sys.media_inserted { sys.media_image.clone().filter(|u| !u.is_empty()) } else { None };
            // The override is one-time on real BMCs (sushy always reads back "Continuous"):
            // an installed node with the same media still inserted boots its disk; new media
            // or a blank disk boots the installer.
            let booted = st.store(&sid).and_then(|s| s.node(&name)).and_then(|n| {
                if n.installed {
                    Some(n.image.as_ref().map(|i| i.url.clone()).unwrap_or_default())
                } else {
                    None
                }
            });
            let media = media.filter(|url| booted.as_deref() != Some(url.as_str()));
            match (boots_cd, media) {
                (true, Some(url)) => {
                    let sha = artifacts::sha256_of_url(&artifacts_dir, &art_ep, &url);
                    tracing::info!(node = %name, %url, "booting installer from virtual media");
                    // The edge image holds no credentials: what a node knows comes from its seed.
                    if let Err(e) = model::reset_os(&mut st, &sid, &name, model::Tokens::None) {
                        tracing::warn!(node = %name, error = %e, "installing");
                    }
                    reinstalled = true;
                    if let Some(n) = st.store_mut(&sid).and_then(|s| s.node_mut(&name)) {
                        n.power_on = true;
                        n.installed = true;
                        n.install_until_ms = Some(now_ms() + install_ms);
                        n.image = Some(BootedImage { url, sha256: sha, booted_at: crate::state::now_s() });
                        model::record_image(n);
                    }
                    match &seed {
                        Some(Ok((seed, sha))) => match seed::apply(&mut st, &sid, &name, seed, sha) {
                            Ok(()) => tracing::info!(node = %name, %sha, "first boot applied its seed"),
                            Err(e) => tracing::warn!(node = %name, error = %e, "seed refused"),
                        },
                        Some(Err(e)) => tracing::warn!(node = %name, error = %e, "seed medium unreadable"),
                        None => tracing::info!(node = %name, "no seed medium: root keeps the lab's password"),
                    }
                }
                _ => {
                    if let Some(n) = st.store_mut(&sid).and_then(|s| s.node_mut(&name)) {
                        n.power_on = true;
                        n.boot_time = crate::state::now_s();
                    }
                    tracing::info!(node = %name, "powered on (boots from disk if installed)");
                    // seed.nix runs at every boot: a seed it has not applied yet is applied now.
                    let installed = st.store(&sid).and_then(|s| s.node(&name)).is_some_and(|n| n.installed);
                    if let (true, Some(Ok((seed, sha)))) = (installed, seed) {
                        let applied = st
                            .store(&sid)
                            .and_then(|s| s.node(&name))
                            .and_then(|n| n.seed.as_ref())
                            .map(|a| a.sha256.clone());
                        if applied.as_deref() != Some(sha.as_str()) {
                            match seed::apply(&mut st, &sid, &name, &seed, &sha) {
                                Ok(()) => tracing::info!(node = %name, %sha, "boot applied a new seed"),
                                Err(e) => tracing::warn!(node = %name, error = %e, "seed refused"),
                            }
                        }
                    }
                }
            }
        }
        lab.save(&st);
        drop(st);
        // A reinstall drops an ACME certificate: lab.json publishes the node's own one again.
        if reinstalled {
            if let Err(e) = refresh_lab_json(lab) {
                tracing::warn!(error = %e, "rewriting lab.json after an install");
            }
        }
    }
}
