//! Cosign-format signatures against an independent signer: OpenSSL makes the keys and signs
//! exactly as `cosign sign-blob --key` does (ECDSA P-256 over SHA-256, DER, base64 on one
//! line); edge-images verifies. Fails, never skips, without `openssl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{edge_image, fails, ok};
use edge_images::cosign::{self, CosignError, CosignPublicKey};

fn openssl(args: &[&str]) -> Vec<u8> {
    let o = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run openssl ({e}): these tests use it as the independent signer; install Debian's `openssl`")
    });
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// `openssl ecparam -name prime256v1 -genkey` + `openssl ec -pubout`: (private, public) PEM paths.
fn p256_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sk = dir.join(format!("{name}.pem"));
    let pk = dir.join(format!("{name}.pub"));
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", sk.to_str().unwrap()]);
    openssl(&["ec", "-in", sk.to_str().unwrap(), "-pubout", "-out", pk.to_str().unwrap()]);
    (sk, pk)
}

/// `openssl dgst -sha256 -sign K FILE | base64 -w0`.
fn sign(key: &Path, file: &Path) -> String {
    B64.encode(openssl(&["dgst", "-sha256", "-sign", key.to_str().unwrap(), file.to_str().unwrap()]))
}

fn pubkey(path: &Path) -> CosignPublicKey {
    CosignPublicKey::from_file(path).unwrap()
}

#[test]
fn openssl_signatures_verify_and_tampering_fails() {
    let d = tempfile::tempdir().unwrap();
    let (sk, pk) = p256_key(d.path(), "ci");
    let (other_sk, other_pk) = p256_key(d.path(), "other");
    let keys = [pubkey(&pk)];

    // Several signatures: OpenSSL's are high-S about half the time; both forms must pass.
    let f = d.path().join("manifest.json");
    for i in 0..12 {
        std::fs::write(&f, format!("{{\"n\": {i}}}\n")).unwrap();
        let sig = sign(&sk, &f);
        cosign::verify_file(&f, &sig, &keys).unwrap_or_else(|e| panic!("signature {i}: {e}"));
        cosign::verify_bytes(&std::fs::read(&f).unwrap(), &format!("{sig}\n"), &keys).unwrap();
    }

    // Streamed: a file larger than the hash buffer.
    let big = d.path().join("nixos.img");
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let sig = sign(&sk, &big);
    assert_eq!(cosign::verify_file(&big, &sig, &keys).unwrap().id(), keys[0].id());

    // The file altered by one byte.
    let mut altered = data.clone();
    altered[1_234_567] ^= 1;
    std::fs::write(&big, &altered).unwrap();
    let e = cosign::verify_file(&big, &sig, &keys).unwrap_err();
    assert!(matches!(e, CosignError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");
    std::fs::write(&big, &data).unwrap();

    // The signature altered: its last byte is inside S, so still DER, just wrong.
    let mut der = B64.decode(&sig).unwrap();
    *der.last_mut().unwrap() ^= 1;
    let e = cosign::verify_file(&big, &B64.encode(&der), &keys).unwrap_err();
    assert!(matches!(e, CosignError::BadSignature { .. }), "{e}");
    // Not DER at all / not base64.
    assert!(matches!(cosign::verify_file(&big, &B64.encode(&der[..20]), &keys), Err(CosignError::Der(_))));
    assert!(matches!(cosign::verify_file(&big, "%%%", &keys), Err(CosignError::Base64(_))));

    // Another P-256 key's signature, and the right signature checked with another key.
    let e = cosign::verify_file(&big, &sign(&other_sk, &big), &keys).unwrap_err();
    assert!(matches!(e, CosignError::BadSignature { .. }), "{e}");
    assert!(cosign::verify_file(&big, &sig, &[pubkey(&other_pk)]).is_err());
    // With both trusted, either passes.
    let both = [pubkey(&other_pk), pubkey(&pk)];
    assert_eq!(cosign::verify_file(&big, &sig, &both).unwrap().id(), keys[0].id());
}

#[test]
fn other_algorithms_and_curves_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let pem = |args: &[&str], name: &str| {
        let sk = d.path().join(format!("{name}.pem"));
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-out", sk.to_str().unwrap()]);
        openssl(&a);
        String::from_utf8(openssl(&["pkey", "-in", sk.to_str().unwrap(), "-pubout"])).unwrap()
    };
    let ed = pem(&["genpkey", "-algorithm", "ed25519"], "ed");
    let e = CosignPublicKey::from_pem(&ed).unwrap_err();
    assert_eq!(e, CosignError::Algorithm("Ed25519 (1.3.101.112)".into()));
    assert!(e.to_string().contains("must be ECDSA P-256"), "{e}");

    let rsa = pem(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "rsa");
    let e = CosignPublicKey::from_pem(&rsa).unwrap_err();
    assert_eq!(e, CosignError::Algorithm("RSA (1.2.840.113549.1.1.1)".into()), "{e}");

    let p384 = pem(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], "p384");
    let e = CosignPublicKey::from_pem(&p384).unwrap_err();
    assert_eq!(e, CosignError::Curve("P-384 (1.3.132.0.34)".into()), "{e}");

    // The private key is not a trusted key.
    let (sk, _) = p256_key(d.path(), "ci");
    let e = CosignPublicKey::from_file(&sk).unwrap_err();
    assert!(matches!(e, CosignError::Label(ref l) if l == "EC PRIVATE KEY"), "{e}");
}

