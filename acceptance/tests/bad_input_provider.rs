//! Bad input in the provider block, table-driven like `bad_input.rs`: each case is one aliased
//! `provider "edge" { alias = "c<i>" … }` with one mistake, used by one resource (Terraform
//! validates only the provider configurations something uses: see the test below). The
//! diagnostic's snippet does not name the alias, so the shared matcher (support/bad_input.rs)
//! places each diagnostic by the case's line range.

#[path = "support/bad_input.rs"]
mod support;

use support::{c, check, validate, within, Case, Kind, HEADER};

const P: &str = "edge";

/// A case that goes missing fails the count.
const COUNT: usize = 17;

const CASES: &[Case] = &[
    c(
        P,
        "pve = {\nendpoint = \"http://10.1.0.11:8006\"\n}",
        "endpoint = \"http://10.1.0.11:8006\"",
        "must start with https://",
    ),
    c(P, "pbs = {\nendpoint = \"https://\"\n}", "endpoint = \"https://\"", "use e.g. \"https://10.1.0.11:8006\""),
    c(P, "pve = {\napi_token = \"root@pam:tokensecret\"\n}", "api_token", "expected USER@REALM!TOKENID=SECRET"),
    c(P, "pbs = {\napi_token = \"root@pam!backup=tokensecret\"\n}", "api_token", "expected USER@REALM!TOKENID:SECRET"),
    c(P, "pve = {\ntls_fingerprint = \"AB:CD\"\n}", "tls_fingerprint = \"AB:CD\"", "32 hex pairs separated by colons"),
    c(
        P,
        concat!(
            "pbs = {\ntls_fingerprint = \"",
            "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
            "\"\ninsecure = true\n}"
        ),
        "insecure = true",
        "set one or the other",
    ),
    c(P, "pve = {\ninsecure = \"yes please\"\n}", "insecure = \"yes please\"", "a bool is required"),
    c(
        P,
        "pve = {\nca_pem = \"pve-root-ca.pem\"\n}",
        "ca_pem = \"pve-root-ca.pem\"",
        "must be a PEM certificate (-----BEGIN CERTIFICATE-----)",
    ),
    c(P, "trusted_image_keys = [\"edge-ci-1\"]", "trusted_image_keys = [\"edge-ci-1\"]", "expected NAME:BASE64"),
    c(
        P,
        "trusted_image_keys = [\":AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVW=\"]",
        "trusted_image_keys",
        "the key name is empty; expected NAME:BASE64",
    ),
    c(
        P,
        "trusted_image_keys = [\"edge-ci-1:AAAA\"]",
        "trusted_image_keys = [\"edge-ci-1:AAAA\"]",
        "has 32 bytes, this one 3",
    ),
    c(P, "ssh = {\nport = 70000\n}", "port = 70000", "use 1–65535"),
    c(P, "ssh = {\nport = 22.5\n}", "port = 22.5", "use a whole number"),
    c(
        P,
        "ssh = {\nprivate_key = \"id_ed25519\"\n}",
        "private_key",
        "an unencrypted OpenSSH ed25519 or ECDSA key is expected",
    ),
    c(P, "bootstrap = {\nlisten = \"8090\"\n}", "listen = \"8090\"", "is not ADDR:PORT: use e.g. \"10.9.0.5:8090\""),
    c(P, "bootstrap = {\nurl = \"10.9.0.5:8090\"\n}", "url = \"10.9.0.5:8090\"", "must start with http:// or https://"),
    c(
        P,
        "bootstrap = {\nurl = \"http:///seed\"\n}",
        "url = \"http:///seed\"",
        "has no host: use e.g. \"http://10.9.0.5:8090\"",
    ),
];

#[test]
fn every_bad_provider_input_names_its_attribute() {
    assert_eq!(CASES.len(), COUNT, "update COUNT with the table");
    check(Kind::Provider, CASES, "");
}

/// Why every case has a resource: an aliased provider block that nothing uses is not validated
/// at all (Terraform asks the provider only about configurations in the graph), so without the
/// resource the table would pass on an empty answer. The same mistake in a used alias is the
/// control. If this ever fails, Terraform started validating unused aliases and the resources
/// can go.
#[test]
fn unused_aliases_are_not_validated() {
    let bad = "pve = {\nendpoint = \"http://10.1.0.11:8006\"\n}";
    let hcl = format!(
        "{HEADER}\nprovider \"edge\" {{\nalias = \"unused\"\n{bad}\n}}\n\nprovider \"edge\" {{\nalias = \"used\"\n{bad}\n}}\n\
         resource \"edge_wireguard_key\" \"k\" {{\n  provider = edge.used\n}}\n"
    );
    let diags = validate(&hcl);
    let at = |alias: &str| {
        let line = format!("alias = \"{alias}\"");
        let start = hcl.lines().position(|l| l == line).expect("alias line");
        within(&diags, &(start..start + 5)).len()
    };
    assert_eq!(at("used"), 1, "the used alias's mistake is reported: {diags:#?}");
    assert_eq!(at("unused"), 0, "the unused alias is not validated: {diags:#?}");
}
