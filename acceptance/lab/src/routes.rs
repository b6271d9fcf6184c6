//! Route tables: what each emulated API serves, as one list of (METHOD, path template,
//! handler) per product. The schema (or, with validation off, [`crate::api::route`]) has
//! already turned the request path into a template, so serving a request is finding the
//! entry with that method and template. The list of implemented endpoints (`coverage`, the
//! fallback router, the "not implemented by edge-lab" answer) is read off the same table.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::lab::Lab;

/// A request's parameters after validation (path parameters included).
pub type Params = Map<String, Value>;

/// One endpoint's handler: the lab, the request's context `C` (store, node, caller), its
/// parameters.
pub type Handler<C, R> = fn(&Arc<Lab>, &C, &Params) -> R;

/// One endpoint: method, path template as the schema spells it, and what serves it (`H` is a
/// [`Handler`] or, where a product answers in more than one shape, the product's own enum).
pub struct Route<H> {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: H,
}

impl<H> Route<H> {
    pub const fn get(path: &'static str, handler: H) -> Self {
        Route { method: "GET", path, handler }
    }
    pub const fn post(path: &'static str, handler: H) -> Self {
        Route { method: "POST", path, handler }
    }
    pub const fn put(path: &'static str, handler: H) -> Self {
        Route { method: "PUT", path, handler }
    }
    pub const fn delete(path: &'static str, handler: H) -> Self {
        Route { method: "DELETE", path, handler }
    }
}

/// The entry serving `method` on `template`, if the table has one.
pub fn find<'a, H>(routes: &'a [Route<H>], method: &str, template: &str) -> Option<&'a Route<H>> {
    routes.iter().find(|r| r.method == method && r.path == template)
}

/// The table's (METHOD, template) pairs in its order, computed at compile time so that a
/// product can publish them as a plain constant (`N` must be the table's length).
pub const fn endpoints<H, const N: usize>(routes: &[Route<H>]) -> [(&'static str, &'static str); N] {
    assert!(routes.len() == N, "endpoints::<N>: N must be the table's length");
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (routes[i].method, routes[i].path);
        i += 1;
    }
    out
}

/// Entries that repeat a (METHOD, template) pair: only the first of them would ever serve.
pub fn repeated<H>(routes: &[Route<H>]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    routes.iter().filter(|r| !seen.insert((r.method, r.path))).map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Arc<Lab>, _: &(), _: &Params) {}

    const TABLE: &[Route<Handler<(), ()>>] =
        &[Route::get("/a", nothing), Route::post("/a", nothing), Route::delete("/a/{id}", nothing)];

    #[test]
    fn endpoints_lists_the_table_in_order() {
        const LIST: [(&str, &str); 3] = endpoints::<_, 3>(TABLE);
        assert_eq!(LIST, [("GET", "/a"), ("POST", "/a"), ("DELETE", "/a/{id}")]);
    }

    #[test]
    fn find_matches_method_and_template() {
        assert_eq!(find(TABLE, "POST", "/a").map(|r| r.method), Some("POST"));
        assert!(find(TABLE, "PUT", "/a").is_none());
        assert!(find(TABLE, "GET", "/a/{id}").is_none());
    }

    #[test]
    fn repeated_names_the_shadowed_entries() {
        assert!(repeated(TABLE).is_empty());
        let twice = [Route::get("/a", nothing), Route::get("/a", nothing)];
        assert_eq!(repeated(&twice), vec!["GET /a".to_string()]);
    }
}
