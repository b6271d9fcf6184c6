//! Metrics in the Prometheus/OpenMetrics exposition format: every metric name, help text, unit
//! and label set of the hub (`GET /metrics` on `edge-fleet hub serve`) and of the store agent
//! (`edge-fleet agent run --metrics-listen ADDR`) is declared here, and nowhere else.
//!
//! Conventions: units in names (`_seconds`, `_timestamp_seconds`: a point in time, so alert rules
//! compute ages with `time() - …` and a scrape never goes stale by itself), `_total` counters,
//! and bounded labels only — `store`, `region`, `release`, `rollout`, `partition`, `phase`,
//! `state`, `result`, `check`, and the WireGuard `interface`/`peer` of a store's tunnel. Never a
//! report id, an error text or a time as a label: a 500-store fleet stays a few thousand series
//! (the unit test below counts them).
//!
//! The hub reads its database at each scrape ([`crate::db::Db::fleet_view`]) and builds the
//! registry from it, so a store or a rollout that is gone leaves no series behind, and several
//! hub instances expose the same facts (the rules take `max by (store)`). What an instance saw
//! itself — channel polls, reports it took or refused — lives in [`HubLive`]. The agent keeps one
//! registry for its process ([`AgentMetrics`]) and adds what it reads at scrape time: the release
//! it applied, its latest evidence record, the WireGuard handshakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use edge_images::dsse::Envelope;
use edge_images::keys::PublicKey;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::agent::{AgentError, Cycle};
use crate::drift::{self, ReleaseInfo, Slo};
use crate::evidence::{self, StoreEvidence};
use crate::health::{latest_handshakes, WireguardCheck};
use crate::restore::RestoreOutcome;
use crate::rollout::{Outcome, PartitionStatus, Phase, Spec};

/// What `/metrics` answers with (OpenMetrics text; Prometheus 2.x and later negotiate it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type GaugeF = Gauge<f64, AtomicU64>;

fn gauges() -> Family<Labels, GaugeF> {
    Family::default()
}

fn counters() -> Family<Labels, Counter> {
    Family::default()
}

fn set(f: &Family<Labels, GaugeF>, labels: Labels, v: f64) {
    f.get_or_create(&labels).set(v);
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64
}

fn rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// One exposition of `registries`, ended by the one `# EOF` OpenMetrics allows (a parser
/// stops at it: Prometheus refuses a scrape with anything after it).
fn render(registries: &[&Registry]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    for r in registries {
        let _ = encode_registry(&mut out, r);
    }
    let _ = encode_eof(&mut out);
    out
}

/// A release as a label: its catalogue name when the catalogue knows it, else the first 12
/// hex digits of its id (as `hub status` prints it). Bounded by the releases in circulation.
pub fn release_label(id: &str, catalogue: &[(ReleaseInfo, OffsetDateTime)]) -> String {
    catalogue
        .iter()
        .find(|(r, _)| r.name == id || r.id.as_deref() == Some(id))
        .map(|(r, _)| r.name.clone())
        .unwrap_or_else(|| id.chars().take(12).collect())
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Waiting => "waiting",
        Phase::Open { .. } => "open",
        Phase::Soaking { .. } => "soaking",
        Phase::Passed => "passed",
        Phase::Halted => "halted",
        Phase::Reverted => "reverted",
    }
}

const PHASES: [&str; 6] = ["waiting", "open", "soaking", "passed", "halted", "reverted"];

/// Facts of a store's latest evidence record, shared by the hub (records the stores posted) and
/// the agent (the record it kept): backups, restore tests, certificates.
struct EvidenceFamilies {
    backup: Family<Labels, GaugeF>,
    restore_at: Family<Labels, GaugeF>,
    restore_failures: Family<Labels, GaugeF>,
    cert_expiry: Family<Labels, GaugeF>,
}

