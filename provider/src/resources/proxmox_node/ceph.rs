//! Step 6: the node's Ceph roles — `pveceph init` where the cluster has no Ceph yet, then a
//! monitor, a manager and OSDs as configured. Roles are read first and only the missing ones
//! are created, so a re-run after a failed OSD picks up there.

use crate::clients::pve::{CephDaemon, PveClient};
use crate::clients::ApiErrorKind;
use crate::framework::Diagnostics;

use super::{diag, Ceph, Node, State};

/// Initialises Ceph if needed and creates the roles the node lacks.
pub(super) async fn converge(node: &Node<'_>, pve: &PveClient, c: &Ceph) -> Result<(), Diagnostics> {
    init(pve, node.name, c).await?;
    let roles = roles(pve, node.name, true).await?;
    create_daemons(node, pve, c, &roles).await?;
    create_osds(node, pve, c, roles.osd_devices.unwrap_or_default()).await
}

/// Init is safe to repeat (PVE keeps the fsid), so any failure to read the status leads to it;
/// a real problem then shows as init's error.
async fn init(pve: &PveClient, name: &str, c: &Ceph) -> Result<(), Diagnostics> {
    if pve.ceph_status(name).await.is_err() {
        tracing::info!(node = %name, "initialising Ceph");
        pve.ceph_init(name, c.network.as_deref()).await.map_err(|e| diag("Cannot initialise Ceph", e))?;
    }
    Ok(())
}

/// A monitor and a manager where configured and not there yet, each waited for before the next.
async fn create_daemons(node: &Node<'_>, pve: &PveClient, c: &Ceph, have: &Ceph) -> Result<(), Diagnostics> {
    let name = node.name;
    for (want, have, daemon, kind) in
        [(c.mon, have.mon, CephDaemon::Mon, "mon"), (c.mgr, have.mgr, CephDaemon::Mgr, "mgr")]
    {
        if want == Some(true) && have != Some(true) {
            tracing::info!(node = %name, kind, "creating Ceph daemon");
            let upid = pve
                .ceph_create_daemon(name, daemon)
                .await
                .map_err(|e| diag(&format!("Cannot create the Ceph {kind}"), e))?;
            pve.wait_maybe(upid, node.deadline, &node.ctx.stop)
                .await
                .map_err(|e| diag(&format!("Ceph {kind} creation failed"), e))?;
        }
    }
    Ok(())
}

/// One OSD per configured device that does not hold one yet (`have`), in the configured order.
async fn create_osds(node: &Node<'_>, pve: &PveClient, c: &Ceph, have: Vec<String>) -> Result<(), Diagnostics> {
    let name = node.name;
    for dev in c.osd_devices.iter().flatten().filter(|d| !have.contains(d)) {
        tracing::info!(node = %name, %dev, "creating OSD");
        let upid =
            pve.ceph_create_osd(name, dev).await.map_err(|e| diag(&format!("Cannot create an OSD on {dev}"), e))?;
        pve.wait_maybe(upid, node.deadline, &node.ctx.stop)
            .await
            .map_err(|e| diag(&format!("OSD creation on {dev} failed"), e))?;
    }
    Ok(())
}

/// Refresh: the fsid, and the roles the state tracks (those the configuration sets).
pub(super) async fn read(pve: &PveClient, name: &str, st: &mut State) -> Result<(), Diagnostics> {
    // One look at Ceph serves both the fsid and whether the roles can be asked for.
    let fsid = fsid(pve, name).await?;
    if let Some(c) = st.ceph.clone() {
        let roles = roles(pve, name, !fsid.is_empty()).await?;
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
            network: c.network,
        });
    }
    st.ceph_fsid = Some(fsid);
    Ok(())
}

/// The node's Ceph cluster fsid, or "" when Ceph is not set up there.
pub(super) async fn fsid(pve: &PveClient, name: &str) -> Result<String, Diagnostics> {
    match pve.ceph_status(name).await {
        Ok(s) => Ok(s.fsid.unwrap_or_default()),
        Err(e) if e.is(ApiErrorKind::NotInitialized) => Ok(String::new()),
        Err(e) => Err(diag("Cannot read the Ceph status", e)),
    }
}

/// Roles as PVE reports them; all `false`/empty when Ceph is not set up (`initialized` false,
/// or the monitors cannot be asked for).
async fn roles(pve: &PveClient, name: &str, initialized: bool) -> Result<Ceph, Diagnostics> {
    let none = Ceph { mon: Some(false), mgr: Some(false), osd_devices: Some(vec![]), network: None };
    if !initialized {
        return Ok(none);
    }
    let mon = match pve.ceph_daemons(name, CephDaemon::Mon).await {
        Ok(l) => l.iter().any(|m| m.on(name)),
        Err(e) if e.is(ApiErrorKind::NotInitialized) => return Ok(none),
        Err(e) => return Err(diag("Cannot read Ceph monitors", e)),
    };
    let mgr = pve.ceph_daemons(name, CephDaemon::Mgr).await.map_err(|e| diag("Cannot read Ceph managers", e))?;
    let disks = pve.disks(name).await.map_err(|e| diag("Cannot list disks", e))?;
    let osds = disks.into_iter().filter(|d| d.has_osd()).filter_map(|d| d.devpath).collect();
    Ok(Ceph { mon: Some(mon), mgr: Some(mgr.iter().any(|m| m.on(name))), osd_devices: Some(osds), network: None })
}
