//! `edge_node_reboot`: reboots one PVE node, drained of Ceph first. Steps: check that the
//! cluster keeps quorum without the node and that Ceph is `HEALTH_OK`; set `noout` (so Ceph
//! does not start moving the node's data elsewhere while its OSDs are down); reboot; wait until
//! the node answers with a new boot, is online in the cluster, and Ceph has recovered; unset
//! `noout` — also when the wait failed — and wait for `HEALTH_OK`.
//!
//! While `noout` is set Ceph reports `HEALTH_WARN` (`OSDMAP_FLAGS: noout flag(s) set`), so the
//! recovery wait accepts that one check and nothing else; only after `noout` is gone does the
//! action require `HEALTH_OK` proper.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::pve::{CephHealth, PveClient, Quorum};
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::timeouts::parse_duration;
use crate::framework::{Action, Attribute, Block, Ctx, Diagnostics, Done, Progress, Schema, Type};
use crate::path;
use crate::resources::{pve_api_attribute, pve_client, PveApi};

/// A node reboot with its firmware, disks and services: minutes. The default leaves room for
/// Ceph to recover after it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long the unset of `noout` may keep trying when the API is unsettled (a node just back).
const UNSET_BUDGET: Duration = Duration::from_secs(5 * 60);
const NOOUT: &str = "noout";
/// The health check Ceph raises for OSD map flags such as `noout`.
const FLAGS_CHECK: &str = "OSDMAP_FLAGS";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Option<String>,
    pub timeout: Option<String>,
    pub pve: Option<PveApi>,
}

pub struct NodeReboot;

/// What the checks before a reboot found.
struct Preflight {
    /// The node runs Ceph (it is initialised): `noout` and the health waits apply.
    ceph: bool,
    /// A node to ask while the rebooting one is down (itself for a standalone node).
    witness: String,
    summary: String,
}

/// The raised, unmuted checks of a Ceph health, by code.
fn raised(h: &CephHealth) -> Vec<String> {
    h.checks
        .iter()
        .flatten()
        .filter(|(_, c)| c.muted != Some(true))
        .map(|(code, c)| match c.summary.as_ref().and_then(|s| s.message.as_deref()) {
            Some(m) => format!("{code}: {m}"),
            None => code.clone(),
        })
        .collect()
}

/// `HEALTH_OK`, or — with `allow_flags` — nothing raised but the OSD map flags check.
fn healthy(h: &CephHealth, allow_flags: bool) -> Result<(), String> {
    let status = h.status.as_deref().unwrap_or("unknown");
    if status == "HEALTH_OK" {
        return Ok(());
    }
    let others: Vec<String> = raised(h).into_iter().filter(|c| !(allow_flags && c.starts_with(FLAGS_CHECK))).collect();
    if allow_flags && others.is_empty() && status == "HEALTH_WARN" {
        return Ok(());
    }
    Err(format!("{status} ({})", if others.is_empty() { "no checks listed".into() } else { others.join("; ") }))
}

fn api(summary: String) -> impl FnOnce(ClientError) -> Diagnostics {
    move |e| Diagnostics::error(summary, e.to_string())
}

