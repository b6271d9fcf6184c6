//! Data sources: one module each; they implement `framework::DataSource` the same way.

pub mod image_manifest;
pub mod proxmox_cluster;
pub mod wireguard_interface;

use std::sync::Arc;

use crate::framework::verbs::{DataSourceHandle, DynDataSource};

/// Every data source this provider serves.
pub fn all() -> Vec<Arc<dyn DynDataSource>> {
    vec![
        Arc::new(DataSourceHandle::new(wireguard_interface::WireguardInterface)),
        Arc::new(DataSourceHandle::new(proxmox_cluster::ProxmoxCluster)),
        Arc::new(DataSourceHandle::new(image_manifest::ImageManifest)),
    ]
}
