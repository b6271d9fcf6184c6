//! The generator of the lab's structural schemas (`acceptance/lab/schemas/*.json.gz`).
//!
//! Proxmox publishes each release's API schema in its API viewer (`apidata.js`, AGPL). The lab
//! needs only its structure: paths, methods, parameter types, patterns, enums, ranges,
//! `optional`, formats, `returns`, `permissions`. This module reads an upstream schema (the
//! project's reference copy, or the pinned upstream file downloaded and checked by sha256),
//! drops every piece of prose (descriptions, titles, type texts), applies a profile's
//! removals (parameters a release did not have yet, each with the source that dates it) and
//! writes one compressed file per profile plus `PROVENANCE.json`. `edge-lab schemas generate`
//! runs it; `tests/schemas.rs` checks the committed files are exactly its output.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::schema::Product;

/// An upstream schema file, pinned (`schemas/sources.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// Repository, path and commit the raw file comes from.
    pub repo: String,
    pub path: String,
    pub commit: String,
    pub url: String,
    /// sha256 of the raw upstream file (a JavaScript file holding the schema).
    pub raw_sha256: String,
    /// The reference copy: that file with the JavaScript stripped, as JSON (`../shared/reference`).
    pub reference_file: String,
    pub reference_sha256: String,
    pub license: String,
    pub note: String,
}

/// Removes a property a release did not have yet from the parameters, the returned objects and
/// the `delete` lists of some paths, or whole paths.
#[derive(Debug, Clone, Copy)]
pub enum Patch {
    Prop { prop: &'static str, paths: &'static [&'static str], since: &'static str },
    Path { path: &'static str, since: &'static str },
}

/// One structural schema the lab embeds.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Output file name in `schemas/`.
    pub file: &'static str,
    pub product: Product,
    /// The `sources.json` key it is made from.
    pub source: &'static str,
    pub patches: &'static [Patch],
}

const SYNC: &[&str] = &["/admin/sync", "/config/sync", "/config/sync/{id}", "/pull", "/push"];
const DATASTORE: &[&str] = &["/config/datastore", "/config/datastore/{name}"];

