//! Actions: one module each; they implement `framework::Action`.

pub mod node_reboot;
pub mod pbs_verify_now;

use std::sync::Arc;

use crate::framework::verbs::DynAction;
use crate::framework::ActionHandle;

/// Every action this provider serves.
pub fn all() -> Vec<Arc<dyn DynAction>> {
    vec![
        Arc::new(ActionHandle::new(pbs_verify_now::PbsVerifyNow)),
        Arc::new(ActionHandle::new(node_reboot::NodeReboot)),
    ]
}
