//! Step 5: cluster membership — create the cluster on the first node, join the others through a
//! member; on destroy, remove the node through another member (`pvecm delnode`). Membership is
//! read first: a node already in the wanted cluster is left alone, one in another cluster is
//! refused.

use std::convert::Infallible;
use std::time::Duration;

use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::pve::{JoinRequest, PveClient};
use crate::clients::redfish::probe_fingerprint;
use crate::framework::{AttrPath, Ctx, Diagnostics};

use super::trust::node_client;
use super::{diag, req, Cluster, Node, State, PVE_PORT};

/// Creates or joins the cluster unless the node is in it already.
pub(super) async fn converge(node: &Node<'_>, pve: &PveClient, fp: &str, cl: &Cluster) -> Result<(), Diagnostics> {
    if let Some(have) = name(pve).await? {
        return check_same(node.name, &have, cl);
    }
    if cl.create == Some(true) {
        create(node, pve, cl).await
    } else if let Some(join) = &cl.join {
        self::join(node, pve, fp, cl, join).await
    } else {
        Ok(())
    }
}

/// A node in a cluster other than the configured one is not moved silently.
fn check_same(name: &str, have: &str, cl: &Cluster) -> Result<(), Diagnostics> {
    if cl.name.as_ref().is_some_and(|want| want != have) {
        return Err(Diagnostics::at(
            AttrPath::root("cluster").attr("name"),
            "Node is in another cluster",
            format!("{name} is a member of {have:?}; leave it first (or re-image the node)."),
        ));
    }
    Ok(())
}

