//! `list "edge_ceph_pool"`: the Ceph pools of a PVE cluster, as `GET /nodes/{node}/ceph/pool`
//! lists them, each with the identity (`node`, `name`) `edge_ceph_pool` imports it by.
//!
//! Left out: Ceph's own pools (the manager's `.mgr` / `device_health_metrics`, application `mgr`
//! or `mgr_devicehealth`) — managing them from Terraform could only destroy them — and
//! erasure-coded pools, whose profile an import cannot read back yet (listed as a warning, so
//! nothing is adopted that would plan a replacement).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::pve::PoolListEntry;
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::{AttrPath, Attribute, Block, Ctx, Diagnostics, Done, ListResource, Listed, Schema, Type};
use crate::resources::pve_client;

/// The `config { … }` of `list "edge_ceph_pool"`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Option<String>,
    pub application: Option<String>,
    pub name_prefix: Option<String>,
}

pub struct CephPools;

/// The applications PVE enables on a pool it creates (`pveceph pool create --application`).
const APPLICATIONS: [&str; 3] = ["rbd", "cephfs", "rgw"];
/// Applications Ceph's manager gives the pools it makes for itself.
const CEPH_OWN: [&str; 2] = ["mgr", "mgr_devicehealth"];

#[async_trait]
impl ListResource for CephPools {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "edge_ceph_pool"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Lists the Ceph pools of the PVE cluster behind the provider's `pve` endpoint, for `terraform query` \
                 and adoption with `-generate-config-out`. Ceph's own pools (`.mgr`, `device_health_metrics`) are \
                 left out; erasure-coded pools are named in a warning and not listed.",
            )
            .attr(Attribute::required("node", Type::String).describe(
                "The PVE node whose API lists the pools (any node of the cluster): the `node` of every listed pool, \
                 as `edge_ceph_pool.node`.",
            ))
            .attr(
                Attribute::optional("application", Type::String)
                    .describe("Only pools with this application enabled: `rbd`, `cephfs` or `rgw`."),
            )
            .attr(Attribute::optional("name_prefix", Type::String).describe("Only pools whose name starts with this.")),
        )
    }

    fn validate(&self, c: &Config, d: &mut Diagnostics) {
        if let Some(n) = &c.node {
            if let Err(e) = crate::provider::check_node_name(n) {
                d.error_at(AttrPath::root("node"), "Invalid node name", e);
            }
        }
        if let Some(a) = &c.application {
            if !APPLICATIONS.contains(&a.as_str()) {
                d.error_at(
                    AttrPath::root("application"),
                    "Unknown pool application",
                    format!("{a:?}: use one of {} (what PVE enables on a pool)", APPLICATIONS.join(", ")),
                );
            }
        }
    }

    async fn list(&self, ctx: &Ctx, c: Config) -> Result<Done<Vec<Listed>>, Diagnostics> {
        let node = c.node.clone().unwrap_or_default();
        let pve = pve_client(ctx, None, "list \"edge_ceph_pool\"")?;
        let pools = match pve.pools(&node).await {
            Ok(p) => p,
            Err(e) => {
                // PVE answers a node it does not know with a 500 (its proxy's hostname lookup
                // fails): the node list tells which it is.
                if let Ok(nodes) = pve.nodes().await {
                    if !nodes.iter().any(|n| n.node == node) {
                        let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
                        return Err(Diagnostics::at(
                            AttrPath::root("node"),
                            "No such node",
                            format!(
                                "{node:?} is not a node of the cluster behind the provider's pve endpoint (its nodes: {}).",
                                names.join(", ")
                            ),
                        ));
                    }
                }
                return Err(list_error(&node, e));
            }
        };
        let (listed, erasure) = select(&node, &pools, &c);
        let mut warnings = Diagnostics::new();
        if !erasure.is_empty() {
            warnings.warn(
                "Erasure-coded pools not listed",
                format!(
                    "{} on {node}: an import cannot read an erasure-code profile back yet, so the generated \
                     configuration would replace these pools. Declare them with their erasure_coding block and \
                     import them by hand (terraform import <address> {node}/<name>).",
                    erasure.join(", ")
                ),
            );
        }
        tracing::debug!(%node, listed = listed.len(), "Ceph pools listed");
        Ok(Done::with_warnings(listed, warnings))
    }
}