impl EvidenceFamilies {
    fn register(r: &mut Registry) -> Self {
        let f = EvidenceFamilies {
            backup: gauges(),
            restore_at: gauges(),
            restore_failures: gauges(),
            cert_expiry: gauges(),
        };
        r.register_with_unit(
            "edge_store_last_backup_timestamp",
            "Time of the newest finished backup of the store's stalest guest (the oldest of each guest's newest backup), from the latest evidence record",
            Unit::Seconds,
            f.backup.clone(),
        );
        r.register_with_unit(
            "edge_store_last_restore_test_timestamp",
            "When the store's latest restore tests ran, from the latest evidence record",
            Unit::Seconds,
            f.restore_at.clone(),
        );
        r.register(
            "edge_store_restore_test_failures",
            "Guests whose latest restore test failed, from the latest evidence record",
            f.restore_failures.clone(),
        );
        r.register_with_unit(
            "edge_store_certificate_expiry_timestamp",
            "Expiry (notAfter) of the store's soonest-expiring node certificate, from the latest evidence record",
            Unit::Seconds,
            f.cert_expiry.clone(),
        );
        f
    }

    fn record(&self, store: &str, e: &StoreEvidence) {
        let l = || vec![("store", store.to_string())];
        if let Some(t) = e.backups.iter().map(|b| b.last_backup_time).min() {
            set(&self.backup, l(), t as f64);
        }
        let tested = e
            .restore_tested_at
            .as_deref()
            .and_then(rfc3339)
            .or_else(|| e.restore_tests.iter().filter_map(|t| rfc3339(&t.started_at)).max());
        if let Some(t) = tested {
            set(&self.restore_at, l(), unix(t));
        }
        if !e.restore_tests.is_empty() {
            let failed = e.restore_tests.iter().filter(|t| matches!(t.outcome, RestoreOutcome::Failed { .. })).count();
            set(&self.restore_failures, l(), failed as f64);
        }
        if let Some(t) = e.certificates.iter().filter_map(|c| c.not_after.as_deref().and_then(rfc3339)).min() {
            set(&self.cert_expiry, l(), unix(t));
        }
    }
}

/// What the hub's database says about one registered store ([`crate::db::Db::fleet_view`]).
#[derive(Debug, Clone, Default)]
pub struct StoreSeen {
    pub name: String,
    pub region: String,
    /// When the hub received the store's latest signed report.
    pub last_report: Option<OffsetDateTime>,
    /// The release of its latest `succeeded` report: what it runs, as far as the hub knows.
    pub running: Option<String>,
    /// Its latest evidence record.
    pub evidence: Option<StoreEvidence>,
}

/// The fleet as the hub's database holds it.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    pub stores: Vec<StoreSeen>,
    /// The current rollout: its spec and every partition's status as of the last step.
    pub rollout: Option<(Spec, Vec<PartitionStatus>)>,
}

/// Settings of the hub's metrics (`hub serve --releases`, `--store-poll-interval-s`).
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// The release catalogue ([`drift::parse_catalogue`]): release names and "releases behind".
    pub catalogue: Vec<(ReleaseInfo, OffsetDateTime)>,
    /// How often the stores' agents poll their channel (`agent run --interval-s`): the rules
    /// call a store silent after a few of these.
    pub poll_interval: Duration,
}

/// What one hub instance saw itself, kept for the life of the process.
pub struct HubLive {
    options: HubOptions,
    started: OffsetDateTime,
    /// Per store, the last time it fetched its channel manifest from this instance.
    polls: Mutex<BTreeMap<String, OffsetDateTime>>,
    reports: Family<Labels, Counter>,
    evidence: Family<Labels, Counter>,
}

impl HubLive {
    pub fn new(options: HubOptions) -> Self {
        HubLive {
            options,
            started: OffsetDateTime::now_utc(),
            polls: Mutex::default(),
            reports: counters(),
            evidence: counters(),
        }
    }

    /// A store fetched its channel manifest: it is alive, whatever it has to report. Called
    /// only for registered stores (a manifest exists), so the label set stays the registry.
    pub fn polled(&self, store: &str) {
        if let Ok(mut p) = self.polls.lock() {
            p.insert(store.to_string(), OffsetDateTime::now_utc());
        }
    }

    /// A signed report was taken (`true`) or refused.
    pub fn report(&self, accepted: bool) {
        self.reports.get_or_create(&vec![("result", result(accepted))]).inc();
    }

    /// An evidence record was taken (`true`) or refused.
    pub fn evidence(&self, accepted: bool) {
        self.evidence.get_or_create(&vec![("result", result(accepted))]).inc();
    }

