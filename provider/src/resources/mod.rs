//! One module per resource type; they all implement `framework::Resource` the same way.

pub mod calendar;
pub mod ceph_pool;
pub mod pbs_job;
pub mod proxmox_node;
pub mod wireguard_key;
pub mod wireguard_peer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clients::pve::PveClient;
use crate::framework::resource::{DynResource, ResourceHandle};
use crate::framework::{Attribute, Ctx, Diagnostics, Nesting, Type};

/// Every resource type this provider serves.
pub fn all() -> Vec<Arc<dyn DynResource>> {
    vec![
        Arc::new(ResourceHandle::new(wireguard_key::WireguardKey)),
        Arc::new(ResourceHandle::new(wireguard_peer::WireguardPeer)),
        Arc::new(ResourceHandle::new(ceph_pool::CephPool)),
        Arc::new(ResourceHandle::new(pbs_job::PbsJob)),
        Arc::new(ResourceHandle::new(proxmox_node::ProxmoxNode)),
    ]
}

/// A resource's own way to the PVE API (`pve = { endpoint, ca_pem }`), over the provider's: the
/// cluster a store's nodes formed, trusted through the CA they report (`edge_proxmox_node`'s
/// `cluster_ca_pem`), so a rebuilt store — new nodes, new certificates, a new CA — needs no
/// re-pinning. Credentials stay the provider's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PveApi {
    pub endpoint: Option<String>,
    pub ca_pem: Option<String>,
}

/// The `pve` attribute of resources that talk to PVE.
pub fn pve_api_attribute(what: &str) -> Attribute {
    Attribute::nested(
        "pve",
        Nesting::Single,
        vec![
            Attribute::optional("endpoint", Type::String)
                .describe("PVE API of the cluster, e.g. `https://${edge_proxmox_node.pve1.address}:8006`."),
            Attribute::optional("ca_pem", Type::String)
                .describe("CA to verify it against instead of the provider's pin: `edge_proxmox_node.<first>.cluster_ca_pem`."),
        ],
    )
    .describe(&format!(
        "Where {what} reaches PVE, over the provider's `pve` block (credentials stay the provider's). Wire it to the store's first node so a rebuilt store is trusted through its new CA with no re-pinning."
    ))
}

/// The PVE client for `over` (a resource's `pve`) on top of the provider's settings.
pub fn pve_client(ctx: &Ctx, over: Option<&PveApi>, what: &str) -> Result<Arc<PveClient>, Diagnostics> {
    let mut cfg = ctx.clients.pve.clone().unwrap_or_default();
    if let Some(o) = over {
        if let Some(e) = &o.endpoint {
            cfg.endpoint = Some(e.clone());
        }
        if let Some(ca) = &o.ca_pem {
            cfg.ca_pem = Some(ca.clone());
            cfg.tls_fingerprint = None;
            cfg.insecure = None;
        }
    }
    if cfg.endpoint.is_none() {
        return Err(Diagnostics::error(
            "PVE API not configured",
            format!("{what} needs the provider's pve block (or EDGE_PVE_* variables), or its own pve.endpoint."),
        ));
    }
    crate::clients::pve(&cfg).map_err(|e| Diagnostics::error("Cannot set up the PVE client", e.to_string()))
}
