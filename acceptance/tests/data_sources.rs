//! Data sources through real Terraform 1.15, each checked against a real peer:
//! `edge_wireguard_interface` against `wg show` and `ip addr` on wireguard-go interfaces reached
//! over OpenSSH in network namespaces (support/netns.rs), also as the hub's key in the
//! hub-and-spoke example of docs/resources/wireguard_peer.md, applied as written;
//! `edge_proxmox_cluster` against the lab's PVE API, the TLS certificates its nodes present
//! (`openssl s_client`) and real Ceph (`ceph fsid`, `ceph health`); `edge_image_manifest`
//! against `sha256sum` and `nix-hash` of manifests made by the `edge-image` CLI. Plus bad input
//! (`terraform validate -json`) and a read with Terraform 1.0.3.

#[path = "support/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edge_acceptance::{edge_image_bin, image_keygen, json, poll, repo_root, run, terraform_legacy_bin, Lab, Tf, Value};
use netns::Net;

const HEADER: &str = "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\n";

/// Terraform's output on one line (it wraps long diagnostics).
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// edge_wireguard_interface

fn wg_tf(net: &Net, body: &str) -> Tf {
    let mut tf = Tf::new(&format!("{HEADER}provider \"edge\" {{\n  ssh = {{ user = \"root\" }}\n}}\n{body}"));
    tf.env("EDGE_SSH_PRIVATE_KEY", &net.client_key);
    tf.init();
    tf
}

fn interface_hcl(host: &str, host_key: &str, iface: &str) -> String {
    format!(
        r#"
data "edge_wireguard_interface" "hub" {{
  ssh       = {{ host = "{host}", host_key = "{host_key}" }}
  interface = "{iface}"
}}
# Not the whole object: its `ssh` holds the (sensitive) private_key attribute.
output "hub" {{
  value = {{ for k, v in data.edge_wireguard_interface.hub : k => v if k != "ssh" }}
}}
"#
    )
}

/// A fresh key pair's public half, made by `wg` itself.
fn wg_pubkey(net: &Net) -> String {
    let private = net.wg(&["genkey"]);
    let out = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(private.as_bytes())?;
            c.wait_with_output()
        })
        .expect("wg pubkey");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Gives a node's interface a private key on the node, as its image does at boot.
fn give_key(net: &Net, node: &str) {
    let iface = net.node(node).iface.clone();
    let (ok, out) = net.exec(node, &["sh", "-c", &format!("wg genkey | wg set {iface} private-key /dev/stdin")]);
    assert!(ok, "{out}");
}

