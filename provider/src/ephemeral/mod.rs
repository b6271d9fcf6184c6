//! Ephemeral resources: one module each; they implement `framework::EphemeralResource`.

pub mod pve_token;

use std::sync::Arc;

use crate::framework::verbs::DynEphemeral;
use crate::framework::EphemeralHandle;

/// Every ephemeral resource this provider serves.
pub fn all() -> Vec<Arc<dyn DynEphemeral>> {
    vec![Arc::new(EphemeralHandle::new(pve_token::PveToken))]
}
