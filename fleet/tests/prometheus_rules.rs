//! The Prometheus side of the fleet's metrics, judged by Prometheus's own `promtool` (Debian's
//! `prometheus` package; `scripts/install-deps.sh`): a missing `promtool` fails these tests.
//!
//! - `deploy/prometheus/edge-fleet-rules.yml` passes `promtool check rules`, and its unit tests
//!   (`deploy/prometheus/tests/*.yml`) pass `promtool test rules`;
//! - those unit tests can fail: with every `for:` set to `0s` each alert fires on its one-off
//!   spike, and `promtool test rules` must then report every alert of the file;
//! - the rules name only metrics the hub or the agent expose;
//! - the hub's and the agent's exposition, with a fleet's worth of facts in it, passes
//!   `promtool check metrics` (its parser and its naming lints: units, `_total`).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{agent_exposition, exposition_names, hub_exposition, metric_names};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// `promtool ARGS` in `dir` with `stdin`: success and everything it said.
fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e} (install Debian's prometheus: scripts/install-deps.sh)"));
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).expect("write to promtool");
    }
    let o = child.wait_with_output().expect("promtool");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// The unit test files, relative to `deploy/prometheus`; never none.
fn rule_tests(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.join("tests"))
        .expect("deploy/prometheus/tests")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(|n| format!("tests/{n}")))
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule unit tests in {}", dir.join("tests").display());
    files
}

/// The rules file without its comments (promtool has judged its YAML already).
fn rules_text() -> String {
    std::fs::read_to_string(deploy().join("edge-fleet-rules.yml"))
        .expect("rules")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn alert_names() -> BTreeSet<String> {
    let names: BTreeSet<String> = rules_text()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert!(!names.is_empty(), "no alerts in edge-fleet-rules.yml");
    names
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy();
    let (ok, out) = promtool(&dir, &["check", "rules", "edge-fleet-rules.yml"], None);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let mut args = vec!["test", "rules"];
    let tests = rule_tests(&dir);
    args.extend(tests.iter().map(String::as_str));
    let (ok, out) = promtool(&dir, &args, None);
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn without_their_for_durations_every_alert_fails_its_spike_test() {
    // The same rules and tests in a scratch directory, every `for:` rewritten to 0s.
    let scratch = tempfile::tempdir().expect("tmp");
    let rules = std::fs::read_to_string(deploy().join("edge-fleet-rules.yml")).expect("rules");
    let mut rewritten = 0;
    let zero: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => {
                rewritten += 1;
                format!("{}for: 0s\n", &l[..l.len() - l.trim_start().len()])
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(rewritten, alert_names().len(), "every alert has a for: duration");
    std::fs::write(scratch.path().join("edge-fleet-rules.yml"), zero).expect("write");
    std::fs::create_dir(scratch.path().join("tests")).expect("mkdir");
    let tests = rule_tests(&deploy());
    for t in &tests {
        std::fs::copy(deploy().join(t), scratch.path().join(t)).expect("copy");
    }
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, out) = promtool(scratch.path(), &args, None);
    assert!(!ok, "the unit tests pass even with no for: durations:\n{out}");
    let failed: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .filter_map(|l| l.split(',').next().map(String::from))
        .collect();
    assert_eq!(failed, alert_names(), "alerts whose spike test did not catch a missing for:\n{out}");
}

#[test]
fn the_rules_use_only_metrics_the_hub_and_agent_expose() {
    let exposed: BTreeSet<String> = exposition_names(&[hub_exposition(), agent_exposition().0]);
    let used = metric_names(&rules_text());
    assert!(used.len() >= 8, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exposed).collect();
    assert!(unknown.is_empty(), "rules use metrics nobody exposes: {unknown:?}; exposed: {exposed:?}");
}

#[test]
fn the_hub_and_agent_expositions_pass_promtool_check_metrics() {
    let hub = hub_exposition();
    let (agent, _dir) = agent_exposition();
    // Facts that must be in the text promtool reads (else it would pass on nothing).
    for (text, families) in [
        (
            &hub,
            &[
                "edge_store_info",
                "edge_store_releases_behind",
                "edge_store_last_backup_timestamp_seconds",
                "edge_rollout_partition_phase",
                "edge_hub_reports_total",
            ][..],
        ),
        (
            &agent,
            &[
                "edge_agent_applies_total",
                "edge_agent_apply_duration_seconds_bucket",
                "edge_wireguard_last_handshake_timestamp_seconds",
                "edge_store_restore_test_failures",
            ][..],
        ),
    ] {
        let names = exposition_names(std::slice::from_ref(text));
        for f in families {
            assert!(names.contains(*f), "{f} missing from:\n{text}");
        }
        let (_, out) = promtool(&deploy(), &["check", "metrics"], Some(text));
        // promtool reads the classic text format, where a counter's HELP names the `_total`
        // sample; OpenMetrics (what the hub and agent serve, and Prometheus negotiates) names
        // the family without it. That one lint is the format's difference, and only for a
        // counter whose family does carry a HELP; every other lint or parse error fails.
        let problems: Vec<&str> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                let family = l.strip_suffix(" no help text").and_then(|n| n.strip_suffix("_total"));
                !family.is_some_and(|f| {
                    text.contains(&format!("# TYPE {f} counter\n")) && text.contains(&format!("# HELP {f} "))
                })
            })
            .collect();
        assert!(problems.is_empty(), "promtool check metrics:\n{out}\n---\n{text}");
    }
}
