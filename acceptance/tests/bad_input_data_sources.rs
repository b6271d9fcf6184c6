//! Bad input for the data sources, table-driven like `bad_input.rs` (one `data` block per case,
//! the shared matcher in support/bad_input.rs). These add to the cases `data_sources.rs` keeps
//! next to the data sources' own tests: other attributes, and other mistakes in the same ones.

#[path = "support/bad_input.rs"]
mod support;

use support::{c, check, Case, Kind};

const WG: &str = "edge_wireguard_interface";
const CLUSTER: &str = "edge_proxmox_cluster";
const IMAGE: &str = "edge_image_manifest";

/// An interface that validates, with `$ssh` added to its `ssh` attribute and `$extra` to the body.
macro_rules! wg {
    ($ssh:literal, $extra:literal) => {
        concat!(
            "ssh = {\nhost = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n",
            $ssh,
            "}\n",
            $extra
        )
    };
}

/// How many cases each data source has: a case that goes missing fails the count.
const COUNTS: &[(&str, usize)] = &[(WG, 6), (CLUSTER, 5), (IMAGE, 6)];

const CASES: &[Case] = &[
    // edge_wireguard_interface (the peer's ssh/interface checks, plus its own timeouts)
    c(WG, wg!("private_key = \"~/.ssh/id_ed25519\"\n", "interface = \"wg0\""), "private_key", "an unencrypted OpenSSH ed25519 or ECDSA key is expected"),
    c(WG, wg!("port = 22.5\n", "interface = \"wg0\""), "port = 22.5", "use a whole number"),
    c(WG, "ssh = {\nhost = \"\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"\n}\ninterface = \"wg0\"", "host = \"\"", "neither an IP address nor a host name"),
    c(WG, wg!("", "interface = \"wg0\\nwg1\""), "interface = \"wg0\\nwg1\"", "1–15 letters, digits"),
    c(WG, wg!("", "interface = \"wg0\"\ntimeouts {\nread = \"0\"\n}"), "read = \"0\"", "use a number with a unit"),
    c(WG, wg!("", ""), "data \"edge_wireguard_interface\"", "\"interface\" is required"),
    // edge_proxmox_cluster
    c(CLUSTER, "pve = {\nendpoint = \"10.1.0.11:8006\"\n}", "endpoint = \"10.1.0.11:8006\"", "must start with https://"),
    c(CLUSTER, "pve = {\nendpoint = \"https://pve 1:8006\"\n}", "endpoint = \"https://pve 1:8006\"", "use e.g. \"https://10.1.0.11:8006\""),
    c(CLUSTER, "pve = {\nca_pem = \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\n}", "ca_pem", "must be a PEM certificate (-----BEGIN CERTIFICATE-----)"),
    c(CLUSTER, "pve = \"https://10.1.0.11:8006\"", "pve = \"https://10.1.0.11:8006\"", "object required"),
    c(CLUSTER, "pve = {\nendpoint = \"\"\n}", "endpoint = \"\"", "must start with https://"),
    // edge_image_manifest
    c(IMAGE, "manifest = \"gs://bucket/manifest.json\"", "manifest = \"gs://bucket/manifest.json\"", "use a local path or an http(s) URL"),
    c(IMAGE, "manifest = \"   \"", "manifest = \"   \"", "give a local path or an http(s) URL"),
    c(IMAGE, "manifest = \"m.json\"\ntrusted_cosign_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH\"]", "trusted_cosign_keys", "Expected a PEM `-----BEGIN PUBLIC KEY-----` block"),
    c(IMAGE, "manifest = \"m.json\"\ntrusted_cosign_keys = []\nmanifest_cosign_signature = \"m.json.sig\"", "manifest_cosign_signature", "set trusted_cosign_keys, or remove manifest_cosign_signature"),
    c(IMAGE, "manifest = \"m.json\"\ntrusted_cosign_keys = \"cosign.pub\"", "trusted_cosign_keys = \"cosign.pub\"", "list of string required"),
    c(IMAGE, "trusted_cosign_keys = []", "data \"edge_image_manifest\"", "\"manifest\" is required"),
];

#[test]
fn every_bad_data_source_input_names_its_attribute() {
    for (ty, want) in COUNTS {
        let n = CASES.iter().filter(|c| c.ty == *ty).count();
        assert_eq!(n, *want, "{ty}: {n} cases, the table says {want} (update COUNTS with the table)");
    }
    assert_eq!(CASES.len(), COUNTS.iter().map(|(_, n)| n).sum::<usize>(), "a case of a type COUNTS does not list");
    check(Kind::Data, CASES, "");
}
