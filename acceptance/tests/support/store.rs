#![allow(dead_code)] // each test binary uses its own part
//! Shared by the whole-store tests: a throwaway signing key with a signed image in the lab's
//! artifact dir, and the example store (or the bare module) wired to a lab.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_acceptance::{edge_image_bin, image_keygen, json, repo_root, Lab, Tf, Value};

pub use edge_acceptance::run;

/// A lab for whole-store tests on PVE profile `pve`: real Ceph, the Redfish BMC (instant power),
/// short installs.
pub fn store_lab(net: &str, pve: &str) -> Lab {
    Lab::up(&["--net", net, "--pve", pve, "--ceph", "--redfish", "--bmc-power-delay", "instant", "--install-ms", "300"])
}

/// A throwaway signing key and a signed test image in the lab's artifact dir:
/// (image URL, manifest path, public key).
pub fn signed_image(lab: &Lab, keys: &Path, version: &str) -> (String, String, String) {
    let (sec, key) = image_keygen(keys, "edge-drill-1");
    let art = PathBuf::from(lab.json["artifacts"]["dir"].as_str().expect("artifacts dir"));
    std::fs::create_dir_all(&art).expect("artifacts dir");
    std::fs::write(art.join("node.img"), vec![7u8; 1 << 16]).expect("image");
    let manifest = art.join("node.manifest.json");
    run(Command::new(edge_image_bin())
        .args(["manifest", "--system", "/nix/store/8bzm6cq9q3wq0j1d8yq0f2vq3wf7b0a1-nixos-system-edge-26.05"])
        .arg("--file")
        .arg(format!("node.img={}", art.join("node.img").display()))
        .args(["--version", version, "--no-closure", "--key"])
        .arg(&sec)
        .arg("--out")
        .arg(&manifest));
    let url = format!("{}/node.img", lab.json["artifacts"]["endpoint"].as_str().expect("artifacts endpoint"));
    (url, manifest.display().to_string(), key)
}

/// The example store, wired to `lab`, with a short disk-boot wait (the lab's disks answer at
/// once or never).
pub fn example_store(lab: &Lab, keys: &Path) -> Tf {
    let (url, manifest, key) = signed_image(lab, keys, "drill-1");
    let example = std::fs::read_to_string(repo_root().join("examples/store-001/main.tf")).expect("example");
    let module = repo_root().join("modules/store").display().to_string();
    let mut tf = Tf::new(&example.replace("../../modules/store", &module));
    let store = lab.store(0);
    let nodes = nodes_of(lab, None);
    tf.write(
        "terraform.tfvars.json",
        &json!({"nodes": nodes, "image": {"url": url, "manifest": manifest},
                "root_password": store["pve"]["root_password"], "datastore": store["pbs"]["datastore"],
                "disk_boot_timeout": "15s"})
        .to_string(),
    );
    provider_env(&mut tf, lab, &key);
    if let Some(log) = std::env::var_os("EDGE_TEST_TF_LOG") {
        tf.env("TF_LOG_PROVIDER", "INFO");
        tf.env("TF_LOG_PATH", &log.to_string_lossy());
    }
    tf.init();
    tf
}

/// The store's nodes as the module's `nodes` map (address, BMC, optionally one OSD disk).
fn nodes_of(lab: &Lab, osd: Option<&str>) -> serde_json::Map<String, Value> {
    let nodes = lab.store(0)["nodes"].as_array().cloned().unwrap_or_default();
    nodes
        .iter()
        .map(|n| {
            let mut v = json!({"address": n["address"], "bmc_endpoint": n["bmc"]["endpoint"]});
            if let Some(d) = osd {
                v["osd_devices"] = json!([d]);
            }
            (n["name"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}

/// The lab's facts as the store module's inputs (`nodes`, `image`, `root_password`, …).
pub fn module_inputs(lab: &Lab, url: &str, manifest: &str) -> Value {
    let store = lab.store(0);
    let nodes = nodes_of(lab, Some("/dev/sdb"));
    json!({"store_id": "store-001", "nodes": nodes, "image": {"url": url, "manifest": manifest},
           "root_password": store["pve"]["root_password"], "disk_boot_timeout": "15s",
           "pools": {"vm-disks": {}}, "backup": {"datastore": store["pbs"]["datastore"]}})
}

/// Provider settings for `lab` (PBS/Redfish from lab.json, PVE as root@pam — the nodes come
/// from bare metal —, the image key).
pub fn provider_env(tf: &mut Tf, lab: &Lab, key: &str) {
    for (k, v) in lab.bare_metal_env(0) {
        tf.env(&k, &v);
    }
    tf.env("EDGE_REDFISH_USERNAME", lab.json["redfish"]["username"].as_str().unwrap_or_default());
    tf.env("EDGE_REDFISH_PASSWORD", lab.json["redfish"]["password"].as_str().unwrap_or_default());
    tf.env("EDGE_TRUSTED_IMAGE_KEYS", key);
}
