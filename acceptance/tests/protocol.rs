//! The plugin boundary as Terraform sees it: handshake, AutoMTLS, logging, debug mode, and
//! process hygiene. Evidence comes from Terraform's own logs and the process table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use edge_acceptance::{provider_bin, Tf};

const HCL: &str = r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
resource "edge_wireguard_key" "k" {}
"#;

#[test]
fn run_by_hand_explains_and_fails() {
    let out = Command::new(provider_bin())
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .stdin(Stdio::null())
        .output()
        .expect("run provider");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("This binary is a plugin for Terraform"), "{err}");
}

#[test]
fn old_protocol_versions_get_a_clear_error() {
    let out = Command::new(provider_bin())
        .env("TF_PLUGIN_MAGIC_COOKIE", "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2")
        .env("PLUGIN_PROTOCOL_VERSIONS", "4,5")
        .stdin(Stdio::null())
        .output()
        .expect("run provider");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("speaks only protocol 6"));
}

#[test]
fn terraform_handshake_uses_automtls_and_leaves_no_process() {
    let mut tf = Tf::new(HCL);
    tf.init();
    tf.env("TF_LOG", "trace");
    let r = tf.must(&["apply", "-auto-approve", "-no-color"]);
    let log = r.stderr;
    assert!(log.contains("configuring client automatic mTLS"), "Terraform turned AutoMTLS on");
    assert!(log.contains("using plugin: version=6"), "protocol 6 negotiated");
    assert!(
        log.lines().any(|l| l.contains("provider.terraform-provider-edge")
            && l.contains("serving")
            && l.contains("mtls=true")),
        "our own log line, parsed by go-plugin as hclog JSON, says mTLS is on"
    );
    assert!(!log.contains("plugin failed to exit gracefully"), "GRPCController.Shutdown stops us in time");
    // Stray stdout from a plugin shows up in Terraform's log as unparsed plugin output.
    assert!(
        !log.contains("plugin: unknown stdout") && !log.contains("[DEBUG] plugin.terraform-provider-edge"),
        "{log}"
    );

    let pids = started_plugin_pids(&log);
    assert!(!pids.is_empty(), "Terraform logged the provider's pid");
    for pid in pids {
        assert!(!is_provider_running(pid), "provider pid {pid} outlived Terraform");
    }
    tf.env("TF_LOG", "");
    tf.destroy();
}

#[test]
fn debug_mode_prints_reattach_and_serves_terraform() {
    let mut child = Command::new(provider_bin())
        .arg("--debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start provider --debug");
    let stdout = child.stdout.take().expect("stdout");
    let mut reattach = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read line");
        if let Some(v) = line.trim().strip_prefix("TF_REATTACH_PROVIDERS='") {
            reattach = v.trim_end_matches('\'').to_string();
            break;
        }
    }
    assert!(reattach.contains("\"ProtocolVersion\":6"), "{reattach}");
    let mut tf = Tf::new(HCL);
    tf.env("TF_REATTACH_PROVIDERS", &reattach);
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    tf.destroy();
    let _ = child.kill();
    let _ = child.wait();
}

/// PIDs from Terraform's "plugin started: path=… pid=N" lines.
fn started_plugin_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("plugin started") && l.contains("terraform-provider-edge"))
        .filter_map(|l| l.rsplit("pid=").next()?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Whether `pid` is (still) a live terraform-provider-edge process.
fn is_provider_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.display().to_string()).unwrap_or_default();
    !zombie && exe.contains("terraform-provider-edge")
}

#[test]
fn provider_config_unknown_at_plan_time_is_fine() {
    // The PVE endpoint comes from another resource: unknown while planning, known at apply.
    let tf = Tf::new(
        r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
resource "terraform_data" "site" {
  input = "10.1.0.11"
}
provider "edge" {
  pve = { endpoint = "https://${terraform_data.site.output}:8006" }
}
resource "edge_wireguard_key" "k" {}
"#,
    );
    tf.init();
    let plan = tf.run(&["plan", "-no-color"]);
    assert!(plan.ok(), "{}", plan.output());
    tf.apply();
    tf.assert_no_changes();
    tf.destroy();
}

#[test]
fn bad_provider_config_names_the_attribute() {
    let tf = Tf::new(
        r#"
terraform {
  required_providers { edge = { source = "edgeform/edge" } }
}
provider "edge" {
  pve = { endpoint = "http://10.1.0.11:8006", api_token = "root@pam!t:Zq7SecretValue" }
  trusted_image_keys = ["no-colon-here"]
}
resource "edge_wireguard_key" "k" {}
"#,
    );
    tf.init();
    let r = tf.run(&["validate", "-no-color"]);
    assert!(!r.ok());
    let out = r.output();
    for needle in ["Invalid endpoint", "must start with https://", "Invalid API token", "Invalid image key"] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // Our diagnostics never repeat a secret (Terraform itself quotes the source line). The
    // value is one no message could contain by chance (help text may say "secret").
    assert!(!out.lines().filter(|l| !l.contains("api_token =")).any(|l| l.contains("Zq7SecretValue")), "{out}");
}
