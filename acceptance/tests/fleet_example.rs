//! `examples/fleet`: many stores, each its own state in Terraform's `pg` backend on a real
//! PostgreSQL. The example's own self-check runs here: three stores applied, every re-plan empty,
//! the lab holding what the states hold, a second apply on a locked store refused (and one with
//! `-lock-timeout` waiting its turn), and nothing left behind.

use std::process::Command;

use edge_acceptance::{lab_bin, provider_bin, repo_root, terraform_bin};

#[test]
fn the_fleet_example_checks_itself() {
    let out = Command::new(repo_root().join("examples/fleet/fleet.sh"))
        .arg("check")
        .env("EDGE_PROVIDER_BIN", provider_bin())
        .env("EDGE_LAB_BIN", lab_bin())
        .env("EDGE_TERRAFORM", terraform_bin())
        .env("NET", "93")
        .output()
        .expect("run examples/fleet/fleet.sh check");
    assert!(
        out.status.success(),
        "fleet.sh check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
