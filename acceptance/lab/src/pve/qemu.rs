//! QEMU guests of a node (`/nodes/{node}/qemu…`, `/cluster/nextid`): the list, status, start
//! and stop, the guest agent's ping, the config, destroy, and restores from a PBS backup
//! (`POST /nodes/{node}/qemu` with `archive`: a `qmrestore` task). Behaviour follows
//! qemu-server (`PVE/API2/Qemu.pm` `create_vm`, `vm_start`, `vm_stop`, `destroy_vm`,
//! `update_vm`; `PVE/QemuServer.pm` `restore_proxmox_backup_archive`;
//! `PVE/API2/Qemu/Agent.pm`, `PVE/QemuServer/Agent.pm`), pve-cluster `check_vmid_unused`,
//! pve-manager `PVE/API2/Cluster.pm` `nextid` and pve-storage `PBSPlugin.pm`; FIDELITY.md
//! rows PVE-QEMU-*, PVE-NEXTID, PVE-VZDUMP-SELECT.
//!
//! Guests are seeded through the admin API (`POST /lab/guests`), and a backup job's scheduled
//! run (`POST /lab/stores/{store}/backup-jobs/{id}/run`) writes one PBS snapshot per selected
//! guest with the guest's config, which a restore recreates.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::{json, Map, Value};

use super::{domain, mutate, node_ref, visible_nodes, Cx};
use crate::api::{delete_list, digest_of, p_int, p_str, p_true, random_hex, ApiErr, ApiResult};
use crate::lab::Lab;
use crate::routes::Params;
use crate::schema::Product;
use crate::state::{now_ms, now_s, BackupSnapshot, Guest, GuestImage, LabState, StoreState};

/// How long a started guest's OS takes until its qemu-guest-agent answers (real guests: seconds
/// to a minute; short here so tests do not wait for nothing, long enough that a client that
/// pings once right after the start task sees "not running").
pub const AGENT_BOOT_MS: u64 = 300;

/// The storage a fresh PVE install puts guest disks on (LVM-thin `pve/data`).
const DEFAULT_STORAGE: &str = "local-lvm";

/// `load_config`'s error for a guest whose config is not on this node.
fn no_config(node: &str, vmid: u32) -> ApiErr {
    ApiErr::die(format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"))
}

fn vmid_of(p: &Params) -> Result<u32, ApiErr> {
    p_int(p, "vmid").and_then(|v| u32::try_from(v).ok()).ok_or_else(|| ApiErr::param("vmid", "property is missing"))
}

/// The cluster's vmlist (`PVE::Cluster::get_vmlist`) as `node` sees it: vmid → node.
fn vmlist(st: &LabState, store: &str, node: &str) -> BTreeMap<u32, String> {
    let Some(s) = st.store(store) else { return BTreeMap::new() };
    visible_nodes(st, store, node)
        .iter()
        .filter_map(|n| s.node(n))
        .flat_map(|n| n.guests.keys().map(move |id| (*id, n.name.clone())))
        .collect()
}

fn guest<'a>(st: &'a LabState, cx: &Cx, vmid: u32) -> Result<&'a Guest, ApiErr> {
    let (_, n) = node_ref(st, &cx.store, &cx.node)?;
    n.guests.get(&vmid).ok_or_else(|| no_config(&cx.node, vmid))
}

fn guest_mut<'a>(st: &'a mut LabState, store: &str, node: &str, vmid: u32) -> Result<&'a mut Guest, ApiErr> {
    st.store_mut(store)
        .and_then(|s| s.node_mut(node))
        .and_then(|n| n.guests.get_mut(&vmid))
        .ok_or_else(|| no_config(node, vmid))
}

/// `PVE::QemuConfig->check_lock`.
fn check_lock(g: &Guest) -> Result<(), ApiErr> {
    match &g.lock {
        Some(l) => Err(ApiErr::die(format!("VM is locked ({l})"))),
        None => Ok(()),
    }
}

/// The `agent` property string's `enabled` (its default key): `1`, `enabled=1,type=virtio`.
pub fn agent_enabled(config: &Map<String, Value>) -> bool {
    let Some(v) = config.get("agent") else { return false };
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.split(',').any(|kv| match kv.split_once('=') {
        Some(("enabled", v)) => v == "1",
        Some(_) => false,
        None => kv == "1",
    })
}

