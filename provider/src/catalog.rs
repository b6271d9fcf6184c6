//! Everything the provider serves, by verb: the one list the server is built from.

use crate::framework::Catalog;

pub fn catalog() -> Catalog {
    Catalog {
        resources: crate::resources::all(),
        data_sources: crate::data_sources::all(),
        ephemeral_resources: crate::ephemeral::all(),
        list_resources: crate::list_resources::all(),
        actions: crate::actions::all(),
        functions: crate::functions::all(),
    }
}