    /// The exposition for `view` (read from the database just now) and this instance's own.
    pub fn render(&self, view: &FleetView, now: OffsetDateTime) -> String {
        let mut r = Registry::default();
        let cat = &self.options.catalogue;
        let info = gauges();
        r.register(
            "edge_store_info",
            "1 per registered store; release: what it runs (its latest succeeded report; catalogue name or short id; \"unknown\" before any)",
            info.clone(),
        );
        let behind = gauges();
        r.register(
            "edge_store_releases_behind",
            "Releases between the one the store runs and the newest in the catalogue (0: current; 2: N-2)",
            behind.clone(),
        );
        let last_report = gauges();
        r.register_with_unit(
            "edge_store_last_report_timestamp",
            "When the hub received the store's latest signed report (the agent reports on change: an apply, a wait for its window, its health moving)",
            Unit::Seconds,
            last_report.clone(),
        );
        let last_poll = gauges();
        r.register_with_unit(
            "edge_store_last_poll_timestamp",
            "When the store last fetched its channel manifest from this hub instance (its heartbeat: every agent cycle)",
            Unit::Seconds,
            last_poll.clone(),
        );
        let evidence = EvidenceFamilies::register(&mut r);
        let phase = gauges();
        r.register(
            "edge_rollout_partition_phase",
            "1 for the phase each partition of the current rollout is in, 0 for the others",
            phase.clone(),
        );
        let pstores = gauges();
        r.register(
            "edge_rollout_partition_stores",
            "Stores of each partition of the current rollout by state: total, succeeded, failed, pending, handed (given the release), in_flight (handed, no final report yet)",
            pstores.clone(),
        );
        let budget = gauges();
        r.register(
            "edge_rollout_partition_failure_budget",
            "Failed stores a partition may have and still pass (max_failed): the gate's limit",
            budget.clone(),
        );
        let required = gauges();
        r.register(
            "edge_rollout_partition_reports_required",
            "Final reports a partition needs before its gate is met (min_reported of its stores, rounded up)",
            required.clone(),
        );
        let interval = GaugeF::default();
        r.register_with_unit(
            "edge_hub_store_poll_interval",
            "How often the stores' agents are expected to poll their channel (hub serve --store-poll-interval-s)",
            Unit::Seconds,
            interval.clone(),
        );
        let started = GaugeF::default();
        r.register_with_unit(
            "edge_hub_start_timestamp",
            "When this hub instance started",
            Unit::Seconds,
            started.clone(),
        );
        r.register("edge_hub_reports", "Signed reports this hub instance took or refused", self.reports.clone());
        r.register("edge_hub_evidence", "Evidence records this hub instance took or refused", self.evidence.clone());

        interval.set(self.options.poll_interval.as_secs_f64());
        started.set(unix(self.started));
        let running: Vec<(String, Option<String>)> =
            view.stores.iter().map(|s| (s.name.clone(), s.running.clone())).collect();
        // The drift table is the one `edge-fleet drift` prints: the same rows, as numbers.
        let table = drift::table(cat, &running, now, Slo::default());
        for (s, row) in view.stores.iter().zip(&table.rows) {
            let store = || ("store", s.name.clone());
            let release = s.running.as_deref().map_or_else(|| "unknown".to_string(), |id| release_label(id, cat));
            set(&info, vec![store(), ("region", s.region.clone()), ("release", release)], 1.0);
            if let Some(b) = row.behind {
                set(&behind, vec![store()], b as f64);
            }
            if let Some(t) = s.last_report {
                set(&last_report, vec![store()], unix(t));
            }
            if let Some(e) = &s.evidence {
                evidence.record(&s.name, e);
            }
        }
        if let Ok(polls) = self.polls.lock() {
            for (store, t) in polls.iter() {
                set(&last_poll, vec![("store", store.clone())], unix(*t));
            }
        }
        if let Some((spec, status)) = &view.rollout {
            let rollout = release_label(&spec.release, cat);
            for (p, st) in spec.partitions.iter().zip(status) {
                let l = |k: &'static str, v: &str| {
                    vec![("rollout", rollout.clone()), ("partition", st.name.clone()), (k, v.to_string())]
                };
                for ph in PHASES {
                    set(&phase, l("phase", ph), if ph == phase_name(st.phase) { 1.0 } else { 0.0 });
                }
                for (state, n) in [
                    ("total", st.stores),
                    ("succeeded", st.succeeded),
                    ("failed", st.failed),
                    ("pending", st.pending),
                    ("handed", st.handed),
                    ("in_flight", st.in_flight),
                ] {
                    set(&pstores, l("state", state), n as f64);
                }
                let pl = vec![("rollout", rollout.clone()), ("partition", st.name.clone())];
                set(&budget, pl.clone(), p.max_failed as f64);
                set(&required, pl, (p.min_reported * st.stores as f64).ceil());
            }
        }
        render(&[&r])
    }
}

