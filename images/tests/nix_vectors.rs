//! Vectors produced by the real `nix` at test time: NAR bytes, NAR hashes, nixbase32,
//! content-addressed store paths, and signatures in both directions.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::*;
use edge_images::hash::{nar_hash, Sha256Hash};
use edge_images::keys::{PublicKey, SecretKey, Signature};
use edge_images::narinfo::fingerprint;
use edge_images::store_path::{add_path_store_path, StorePath};
use edge_images::{nar, nixbase32};

/// A tree exercising every NAR feature: executables, symlinks (dangling, absolute), empty
/// file and dir, sizes around the 8-byte padding, names whose byte order differs from
/// locale order, non-ASCII names.
fn make_tree(root: &Path, tag: &str) {
    fs::create_dir_all(root.join("sub/empty")).unwrap();
    fs::create_dir_all(root.join("Zed/deeper")).unwrap();
    fs::write(root.join("tag"), tag).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    for n in [1usize, 7, 8, 9, 15, 16, 17, 4096, 70_000] {
        fs::write(root.join(format!("f{n}")), vec![(n % 251) as u8; n]).unwrap();
    }
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("Zed/deeper/x"), b"x").unwrap();
    fs::write(root.join("sub/_under"), b"u").unwrap();
    fs::write(root.join("sub/a-b"), b"ab").unwrap();
    fs::write(root.join("sub/a.b"), b"a.b").unwrap();
    fs::write(root.join("sub/\u{e9}t\u{e9}"), b"unicode").unwrap();
    symlink("f7", root.join("link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    symlink("../Zed", root.join("sub/up")).unwrap();
}

#[test]
fn nar_bytes_and_hash_match_nix() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("tree");
    make_tree(&root, &nonce());
    let theirs = ok_bytes(nix("nix-store").arg("--dump").arg(&root));
    let mut ours = Vec::new();
    nar::dump_path(&root, &mut ours).unwrap();
    assert_eq!(ours.len(), theirs.len(), "NAR size differs from nix-store --dump");
    assert!(ours == theirs, "NAR bytes differ from nix-store --dump");
    // Our reader accepts Nix's NAR.
    assert_eq!(nar::validate(&theirs[..]).unwrap().nar_size, theirs.len() as u64);

    let (h, size) = nar_hash(&root).unwrap();
    assert_eq!(size, theirs.len() as u64);
    let nix_b32 = ok(nix("nix").args(["hash", "path", "--base32"]).arg(&root));
    assert_eq!(h.to_nixbase32(), nix_b32);
    let nix_sri = ok(nix("nix").args(["hash", "path"]).arg(&root));
    assert_eq!(h.to_sri(), nix_sri);
    // The CLI prints the same, and its --nar is the same bytes.
    assert_eq!(ok(edge_image().arg("hash").arg(&root)), format!("sha256:{nix_b32}"));
    assert!(ok_bytes(edge_image().args(["hash", "--nar"]).arg(&root)) == theirs);

    // Single files and symlinks at the top level too.
    for p in ["run.sh", "empty", "f70000", "link"] {
        let theirs = ok_bytes(nix("nix-store").arg("--dump").arg(root.join(p)));
        let mut ours = Vec::new();
        nar::dump_path(&root.join(p), &mut ours).unwrap();
        assert!(ours == theirs, "NAR of {p} differs");
    }
}

#[test]
fn nixbase32_matches_nix() {
    for data in [&b""[..], b"a", b"edgeform", &[0xffu8; 32]] {
        let h = Sha256Hash::digest(data);
        let theirs = ok(nix("nix").args(["hash", "to-base32", "--type", "sha256", &h.to_hex()]));
        assert_eq!(nixbase32::encode(&h.0), theirs);
        assert_eq!(nixbase32::decode(&theirs).unwrap(), h.0.to_vec());
        assert_eq!(h, format!("sha256:{theirs}").parse().unwrap());
    }
}

#[test]
fn add_path_store_path_matches_nix() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("tree");
    make_tree(&root, &nonce());
    let name = format!("edge-images-test-{}", nonce());
    let theirs = ok(nix("nix").args(["store", "add-path", "--name", &name]).arg(&root));
    let (h, _) = nar_hash(&root).unwrap();
    assert_eq!(add_path_store_path(&h, &name).unwrap().to_string(), theirs);

    // A single file too.
    let f = d.path().join("one");
    fs::write(&f, nonce()).unwrap();
    let theirs = ok(nix("nix").args(["store", "add-path"]).arg(&f));
    let (h, _) = nar_hash(&f).unwrap();
    assert_eq!(add_path_store_path(&h, "one").unwrap().to_string(), theirs);
}

/// `nix store sign` signs an input-addressed build output; we verify that signature from our
/// own NAR hash and Nix's reference list, and reject it under a different key.
#[test]
fn nix_signature_verified_by_us() {
    let d = tempfile::tempdir().unwrap();
    let out = build_simple(d.path(), &format!("edge-sig-{}", nonce()), "signed");
    let (sk, public) = nix_keypair(d.path(), "nixtest-1");
    ok(nix("nix").args(["store", "sign", "--key-file"]).arg(&sk).arg(&out));
    let info: serde_json::Value = serde_json::from_str(&ok(nix("nix").args(["path-info", "--json", &out]))).unwrap();
    let sig = info[0]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .find(|s| s.starts_with("nixtest-1:"))
        .expect("nix store sign added a signature")
        .to_string();
    let refs: Vec<StorePath> =
        info[0]["references"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().parse().unwrap()).collect();
    let path: StorePath = out.parse().unwrap();
    let (h, size) = nar_hash(Path::new(&out)).unwrap();
    assert_eq!(h, info[0]["narHash"].as_str().unwrap().parse().unwrap());
    assert_eq!(size, info[0]["narSize"].as_u64().unwrap());
    let fp = fingerprint(&path, &h, size, &refs);
    let pk = PublicKey::parse(&public).unwrap();
    let sig = Signature::parse(&sig).unwrap();
    assert!(pk.verify(fp.as_bytes(), &sig), "Nix's signature does not verify with our fingerprint {fp}");
    let wrong = SecretKey::generate("nixtest-1").unwrap().public();
    assert!(!wrong.verify(fp.as_bytes(), &sig));

    // The CLI agrees (and computes references by scanning the store).
    let msg = ok(edge_image().args(["verify", "--trusted-key", &public, "--sig", &sig.to_string(), &out]));
    assert!(msg.contains("OK"), "{msg}");
    let err =
        fails(edge_image().args(["verify", "--trusted-key", &wrong.to_string(), "--sig", &sig.to_string(), &out]));
    assert!(err.contains("does not verify"), "{err}");

    // Our signature over the same path equals... a valid one for Nix's key format: sign with
    // Nix's secret key file through our parser and check Nix's public key accepts it.
    let ours = SecretKey::parse(&fs::read_to_string(&sk).unwrap()).unwrap().sign(fp.as_bytes());
    assert_eq!(ours, sig, "ed25519 is deterministic: same key, same message, same signature");
}
