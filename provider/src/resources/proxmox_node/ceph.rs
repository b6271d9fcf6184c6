//! Step 6: the node's Ceph roles, in PVE's order — `pveceph init` where the cluster has no Ceph
//! yet; the monitor (the cluster's first one brings a manager named after its node, created by
//! PVE in a task of its own); a manager only where none is; OSDs on disks that hold nothing, or
//! that `wipe` allows wiping first. Roles are read first and only the missing ones are created,
//! so a re-run after a failed OSD picks up there.
//!
//! Before the first monitor exists PVE cannot reach Ceph at all: status, managers and OSDs
//! answer 500 (`rados_connect failed`), only the monitor list answers (empty). So the monitor
//! list is what tells "initialised" and "has a monitor" apart.

use std::time::Duration;

use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::pve::{CephDaemon, CephService, PveClient};
use crate::clients::ApiErrorKind;
use crate::framework::{AttrPath, Diagnostics};

use super::{diag, Ceph, Node, State};

/// Initialises Ceph if needed and creates the roles the node lacks. `new_cluster`: the cluster
/// was created in this run, so Ceph is initialised without asking first — the answer would be a
/// 500, which only the client's retries tell from a passing server error (seconds). Safe even
/// on a node that had Ceph before its cluster: `init` keeps an existing fsid and keys and sets
/// only the configured network (pve-manager `PVE/API2/Ceph.pm` `init`).
pub(super) async fn converge(node: &Node<'_>, pve: &PveClient, c: &Ceph, new_cluster: bool) -> Result<(), Diagnostics> {
    let name = node.name;
    let known = if new_cluster { None } else { monitors(pve, name).await? };
    let mons = match known {
        Some(m) => m,
        None => {
            tracing::info!(node = %name, "initialising Ceph");
            pve.ceph_init(name, c.network.as_deref()).await.map_err(|e| diag("Cannot initialise Ceph", e))?;
            monitors(pve, name).await?.unwrap_or_default()
        }
    };
    let mut has_mon = !mons.is_empty();
    if c.mon == Some(true) && !mons.iter().any(|m| m.on(name)) {
        create_monitor(node, pve, c, mons.is_empty()).await?;
        has_mon = true;
    }
    if c.mgr == Some(true) {
        if !has_mon {
            return Err(Diagnostics::at(
                AttrPath::root("ceph").attr("mgr"),
                "No Ceph monitor yet",
                format!("A manager needs a monitor in the cluster (PVE cannot reach Ceph without one): set ceph.mon = true on {name} or on a node that is set up before it."),
            ));
        }
        let mgrs = pve.ceph_daemons(name, CephDaemon::Mgr).await.map_err(|e| diag("Cannot read Ceph managers", e))?;
        if !mgrs.iter().any(|m| m.on(name)) {
            create_daemon(node, pve, CephDaemon::Mgr, None).await?;
        }
    }
    create_osds(node, pve, c).await
}

/// The cluster's monitors as `name` sees them; `None` when Ceph is not initialised there.
async fn monitors(pve: &PveClient, name: &str) -> Result<Option<Vec<CephService>>, Diagnostics> {
    match pve.ceph_daemons(name, CephDaemon::Mon).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.is(ApiErrorKind::NotInitialized) => Ok(None),
        Err(e) => Err(diag("Cannot read Ceph monitors", e)),
    }
}

/// The node's monitor (at `mon_address` when set). The cluster's first monitor brings a
/// manager for its node in a second task: waited for, so the manager step finds it.
async fn create_monitor(node: &Node<'_>, pve: &PveClient, c: &Ceph, first: bool) -> Result<(), Diagnostics> {
    create_daemon(node, pve, CephDaemon::Mon, c.mon_address.as_deref()).await?;
    if !first {
        return Ok(());
    }
    let name = node.name;
    let backoff =
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1)).fixed(node.ctx.clients.settings.fixed_poll);
    let probe = || async move {
        match pve.ceph_daemons(name, CephDaemon::Mgr).await {
            Ok(m) if m.iter().any(|m| m.on(name)) => Probe::Ready(()),
            Ok(_) => Probe::NotYet("no manager yet".to_string()),
            Err(e) => Probe::NotYet(e.to_string()),
        }
    };
    let outcome: Result<(), PollError<std::convert::Infallible>> =
        poll_until(node.deadline, &node.ctx.stop, &format!("the manager of {name}'s first monitor"), backoff, probe)
            .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(PollError::Timeout { last, .. }) => Err(Diagnostics::error(
            "Ceph manager missing",
            format!("PVE creates a manager with the cluster's first monitor; none showed up on {name}: {last}"),
        )),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {name}"))),
        Err(PollError::Failed(never)) => match never {},
    }
}