fn result(accepted: bool) -> String {
    if accepted { "accepted" } else { "refused" }.to_string()
}

/// The store agent's metrics: counters and the apply histogram for the life of the process,
/// plus what it reads at each scrape from its state directory and the tunnel.
pub struct AgentMetrics {
    store: String,
    state_dir: PathBuf,
    /// The store's own key: its kept evidence record is exposed only if this key signed it.
    key: PublicKey,
    wireguard: Option<WireguardCheck>,
    registry: Registry,
    cycles: Family<Labels, Counter>,
    applies: Family<Labels, Counter>,
    apply_seconds: Family<Labels, Histogram>,
    last_cycle: Family<Labels, GaugeF>,
}

/// Apply times range from seconds (a `terraform_data` root) to an hour (a node reinstalled
/// from its BMC).
fn apply_histogram() -> Histogram {
    Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0])
}

impl AgentMetrics {
    /// `wireguard`: the health check's tunnel (`--health`), whose handshakes are read at scrape.
    pub fn new(store: &str, state_dir: &Path, key: PublicKey, wireguard: Option<WireguardCheck>) -> Self {
        let mut registry = Registry::default();
        let cycles = counters();
        registry.register(
            "edge_agent_cycles",
            "Agent cycles by result: reported (applied, failed or health changed), up_to_date, deferred (outside the maintenance window), refused (manifest, bundle or image), expired (an alarm), error (hub unreachable, I/O)",
            cycles.clone(),
        );
        let applies = counters();
        registry.register(
            "edge_agent_applies",
            "Terraform applies of a release by result (succeeded, failed)",
            applies.clone(),
        );
        let apply_seconds: Family<Labels, Histogram> = Family::new_with_constructor(apply_histogram);
        registry.register_with_unit(
            "edge_agent_apply_duration",
            "Time of terraform init + apply of a release",
            Unit::Seconds,
            apply_seconds.clone(),
        );
        let last_cycle = gauges();
        registry.register_with_unit(
            "edge_agent_last_cycle_timestamp",
            "When the agent's latest cycle ended",
            Unit::Seconds,
            last_cycle.clone(),
        );
        AgentMetrics {
            store: store.to_string(),
            state_dir: state_dir.to_path_buf(),
            key,
            wireguard,
            registry,
            cycles,
            applies,
            apply_seconds,
            last_cycle,
        }
    }

    fn labels(&self) -> Labels {
        vec![("store", self.store.clone())]
    }

    /// A cycle ended (`agent run` calls it after each).
    pub fn cycle(&self, r: &Result<Cycle, AgentError>) {
        let result = match r {
            Ok(Cycle::Ran { .. }) => "reported",
            Ok(Cycle::UpToDate { .. }) => "up_to_date",
            Ok(Cycle::Deferred { .. }) => "deferred",
            Err(AgentError::Refused(_) | AgentError::Bundle(_) | AgentError::Image(_)) => "refused",
            Err(AgentError::Expired(_)) => "expired",
            Err(_) => "error",
        };
        let mut l = self.labels();
        l.push(("result", result.to_string()));
        self.cycles.get_or_create(&l).inc();
        set(&self.last_cycle, self.labels(), unix(OffsetDateTime::now_utc()));
    }

    /// An apply ended with `outcome` after `took`.
    pub fn applied(&self, outcome: Outcome, took: Duration) {
        let result = if outcome == Outcome::Succeeded { "succeeded" } else { "failed" };
        let mut l = self.labels();
        l.push(("result", result.to_string()));
        self.applies.get_or_create(&l).inc();
        self.apply_seconds.get_or_create(&self.labels()).observe(took.as_secs_f64());
    }

