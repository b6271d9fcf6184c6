//! Shared by the fleet tests: the real `terraform`, the `edge-fleet` binary, release bundles of
//! a `terraform_data` root, a throwaway PostgreSQL for the hub, a static file server standing
//! in for the hub's tree (any static server or object store serves it), and the hub's and
//! agent's metrics exposition.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_fleet::evidence::{BackupEvidence, CertificateEvidence, Drift, StateDigest, StoreEvidence};
use edge_fleet::health::WireguardCheck;
use edge_fleet::metrics::{AgentMetrics, FleetView, HubLive, HubOptions, StoreSeen};
use edge_fleet::release::Release;
use edge_fleet::restore::{RestoreOutcome, RestoreTest};
use edge_fleet::rollout::{Outcome, PartitionStatus, Phase, Spec};
use edge_images::keys::SecretKey;
use time::OffsetDateTime;

pub fn terraform() -> PathBuf {
    let p = std::env::var_os("EDGE_TERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/terraform"));
    assert!(p.is_file(), "{} missing: run scripts/install-deps.sh", p.display());
    p
}

/// What a counting server sent for one path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub hits: usize,
    /// Body bytes written to the client.
    pub bytes: u64,
}

pub type ServedLog = Arc<Mutex<BTreeMap<String, Served>>>;

/// A static file server over `root` that counts requests and body bytes sent per path (what
/// crossed the "WAN").
pub fn serve(root: PathBuf) -> (String, ServedLog) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let log: ServedLog = Arc::default();
    let h = log.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut hdr = String::new();
                if r.read_line(&mut hdr).map(|n| n == 0).unwrap_or(true) || hdr == "\r\n" {
                    break;
                }
            }
            h.lock().expect("log").entry(path.clone()).or_default().hits += 1;
            let mut conn = r.into_inner();
            let file = root.join(path.trim_start_matches('/'));
            let Ok(b) = std::fs::read(&file) else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len());
            if conn.write_all(head.as_bytes()).is_err() {
                continue;
            }
            // In pieces, each counted before it is written (so a client that has read the body
            // sees the count complete); a client that stops reading early is charged roughly
            // what it was sent, not the whole file.
            for piece in b.chunks(64 * 1024) {
                h.lock().expect("log").entry(path.clone()).or_default().bytes += piece.len() as u64;
                if conn.write_all(piece).is_err() {
                    break;
                }
            }
        }
    });
    (url, log)
}

/// Total body bytes a counting server sent for paths starting with `prefix`.
pub fn served_bytes(log: &ServedLog, prefix: &str) -> u64 {
    log.lock().expect("log").iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, s)| s.bytes).sum()
}

// The hub's and the agent's exposition with every metric family filled in, for the tests of
// what reads it (promtool, the rules, the dashboard): rendered by the real code, never a list
// of names kept by hand.

/// Metric names (`edge_…`, not the `edge:…` records) a PromQL expression uses.
pub fn metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        if start_ok && expr[i..].starts_with("edge_") {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(expr.len(), |n| i + n);
            names.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names of an exposition (what Prometheus stores), from its sample lines.
pub fn exposition_names(texts: &[String]) -> std::collections::BTreeSet<String> {
    let names: std::collections::BTreeSet<String> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(String::from))
        .collect();
    assert!(!names.is_empty());
    names
}

pub fn evidence(store: &str, failed_restore: bool) -> StoreEvidence {
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
    let failed = RestoreOutcome::Failed { step: "agent".into(), reason: "no answer".into() };
    StoreEvidence {
        store: store.into(),
        collected_at: "2026-12-01T01:00:00Z".into(),
        release: None,
        configuration_sha256: String::new(),
        state: StateDigest { sha256: String::new(), resources: 0, sensitive_values: 0 },
        drift: Drift { checked_at: String::new(), plan_sha256: None, changes: vec![], error: None },
        images: vec![],
        backups: (100..103)
            .map(|g| BackupEvidence {
                group: format!("vm/{g}"),
                last_backup_time: 1_764_540_000,
                age_s: 0,
                verification: None,
            })
            .collect(),
        restore_tests: vec![
            test(100, RestoreOutcome::Passed),
            test(101, if failed_restore { failed } else { RestoreOutcome::Passed }),
        ],
        restore_tested_at: None,
        certificates: vec![CertificateEvidence {
            node: "pve1".into(),
            filename: "pve-ssl.pem".into(),
            fingerprint: None,
            not_after: Some("2027-06-01T00:00:00Z".into()),
            days_left: None,
        }],
        wireguard: vec![],
        unobserved: vec![],
    }
}