/// Quorum and Ceph health before anything changes.
async fn preflight(pve: &PveClient, node: &str) -> Result<Preflight, Diagnostics> {
    let cs = pve.cluster_status().await.map_err(api("Cannot read the cluster status".into()))?;
    let (witness, quorum) = match cs.quorum() {
        Quorum::Standalone => {
            let local = cs.local().and_then(|e| e.name.clone()).unwrap_or_default();
            if local != node {
                return Err(Diagnostics::at(
                    path!["node"],
                    format!("No node {node:?} here"),
                    format!("The PVE endpoint is the standalone node {local:?}, which is in no cluster: set node = {local:?}."),
                ));
            }
            (node.to_string(), format!("{node} is a standalone node: its guests stop while it reboots"))
        }
        Quorum::Cluster { name, quorate, members, online, .. } => {
            let cluster = name.unwrap_or_default();
            let Some(me) = cs.node(node) else {
                let names: Vec<String> =
                    cs.0.iter().filter(|e| e.kind == "node").filter_map(|e| e.name.clone()).collect();
                return Err(Diagnostics::at(
                    path!["node"],
                    format!("No node {node:?} in cluster {cluster:?}"),
                    format!("The members are: {}. Set node to one of them.", names.join(", ")),
                ));
            };
            if me.online != Some(true) {
                return Err(Diagnostics::at(
                    path!["node"],
                    format!("{node} is offline"),
                    format!(
                        "{node} is not online in cluster {cluster:?}: there is nothing to reboot. Bring it back first."
                    ),
                ));
            }
            if quorate != Some(true) {
                return Err(Diagnostics::error(
                    format!("Cluster {cluster:?} has no quorum"),
                    format!("{online} of {members} nodes are online and the cluster is not quorate: fix that before rebooting any node."),
                ));
            }
            // Each member has one vote; corosync needs a majority of all of them.
            let needed = members / 2 + 1;
            if online - 1 < needed {
                let offline: Vec<String> =
                    cs.0.iter()
                        .filter(|e| e.kind == "node" && e.online != Some(true))
                        .filter_map(|e| e.name.clone())
                        .collect();
                return Err(Diagnostics::at(
                    path!["node"],
                    format!("Rebooting {node} would cost cluster {cluster:?} its quorum"),
                    format!(
                        "{online} of {members} nodes are online; without {node} {} would be left and quorum needs {needed}. \
                         Bring {} back online first.",
                        online - 1,
                        if offline.is_empty() { "the other nodes".to_string() } else { offline.join(", ") }
                    ),
                ));
            }
            let Some((witness, _)) = cs.online_others(node).into_iter().next() else {
                return Err(Diagnostics::error(
                    "No other node online",
                    format!("Nothing but {node} answers in the cluster."),
                ));
            };
            (
                witness,
                format!(
                    "cluster {cluster:?} keeps quorum without {node}: {} of {members} nodes stay online",
                    online - 1
                ),
            )
        }
    };
    let ceph = match pve.ceph_status(node).await {
        Ok(st) => {
            let h = st.health.unwrap_or_default();
            if let Err(why) = healthy(&h, false) {
                return Err(Diagnostics::at(
                    path!["node"],
                    format!("Ceph is not healthy: not rebooting {node}"),
                    format!(
                        "Ceph reports {why}. Rebooting a node now could leave data unavailable or lose redundancy. \
                         Wait for HEALTH_OK (or resolve the checks) first."
                    ),
                ));
            }
            true
        }
        Err(e) if e.is(ApiErrorKind::NotInitialized) => false,
        Err(e) => return Err(Diagnostics::error("Cannot read the Ceph status", e.to_string())),
    };
    let summary = if ceph { format!("{quorum}; Ceph is HEALTH_OK") } else { format!("{quorum}; no Ceph on {node}") };
    Ok(Preflight { ceph, witness, summary })
}

/// Errors to wait through while a node reboots: it does not answer, or answers through a
/// proxy that cannot reach it yet, or its services are still starting.
fn while_rebooting(e: &ClientError) -> bool {
    e.is_transient() || e.is_restarting()
}

fn poll_failed(what: &str, e: PollError<ClientError>) -> String {
    match e {
        PollError::Timeout { after, last } => format!("{what}: no result after {after:?} (last seen: {last})"),
        PollError::Cancelled => format!("{what}: cancelled (Terraform asked the provider to stop)"),
        PollError::Failed(e) => format!("{what}: {e}"),
    }
}

fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(10)).growth(3, 2)
}

