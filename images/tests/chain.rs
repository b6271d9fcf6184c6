//! The whole trust chain against real Nix, offline: an input-free derivation is built twice
//! with the same output hash, published into OUR file binary cache signed by edge-image,
//! accepted by `nix store verify` and `nix copy --from` (into a fresh chroot store), and
//! rejected by both Nix and `edge-image verify` after one byte is changed or with the wrong key.
//! Then the same for a signed image manifest.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use edge_images::store_path::StorePath;

fn nar_hash_of(out: &str) -> String {
    ok(nix("nix").args(["hash", "path", "--base32", out]))
}

fn nix_copy(cache: &Path, store: &Path, trusted: &str, path: &str) -> Result<(), String> {
    let o = nix("nix")
        .args(["copy", "--from"])
        .arg(format!("file://{}", cache.display()))
        .arg("--store")
        .arg(store)
        .args(["--option", "trusted-public-keys", trusted, path])
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).to_string())
    }
}

#[test]
fn build_sign_publish_copy_tamper() {
    let d = tempfile::tempdir().unwrap();
    let name = format!("edge-chain-{}", nonce());

    // Reproducible: build, delete, build again: same path, same NAR hash.
    let out = build_simple(d.path(), &name, "hello-edge");
    let first = nar_hash_of(&out);
    ok(nix("nix").args(["store", "delete", &out]));
    assert!(!Path::new(&out).exists(), "nix store delete left {out}");
    let again = build_simple(d.path(), &name, "hello-edge");
    assert_eq!(out, again);
    assert_eq!(first, nar_hash_of(&out), "rebuild gave a different NAR hash");

    // Publish into our cache, signed by our key.
    let (sk, pk) = our_keypair(d.path(), "edge-ci-1");
    let (_, other_pk) = our_keypair(d.path(), "edge-ci-2");
    let cache = d.path().join("cache");
    let url = format!("file://{}", cache.display());
    ok(edge_image().args(["publish", "--to", &url, "--key"]).arg(&sk).arg(&out));

    // Nix accepts our signature, in the cache and after copying into a fresh store.
    ok(nix("nix").args(["store", "verify", "--store", &url, "--sigs-needed", "1", "--trusted-public-keys", &pk, &out]));
    let store1 = d.path().join("store1");
    nix_copy(&cache, &store1, &pk, &out).expect("nix copy --from our cache");
    let copied = store1.join(out.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(&copied).unwrap(), "hello-edge\n");
    ok(nix("nix").args(["store", "verify", "--store"]).arg(&store1).args([
        "--sigs-needed",
        "1",
        "--trusted-public-keys",
        &pk,
        &out,
    ]));
    ok(edge_image().args(["verify", "--cache", &url, "--trusted-key", &pk, &out]));

    // Wrong key: both refuse.
    let err =
        nix_copy(&cache, &d.path().join("store2"), &other_pk, &out).expect_err("nix must refuse an untrusted key");
    assert!(err.contains("signature") || err.contains("trusted"), "{err}");
    let e = fails(edge_image().args(["verify", "--cache", &url, "--trusted-key", &other_pk, &out]));
    assert!(e.contains("not in the trusted key list"), "{e}");

    // One byte changed in the NAR: both refuse.
    let ni =
        fs::read_to_string(cache.join(format!("{}.narinfo", out.parse::<StorePath>().unwrap().hash_part()))).unwrap();
    let nar_url = ni.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    let nar_file = cache.join(nar_url);
    let mut bytes = fs::read(&nar_file).unwrap();
    let pos = bytes.windows(10).position(|w| w == b"hello-edge").unwrap();
    bytes[pos] = b'j';
    fs::write(&nar_file, &bytes).unwrap();
    let err = nix_copy(&cache, &d.path().join("store3"), &pk, &out).expect_err("nix must refuse a tampered NAR");
    assert!(err.contains("hash mismatch"), "{err}");
    let e = fails(edge_image().args(["verify", "--cache", &url, "--trusted-key", &pk, &out]));
    assert!(e.contains("hash mismatch"), "{e}");

    // Truncated NAR: our reader names it.
    let trunc = d.path().join("trunc.nar");
    fs::write(&trunc, &bytes[..bytes.len() - 9]).unwrap();
    let e = fails(edge_image().args(["verify", "--nar"]).arg(&trunc));
    assert!(e.contains("truncated"), "{e}");

    // A narinfo edited after signing (claims another size): both refuse.
    let cache2 = d.path().join("cache2");
    let url2 = format!("file://{}", cache2.display());
    ok(edge_image().args(["publish", "--to", &url2, "--key"]).arg(&sk).arg(&out));
    let nif = cache2.join(format!("{}.narinfo", out.parse::<StorePath>().unwrap().hash_part()));
    let text = fs::read_to_string(&nif).unwrap();
    fs::write(&nif, text.replace("References: \n", "References: 00000000000000000000000000000000-x\n")).unwrap();
    let e = fails(edge_image().args(["verify", "--cache", &url2, "--trusted-key", &pk, &out]));
    assert!(e.contains("does not verify"), "{e}");
    assert!(nix_copy(&cache2, &d.path().join("store4"), &pk, &out).is_err());
}