/// Each release's schema. PBS 3.2 and 4.0 are derived: the published 3.x schema is 3.4's, the
/// 4.x one is 4.2's; versions per proxmox-backup's debian/changelog and the pbs-api-types history.
pub const SPECS: &[Spec] = &[
    Spec { file: "pve-8.4.json.gz", product: Product::Pve, source: "pve-8.4", patches: &[] },
    Spec { file: "pve-9.1.json.gz", product: Product::Pve, source: "pve-9.1", patches: &[] },
    Spec {
        file: "pbs-3.2.json.gz",
        product: Product::Pbs,
        source: "pbs-3.x",
        patches: &[
            Patch::Path { path: "/push", since: "3.3.0 (push sync, 3.2.11 on the test repository)" },
            Patch::Prop { prop: "sync-direction", paths: SYNC, since: "3.3.0 (3.2.13)" },
            Patch::Prop { prop: "resync-corrupt", paths: SYNC, since: "3.3.0 (3.2.12)" },
            Patch::Prop { prop: "encrypted-only", paths: SYNC, since: "3.3.7" },
            Patch::Prop { prop: "verified-only", paths: SYNC, since: "3.3.7" },
            Patch::Prop { prop: "reuse-datastore", paths: DATASTORE, since: "3.2.9, released in 3.3.0" },
            Patch::Prop { prop: "backing-device", paths: DATASTORE, since: "3.3.0 (removable datastores, 3.2.12)" },
            Patch::Prop {
                prop: "mount-status",
                paths: &["/admin/datastore", "/status/datastore-usage", "/config/remote/{name}/scan"],
                since: "3.3.0",
            },
            Patch::Prop { prop: "ticket-info", paths: &["/access/ticket"], since: "3.3" },
            Patch::Prop {
                prop: "regenerate",
                paths: &["/access/users/{userid}/token/{token-name}"],
                since: "3.3.7 (f41a233a8)",
            },
        ],
    },
    Spec { file: "pbs-3.4.json.gz", product: Product::Pbs, source: "pbs-3.x", patches: &[] },
    Spec {
        file: "pbs-4.0.json.gz",
        product: Product::Pbs,
        source: "pbs-4.x",
        patches: &[
            Patch::Prop { prop: "unmount-on-done", paths: SYNC, since: "4.0.20" },
            Patch::Prop { prop: "worker-threads", paths: SYNC, since: "4.1.8" },
            Patch::Prop { prop: "active-encryption-key", paths: SYNC, since: "4.1.9" },
            Patch::Prop { prop: "associated-key", paths: SYNC, since: "4.1.9" },
            // With its child /config/encryption-keys/{id}.
            Patch::Path { path: "/config/encryption-keys", since: "4.1.9" },
            Patch::Prop {
                prop: "read-threads",
                paths: &["/config/verify", "/config/verify/{id}", "/admin/verify", "/admin/datastore/{store}/verify"],
                since: "4.0.20",
            },
            Patch::Prop {
                prop: "verify-threads",
                paths: &["/config/verify", "/config/verify/{id}", "/admin/verify", "/admin/datastore/{store}/verify"],
                since: "4.0.20",
            },
            Patch::Prop { prop: "notification-thresholds", paths: DATASTORE, since: "4.1.7" },
            Patch::Prop { prop: "counter-reset-schedule", paths: DATASTORE, since: "4.1.7" },
            Patch::Prop { prop: "gc-on-unmount", paths: DATASTORE, since: "4.1.8" },
            Patch::Prop { prop: "use-node-proxy", paths: &["/config/remote", "/config/remote/{name}"], since: "4.1.6" },
            Patch::Prop {
                prop: "backend-type",
                paths: &[
                    "/admin/datastore",
                    "/admin/datastore/{store}/status",
                    "/status/datastore-usage",
                    "/config/remote/{name}/scan",
                ],
                since: "4.1.7",
            },
            Patch::Prop { prop: "endtime", paths: &["/nodes/{node}/tasks/{upid}/status"], since: "4.2.1 (2683bca43)" },
        ],
    },
];

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a Proxmox API schema: {1}")]
    Parse(String, String),
    #[error("{what}: sha256 {got}, but the pinned source says {want}")]
    Checksum { what: String, got: String, want: String },
    #[error("schemas/sources.json has no source {0:?}")]
    NoSource(String),
    #[error("{file}: patch for {what} removed nothing: the upstream schema changed, check the patch list")]
    PatchUnused { file: String, what: String },
    #[error("downloading {0}: {1}")]
    Download(String, String),
}

