//! List resources (`terraform query`): one module per managed resource type they enumerate.

pub mod ceph_pool;
pub mod pbs_job;
pub mod proxmox_node;

use std::sync::Arc;

use crate::framework::verbs::DynList;
use crate::framework::ListHandle;

/// Every list resource this provider serves.
pub fn all() -> Vec<Arc<dyn DynList>> {
    vec![
        Arc::new(ListHandle::new(ceph_pool::CephPools)),
        Arc::new(ListHandle::new(pbs_job::PbsJobs)),
        Arc::new(ListHandle::new(proxmox_node::ProxmoxNodes)),
    ]
}
