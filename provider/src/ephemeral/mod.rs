//! Ephemeral resources: one module each; they implement `framework::EphemeralResource`.

use std::sync::Arc;

use crate::framework::verbs::DynEphemeral;

/// Every ephemeral resource this provider serves.
pub fn all() -> Vec<Arc<dyn DynEphemeral>> {
    vec![]
}