#[test]
fn wireguard_interface_reads_what_wg_shows() {
    let net = Net::up(1);
    let hub = net.node("hub");
    let tf = wg_tf(&net, &interface_hcl(&hub.ssh_addr, &hub.host_key, &hub.iface));

    // An interface without a key has no public key to give: an error on `interface`.
    let r = tf.run(&["plan", "-no-color"]);
    let out = flat(&r.output());
    assert!(!r.ok(), "{out}");
    assert!(out.contains(&format!("WireGuard interface {} on {} has no key", hub.iface, hub.ssh_addr)), "{out}");
    assert!(out.contains(&format!("interface = \"{}\"", hub.iface)), "points at interface: {out}");
    assert!(out.contains("wg genkey | wg set"), "says what to do: {out}");
    assert_eq!(net.wg(&["show", &hub.iface, "public-key"]), "(none)\n", "reading generated no key");

    // With a key and two peers set by hand on the node.
    give_key(&net, "hub");
    let peers = [wg_pubkey(&net), wg_pubkey(&net)];
    for (i, p) in peers.iter().enumerate() {
        net.wg(&["set", &hub.iface, "peer", p, "allowed-ips", &format!("10.77.{i}.0/24")]);
    }
    tf.apply();
    let got = &tf.outputs()["hub"]["value"];
    let wg = |what: &str| net.wg(&["show", &hub.iface, what]).trim().to_string();
    assert_eq!(got["public_key"], wg("public-key").as_str(), "{got}");
    assert_eq!(got["listen_port"].to_string(), wg("listen-port"), "{got}");
    let mut live_peers: Vec<String> = wg("peers").lines().map(String::from).collect();
    live_peers.sort();
    assert_eq!(live_peers.len(), 2);
    assert_eq!(got["peer_public_keys"], json!(live_peers), "{got}");
    let (ok, ip) = net.exec("hub", &["ip", "-o", "addr", "show", "dev", &hub.iface]);
    assert!(ok, "{ip}");
    let all_addrs: Vec<String> = ip.lines().filter_map(|l| l.split_whitespace().nth(3)).map(String::from).collect();
    // wireguard-go's tun device also has a link-local address the kernel gave it: left out.
    assert!(all_addrs.iter().any(|a| a.starts_with("fe80:")), "{all_addrs:?}");
    let live_addrs: Vec<String> = all_addrs.into_iter().filter(|a| !a.starts_with("fe80:")).collect();
    assert_eq!(live_addrs, vec![format!("{}/24", hub.tunnel_ip)]);
    assert_eq!(got["addresses"], json!(live_addrs), "{got}");
    assert_eq!(got["id"], format!("{}/{}", hub.ssh_addr, hub.iface).as_str());

    // The private key never reached Terraform.
    let private = wg("private-key");
    let state = std::fs::read_to_string(tf.dir().join("terraform.tfstate")).expect("state");
    assert!(!state.contains(&private), "the interface's private key is in the state");

    // Nothing to change while the node stays as it is; a data source is read again on every
    // run, so a peer removed on the node shows at once.
    tf.assert_no_changes();
    net.wg(&["set", &hub.iface, "peer", &peers[0], "remove"]);
    tf.apply();
    assert_eq!(tf.outputs()["hub"]["value"]["peer_public_keys"], json!([peers[1].clone()]));

    // A missing interface and a wrong host key are errors that say which.
    tf.write(
        "main.tf",
        &format!(
            "{HEADER}provider \"edge\" {{\n  ssh = {{ user = \"root\" }}\n}}\n{}",
            interface_hcl(&hub.ssh_addr, &hub.host_key, "wgnope0")
        ),
    );
    let out = flat(&tf.run(&["plan", "-no-color"]).output());
    assert!(out.contains(&format!("No WireGuard interface wgnope0 on {}", hub.ssh_addr)), "{out}");
    let store = net.node("store1");
    tf.write(
        "main.tf",
        &format!(
            "{HEADER}provider \"edge\" {{\n  ssh = {{ user = \"root\" }}\n}}\n{}",
            interface_hcl(&hub.ssh_addr, &store.host_key, &hub.iface)
        ),
    );
    let out = flat(&tf.run(&["plan", "-no-color"]).output());
    assert!(out.contains("SSH host key mismatch") && out.contains("does not match the pinned key"), "{out}");
}

/// The `hcl` block under "## Example: hub and 500 stores" in docs/resources/wireguard_peer.md.
fn documented_hub_and_spoke() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/resources/wireguard_peer.md")).expect("doc");
    let section = doc.split("## Example: hub and 500 stores").nth(1).expect("example section");
    let block = section.split("```hcl\n").nth(1).expect("hcl block");
    block.split("\n```").next().expect("end of block").to_string()
}

