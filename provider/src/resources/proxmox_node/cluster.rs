//! Step 5: cluster membership — create the cluster on the first node, join the others through a
//! member; on destroy, leave the cluster through another member (`pvecm delnode`) while it has
//! quorum, before the node is powered off. Membership is read first: a node already in the
//! wanted cluster is left alone, one in another cluster is refused.
//!
//! As PVE runs them: create ends restarting corosync and pmxcfs (authentication fails for a
//! moment); a join is a task on the joining node that replaces its `/etc/pve` and certificate
//! (the new one signed by the cluster's CA) and restarts its API; a member being added counts
//! against quorum until its corosync runs, so joins (and removals) go one at a time per cluster,
//! each into a cluster that is quorate with every member online.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::clients::http::{probe_certificate, Credentials};
use crate::clients::poll::{poll_until, PollError, Probe};
use crate::clients::pve::{ClusterStatus, JoinRequest, PveClient};
use crate::framework::{AttrPath, Ctx, Diagnostics};

use super::trust::{self, node_client, Trusted};
use super::{diag, req, Cluster, Node, State, PVE_PORT};

/// What [`converge`] did to the node's membership.
pub(super) enum Membership {
    /// Already a member, or no cluster configured.
    Unchanged,
    /// Created the cluster in this run: it has no Ceph yet.
    Created,
    /// Joined: the node is now trusted through the cluster's CA (also in `st.cluster_ca_pem`).
    Joined(Trusted),
}