/// The hub's exposition with every family filled: three stores (one on N-2), their evidence,
/// a rollout halted at its canary, reports taken and refused, a store that polled.
pub fn hub_exposition() -> String {
    let catalogue = edge_fleet::drift::parse_catalogue(
        br#"[{"name": "v1", "id": "r1", "published": "2026-10-01T00:00:00Z"},
             {"name": "v2", "id": "r2", "published": "2026-11-01T00:00:00Z"},
             {"name": "v3", "id": "r3", "published": "2026-12-01T00:00:00Z"}]"#,
    )
    .expect("catalogue");
    let spec: Spec = serde_json::from_value(serde_json::json!({
        "release": "r3", "previous": "r2", "on_failure": "halt_and_revert",
        "partitions": [{"name": "canary", "stores": ["store-1"]}, {"name": "rest"}]
    }))
    .expect("spec");
    let status = |name: &str, phase: Phase, failed: usize| PartitionStatus {
        name: name.into(),
        stores: 2,
        succeeded: 1,
        failed,
        pending: 1 - failed,
        handed: 2,
        in_flight: 0,
        max_in_flight: None,
        phase,
        verdict: "v".into(),
    };
    let view = FleetView {
        stores: ["r1", "r2", "r3"]
            .iter()
            .enumerate()
            .map(|(i, rel)| StoreSeen {
                name: format!("store-{i}"),
                region: "r".into(),
                last_report: Some(OffsetDateTime::now_utc()),
                running: Some(rel.to_string()),
                evidence: Some(evidence(&format!("store-{i}"), i == 0)),
            })
            .collect(),
        rollout: Some((spec, vec![status("canary", Phase::Reverted, 1), status("rest", Phase::Waiting, 0)])),
    };
    let hub = HubLive::new(HubOptions { catalogue, poll_interval: Duration::from_secs(60) });
    hub.polled("store-1");
    hub.report(true);
    hub.report(false);
    hub.evidence(true);
    hub.render(&view, OffsetDateTime::now_utc())
}

/// The agent's exposition after two applies and a cycle, with a kept evidence record and a
/// tunnel (`wg` stood in for by a script printing `latest-handshakes`).
pub fn agent_exposition() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let key = SecretKey::generate("store-9").expect("key");
    let wg = dir.path().join("wg");
    std::fs::write(&wg, "#!/bin/sh\nprintf 'aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=\\t1764540000\\n'\n")
        .expect("wg");
    std::fs::set_permissions(&wg, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let check = WireguardCheck { interface: "wg0".into(), max_handshake_age_s: 300, peers: vec![], command: wg };
    let m = AgentMetrics::new("store-9", dir.path(), key.public(), Some(check));
    m.applied(Outcome::Succeeded, Duration::from_secs(42));
    m.applied(Outcome::Failed, Duration::from_secs(3));
    m.cycle(&Ok(edge_fleet::agent::Cycle::UpToDate { version: 1 }));
    let env = edge_fleet::evidence::sign_record(&evidence("store-9", true), &key);
    std::fs::create_dir_all(dir.path().join("evidence")).expect("mkdir");
    std::fs::write(dir.path().join("evidence/2026-12-01.json"), env.to_json()).expect("write");
    (m.render(), dir)
}

/// The dashboard's panels, those nested in rows included.
pub fn dashboard_panels(dash: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack: Vec<serde_json::Value> = dash["panels"].as_array().cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().cloned().unwrap_or_default());
        out.push(p);
    }
    out
}

/// Every `expr` of every panel target: (panel title, expr).
pub fn dashboard_exprs() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/edge-fleet.json");
    let dash: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("dashboard")).expect("dashboard JSON");
    let all = dashboard_panels(&dash);
    assert!(!all.is_empty(), "no panels in {}", path.display());
    let mut exprs = Vec::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap_or_default();
            assert!(!e.trim().is_empty(), "{title}: a target without a query: {t}");
            exprs.push((title.clone(), e.to_string()));
        }
    }
    assert!(!exprs.is_empty(), "no panel targets in {}", path.display());
    exprs
}

