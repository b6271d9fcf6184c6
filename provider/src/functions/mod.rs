//! Provider functions: one module each; they implement `framework::function::Function`.

use std::sync::Arc;

use crate::framework::function::Function;

/// Every function this provider serves.
pub fn all() -> Vec<Arc<dyn Function>> {
    vec![]
}
