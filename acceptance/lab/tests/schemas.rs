//! The structural schemas the lab embeds are exactly what the generator makes from Proxmox's
//! published schemas, and each profile differs from the others where the releases differ.

use std::path::Path;

use edge_lab::schema::{Product, Schema};
use edge_lab::schemagen;
use sha2::Digest;

fn schemas_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

/// With the reference copies at hand (this checkout sits next to `shared/reference`), the
/// committed files must be byte for byte the generator's output: regenerate them with
/// `edge-lab schemas --from ../shared/reference --out acceptance/lab/schemas` after a change.
/// Without them (a clone elsewhere), each file must still be the one PROVENANCE.json records.
#[test]
fn embedded_schemas_are_the_generator_output() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference");
    let provenance: serde_json::Value =
        serde_json::from_slice(&std::fs::read(schemas_dir().join("PROVENANCE.json")).expect("PROVENANCE.json"))
            .expect("PROVENANCE.json is JSON");
    if reference.is_dir() {
        let upstream = schemagen::upstream(Some(&reference)).expect("reference schemas readable and as pinned");
        let files = schemagen::generate(&upstream).expect("generator");
        assert_eq!(files.len(), schemagen::SPECS.len() + 1);
        for (name, bytes) in files {
            let committed = std::fs::read(schemas_dir().join(&name)).unwrap_or_default();
            assert!(committed == bytes, "schemas/{name} is not the generator's output: regenerate it");
        }
    }
    for spec in schemagen::SPECS {
        let bytes = std::fs::read(schemas_dir().join(spec.file)).expect("schema file");
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(provenance[spec.file]["sha256"], sha.as_str(), "{} differs from PROVENANCE.json", spec.file);
        let tree = schemagen::decompress(&bytes).expect("decompresses");
        assert!(tree.as_array().is_some_and(|a| !a.is_empty()), "{} holds a schema tree", spec.file);
    }
}

/// No prose travels with the lab: not one description, title or type text is left.
#[test]
fn embedded_schemas_carry_no_prose() {
    for spec in schemagen::SPECS {
        let bytes = std::fs::read(schemas_dir().join(spec.file)).expect("schema file");
        let tree = schemagen::decompress(&bytes).expect("decompresses");
        let mut prose = Vec::new();
        find_prose(&tree, "", &mut prose);
        assert!(prose.is_empty(), "{}: prose left at {:?}", spec.file, &prose[..prose.len().min(5)]);
    }
}

/// Walks definitions the way the generator does; `properties` and PVE `format` maps are keyed
/// by names (a parameter may be called `description`), everything else by schema keywords.
fn find_prose(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        if let Some(a) = v.as_array() {
            for (i, x) in a.iter().enumerate() {
                find_prose(x, &format!("{at}[{i}]"), out);
            }
        }
        return;
    };
    for (k, x) in o {
        let named_map = k == "properties" || (k == "format" && x.get("properties").is_none());
        if named_map {
            for (name, d) in x.as_object().into_iter().flatten() {
                find_prose(d, &format!("{at}/{k}/{name}"), out);
            }
            continue;
        }
        if ["description", "verbose_description", "title", "typetext", "format_description", "text"]
            .contains(&k.as_str())
        {
            out.push(format!("{at}/{k}"));
        }
        find_prose(x, &format!("{at}/{k}"), out);
    }
}

fn params(schema: &Schema, method: &str, path: &str) -> Vec<String> {
    let ep = schema.endpoint(path).unwrap_or_else(|| panic!("{path} not in schema"));
    ep.info[method]["parameters"]["properties"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The profiles differ where the releases do (FIDELITY.md rows PBS-V1, PBS-V2, PVE-V1).
#[test]
fn profiles_differ_where_the_releases_differ() {
    let pbs32 = Schema::embedded(Product::Pbs, "3.2").unwrap();
    let pbs34 = Schema::embedded(Product::Pbs, "3.4").unwrap();
    let pbs40 = Schema::embedded(Product::Pbs, "4.0").unwrap();
    // Push sync arrived in PBS 3.3.
    assert!(!params(&pbs32, "POST", "/config/sync").contains(&"sync-direction".into()));
    assert!(params(&pbs34, "POST", "/config/sync").contains(&"sync-direction".into()));
    assert!(params(&pbs40, "POST", "/config/sync").contains(&"sync-direction".into()));
    assert!(pbs32.endpoint("/push").is_none() && pbs34.endpoint("/push").is_some());
    // A local sync (no remote) has been possible since 3.0.5.
    let remote = &pbs32.endpoint("/config/sync").unwrap().info["POST"]["parameters"]["properties"]["remote"];
    assert_eq!(remote["optional"], 1, "remote is optional on 3.2");
    // 4.0 has run-on-mount (4.0.4) but not unmount-on-done (4.0.20).
    let p40 = params(&pbs40, "POST", "/config/sync");
    assert!(p40.contains(&"run-on-mount".into()) && !p40.contains(&"unmount-on-done".into()), "{p40:?}");
    let pve84 = Schema::embedded(Product::Pve, "8.4").unwrap();
    let pve91 = Schema::embedded(Product::Pve, "9.1").unwrap();
    // Backup jobs: notification-mode since 8.1 (both); notification-policy gone in 9.
    let b84 = params(&pve84, "POST", "/cluster/backup");
    let b91 = params(&pve91, "POST", "/cluster/backup");
    assert!(b84.contains(&"notification-mode".into()) && b91.contains(&"notification-mode".into()));
    assert!(b84.contains(&"notification-policy".into()) && !b91.contains(&"notification-policy".into()));
    // Cluster create: token-coefficient is pve-cluster 9.1.0.
    assert!(!params(&pve84, "POST", "/cluster/config").contains(&"token-coefficient".into()));
    assert!(params(&pve91, "POST", "/cluster/config").contains(&"token-coefficient".into()));
}
