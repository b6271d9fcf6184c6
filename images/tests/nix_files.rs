//! The flake and NixOS modules cannot be built here (no nixpkgs offline), but every `.nix`
//! file in the repository must at least parse with the real `nix-instantiate --parse`, and the
//! flake and modules must have the shape Nix expects.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            // Build outputs, tool caches and VCS metadata are not ours to parse.
            if !name.starts_with('.') && name != "target" && !name.starts_with("tgt") && name != "node_modules" {
                nix_files(&p, out);
            }
        } else if ft.is_file() && name.ends_with(".nix") {
            out.push(p);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let root = repo_root();
    let mut files = Vec::new();
    nix_files(&root, &mut files);
    files.sort();
    let must = [
        "flake.nix",
        "images/nixos/base.nix",
        "images/nixos/hardening.nix",
        "images/nixos/wireguard.nix",
        "images/nixos/ceph.nix",
        "images/nixos/pve.nix",
    ];
    for m in must {
        assert!(files.contains(&root.join(m)), "{m} is missing");
    }
    for f in &files {
        ok(nix("nix-instantiate").arg("--parse").arg(f));
    }
}

#[test]
fn flake_and_modules_have_the_expected_shape() {
    let root = repo_root();
    let eval =
        |expr: &str| ok(nix("nix-instantiate").args(["--eval", "--strict", "--json", "-E", expr]).current_dir(&root));
    let inputs = eval("builtins.attrNames (import ./flake.nix).inputs");
    assert_eq!(inputs, r#"["nixpkgs","proxmox-nixos"]"#);
    let args = eval("builtins.attrNames (builtins.functionArgs (import ./flake.nix).outputs)");
    assert_eq!(args, r#"["nixpkgs","proxmox-nixos","self"]"#);
    for m in ["base", "hardening", "wireguard", "ceph", "pve"] {
        let args = eval(&format!("builtins.functionArgs (import ./images/nixos/{m}.nix)"));
        assert!(
            args.contains("\"config\"") && args.contains("\"lib\""),
            "{m}.nix is not a NixOS module function: {args}"
        );
    }
}