/// Runs `edge-fleet ARGS`: its exit code and its stdout and stderr together.
pub fn fleet_bin(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_edge-fleet")).args(args).output().expect("edge-fleet");
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

/// A release of a `terraform_data` root whose output is `value`, bundled into `bundles`; with
/// `ok` false its precondition fails every apply ("release VALUE cannot apply here"). Its
/// sources go to `work/cfg-VALUE`. Returns the release id.
pub fn release(work: &Path, bundles: &Path, value: &str, ok: bool) -> String {
    release_with(work, bundles, value, ok, &format!("release {value} cannot apply here"))
}

/// A release whose every apply fails with Terraform's precondition error `message`, in the
/// store's own words (markup included, for the pages that must show it as text).
pub fn failing_release(work: &Path, bundles: &Path, value: &str, message: &str) -> String {
    release_with(work, bundles, value, false, message)
}

/// The precondition `holds` or fails with `message`.
fn release_with(work: &Path, bundles: &Path, value: &str, holds: bool, message: &str) -> String {
    let cfg = work.join(format!("cfg-{value}"));
    std::fs::create_dir_all(&cfg).expect("dir");
    std::fs::write(
        cfg.join("main.tf"),
        format!(
            "variable \"ok\" {{ default = {holds} }}\nresource \"terraform_data\" \"release\" {{\n  input = \"{value}\"\n  lifecycle {{\n    precondition {{\n      condition     = var.ok\n      error_message = \"{message}\"\n    }}\n  }}\n}}\noutput \"release\" {{ value = terraform_data.release.output }}\n"
        ),
    )
    .expect("write");
    std::fs::write(cfg.join(".terraform.lock.hcl"), "# built-in providers only\n").expect("write");
    Release::from_dir(value, &cfg, &"a".repeat(64), &"b".repeat(64))
        .expect("release")
        .write_bundle(&cfg, bundles)
        .expect("bundle")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The two hub signing keys (`hub-1`, `hub-2`) written to `dir`: their files and the public keys
/// agents trust.
pub fn hub_keys(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let (mut files, mut trusted) = (vec![], vec![]);
    for name in ["hub-1", "hub-2"] {
        let k = SecretKey::generate(name).expect("key");
        let p = dir.join(format!("{name}.sec"));
        std::fs::write(&p, k.to_nix_string()).expect("write");
        files.push(p);
        trusted.push(k.public().to_string());
    }
    (files, trusted)
}

/// A fleet registered with a hub on PostgreSQL: each store with its own report key (its file in
/// `work`), two hub signing keys.
pub struct HubFleet {
    pub work: tempfile::TempDir,
    pub db: String,
    pub hub_keys: Vec<PathBuf>,
    pub trusted: Vec<String>,
    /// Each store's report key (it signs the store's evidence records too).
    pub keys: Vec<SecretKey>,
}

impl HubFleet {
    /// `hub register` for each store, store `i` in `region(i)`.
    pub fn register(db: &str, stores: &[&str], region: impl Fn(usize) -> String) -> HubFleet {
        let work = tempfile::tempdir().expect("tmp");
        let mut keys = vec![];
        for (i, name) in stores.iter().enumerate() {
            let k = SecretKey::generate(name).expect("key");
            std::fs::write(work.path().join(format!("{name}.sec")), k.to_nix_string()).expect("write");
            let key = k.public().to_string();
            let (code, out) = fleet_bin(&[
                "hub",
                "register",
                "--database",
                db,
                "--name",
                name,
                "--region",
                &region(i),
                "--key",
                &key,
            ]);
            assert_eq!(code, 0, "{out}");
            keys.push(k);
        }
        let (hub_keys, trusted) = hub_keys(work.path());
        HubFleet { work, db: db.to_string(), hub_keys, trusted, keys }
    }

    /// `hub start` of `spec` (kept as `spec-NAME.json`).
    pub fn start(&self, name: &str, spec: &serde_json::Value) {
        let p = self.work.path().join(format!("spec-{name}.json"));
        std::fs::write(&p, spec.to_string()).expect("write");
        let (code, out) = fleet_bin(&["hub", "start", "--database", &self.db, "--spec", s(&p)]);
        assert_eq!(code, 0, "{out}");
    }
}

/// A throwaway PostgreSQL cluster (the newest Debian server installed) on 127.0.0.1: user and
/// database `fleet`, trust authentication, no fsync; stopped with `pg_ctl stop` when dropped. As
/// root its tools run as `postgres` (the server refuses root), as `examples/fleet/fleet.sh` does.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// `postgres://fleet@127.0.0.1:PORT/fleet?sslmode=disable`
    pub url: String,
}

fn pg_tool(name: &str) -> PathBuf {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-deps.sh")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, p)| p.is_file())
        .collect();
    bins.sort();
    bins.pop().map(|(_, p)| p).unwrap_or_else(|| panic!("no PostgreSQL {name}: run scripts/install-deps.sh"))
}

/// This process runs as root (`/proc/self` belongs to its user).
fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn as_postgres(tool: &str) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_tool(tool));
        c
    } else {
        Command::new(pg_tool(tool))
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("tmp");
        let pg = dir.path().join("pg");
        std::fs::create_dir(&pg).expect("mkdir");
        // The server's user must reach and own its directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if root() {
            edge_acceptance::run(Command::new("chown").arg("postgres:").arg(&pg));
        }
        let data = pg.join("data");
        edge_acceptance::run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-U",
            "fleet",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let opts = format!("-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off", pg.display());
        edge_acceptance::run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(pg.join("postgres.log"))
                .args(["-w", "-t", "30", "-o", &opts, "start"]),
        );
        let pg = Postgres { dir, url: format!("postgres://fleet@127.0.0.1:{port}/fleet?sslmode=disable") };
        edge_acceptance::run(Command::new(pg_tool("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "fleet",
            "fleet",
        ]));
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("pg/data");
        let stop = as_postgres("pg_ctl").arg("-D").arg(&data).args(["-m", "fast", "-w", "-t", "30", "stop"]).output();
        if !std::thread::panicking() {
            assert!(stop.is_ok_and(|o| o.status.success()), "pg_ctl stop failed for {}", data.display());
        }
    }
}