/// The pinned sources, committed next to the generated files.
pub fn sources() -> BTreeMap<String, Source> {
    serde_json::from_str(include_str!("../schemas/sources.json")).unwrap_or_default()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Reads `source` from a directory holding the reference copies (`../shared/reference`).
pub fn read_reference(dir: &Path, key: &str) -> Result<Value, GenError> {
    let src = sources().remove(key).ok_or_else(|| GenError::NoSource(key.to_string()))?;
    let path = dir.join(&src.reference_file);
    let bytes = std::fs::read(&path).map_err(|e| GenError::Io(path.display().to_string(), e))?;
    let got = sha256_hex(&bytes);
    if got != src.reference_sha256 {
        return Err(GenError::Checksum { what: path.display().to_string(), got, want: src.reference_sha256 });
    }
    serde_json::from_slice(&bytes).map_err(|e| GenError::Parse(path.display().to_string(), e.to_string()))
}

/// Downloads the pinned raw upstream file (curl), checks its sha256 and takes the schema out
/// of the JavaScript around it.
pub fn download(key: &str) -> Result<Value, GenError> {
    let src = sources().remove(key).ok_or_else(|| GenError::NoSource(key.to_string()))?;
    let out = std::process::Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", &src.url])
        .output()
        .map_err(|e| GenError::Download(src.url.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(GenError::Download(src.url.clone(), String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let got = sha256_hex(&out.stdout);
    if got != src.raw_sha256 {
        return Err(GenError::Checksum { what: src.url.clone(), got, want: src.raw_sha256 });
    }
    schema_from_js(&String::from_utf8_lossy(&out.stdout)).map_err(|e| GenError::Parse(src.url.clone(), e))
}

/// The API viewer files assign the schema to a variable (`const apiSchema = [...]` in PVE's
/// apidata.js, `var apiSchema = [...]` followed by viewer code in PBS's apidoc.js): the first
/// JSON value after the `=`.
pub fn schema_from_js(js: &str) -> Result<Value, String> {
    let at = js.find("apiSchema").ok_or("no apiSchema variable")?;
    let rest = &js[at..];
    let eq = rest.find('=').ok_or("no assignment")?;
    let mut values = serde_json::Deserializer::from_str(&rest[eq + 1..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("nothing after the assignment".into()),
    }
}

/// Prose keys dropped from every schema definition (a definition's other keys are structure).
const PROSE: &[&str] = &["description", "verbose_description", "title", "typetext", "format_description", "renderer"];

/// The schema tree without prose: nodes keep `path`, `info` and `children`.
pub fn structural(tree: &Value) -> Value {
    match tree {
        Value::Array(nodes) => Value::Array(nodes.iter().map(structural_node).collect()),
        other => structural_node(other),
    }
}

fn structural_node(n: &Value) -> Value {
    let mut out = Map::new();
    if let Some(p) = n.get("path") {
        out.insert("path".into(), p.clone());
    }
    if let Some(info) = n.get("info").and_then(Value::as_object) {
        let methods = info.iter().map(|(m, i)| (m.clone(), method(i))).collect();
        out.insert("info".into(), Value::Object(methods));
    }
    if let Some(ch) = n.get("children").and_then(Value::as_array) {
        out.insert("children".into(), Value::Array(ch.iter().map(structural_node).collect()));
    }
    Value::Object(out)
}

fn method(i: &Value) -> Value {
    let Some(o) = i.as_object() else { return i.clone() };
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "parameters" | "returns" => {
                out.insert(k.clone(), definition(v));
            }
            "permissions" => {
                let mut p = v.as_object().cloned().unwrap_or_default();
                p.remove("description");
                out.insert(k.clone(), Value::Object(p));
            }
            k2 if PROSE.contains(&k2) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// A JSON-schema-like definition: recurse into `properties` (name → definition), `items`,
/// `additionalProperties` (when a definition), `oneOf`/`anyOf`/`allOf` and `format` (PVE property strings are a map
/// name → definition; PBS wraps them as a definition with `properties`).
fn definition(d: &Value) -> Value {
    let Some(o) = d.as_object() else { return d.clone() };
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "properties" => {
                let props = v.as_object().map(|m| m.iter().map(|(n, d)| (n.clone(), definition(d))).collect());
                out.insert(k.clone(), props.map(Value::Object).unwrap_or_else(|| v.clone()));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), definition(v));
            }
            "oneOf" | "anyOf" | "allOf" if v.is_array() => {
                let alts = v.as_array().into_iter().flatten().map(definition).collect();
                out.insert(k.clone(), Value::Array(alts));
            }
            "format" if v.is_object() => {
                let f = if v.get("properties").is_some_and(Value::is_object) {
                    definition(v)
                } else {
                    Value::Object(
                        v.as_object().into_iter().flatten().map(|(n, d)| (n.clone(), definition(d))).collect(),
                    )
                };
                out.insert(k.clone(), f);
            }
            k2 if PROSE.contains(&k2) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Applies a spec's patches; each must remove something.
fn apply(spec: &Spec, tree: &mut Value) -> Result<(), GenError> {
    for p in spec.patches {
        let removed = match p {
            Patch::Path { path, .. } => remove_path(tree, path),
            Patch::Prop { prop, paths, .. } => {
                let mut n = 0;
                visit_nodes(tree, &mut |node| {
                    let Some(path) = node.get("path").and_then(Value::as_str) else { return };
                    if !paths.contains(&path) {
                        return;
                    }
                    for (_, m) in node.get_mut("info").and_then(Value::as_object_mut).into_iter().flatten() {
                        for part in ["parameters", "returns"] {
                            if let Some(d) = m.get_mut(part) {
                                n += remove_prop(d, prop);
                            }
                        }
                    }
                });
                n
            }
        };
        if removed == 0 {
            let what = match p {
                Patch::Path { path, .. } => format!("path {path}"),
                Patch::Prop { prop, .. } => format!("property {prop}"),
            };
            return Err(GenError::PatchUnused { file: spec.file.into(), what });
        }
    }
    Ok(())
}

fn visit_nodes(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    match v {
        Value::Array(nodes) => nodes.iter_mut().for_each(|n| visit_nodes(n, f)),
        Value::Object(_) => {
            f(v);
            if let Some(ch) = v.get_mut("children") {
                visit_nodes(ch, f);
            }
        }
        _ => {}
    }
}

fn remove_path(tree: &mut Value, path: &str) -> usize {
    let mut n = 0;
    visit_nodes(tree, &mut |node| {
        if let Some(ch) = node.get_mut("children").and_then(Value::as_array_mut) {
            let before = ch.len();
            ch.retain(|c| c.get("path").and_then(Value::as_str) != Some(path));
            n += before - ch.len();
        }
    });
    if let Value::Array(top) = tree {
        let before = top.len();
        top.retain(|c| c.get("path").and_then(Value::as_str) != Some(path));
        n += before - top.len();
    }
    n
}

/// Removes `prop` from a definition's properties (and its items'), and from the enum of a
/// `delete` parameter.
fn remove_prop(d: &mut Value, prop: &str) -> usize {
    let mut n = 0;
    if let Some(props) = d.get_mut("properties").and_then(Value::as_object_mut) {
        n += usize::from(props.remove(prop).is_some());
        if let Some(en) = props
            .get_mut("delete")
            .and_then(|del| del.get_mut("items").and_then(|i| i.get_mut("enum")).and_then(Value::as_array_mut))
        {
            let before = en.len();
            en.retain(|v| v.as_str() != Some(prop));
            n += before - en.len();
        }
    }
    if let Some(items) = d.get_mut("items") {
        n += remove_prop(items, prop);
    }
    n
}

/// The structural schema of one spec from its upstream tree.
pub fn make(spec: &Spec, upstream: &Value) -> Result<Value, GenError> {
    let mut tree = structural(upstream);
    apply(spec, &mut tree)?;
    Ok(tree)
}

/// gzip with a fixed header (mtime 0), so the same input always gives the same bytes.
pub fn compress(v: &Value) -> Result<Vec<u8>, GenError> {
    let json = serde_json::to_vec(v).map_err(|e| GenError::Parse("encoding".into(), e.to_string()))?;
    let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    enc.write_all(&json).map_err(|e| GenError::Io("gzip".into(), e))?;
    enc.finish().map_err(|e| GenError::Io("gzip".into(), e))
}

pub fn decompress(bytes: &[u8]) -> Result<Value, GenError> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut s).map_err(|e| GenError::Io("gunzip".into(), e))?;
    serde_json::from_str(&s).map_err(|e| GenError::Parse("embedded schema".into(), e.to_string()))
}

/// Everything `schemas/` holds, from upstream trees by source key: (file name, bytes).
pub fn generate(upstream: &BTreeMap<String, Value>) -> Result<Vec<(String, Vec<u8>)>, GenError> {
    let sources = sources();
    let mut files = Vec::new();
    let mut provenance = Map::new();
    for spec in SPECS {
        let src = sources.get(spec.source).ok_or_else(|| GenError::NoSource(spec.source.into()))?;
        let tree = upstream.get(spec.source).ok_or_else(|| GenError::NoSource(spec.source.into()))?;
        let bytes = compress(&make(spec, tree)?)?;
        let removed: Vec<Value> = spec
            .patches
            .iter()
            .map(|p| match p {
                Patch::Path { path, since } => serde_json::json!({"path": path, "since": since}),
                Patch::Prop { prop, paths, since } => {
                    serde_json::json!({"property": prop, "paths": paths, "since": since})
                }
            })
            .collect();
        provenance.insert(
            spec.file.into(),
            serde_json::json!({
                "product": spec.product, "source": spec.source, "upstream": format!("{} {} @ {}", src.repo, src.path, src.commit),
                "upstream_sha256": src.raw_sha256, "reference_sha256": src.reference_sha256, "license": src.license,
                "transform": "structural: prose (description, verbose_description, title, typetext, format_description, renderer) dropped; tree nodes keep path/info/children",
                "removed": removed, "sha256": sha256_hex(&bytes),
            }),
        );
        files.push((spec.file.to_string(), bytes));
    }
    let mut prov = serde_json::to_vec_pretty(&Value::Object(provenance))
        .map_err(|e| GenError::Parse("provenance".into(), e.to_string()))?;
    prov.push(b'\n');
    files.push(("PROVENANCE.json".into(), prov));
    Ok(files)
}

/// The upstream trees, from the reference directory or (when `None`) by download.
pub fn upstream(reference: Option<&Path>) -> Result<BTreeMap<String, Value>, GenError> {
    let mut keys: Vec<&str> = SPECS.iter().map(|s| s.source).collect();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let v = match reference {
                Some(dir) => read_reference(dir, k)?,
                None => download(k)?,
            };
            Ok((k.to_string(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prose_goes_structure_stays() {
        let tree = json!([{"path": "/x", "text": "x", "leaf": 1, "info": {"POST": {
            "description": "prose", "protected": 1, "permissions": {"description": "who", "check": ["perm", "/", ["Sys.Modify"]]},
            "parameters": {"type": "object", "properties": {
                "description": {"type": "string", "description": "a parameter named description stays", "optional": 1},
                "net": {"type": "string", "typetext": "<string>", "format": {"model": {"type": "string", "enum": ["a"], "description": "p"}}},
                "tuning": {"type": "string", "format": {"type": "object", "description": "p", "properties": {"k": {"type": "integer", "minimum": 1, "title": "t"}}}}
            }},
            "returns": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string", "description": "p"}}}}
        }}}]);
        let s = structural(&tree);
        let m = &s[0]["info"]["POST"];
        assert!(s[0].get("text").is_none() && m.get("description").is_none());
        assert_eq!(m["permissions"], json!({"check": ["perm", "/", ["Sys.Modify"]]}));
        assert_eq!(m["protected"], 1);
        let p = &m["parameters"]["properties"];
        assert_eq!(
            p["description"],
            json!({"type": "string", "optional": 1}),
            "a parameter called description is kept"
        );
        assert_eq!(p["net"], json!({"type": "string", "format": {"model": {"type": "string", "enum": ["a"]}}}));
        assert_eq!(p["tuning"]["format"]["properties"]["k"], json!({"type": "integer", "minimum": 1}));
        assert_eq!(m["returns"]["items"]["properties"]["id"], json!({"type": "string"}));
    }

    #[test]
    fn patches_remove_params_returns_and_delete_values_and_must_hit() {
        let tree = json!([{"path": "/config", "children": [{"path": "/config/sync", "info": {
            "PUT": {"parameters": {"properties": {"a": {}, "new": {}, "delete": {"type": "array", "items": {"enum": ["a", "new"]}}}}},
            "GET": {"returns": {"type": "array", "items": {"properties": {"a": {}, "new": {}}}}}
        }}, {"path": "/push", "info": {}}]}]);
        static P: &[Patch] = &[
            Patch::Prop { prop: "new", paths: &["/config/sync"], since: "x" },
            Patch::Path { path: "/push", since: "x" },
        ];
        let spec = Spec { file: "t", product: Product::Pbs, source: "s", patches: P };
        let out = make(&spec, &tree).unwrap();
        let sync = &out[0]["children"][0];
        assert_eq!(sync["info"]["PUT"]["parameters"]["properties"]["delete"]["items"]["enum"], json!(["a"]));
        assert!(sync["info"]["PUT"]["parameters"]["properties"].get("new").is_none());
        assert!(sync["info"]["GET"]["returns"]["items"]["properties"].get("new").is_none());
        assert_eq!(out[0]["children"].as_array().unwrap().len(), 1, "/push removed");
        static Q: &[Patch] = &[Patch::Prop { prop: "nothere", paths: &["/config/sync"], since: "x" }];
        let spec = Spec { file: "t", product: Product::Pbs, source: "s", patches: Q };
        assert!(matches!(make(&spec, &tree), Err(GenError::PatchUnused { .. })));
    }

    #[test]
    fn schema_from_viewer_javascript() {
        assert_eq!(schema_from_js("const apiSchema = [{\"path\":\"/a\"}];\n").unwrap(), json!([{"path": "/a"}]));
        let js = "var apiSchema = [{\"path\":\"/a\"}];\nExt.onReady(function() { var x = {a: 1}; });";
        assert_eq!(schema_from_js(js).unwrap(), json!([{"path": "/a"}]));
        assert!(schema_from_js("nothing here").is_err());
    }

    #[test]
    fn compression_is_reproducible() {
        let v = json!({"a": [1, 2, 3]});
        let a = compress(&v).unwrap();
        assert_eq!(a, compress(&v).unwrap());
        assert_eq!(decompress(&a).unwrap(), v);
    }
}