#[test]
fn cli_verify_cosign_and_cosign_trusted_manifest() {
    let d = tempfile::tempdir().unwrap();
    let (sk, pk) = p256_key(d.path(), "ci");
    let (_, other_pk) = p256_key(d.path(), "other");
    let img = d.path().join("nixos.img");
    std::fs::write(&img, b"disk image").unwrap();
    std::fs::write(d.path().join("nixos.img.sig"), sign(&sk, &img)).unwrap();
    let out = ok(edge_image().args(["verify-cosign", "--key", pk.to_str().unwrap(), img.to_str().unwrap()]));
    assert!(out.contains("Cosign signature OK"), "{out}");
    let e = fails(edge_image().args(["verify-cosign", "--key", other_pk.to_str().unwrap(), img.to_str().unwrap()]));
    assert!(e.contains("does not verify"), "{e}");

    // A manifest trusted through Cosign alone: its Nix signature is by a key nobody trusts.
    let nix_key = d.path().join("untrusted.sec");
    ok(edge_image().args([
        "keygen",
        "untrusted-1",
        "--out-secret",
        nix_key.to_str().unwrap(),
        "--out-public",
        "/dev/null",
    ]));
    let m = d.path().join("manifest.json");
    ok(edge_image().args([
        "manifest",
        "--system",
        "/nix/store/00000000000000000000000000000000-nixos-system",
        "--version",
        "1",
        "--file",
        &format!("nixos.img={}", img.display()),
        "--key",
        nix_key.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]));
    std::fs::write(d.path().join("manifest.json.sig"), format!("{}\n", sign(&sk, &m))).unwrap();
    let verify = |key: &Path| {
        let mut c = edge_image();
        c.args(["verify", "--manifest", m.to_str().unwrap(), "--trusted-cosign-key", key.to_str().unwrap()])
            .args(["--dir", d.path().to_str().unwrap()]);
        c
    };
    let out = ok(&mut verify(&pk));
    assert!(out.contains("Cosign signature OK") && out.contains("nixos.img: OK"), "{out}");
    let e = fails(&mut verify(&other_pk));
    assert!(e.contains("Cosign signature") && e.contains("does not verify"), "{e}");
    // The manifest changed after signing.
    let text = std::fs::read_to_string(&m).unwrap().replace("\"version\": \"1\"", "\"version\": \"2\"");
    std::fs::write(&m, text).unwrap();
    let e = fails(&mut verify(&pk));
    assert!(e.contains("does not verify"), "{e}");
}
