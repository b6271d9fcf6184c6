//! `list "edge_proxmox_node"`: the nodes of the PVE cluster behind the provider's `pve`
//! endpoint, as `GET /cluster/status` lists them (a node in no cluster lists itself), each with
//! the identity (`name`) `edge_proxmox_node` imports it by. Offline members are named in a
//! warning and not listed: an import reads the node's CA and certificate from the node itself.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::pve::ClusterStatus;
use crate::clients::ApiErrorKind;
use crate::framework::{Attribute, Block, Ctx, Diagnostics, Done, ListResource, Listed, Schema, Type};
use crate::resources::pve_client;

/// The `config { … }` of `list "edge_proxmox_node"`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name_prefix: Option<String>,
}

pub struct ProxmoxNodes;

#[async_trait]
impl ListResource for ProxmoxNodes {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "edge_proxmox_node"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            Block::new(
                "Lists the nodes of the PVE cluster behind the provider's `pve` endpoint (a node in no cluster: \
                 itself), for `terraform query` and adoption with `-generate-config-out`. Offline members are named \
                 in a warning and not listed.",
            )
            .attr(Attribute::optional("name_prefix", Type::String).describe("Only nodes whose name starts with this.")),
        )
    }

    async fn list(&self, ctx: &Ctx, c: Config) -> Result<Done<Vec<Listed>>, Diagnostics> {
        let pve = pve_client(ctx, None, "list \"edge_proxmox_node\"")?;
        let status = pve.cluster_status().await.map_err(|e| {
            let hint = match e.kind() {
                Some(ApiErrorKind::Forbidden) => " The API token needs Sys.Audit on / (PVEAuditor).",
                Some(ApiErrorKind::Unauthorized) => " Check the provider's pve credentials.",
                _ => "",
            };
            Diagnostics::error("Cannot read the PVE cluster", format!("{e}.{hint}"))
        })?;
        let (listed, offline) = select(&status, &c);
        let mut warnings = Diagnostics::new();
        if !offline.is_empty() {
            warnings.warn(
                "Offline nodes not listed",
                format!(
                    "{}: offline, so their certificate and CA cannot be read for an import. Query again once they are \
                     back.",
                    offline.join(", ")
                ),
            );
        }
        Ok(Done::with_warnings(listed, warnings))
    }
}

/// The online nodes to list (sorted by name) and the offline ones left out.
fn select(status: &ClusterStatus, c: &Config) -> (Vec<Listed>, Vec<String>) {
    let cluster = status.cluster_name();
    let mut listed = vec![];
    let mut offline = vec![];
    for e in status.0.iter().filter(|e| e.kind == "node") {
        let Some(name) = e.name.clone() else { continue };
        if c.name_prefix.as_ref().is_some_and(|p| !name.starts_with(p.as_str())) {
            continue;
        }
        // A standalone node's made-up entry carries no `online`: it answered, so it is up.
        if e.online == Some(false) {
            offline.push(name);
            continue;
        }
        let at = e.ip.as_deref().map(|ip| format!(" at {ip}")).unwrap_or_default();
        let member = cluster.map(|n| format!(", cluster {n}")).unwrap_or_else(|| ", no cluster".into());
        listed.push(Listed {
            display_name: format!("{name}{at}{member}"),
            identity: [("name".to_string(), name)].into(),
        });
    }
    listed.sort_by(|a, b| a.identity.get("name").cmp(&b.identity.get("name")));
    (listed, offline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::pve::ClusterStatusEntry;

    fn node(name: &str, online: Option<bool>) -> ClusterStatusEntry {
        ClusterStatusEntry {
            kind: "node".into(),
            name: Some(name.into()),
            ip: Some("10.0.0.1".into()),
            online,
            ..Default::default()
        }
    }

    #[test]
    fn offline_members_are_left_out_and_named() {
        let cluster = ClusterStatusEntry { kind: "cluster".into(), name: Some("edge".into()), ..Default::default() };
        let st =
            ClusterStatus(vec![cluster, node("pve2", Some(true)), node("pve1", Some(true)), node("pve3", Some(false))]);
        let (l, off) = select(&st, &Config::default());
        let names: Vec<&str> = l.iter().filter_map(|x| x.identity.get("name").map(String::as_str)).collect();
        assert_eq!(names, ["pve1", "pve2"]);
        assert_eq!(off, ["pve3"]);
        assert_eq!(l[0].display_name, "pve1 at 10.0.0.1, cluster edge");
        let st = ClusterStatus(vec![node("pve9", None)]);
        let (l, _) = select(&st, &Config { name_prefix: Some("pve".into()) });
        assert_eq!(l[0].display_name, "pve9 at 10.0.0.1, no cluster");
    }
}
