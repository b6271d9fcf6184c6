//! Provider functions: one module each; they implement `framework::function::Function`.

pub mod calendar_next;
pub mod nix_base32;

use std::sync::Arc;

use crate::framework::function::Function;

/// Every function this provider serves.
pub fn all() -> Vec<Arc<dyn Function>> {
    vec![Arc::new(calendar_next::CalendarNext), Arc::new(nix_base32::NixBase32)]
}
