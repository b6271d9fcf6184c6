//! Property test: for random trees, our NAR is byte-identical to `nix-store --dump`,
//! our hash equals `nix hash path`, and our reader round-trips it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::*;
use edge_images::{hash::nar_hash, nar};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File { data: Vec<u8>, exec: bool },
    Link(String),
    Dir(BTreeMap<String, Node>),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._+=-]{1,10}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>())
            .prop_map(|(data, exec)| Node::File { data, exec }),
        1 => "[a-z/.]{1,20}".prop_map(Node::Link),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| proptest::collection::btree_map(name(), inner, 0..6).prop_map(Node::Dir))
}

fn write(path: &Path, n: &Node) {
    match n {
        Node::File { data, exec } => {
            fs::write(path, data).unwrap();
            let mode = if *exec { 0o755 } else { 0o644 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Link(t) => symlink(t, path).unwrap(),
        Node::Dir(m) => {
            fs::create_dir(path).unwrap();
            for (k, v) in m {
                write(&path.join(k), v);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_match_nix(root in proptest::collection::btree_map(name(), node(), 0..8)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("root");
        write(&p, &Node::Dir(root));
        let theirs = ok_bytes(nix("nix-store").arg("--dump").arg(&p));
        let mut ours = Vec::new();
        nar::dump_path(&p, &mut ours).unwrap();
        prop_assert!(ours == theirs, "NAR differs from nix-store --dump ({} vs {} bytes)", ours.len(), theirs.len());
        let (h, _) = nar_hash(&p).unwrap();
        let nix_h = ok(nix("nix").args(["hash", "path", "--base32"]).arg(&p));
        prop_assert_eq!(h.to_nixbase32(), nix_h);
        let back = d.path().join("back");
        nar::restore(&theirs[..], &back).unwrap();
        let mut again = Vec::new();
        nar::dump_path(&back, &mut again).unwrap();
        prop_assert!(again == theirs, "restore + dump does not round-trip");
    }
}