/// docs/resources/wireguard_peer.md's hub-and-spoke example, applied as written to a hub and
/// two stores; an override file puts in only what this machine needs (the nodes' addresses
/// and host keys, unique interface names, a config dir per node, each store's way to the hub).
#[test]
fn hub_and_spoke_example_applies_and_replans_empty() {
    let net = Net::up(2);
    let hub = net.node("hub");
    // The hub's image generates its key at boot; the stores' peers generate theirs.
    give_key(&net, "hub");
    let example = documented_hub_and_spoke();
    assert!(example.contains("data.edge_wireguard_interface.hub.public_key"), "{example}");
    assert!(!example.contains("hub_ops"), "no anchor peer any more:\n{example}");
    let mut tf = Tf::new(&format!("{HEADER}{example}\n"));
    tf.env("EDGE_SSH_PRIVATE_KEY", &net.client_key);
    let stores: serde_json::Map<String, Value> = net.nodes[1..]
        .iter()
        .map(|s| (s.name.clone(), json!({"host": s.ssh_addr, "host_key": s.host_key, "tunnel_ip": s.tunnel_ip})))
        .collect();
    tf.write("terraform.tfvars.json", &json!({ "stores": stores }).to_string());
    let per_store = |f: &dyn Fn(usize, &netns::Node) -> String| -> String {
        net.nodes[1..].iter().enumerate().map(|(i, s)| format!("    {} = \"{}\"\n", s.name, f(i, s))).collect()
    };
    tf.write(
        "test.tf",
        &format!(
            "locals {{\n  test = {{\n    iface = {{\n{}    }}\n    conf_dir = {{\n{}    }}\n    hub_endpoint = {{\n{}    }}\n  }}\n}}\n",
            per_store(&|_, s| s.iface.clone()),
            per_store(&|_, s| s.conf_dir.display().to_string()),
            per_store(&|i, _| format!("{}:{}", net.hub_link_addrs[i], netns::WG_PORT)),
        ),
    );
    tf.write(
        "test_override.tf",
        &format!(
            r#"
locals {{
  hub = {{ host = "{host}", host_key = "{key}", endpoint = "unused: each store has its own link to the hub" }}
}}
data "edge_wireguard_interface" "hub" {{
  interface = "{iface}"
}}
resource "edge_wireguard_peer" "store_to_hub" {{
  interface  = local.test.iface[each.key]
  config_dir = local.test.conf_dir[each.key]
  endpoint   = local.test.hub_endpoint[each.key]
}}
resource "edge_wireguard_peer" "hub_to_store" {{
  interface  = "{iface}"
  config_dir = "{dir}"
}}
"#,
            host = hub.ssh_addr,
            key = hub.host_key,
            iface = hub.iface,
            dir = hub.conf_dir.display(),
        ),
    );
    tf.init();
    tf.apply();

    // Both ends have each other's keys, as wg shows them.
    let key_of = |n: &str| net.wg(&["show", &net.node(n).iface, "public-key"]).trim().to_string();
    let hub_key = key_of("hub");
    for s in ["store1", "store2"] {
        assert_eq!(net.peers(s), vec![hub_key.clone()], "{s} has the hub as its peer");
        assert!(net.peers("hub").contains(&key_of(s)), "the hub has {s}");
    }
    assert_eq!(net.peers("hub").len(), 2);
    // The keys are right both ways: each store's keepalive makes a real handshake.
    for s in ["store1", "store2"] {
        let k = key_of(s);
        poll(&format!("handshake hub ↔ {s}"), Duration::from_secs(40), || {
            (net.handshake("hub", &k) > 0).then_some(())
        });
    }
    // The handshakes changed `dark_stores` (an output built on refreshed values): record them.
    let r = tf.run(&["apply", "-refresh-only", "-auto-approve", "-no-color"]);
    assert!(r.ok(), "{}", r.output());
    assert_eq!(tf.outputs()["dark_stores"]["value"], json!([]), "every store shook hands");
    // The second plan: the hub's key read again, every peer as applied — nothing to do.
    tf.assert_no_changes();
    let out = tf.apply().output();
    assert!(out.contains("0 added, 0 changed, 0 destroyed"), "{out}");
    tf.destroy();
    assert!(net.peers("hub").is_empty(), "{:?}", net.peers("hub"));
}

// ---------------------------------------------------------------------------------------------
// edge_proxmox_cluster

const CLUSTER_NET: &str = "187";

fn cluster_tf(lab: &Lab) -> Tf {
    let mut tf = Tf::new(&format!(
        r#"{HEADER}provider "edge" {{}}
data "edge_proxmox_cluster" "this" {{}}
output "cluster" {{
  value = data.edge_proxmox_cluster.this
}}
"#
    ));
    for (k, v) in lab.provider_env(0) {
        tf.env(&k, &v);
    }
    tf.init();
    tf
}

fn read_cluster(tf: &Tf) -> Value {
    tf.apply();
    tf.outputs()["cluster"]["value"].clone()
}

fn ceph(lab: &Lab, args: &[&str]) -> String {
    let conf = lab.json["ceph"]["conf"].as_str().expect("lab.json ceph.conf (--ceph)").to_string();
    run(Command::new("ceph").args(["-c", &conf]).args(args))
}

