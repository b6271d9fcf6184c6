//! Actions: one module each; they implement `framework::Action`.

use std::sync::Arc;

use crate::framework::verbs::DynAction;

/// Every action this provider serves.
pub fn all() -> Vec<Arc<dyn DynAction>> {
    vec![]
}