/// The pools to list (sorted by name) and the erasure-coded ones left out (by base name).
fn select(node: &str, pools: &[PoolListEntry], c: &Config) -> (Vec<Listed>, Vec<String>) {
    let names: Vec<&str> = pools.iter().filter_map(|p| p.pool_name.as_deref()).collect();
    let mut listed = vec![];
    let mut erasure = vec![];
    for p in pools {
        let Some(name) = p.pool_name.as_deref() else { continue };
        let apps = p.applications();
        if name.starts_with('.') || apps.iter().any(|a| CEPH_OWN.contains(&a.as_str())) {
            continue;
        }
        if c.application.as_ref().is_some_and(|want| !apps.contains(want)) {
            continue;
        }
        // PVE makes an erasure-coded pool as `<name>-data` (erasure) + `<name>-metadata`.
        let base = name.strip_suffix("-data").filter(|b| names.contains(&format!("{b}-metadata").as_str()));
        let ec = p.kind.as_deref() == Some("erasure") || base.is_some();
        let shown = if ec { base.unwrap_or(name) } else { name };
        if c.name_prefix.as_ref().is_some_and(|pre| !shown.starts_with(pre.as_str())) {
            continue;
        }
        if ec {
            erasure.push(shown.to_string());
            continue;
        }
        if let Some(b) = name.strip_suffix("-metadata") {
            if names.contains(&format!("{b}-data").as_str()) {
                continue; // the other half of an erasure-coded pool
            }
        }
        let kind = p.kind.as_deref().unwrap_or("replicated");
        let app = if apps.is_empty() { "no application".to_string() } else { apps.join(",") };
        listed.push(Listed {
            display_name: format!("{name} ({kind}, {app})"),
            identity: [("node".to_string(), node.to_string()), ("name".to_string(), name.to_string())].into(),
        });
    }
    listed.sort_by(|a, b| a.identity.get("name").cmp(&b.identity.get("name")));
    (listed, erasure)
}

fn list_error(node: &str, e: ClientError) -> Diagnostics {
    let hint = match e.kind() {
        Some(ApiErrorKind::Forbidden) => " The API token needs Sys.Audit on / (PVEAuditor) to list Ceph pools.",
        Some(ApiErrorKind::Unauthorized) => " Check the provider's pve.api_token (or EDGE_PVE_API_TOKEN).",
        Some(ApiErrorKind::NotFound) | Some(ApiErrorKind::InvalidParams) => {
            " Is node the name of a node in the cluster behind the provider's pve endpoint?"
        }
        Some(ApiErrorKind::NotInitialized) => " Ceph is not set up on this cluster (pveceph init).",
        _ => "",
    };
    Diagnostics::at(AttrPath::root("node"), format!("Cannot list the Ceph pools on {node}"), format!("{e}.{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, kind: &str, app: &str) -> PoolListEntry {
        serde_json::from_value(serde_json::json!({
            "pool_name": name, "type": kind, "application_metadata": { app: {} }
        }))
        .expect("pool entry")
    }

    fn names(l: &[Listed]) -> Vec<&str> {
        l.iter().filter_map(|x| x.identity.get("name").map(String::as_str)).collect()
    }

    #[test]
    fn ceph_own_and_erasure_pools_are_left_out() {
        let pools = [
            pool("vm", "replicated", "rbd"),
            pool("device_health_metrics", "replicated", "mgr_devicehealth"),
            pool(".mgr", "replicated", "mgr"),
            pool("ec-data", "erasure", "rbd"),
            pool("ec-metadata", "replicated", "rbd"),
            pool("fs", "replicated", "cephfs"),
        ];
        let (l, ec) = select("pve1", &pools, &Config::default());
        assert_eq!(names(&l), ["fs", "vm"]);
        assert_eq!(ec, ["ec"]);
        assert_eq!(l[1].identity.get("node").map(String::as_str), Some("pve1"));
        assert_eq!(l[1].display_name, "vm (replicated, rbd)");
        let only_rbd = Config { application: Some("rbd".into()), ..Default::default() };
        assert_eq!(names(&select("pve1", &pools, &only_rbd).0), ["vm"]);
        let prefix = Config { name_prefix: Some("f".into()), ..Default::default() };
        assert_eq!(names(&select("pve1", &pools, &prefix).0), ["fs"]);
    }

    #[test]
    fn bad_config_names_the_attribute() {
        let mut d = Diagnostics::new();
        let c = Config { node: Some("pve 1".into()), application: Some("nfs".into()), name_prefix: None };
        CephPools.validate(&c, &mut d);
        let paths: Vec<String> = d.0.iter().filter_map(|x| x.path.as_ref().map(|p| p.to_string())).collect();
        assert_eq!(paths, ["node", "application"]);
    }
}
