//! List resources (`terraform query`): one module per managed resource type they enumerate.

use std::sync::Arc;

use crate::framework::verbs::DynList;

/// Every list resource this provider serves.
pub fn all() -> Vec<Arc<dyn DynList>> {
    vec![]
}
