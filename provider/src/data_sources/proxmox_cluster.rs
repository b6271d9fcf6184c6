//! `data "edge_proxmox_cluster"`: the PVE cluster a node is in, as PVE reports it — its name,
//! quorum, members with their addresses and API certificate fingerprints, and the Ceph cluster's
//! fsid and health.
//!
//! Sources, all read through the node the provider (or `pve.endpoint`) points at:
//! `GET /cluster/status` (name, quorum, members, their addresses and corosync membership),
//! `GET /cluster/config/join` (each member's certificate fingerprint, which PVE keeps in
//! `/etc/pve` and so knows for an offline member too), `GET /nodes/{node}/certificates/info`
//! (the same for a node in no cluster, which has no join information) and
//! `GET /nodes/{node}/ceph/status` (fsid and health; absent when Ceph is not set up).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::pve::{CertificateInfo, Quorum, PROXY_CERT_FILE};
use crate::clients::{ApiErrorKind, ClientError};
use crate::framework::{AttrPath, Attribute, Block, Ctx, DataSource, Diagnostics, Done, Schema, Type};
use crate::resources::{pve_api_attribute, pve_client, PveApi};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub name: Option<String>,
    pub node_id: Option<i64>,
    pub address: Option<String>,
    pub online: Option<bool>,
    pub local: Option<bool>,
    pub tls_fingerprint: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub id: Option<String>,
    pub pve: Option<PveApi>,
    pub name: Option<String>,
    pub clustered: Option<bool>,
    pub quorate: Option<bool>,
    pub node: Option<String>,
    pub members: Option<Vec<Member>>,
    pub ceph_fsid: Option<String>,
    pub ceph_health: Option<String>,
    pub ceph_checks: Option<BTreeMap<String, String>>,
}

pub struct ProxmoxCluster;

const WHAT: &str = "edge_proxmox_cluster";

fn api_error(what: &str, e: ClientError) -> Diagnostics {
    let hint = match e.kind() {
        Some(ApiErrorKind::Forbidden) => {
            " The API token needs Sys.Audit on / (PVEAuditor) to read the cluster's status and certificates."
        }
        Some(ApiErrorKind::Unauthorized) => " Check the provider's pve.api_token (or EDGE_PVE_API_TOKEN).",
        _ => "",
    };
    Diagnostics::at(AttrPath::root("pve"), format!("Cannot read {what}"), format!("{e}.{hint}"))
}

/// The certificate pveproxy presents: its custom one when there is one, else `pve-ssl.pem`
/// (pve-cluster `get_node_fingerprint` decides the same way).
fn presented(certs: &[CertificateInfo]) -> Option<String> {
    let by = |f: &str| certs.iter().find(|c| c.filename == f).and_then(|c| c.fingerprint.clone());
    by(PROXY_CERT_FILE).or_else(|| by("pve-ssl.pem"))
}

#[async_trait]
impl DataSource for ProxmoxCluster {
    type State = State;