/// Reboots `node` and waits until it is back with a new boot, online, and (with Ceph)
/// recovered but for the flags.
async fn reboot_and_wait(
    ctx: &Ctx,
    pve: &PveClient,
    node: &str,
    pre: &Preflight,
    deadline: Instant,
    progress: &Progress,
) -> Result<(), String> {
    progress.report(format!("Rebooting {node}"));
    pve.reboot_node(node).await.map_err(|e| format!("the reboot request failed: {e}"))?;
    let asked = Instant::now();
    let seen_down = std::sync::atomic::AtomicBool::new(false);
    // Back = the node answers and has booted since the request: its uptime is shorter than the
    // time since then (a second of slack for PVE's whole-second uptime). Before the reboot
    // starts (PVE waits two seconds) the old boot still answers.
    let uptime = poll_until(deadline, &ctx.stop, "node reboot", backoff(), || {
        let seen_down = &seen_down;
        async move {
            let down = |why: String| {
                if !seen_down.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    progress.report(format!("{node} is down"));
                }
                Probe::NotYet(why)
            };
            // The cluster's view first: a member that is down shows offline there at once,
            // while a call to the node itself may be retried through the whole reboot.
            match pve.cluster_status().await {
                Ok(cs) if cs.node(node).is_some_and(|e| e.online == Some(false)) => {
                    return down(format!("{node} is offline in the cluster"));
                }
                Ok(_) => {}
                Err(e) if while_rebooting(&e) => return down(e.to_string()),
                Err(e) => return Probe::Fail(e),
            }
            match pve.node_status(node).await {
                Ok(st) => match st.uptime {
                    Some(up) if (up as f64 + 1.0) < asked.elapsed().as_secs_f64() => Probe::Ready(up),
                    Some(up) => Probe::NotYet(format!("{node} still runs the old boot (up {up} s)")),
                    None => Probe::NotYet(format!("{node} reports no uptime")),
                },
                Err(e) if while_rebooting(&e) => down(e.to_string()),
                Err(e) => Probe::Fail(e),
            }
        }
    })
    .await
    .map_err(|e| poll_failed(&format!("waiting for {node} to come back"), e))?;
    progress.report(format!("{node} is back: its API answers, up {uptime} s"));
    poll_until(deadline, &ctx.stop, "node online", backoff(), || async move {
        match pve.cluster_status().await {
            Ok(cs) => match cs.quorum() {
                Quorum::Standalone => Probe::Ready(()),
                Quorum::Cluster { quorate, .. } => match cs.node(node).and_then(|e| e.online) {
                    Some(true) if quorate == Some(true) => Probe::Ready(()),
                    online => Probe::NotYet(format!("{node} online: {online:?}, quorate: {quorate:?}")),
                },
            },
            Err(e) if while_rebooting(&e) => Probe::NotYet(e.to_string()),
            Err(e) => Probe::Fail(e),
        }
    })
    .await
    .map_err(|e| poll_failed(&format!("waiting for {node} to be online in the cluster"), e))?;
    progress.report(format!("{node} is online in the cluster"));
    if pre.ceph {
        wait_ceph(ctx, pve, &pre.witness, true, deadline)
            .await
            .map_err(|e| format!("waiting for Ceph to recover: {e}"))?;
        progress.report("Ceph has recovered (HEALTH_OK but for the noout flag)");
    }
    Ok(())
}

/// Waits for Ceph's health as `via` reports it: `HEALTH_OK`, or with `allow_flags` nothing but
/// the flags check.
async fn wait_ceph(ctx: &Ctx, pve: &PveClient, via: &str, allow_flags: bool, deadline: Instant) -> Result<(), String> {
    poll_until(deadline, &ctx.stop, "ceph health", backoff(), || async move {
        match pve.ceph_status(via).await {
            Ok(st) => match healthy(&st.health.unwrap_or_default(), allow_flags) {
                Ok(()) => Probe::Ready(()),
                Err(why) => Probe::NotYet(why),
            },
            Err(e) if while_rebooting(&e) || e.is(ApiErrorKind::NotInitialized) => Probe::NotYet(e.to_string()),
            Err(e) => Probe::Fail(e),
        }
    })
    .await
    .map_err(|e| poll_failed("Ceph health", e))
}