/// Creates or joins the cluster unless the node is in it already.
pub(super) async fn converge(
    node: &Node<'_>,
    pve: &PveClient,
    config: &State,
    st: &mut State,
) -> Result<Membership, Diagnostics> {
    let Some(cl) = &config.cluster else { return Ok(Membership::Unchanged) };
    if let Some(have) = name(pve).await? {
        check_same(node.name, &have, cl)?;
        return Ok(Membership::Unchanged);
    }
    if cl.create == Some(true) {
        create(node, pve, cl).await?;
        Ok(Membership::Created)
    } else if let Some(target) = &cl.join {
        let ca = join(node, pve, config, target).await?;
        st.cluster_ca_pem = Some(ca.clone());
        Ok(Membership::Joined(trust::by_ca(config, &ca)))
    } else {
        Ok(Membership::Unchanged)
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

/// `pvecm create` (root@pam only), waited out through the restart at its end, then until the
/// one-node cluster is quorate. The node's CA becomes the cluster's: nothing to re-trust.
async fn create(node: &Node<'_>, pve: &PveClient, cl: &Cluster) -> Result<(), Diagnostics> {
    let cname = req(&cl.name, "cluster.name")?;
    tracing::info!(node = %node.name, cluster = %cname, "creating the cluster");
    let upid = pve.create_cluster(&cname).await.map_err(|e| diag("Cannot create the cluster", e))?;
    if let Some(upid) = upid {
        pve.wait_task_through_restart(&upid, node.deadline, &node.ctx.stop)
            .await
            .map_err(|e| diag("Cluster creation failed", e))?;
    }
    wait_settled(node, pve, node.name).await
}

/// Joins through the member at `target` and returns the cluster's CA. The member is trusted
/// through `cluster.ca_pem` (or a pinned `cluster.fingerprint`), never on first use; PVE's join
/// pins the member's current certificate, read here over that trusted channel.
async fn join(node: &Node<'_>, pve: &PveClient, config: &State, target: &str) -> Result<String, Diagnostics> {
    let cl = config.cluster.clone().unwrap_or_default();
    let at = |a: &str| AttrPath::root("cluster").attr(a);
    let member_trust = match (&cl.fingerprint, &cl.ca_pem) {
        (Some(fp), _) => Trusted::Pin(fp.clone()),
        (None, Some(ca)) => Trusted::Ca(ca.clone()),
        (None, None) => {
            return Err(Diagnostics::at(
                at("ca_pem"),
                "No way to trust the cluster",
                "Set cluster.ca_pem to the creating node's cluster_ca_pem (or pin the member with cluster.fingerprint): the provider does not trust a member on first use.",
            ))
        }
    };
    let password = cl
        .root_password
        .clone()
        .or_else(|| config.root_password.clone())
        .or_else(|| node.ctx.clients.pve.as_ref().and_then(|p| p.root_password.clone()))
        .ok_or_else(|| {
            Diagnostics::at(
                at("root_password"),
                "Missing root password",
                "PVE's join logs in to the member as root@pam.",
            )
        })?;
    let member = node_client(target, &member_trust, &Credentials::root(&password), false)?;
    let node_ca = pve.root_ca(node.name).await.map_err(|e| diag("Cannot read the node's CA", e))?.unwrap_or_default();

    // One join per cluster at a time, into a cluster that is quorate with every member online.
    let lock = cluster_lock(target);
    let _held = lock.lock().await;
    wait_settled(node, &member, target).await?;
    let status = member.cluster_status().await.map_err(|e| diag("Cannot read the cluster", e))?;
    let member_name = status.0.iter().find(|e| e.kind == "node" && e.local == Some(true)).and_then(|e| e.name.clone());
    let member_name =
        member_name.ok_or_else(|| diag("Cannot read the cluster", format!("{target} does not name itself")))?;
    let cluster_ca = match &cl.ca_pem {
        Some(ca) => ca.clone(),
        None => member
            .root_ca(&member_name)
            .await
            .map_err(|e| diag("Cannot read the cluster's CA", e))?
            .ok_or_else(|| diag("Cannot read the cluster's CA", format!("{target} lists no pve-root-ca.pem")))?,
    };
    let presented = probe_certificate(target, PVE_PORT, Duration::from_secs(10))
        .await
        .map_err(|e| diag(&format!("Cannot reach the cluster member {target}"), e))?;
    member_trust.check(&member_name, target, &presented)?;

    tracing::info!(node = %node.name, via = %target, "joining the cluster");
    let request = JoinRequest { hostname: target.to_string(), fingerprint: presented.fingerprint, password };
    let upid = pve.join_cluster(&request).await.map_err(|e| diag("Cannot join the cluster", e))?;
    // The task ends replacing the node's certificate and restarting its API: watch it through
    // a client that trusts the node's CA and the cluster's, and log in again as needed.
    let watcher = node_client(node.address, &Trusted::Ca(format!("{node_ca}\n{cluster_ca}")), node.creds()?, true)?;
    if let Some(upid) = upid {
        watcher
            .wait_task_through_restart(&upid, node.deadline, &node.ctx.stop)
            .await
            .map_err(|e| diag("Cluster join failed", e))?;
    }
    trust::wait_presenting(node, &Trusted::Ca(cluster_ca.clone()), "a certificate of the cluster's CA").await?;
    // The next join waits for this node to be online in the cluster.
    wait_settled(node, &member, target).await?;
    Ok(cluster_ca)
}

/// Polls `who`'s view of the cluster until it is quorate with every member online. Errors of a
/// restarting node (401 while pmxcfs remounts, a reset connection) count as "not yet".
async fn wait_settled(node: &Node<'_>, pve: &PveClient, who: &str) -> Result<(), Diagnostics> {
    let ctx = node.ctx;
    let backoff = node.api_backoff();
    let probe = move || async move {
        match pve.cluster_status().await {
            Ok(s) if s.cluster_name().is_some() && s.settled() => Probe::Ready(()),
            Ok(s) if s.cluster_name().is_none() => Probe::NotYet("no cluster yet".to_string()),
            Ok(_) => Probe::NotYet("not quorate with every member online".to_string()),
            Err(e) if e.is_restarting() => Probe::NotYet(e.to_string()),
            Err(e) => Probe::Fail(diag(&format!("Cannot read {who}'s cluster status"), e)),
        }
    };
    match poll_until(node.deadline, &ctx.stop, &format!("{who}'s cluster to settle"), backoff, probe).await {
        Ok(()) => Ok(()),
        Err(PollError::Timeout { last, .. }) => Err(Diagnostics::error(
            "Cluster not ready",
            format!("{who}'s cluster did not settle (quorate, every member online) before the deadline: {last}"),
        )),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {who}"))),
        Err(PollError::Failed(d)) => Err(d),
    }
}

/// One lock per cluster (keyed by the member nodes join through) for this provider process:
/// joins and removals go one at a time.
fn cluster_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(locks.entry(key.to_string()).or_default())
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

/// Destroy, before the power-off: removes the node from its cluster through another member that
/// is online, while the cluster still has quorum (`delnode` needs it: powering members off first
/// could leave a small cluster without). The last node of a cluster has nothing to leave.
pub(super) async fn leave(node: &Node<'_>, prior: &State) -> Result<(), Diagnostics> {
    let Some(cl) = &prior.cluster else { return Ok(()) };
    let Some(trust) = trust::expected(prior, Some(prior), None) else { return Ok(()) };
    let key = cl.join.clone().unwrap_or_else(|| node.address.to_string());
    let lock = cluster_lock(&key);
    let _held = lock.lock().await;
    // Who else is up: asked of the node itself, else of the member it joined through.
    let me = node_client(node.address, &trust, node.creds()?, true)?;
    let status = match me.cluster_status().await {
        Ok(s) => s,
        Err(e) => match (&cl.join, &prior.cluster_ca_pem) {
            (Some(target), Some(ca)) => {
                tracing::warn!(node = %node.name, error = %e, "node not answering; asking the member it joined through");
                node_client(target, &Trusted::Ca(ca.clone()), node.creds()?, true)?
                    .cluster_status()
                    .await
                    .map_err(|e| diag("Cannot read the cluster to leave it", e))?
            }
            _ => {
                node.warn(
                    AttrPath::root("cluster"),
                    "Node not removed from its cluster",
                    format!("{} does not answer ({e}) and no member it joined through is known, so it could not be removed from its cluster: remove it there by hand (`pvecm delnode {}`).", node.name, node.name),
                );
                return Ok(());
            }
        },
    };
    // The other members are trusted through the cluster's CA: recorded, else read from the node.
    let ca = match prior.cluster_ca_pem.clone().filter(|c| !c.is_empty()) {
        Some(ca) => ca,
        None => me
            .root_ca(node.name)
            .await
            .map_err(|e| diag("Cannot read the cluster's CA to leave it", e))?
            .ok_or_else(|| diag("Cannot read the cluster's CA to leave it", format!("{} lists none", node.name)))?,
    };
    remove_through_others(node, &Trusted::Ca(ca), &status).await
}

async fn remove_through_others(node: &Node<'_>, trust: &Trusted, status: &ClusterStatus) -> Result<(), Diagnostics> {
    let others = status.online_others(node.name);
    if status.cluster_name().is_none() || others.is_empty() {
        tracing::info!(node = %node.name, "no other member online: nothing to leave");
        return Ok(());
    }
    let mut last = None;
    for (other, address) in others {
        let pve = node_client(&address, trust, node.creds()?, false)?;
        tracing::info!(node = %node.name, via = %other, "removing the node from the cluster");
        // A node the cluster no longer lists counts as removed (the client checks the list).
        match pve.delete_node(node.name).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(diag("Cannot remove the node from the cluster", e)),
        }
    }
    Err(last.unwrap_or_else(|| Diagnostics::error("Cannot remove the node from the cluster", "no member answered")))
}

/// What import learns of a node from the provider's cluster.
pub(super) struct Found {
    pub address: String,
    pub fingerprint: Option<String>,
    pub cluster: Option<String>,
    pub ca_pem: Option<String>,
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
    let ca_pem = pve.root_ca(name).await.map_err(|e| diag("Cannot read the node's CA", e))?;
    Ok(Found { address, fingerprint, cluster: status.cluster_name().map(str::to_string), ca_pem })
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
    if let Some(j) = &cl.join {
        if crate::resources::wireguard_peer::check_host(j).is_err() {
            d.error_at(
                p.clone().attr("join"),
                "Invalid member address",
                format!(
                    "{j:?}: give the address or host name of a cluster member, e.g. \"10.1.0.11\" (no scheme, no port)"
                ),
            );
        }
    }
    if let Some(pem) = &cl.ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            d.error_at(
                p.clone().attr("ca_pem"),
                "Invalid CA certificate",
                "ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----): wire in the creating node's cluster_ca_pem.",
            );
        }
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

    #[tokio::test]
    async fn one_lock_per_cluster() {
        let a = cluster_lock("10.0.0.1");
        let _held = a.lock().await;
        assert!(cluster_lock("10.0.0.1").try_lock().is_err(), "the same cluster waits");
        assert!(cluster_lock("10.9.0.1").try_lock().is_ok(), "another cluster does not");
    }
}