    fn type_name(&self) -> &'static str {
        WHAT
    }

    fn schema(&self) -> Schema {
        let member = Type::object([
            ("name", Type::String),
            ("node_id", Type::Number),
            ("address", Type::String),
            ("online", Type::Bool),
            ("local", Type::Bool),
            ("tls_fingerprint", Type::String),
        ]);
        Schema::new(
            0,
            Block::new(
                "The Proxmox VE cluster a node is in, as PVE reports it: name, quorum, members with their \
                 addresses and certificate fingerprints, and the Ceph cluster's fsid and health.",
            )
            .attr(
                Attribute::computed("id", Type::String)
                    .describe("The cluster's name; for a node in no cluster, the node's."),
            )
            .attr(pve_api_attribute("the data source"))
            .attr(
                Attribute::computed("name", Type::String)
                    .describe("The cluster's name; null for a node in no cluster."),
            )
            .attr(
                Attribute::computed("clustered", Type::Bool)
                    .describe("Whether the node is in a cluster (false: a standalone node)."),
            )
            .attr(Attribute::computed("quorate", Type::Bool).describe(
                "Whether the cluster has quorum as the answering node sees it (corosync, through pmxcfs). A node in \
                 no cluster is always quorate: it writes its own /etc/pve.",
            ))
            .attr(
                Attribute::computed("node", Type::String)
                    .describe("The node that answered (and through which Ceph was read)."),
            )
            .attr(Attribute::computed("members", Type::list(member)).describe(
                "The members, in node ID order: `name`, `node_id` (corosync's; 0 for a standalone node), `address` \
                 (corosync ring address), `online` (in the corosync membership now), `local` (the node that \
                 answered) and `tls_fingerprint` — SHA-256 (`AB:CD:…`) of the certificate its API presents \
                 (`pveproxy-ssl.pem` when it has a custom one, else `pve-ssl.pem`), as PVE keeps it in /etc/pve, so \
                 known for offline members too. Usable as the provider's `pve.tls_fingerprint`.",
            ))
            .attr(
                Attribute::computed("ceph_fsid", Type::String)
                    .describe("The Ceph cluster's fsid; null when Ceph is not set up on the node."),
            )
            .attr(
                Attribute::computed("ceph_health", Type::String)
                    .describe("`HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`; null without Ceph."),
            )
            .attr(Attribute::computed("ceph_checks", Type::map(Type::String)).describe(
                "Raised Ceph health checks: code (`OSD_DOWN`, `MON_DOWN`, …) => Ceph's one-line summary, \
                 e.g. `1 osds down`. Empty when healthy; null without Ceph.",
            )),
        )
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        let Some(pve) = &c.pve else { return };
        if let Some(e) = &pve.endpoint {
            if let Err(msg) = crate::provider::check_endpoint(e) {
                d.error_at(AttrPath::root("pve").attr("endpoint"), "Invalid endpoint", msg);
            }
        }
        if let Some(pem) = &pve.ca_pem {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                d.error_at(
                    AttrPath::root("pve").attr("ca_pem"),
                    "Invalid CA certificate",
                    "ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), e.g. \
                     edge_proxmox_node.<first>.cluster_ca_pem.",
                );
            }
        }
    }

    async fn read(&self, ctx: &Ctx, config: State) -> Result<Done<State>, Diagnostics> {
        let pve = pve_client(ctx, config.pve.as_ref(), WHAT)?;
        let status = pve.cluster_status().await.map_err(|e| api_error("the cluster status", e))?;
        let local = status.local().and_then(|e| e.name.clone()).ok_or_else(|| {
            Diagnostics::at(
                AttrPath::root("pve"),
                "Cannot tell which node answered",
                "PVE's /cluster/status lists no local node: point pve.endpoint (or the provider's pve.endpoint) at \
                 one node of the cluster.",
            )
        })?;
        let mut s = config;
        let mut members: Vec<Member> = status
            .0
            .iter()
            .filter(|e| e.kind == "node")
            .map(|e| Member {
                name: e.name.clone(),
                node_id: e.nodeid,
                address: e.ip.clone(),
                online: e.online,
                local: Some(e.local == Some(true)),
                tls_fingerprint: None,
            })
            .collect();
        members.sort_by_key(|m| (m.node_id, m.name.clone()));
        match status.quorum() {
            Quorum::Standalone => {
                s.name = None;
                s.clustered = Some(false);
                s.quorate = Some(true);
                let certs = pve.certificates(&local).await.map_err(|e| api_error("the node's certificates", e))?;
                for m in &mut members {
                    m.tls_fingerprint = presented(&certs);
                }
            }
            Quorum::Cluster { name, quorate, .. } => {
                s.name = name;
                s.clustered = Some(true);
                s.quorate = Some(quorate == Some(true));
                // A cluster answers join information on every member (pve-cluster `join_info`).
                if let Some(join) = pve.join_info().await.map_err(|e| api_error("the cluster's join information", e))? {
                    for m in &mut members {
                        m.tls_fingerprint = join
                            .nodelist
                            .iter()
                            .find(|n| Some(&n.name) == m.name.as_ref())
                            .and_then(|n| n.pve_fp.clone());
                    }
                }
            }
        }
        match pve.ceph_status(&local).await {
            Ok(c) => {
                s.ceph_fsid = c.fsid;
                let health = c.health.unwrap_or_default();
                s.ceph_health = health.status;
                s.ceph_checks = Some(
                    health
                        .checks
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(code, check)| {
                            let msg = check.summary.and_then(|m| m.message).unwrap_or_default();
                            (code, msg)
                        })
                        .collect(),
                );
            }
            // No Ceph on this node: PVE says so with the same 500 as any failure; the client
            // tells them apart (`ceph_status`).
            Err(e) if e.is(ApiErrorKind::NotInitialized) => {
                tracing::debug!(node = %local, error = %e, "no Ceph on the node");
                s.ceph_fsid = None;
                s.ceph_health = None;
                s.ceph_checks = None;
            }
            Err(e) => return Err(api_error("the Ceph status", e)),
        }
        s.id = Some(s.name.clone().unwrap_or_else(|| local.clone()));
        s.node = Some(local);
        s.members = Some(members);
        Ok(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(f: &str, fp: &str) -> CertificateInfo {
        CertificateInfo { filename: f.into(), fingerprint: Some(fp.into()), ..Default::default() }
    }

    #[test]
    fn the_presented_certificate_is_the_custom_one_if_any() {
        let base = vec![cert("pve-root-ca.pem", "CA"), cert("pve-ssl.pem", "BASE")];
        assert_eq!(presented(&base).as_deref(), Some("BASE"));
        let mut custom = base.clone();
        custom.push(cert(PROXY_CERT_FILE, "CUSTOM"));
        assert_eq!(presented(&custom).as_deref(), Some("CUSTOM"));
        assert_eq!(presented(&[cert("pve-root-ca.pem", "CA")]), None);
    }
}