#[test]
fn manifest_sign_verify_and_every_failure() {
    let d = tempfile::tempdir().unwrap();
    let system = build_simple(d.path(), &format!("edge-system-{}", nonce()), "system");
    let img = d.path().join("img");
    fs::create_dir(&img).unwrap();
    fs::write(img.join("nixos.img"), vec![0x5au8; 100_000]).unwrap();
    fs::write(img.join("netboot.ipxe"), b"#!ipxe\nboot\n").unwrap();
    let (sk, pk) = our_keypair(d.path(), "edge-ci-1");
    let (sk2, pk2) = our_keypair(d.path(), "edge-ci-2");
    let m = d.path().join("manifest.json");
    ok(edge_image()
        .args(["manifest", "--system", &system, "--version", "2026.11.1", "--meta", "git_rev=abc", "--key"])
        .arg(&sk)
        .arg("--out")
        .arg(&m)
        .arg("--file")
        .arg(img.join("nixos.img"))
        .arg("--file")
        .arg(format!("netboot.ipxe={}", img.join("netboot.ipxe").display())));
    let text = fs::read_to_string(&m).unwrap();
    // The system's NAR hash in the manifest is Nix's.
    assert!(text.contains(&format!("sha256:{}", nar_hash_of(&system))), "{text}");
    // The file's NAR hash is Nix's too.
    let file_hash = ok(nix("nix").args(["hash", "path", "--base32"]).arg(img.join("nixos.img")));
    assert!(text.contains(&file_hash), "{text}");

    let verify = |key: &str| {
        let mut c = edge_image();
        c.args(["verify", "--manifest"]).arg(&m).args(["--trusted-key", key, "--dir"]).arg(&img);
        c
    };
    ok(&mut verify(&pk));
    // Library API the provider uses.
    let sm = edge_images::manifest::SignedManifest::from_json(text.as_bytes()).unwrap();
    let man = sm.verify(&[edge_images::keys::PublicKey::parse(&pk).unwrap()]).unwrap();
    man.verify_file("nixos.img", &img.join("nixos.img")).unwrap();

    let e = fails(&mut verify(&pk2));
    assert!(e.contains("none of which is in the trusted key list"), "{e}");

    // Co-signing with a second key makes it acceptable to either.
    ok(edge_image().args(["sign", "--key"]).arg(&sk2).arg("--manifest").arg(&m));
    ok(&mut verify(&pk2));
    ok(&mut verify(&pk));

    // One byte of the image changed.
    let mut bytes = fs::read(img.join("nixos.img")).unwrap();
    bytes[5_000] ^= 1;
    fs::write(img.join("nixos.img"), &bytes).unwrap();
    let e = fails(&mut verify(&pk));
    assert!(e.contains("hash mismatch for image file \"nixos.img\""), "{e}");
    bytes[5_000] ^= 1;
    bytes.pop();
    fs::write(img.join("nixos.img"), &bytes).unwrap();
    let e = fails(&mut verify(&pk));
    assert!(e.contains("size") && e.contains("nixos.img"), "{e}");
    fs::remove_file(img.join("nixos.img")).unwrap();
    let e = fails(&mut verify(&pk));
    assert!(e.contains("missing") && e.contains("nixos.img"), "{e}");

    // One byte of the manifest changed (the version).
    fs::write(&m, text.replace("2026.11.1", "2026.11.2")).unwrap();
    let e = fails(edge_image().args(["verify", "--manifest"]).arg(&m).args(["--trusted-key", &pk]));
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn sbom_lists_closure() {
    let d = tempfile::tempdir().unwrap();
    let dep = build_simple(d.path(), &format!("edge-dep-{}", nonce()), "dep");
    // A second derivation whose output mentions the first: Nix records it as a reference.
    let f = d.path().join("top.nix");
    fs::write(
        &f,
        format!(
            "derivation {{ name = \"edge-top-1.2-{}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"echo {dep} > $out\" ]; dep = builtins.storePath \"{dep}\"; }}\n",
            nonce()
        ),
    )
    .unwrap();
    let json = ok(nix("nix").args(["build", "--impure", "--no-link", "--json", "-f"]).arg(&f));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let top = v[0]["outputs"]["out"].as_str().unwrap().to_string();
    let nix_refs = ok(nix("nix-store").args(["-q", "--references", &top]));
    assert_eq!(nix_refs, dep, "test setup: nix should record the reference");
    let sbom: serde_json::Value = serde_json::from_str(&ok(edge_image().args(["sbom", &top]))).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let comps = sbom["components"].as_array().unwrap();
    assert_eq!(comps.len(), 1);
    assert_eq!(comps[0]["bom-ref"], dep.as_str());
    let deps = sbom["dependencies"].as_array().unwrap();
    let top_deps = deps.iter().find(|x| x["ref"] == top.as_str()).unwrap();
    assert_eq!(top_deps["dependsOn"][0], dep.as_str());
    assert_eq!(sbom["metadata"]["component"]["version"].as_str().unwrap().split('-').next(), Some("1.2"));
}

/// A cache written by real Nix (`nix copy --to file://…`, unsigned): our narinfo parser
/// round-trips its narinfo byte for byte, `edge-image sign --cache` signs it in place, and Nix
/// then accepts the path under our key.
#[test]
fn sign_a_cache_written_by_nix() {
    let d = tempfile::tempdir().unwrap();
    let out = build_simple(d.path(), &format!("edge-nixcache-{}", nonce()), "from-nix");
    let cache = d.path().join("nixcache");
    let url = format!("file://{}", cache.display());
    ok(nix("nix").args(["copy", "--to", &format!("{url}?compression=none"), &out]));
    let hash_part = out.parse::<StorePath>().unwrap().hash_part().to_string();
    let text = fs::read_to_string(cache.join(format!("{hash_part}.narinfo"))).unwrap();
    let ni = edge_images::narinfo::NarInfo::parse(&text).unwrap();
    assert_eq!(ni.render(), text, "narinfo render differs from Nix's");
    assert!(ni.deriver.is_some(), "Nix records the deriver: {text}");

    let (sk, pk) = our_keypair(d.path(), "edge-ci-1");
    // Unsigned: Nix refuses it under our key.
    assert!(
        nix("nix")
            .args(["store", "verify", "--store", &url, "--sigs-needed", "1", "--trusted-public-keys", &pk, &out])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
    ok(edge_image().args(["sign", "--cache", &url, "--key"]).arg(&sk).arg(&out));
    ok(nix("nix").args(["store", "verify", "--store", &url, "--sigs-needed", "1", "--trusted-public-keys", &pk, &out]));
    ok(edge_image().args(["verify", "--cache", &url, "--trusted-key", &pk, &out]));
}

/// xz-compressed cache: Nix substitutes from it; one flipped byte in the .nar.xz is refused by both.
#[test]
fn xz_cache_accepted_and_tamper_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = build_simple(d.path(), &format!("edge-xz-{}", nonce()), "compressed-contents");
    let (sk, pk) = our_keypair(d.path(), "edge-ci-1");
    let cache = d.path().join("xzcache");
    let url = format!("file://{}", cache.display());
    ok(edge_image().args(["publish", "--compression", "xz", "--to", &url, "--key"]).arg(&sk).arg(&out));
    let hash_part = out.parse::<StorePath>().unwrap().hash_part().to_string();
    let ni = fs::read_to_string(cache.join(format!("{hash_part}.narinfo"))).unwrap();
    assert!(ni.contains("Compression: xz") && ni.contains(".nar.xz"), "{ni}");
    ok(edge_image().args(["verify", "--cache", &url, "--trusted-key", &pk, &out]));
    nix_copy(&cache, &d.path().join("store1"), &pk, &out).expect("nix copy from an xz cache");
    let copied = d.path().join("store1").join(out.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(copied).unwrap(), "compressed-contents\n");

    let nar_url = ni.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    let f = cache.join(nar_url);
    let mut bytes = fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&f, &bytes).unwrap();
    let e = fails(edge_image().args(["verify", "--cache", &url, "--trusted-key", &pk, &out]));
    assert!(e.contains("hash mismatch"), "{e}");
    assert!(nix_copy(&cache, &d.path().join("store2"), &pk, &out).is_err());
}
