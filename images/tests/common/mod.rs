//! Shared helpers: run the real `nix` (Debian nix-bin, root, offline) and our `edge-image`.
//! If `nix` is missing the tests fail loudly: they exist to compare us with real Nix.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =";

/// The repository's root (the tests run in `images/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Where `tool` is on PATH.
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|f| f.is_file()))
}

fn require(tool: &str) {
    assert!(
        find_on_path(tool).is_some(),
        "`{tool}` is not installed: these tests compare edge-images with the real Nix. \
         Install it with scripts/install-deps.sh (Debian package nix-bin)."
    );
}

/// A `nix`/`nix-store`/`nix-instantiate` command with the offline single-user config.
pub fn nix(tool: &str) -> Command {
    require(tool);
    let mut c = Command::new(tool);
    c.env("NIX_CONFIG", NIX_CONFIG);
    c
}

pub fn edge_image() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-image"))
}

fn show(c: &Command, o: &Output) -> String {
    format!(
        "{:?} exited with {}\nstdout: {}\nstderr: {}",
        c,
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run, require success, return stdout bytes.
pub fn ok_bytes(c: &mut Command) -> Vec<u8> {
    let o = c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(o.status.success(), "{}", show(c, &o));
    o.stdout
}

pub fn ok(c: &mut Command) -> String {
    String::from_utf8(ok_bytes(c)).expect("utf-8 output").trim().to_string()
}

/// Run, require failure, return stderr (for checking that the message names the problem).
pub fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(!o.status.success(), "expected failure but it succeeded: {}", show(c, &o));
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A unique token so concurrent tests (and reruns) never share a store path.
pub fn nonce() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// Build `derivation { ... echo TEXT > $out }` named NAME; returns the output path.
pub fn build_simple(dir: &Path, name: &str, text: &str) -> String {
    let f = dir.join(format!("{name}.nix"));
    std::fs::write(
        &f,
        format!(
            "derivation {{ name = \"{name}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"echo {text} > $out\" ]; }}\n"
        ),
    )
    .unwrap();
    let json = ok(nix("nix").args(["build", "--no-link", "--json", "-f"]).arg(&f));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["outputs"]["out"].as_str().expect("build output path").to_string()
}

pub fn nix_keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let sk = dir.join(format!("{name}.sk"));
    let secret = ok(nix("nix").args(["key", "generate-secret", "--key-name", name]));
    std::fs::write(&sk, &secret).unwrap();
    let public = ok(nix("nix").args(["key", "convert-secret-to-public"]).stdin(std::fs::File::open(&sk).unwrap()));
    (sk, public)
}

pub fn our_keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let sk = dir.join(format!("{name}.sk"));
    let pk = dir.join(format!("{name}.pk"));
    ok(edge_image().args(["keygen", name, "--out-secret"]).arg(&sk).arg("--out-public").arg(&pk));
    (sk, std::fs::read_to_string(pk).unwrap().trim().to_string())
}
