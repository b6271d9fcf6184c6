//! Bad input for the actions, table-driven like `bad_input.rs`: each case is one action block
//! with one mistake in its `config`. `terraform validate -json` (Terraform 1.15) must report an
//! error in that block whose source snippet is the offending attribute's line and whose text
//! says what to do (the shared matcher: support/bad_input.rs). No lab needed: validation is
//! offline.

#[path = "support/bad_input.rs"]
mod support;

use support::{c, check, Case, Kind};

const VERIFY: &str = "edge_pbs_verify_now";
const REBOOT: &str = "edge_node_reboot";

const CASES: &[Case] = &[
    c(VERIFY, "job = \"v\"", "job = \"v\"", "3 to 32 characters"),
    c(VERIFY, "job = \"has space\"", "job = \"has space\"", "use letters, digits"),
    c(VERIFY, "job = \"-verify\"", "job = \"-verify\"", "starting with a letter, digit or '_'"),
    c(VERIFY, "job = \"verify-now\"\ntimeout = \"soon\"", "timeout = \"soon\"", "e.g. \"30s\", \"10m\""),
    c(VERIFY, "job = \"verify-now\"\ntimeout = \"0s\"", "timeout = \"0s\"", "longer than zero"),
    c(REBOOT, "node = \"pve_2\"", "node = \"pve_2\"", "not a PVE node name"),
    c(REBOOT, "node = \"-pve2\"", "node = \"-pve2\"", "e.g. \"pve1\""),
    c(REBOOT, "node = \"pve2\"\ntimeout = \"10 minutes\"", "timeout = \"10 minutes\"", "use a number with a unit"),
    c(REBOOT, "node = \"pve2\"\ntimeout = \"0m\"", "timeout = \"0m\"", "longer than zero"),
    c(
        REBOOT,
        "node = \"pve2\"\npve = { endpoint = \"http://10.1.0.11:8006\" }",
        "endpoint = \"http://10.1.0.11:8006\"",
        "must start with https://",
    ),
];

/// A case that goes missing fails the count.
const COUNT: usize = 10;

#[test]
fn every_bad_action_input_names_its_attribute() {
    assert_eq!(CASES.len(), COUNT, "update COUNT with the table");
    check(Kind::Action, CASES, "");
}