async fn create(node: &Node<'_>, pve: &PveClient, cl: &Cluster) -> Result<(), Diagnostics> {
    let cname = req(&cl.name, "cluster.name")?;
    tracing::info!(node = %node.name, cluster = %cname, "creating the cluster");
    let upid = pve.create_cluster(&cname).await.map_err(|e| diag("Cannot create the cluster", e))?;
    pve.wait_maybe(upid, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Cluster creation failed", e))
}

/// Joins through the member at `join`, then re-establishes access to this node: the join
/// replaced its `/etc/pve`, so its own tokens are gone and the cluster's apply.
async fn join(node: &Node<'_>, pve: &PveClient, fp: &str, cl: &Cluster, join: &str) -> Result<(), Diagnostics> {
    let password = cl.root_password.clone().ok_or_else(|| {
        Diagnostics::at(
            AttrPath::root("cluster").attr("root_password"),
            "Missing root password",
            "Joining a cluster needs the member's root@pam password.",
        )
    })?;
    let member_fp = match &cl.fingerprint {
        Some(f) => f.clone(),
        None => probe_fingerprint(join, PVE_PORT, Duration::from_secs(10))
            .await
            .map_err(|e| diag(&format!("Cannot reach the cluster member {join}"), e))?,
    };
    // The member may still be forming the cluster (nodes boot in parallel when the
    // configuration does not chain them): wait until it is in one, then join.
    let member = node_client(node.ctx, join, &member_fp, true)?;
    wait_in_cluster(node, &member, join).await?;
    tracing::info!(node = %node.name, via = %join, "joining the cluster");
    let request = JoinRequest { hostname: join.to_string(), fingerprint: member_fp, password };
    let upid = pve.join_cluster(&request).await.map_err(|e| diag("Cannot join the cluster", e))?;
    pve.wait_maybe(upid, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Cluster join failed", e))?;
    // A fresh client with the cluster's token, which is the provider's.
    let fresh = node_client(node.ctx, node.address, fp, true)?;
    wait_in_cluster(node, &fresh, node.name).await
}

/// Polls (with backoff) until the node behind `pve` reports a cluster.
async fn wait_in_cluster(node: &Node<'_>, pve: &PveClient, who: &str) -> Result<(), Diagnostics> {
    let ctx = node.ctx;
    let backoff =
        Backoff::new(Duration::from_millis(25), Duration::from_millis(500)).fixed(ctx.clients.settings.fixed_poll);
    // Any answer but a cluster (none yet, or an error while the member restarts) is "not yet".
    let probe = move || async move {
        match name(pve).await {
            Ok(Some(_)) => Probe::Ready(()),
            Ok(None) => Probe::NotYet("no cluster yet".to_string()),
            Err(e) => Probe::NotYet(e.0.iter().map(|d| d.detail.clone()).collect::<Vec<_>>().join("; ")),
        }
    };
    let outcome: Result<(), PollError<Infallible>> =
        poll_until(node.deadline, &ctx.stop, &format!("{who} to be in a cluster"), backoff, probe).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(PollError::Timeout { last, .. }) => Err(Diagnostics::error(
            "Cluster not ready",
            format!("{who} is not in a cluster before the deadline: {last}"),
        )),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {who}"))),
        Err(PollError::Failed(never)) => match never {},
    }
}

/// The name of the cluster the node behind `pve` is in, if any.
async fn name(pve: &PveClient) -> Result<Option<String>, Diagnostics> {
    let status = pve.cluster_status().await.map_err(|e| diag("Cannot read the cluster status", e))?;
    Ok(status.cluster_name().map(str::to_string))
}

/// Refresh: the `cluster` block disappears when the node is in no cluster (drift: apply joins
/// again); its name is read back only when the configuration sets one.
pub(super) async fn read(pve: &PveClient, st: &mut State) -> Result<(), Diagnostics> {
    if let Some(cl) = st.cluster.clone() {
        st.cluster = match name(pve).await? {
            None => None,
            Some(have) => Some(Cluster { name: cl.name.as_ref().map(|_| have), ..cl }),
        };
    }
    Ok(())
}

/// Another member of the node's cluster (its API address and certificate fingerprint), asked
/// of the node itself while it still answers; `None` when it does not or is alone.
pub(super) async fn other_member(ctx: &Ctx, name: &str, address: &str, prior: &State) -> Option<(String, String)> {
    let fp = prior.tls_fingerprint_trusted.clone().or(prior.tls_fingerprint.clone())?;
    let pve = node_client(ctx, address, &fp, true).ok()?;
    let info = pve.join_info().await.ok()??;
    info.nodelist.into_iter().filter(|n| n.name != name).find_map(|n| Some((n.pve_addr?, n.pve_fp?)))
}

/// Removes `name` from the cluster through `member` (PVE's rule: the node is powered off first).
pub(super) async fn remove(ctx: &Ctx, name: &str, member: (String, String)) -> Result<(), Diagnostics> {
    let (addr, fp) = member;
    let pve = node_client(ctx, &addr, &fp, false)?;
    tracing::info!(node = %name, via = %addr, "removing the node from the cluster");
    // A node the cluster no longer lists counts as removed (the client checks the list).
    pve.delete_node(name).await.map_err(|e| diag("Cannot remove the node from the cluster", e))
}

/// What import learns of a node from the provider's cluster.
pub(super) struct Found {
    pub address: String,
    pub fingerprint: Option<String>,
    pub cluster: Option<String>,
}

/// Finds `name` in the cluster behind the provider's `pve` endpoint.
pub(super) async fn find(ctx: &Ctx, name: &str) -> Result<Found, Diagnostics> {
    let cfg = ctx.clients.pve.as_ref().ok_or_else(|| {
        Diagnostics::error("PVE API not configured", "Import finds the node through the provider's pve endpoint.")
    })?;
    let pve = crate::clients::pve(cfg).map_err(|e| diag("Cannot set up the PVE client", e))?;
    let status = pve.cluster_status().await.map_err(|e| diag("Cannot read the cluster", e))?;
    let entry = status
        .node(name)
        .ok_or_else(|| Diagnostics::error("No such node", format!("{name} is not a node of the provider's cluster")))?;
    let address = entry.ip.clone().unwrap_or_default();
    let nodes = pve.nodes().await.map_err(|e| diag("Cannot list nodes", e))?;
    let fingerprint = nodes.into_iter().find(|n| n.node == name).and_then(|n| n.ssl_fingerprint);
    Ok(Found { address, fingerprint, cluster: status.cluster_name().map(str::to_string) })
}

/// Plan-time checks of the `cluster` block.
pub(super) fn validate(c: &State, d: &mut Diagnostics) {
    let Some(cl) = &c.cluster else { return };
    let p = AttrPath::root("cluster");
    match (cl.create == Some(true), cl.join.is_some()) {
        (true, true) => d.error_at(
            p.clone().attr("join"),
            "Conflicting cluster settings",
            "A node either creates the cluster (create = true) or joins one (join = <member address>).",
        ),
        (true, false) if cl.name.is_none() => {
            d.error_at(p.clone().attr("name"), "Missing cluster name", "create = true needs the cluster's name.")
        }
        _ => {}
    }
    if let Some(n) = &cl.name {
        if n.is_empty() || n.len() > 15 || !n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
            d.error_at(
                p.attr("name"),
                "Invalid cluster name",
                format!("{n:?}: PVE allows 1–15 letters, digits and '-'"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_are_checked() {
        let paths = |c: Cluster| {
            let mut d = Diagnostics::new();
            validate(&State { cluster: Some(c), ..Default::default() }, &mut d);
            d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            paths(Cluster { create: Some(true), join: Some("10.0.0.1".into()), ..Default::default() }),
            ["cluster.join"]
        );
        assert_eq!(paths(Cluster { create: Some(true), ..Default::default() }), ["cluster.name"]);
        assert_eq!(paths(Cluster { name: Some("store_1".into()), ..Default::default() }), ["cluster.name"]);
        assert!(paths(Cluster { name: Some("store-1".into()), create: Some(true), ..Default::default() }).is_empty());
    }

    #[test]
    fn another_cluster_is_refused() {
        let cl = Cluster { name: Some("edge".into()), ..Default::default() };
        assert!(check_same("pve1", "edge", &cl).is_ok());
        assert!(check_same("pve1", "other", &cl).is_err());
        assert!(check_same("pve1", "other", &Cluster::default()).is_ok(), "no name configured: any cluster");
    }
}