    /// The exposition: the process's metrics and what the state directory and the tunnel say now.
    pub fn render(&self) -> String {
        let mut r = Registry::default();
        let release = gauges();
        r.register(
            "edge_agent_release_info",
            "1 for the release the store's working directory applied successfully (short id)",
            release.clone(),
        );
        let handshakes = gauges();
        r.register_with_unit(
            "edge_wireguard_last_handshake_timestamp",
            "Latest handshake with each peer of the store's tunnel (wg show latest-handshakes; 0: never)",
            Unit::Seconds,
            handshakes.clone(),
        );
        let evidence = EvidenceFamilies::register(&mut r);
        let applied: Option<crate::channel::Accepted> =
            crate::files::read_json(&self.state_dir.join("applied.json")).ok().flatten();
        if let Some(a) = applied {
            let mut l = self.labels();
            l.push(("release", release_label(&a.release, &[])));
            set(&release, l, 1.0);
        }
        if let Some(e) = self.kept_evidence() {
            evidence.record(&self.store, &e);
        }
        if let Some(wg) = &self.wireguard {
            for (peer, t) in self.handshakes(wg) {
                let mut l = self.labels();
                l.extend([("interface", wg.interface.clone()), ("peer", peer)]);
                set(&handshakes, l, t as f64);
            }
        }
        render(&[&self.registry, &r])
    }

    /// The newest evidence record the agent kept (`STATE/evidence/YYYY-MM-DD.json`), if the
    /// store's key signed it.
    fn kept_evidence(&self) -> Option<StoreEvidence> {
        let dir = self.state_dir.join("evidence");
        let newest = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .max()?;
        let env: Envelope = serde_json::from_slice(&std::fs::read(&newest).ok()?).ok()?;
        match evidence::verify_record(&env, &self.store, &self.key) {
            Ok(r) => Some(r),
            Err(why) => {
                tracing::warn!(file = %newest.display(), %why, "kept evidence record not exposed");
                None
            }
        }
    }

    fn handshakes(&self, wg: &WireguardCheck) -> Vec<(String, i64)> {
        latest_handshakes(&wg.command, &wg.interface).unwrap_or_else(|why| {
            tracing::warn!(%why, "wireguard handshakes not exposed");
            Vec::new()
        })
    }
}