async fn create_daemon(
    node: &Node<'_>,
    pve: &PveClient,
    daemon: CephDaemon,
    address: Option<&str>,
) -> Result<(), Diagnostics> {
    let kind = match daemon {
        CephDaemon::Mon => "monitor",
        CephDaemon::Mgr => "manager",
    };
    tracing::info!(node = %node.name, kind, "creating Ceph daemon");
    let at = AttrPath::root("ceph").attr(if daemon == CephDaemon::Mon { "mon" } else { "mgr" });
    let upid = pve
        .ceph_create_daemon(node.name, daemon, address)
        .await
        .map_err(|e| Diagnostics::at(at.clone(), format!("Cannot create the Ceph {kind}"), e.to_string()))?;
    pve.wait_maybe(upid, node.deadline, &node.ctx.stop)
        .await
        .map_err(|e| Diagnostics::at(at, format!("Ceph {kind} creation failed"), e.to_string()))
}

/// One OSD per configured device that does not hold one yet, in the configured order. PVE
/// refuses a disk that holds anything; with `wipe` it is wiped first (root@pam only, as OSDs).
async fn create_osds(node: &Node<'_>, pve: &PveClient, c: &Ceph) -> Result<(), Diagnostics> {
    let name = node.name;
    let disks = pve.disks(name).await.map_err(|e| diag("Cannot list disks", e))?;
    for (i, dev) in c.osd_devices.iter().flatten().enumerate() {
        let at = AttrPath::root("ceph").attr("osd_devices").index(i);
        let disk = disks.iter().find(|d| d.devpath.as_deref() == Some(dev.as_str()));
        if disk.is_some_and(|d| d.has_osd()) {
            continue;
        }
        if let Some(used) = disk.and_then(|d| d.in_use()) {
            if c.wipe != Some(true) {
                return Err(Diagnostics::at(
                    at,
                    "Disk in use",
                    format!("{dev} on {name} holds {used}: PVE creates no OSD on it. Set ceph.wipe = true to wipe it first — everything on it is lost."),
                ));
            }
            tracing::warn!(node = %name, %dev, used, "wiping the disk for its OSD (ceph.wipe = true)");
            let upid = pve
                .wipe_disk(name, dev)
                .await
                .map_err(|e| Diagnostics::at(at.clone(), "Cannot wipe the disk", e.to_string()))?;
            pve.wait_maybe(upid, node.deadline, &node.ctx.stop)
                .await
                .map_err(|e| Diagnostics::at(at.clone(), "Wiping the disk failed", e.to_string()))?;
        }
        tracing::info!(node = %name, %dev, "creating OSD");
        let upid = pve
            .ceph_create_osd(name, dev)
            .await
            .map_err(|e| Diagnostics::at(at.clone(), format!("Cannot create an OSD on {dev}"), e.to_string()))?;
        pve.wait_maybe(upid, node.deadline, &node.ctx.stop)
            .await
            .map_err(|e| Diagnostics::at(at, format!("OSD creation on {dev} failed"), e.to_string()))?;
    }
    Ok(())
}

/// Refresh: the fsid, and the roles the state tracks (those the configuration sets).
pub(super) async fn read(pve: &PveClient, name: &str, st: &mut State) -> Result<(), Diagnostics> {
    let fsid = fsid(pve, name).await?;
    if let Some(c) = st.ceph.clone() {
        let roles = roles(pve, name).await?;
        let mut osds = roles.osd_devices.unwrap_or_default();
        // Keep the configuration's order when the set is the same.
        if let Some(want) = &c.osd_devices {
            let mut a = want.clone();
            a.sort();
            let mut b = osds.clone();
            b.sort();
            if a == b {
                osds = want.clone();
            }
        }
        st.ceph = Some(Ceph {
            mon: c.mon.map(|_| roles.mon.unwrap_or(false)),
            mgr: c.mgr.map(|_| roles.mgr.unwrap_or(false)),
            osd_devices: c.osd_devices.as_ref().map(|_| osds),
            ..c
        });
    }
    st.ceph_fsid = Some(fsid);
    Ok(())
}

