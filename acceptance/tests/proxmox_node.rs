//! edge_proxmox_node through real Terraform against the edge lab with a Redfish BMC
//! (sushy-emulator): nodes start powered off and come up only after the provider boots a
//! signed image from virtual media.
//!
//! Each test has its own lab (`--net 81..85`, `88`, `129`) and a throwaway signing key; images
//! are small files in the lab's artifact dir with a manifest made by the `edge-image` CLI. The
//! whole story runs on both PVE profiles; the other tests alternate between them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edge_acceptance::{edge_image_bin, image_keygen, json, run, terraform_legacy_bin, Lab, Tf, Value};

/// Writes `content` as `<artifacts>/<file>` and a manifest for it signed with `key`.
fn make_image(lab: &Lab, file: &str, content: &[u8], key: &Path, version: &str) -> (String, PathBuf) {
    let art = PathBuf::from(lab.json["artifacts"]["dir"].as_str().expect("artifacts dir"));
    std::fs::create_dir_all(&art).expect("artifacts dir");
    let img = art.join(file);
    std::fs::write(&img, content).expect("image");
    let manifest = art.join(format!("{file}.manifest.json"));
    run(Command::new(edge_image_bin())
        .arg("manifest")
        .args(["--system", "/nix/store/8bzm6cq9q3wq0j1d8yq0f2vq3wf7b0a1-nixos-system-edge-26.05"])
        .arg("--file")
        .arg(format!("{file}={}", img.display()))
        .args(["--version", version, "--no-closure"])
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(&manifest));
    let url = format!("{}/{file}", lab.json["artifacts"]["endpoint"].as_str().expect("artifacts endpoint"));
    (url, manifest)
}

fn tf_for(lab: &Lab, hcl: &str, trusted: &str) -> Tf {
    with_env(lab, Tf::new(hcl), trusted)
}

fn with_env(lab: &Lab, mut tf: Tf, trusted: &str) -> Tf {
    for (k, v) in lab.bare_metal_env(0) {
        tf.env(&k, &v);
    }
    tf.env("EDGE_REDFISH_USERNAME", lab.json["redfish"]["username"].as_str().unwrap_or_default());
    tf.env("EDGE_REDFISH_PASSWORD", lab.json["redfish"]["password"].as_str().unwrap_or_default());
    tf.env("EDGE_TRUSTED_IMAGE_KEYS", trusted);
    tf.env("TF_VAR_root_password", lab.store(0)["pve"]["root_password"].as_str().unwrap_or_default());
    tf
}

fn node(lab: &Lab, name: &str) -> Value {
    lab.admin("GET", &format!("/lab/nodes/{name}"), None)
}

fn lab_node_json(lab: &Lab, i: usize) -> &Value {
    &lab.store(0)["nodes"][i]
}

/// HCL for `n` nodes: pve1 creates the cluster, the others join through it.
fn nodes_hcl(lab: &Lab, n: usize, url: &str, manifest: &Path, with_ceph: bool) -> String {
    let mut out = String::from(
        r#"terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
provider "edge" {}
variable "root_password" {
  type      = string
  sensitive = true
}
"#,
    );
    for i in 0..n {
        let nd = lab_node_json(lab, i);
        let name = nd["name"].as_str().unwrap_or_default();
        let cluster = if i == 0 {
            "cluster {\n    name   = \"edge\"\n    create = true\n  }".to_string()
        } else {
            "cluster {\n    join   = edge_proxmox_node.pve1.address\n    ca_pem = edge_proxmox_node.pve1.cluster_ca_pem\n  }".to_string()
        };
        // The first node also gets a bridge (staged, then applied with the reload task).
        let network = if i == 0 {
            "network {\n    iface     = \"vmbr1\"\n    type      = \"bridge\"\n    cidr      = \"10.2.0.11/24\"\n    autostart = true\n  }"
        } else {
            ""
        };
        let ceph = if with_ceph {
            "ceph {\n    mon         = true\n    mgr         = true\n    osd_devices = [\"/dev/sdb\"]\n  }"
        } else {
            ""
        };
        out.push_str(&format!(
            r#"
resource "edge_proxmox_node" "{name}" {{
  name          = "{name}"
  address       = "{address}"
  root_password = var.root_password
  image {{
    url      = "{url}"
    manifest = "{manifest}"
  }}
  bmc {{
    endpoint = "{bmc}"
  }}
  dns {{
    servers = ["10.0.0.53", "10.0.0.54"]
    search  = "store1.example"
  }}
  timezone = "Europe/Berlin"
  {network}
  {cluster}
  {ceph}
  timeouts {{
    create = "3m"
  }}
}}
"#,
            address = nd["address"].as_str().unwrap_or_default(),
            manifest = manifest.display(),
            bmc = nd["bmc"]["endpoint"].as_str().unwrap_or_default(),
        ));
    }
    out
}