/// SHA-256 fingerprint (`AB:CD:…`) of the certificate a node's API presents in a TLS handshake.
fn presented_fingerprint(endpoint: &str) -> String {
    let hostport = endpoint.trim_start_matches("https://").trim_end_matches('/');
    let pem = run(Command::new("sh").args([
        "-c",
        "openssl s_client -connect \"$1\" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        "fp",
        hostport,
    ]));
    pem.rsplit('=').next().unwrap_or_default().trim().to_uppercase()
}

#[test]
fn proxmox_cluster_as_pve_tls_and_ceph_report_it() {
    let lab = Lab::up(&["--net", CLUSTER_NET, "--ceph"]);
    let tf = cluster_tf(&lab);
    let nodes: Vec<Value> = lab.store(0)["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 3);

    // A node in no cluster, without Ceph yet.
    let c = read_cluster(&tf);
    assert_eq!(c["clustered"], false, "{c}");
    assert_eq!(c["name"], Value::Null, "{c}");
    assert_eq!(c["ceph_fsid"], Value::Null, "{c}");
    let local = c["node"].as_str().expect("node").to_string();
    let members = c["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 1, "{c}");
    let lab_node = |name: &str| nodes.iter().find(|n| n["name"] == name).cloned().expect("lab node");
    assert_eq!(members[0]["name"], local.as_str());
    assert_eq!(
        members[0]["tls_fingerprint"],
        presented_fingerprint(lab_node(&local)["endpoint"].as_str().unwrap_or_default()).as_str(),
        "{c}"
    );

    // The cluster and Ceph, formed through PVE's API as root.
    lab.form_ceph_cluster_by_hand();
    let healthy = || {
        let h: Value = serde_json::from_str(&ceph(&lab, &["health", "-f", "json"])).ok()?;
        (h["status"] == "HEALTH_OK").then_some(())
    };
    poll("Ceph HEALTH_OK", Duration::from_secs(120), healthy);

    let c = read_cluster(&tf);
    assert_eq!(
        (c["clustered"].clone(), c["name"].clone(), c["quorate"].clone()),
        (json!(true), json!("edge"), json!(true)),
        "{c}"
    );
    assert_eq!(c["id"], "edge");
    let members = c["members"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["pve1", "pve2", "pve3"], "{c}");
    for m in &members {
        let n = lab_node(m["name"].as_str().unwrap_or_default());
        assert_eq!(m["address"], n["address"], "{m}");
        assert_eq!(m["online"], true, "{m}");
        // The fingerprint is the one each node's API presents in a real TLS handshake.
        let presented = presented_fingerprint(n["endpoint"].as_str().unwrap_or_default());
        assert_eq!(m["tls_fingerprint"], presented.as_str(), "{m}");
    }
    assert_eq!(members.iter().filter(|m| m["local"] == true).count(), 1, "{c}");
    // Ceph's fsid as PVE reports it (asked with curl as root). The lab's PVE models
    // `pveceph init` making a new fsid; its real Ceph daemons were made with their own, so the
    // fsid is the one value here not compared with `ceph fsid`.
    let pve_ceph = lab
        .try_pve_root(0, "GET", &format!("/nodes/{}/ceph/status", c["node"].as_str().unwrap_or("")), &[])
        .expect("ceph status");
    assert_eq!(c["ceph_fsid"], pve_ceph["data"]["fsid"], "{c}");
    assert!(c["ceph_fsid"].as_str().is_some_and(|f| f.len() == 36), "{c}");
    // Health as real Ceph has it.
    let real: Value = serde_json::from_str(&ceph(&lab, &["health", "-f", "json"])).expect("health JSON");
    assert_eq!(c["ceph_health"], real["status"], "{c}");
    assert_eq!(c["ceph_health"], "HEALTH_OK", "{c}");
    assert_eq!(c["ceph_checks"], json!({}), "{c}");
    tf.assert_no_changes();

    // A raised check shows with Ceph's own words; the plan still has nothing to change.
    ceph(&lab, &["osd", "set", "noscrub"]);
    let c = read_cluster(&tf);
    let real: Value = serde_json::from_str(&ceph(&lab, &["health", "-f", "json"])).expect("health JSON");
    assert_eq!(c["ceph_health"], real["status"], "{c}");
    assert_eq!(c["ceph_health"], "HEALTH_WARN");
    assert_eq!(c["ceph_checks"]["OSDMAP_FLAGS"], real["checks"]["OSDMAP_FLAGS"]["summary"]["message"], "{c}");
    ceph(&lab, &["osd", "unset", "noscrub"]);

    // A member powered off: offline, its fingerprint still known; quorum kept with 2 of 3.
    let off = members.iter().find(|m| m["local"] != true).and_then(|m| m["name"].as_str()).expect("other").to_string();
    lab.admin("POST", "/lab/power", Some(&json!({"node": off, "on": false})));
    let c = read_cluster(&tf);
    let m = c["members"].as_array().into_iter().flatten().find(|m| m["name"] == off.as_str()).cloned().expect("member");
    assert_eq!(m["online"], false, "{c}");
    assert!(m["tls_fingerprint"].as_str().is_some_and(|f| f.len() == 95), "{m}");
    assert_eq!(c["quorate"], true, "{c}");
    lab.admin("POST", "/lab/power", Some(&json!({"node": off, "on": true})));
}

// ---------------------------------------------------------------------------------------------
// edge_image_manifest

const SYSTEM: &str = "/nix/store/8bzm6cq9q3wq0j1d8yq0f2vq3wf7b0a1-nixos-system-edge-26.05";

/// Two image files and a manifest of both, signed with `key`.
fn make_manifest(dir: &Path, key: &Path, version: &str) -> (PathBuf, Vec<PathBuf>) {
    let files = vec![dir.join("edge.iso"), dir.join("edge.efi")];
    std::fs::write(&files[0], format!("edge node image {version}\n")).expect("iso");
    std::fs::write(&files[1], b"an EFI stub\n").expect("efi");
    let manifest = dir.join("manifest.json");
    let mut cmd = Command::new(edge_image_bin());
    cmd.arg("manifest").args(["--system", SYSTEM]);
    for f in &files {
        cmd.arg("--file").arg(format!("{}={}", f.file_name().and_then(|n| n.to_str()).unwrap_or(""), f.display()));
    }
    run(cmd.args(["--version", version, "--no-closure"]).arg("--key").arg(key).arg("--out").arg(&manifest));
    (manifest, files)
}

fn manifest_hcl(manifest: &Path) -> String {
    format!(
        r#"{HEADER}provider "edge" {{}}
data "edge_image_manifest" "node" {{
  manifest = "{}"
}}
# Planned only once the manifest is verified.
resource "terraform_data" "uses_image" {{
  input = data.edge_image_manifest.node.version
}}
output "image" {{
  value = data.edge_image_manifest.node
}}
"#,
        manifest.display()
    )
}

#[test]
fn image_manifest_verified_at_plan_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(dir.path(), "edge-test-1");
    let (rogue, _) = image_keygen(dir.path(), "rogue-1");
    let (manifest, files) = make_manifest(dir.path(), &secret, "2026.11.1");
    let mut tf = Tf::new(&manifest_hcl(&manifest));
    tf.env("EDGE_TRUSTED_IMAGE_KEYS", &public);
    tf.init();
    tf.apply();
    let got = tf.outputs()["image"]["value"].clone();
    assert_eq!(got["version"], "2026.11.1", "{got}");
    assert_eq!(got["system"], SYSTEM);
    assert_eq!(got["signed_by"], json!(["edge-test-1"]));
    let sha = |p: &Path| run(Command::new("sha256sum").arg(p)).split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(got["manifest_sha256"], sha(&manifest).as_str(), "{got}");
    let listed = got["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "{got}");
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let f = listed.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name} not in {got}"));
        // Hashes as sha256sum and Nix compute them from the files themselves.
        assert_eq!(f["sha256"], sha(path).as_str(), "{f}");
        let nar = run(Command::new("nix-hash").args(["--type", "sha256", "--base32"]).arg(path));
        assert_eq!(f["nar_hash"], format!("sha256:{nar}").as_str(), "{f}");
        assert_eq!(f["size"], std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    }
    tf.assert_no_changes();

    // Tampered (re-versioned after signing): refused on `manifest`, before anything is planned.
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let tampered = text.replacen("\"version\": \"2026.11.1\"", "\"version\": \"2026.12.1\"", 1);
    assert_ne!(tampered, text, "the manifest holds its version");
    std::fs::write(&manifest, tampered).expect("tamper");
    let r = tf.run(&["plan", "-no-color"]);
    let out = flat(&r.output());
    assert!(!r.ok(), "{out}");
    assert!(out.contains("Image manifest refused") && out.contains("(signature valid)"), "{out}");
    assert!(out.contains(&format!("manifest = \"{}\"", manifest.display())), "points at manifest: {out}");
    assert!(!out.contains("terraform_data.uses_image will be"), "nothing planned: {out}");

    // Signed by an untrusted key: refused, naming the signer; and a fresh state stays empty.
    let (manifest, _) = make_manifest(dir.path(), &rogue, "2026.11.1");
    let mut fresh = Tf::new(&manifest_hcl(&manifest));
    fresh.env("EDGE_TRUSTED_IMAGE_KEYS", &public);
    fresh.init();
    let out = flat(&fresh.apply_fails());
    assert!(out.contains("(signed by a trusted key)") && out.contains("rogue-1"), "{out}");
    assert!(fresh.try_resource("terraform_data.uses_image").is_none(), "nothing was created");

    // No trusted keys at all: says where to set them.
    let mut none = Tf::new(&manifest_hcl(&manifest));
    none.env("EDGE_TRUSTED_IMAGE_KEYS", "");
    none.init();
    let out = flat(&none.run(&["plan", "-no-color"]).output());
    assert!(out.contains("no trusted image keys") && out.contains("trusted_image_keys"), "{out}");
}

/// Terraform 1.0.3 reads data sources as well (plugin protocol 6).
#[test]
fn image_manifest_with_terraform_1_0_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, public) = image_keygen(dir.path(), "edge-test-1");
    let (manifest, files) = make_manifest(dir.path(), &secret, "7");
    let hcl = format!(
        r#"{HEADER}provider "edge" {{}}
data "edge_image_manifest" "node" {{
  manifest = "{}"
}}
output "version" {{
  value = data.edge_image_manifest.node.version
}}
output "iso_sha256" {{
  value = [for f in data.edge_image_manifest.node.files : f.sha256 if f.name == "edge.iso"][0]
}}
"#,
        manifest.display()
    );
    let mut tf = Tf::with_terraform(&hcl, terraform_legacy_bin());
    tf.env("EDGE_TRUSTED_IMAGE_KEYS", &public);
    tf.init();
    tf.apply();
    let out = tf.outputs();
    assert_eq!(out["version"]["value"], "7", "{out}");
    let sha = run(Command::new("sha256sum").arg(&files[0]));
    assert_eq!(out["iso_sha256"]["value"], sha.split_whitespace().next().unwrap_or(""), "{out}");
    tf.assert_no_changes();
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).expect("m").replacen("\"7\"", "\"8\"", 1))
        .expect("tamper");
    let out = flat(&tf.run(&["plan", "-no-color"]).output());
    assert!(out.contains("Image manifest refused") && out.contains("(signature valid)"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Bad input

const WG: &str = "edge_wireguard_interface";
const CLUSTER: &str = "edge_proxmox_cluster";
const IMAGE: &str = "edge_image_manifest";
const HK: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH";

fn cases() -> Vec<(String, &'static str, &'static str, &'static str)> {
    let ssh =
        |extra: &str, host: &str, key: &str| format!("ssh = {{\nhost = \"{host}\"\nhost_key = \"{key}\"\n{extra}}}");
    let wg = |ssh: String, iface: &str| format!("{ssh}\ninterface = \"{iface}\"");
    let mut v: Vec<(String, &str, &str, &str)> = vec![
        (
            wg(ssh("", "10.0.0.1; reboot", HK), "wg0"),
            WG,
            "host = \"10.0.0.1; reboot\"",
            "neither an IP address nor a host name",
        ),
        (
            wg(ssh("", "10.0.0.1", "ssh-ed25519 AAAA"), "wg0"),
            WG,
            "host_key = \"ssh-ed25519 AAAA\"",
            "expected an OpenSSH public key line",
        ),
        (wg(ssh("port = 0\n", "10.0.0.1", HK), "wg0"), WG, "port = 0", "outside 1–65535"),
        (wg(ssh("port = 70000\n", "10.0.0.1", HK), "wg0"), WG, "port = 70000", "outside 1–65535"),
        (wg(ssh("user = \"root; id\"\n", "10.0.0.1", HK), "wg0"), WG, "user = \"root; id\"", "is not a user name"),
        (wg(ssh("", "10.0.0.1", HK), "all"), WG, "interface = \"all\"", "is not an interface name"),
        (
            wg(ssh("", "10.0.0.1", HK), "a-very-long-interface"),
            WG,
            "interface = \"a-very-long-interface\"",
            "1–15 letters",
        ),
        (wg(ssh("", "10.0.0.1", HK), "wg0 $(id)"), WG, "interface = \"wg0 $(id)\"", "is not an interface name"),
        (
            format!("{}\ntimeouts {{\nread = \"a while\"\n}}", wg(ssh("", "10.0.0.1", HK), "wg0")),
            WG,
            "read = \"a while\"",
            "not a duration",
        ),
    ];
    v.extend([
        ("pve = {\nendpoint = \"http://10.0.0.1:8006\"\n}".to_string(), CLUSTER, "endpoint = \"http://10.0.0.1:8006\"", "must start with https://"),
        ("pve = {\nendpoint = \"https://\"\n}".to_string(), CLUSTER, "endpoint = \"https://\"", "has no host"),
        ("pve = {\nca_pem = \"AB:CD\"\n}".to_string(), CLUSTER, "ca_pem = \"AB:CD\"", "must be a PEM certificate"),
        ("manifest = \"\"".to_string(), IMAGE, "manifest = \"\"", "give a local path or an http(s) URL"),
        ("manifest = \"ftp://images.example/m.json\"".to_string(), IMAGE, "manifest = \"ftp://images.example/m.json\"", "scheme is not supported"),
        ("manifest = \"https:///m.json\"".to_string(), IMAGE, "manifest = \"https:///m.json\"", "has no host"),
        (
            "manifest = \"m.json\"\ntrusted_cosign_keys = [\"-----BEGIN PUBLIC KEY-----\\nnope\\n-----END PUBLIC KEY-----\"]".to_string(),
            IMAGE,
            "trusted_cosign_keys",
            "is not a Cosign public key",
        ),
        (
            "manifest = \"m.json\"\nmanifest_cosign_signature = \"m.json.sig\"".to_string(),
            IMAGE,
            "manifest_cosign_signature = \"m.json.sig\"",
            "set trusted_cosign_keys",
        ),
    ]);
    v
}

#[test]
fn bad_input_names_its_attribute() {
    let cases = cases();
    assert!(cases.len() >= 12, "at least 12 cases");
    let mut hcl = format!("{HEADER}provider \"edge\" {{}}\n");
    for (i, (body, ty, _, _)) in cases.iter().enumerate() {
        hcl.push_str(&format!("\ndata \"{ty}\" \"c{i}\" {{\n{body}\n}}\n"));
    }
    let tf = Tf::new(&hcl);
    tf.init();
    let r = tf.run(&["validate", "-json", "-no-color"]);
    let out: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("validate -json: {e}\n{}", r.output()));
    let diags = out["diagnostics"].as_array().cloned().unwrap_or_default();
    let mut failures = Vec::new();
    for (i, (body, ty, line, says)) in cases.iter().enumerate() {
        let ctx = format!("\"c{i}\"");
        let mine: Vec<&Value> =
            diags.iter().filter(|d| d["snippet"]["context"].as_str().is_some_and(|c| c.ends_with(&ctx))).collect();
        let hit = mine.iter().any(|d| {
            let text = format!("{} {}", d["summary"].as_str().unwrap_or(""), d["detail"].as_str().unwrap_or(""));
            d["severity"] == "error"
                && d["snippet"]["code"].as_str().is_some_and(|code| code.contains(line))
                && text.contains(says)
        });
        if !hit {
            failures.push(format!("case {i} ({ty} {body:?}): want line ~{line:?} saying {says:?}, got {mine:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
