//! The flake and the NixOS modules of the node image, evaluated offline by nixpkgs' real module
//! system: the flake's own `outputs` function is called with stand-in inputs — the pinned
//! nixpkgs lib (images/tests/nixos-eval/nixpkgs-lib.tar.xz, provenance beside it) over
//! stand-in declarations of the nixpkgs options the modules use, with nixpkgs' types and the
//! assertions they can trip (lock-out, root file system, WireGuard's networkd backend), and a
//! stand-in of proxmox-nixos' module — by real Nix (Debian's 2.8). What this cannot see is in
//! docs/images.md, "What the offline check cannot see".
//!
//! Every stand-in assertion has a negative control here: a configuration that must trip it does.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

fn eval_dir() -> PathBuf {
    repo_root().join("images/tests/nixos-eval")
}

/// The pinned nixpkgs lib, checked against its recorded sha256 and unpacked once per run.
fn nixpkgs_lib() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let meta: Value =
            serde_json::from_slice(&std::fs::read(eval_dir().join("nixpkgs-lib.json")).expect("nixpkgs-lib.json"))
                .expect("nixpkgs-lib.json is JSON");
        let archive = eval_dir().join(meta["file"].as_str().expect("file"));
        let sum = ok(std::process::Command::new("sha256sum").arg(&archive));
        assert_eq!(
            sum.split_whitespace().next(),
            meta["sha256"].as_str(),
            "{} is not the archive nixpkgs-lib.json records",
            archive.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        ok(std::process::Command::new("tar").arg("-xJf").arg(&archive).arg("-C").arg(dir.path()));
        let version = std::fs::read_to_string(dir.path().join("nixpkgs.lib/lib/.version")).expect("lib/.version");
        assert_eq!(Some(version.trim()), meta["lib_version"].as_str(), "the archive is another nixpkgs release");
        dir
    })
    .path()
}

/// `eval.nix` for this checkout, with `extra` (a Nix list of modules) added to every
/// configuration: the report (or its attribute `attr`) as JSON, or Nix's error text.
fn evaluate(extra: &str, attr: &str) -> Result<Value, String> {
    let expr = format!(
        "(import {}/eval.nix {{ repo = {}; extraModules = {extra}; }}){attr}",
        eval_dir().display(),
        repo_root().display()
    );
    let lib = nixpkgs_lib().join("nixpkgs.lib");
    let out = nix("nix")
        .args(["eval", "--json", "--impure", "--show-trace", "-I"])
        .arg(format!("nixpkgs-lib={}", lib.display()))
        .args(["--expr", &expr])
        .output()
        .expect("run nix eval");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("eval.nix prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| evaluate("[ ]", "").unwrap_or_else(|e| panic!("the flake does not evaluate:\n{e}")))
}

fn configuration(name: &str) -> &'static Value {
    let c = &report()["configurations"][name];
    assert!(c.is_object(), "nixosConfigurations.{name} is missing: {}", report()["configurations"]);
    c
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().expect("string")).collect()
}