/// The guest's memory in bytes (`memory` is MiB, 512 by default).
fn maxmem(g: &Guest) -> u64 {
    let mib = g
        .config
        .get("memory")
        .and_then(|m| m.as_str().map(str::to_string).or_else(|| m.as_u64().map(|n| n.to_string())))
        .and_then(|m| m.split(',').next().and_then(|v| v.trim_start_matches("current=").parse::<u64>().ok()))
        .unwrap_or(512);
    mib << 20
}

/// What a running guest has read from its disks: a booting OS reads from the first moment.
fn diskread(g: &Guest, now: u64) -> u64 {
    g.running_since_ms.map(|t| (now.saturating_sub(t) * 256 * 1024).min(g.disk_bytes)).unwrap_or(0)
}

/// The fields `qm list` / `GET /nodes/{node}/qemu` and `status/current` share.
fn summary(g: &Guest, now: u64) -> Map<String, Value> {
    let running = g.running_since_ms.is_some();
    let mut o = Map::new();
    o.insert("vmid".into(), json!(g.vmid));
    o.insert("status".into(), json!(if running { "running" } else { "stopped" }));
    if let Some(name) = g.config.get("name") {
        o.insert("name".into(), name.clone());
    }
    o.insert("maxdisk".into(), json!(g.disk_bytes));
    o.insert("maxmem".into(), json!(maxmem(g)));
    o.insert("cpus".into(), json!(g.config.get("cores").and_then(Value::as_u64).unwrap_or(1)));
    o.insert("uptime".into(), json!(g.running_since_ms.map(|t| now.saturating_sub(t) / 1000).unwrap_or(0)));
    o.insert("diskread".into(), json!(diskread(g, now)));
    o.insert("diskwrite".into(), json!(0));
    o.insert("netin".into(), json!(0));
    o.insert("netout".into(), json!(0));
    o.insert("cpu".into(), json!(0));
    o.insert("mem".into(), json!(if running { maxmem(g) / 4 } else { 0 }));
    if running {
        o.insert("pid".into(), json!(10_000 + g.vmid));
    }
    if let Some(l) = &g.lock {
        o.insert("lock".into(), json!(l));
    }
    o
}

/// `GET /nodes/{node}/qemu`: the guests whose config is on the node (`vmstatus`).
pub(super) fn list(lab: &Arc<Lab>, cx: &Cx, _p: &Params) -> ApiResult {
    let now = now_ms();
    let st = lab.state();
    let (_, n) = node_ref(&st, &cx.store, &cx.node)?;
    Ok(Value::Array(n.guests.values().map(|g| Value::Object(summary(g, now))).collect()))
}

