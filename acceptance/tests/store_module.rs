//! The store module as users call it.
//!
//! - The example validates with real Terraform, where module inputs are unknown to the provider's
//!   checks (they must not fire on values not known yet).
//! - The module's own `terraform test` suites (`modules/store/tests/*.tftest.hcl`) run against a
//!   lab with real Ceph and a real Redfish BMC; afterwards (terraform test destroys what it
//!   applied) the lab must be clean.

use std::process::Command;

use edge_acceptance::{repo_root, Tf};

#[path = "support/store.rs"]
mod store;

#[test]
fn the_example_store_validates() {
    let example = std::fs::read_to_string(repo_root().join("examples/store-001/main.tf")).expect("example");
    let module = repo_root().join("modules/store");
    let tf = Tf::new(&example.replace("../../modules/store", &module.display().to_string()));
    tf.init();
    let r = tf.run(&["validate", "-no-color"]);
    assert!(r.ok(), "{}", r.output());
}

#[test]
fn the_module_test_suites_pass_against_the_lab() {
    module_suites_pass("92", "9.1");
}

#[test]
fn the_module_test_suites_pass_against_the_lab_on_pve_8_4() {
    module_suites_pass("128", "8.4");
}

fn module_suites_pass(net: &str, pve: &str) {
    let lab = store::store_lab(net, pve);
    let keys = tempfile::tempdir().expect("temp dir");
    let (url, manifest, key) = store::signed_image(&lab, keys.path(), "tftest-1");

    // A copy of the module (terraform test writes .terraform next to it), with its tests.
    let mut tf = Tf::new("");
    std::fs::remove_file(tf.dir().join("main.tf")).expect("rm placeholder");
    let src = repo_root().join("modules/store");
    let copy = Command::new("cp").arg("-r").arg(format!("{}/.", src.display())).arg(tf.dir()).status();
    assert!(copy.is_ok_and(|s| s.success()), "copy the module");
    tf.write("lab.tfvars.json", &store::module_inputs(&lab, &url, &manifest).to_string());
    store::provider_env(&mut tf, &lab, &key);
    tf.init();
    let r = tf.run(&["test", "-no-color", "-var-file=lab.tfvars.json"]);
    let out = r.output();
    assert!(r.ok(), "terraform test failed:\n{out}");
    for suite in ["tests/inputs.tftest.hcl", "tests/converge.tftest.hcl"] {
        assert!(out.contains(&format!("{suite}... pass")), "{suite} ran and passed:\n{out}");
    }
    assert!(out.contains("Success! 8 passed, 0 failed"), "{out}");

    // terraform test destroyed what it applied: the lab's store is empty again.
    let snap = lab.admin("GET", "/lab/snapshot", None);
    let s = &snap["stores"][0];
    // Ceph's own pool (the mgr's device_health_metrics) is nobody's resource.
    let pools = s["pools"].as_object().map(|m| m.keys().filter(|k| *k != "device_health_metrics").count());
    assert_eq!(pools.unwrap_or(0), 0, "no pool left: {}", s["pools"]);
    // Powered off by destroy: the BMC says so at once, the lab's model on its next BMC watch.
    let start = std::time::Instant::now();
    loop {
        let snap = lab.admin("GET", "/lab/snapshot", None);
        let on: Vec<String> = snap["stores"][0]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["power_on"] != false)
            .map(|n| n["name"].to_string())
            .collect();
        if on.is_empty() {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "still on after destroy: {on:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