/// The node's Ceph cluster fsid, or "" when Ceph is not set up there (or has no monitor yet).
pub(super) async fn fsid(pve: &PveClient, name: &str) -> Result<String, Diagnostics> {
    if monitors(pve, name).await?.is_none_or(|m| m.is_empty()) {
        return Ok(String::new());
    }
    match pve.ceph_status(name).await {
        Ok(s) => Ok(s.fsid.unwrap_or_default()),
        Err(e) if e.is(ApiErrorKind::NotInitialized) => Ok(String::new()),
        Err(e) => Err(diag("Cannot read the Ceph status", e)),
    }
}

/// Roles as PVE reports them; all `false`/empty when Ceph is not set up. Managers are asked for
/// only where a monitor exists (PVE cannot reach Ceph before).
async fn roles(pve: &PveClient, name: &str) -> Result<Ceph, Diagnostics> {
    let disks = pve.disks(name).await.map_err(|e| diag("Cannot list disks", e))?;
    let osds = disks.into_iter().filter(|d| d.has_osd()).filter_map(|d| d.devpath).collect();
    let mons = monitors(pve, name).await?.unwrap_or_default();
    let mgr = if mons.is_empty() {
        false
    } else {
        let m = pve.ceph_daemons(name, CephDaemon::Mgr).await.map_err(|e| diag("Cannot read Ceph managers", e))?;
        m.iter().any(|m| m.on(name))
    };
    Ok(Ceph {
        mon: Some(mons.iter().any(|m| m.on(name))),
        mgr: Some(mgr),
        osd_devices: Some(osds),
        ..Default::default()
    })
}

/// Plan-time checks: PVE gives the node with the cluster's first monitor a manager whatever the
/// configuration says, so `mgr = false` next to the creating node's monitor could never hold.
pub(super) fn validate(c: &State, d: &mut Diagnostics) {
    let Some(ceph) = &c.ceph else { return };
    let p = AttrPath::root("ceph");
    for (i, dev) in ceph.osd_devices.iter().flatten().enumerate() {
        if !is_device_path(dev) {
            d.error_at(
                p.clone().attr("osd_devices").index(i),
                "Invalid OSD device",
                format!("{dev:?}: give a whole disk by its path, e.g. \"/dev/sdb\" or \"/dev/disk/by-id/…\""),
            );
        }
    }
    // `ceph init`'s network has PVE format `CIDR`; a monitor's address format `ip`.
    if let Some(n) = &ceph.network {
        if !is_cidr(n) {
            d.error_at(
                p.clone().attr("network"),
                "Invalid Ceph network",
                format!("{n:?}: use a CIDR network, e.g. \"10.1.0.0/24\" or \"fd00:1::/64\""),
            );
        }
    }
    if let Some(a) = &ceph.mon_address {
        if a.parse::<std::net::IpAddr>().is_err() {
            d.error_at(
                p.clone().attr("mon_address"),
                "Invalid monitor address",
                format!("{a:?} is not an IP address: give the node's address in the Ceph public network, e.g. \"10.1.0.11\""),
            );
        }
    }
    let creates = c.cluster.as_ref().is_some_and(|cl| cl.create == Some(true));
    if creates && ceph.mon == Some(true) && ceph.mgr == Some(false) {
        d.error_at(
            AttrPath::root("ceph").attr("mgr"),
            "A manager comes with the first monitor",
            "PVE creates a manager with the cluster's first monitor (on the node that creates the cluster): leave mgr out or set it true here.",
        );
    }
}
/// A block device path as pveceph takes it: absolute under /dev, no `..`, no shell or option
/// characters.
fn is_device_path(dev: &str) -> bool {
    dev.strip_prefix("/dev/").is_some_and(|rest| {
        !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b':' | b'+'))
            && !rest.split('/').any(|c| c.is_empty() || c == "..")
    })
}

/// PVE's `CIDR` format: an IPv4 network with prefix 8–32 or an IPv6 one with prefix 8–128
/// (pve-common `pve_verify_cidr`).
fn is_cidr(c: &str) -> bool {
    c.split_once('/').is_some_and(|(a, len)| match (a.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(l)) => (8..=32).contains(&l),
        (Ok(std::net::IpAddr::V6(_)), Ok(l)) => (8..=128).contains(&l),
        _ => false,
    })
}
