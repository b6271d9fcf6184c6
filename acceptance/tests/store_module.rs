//! The store module as users call it: the example validates with real Terraform, where module
//! inputs are unknown to the provider's checks (they must not fire on values not known yet).

use edge_acceptance::{repo_root, Tf};

#[test]
fn the_example_store_validates() {
    let example = std::fs::read_to_string(repo_root().join("examples/store-001/main.tf")).expect("example");
    let module = repo_root().join("modules/store");
    let tf = Tf::new(&example.replace("../../modules/store", &module.display().to_string()));
    tf.init();
    let r = tf.run(&["validate", "-no-color"]);
    assert!(r.ok(), "{}", r.output());
}
