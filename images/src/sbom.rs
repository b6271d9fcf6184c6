//! CycloneDX 1.5 JSON SBOM of a store closure: one component per store path (name and version
//! split the way Nix's `parseDrvName` does), its NAR hash, and the reference graph as
//! `dependencies`. Deterministic: the same closure gives the same bytes (no timestamp, serial
//! number derived from the root path).

use serde_json::{json, Value};

use crate::refs::PathInfo;
use crate::store_path::StorePath;

/// Nix's parseDrvName: the version starts after the first `-` that is not followed by a letter.
pub fn split_name_version(name: &str) -> (&str, &str) {
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            return (&name[..i], &name[i + 1..]);
        }
    }
    (name, "")
}

fn component(p: &StorePath, info: Option<&PathInfo>) -> Value {
    let (name, version) = split_name_version(p.name());
    let mut c = json!({
        "type": "library",
        "bom-ref": p.to_string(),
        "name": name,
        "purl": format!("pkg:nix/{name}@{}?store_path={}", if version.is_empty() { "unknown" } else { version }, p.base_name()),
        "properties": [{"name": "nix:store_path", "value": p.to_string()}],
    });
    if !version.is_empty() {
        c["version"] = json!(version);
    }
    if let Some(i) = info {
        c["hashes"] = json!([{"alg": "SHA-256", "content": i.nar_hash.to_hex()}]);
        c["properties"] = json!([
            {"name": "nix:store_path", "value": p.to_string()},
            {"name": "nix:nar_hash", "value": i.nar_hash.to_string()},
            {"name": "nix:nar_size", "value": i.nar_size.to_string()},
        ]);
    }
    c
}

/// Build the SBOM for `root` given its closure (which should include `root`).
pub fn cyclonedx(root: &StorePath, closure: &[PathInfo], tool_version: &str) -> Value {
    let d = crate::hash::Sha256Hash::digest(root.to_string().as_bytes()).0;
    // A name-based UUID (version 5 layout) so the serial number is stable for a given root.
    let uuid = format!(
        "{}-{}-5{}-{:x}{}-{}",
        hex::encode(&d[0..4]),
        hex::encode(&d[4..6]),
        &hex::encode(&d[6..8])[1..],
        (d[8] & 0x3) | 0x8,
        &hex::encode(&d[8..10])[1..],
        hex::encode(&d[10..16])
    );
    let info_of = |p: &StorePath| closure.iter().find(|i| &i.path == p);
    let components: Vec<Value> =
        closure.iter().filter(|i| &i.path != root).map(|i| component(&i.path, Some(i))).collect();
    let dependencies: Vec<Value> = closure
        .iter()
        .map(|i| {
            let deps: Vec<String> = i.references.iter().filter(|r| *r != &i.path).map(|r| r.to_string()).collect();
            json!({"ref": i.path.to_string(), "dependsOn": deps})
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{uuid}"),
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "edge-image", "version": tool_version}]},
            "component": component(root, info_of(root)),
        },
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(split_name_version("openssl-3.0.12"), ("openssl", "3.0.12"));
        assert_eq!(split_name_version("nixos-system-edge-24.05"), ("nixos-system-edge", "24.05"));
        assert_eq!(split_name_version("source"), ("source", ""));
    }
}