#[test]
fn every_configuration_passes_the_nixpkgs_assertions() {
    let configs = report()["configurations"].as_object().expect("configurations");
    assert!(configs.len() >= 2, "expected edge-node and edge-node-netboot: {configs:?}");
    for (name, c) in configs {
        assert_eq!(strings(&c["failedAssertions"]), Vec::<&str>::new(), "nixosConfigurations.{name}");
        assert!(c["toplevel"].as_str().is_some_and(|t| t.contains("-nixos-system-")), "{name}: {c}");
    }
    // The node image of the product: Proxmox VE, and Ceph the way PVE runs it (not NixOS'
    // own Ceph module, which proxmox-nixos refuses next to its own).
    let node = configuration("edge-node");
    assert_eq!(
        (&node["pve"], &node["pveCeph"], &node["nixosCeph"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(node["rootFileSystem"]["device"], "/dev/disk/by-label/nixos");
}

#[test]
fn the_image_the_manifest_and_the_sbom_name_one_system() {
    let r = report();
    let system = configuration("edge-node")["toplevel"].as_str().expect("edge-node toplevel");
    let netboot = configuration("edge-node-netboot")["toplevel"].as_str().expect("netboot toplevel");
    assert_ne!(system, netboot, "netboot is another system (tmpfs root)");
    assert_eq!(
        r["image"]["toplevel"], system,
        "the disk image holds another system than nixosConfigurations.edge-node"
    );
    for t in strings(&r["netbootToplevels"]) {
        assert_eq!(t, netboot, "a netboot file boots another system than nixosConfigurations.edge-node-netboot");
    }
    // sign-image: the disk manifest and SBOM name edge-node's toplevel next to the image file;
    // the netboot manifest names the netboot system.
    let script = r["signImageText"].as_str().expect("sign-image text");
    let image = r["image"]["path"].as_str().expect("image path");
    let disk_call = script
        .lines()
        .position(|l| l.starts_with(&format!("sign {system} \"$out\"")))
        .unwrap_or_else(|| panic!("sign-image does not sign edge-node's toplevel:\n{script}"));
    assert!(
        script.lines().nth(disk_call + 1).is_some_and(|l| l.contains(&format!("nixos.img={image}/"))),
        "the disk manifest does not list the image built from edge-node:\n{script}"
    );
    assert!(script.contains(&format!("sign {netboot} \"${{out%.json}}.netboot.json\"")), "{script}");
    assert!(script.contains("edge-image sbom \"$system\""), "the SBOM describes another system:\n{script}");
}

#[test]
fn the_vm_test_drives_a_machine_the_driver_defines() {
    let t = &report()["vmTest"];
    let names = strings(&t["machineNames"]);
    assert!(!names.is_empty(), "no machines: {t}");
    assert_eq!(
        strings(&t["undefinedNames"]),
        Vec::<&str>::new(),
        "the test script calls machines that do not exist; defined: {names:?}"
    );
}

#[test]
fn extra_trusted_keys_are_added_to_the_default() {
    let keys = strings(&report()["withTrustedImageKeys"]["trustedPublicKeys"]);
    assert!(keys.contains(&"cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("edge-ci-1:")), "{keys:?}");
}

/// The flake's Rust source (lib.fileset) is a workspace cargo can load: every member is in it.
#[test]
fn the_rust_source_of_the_flake_is_a_whole_workspace() {
    let src = report()["rustSrc"].as_str().expect("rustSrc");
    let members = |dir: &Path| -> Vec<String> {
        let json = ok(std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--offline", "--no-deps", "--format-version", "1", "--manifest-path"])
            .arg(dir.join("Cargo.toml")));
        let v: Value = serde_json::from_str(&json).expect("cargo metadata JSON");
        let mut names: Vec<String> = v["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_string())
            .collect();
        names.sort();
        names
    };
    let expected = members(&repo_root());
    assert!(expected.len() >= 8, "{expected:?}");
    assert_eq!(members(Path::new(src)), expected, "the flake's source leaves a workspace member out");
}

/// flake.lock pins the nixpkgs proxmox-nixos builds PVE against (its own lock's
/// `nixpkgs-stable`, NixOS/nixpkgs@1cd347bf on nixos-25.11) and proxmox-nixos follows it, so
/// one nixpkgs builds the host and PVE.
#[test]
fn the_lock_file_pins_the_pair_proxmox_nixos_supports() {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("flake.lock")).expect("flake.lock is tracked"))
            .expect("flake.lock is JSON");
    let nodes = &lock["nodes"];
    assert_eq!(lock["root"], "root");
    assert_eq!(nodes["root"]["inputs"]["nixpkgs"], "nixpkgs");
    assert_eq!(nodes["nixpkgs"]["locked"]["rev"], "1cd347bf3355fce6c64ab37d3967b4a2cb4b878c");
    assert_eq!(nodes["nixpkgs"]["original"]["ref"], "nixos-25.11");
    let pve = &nodes[nodes["root"]["inputs"]["proxmox-nixos"].as_str().expect("proxmox-nixos input")];
    assert_eq!(pve["locked"]["rev"], "c1f79f104930347a0b84abbca0d42884063a8c09");
    assert_eq!(
        pve["inputs"]["nixpkgs-stable"],
        serde_json::json!(["nixpkgs"]),
        "proxmox-nixos must follow our nixpkgs"
    );
    // Every node a lock references exists and is locked to a content hash.
    for (name, node) in nodes.as_object().expect("nodes") {
        if name != "root" {
            assert!(node["locked"]["narHash"].as_str().is_some_and(|h| h.starts_with("sha256-")), "{name}: {node}");
        }
        for input in node["inputs"].as_object().into_iter().flatten().map(|(_, v)| v) {
            if let Some(target) = input.as_str() {
                assert!(nodes.get(target).is_some(), "{name} names a node that is not in the lock: {target}");
            }
        }
    }
    // The nixpkgs lib the offline check runs is that release's.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(eval_dir().join("nixpkgs-lib.json")).expect("meta")).expect("json");
    assert_eq!(
        Some(format!("nixos-{}", meta["lib_version"].as_str().expect("lib_version")).as_str()),
        nodes["nixpkgs"]["original"]["ref"].as_str()
    );
}

// --- negative controls: each nixpkgs assertion the stand-in carries does fire ---------------

fn failures_with(extra: &str) -> Vec<String> {
    let r = evaluate(extra, ".configurations.edge-node").unwrap_or_else(|e| panic!("{e}"));
    let c = &r;
    strings(&c["failedAssertions"]).into_iter().map(str::to_string).collect()
}

#[test]
fn networkd_backend_refuses_generated_wireguard_keys() {
    let f = failures_with(
        "[ ({ lib, ... }: { networking.wireguard.interfaces.wg-edge.generatePrivateKeyFile = lib.mkForce true; }) ]",
    );
    assert!(f.iter().any(|m| m.contains("generatePrivateKeyFile cannot be used with networkd")), "{f:?}");
}

#[test]
fn a_system_without_a_root_file_system_is_refused() {
    let f = failures_with("[ ({ lib, ... }: { fileSystems = lib.mkForce { }; }) ]");
    assert!(f.iter().any(|m| m.contains("does not specify your root file system")), "{f:?}");
}

#[test]
fn a_node_nobody_can_log_into_is_refused() {
    // Without the seed (root's password hash) and without keys, nixpkgs' lock-out check fires.
    let f = failures_with(
        "[ ({ lib, ... }: { edge.node.seed.enable = lib.mkForce false; edge.node.sshAuthorizedKeys = lib.mkForce [ ]; }) ]",
    );
    assert!(f.iter().any(|m| m.contains("Neither the root account nor any wheel user")), "{f:?}");
}
