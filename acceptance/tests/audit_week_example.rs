//! `examples/audit-week`: a week of signed evidence files for three lab stores in the plain
//! per-store Terraform layout (no agent). The example's own self-check runs here: a change made
//! outside Git shows up in that night's refresh-only plan, a store without evidence is stated,
//! patch drift breaches its SLO, and `edge-fleet audit verify` as well as an independent
//! verifier (securesystemslib's DSSE) pass on the week and each catch an edited day, a removed
//! day, a day re-signed with an untrusted key and a store's drift hidden by an insider.

use std::process::Command;

use edge_acceptance::{lab_bin, provider_bin, repo_root, terraform_bin};

#[test]
fn the_audit_week_example_checks_itself() {
    // Built by `make test` with every binary of the workspace, next to the provider.
    let fleet = provider_bin().with_file_name("edge-fleet");
    let image = provider_bin().with_file_name("edge-image");
    let out = Command::new(repo_root().join("examples/audit-week/week.sh"))
        .arg("check")
        .env("EDGE_PROVIDER_BIN", provider_bin())
        .env("EDGE_LAB_BIN", lab_bin())
        .env("EDGE_FLEET_BIN", &fleet)
        .env("EDGE_IMAGE_BIN", &image)
        .env("EDGE_TERRAFORM", terraform_bin())
        .env("EDGE_PYTHON", repo_root().join(".tools/venv/bin/python"))
        .env("NET", "96")
        .output()
        .expect("run examples/audit-week/week.sh check");
    assert!(
        out.status.success(),
        "week.sh check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
