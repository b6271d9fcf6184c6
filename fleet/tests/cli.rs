//! `edge-fleet` as a hub and a store use it, with signing keys made by the real `nix`: a bundle
//! built and verified, a manifest signed to a 2-of-3 threshold and accepted, then each refusal a
//! store must make (below threshold, tampered, replayed, same version with another release,
//! expired as an alarm) with the store's record unchanged; a roll-back as a newer manifest.

use std::path::Path;
use std::process::{Command, Output};

const NIX_CONFIG: &str = "experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters =";

fn nix(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut c = Command::new("nix");
    c.env("NIX_CONFIG", NIX_CONFIG).args(args);
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child =
        c.spawn().unwrap_or_else(|e| panic!("`nix` is needed (scripts/install-deps.sh installs nix-bin): {e}"));
    if let Some(s) = stdin {
        child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let o = child.wait_with_output().expect("nix");
    assert!(o.status.success(), "nix {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8").trim().to_string()
}

/// A Nix signing key pair: (secret key file, public key string).
fn nix_key(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let secret = nix(&["key", "generate-secret", "--key-name", name], None);
    let public = nix(&["key", "convert-secret-to-public"], Some(&secret));
    let f = dir.join(format!("{name}.sec"));
    std::fs::write(&f, secret).expect("write key");
    (f, public)
}

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-fleet")).args(args).output().expect("edge-fleet")
}

fn ok(args: &[&str]) -> String {
    let o = fleet(args);
    assert!(o.status.success(), "edge-fleet {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs a store's check; returns (exit code, stderr).
fn store_check(manifest: &Path, keys: &[&str], state: &Path) -> (i32, String) {
    let mut args =
        vec!["channel", "verify", manifest.to_str().expect("path"), "--threshold", "2", "--channel", "stable"];
    for k in keys {
        args.extend(["--trusted", k]);
    }
    args.extend(["--state", state.to_str().expect("path")]);
    let o = fleet(&args);
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_store_accepts_only_threshold_signed_newer_unexpired_manifests() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path();
    let keys: Vec<_> = ["hub-1", "hub-2", "hub-3"].iter().map(|n| nix_key(p, n)).collect();
    let trusted: Vec<&str> = keys.iter().map(|(_, pk)| pk.as_str()).collect();
    let s = |i: usize| keys[i].0.to_str().expect("path").to_string();

    // Two releases of one store's root.
    let cfg = p.join("store");
    std::fs::create_dir_all(cfg.join("modules/store")).expect("dirs");
    std::fs::write(cfg.join("main.tf"), "module \"store\" { source = \"./modules/store\" }\n").expect("write");
    std::fs::write(cfg.join("modules/store/main.tf"), "# v1\n").expect("write");
    std::fs::write(cfg.join(".terraform.lock.hcl"), "# lock\n").expect("write");
    std::fs::write(p.join("provider"), "provider binary").expect("write");
    std::fs::write(p.join("manifest.json"), "{}").expect("write");
    let bundles = p.join("bundles");
    let build = |name: &str| {
        ok(&[
            "release",
            "build",
            "--name",
            name,
            "--config",
            cfg.to_str().expect("p"),
            "--provider",
            p.join("provider").to_str().expect("p"),
            "--image-manifest",
            p.join("manifest.json").to_str().expect("p"),
            "--out",
            bundles.to_str().expect("p"),
        ])
    };
    let r1 = build("1");
    std::fs::write(cfg.join("modules/store/main.tf"), "# v2\n").expect("write");
    let r2 = build("2");
    assert_ne!(r1, r2);
    assert!(ok(&["release", "verify", bundles.join(&r2).to_str().expect("p")]).contains("3 files"));
    // A bundle whose file was changed is refused.
    std::fs::write(bundles.join(&r1).join("files/main.tf"), "resource \"x\" \"y\" {}\n").expect("write");
    let o = fleet(&["release", "verify", bundles.join(&r1).to_str().expect("p")]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("main.tf"));

    let state = p.join("accepted.json");
    let sign = |version: &str, release: &str, expires: &str, signers: &[usize]| {
        let out = p.join(format!("channel-{version}-{}.json", &release[..8]));
        let mut args = vec![
            "channel".to_string(),
            "sign".into(),
            "--channel".into(),
            "stable".into(),
            "--version".into(),
            version.into(),
            "--release".into(),
            release.into(),
            "--expires".into(),
            expires.into(),
            "--out".into(),
            out.to_str().expect("p").into(),
        ];
        for &i in signers {
            args.extend(["--key".to_string(), s(i)]);
        }
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        out
    };
    let later = "2099-01-01T00:00:00Z";

    // One signature of the two needed: refused, nothing recorded. Co-signed: accepted.
    let v2 = sign("2", &r2, later, &[0]);
    let (code, err) = store_check(&v2, &trusted, &state);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signed by 1 of the 2"), "{err}");
    assert!(!state.exists(), "a refused manifest leaves no record");
    ok(&["channel", "cosign", v2.to_str().expect("p"), "--key", &s(2)]);
    assert_eq!(store_check(&v2, &trusted, &state).0, 0);
    assert!(std::fs::read_to_string(&state).expect("state").contains(&r2));

    // Tampered after signing: refused.
    let tampered = p.join("tampered.json");
    std::fs::write(&tampered, std::fs::read_to_string(&v2).expect("read").replace("\"version\": 2", "\"version\": 9"))
        .expect("write");
    let (code, err) = store_check(&tampered, &trusted, &state);
    assert_eq!(code, 1, "{err}");

    // An older manifest replayed, and another release under a version already accepted: refused.
    let v1 = sign("1", &r1, later, &[0, 1]);
    let (code, err) = store_check(&v1, &trusted, &state);
    assert!(code == 1 && err.contains("older than version 2"), "{err}");
    let v2b = sign("2", &r1, later, &[0, 1]);
    let (code, err) = store_check(&v2b, &trusted, &state);
    assert!(code == 1 && err.contains("same version"), "{err}");

    // Expired: exit 3, an alarm; the store keeps release 2.
    let old = sign("3", &r1, "2020-01-01T00:00:00Z", &[0, 1]);
    let (code, err) = store_check(&old, &trusted, &state);
    assert!(code == 3 && err.contains("ALARM"), "{err}");
    assert!(std::fs::read_to_string(&state).expect("state").contains(&r2));

    // Roll-back to release 1 = a newer manifest naming it.
    let back = sign("3", &r1, later, &[1, 2]);
    assert_eq!(store_check(&back, &trusted, &state).0, 0);
    let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    assert_eq!((rec["version"].as_u64(), rec["release"].as_str()), (Some(3), Some(r1.as_str())));
}
