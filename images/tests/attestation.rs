//! The SBOM attestation: signed over the image files and manifest.json by sha256; each
//! refusal names the check that failed.

mod common;

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{edge_image, fails, ok};
use edge_images::attest::{self, AttestError, CYCLONEDX_PREDICATE};
use edge_images::dsse::{Statement, Subject};
use edge_images::hash::Sha256Hash;
use edge_images::keys::SecretKey;
use edge_images::manifest::{Manifest, SignedManifest};

const SYSTEM: &str = "/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-nixos-system-edge-1.0";

fn sbom() -> serde_json::Value {
    serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {"component": {"bom-ref": SYSTEM, "name": "nixos-system-edge"}},
        "components": [{"name": "openssl"}, {"name": "glibc"}, {"name": "ceph"}],
    })
}

fn manifest(dir: &Path, key: &SecretKey) -> Vec<u8> {
    let mut m = Manifest::new("1.0", SYSTEM);
    for (name, bytes) in [("nixos.img", &b"disk image"[..]), ("initrd", &b"initrd bytes"[..])] {
        std::fs::write(dir.join(name), bytes).unwrap();
        m.add_file(name, &dir.join(name)).unwrap();
    }
    m.sign(&[key]).to_json()
}

#[test]
fn attestation_verifies_and_each_refusal_names_its_check() {
    let d = tempfile::tempdir().unwrap();
    let k = SecretKey::generate("edge-ci-1").unwrap();
    let mjson = manifest(d.path(), &k);
    let env = attest::attest(&mjson, "manifest.json", &sbom(), &[&k]).unwrap();
    let v = attest::verify(&mjson, &env.to_json(), &[k.public()], 1).unwrap();
    assert_eq!(v.components, 3);
    assert_eq!(v.subjects.len(), 3, "two files and the manifest");
    let st = Statement::parse(&env.payload_unverified().unwrap()).unwrap();
    assert_eq!(st.predicate_type, CYCLONEDX_PREDICATE);
    assert!(st.subject.contains(&Subject::sha256("manifest.json", &Sha256Hash::digest(&mjson).to_hex())));

    // One SBOM byte changed after signing: the signature check fails.
    let mut payload = env.payload_unverified().unwrap();
    let at = String::from_utf8_lossy(&payload).find("glibc").unwrap();
    payload[at] = b'G';
    let mut edited = env.clone();
    edited.payload = B64.encode(&payload);
    let e = attest::verify(&mjson, &edited.to_json(), &[k.public()], 1).unwrap_err();
    assert_eq!(e.check(), "signature by a trusted key", "{e}");
    assert!(e.to_string().contains("(signature by a trusted key)"), "{e}");

    // An untrusted key (another name; and the same name, another key).
    let stranger = SecretKey::generate("someone-1").unwrap();
    let e = attest::verify(
        &mjson,
        &attest::attest(&mjson, "manifest.json", &sbom(), &[&stranger]).unwrap().to_json(),
        &[k.public()],
        1,
    )
    .unwrap_err();
    assert_eq!(e.check(), "signature by a trusted key", "{e}");
    let impostor = SecretKey::generate("edge-ci-1").unwrap();
    let e = attest::verify(
        &mjson,
        &attest::attest(&mjson, "manifest.json", &sbom(), &[&impostor]).unwrap().to_json(),
        &[k.public()],
        1,
    )
    .unwrap_err();
    assert_eq!(e.check(), "signature by a trusted key", "{e}");

    // A file subject whose digest is not the manifest's (signed by the trusted key all the same).
    let signed = SignedManifest::from_json(&mjson).unwrap();
    let mut subjects = attest::subjects(signed.unverified(), &mjson, "manifest.json");
    let img = subjects.iter_mut().find(|s| s.name == "nixos.img").unwrap();
    *img = Subject::sha256("nixos.img", &"ab".repeat(32));
    let forged = Statement::new(subjects.clone(), CYCLONEDX_PREDICATE, sbom()).sign(&[&k]);
    let e = attest::verify(&mjson, &forged.to_json(), &[k.public()], 1).unwrap_err();
    assert!(matches!(e, AttestError::FileDigest { ref name, .. } if name == "nixos.img"), "{e}");
    assert!(e.to_string().contains("(image file digest)"), "{e}");

    // A file of the manifest missing from the subjects.
    let fewer: Vec<Subject> = attest::subjects(signed.unverified(), &mjson, "manifest.json")
        .into_iter()
        .filter(|s| s.name != "initrd")
        .collect();
    let e = attest::verify(
        &mjson,
        &Statement::new(fewer, CYCLONEDX_PREDICATE, sbom()).sign(&[&k]).to_json(),
        &[k.public()],
        1,
    )
    .unwrap_err();
    assert!(matches!(e, AttestError::FileMissing(ref n) if n == "initrd"), "{e}");

    // The manifest changed after the attestation (a co-signature): the manifest digest fails.
    let mut cosigned = SignedManifest::from_json(&mjson).unwrap();
    cosigned.add_signature(&SecretKey::generate("edge-ci-2").unwrap());
    let e = attest::verify(&cosigned.to_json(), &env.to_json(), &[k.public()], 1).unwrap_err();
    assert_eq!(e.check(), "manifest digest", "{e}");

    // Another predicate type.
    let spdx = Statement::new(attest::subjects(signed.unverified(), &mjson, "m"), "https://spdx.dev/Document", sbom())
        .sign(&[&k]);
    let e = attest::verify(&mjson, &spdx.to_json(), &[k.public()], 1).unwrap_err();
    assert_eq!(e.check(), "predicate type", "{e}");

    // An SBOM of another system.
    let mut other = sbom();
    other["metadata"]["component"]["bom-ref"] = "/nix/store/00000000000000000000000000000000-other".into();
    let e = attest::verify(
        &mjson,
        &attest::attest(&mjson, "manifest.json", &other, &[&k]).unwrap().to_json(),
        &[k.public()],
        1,
    )
    .unwrap_err();
    assert_eq!(e.check(), "SBOM root", "{e}");

    // Not an envelope.
    let e = attest::verify(&mjson, b"{}", &[k.public()], 1).unwrap_err();
    assert_eq!(e.check(), "envelope format", "{e}");
}

