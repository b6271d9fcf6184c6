//! `examples/fleet-rollout`: patch waves on eight lab stores. The example's own self-check runs
//! here: a hub on PostgreSQL, a real agent process per store applying signed releases with real
//! Terraform, v2 in waves with one store offline (pending, not failed), a bad v3 failing on the
//! canary and reverted there by itself, no other store ever handed it, the lab and PostgreSQL
//! holding exactly that, two hub instances on one database publishing once per decision, the
//! node image over the WAN once per store, and nothing left behind. The failure is also seen
//! the way an operator sees it: Debian's `prometheus` scrapes both hub instances and every
//! agent (`--metrics-listen`) with the fleet's rules (`for:` cut to 2 s) and its HTTP API must
//! show `EdgeRolloutHalted` not firing before the bad release and firing for its canary after,
//! every target up, the stores per release and the failed applies as the stores' own reports
//! have them; headless `chromium` renders the hub's `/status` page and its DOM must show the
//! rollout halted and reverted at the canary, naming exactly the stores whose signed reports
//! failed, in their words. Without `prometheus` or `chromium` the check fails (it never skips).

use std::process::Command;

use edge_acceptance::{lab_bin, provider_bin, repo_root, terraform_bin};

#[test]
fn the_fleet_rollout_example_checks_itself() {
    // Built by `make test` with every binary of the workspace, next to the provider.
    let fleet = provider_bin().with_file_name("edge-fleet");
    let image = provider_bin().with_file_name("edge-image");
    let out = Command::new(repo_root().join("examples/fleet-rollout/rollout.sh"))
        .arg("check")
        .env("EDGE_PROVIDER_BIN", provider_bin())
        .env("EDGE_LAB_BIN", lab_bin())
        .env("EDGE_FLEET_BIN", &fleet)
        .env("EDGE_IMAGE_BIN", &image)
        .env("EDGE_TERRAFORM", terraform_bin())
        .env("NET", "94")
        .output()
        .expect("run examples/fleet-rollout/rollout.sh check");
    assert!(
        out.status.success(),
        "rollout.sh check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