/// Serves `render()` at `GET /metrics` on `addr` (the agent's opt-in listener for the store's
/// local Prometheus) from a thread of its own; returns the bound address.
pub fn serve_agent(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<AgentMetrics>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("agent-metrics".into()).spawn(move || {
        rt.block_on(async move {
            let route = move || {
                let m = metrics.clone();
                async move {
                    // Reading files and running `wg` blocks: off the runtime's thread.
                    let body = tokio::task::spawn_blocking(move || m.render()).await.unwrap_or_default();
                    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
                }
            };
            let app = axum::Router::new().route("/metrics", axum::routing::get(route));
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!(error = %e, "metrics listener ended");
                    }
                }
                Err(e) => tracing::error!(error = %e, "metrics listener"),
            }
        })
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{BackupEvidence, CertificateEvidence, Drift, StateDigest};
    use crate::restore::RestoreTest;
    use crate::rollout::{OnFailure, Partition};

    fn record(store: &str, failed_restore: bool) -> StoreEvidence {
        let test = |guest: u32, outcome: RestoreOutcome| RestoreTest {
            guest,
            guest_name: None,
            snapshot: format!("vm/{guest}/2026-11-30T02:00:00Z"),
            backup_time: 1_764_468_000,
            started_at: "2026-11-30T04:00:00Z".into(),
            rpo_s: 7200,
            rto_s: Some(40.0),
            outcome,
        };
        StoreEvidence {
            store: store.into(),
            collected_at: "2026-12-01T01:00:00Z".into(),
            release: None,
            configuration_sha256: String::new(),
            state: StateDigest { sha256: String::new(), resources: 0, sensitive_values: 0 },
            drift: Drift { checked_at: String::new(), plan_sha256: None, changes: vec![], error: None },
            images: vec![],
            // Ten guests, three nodes with two certificates each: a store's worth of facts
            // that must still come out as one series per fact.
            backups: (100..110)
                .map(|g| BackupEvidence {
                    group: format!("vm/{g}"),
                    last_backup_time: 1_764_540_000 - i64::from(g),
                    age_s: 0,
                    verification: None,
                })
                .collect(),
            restore_tests: vec![
                test(100, RestoreOutcome::Passed),
                test(
                    101,
                    if failed_restore {
                        RestoreOutcome::Failed { step: "agent".into(), reason: "no answer".into() }
                    } else {
                        RestoreOutcome::Passed
                    },
                ),
            ],
            restore_tested_at: None,
            certificates: (1..=3)
                .flat_map(|n| {
                    ["pve-ssl.pem", "pveproxy-ssl.pem"].map(|f| CertificateEvidence {
                        node: format!("pve{n}"),
                        filename: f.into(),
                        fingerprint: None,
                        not_after: Some(format!("2027-0{n}-01T00:00:00Z")),
                        days_left: None,
                    })
                })
                .collect(),
            wireguard: vec![],
            unobserved: vec![],
        }
    }

    fn catalogue() -> Vec<(ReleaseInfo, OffsetDateTime)> {
        drift::parse_catalogue(
            br#"[{"name": "2026.10.1", "id": "r1", "published": "2026-10-01T00:00:00Z"},
                 {"name": "2026.11.1", "id": "r2", "published": "2026-11-01T00:00:00Z"},
                 {"name": "2026.12.1", "id": "r3", "published": "2026-12-01T00:00:00Z"}]"#,
        )
        .expect("catalogue")
    }

    /// Series lines of an exposition (samples; no comments, no `# EOF`).
    fn series(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    }

    fn value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        series(text).into_iter().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn a_500_store_fleet_stays_a_few_thousand_series() {
        let stores = crate::sim::inventory(500, 5);
        let spec = Spec {
            release: "r3".into(),
            previous: "r2".into(),
            partitions: vec![
                Partition {
                    name: "canary".into(),
                    stores: vec!["store-001".into(), "store-002".into()],
                    count: None,
                    soak_s: 600,
                    min_reported: 1.0,
                    max_failed: 0,
                    max_in_flight: None,
                },
                Partition {
                    name: "wave-50".into(),
                    stores: vec![],
                    count: Some(50),
                    soak_s: 600,
                    min_reported: 0.9,
                    max_failed: 2,
                    max_in_flight: Some(10),
                },
                Partition {
                    name: "wave-200".into(),
                    stores: vec![],
                    count: Some(200),
                    soak_s: 600,
                    min_reported: 0.9,
                    max_failed: 5,
                    max_in_flight: Some(20),
                },
                Partition {
                    name: "rest".into(),
                    stores: vec![],
                    count: None,
                    soak_s: 0,
                    min_reported: 0.9,
                    max_failed: 10,
                    max_in_flight: Some(20),
                },
            ],
            on_failure: OnFailure::HaltAndRevert,
            irreversible: false,
        };
        // The controller's real status of a rollout half way: the simulation stops it early.
        let params = crate::sim::Params { horizon_s: 3 * 3600, fail_rate: 0.01, ..Default::default() };
        let run = crate::sim::run(&spec, &stores, &params).expect("simulated");
        let releases = ["r1", "r2", "r3"];
        let view = FleetView {
            stores: stores
                .iter()
                .enumerate()
                .map(|(i, s)| StoreSeen {
                    name: s.name.clone(),
                    region: s.region.clone(),
                    last_report: Some(OffsetDateTime::now_utc()),
                    running: Some(releases[i % 3].to_string()),
                    evidence: Some(record(&s.name, i % 7 == 0)),
                })
                .collect(),
            rollout: Some((spec.clone(), run.last.status.clone())),
        };
        let hub = HubLive::new(HubOptions { catalogue: catalogue(), poll_interval: Duration::from_secs(60) });
        for s in &stores {
            hub.polled(&s.name);
            hub.report(true);
        }
        hub.report(false);
        hub.evidence(true);
        let text = hub.render(&view, OffsetDateTime::now_utc());
        let n = series(&text).len();
        println!("hub /metrics for 500 stores: {n} series, {} bytes", text.len());
        assert!(n < 5000, "{n} series for 500 stores");
        // Each per-store fact is one series per store, not one per guest or certificate.
        for family in [
            "edge_store_info{",
            "edge_store_releases_behind{",
            "edge_store_last_report_timestamp_seconds{",
            "edge_store_last_poll_timestamp_seconds{",
            "edge_store_last_backup_timestamp_seconds{",
            "edge_store_last_restore_test_timestamp_seconds{",
            "edge_store_restore_test_failures{",
            "edge_store_certificate_expiry_timestamp_seconds{",
        ] {
            let k = series(&text).iter().filter(|l| l.starts_with(family)).count();
            assert_eq!(k, 500, "{family}");
        }
        // Three releases in circulation, and the N-2 stores counted from the catalogue.
        let per_release = |r: &str| series(&text).iter().filter(|l| l.contains(&format!("release=\"{r}\""))).count();
        assert_eq!([per_release("2026.10.1"), per_release("2026.11.1"), per_release("2026.12.1")], [167, 167, 166]);
        assert_eq!(value(&text, "edge_store_releases_behind{store=\"store-001\"}"), Some("2.0"));
        assert_eq!(value(&text, "edge_store_releases_behind{store=\"store-003\"}"), Some("0.0"));
        // The stalest guest's backup, the soonest certificate, the failed restore test.
        assert_eq!(value(&text, "edge_store_last_backup_timestamp_seconds{store=\"store-001\"}"), Some("1764539891.0"));
        let jan = OffsetDateTime::parse("2027-01-01T00:00:00Z", &Rfc3339).expect("t").unix_timestamp();
        assert_eq!(
            value(&text, "edge_store_certificate_expiry_timestamp_seconds{store=\"store-001\"}"),
            Some(format!("{jan}.0").as_str())
        );
        assert_eq!(value(&text, "edge_store_restore_test_failures{store=\"store-001\"}"), Some("1.0"));
        assert_eq!(value(&text, "edge_store_restore_test_failures{store=\"store-002\"}"), Some("0.0"));
        // One phase of six is 1 per partition.
        let ones = series(&text)
            .iter()
            .filter(|l| l.starts_with("edge_rollout_partition_phase{") && l.ends_with(" 1.0"))
            .count();
        assert_eq!(ones, 4);
        assert_eq!(value(&text, "edge_hub_reports_total{result=\"accepted\"}"), Some("500"));
    }

    #[test]
    fn the_agent_counts_cycles_and_applies_and_exposes_its_kept_evidence() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = edge_images::keys::SecretKey::generate("store-009").expect("key");
        let m = AgentMetrics::new("store-009", dir.path(), key.public(), None);
        m.applied(Outcome::Succeeded, Duration::from_secs(42));
        m.applied(Outcome::Failed, Duration::from_secs(3));
        m.cycle(&Ok(Cycle::UpToDate { version: 1 }));
        m.cycle(&Err(AgentError::State("x".into())));
        let env = evidence::sign_record(&record("store-009", true), &key);
        crate::files::write_atomic(&dir.path().join("evidence/2026-12-01.json"), &env.to_json()).expect("write");
        // A record signed by another key is not the store's.
        let other = edge_images::keys::SecretKey::generate("store-010").expect("key");
        let text = m.render();
        // Two registries, one exposition: Prometheus refuses anything after `# EOF`.
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1, "{text}");
        assert_eq!(value(&text, "edge_agent_applies_total{store=\"store-009\",result=\"failed\"}"), Some("1"));
        assert_eq!(value(&text, "edge_agent_apply_duration_seconds_count{store=\"store-009\"}"), Some("2"));
        assert_eq!(value(&text, "edge_agent_apply_duration_seconds_sum{store=\"store-009\"}"), Some("45.0"));
        assert_eq!(value(&text, "edge_agent_cycles_total{store=\"store-009\",result=\"error\"}"), Some("1"));
        assert_eq!(value(&text, "edge_store_restore_test_failures{store=\"store-009\"}"), Some("1.0"));
        let forged = evidence::sign_record(&record("store-009", true), &other);
        crate::files::write_atomic(&dir.path().join("evidence/2026-12-02.json"), &forged.to_json()).expect("write");
        assert_eq!(value(&m.render(), "edge_store_restore_test_failures{"), None);
    }
}
