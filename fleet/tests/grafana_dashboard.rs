//! The Grafana dashboard (`deploy/grafana/edge-fleet.json`) queries only what the hub and the
//! agent expose: every panel target's PromQL names metrics found in their real exposition (the
//! sample names of what `/metrics` renders with every family filled in), and the dashboard has
//! panels and targets for the fleet, the rollout and the backups. That each query runs on a
//! real Prometheus is checked by `prometheus_scrape.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{agent_exposition, dashboard_exprs, dashboard_panels, exposition_names, hub_exposition, metric_names};
use serde_json::Value;

#[test]
fn every_panel_queries_only_metrics_the_hub_and_agent_expose() {
    let (agent, _dir) = agent_exposition();
    let exposed = exposition_names(&[hub_exposition(), agent]);
    let exprs = dashboard_exprs();
    let mut used = BTreeSet::new();
    for (title, e) in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{title}: {e} queries no edge metric");
        let unknown: Vec<&String> = names.difference(&exposed).collect();
        assert!(unknown.is_empty(), "{title}: {e} uses {unknown:?}, not exposed; exposed: {exposed:?}");
        used.extend(names);
    }
    // The three parts of the dashboard: fleet overview, rollout, backups and store health.
    for family in [
        "edge_store_info",
        "edge_store_releases_behind",
        "edge_store_last_poll_timestamp_seconds",
        "edge_rollout_partition_phase",
        "edge_rollout_partition_stores",
        "edge_agent_apply_duration_seconds_bucket",
        "edge_agent_applies_total",
        "edge_store_last_backup_timestamp_seconds",
        "edge_store_last_restore_test_timestamp_seconds",
        "edge_store_restore_test_failures",
        "edge_wireguard_last_handshake_timestamp_seconds",
        "edge_store_certificate_expiry_timestamp_seconds",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

#[test]
fn every_panel_uses_the_dashboard_datasource_variable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/edge-fleet.json");
    let dash: Value = serde_json::from_slice(&std::fs::read(path).expect("dashboard")).expect("JSON");
    let vars: Vec<&str> =
        dash["templating"]["list"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    assert!(vars.contains(&"datasource"), "{vars:?}");
    let with_targets: Vec<Value> = dashboard_panels(&dash).into_iter().filter(|p| p["targets"].is_array()).collect();
    assert!(!with_targets.is_empty());
    for p in with_targets {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}