/// `GET /cluster/nextid`: the lowest id from 100 not in the cluster's vmlist; with `vmid`, that
/// id as given if free, else the parameter error `VM N already exists`.
pub(super) fn nextid(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let st = lab.state();
    let ids = vmlist(&st, &cx.store, &cx.local);
    if p.get("vmid").is_some_and(|v| !v.is_null()) {
        let id = vmid_of(p)?;
        if ids.contains_key(&id) {
            return Err(ApiErr::param("vmid", format!("VM {id} already exists")));
        }
        // The parameter itself comes back, and a GET's parameters are query strings.
        return Ok(json!(id.to_string()));
    }
    (100..1_000_000u32)
        .find(|i| !ids.contains_key(i))
        .map(|i| json!(i))
        .ok_or_else(|| ApiErr::die("unable to get any free VMID in range [100, 1000000]"))
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`.
pub(super) fn status_current(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    let now = now_ms();
    let st = lab.state();
    let g = guest(&st, cx, vmid)?;
    let mut o = summary(g, now);
    o.insert("ha".into(), json!({"managed": 0}));
    o.insert("qmpstatus".into(), json!(if g.running_since_ms.is_some() { "running" } else { "stopped" }));
    if agent_enabled(&g.config) {
        o.insert("agent".into(), json!(1));
    }
    Ok(Value::Object(o))
}

/// `POST …/status/start`: a `qmstart` task; a locked guest is refused before it, one already
/// running fails in it (`vm_start`: `VM N already running`).
pub(super) fn start(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    check_lock(guest(&lab.state(), cx, vmid)?)?;
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.node, "qmstart", &vmid.to_string(), &cx.caller.authid, cx.fail, {
            move |lab| {
                let mut st = lab.state();
                let g = guest_mut(&mut st, &store, &node, vmid).map_err(|e| e.msg)?;
                if g.running_since_ms.is_some() {
                    return Err(format!("VM {vmid} already running"));
                }
                g.running_since_ms = Some(now_ms());
                lab.save(&st);
                Ok(vec![])
            }
        });
    Ok(json!(upid))
}

/// `POST …/status/stop`: a `qmstop` task (a stopped guest stays stopped, the task succeeds).
pub(super) fn stop(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    guest(&lab.state(), cx, vmid)?;
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let upid =
        lab.spawn_task(Product::Pve, &cx.store, &cx.node, "qmstop", &vmid.to_string(), &cx.caller.authid, cx.fail, {
            move |lab| {
                let mut st = lab.state();
                let g = guest_mut(&mut st, &store, &node, vmid).map_err(|e| e.msg)?;
                g.running_since_ms = None;
                lab.save(&st);
                Ok(vec![])
            }
        });
    Ok(json!(upid))
}

/// `POST …/agent/ping` (`PVE::QemuServer::Agent::agent_available`, then `guest-ping`):
/// `No QEMU guest agent configured`, `VM N is not running`, `QEMU guest agent is not running`
/// (the guest-ping of `qga_check_running` got no answer), all 500; else `{"result": {}}`.
pub(super) fn agent_ping(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    let st = lab.state();
    let g = guest(&st, cx, vmid)?;
    // `defined($conf->{agent})`: `agent: 0` passes here; its guest-ping then finds no channel.
    if !g.config.contains_key("agent") {
        return Err(ApiErr::die("No QEMU guest agent configured"));
    }
    let Some(since) = g.running_since_ms else {
        return Err(ApiErr::die(format!("VM {vmid} is not running")));
    };
    if !agent_enabled(&g.config) || !g.os_agent || now_ms().saturating_sub(since) < AGENT_BOOT_MS {
        return Err(ApiErr::die("QEMU guest agent is not running"));
    }
    Ok(json!({"result": {}}))
}

/// `GET …/config`: the current config with its `digest`.
pub(super) fn config_get(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    let st = lab.state();
    let g = guest(&st, cx, vmid)?;
    let mut o = g.config.clone();
    o.insert("digest".into(), json!(digest_of(&g.config)));
    if let Some(l) = &g.lock {
        o.insert("lock".into(), json!(l));
    }
    Ok(Value::Object(o))
}

/// `PUT …/config` (`update_vm`, synchronous): `delete` removes keys, the other given options
/// are set. The lab's guests are changed at once (no pending section: PVE applies changes to a
/// stopped guest at once too).
pub(super) fn config_put(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    let (store, node) = (cx.store.clone(), cx.node.clone());
    mutate(lab, |st| {
        let g = guest_mut(st, &store, &node, vmid)?;
        check_lock(g)?;
        if let Some(d) = p_str(p, "digest") {
            if d != digest_of(&g.config) {
                return Err(ApiErr::die("detected modified configuration - file changed by other user? Try again."));
            }
        }
        for k in delete_list(p) {
            g.config.remove(&k);
        }
        const NOT_CONFIG: &[&str] =
            &["node", "vmid", "delete", "digest", "force", "skiplock", "revert", "background_delay"];
        for (k, v) in p {
            if !NOT_CONFIG.contains(&k.as_str()) {
                g.config.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Null)
    })
}

/// `DELETE /nodes/{node}/qemu/{vmid}`: a missing config is `load_config`'s 500, a running
/// guest `VM N is running - destroy failed`, a locked one `VM is locked (…)`, all before the
/// `qmdestroy` task that removes it.
pub(super) fn destroy(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    {
        let st = lab.state();
        let g = guest(&st, cx, vmid)?;
        check_lock(g)?;
        if g.running_since_ms.is_some() {
            return Err(ApiErr::die(format!("VM {vmid} is running - destroy failed")));
        }
    }
    let (store, node) = (cx.store.clone(), cx.node.clone());
    let upid = lab.spawn_task(
        Product::Pve,
        &cx.store,
        &cx.node,
        "qmdestroy",
        &vmid.to_string(),
        &cx.caller.authid,
        cx.fail,
        move |lab| {
            let mut st = lab.state();
            let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or("node vanished")?;
            n.guests.remove(&vmid).ok_or_else(|| no_config(&node, vmid).msg)?;
            lab.save(&st);
            Ok(vec![format!("  Logical volume \"vm-{vmid}-disk-0\" successfully removed.")])
        },
    );
    Ok(json!(upid))
}

/// A PBS storage's volume name, `backup/TYPE/ID/%FT%TZ` (pve-storage `PBSPlugin::parse_volname`).
fn parse_pbs_volname(volname: &str) -> Option<(String, String, i64)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = crate::formats::re(
        &RE,
        r"^backup/([^\s_]+)/([^\s_]+)/([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)$",
    );
    let c = re.captures(volname)?;
    Some((c[1].to_string(), c[2].to_string(), parse_rfc3339(&c[3])?))
}

/// `%FT%TZ` of epoch seconds (PBS snapshot names, PVE's PBS volume ids).
pub fn rfc3339(t: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default()
}

/// The inverse of [`rfc3339`]: `None` unless it is exactly `%FT%TZ` with a valid date and time.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    Some(time::PrimitiveDateTime::parse(s, format).ok()?.assume_utc().unix_timestamp())
}

/// The PBS datastore a PVE storage of type `pbs` points to.
fn pbs_datastore(cfg: &Map<String, Value>) -> Option<String> {
    (cfg.get("type").and_then(Value::as_str) == Some("pbs"))
        .then(|| cfg.get("datastore").and_then(Value::as_str).map(str::to_string))
        .flatten()
}

/// The storage id of a disk volume (`local-lvm:vm-100-disk-0,size=8G`).
fn volume_storage(v: Option<&Value>) -> Option<String> {
    v?.as_str()?.split(':').next().map(str::to_string)
}

/// `POST /nodes/{node}/qemu` with `archive` (qemu-server `create_vm`): checked before the
/// worker — the archive's storage exists and is a PBS storage with a parsable volume name, the
/// target storage exists, the vmid is free (`check_vmid_unused`) — then the config appears
/// with `lock: create` and a `qmrestore` task restores (`restore_proxmox_backup_archive`): the
/// disk is allocated on the target storage (the backup's own by default), `pbs-restore`
/// reads the chunks, and the config from the backup is written with new MAC addresses when
/// `unique`. A failed restore removes its volumes and the config.
pub(super) fn create(lab: &Arc<Lab>, cx: &Cx, p: &Params) -> ApiResult {
    let vmid = vmid_of(p)?;
    let Some(archive) = p_str(p, "archive") else {
        return Err(ApiErr::die("edge-lab: creating a VM without 'archive' is not modelled (restores only)"));
    };
    let target = p_str(p, "storage");
    let unique = p_true(p, "unique");
    let start_after = p_true(p, "start");
    let (datastore, snap_ref, pbs_address) = {
        let st = lab.state();
        let (s, _) = node_ref(&st, &cx.store, &cx.node)?;
        let dom = domain(&st, &cx.store, &cx.node)?;
        let storages = dom.collections.get("storage");
        let Some((storeid, volname)) = archive.split_once(':') else {
            return Err(ApiErr::die(format!("unable to parse volume ID '{archive}'")));
        };
        let scfg = storages
            .and_then(|c| c.get(storeid))
            .ok_or_else(|| ApiErr::die(format!("storage '{storeid}' does not exist")))?;
        let datastore = pbs_datastore(scfg)
            .ok_or_else(|| ApiErr::die("edge-lab: only restores from a PBS storage are modelled"))?;
        let snap = parse_pbs_volname(volname)
            .ok_or_else(|| ApiErr::die(format!("unable to parse PBS volume name '{volname}'")))?;
        if let Some(t) = &target {
            if t != DEFAULT_STORAGE && storages.and_then(|c| c.get(t)).is_none() {
                return Err(ApiErr::die(format!("storage '{t}' does not exist")));
            }
        }
        if let Some(on) = vmlist(&st, &cx.store, &cx.node).get(&vmid) {
            return Err(ApiErr::die(format!("VM {vmid} already exists on node '{on}'")));
        }
        let user = scfg.get("username").and_then(Value::as_str).unwrap_or("root@pam").to_string();
        (datastore, snap, format!("{user}@{}:{}", s.pbs.address, "DATASTORE"))
    };
    let (store, node) = (cx.store.clone(), cx.node.clone());
    // A fault-injected task fails without doing its work, so it reserves nothing either.
    mutate(lab, |st| {
        if cx.fail {
            return Ok(());
        }
        let n = st.store_mut(&store).and_then(|s| s.node_mut(&node)).ok_or_else(|| ApiErr::die("node vanished"))?;
        n.guests.insert(
            vmid,
            Guest {
                vmid,
                config: Map::new(),
                disk_bytes: 0,
                os_agent: false,
                running_since_ms: None,
                lock: Some("create".into()),
            },
        );
        Ok(())
    })?;
    let repo = pbs_address.replace("DATASTORE", &datastore);
    let upid = lab.spawn_task_logged(
        Product::Pve,
        &cx.store,
        &cx.node,
        "qmrestore",
        &vmid.to_string(),
        &cx.caller.authid,
        cx.fail,
        move |lab, log| {
            let mut st = lab.state();
            let r = restore(&mut st, &store, &node, vmid, &datastore, &snap_ref, &repo, target, unique, log);
            match r {
                Ok(()) => {
                    if let Some(g) =
                        st.store_mut(&store).and_then(|s| s.node_mut(&node)).and_then(|n| n.guests.get_mut(&vmid))
                    {
                        if start_after {
                            g.running_since_ms = Some(now_ms());
                        }
                    }
                    lab.save(&st);
                    Ok(())
                }
                Err(e) => {
                    // `$restore_destroy_volumes`, then the config goes.
                    if let Some(n) = st.store_mut(&store).and_then(|s| s.node_mut(&node)) {
                        n.guests.remove(&vmid);
                    }
                    lab.save(&st);
                    Err(e)
                }
            }
        },
    );
    Ok(json!(upid))
}

/// The work of a `qmrestore` task from PBS, logging as qemu-server does.
#[allow(clippy::too_many_arguments)]
fn restore(
    st: &mut LabState,
    store: &str,
    node: &str,
    vmid: u32,
    datastore: &str,
    (btype, bid, btime): &(String, String, i64),
    repo: &str,
    target: Option<String>,
    unique: bool,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let s = st.store(store).ok_or("store vanished")?;
    let ds_path = crate::pbs::config::datastore(s, datastore)
        .and_then(|d| d.get("path").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| format!("restore failed: no such datastore '{datastore}'"))?;
    let snapname = format!("{btype}/{bid}/{}", rfc3339(*btime));
    let snap = s
        .pbs
        .snapshots
        .get(datastore)
        .into_iter()
        .flatten()
        .find(|b| b.ns.is_empty() && b.backup_type == *btype && b.backup_id == *bid && b.backup_time == *btime)
        .filter(|b| b.finished)
        .cloned()
        .ok_or_else(|| {
            format!(
                "unable to open snapshot directory \"{ds_path}/{btype}/{bid}/{}\" for locking - ENOENT: No such file or directory",
                rfc3339(*btime)
            )
        })?;
    let image = snap.guest.clone().unwrap_or_else(|| default_image(&snap));
    let storage = target.or_else(|| volume_storage(image.config.get("scsi0"))).unwrap_or(DEFAULT_STORAGE.into());
    let full = s.node(node).is_some_and(|n| n.full_storages.contains(&storage));
    let volname = format!("vm-{vmid}-disk-0");
    if full {
        return Err(format!(
            "lvcreate 'pve/{volname}' error:   Cannot create new thin volume, free space in thin pool pve/data reached threshold.\n"
        ));
    }
    log.push(format!("new volume ID is '{storage}:{volname}'"));
    let cmd = format!(
        "/usr/bin/pbs-restore --repository {repo} {snapname} drive-scsi0.img.fidx /dev/pve/{volname} --verbose --format raw --skip-zero"
    );
    log.push(format!("restore proxmox backup image: {cmd}"));
    log.push(format!("connecting to repository '{repo}'"));
    log.push(format!("open block backend for target '/dev/pve/{volname}'"));
    log.push(format!("starting to restore snapshot '{snapname}'"));
    log.push("download and verify backup index".into());
    if let Some(digest) = &snap.missing_chunk {
        log.push(format!(
            "restore failed: reading file \"{ds_path}/.chunks/{}/{digest}\" failed: No such file or directory (os error 2)",
            &digest[..4]
        ));
        log.push(format!("  Logical volume \"{volname}\" successfully removed."));
        return Err(format!("command '{cmd}' failed: exit code 255"));
    }
    log.push(format!("progress 100% (read {} bytes, zeroes = 0% (0 bytes), duration 1 sec)", image.disk_bytes));
    log.push(format!(
        "restore image complete (bytes={}, duration=1.00s, speed={}.00MB/s)",
        image.disk_bytes,
        image.disk_bytes >> 20
    ));
    log.push("rescan volumes...".into());
    let mut config = image.config.clone();
    config.insert("scsi0".into(), json!(format!("{storage}:{volname},size={}G", image.disk_bytes >> 30)));
    if unique {
        for (k, v) in config.iter_mut() {
            if k.starts_with("net") {
                if let Some(s) = v.as_str() {
                    *v = json!(with_new_mac(s));
                }
            }
        }
    }
    let g = guest_mut(st, store, node, vmid).map_err(|e| e.msg)?;
    g.config = config;
    g.disk_bytes = image.disk_bytes;
    g.os_agent = image.os_agent;
    g.lock = None;
    Ok(())
}

/// `net0`'s model=MAC replaced by a new locally administered address (`unique`).
fn with_new_mac(net: &str) -> String {
    let hex = random_hex(6).to_uppercase();
    let mac = format!("BC:24:11:{}:{}:{}", &hex[0..2], &hex[2..4], &hex[4..6]);
    net.split(',')
        .enumerate()
        .map(|(i, kv)| match kv.split_once('=') {
            Some((model, _)) if i == 0 && !["bridge", "firewall", "link_down", "tag"].contains(&model) => {
                format!("{model}={mac}")
            }
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a restore of a snapshot added by hand (`POST /lab/backups`, no guest recorded) makes.
fn default_image(snap: &BackupSnapshot) -> GuestImage {
    let disk = snap.files.iter().find(|(f, _)| f.ends_with(".img.fidx")).map(|(_, n)| *n).unwrap_or(8 << 30);
    let mut config = Map::new();
    config.insert("memory".into(), json!("2048"));
    config.insert("cores".into(), json!(1));
    config.insert("scsihw".into(), json!("virtio-scsi-pci"));
    config
        .insert("scsi0".into(), json!(format!("{DEFAULT_STORAGE}:vm-{}-disk-0,size={}G", snap.backup_id, disk >> 30)));
    config.insert("net0".into(), json!("virtio=BC:24:11:00:00:01,bridge=vmbr0"));
    config.insert("ostype".into(), json!("l26"));
    GuestImage { config, disk_bytes: disk, os_agent: false }
}

/// The admin API's `POST /lab/guests`: `{"store"?, "node", "vmid", "name"?, "disk_gb"?: 8,
/// "memory"?: 2048, "agent"?: true (`agent: 1` in the config), "os_agent"?: the guest OS runs
/// qemu-guest-agent (default: as `agent`), "running"?: true}`.
pub fn seed_guest(st: &mut LabState, store: &str, body: &Value) -> Result<Value, (u16, String)> {
    let node = body.get("node").and_then(Value::as_str).ok_or((400, "missing \"node\"".to_string()))?;
    let vmid = body
        .get("vmid")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| (100..1_000_000_000).contains(v))
        .ok_or((400, "\"vmid\" is a number from 100".to_string()))?;
    if st.store(store).and_then(|s| s.node(node)).is_none() {
        return Err((404, format!("no such node '{node}'")));
    }
    if let Some(on) = vmlist(st, store, node).get(&vmid) {
        return Err((409, format!("VM {vmid} already exists on node '{on}'")));
    }
    let agent = body.get("agent").and_then(Value::as_bool).unwrap_or(true);
    let os_agent = body.get("os_agent").and_then(Value::as_bool).unwrap_or(agent);
    let disk_gb = body.get("disk_gb").and_then(Value::as_u64).unwrap_or(8).max(1);
    let memory = body.get("memory").and_then(Value::as_u64).unwrap_or(2048);
    let running = body.get("running").and_then(Value::as_bool).unwrap_or(true);
    let mut config = Map::new();
    if let Some(name) = body.get("name").and_then(Value::as_str) {
        config.insert("name".into(), json!(name));
    }
    config.insert("memory".into(), json!(memory.to_string()));
    config.insert("cores".into(), json!(2));
    config.insert("ostype".into(), json!("l26"));
    config.insert("scsihw".into(), json!("virtio-scsi-pci"));
    config.insert("boot".into(), json!("order=scsi0;net0"));
    config.insert("scsi0".into(), json!(format!("{DEFAULT_STORAGE}:vm-{vmid}-disk-0,size={disk_gb}G")));
    config.insert("net0".into(), json!(with_new_mac("virtio=00:00:00:00:00:00,bridge=vmbr0,firewall=1")));
    if agent {
        config.insert("agent".into(), json!("1"));
    }
    let g = Guest {
        vmid,
        config,
        disk_bytes: disk_gb << 30,
        os_agent,
        running_since_ms: running.then(|| now_ms().saturating_sub(AGENT_BOOT_MS)),
        lock: None,
    };
    let out = json!({"node": node, "vmid": vmid, "config": g.config});
    st.store_mut(store)
        .and_then(|s| s.node_mut(node))
        .ok_or((404, "node vanished".to_string()))?
        .guests
        .insert(vmid, g);
    Ok(out)
}

/// The admin API's `POST /lab/storage-full`: `{"store"?, "node", "storage", "full"?: true}`.
pub fn set_storage_full(st: &mut LabState, store: &str, body: &Value) -> Result<Value, (u16, String)> {
    let node = body.get("node").and_then(Value::as_str).ok_or((400, "missing \"node\"".to_string()))?;
    let storage = body.get("storage").and_then(Value::as_str).ok_or((400, "missing \"storage\"".to_string()))?;
    let full = body.get("full").and_then(Value::as_bool).unwrap_or(true);
    let n = st.store_mut(store).and_then(|s| s.node_mut(node)).ok_or((404, format!("no such node '{node}'")))?;
    if full {
        n.full_storages.insert(storage.to_string());
    } else {
        n.full_storages.remove(storage);
    }
    Ok(json!({"node": node, "full_storages": n.full_storages}))
}

/// The nodes a config domain (`node:STORE/NODE`, `cluster:STORE/NAME`) spans.
fn domain_nodes(s: &StoreState, key: &str) -> Vec<String> {
    match key.split_once(':') {
        Some(("node", rest)) => rest.split_once('/').map(|(_, n)| vec![n.to_string()]).unwrap_or_default(),
        Some(("cluster", rest)) => {
            let c = rest.split_once('/').map(|(_, c)| c).unwrap_or_default();
            s.nodes.iter().filter(|n| n.cluster.as_deref() == Some(c)).map(|n| n.name.clone()).collect()
        }
        _ => vec![],
    }
}

/// A vzdump list (`100,101` or `100 101`).
fn split_list(v: Option<&Value>) -> Vec<u32> {
    let s = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return vec![],
    };
    s.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter_map(|x| x.trim().parse().ok()).collect()
}