fn assert_all_off(lab: &Lab, n: usize) {
    for i in 0..n {
        let name = lab_node_json(lab, i)["name"].as_str().unwrap_or_default().to_string();
        let s = node(lab, &name);
        assert_eq!(s["power_on"], false, "{name} must stay powered off: {s}");
        assert!(s["image"].is_null(), "{name} booted nothing: {s}");
    }
}

#[test]
fn three_nodes_from_powered_off_to_a_ceph_cluster_then_drift_is_repaired() {
    three_nodes_then_drift("81", "9.1");
}

#[test]
fn three_nodes_from_powered_off_to_a_ceph_cluster_then_drift_is_repaired_on_pve_8_4() {
    three_nodes_then_drift("129", "8.4");
}

fn three_nodes_then_drift(net: &str, pve: &str) {
    let lab = Lab::up(&["--net", net, "--pve", pve, "--redfish", "--install-ms", "200"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "2026.11.1");
    let tf = tf_for(&lab, &nodes_hcl(&lab, 3, &url, &manifest, true), &public);
    tf.init();
    assert_all_off(&lab, 3);
    tf.apply();
    tf.assert_no_changes();
    assert_eq!(tf.plan_code(), 0);

    let sha = {
        let s = tf.resource("edge_proxmox_node.pve1");
        assert_eq!(s["power"], "on");
        assert_eq!(s["booted_image"], url.as_str());
        assert_eq!(s["tls_fingerprint"], node(&lab, "pve1")["tls_fingerprint"], "what the node presents");
        s["image_sha256"].as_str().unwrap_or_default().to_string()
    };
    // One cluster CA, learned over the seed-pinned channel of the first node, trusted by every
    // member; each member states the seed it booted, the provider recorded the same one.
    let ca = tf.resource("edge_proxmox_node.pve1")["cluster_ca_pem"].as_str().unwrap_or_default().to_string();
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    for i in 0..3 {
        let name = lab_node_json(&lab, i)["name"].as_str().unwrap_or_default().to_string();
        let st = tf.resource(&format!("edge_proxmox_node.{name}"));
        assert_eq!(st["cluster_ca_pem"], ca.as_str(), "{name} trusted through the cluster's CA");
        let info = lab.pve_root(0, "GET", &format!("/nodes/{name}/certificates/info"), &[]);
        assert_eq!(info["data"][0]["pem"], ca.as_str(), "PVE's own pve-root-ca.pem on {name}: {info}");
        let notes = lab.pve_root(0, "GET", &format!("/nodes/{name}/config"), &[]);
        let seed = st["seed_sha256"].as_str().unwrap_or_default();
        assert!(
            notes["data"]["description"].as_str().unwrap_or_default().contains(&format!("edge-seed sha256={seed}")),
            "{name} applied the seed the provider made: {notes}"
        );
        assert!(st["ssh_host_key"].as_str().is_some_and(|k| k.starts_with("ssh-ed25519 ")), "{st}");
    }
    for i in 0..3 {
        let name = lab_node_json(&lab, i)["name"].as_str().unwrap_or_default().to_string();
        let s = node(&lab, &name);
        assert_eq!(s["power_on"], true, "{s}");
        assert_eq!(s["cluster"], "edge", "one cluster with every node: {s}");
        assert_eq!(s["image"]["url"], url.as_str());
        assert_eq!(s["image"]["sha256"], sha.as_str(), "the node booted the verified image");
        assert_eq!(s["ceph"]["mon"], true, "{s}");
        assert_eq!(s["ceph"]["mgr"], true, "{s}");
        assert_eq!(s["ceph"]["osds"].as_array().map(Vec::len), Some(1), "{s}");
        assert_eq!(s["timezone"], "Europe/Berlin");
        assert_eq!(s["dns"]["dns2"], "10.0.0.54");
    }
    let net = &node(&lab, "pve1")["network"];
    assert_eq!(net["active"]["vmbr1"]["cidr"], "10.2.0.11/24", "bridge applied: {net}");
    assert!(net["pending"].as_object().is_none_or(|p| p.is_empty()), "nothing left pending: {net}");
    let write_only_clean = tf.resource("edge_proxmox_node.pve2")["root_password"].is_null();
    assert!(write_only_clean, "the root password is write-only: not in state");
    let state = std::fs::read_to_string(tf.dir().join("terraform.tfstate")).expect("state");
    let pw = lab.store(0)["pve"]["root_password"].as_str().expect("pw");
    assert!(!state.contains(pw), "no trace of the root password in the state");

    // Drift by hand: DNS changed on pve2, pve2 removed from the cluster, pve3 powered off.
    lab.admin(
        "POST",
        "/lab/drift",
        Some(&json!({"kind": "dns", "node": "pve2", "servers": ["192.0.2.1"], "search": "evil.example"})),
    );
    let r = lab.pve_root(0, "DELETE", "/cluster/config/nodes/pve2", &[]);
    assert!(r.get("data").is_some(), "delnode: {r}");
    assert!(node(&lab, "pve2")["cluster"].is_null());
    let booted3 = node(&lab, "pve3")["image"]["booted_at"].clone();
    lab.admin("POST", "/lab/power", Some(&json!({"node": "pve3", "on": false})));
    wait_until(Duration::from_secs(30), || node(&lab, "pve3")["power_on"] == false);
    let plan = tf.plan_output();
    assert!(plan.contains("192.0.2.1") && plan.contains("evil.example"), "DNS drift shows:\n{plan}");
    assert!(plan.contains("\"off\" -> \"on\""), "power drift shows:\n{plan}");
    assert!(plan.contains("+ cluster {"), "cluster membership drift shows:\n{plan}");
    assert!(plan.contains("0 to add, 2 to change, 0 to destroy"), "{plan}");
    tf.apply();
    tf.assert_no_changes();
    let s3 = node(&lab, "pve3");
    assert_eq!(s3["power_on"], true);
    assert_eq!(s3["image"]["booted_at"], booted3, "powered on from disk, not re-installed: {s3}");
    assert_eq!(s3["cluster"], "edge");
    let s2 = node(&lab, "pve2");
    assert_eq!(s2["dns"]["search"], "store1.example");
    assert_eq!(s2["cluster"], "edge", "re-joined: {s2}");

    // Import by node name, through the provider's PVE endpoint trusted by the cluster's CA.
    let before = tf.resource("edge_proxmox_node.pve3");
    tf.state_rm("edge_proxmox_node.pve3");
    let mut tf = tf;
    tf.env("EDGE_PVE_CA_PEM", &ca);
    let imp = tf.import("edge_proxmox_node.pve3", "pve3");
    assert!(imp.ok(), "{}", imp.output());
    let after = tf.resource("edge_proxmox_node.pve3");
    assert_eq!(after["address"], before["address"]);
    assert_eq!(after["tls_fingerprint"], before["tls_fingerprint"]);
    assert_eq!(after["cluster_ca_pem"], ca.as_str());
    assert_eq!(after["cluster"]["name"], "edge");
    // The first apply after an import records the configuration without booting anything.
    tf.apply();
    assert_eq!(node(&lab, "pve3")["image"]["booted_at"], booted3, "import never re-images");
    tf.assert_no_changes();

    // Removing a node from the configuration: it leaves the cluster (through a remaining
    // member) and is powered off; the others stay members.
    tf.write("main.tf", &nodes_hcl(&lab, 2, &url, &manifest, true));
    tf.apply();
    wait_until(Duration::from_secs(30), || node(&lab, "pve3")["power_on"] == false);
    let snap = lab.admin("GET", "/lab/snapshot", None);
    let members = &snap["stores"][0]["clusters"]["edge"]["members"];
    assert_eq!(members, &json!(["pve1", "pve2"]), "{snap}");
    tf.assert_no_changes();

    // Destroy: the rest powered off.
    tf.destroy();
    for name in ["pve1", "pve2"] {
        wait_until(Duration::from_secs(30), || node(&lab, name)["power_on"] == false);
    }
}

#[test]
fn unsigned_tampered_and_untrusted_images_are_refused_and_nothing_powers_on() {
    let lab = Lab::up(&["--net", "82", "--redfish", "--install-ms", "200"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (rogue, _) = image_keygen(keys.path(), "rogue-1");

    // Signed by a key the provider does not trust: refused at plan time.
    let (url, manifest) = make_image(&lab, "rogue.img", b"rogue image\n", &rogue, "1");
    let tf = tf_for(&lab, &nodes_hcl(&lab, 1, &url, &manifest, false), &public);
    tf.init();
    let plan = tf.run(&["plan", "-input=false", "-no-color"]);
    assert!(!plan.ok());
    let out = flat(&plan.output());
    assert!(out.contains("Image refused") && out.contains("signed by a trusted key"), "{out}");
    assert!(out.contains("rogue-1"), "names the signer: {out}");

    // Altered manifest (signature no longer matches): refused at plan time.
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image\n", &secret, "1");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replacen("\"version\": \"1\"", "\"version\": \"9\"", 1)).expect("write");
    tf.write("main.tf", &nodes_hcl(&lab, 1, &url, &manifest, false));
    let out = flat(&tf.apply_fails());
    assert!(out.contains("signature valid"), "{out}");

    // Good manifest, tampered image file (same size): refused at apply, before the BMC.
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image\n", &secret, "1");
    let art = PathBuf::from(lab.json["artifacts"]["dir"].as_str().unwrap_or_default());
    std::fs::write(art.join("node.img"), b"EVIL node image\n").expect("tamper");
    tf.write("main.tf", &nodes_hcl(&lab, 1, &url, &manifest, false));
    let out = flat(&tf.apply_fails());
    assert!(out.contains("Image refused") && out.contains("(sha256)"), "{out}");
    assert!(out.contains("Nothing was powered on"), "{out}");

    // Nothing touched the machines: the BMC (sushy) still reports them off, nothing booted.
    assert_all_off(&lab, 3);
    assert!(tf.try_resource("edge_proxmox_node.pve1").is_none());
}

#[test]
fn a_failed_join_resumes_into_one_cluster_without_trusting_on_first_use() {
    let lab = Lab::up(&["--net", "83", "--pve", "8.4", "--redfish", "--install-ms", "200"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    let tf = tf_for(&lab, &nodes_hcl(&lab, 2, &url, &manifest, false), &public);
    tf.init();
    lab.admin(
        "POST",
        "/lab/faults",
        Some(&json!({"pattern": "POST /api2/json/cluster/config/join", "fail_tasks": 1.0, "seed": 1})),
    );
    let out = flat(&tf.apply_fails());
    assert!(out.contains("Cluster join failed"), "{out}");
    let booted = node(&lab, "pve2")["image"]["booted_at"].clone();
    assert!(!booted.is_null(), "pve2 booted before the join");
    assert!(node(&lab, "pve2")["cluster"].is_null());
    lab.admin("DELETE", "/lab/faults", None);

    // The failed create left no state: what the provider knew of pve2 (its seed, its CA) is
    // gone, and a node it cannot trust is not trusted on first use. pve2 runs the image but
    // presents no certificate of the cluster's CA: the re-run reboots it from its disk with a
    // new seed (no second install), trusts it through that seed, and joins it.
    let seed1 = lab.pve_root(1, "GET", "/nodes/pve2/config", &[])["data"]["description"].clone();
    tf.apply();
    tf.assert_no_changes();
    let s2 = node(&lab, "pve2");
    assert_eq!(s2["cluster"], "edge");
    assert_eq!(s2["image"]["booted_at"], booted, "no second install: {s2}");
    let seed2 = tf.resource("edge_proxmox_node.pve2")["seed_sha256"].as_str().unwrap_or_default().to_string();
    assert!(!seed1.as_str().unwrap_or_default().contains(&seed2), "a new seed: {seed1} vs {seed2}");
    let snap = lab.admin("GET", "/lab/snapshot", None);
    let clusters = &snap["stores"][0]["clusters"];
    assert_eq!(clusters.as_object().map(|c| c.len()), Some(1), "no duplicate cluster: {clusters}");
    assert_eq!(clusters["edge"]["members"], json!(["pve1", "pve2"]), "{clusters}");
}

#[test]
fn two_nodes_with_terraform_1_0_3_keep_the_write_only_password_sensitive_in_state() {
    let lab = Lab::up(&["--net", "84", "--pve", "8.4", "--redfish", "--install-ms", "200"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    let hcl = nodes_hcl(&lab, 2, &url, &manifest, false);
    let tf = with_env(&lab, Tf::with_terraform(&hcl, terraform_legacy_bin()), &public);
    tf.init();
    let out = flat(&tf.apply().output());
    assert!(out.contains("Stored in state on this Terraform version"), "says so: {out}");
    tf.assert_no_changes();
    assert_eq!(node(&lab, "pve2")["cluster"], "edge");
    // No write-only support: the password is kept in state, shown only as a sensitive value.
    // (`terraform show` of Terraform 1.0.3 itself panics on sensitive values in nested blocks,
    // so the plan output and the JSON state are checked instead.)
    assert!(out.contains("root_password") && out.contains("(sensitive value)"), "{out}");
    assert!(!out.contains(lab.store(0)["pve"]["root_password"].as_str().unwrap_or("-")), "never printed");
    assert!(tf.resource("edge_proxmox_node.pve2")["root_password"].is_string());
}

#[test]
fn a_new_image_replaces_the_node_or_reimages_it_in_place() {
    let lab = Lab::up(&["--net", "85", "--redfish", "--install-ms", "200"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "v1.img", b"edge node image v1\n", &secret, "1");
    let tf = tf_for(&lab, &nodes_hcl(&lab, 1, &url, &manifest, false), &public);
    tf.init();
    tf.apply();
    let first = node(&lab, "pve1")["image"].clone();

    // A new image: by default the plan replaces the node, and says why.
    let (url2, manifest2) = make_image(&lab, "v2.img", b"edge node image v2\n", &secret, "2");
    let hcl2 = nodes_hcl(&lab, 1, &url2, &manifest2, false);
    tf.write("main.tf", &hcl2);
    let plan = tf.plan_output();
    assert!(plan.contains("forces replacement") && plan.contains("1 to add, 0 to change, 1 to destroy"), "{plan}");

    // With reimage_on_change the same change is an in-place re-image, announced in the plan.
    tf.write("main.tf", &hcl2.replacen("  timezone = ", "  reimage_on_change = true\n  timezone = ", 1));
    let plan = flat(&tf.plan_output());
    assert!(
        plan.contains("The node will be re-imaged") && plan.contains("0 to add, 1 to change, 0 to destroy"),
        "{plan}"
    );
    tf.apply();
    tf.assert_no_changes();
    let now = node(&lab, "pve1");
    assert_eq!(now["image"]["url"], url2.as_str(), "{now}");
    assert_ne!(now["image"]["booted_at"], first["booted_at"]);
    assert_eq!(now["image"]["sha256"], tf.resource("edge_proxmox_node.pve1")["image_sha256"]);
    assert_eq!(now["cluster"], "edge", "configured again after the re-image: {now}");
    assert_eq!(now["timezone"], "Europe/Berlin");
}

/// The tests on `--net 88` take turns (one lab per block at a time).
static NET88: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn net88() -> std::sync::MutexGuard<'static, ()> {
    NET88.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_changed_node_certificate_is_drift_refused_at_apply_until_pinned() {
    let _turn = net88();
    // Instant BMC: this test is about certificates, not about waiting for sushy's power delay.
    let lab = Lab::up(&["--net", "88", "--redfish", "--install-ms", "200", "--bmc-power-delay", "instant"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    let hcl = nodes_hcl(&lab, 1, &url, &manifest, false);
    let tf = tf_for(&lab, &hcl, &public);
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    let old_fp = tf.resource("edge_proxmox_node.pve1")["tls_fingerprint"].as_str().unwrap_or_default().to_string();
    assert_eq!(old_fp, node(&lab, "pve1")["tls_fingerprint"].as_str().unwrap_or_default());

    // Someone runs `pvenode cert set` (or pveproxy makes a new self-signed certificate).
    let drift = lab.admin("POST", "/lab/drift", Some(&json!({"kind": "cert", "node": "pve1"})));
    let new_fp = drift["tls_fingerprint"].as_str().expect("new fingerprint").to_string();
    assert_ne!(new_fp, old_fp);
    assert_eq!(node(&lab, "pve1")["tls_fingerprint"], new_fp.as_str());

    // Plan: the certificate the node presents differs from the trusted one.
    let plan = tf.plan_output();
    assert!(
        plan.contains("tls_fingerprint") && plan.contains(&new_fp) && plan.contains(&old_fp),
        "plan shows the certificate change:\n{plan}"
    );
    assert!(plan.contains("0 to add, 1 to change, 0 to destroy"), "{plan}");

    // Apply refuses to talk to a node with an unknown certificate.
    let dns_before = node(&lab, "pve1")["dns"].clone();
    let out = flat(&tf.apply_fails());
    assert!(out.contains("Node certificate not trusted"), "{out}");
    assert!(out.contains(&format!("presents {new_fp}")) && out.contains("Nothing was sent to it"), "{out}");
    assert!(out.contains("not a certificate of the node's cluster CA"), "{out}");
    assert_eq!(node(&lab, "pve1")["dns"], dns_before, "nothing was changed through the untrusted certificate");
    let st = tf.resource("edge_proxmox_node.pve1");
    assert_eq!(st["tls_fingerprint_trusted"], old_fp.as_str(), "a failed apply keeps trusting the old certificate");

    // Pinning the new certificate in the configuration is the explicit decision to trust it.
    tf.write("main.tf", &hcl.replacen("  timezone = ", &format!("  tls_fingerprint = \"{new_fp}\"\n  timezone = "), 1));
    tf.apply();
    let st = tf.resource("edge_proxmox_node.pve1");
    assert_eq!(st["tls_fingerprint"], new_fp.as_str());
    assert_eq!(st["tls_fingerprint_trusted"], new_fp.as_str());
    tf.assert_no_changes();
}

#[test]
fn ceph_gets_its_monitor_address_and_wiped_disks_only_when_asked() {
    let lab = Lab::up(&["--net", "130", "--redfish", "--install-ms", "200", "--bmc-power-delay", "instant"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    // pve1 gets two addresses in the Ceph public network (vmbr1 10.2.0.11, vmbr2 10.2.0.12), and
    // its OSD goes on /dev/sde, which holds an old partition table on every fresh machine.
    let base = nodes_hcl(&lab, 1, &url, &manifest, false).replacen(
        "  timezone = ",
        "  network {\n    iface = \"vmbr2\"\n    type  = \"bridge\"\n    cidr  = \"10.2.0.12/24\"\n  }\n  timezone = ",
        1,
    );
    let with_ceph = |extra: &str| {
        base.replacen(
            "  timezone = ",
            &format!("  ceph {{\n    network     = \"10.2.0.0/24\"\n    mon         = true\n    mgr         = true\n    osd_devices = [\"/dev/sde\"]\n{extra}  }}\n  timezone = "),
            1,
        )
    };
    let tf = tf_for(&lab, &with_ceph(""), &public);
    tf.init();
    // PVE cannot choose the monitor's address: the error says so, at ceph.mon.
    let out = flat(&tf.apply_fails());
    // (Terraform shows the attribute's line of the configuration.)
    assert!(out.contains("Cannot create the Ceph monitor") && out.contains("32: mon = true"), "{out}");
    assert!(out.contains("Multiple IPs for ceph public network '10.2.0.0/24' detected on pve1"), "{out}");
    // With mon_address: the monitor, its manager (PVE's, with the first monitor), then the
    // disk — refused while it holds something, naming the attribute.
    tf.write("main.tf", &with_ceph("    mon_address = \"10.2.0.11\"\n"));
    let out = flat(&tf.apply_fails());
    assert!(out.contains("Disk in use") && out.contains(": osd_devices = [\"/dev/sde\"]"), "{out}");
    assert!(out.contains("/dev/sde on pve1 holds partitions") && out.contains("ceph.wipe = true"), "{out}");
    let s = node(&lab, "pve1");
    assert_eq!((s["ceph"]["mon"].clone(), s["ceph"]["mgr"].clone()), (json!(true), json!(true)), "{s}");
    assert_eq!(s["ceph"]["osds"], json!([]), "nothing on the used disk yet: {s}");
    // wipe = true: PVE wipes the disk (root@pam's wipedisk task), then the OSD goes on it.
    tf.write("main.tf", &with_ceph("    mon_address = \"10.2.0.11\"\n    wipe        = true\n"));
    tf.apply();
    tf.assert_no_changes();
    let disks = lab.pve_root(0, "GET", "/nodes/pve1/disks/list", &[]);
    let sde = disks["data"].as_array().into_iter().flatten().find(|d| d["devpath"] == "/dev/sde").cloned();
    let sde = sde.unwrap_or_else(|| panic!("sde listed: {disks}"));
    assert_eq!((sde["used"].clone(), sde["osdid"].as_i64().is_some_and(|i| i >= 0)), (json!("LVM"), true), "{sde}");
    let mons = lab.pve_root(0, "GET", "/nodes/pve1/ceph/mon", &[]);
    assert_eq!(mons["data"][0]["addr"], "10.2.0.11:6789/0", "{mons}");
    let tasks = lab.pve_root(0, "GET", "/nodes/pve1/tasks", &[("typefilter", "cephcreatemgr")]);
    assert_eq!(tasks["data"].as_array().map(Vec::len), Some(1), "one manager, PVE's own: {tasks}");
}

#[test]
fn a_tampered_seed_is_refused_before_any_credential_is_sent() {
    let _turn = net88();
    let lab =
        Lab::up(&["--net", "88", "--pve", "8.4", "--redfish", "--install-ms", "200", "--bmc-power-delay", "instant"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    let tf = tf_for(&lab, &nodes_hcl(&lab, 1, &url, &manifest, false), &public);
    tf.init();
    // A man in the middle of the BMC's seed download: the node boots with another certificate
    // than the one in the seed the provider made.
    lab.admin("POST", "/lab/drift", Some(&json!({"kind": "seed_tamper", "node": "pve1"})));
    lab.admin("DELETE", "/lab/calls", None);
    let out = flat(&tf.apply_fails());
    assert!(out.contains("Node certificate not trusted"), "{out}");
    let presented = node(&lab, "pve1")["tls_fingerprint"].as_str().unwrap_or_default().to_string();
    assert!(
        out.contains(&format!("presents {presented}")) && out.contains("the bootstrap certificate of the seed"),
        "{out}"
    );
    // Nothing was sent to it: not one HTTP request reached the node's API (the certificate was
    // refused in the TLS handshake), so nothing on it changed.
    let calls = lab.admin("GET", "/lab/calls", None);
    let pve_calls: Vec<&String> = calls["by_endpoint"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("pve "))
        .collect();
    assert!(pve_calls.is_empty(), "no request reached the node: {pve_calls:?}");
    let s = node(&lab, "pve1");
    assert_eq!((s["dns"]["search"].clone(), s["cluster"].clone()), (json!("localdomain"), Value::Null), "{s}");
    assert!(tf.try_resource("edge_proxmox_node.pve1").is_none(), "nothing in state");

    // The next apply cannot trust the node either (its seed died with the last run): it reboots
    // the node with a new seed, which arrives intact this time, and converges.
    tf.apply();
    tf.assert_no_changes();
    let s = node(&lab, "pve1");
    assert_eq!((s["dns"]["search"].clone(), s["cluster"].clone()), (json!("store1.example"), json!("edge")), "{s}");
}

#[test]
fn an_acme_certificate_is_ordered_verified_and_pinned() {
    let _turn = net88();
    let lab = Lab::up(&["--net", "88", "--redfish", "--install-ms", "200", "--bmc-power-delay", "instant"]);
    let keys = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(keys.path(), "edge-test-1");
    let (url, manifest) = make_image(&lab, "node.img", b"edge node image v1\n", &secret, "1");
    let hcl = nodes_hcl(&lab, 1, &url, &manifest, false);
    let tf = tf_for(&lab, &hcl, &public);
    tf.init();
    tf.apply();
    let installed_fp = node(&lab, "pve1")["tls_fingerprint"].as_str().unwrap_or_default().to_string();

    // The cluster-wide ACME objects (an account with the lab's directory, a DNS plugin).
    let dir = lab.json["acme"]["directory"].as_str().expect("acme directory").to_string();
    let tos = lab.json["acme"]["tos"].as_str().expect("acme tos").to_string();
    // Accounts are root@pam's alone.
    lab.pve_root(
        0,
        "POST",
        "/cluster/acme/account",
        &[("contact", "ops@store1.example"), ("directory", &dir), ("tos_url", &tos)],
    );
    wait_until(Duration::from_secs(20), || {
        lab.pve_root(0, "GET", "/cluster/acme/account/default", &[])["data"]["directory"].is_string()
    });
    lab.pve_root(0, "POST", "/cluster/acme/plugins", &[("id", "dns1"), ("type", "dns"), ("api", "pdns")]);

    // Without a CA root the provider refuses to order (it could not verify the result).
    let block = |ca: &str| {
        format!("  acme {{\n    account = \"default\"\n{ca}    domains = [{{ domain = \"pve1.store1.example\", plugin = \"dns1\" }}]\n  }}\n  timezone = ")
    };
    tf.write("main.tf", &hcl.replacen("  timezone = ", &block(""), 1));
    let out = flat(&tf.apply_fails());
    assert!(out.contains("acme.ca_pem"), "{out}");
    assert_eq!(node(&lab, "pve1")["tls_fingerprint"], installed_fp.as_str(), "nothing was ordered");

    // With the ACME CA's root: ordered, verified for the domain, pinned.
    std::fs::write(tf.dir().join("acme-ca.pem"), lab.json["acme"]["ca_pem"].as_str().expect("acme ca")).expect("write");
    tf.write(
        "main.tf",
        &hcl.replacen("  timezone = ", &block("    ca_pem  = file(\"${path.module}/acme-ca.pem\")\n"), 1),
    );
    tf.apply();
    let now_fp = node(&lab, "pve1")["tls_fingerprint"].as_str().unwrap_or_default().to_string();
    assert_ne!(now_fp, installed_fp, "the node presents the ordered certificate");
    let st = tf.resource("edge_proxmox_node.pve1");
    assert_eq!(st["tls_fingerprint"], now_fp.as_str());
    assert_eq!(st["tls_fingerprint_trusted"], now_fp.as_str(), "re-pinned to the certificate it ordered");
    assert_eq!(st["acme"]["domains"][0]["domain"], "pve1.store1.example");
    tf.assert_no_changes();
    // A second apply orders nothing (the certificate covers the domain for 90 days).
    tf.apply();
    assert_eq!(node(&lab, "pve1")["tls_fingerprint"], now_fp.as_str());
}

/// Terraform wraps diagnostics at 80 columns: compare on single-spaced text.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    while !f() {
        assert!(start.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
