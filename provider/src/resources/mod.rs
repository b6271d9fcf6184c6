//! One module per resource type; they all implement `framework::Resource` the same way.

pub mod calendar;
pub mod ceph_pool;
pub mod pbs_job;
pub mod proxmox_node;
pub mod wireguard_key;
pub mod wireguard_peer;

use std::sync::Arc;

use crate::framework::resource::{DynResource, ResourceHandle};

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