/// The admin API's `POST /lab/stores/{store}/backup-jobs/{id}/run`, standing for the job's
/// schedule firing (`vzdump --all|--vmid … --storage S` on each node): the guests are those
/// pve-manager's `PVE::VZDump::get_included_guests` picks — the `vmid` list, or with `all`
/// every guest of the cluster but the `exclude` list, only those on `node` when the job names
/// one — and each gets a snapshot `vm/VMID/NOW` in the datastore of the job's PBS storage,
/// carrying the guest's config. Body (optional): `{"backup_time"?: epoch seconds}`.
pub fn run_backup_job(st: &mut LabState, store: &str, id: &str, body: &Value) -> Result<Value, (u16, String)> {
    let s = st.store(store).ok_or((404, format!("no such store '{store}'")))?;
    let mut runs = Vec::new();
    for (key, d) in st.domains.iter().filter(|(k, _)| k.contains(&format!(":{store}/"))) {
        let Some(job) = d.collections.get("backup").and_then(|b| b.get(id)) else { continue };
        let nodes = domain_nodes(s, key);
        let guests: BTreeMap<u32, (String, &Guest)> = nodes
            .iter()
            .filter_map(|n| s.node(n))
            .flat_map(|n| n.guests.iter().map(move |(id, g)| (*id, (n.name.clone(), g))))
            .collect();
        let wanted: Vec<u32> = if job.get("vmid").is_some() {
            split_list(job.get("vmid"))
        } else if job.get("all").is_some_and(|v| v.as_bool() == Some(true) || v.as_i64() == Some(1) || v == "1") {
            let exclude = split_list(job.get("exclude"));
            guests.keys().filter(|g| !exclude.contains(g)).copied().collect()
        } else {
            vec![]
        };
        let job_node = job.get("node").and_then(Value::as_str);
        let storage = job.get("storage").and_then(Value::as_str).unwrap_or("local").to_string();
        let scfg = d
            .collections
            .get("storage")
            .and_then(|c| c.get(&storage))
            .ok_or((409, format!("the job's storage '{storage}' does not exist")))?;
        let datastore =
            pbs_datastore(scfg).ok_or((409, format!("the job's storage '{storage}' is not a PBS storage")))?;
        if crate::pbs::config::datastore(s, &datastore).is_none() {
            return Err((409, format!("PBS has no datastore '{datastore}' (storage '{storage}')")));
        }
        let owner = scfg.get("username").and_then(Value::as_str).unwrap_or("root@pam").to_string();
        let mut picked = Vec::new();
        let mut missing = Vec::new();
        for vmid in wanted {
            match guests.get(&vmid) {
                Some((n, g)) if job_node.is_none_or(|j| j == n) => picked.push((*g).clone()),
                Some(_) => {}
                None => missing.push(vmid),
            }
        }
        runs.push((datastore, owner, picked, missing));
    }
    if runs.is_empty() {
        return Err((404, format!("no backup job '{id}' in store '{store}'")));
    }
    let time = body.get("backup_time").and_then(Value::as_i64).unwrap_or(now_s() as i64);
    let s = st.store_mut(store).ok_or((404, "store vanished".to_string()))?;
    let mut made = Vec::new();
    let mut not_found = Vec::new();
    for (datastore, owner, guests, missing) in runs {
        not_found.extend(missing);
        let snaps = s.pbs.snapshots.entry(datastore.clone()).or_default();
        for g in guests {
            let bid = g.vmid.to_string();
            let group = |b: &&BackupSnapshot| b.ns.is_empty() && b.backup_type == "vm" && b.backup_id == bid;
            let owner = snaps.iter().find(group).map(|b| b.owner.clone()).unwrap_or_else(|| owner.clone());
            let mut t = time;
            while snaps.iter().filter(group).any(|b| b.backup_time == t) {
                t += 1;
            }
            let conf_len = serde_json::to_vec(&g.config).map(|v| v.len() as u64).unwrap_or(512);
            let snap = BackupSnapshot {
                ns: String::new(),
                backup_type: "vm".into(),
                backup_id: bid.clone(),
                backup_time: t,
                owner,
                finished: true,
                files: vec![("qemu-server.conf.blob".into(), conf_len), ("drive-scsi0.img.fidx".into(), g.disk_bytes)],
                verification: None,
                guest: Some(GuestImage { config: g.config.clone(), disk_bytes: g.disk_bytes, os_agent: g.os_agent }),
                missing_chunk: None,
            };
            made.push(
                json!({"datastore": datastore, "snapshot": format!("vm/{bid}/{}", rfc3339(t)), "backup_time": t}),
            );
            snaps.push(snap);
        }
    }
    Ok(json!({"job": id, "snapshots": made, "not_found": not_found}))
}

