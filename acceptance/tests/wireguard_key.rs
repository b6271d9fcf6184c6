//! edge_wireguard_key through real Terraform: the whole protocol without any server.

use edge_acceptance::{lifecycle, terraform_legacy_bin, Tf};

const HCL: &str = r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
provider "edge" {}

resource "edge_wireguard_key" "hub" {
  keepers = { rotation = "1" }
}

# An unknown value at plan time flows into another resource.
resource "edge_wireguard_key" "follower" {
  keepers = { hub = edge_wireguard_key.hub.public_key }
}

output "hub_public_key" { value = edge_wireguard_key.hub.public_key }
"#;

#[test]
fn lifecycle_with_terraform_1_15() {
    let tf = Tf::new(HCL);
    tf.init();
    let plan = tf.plan_output();
    assert!(plan.contains("(known after apply)"), "computed values are unknown at plan:\n{plan}");
    tf.apply();
    tf.assert_no_changes();

    let hub = tf.resource("edge_wireguard_key.hub");
    let follower = tf.resource("edge_wireguard_key.follower");
    assert_eq!(follower["keepers"]["hub"], hub["public_key"], "unknown flowed into the dependent resource");
    assert_eq!(hub["private_key"].as_str().map(str::len), Some(44));

    // The public key is what `wg pubkey` derives from the private key.
    let wg = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(hub["private_key"].as_str().unwrap_or("").as_bytes())?;
            c.wait_with_output()
        })
        .expect("wg pubkey (wireguard-tools)");
    assert_eq!(String::from_utf8_lossy(&wg.stdout).trim(), hub["public_key"].as_str().unwrap_or(""));

    // Rotation: a keepers change replaces the key, and the dependent one with it.
    tf.write("main.tf", &HCL.replace("rotation = \"1\"", "rotation = \"2\""));
    let plan = tf.plan_output();
    assert!(plan.contains("forces replacement"), "{plan}");
    assert!(plan.contains("2 to add, 0 to change, 2 to destroy"), "{plan}");
    tf.apply();
    assert_ne!(tf.resource("edge_wireguard_key.hub")["public_key"], hub["public_key"]);
    tf.assert_no_changes();

    // Import by CLI from a key file, and by an `import {}` block with the base64 key.
    let key_file = tf.dir().join("wg.key");
    std::fs::write(&key_file, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n").expect("key file");
    let before = tf.resource("edge_wireguard_key.hub");
    tf.state_rm("edge_wireguard_key.hub");
    tf.import("edge_wireguard_key.hub", before["private_key"].as_str().unwrap_or_default());
    assert_eq!(tf.resource("edge_wireguard_key.hub")["public_key"], before["public_key"]);
    // Import cannot know the keepers: the next apply records them without a new key.
    tf.apply();
    assert_eq!(tf.resource("edge_wireguard_key.hub"), before);
    tf.assert_no_changes();

    tf.write(
        "import.tf",
        &format!(
            "resource \"edge_wireguard_key\" \"imported\" {{}}\nimport {{\n  to = edge_wireguard_key.imported\n  id = \"{}\"\n}}\n",
            key_file.display()
        ),
    );
    tf.apply();
    assert_eq!(
        tf.resource("edge_wireguard_key.imported")["public_key"],
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    );
    tf.destroy();
    assert!(tf.show()["values"].is_null(), "destroy leaves nothing");
}

#[test]
fn import_by_identity() {
    let tf = Tf::new(
        r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
resource "edge_wireguard_key" "k" {}
import {
  to       = edge_wireguard_key.k
  identity = {
    public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    key_file   = "KEYFILE"
  }
}
"#,
    );
    let key_file = tf.dir().join("wg.key");
    std::fs::write(&key_file, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n").expect("key file");
    let main = std::fs::read_to_string(tf.dir().join("main.tf")).expect("main.tf");
    tf.write("main.tf", &main.replace("KEYFILE", &key_file.display().to_string()));
    tf.init();
    tf.apply();
    assert_eq!(tf.resource("edge_wireguard_key.k")["public_key"], "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    tf.assert_no_changes();

    // A key file that does not match the identity is refused.
    tf.state_rm("edge_wireguard_key.k");
    std::fs::write(&key_file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").expect("key file");
    let out = tf.apply_fails();
    assert!(out.contains("does not match the identity"), "{out}");
}

#[test]
fn bad_import_ids_get_diagnostics() {
    let tf = Tf::new(
        "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nresource \"edge_wireguard_key\" \"k\" {}\n",
    );
    tf.init();
    let r = tf.run(&["import", "-no-color", "edge_wireguard_key.k", "not-a-key"]);
    assert!(!r.ok());
    assert!(r.output().contains("Invalid import ID"), "{}", r.output());
}

#[test]
fn compatibility_with_terraform_1_0_3() {
    let tf = Tf::with_terraform(
        "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nresource \"edge_wireguard_key\" \"k\" {\n  keepers = { a = \"1\" }\n}\n",
        terraform_legacy_bin(),
    );
    let key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    lifecycle(&tf, &[], &[]);
    tf.apply();
    tf.state_rm("edge_wireguard_key.k");
    tf.import("edge_wireguard_key.k", key);
    assert_eq!(tf.resource("edge_wireguard_key.k")["public_key"], "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    // The imported key has no keepers; recording the configured ones keeps the key.
    let plan = tf.plan_output();
    assert!(plan.contains("1 to change") && !plan.contains("replace"), "{plan}");
    tf.apply();
    assert_eq!(tf.resource("edge_wireguard_key.k")["public_key"], "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    tf.destroy();
}

#[test]
fn state_from_schema_version_0_is_upgraded() {
    let tf = Tf::new(
        "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nresource \"edge_wireguard_key\" \"k\" {}\n",
    );
    // A state as the version-0 schema wrote it: keys named `private` and `public`.
    tf.write(
        "terraform.tfstate",
        r#"{"version":4,"terraform_version":"1.15.5","serial":1,"lineage":"5b8b2f7e-0000-4000-8000-000000000000","outputs":{},
"resources":[{"mode":"managed","type":"edge_wireguard_key","name":"k","provider":"provider[\"registry.terraform.io/edgeform/edge\"]",
"instances":[{"schema_version":0,"attributes":{"private":"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=","public":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="},"sensitive_attributes":[]}]}]}"#,
    );
    tf.init();
    tf.must(&["apply", "-refresh-only", "-auto-approve", "-no-color"]);
    let k = tf.resource("edge_wireguard_key.k");
    assert_eq!(k["public_key"], "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=");
    assert_eq!(k["private_key"], "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=");
    tf.assert_no_changes();
    let state = std::fs::read_to_string(tf.dir().join("terraform.tfstate")).expect("state");
    assert!(state.contains("\"schema_version\": 1"), "{state}");
}