/// Unsets `noout`, riding out an unsettled API for a while. Runs even after Terraform asked
/// to stop: a flag left set would keep Ceph from healing on its own.
async fn unset_noout(pve: &PveClient) -> Result<(), String> {
    let never = tokio_util::sync::CancellationToken::new();
    poll_until(Instant::now() + UNSET_BUDGET, &never, "unset noout", backoff(), || async move {
        match pve.set_ceph_flag(NOOUT, false).await {
            Ok(()) => Probe::Ready(()),
            Err(e) if while_rebooting(&e) || e.is(ApiErrorKind::Server) => Probe::NotYet(e.to_string()),
            Err(e) => Probe::Fail(e),
        }
    })
    .await
    .map_err(|e| poll_failed("unsetting noout", e))
}

fn client(ctx: &Ctx, c: &Config) -> Result<Arc<PveClient>, Diagnostics> {
    pve_client(ctx, c.pve.as_ref(), "edge_node_reboot")
}

#[async_trait]
impl Action for NodeReboot {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "edge_node_reboot"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Reboots one PVE node, drained of Ceph first: refuses when the cluster would lose quorum or Ceph \
                 is not HEALTH_OK, sets noout, reboots, waits for the node and for Ceph, and unsets noout.",
            )
            .attr(Attribute::required("node", Type::String).describe("The node to reboot, e.g. \"pve2\"."))
            .attr(
                Attribute::optional("timeout", Type::String).describe(
                    "How long the reboot and Ceph's recovery may take together, e.g. \"20m\" (default \"30m\").",
                ),
            )
            .attr(pve_api_attribute("the reboot")),
        )
    }

    fn validate(&self, c: &Config, d: &mut Diagnostics) {
        if let Some(n) = &c.node {
            if let Err(e) = crate::provider::check_node_name(n) {
                d.error_at(path!["node"], "Invalid node name", e);
            }
        }
        if let Some(t) = &c.timeout {
            match parse_duration(t) {
                Ok(v) if v.is_zero() => d.error_at(
                    path!["timeout"],
                    "Invalid timeout",
                    "The timeout must be longer than zero, e.g. \"20m\".",
                ),
                Ok(_) => {}
                Err(e) => d.error_at(path!["timeout"], "Invalid timeout", e),
            }
        }
        if let Some(e) = c.pve.as_ref().and_then(|p| p.endpoint.as_deref()) {
            if let Err(msg) = crate::provider::check_endpoint(e) {
                d.error_at(path!["pve", "endpoint"], "Invalid PVE endpoint", msg);
            }
        }
    }

    /// Refuses what can be seen now: a node that is not there or offline, a cluster that
    /// would lose quorum, Ceph that is not healthy. Where the PVE API cannot be reached yet
    /// (built in the same apply) the same checks run when the action is invoked.
    async fn plan(&self, ctx: &Ctx, c: Config) -> Result<Done<()>, Diagnostics> {
        let pve = client(ctx, &c)?;
        let node = c.node.clone().unwrap_or_default();
        match preflight(&pve, &node).await {
            Ok(_) => Ok(().into()),
            Err(d) if d.0.iter().all(|x| x.summary.starts_with("Cannot read")) => {
                tracing::debug!(node, "PVE not readable at plan time; checking when invoked");
                Ok(().into())
            }
            Err(d) => Err(d),
        }
    }

    async fn invoke(&self, ctx: &Ctx, c: Config, progress: &Progress) -> Result<Done<()>, Diagnostics> {
        let pve = client(ctx, &c)?;
        let node = c.node.clone().unwrap_or_default();
        let timeout = c.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_TIMEOUT);
        let deadline = Instant::now() + timeout;
        progress.report(format!("Checking quorum and Ceph health before rebooting {node}"));
        let pre = preflight(&pve, &node).await?;
        progress.report(pre.summary.clone());
        if pre.ceph {
            progress.report("Setting Ceph flag noout");
            if let Err(e) = pve.set_ceph_flag(NOOUT, true).await {
                // The request may have reached Ceph: take the flag away again.
                let undo = unset_noout(&pve)
                    .await
                    .err()
                    .map(|u| format!(" Unsetting it again failed too: {u}"))
                    .unwrap_or_default();
                return Err(Diagnostics::error(
                    format!("Could not set noout before rebooting {node}"),
                    format!("{e}. {node} was not rebooted.{undo}"),
                ));
            }
        }
        let rebooted = reboot_and_wait(ctx, &pve, &node, &pre, deadline, progress).await;
        if !pre.ceph {
            return rebooted
                .map(|()| ().into())
                .map_err(|e| Diagnostics::at(path!["timeout"], format!("Reboot of {node} did not complete"), e));
        }
        progress.report("Unsetting Ceph flag noout");
        let unset = unset_noout(&pve).await;
        match (rebooted, unset) {
            (Ok(()), Ok(())) => {
                let deadline = deadline.max(Instant::now() + UNSET_BUDGET);
                wait_ceph(ctx, &pve, &pre.witness, false, deadline).await.map_err(|e| {
                    Diagnostics::error(
                        format!("Ceph did not return to HEALTH_OK after rebooting {node}"),
                        format!("{e}. {node} is back and noout is unset; look at `ceph health detail`."),
                    )
                })?;
                progress.report("Ceph is HEALTH_OK");
                Ok(().into())
            }
            (Err(e), Ok(())) => Err(Diagnostics::error(
                format!("Reboot of {node} did not complete"),
                format!("{e}. The noout flag was unset again, so Ceph heals on its own; check {node} and `ceph health detail`."),
            )),
            (rebooted, Err(u)) => Err(Diagnostics::error(
                format!("noout is still set after rebooting {node}"),
                format!(
                    "{}The noout flag could NOT be unset ({u}): Ceph will not re-balance until it is. Unset it by hand \
                     (`ceph osd unset noout`, or the PVE API: PUT /cluster/ceph/flags/noout value=0).",
                    rebooted.err().map(|e| format!("The reboot did not complete: {e}. ")).unwrap_or_default()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::pve::{CephCheckSummary, CephHealthCheck};

    fn health(status: &str, checks: &[(&str, &str)]) -> CephHealth {
        CephHealth {
            status: Some(status.into()),
            checks: Some(
                checks
                    .iter()
                    .map(|(code, msg)| {
                        let summary = CephCheckSummary { message: Some(msg.to_string()), count: Some(1) };
                        (code.to_string(), CephHealthCheck { summary: Some(summary), ..Default::default() })
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_noout_flag_alone_counts_as_recovered() {
        assert!(healthy(&health("HEALTH_OK", &[]), false).is_ok());
        let flags = health("HEALTH_WARN", &[("OSDMAP_FLAGS", "noout flag(s) set")]);
        assert!(healthy(&flags, true).is_ok());
        assert_eq!(healthy(&flags, false).unwrap_err(), "HEALTH_WARN (OSDMAP_FLAGS: noout flag(s) set)");
        let down = health("HEALTH_WARN", &[("OSDMAP_FLAGS", "noout flag(s) set"), ("OSD_DOWN", "1 osds down")]);
        assert_eq!(healthy(&down, true).unwrap_err(), "HEALTH_WARN (OSD_DOWN: 1 osds down)");
    }

    #[test]
    fn node_names() {
        assert!(crate::provider::check_node_name("pve2").is_ok());
        assert!(crate::provider::check_node_name("").is_err());
        assert!(crate::provider::check_node_name("pve_2").is_err());
        assert!(crate::provider::check_node_name("-pve").is_err());
    }
}