/// The admin API's `POST /lab/backups/missing-chunk`: `{"store"?, "datastore"?,
/// "backup_type"?: "vm", "backup_id", "backup_time"?}` (default: the group's newest finished
/// snapshot) loses one chunk from the chunk store; the answer names its digest.
pub fn lose_chunk(st: &mut LabState, store: &str, body: &Value) -> Result<Value, (u16, String)> {
    let s = st.store_mut(store).ok_or((404, format!("no such store '{store}'")))?;
    let datastore = body
        .get("datastore")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| crate::pbs::datastore_name(s));
    let btype = body.get("backup_type").and_then(Value::as_str).unwrap_or("vm").to_string();
    let bid = match body.get("backup_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err((400, "missing \"backup_id\"".into())),
    };
    let time = body.get("backup_time").and_then(Value::as_i64);
    let snaps = s.pbs.snapshots.get_mut(&datastore).ok_or((404, format!("no snapshots in '{datastore}'")))?;
    let snap = snaps
        .iter_mut()
        .filter(|b| b.backup_type == btype && b.backup_id == bid && b.finished)
        .filter(|b| time.is_none_or(|t| b.backup_time == t))
        .max_by_key(|b| b.backup_time)
        .ok_or((404, format!("no finished snapshot of {btype}/{bid}")))?;
    let digest = random_hex(64);
    snap.missing_chunk = Some(digest.clone());
    Ok(json!({"snapshot": format!("{btype}/{bid}/{}", rfc3339(snap.backup_time)), "chunk": digest}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_700_000_000, 1_798_761_599, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_pbs_volname("backup/vm/100/2023-11-14T22:13:20Z"),
            Some(("vm".into(), "100".into(), 1_700_000_000))
        );
        assert_eq!(parse_pbs_volname("backup/vm/100/2023-11-14 22:13:20"), None);
        assert_eq!(parse_pbs_volname("vm/100/2023-11-14T22:13:20Z"), None);
    }

    #[test]
    fn agent_property_string() {
        let c = |v: Value| {
            let mut m = Map::new();
            m.insert("agent".into(), v);
            m
        };
        assert!(agent_enabled(&c(json!("1"))));
        assert!(agent_enabled(&c(json!("enabled=1,fstrim_cloned_disks=1"))));
        assert!(agent_enabled(&c(json!("1,type=virtio"))));
        assert!(!agent_enabled(&c(json!("0"))));
        assert!(!agent_enabled(&c(json!("enabled=0"))));
        assert!(!agent_enabled(&Map::new()));
    }

    #[test]
    fn unique_gives_a_new_mac_and_keeps_the_rest() {
        let n = with_new_mac("virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0,firewall=1");
        assert!(n.starts_with("virtio=BC:24:11:") && n.ends_with(",bridge=vmbr0,firewall=1"), "{n}");
        assert_ne!(n, "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0,firewall=1");
    }
}