#[test]
fn cli_manifest_with_sbom_writes_an_attestation_that_verify_attestation_checks() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("ci.sec");
    let public = ok(edge_image().args(["keygen", "edge-ci-1", "--out-secret", key.to_str().unwrap()]));
    let other = ok(edge_image().args(["keygen", "edge-ci-1"])).lines().nth(1).unwrap().to_string();
    let img = d.path().join("nixos.img");
    std::fs::write(&img, b"disk image").unwrap();
    let sbom_file = d.path().join("sbom.json");
    std::fs::write(&sbom_file, serde_json::to_vec(&sbom()).unwrap()).unwrap();
    let m = d.path().join("manifest.json");
    let out = ok(edge_image().args([
        "manifest",
        "--system",
        SYSTEM,
        "--version",
        "1.0",
        "--file",
        img.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
        "--sbom",
        sbom_file.to_str().unwrap(),
    ]));
    assert!(out.contains("sbom.intoto.json: SBOM attestation"), "{out}");
    assert!(d.path().join("sbom.intoto.json").is_file());
    let verify = |k: &str| {
        let mut c = edge_image();
        c.args(["verify-attestation", "--manifest", m.to_str().unwrap(), "--trusted-key", k]);
        c
    };
    let out = ok(&mut verify(&public));
    assert!(out.contains("SBOM: 3 components") && out.contains("signed by edge-ci-1"), "{out}");
    let e = fails(&mut verify(&other));
    assert!(e.contains("(signature by a trusted key)"), "{e}");

    // Co-signing changes manifest.json: the old attestation no longer matches it …
    let key2 = d.path().join("ci2.sec");
    let public2 = ok(edge_image().args(["keygen", "edge-ci-2", "--out-secret", key2.to_str().unwrap()]));
    ok(edge_image().args(["sign", "--key", key2.to_str().unwrap(), "--manifest", m.to_str().unwrap()]));
    let e = fails(&mut verify(&public));
    assert!(e.contains("(manifest digest)"), "{e}");
    // … `sign --sbom` writes a new one, and `attest` can add both keys.
    ok(edge_image()
        .args(["sign", "--key", key2.to_str().unwrap(), "--manifest", m.to_str().unwrap()])
        .args(["--sbom", sbom_file.to_str().unwrap()]));
    ok(&mut verify(&public2));
    let att = d.path().join("both.intoto.json");
    ok(edge_image().args(["attest", "--manifest", m.to_str().unwrap(), "--sbom", sbom_file.to_str().unwrap()]).args([
        "--key",
        key.to_str().unwrap(),
        "--key",
        key2.to_str().unwrap(),
        "--out",
        att.to_str().unwrap(),
    ]));
    let out = ok(verify(&public).args([
        "--trusted-key",
        &public2,
        "--threshold",
        "2",
        "--attestation",
        att.to_str().unwrap(),
    ]));
    assert!(out.contains("signed by edge-ci-1, edge-ci-2"), "{out}");
}

/// A third party checks the attestation: securesystemslib's DSSE verifier (scripts/install-deps.sh
/// puts it in .tools/venv) with the Ed25519 public key as an `SSlibKey` (keyid = the Nix key
/// name) accepts it, reads an in-toto Statement v1 with the CycloneDX predicate, and refuses a
/// copy whose payload was edited after signing.
#[test]
fn securesystemslib_verifies_the_attestation() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/install-deps.sh", python.display());
    let d = tempfile::tempdir().unwrap();
    let k = SecretKey::generate("edge-ci-1").unwrap();
    let mjson = manifest(d.path(), &k);
    let env = attest::attest(&mjson, "manifest.json", &sbom(), &[&k]).unwrap();
    let good = d.path().join("good.json");
    std::fs::write(&good, env.to_json()).unwrap();
    let mut payload = env.payload_unverified().unwrap();
    let at = String::from_utf8_lossy(&payload).find("ceph").unwrap();
    payload[at] = b'C';
    let mut edited = env.clone();
    edited.payload = B64.encode(&payload);
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, edited.to_json()).unwrap();
    let script = r#"
import base64, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey
name, b64 = sys.argv[1].split(":", 1)
key = SSlibKey(name, "ed25519", "ed25519", {"public": base64.b64decode(b64).hex()})
for path, want in ((sys.argv[2], True), (sys.argv[3], False)):
    env = Envelope.from_dict(json.load(open(path)))
    try:
        env.verify([key], 1)
        ok = True
    except VerificationError:
        ok = False
    assert ok == want, (path, ok)
    st = json.loads(env.payload)
    assert st["_type"] == "https://in-toto.io/Statement/v1" and st["predicateType"] == "https://cyclonedx.org/bom", st
print("securesystemslib: good verifies, edited refused")
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &k.public().to_string()])
        .arg(&good)
        .arg(&bad)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "securesystemslib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
