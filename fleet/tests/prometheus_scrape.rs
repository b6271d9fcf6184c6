//! A real Prometheus (Debian's `/usr/bin/prometheus`) scrapes a running fleet: PostgreSQL, the
//! hub (`edge-fleet hub serve`, its `/metrics`), three stores' agents (`edge-fleet agent run
//! --metrics-listen`, the real `terraform` on a `terraform_data` root, reports posted to the
//! hub), with the rules of `deploy/prometheus/edge-fleet-rules.yml` loaded. Everything checked
//! comes from Prometheus's HTTP API: every target up and parsed, the stores per release, the
//! partition phases, the agents' apply counters and histogram. Then failures are injected and
//! `/api/v1/alerts` must show exactly the right alerts firing: the stores post signed evidence
//! (one with a two-day-old backup: `EdgeBackupStale` for it alone; one with a failed restore
//! test: `EdgeRestoreTestFailed` for it alone), and a bad release fails on the canary, the hub
//! halts and reverts the rollout: `EdgeRolloutHalted` for that rollout and partition (and not
//! before). Every dashboard query and rule expression then runs on that Prometheus.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{release, s, terraform, HubFleet, Postgres};
use edge_acceptance::{poll, processes_mentioning, url_encode};
use serde_json::{json, Value};

const STORES: [&str; 3] = ["store-001", "store-002", "store-003"];

/// A port free now on 127.0.0.1 (Prometheus and the agent's listener take an address, and
/// Prometheus does not say which port it bound for `:0`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process killed (and reaped) when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-deps.sh installs it)"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`poll`], and on timeout `diag()` (the processes' logs, Prometheus's view) in the panic.
fn until<T>(what: &str, limit: Duration, diag: impl Fn() -> String, f: impl FnMut() -> Option<T>) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll(what, limit, f))) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{msg}\n{}", diag())
        }
    }
}

fn get_json(url: &str) -> Option<Value> {
    reqwest::blocking::get(url).ok()?.error_for_status().ok()?.json().ok()
}

/// Prometheus with a config scraping `targets` (job → host:port) every second and the given
/// rules, on a free port, its data in `dir`.
struct Prometheus {
    proc: Proc,
    url: String,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, Vec<String>)], rules: &str) -> Prometheus {
        std::fs::write(dir.join("rules.yml"), rules).expect("rules");
        let jobs: Vec<Value> =
            targets.iter().map(|(job, t)| json!({"job_name": job, "static_configs": [{"targets": t}]})).collect();
        // JSON is YAML: the config is written with serde_json.
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [s(&dir.join("rules.yml"))],
            "scrape_configs": jobs,
        });
        std::fs::write(dir.join("prometheus.yml"), config.to_string()).expect("config");
        let port = free_port();
        let proc = Proc::spawn(
            Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", s(&dir.join("prometheus.yml"))))
                .arg(format!("--storage.tsdb.path={}", s(&dir.join("data"))))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null()),
            dir.join("prometheus.log"),
        );
        let p = Prometheus { proc, url: format!("http://127.0.0.1:{port}") };
        poll("Prometheus ready", Duration::from_secs(60), || {
            reqwest::blocking::get(format!("{}/-/ready", p.url)).ok().filter(|r| r.status().is_success())
        });
        p
    }

    /// An instant query's result vector (`[]` when nothing matches; panics on an error).
    fn query(&self, q: &str) -> Vec<Value> {
        let v = get_json(&format!("{}/api/v1/query?query={}", self.url, url_encode(q)))
            .unwrap_or_else(|| panic!("query {q} failed\n{}", self.proc.log()));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The one sample of `q`'s result, once there is exactly one.
    fn value(&self, q: &str) -> Option<f64> {
        match self.query(q).as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// The alerts Prometheus holds now: (name, state, labels).
    fn alerts(&self) -> Vec<(String, String, Value)> {
        let v = get_json(&format!("{}/api/v1/alerts", self.url)).expect("GET /api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

/// The real rules with every `for:` shortened to 3 s, so alerts fire within the test: the
/// expressions, labels and annotations are the file's own; only how long a condition must hold
/// changes (the unit tests in `deploy/prometheus/tests` check the real durations).
fn rules_for_the_test() -> String {
    let real = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/edge-fleet-rules.yml"),
    )
    .expect("rules");
    let mut n = 0;
    let out: String = real
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with("for:") {
                n += 1;
                format!("{indent}for: 3s\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(n > 0, "no for: in the rules");
    out
}

impl HubFleet {
    /// `hub serve` stepping every second, naming releases from `catalogue`; its URL.
    fn hub(&self, bundles: &Path, catalogue: &Path) -> (Proc, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-fleet"));
        cmd.args(["hub", "serve", "--database", &self.db, "--listen", "127.0.0.1:0", "--bundles", s(bundles)]);
        for k in &self.hub_keys {
            cmd.args(["--key", s(k)]);
        }
        cmd.args(["--step-every-s", "1", "--releases", s(catalogue), "--store-poll-interval-s", "5"]);
        let mut proc = Proc::spawn(cmd.stdout(Stdio::piped()), self.work.path().join("hub.log"));
        let stdout = proc.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the hub's stdout");
        let url = line
            .trim()
            .strip_prefix("hub listening on ")
            .unwrap_or_else(|| panic!("the hub did not come up: {line:?}\n{}", proc.log()))
            .to_string();
        (proc, url)
    }

    /// `agent run` for `store`, polling every second, its metrics on `port`.
    fn agent(&self, hub: &str, store: &str, port: u16) -> Proc {
        let d = self.work.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-fleet"));
        cmd.args(["agent", "run", "--hub", hub, "--store", store, "--threshold", "2", "--interval-s", "1"]);
        for t in &self.trusted {
            cmd.args(["--trusted", t]);
        }
        cmd.args(["--state-dir", s(&d.join(format!("agents/{store}")))]);
        cmd.args(["--terraform", s(&terraform())]);
        cmd.args(["--key", s(&d.join(format!("{store}.sec")))]);
        cmd.args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
        Proc::spawn(cmd.stdout(Stdio::null()), d.join(format!("agent-{store}.log")))
    }
}

#[test]
fn prometheus_scrapes_the_fleet_and_the_right_alerts_fire() {
    let pg = Postgres::start();
    let f = HubFleet::register(&pg.url, &STORES, |i| format!("region-{}", i % 2 + 1));
    let work = f.work.path().to_path_buf();
    let bundles = work.join("bundles");
    let v1 = release(&work, &bundles, "v1", true);
    let bad = release(&work, &bundles, "v2-bad", false);
    let catalogue = work.join("releases.json");
    std::fs::write(
        &catalogue,
        json!([{"name": "v1", "id": v1, "published": "2026-11-01T00:00:00Z"},
               {"name": "v2-bad", "id": bad, "published": "2026-12-01T00:00:00Z"}])
        .to_string(),
    )
    .expect("write");
    let (hub_proc, hub) = f.hub(&bundles, &catalogue);
    let ports: Vec<u16> = STORES.iter().map(|_| free_port()).collect();
    let mut procs = vec![hub_proc];
    procs.extend(STORES.iter().zip(&ports).map(|(st, p)| f.agent(&hub, st, *p)));
    let prom_dir = work.join("prometheus");
    std::fs::create_dir(&prom_dir).expect("mkdir");
    let hub_target = hub.trim_start_matches("http://").to_string();
    let agent_targets: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let prom = Prometheus::start(
        &prom_dir,
        &[("edge-hub", vec![hub_target]), ("edge-agent", agent_targets)],
        &rules_for_the_test(),
    );
    let diag = || {
        let logs: Vec<String> = procs.iter().map(|p| format!("{}:\n{}", p.log.display(), p.log())).collect();
        let targets = get_json(&format!("{}/api/v1/targets", prom.url)).unwrap_or_default();
        format!("{}\n--- prometheus:\n{}\n--- targets: {targets}", logs.join("\n---\n"), prom.proc.log())
    };

    // Every target scraped and parsed: the hub and the three agents.
    until("all four targets up", Duration::from_secs(60), diag, || {
        (prom.value("sum(up{job=~\"edge-hub|edge-agent\"})") == Some(4.0)).then_some(())
    });
    let targets = get_json(&format!("{}/api/v1/targets", prom.url)).expect("targets");
    for t in targets["data"]["activeTargets"].as_array().expect("targets") {
        assert_eq!(t["lastError"], "", "{t}");
    }

    // v1 on every store, through one partition.
    f.start("v1", &json!({"release": v1, "previous": v1, "on_failure": "halt", "partitions": [{"name": "all"}]}));
    until("three stores on v1, the partition passed, as Prometheus sees them", Duration::from_secs(300), diag, || {
        let on_v1 = prom.value("count(edge_store_info{job=\"edge-hub\",release=\"v1\"})");
        let passed = prom.value("edge_rollout_partition_phase{rollout=\"v1\",partition=\"all\",phase=\"passed\"}");
        (on_v1 == Some(3.0) && passed == Some(1.0)).then_some(())
    });
    // The agents' own counters and histogram, per store.
    for st in STORES {
        let ok = prom.value(&format!("edge_agent_applies_total{{store=\"{st}\",result=\"succeeded\"}}"));
        assert!(ok.is_some_and(|n| n >= 1.0), "{st}: {ok:?}");
        let n = prom.value(&format!("edge_agent_apply_duration_seconds_count{{store=\"{st}\"}}"));
        assert!(n.is_some_and(|n| n >= 1.0), "{st}: {n:?}");
        let inf = prom.value(&format!("edge_agent_apply_duration_seconds_bucket{{store=\"{st}\",le=\"+Inf\"}}"));
        assert_eq!(inf, n, "{st}: the +Inf bucket counts every apply");
        assert_eq!(prom.value(&format!("edge_agent_release_info{{store=\"{st}\"}}")), Some(1.0), "{st}");
        // One release behind the newest in the catalogue (v2-bad).
        assert_eq!(prom.value(&format!("edge_store_releases_behind{{store=\"{st}\"}}")), Some(1.0), "{st}");
    }
    // Recording rules are evaluated from the scraped series.
    assert_eq!(prom.value("edge:stores:count_by_release{release=\"v1\"}"), Some(3.0));
    assert_eq!(prom.value("edge:stores_n_minus_2_or_older:count"), Some(0.0));
    let halted = |prom: &Prometheus| -> Vec<Value> {
        prom.alerts()
            .into_iter()
            .filter(|(n, _, _)| n == "EdgeRolloutHalted")
            .map(|(_, st, l)| json!([st, l]))
            .collect()
    };
    assert!(halted(&prom).is_empty(), "halted before any failure: {:?}", halted(&prom));

    // The stores' nightly evidence, signed and posted as their agents do: store-003's newest
    // backup is two days old, store-002's restore test failed, store-001 is healthy.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (i, st) in STORES.iter().enumerate() {
        let mut rec = common::evidence(st, *st == "store-002");
        rec.collected_at =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");
        for b in &mut rec.backups {
            b.last_backup_time = if *st == "store-003" { now - 2 * 86400 } else { now - 3600 };
        }
        let env = edge_fleet::evidence::sign_record(&rec, &f.keys[i]);
        let r = reqwest::blocking::Client::new()
            .post(format!("{hub}/v1/evidence"))
            .header("content-type", "application/json")
            .body(env.to_json())
            .send()
            .expect("POST /v1/evidence");
        assert_eq!(r.status().as_u16(), 202, "{st}: {:?}", r.text());
    }
    let by_alert = |prom: &Prometheus, name: &str| -> Vec<String> {
        let mut stores: Vec<String> = prom
            .alerts()
            .into_iter()
            .filter(|(n, st, _)| n == name && st == "firing")
            .filter_map(|(_, _, l)| l["store"].as_str().map(String::from))
            .collect();
        stores.sort();
        stores
    };
    until("EdgeBackupStale and EdgeRestoreTestFailed firing", Duration::from_secs(120), diag, || {
        (by_alert(&prom, "EdgeBackupStale") == ["store-003"]
            && by_alert(&prom, "EdgeRestoreTestFailed") == ["store-002"])
        .then_some(())
    });
    let backups = prom.query("edge_store_last_backup_timestamp_seconds{job=\"edge-hub\"}");
    assert_eq!(backups.len(), 3, "{backups:?}");

    // The failure: a release whose apply fails, on a one-store canary with no failure budget.
    f.start(
        "v2-bad",
        &json!({"release": bad, "previous": v1, "on_failure": "halt_and_revert", "partitions": [
            {"name": "canary", "stores": ["store-001"], "max_failed": 0},
            {"name": "rest", "soak_s": 0}]}),
    );
    let firing = until("EdgeRolloutHalted firing", Duration::from_secs(300), diag, || {
        let a = halted(&prom);
        a.iter().any(|x| x[0] == "firing").then_some(a)
    });
    assert_eq!(firing.len(), 1, "one partition halted: {firing:?}");
    let labels = &firing[0][1];
    assert_eq!(
        (labels["rollout"].as_str(), labels["partition"].as_str()),
        (Some("v2-bad"), Some("canary")),
        "{labels}"
    );
    assert_eq!(labels["severity"], "critical");
    // The canary store's agent counted its failed apply; the other stores never applied it.
    until("store-001's failed apply scraped", Duration::from_secs(60), diag, || {
        prom.value("edge_agent_applies_total{store=\"store-001\",result=\"failed\"}").filter(|n| *n >= 1.0)
    });
    for st in ["store-002", "store-003"] {
        let failed = prom.query(&format!("edge_agent_applies_total{{store=\"{st}\",result=\"failed\"}}"));
        assert!(failed.is_empty(), "{st}: {failed:?}\n{}", diag());
    }

    // Every query of the dashboard and every rule runs on this Prometheus (Grafana's
    // `$__rate_interval` given a value), and the rollout panels show this rollout.
    let rules = rules_for_the_test();
    let rule_exprs = rules.lines().filter_map(|l| l.trim_start().strip_prefix("expr:")).map(str::trim);
    let rule_exprs: Vec<String> = rule_exprs.filter(|e| *e != ">-").map(String::from).collect();
    assert!(!rule_exprs.is_empty());
    for (title, e) in common::dashboard_exprs() {
        let q = e.replace("$__rate_interval", "1m");
        let v = get_json(&format!("{}/api/v1/query?query={}", prom.url, url_encode(&q)));
        assert!(v.as_ref().is_some_and(|v| v["status"] == "success"), "{title}: {q}: {v:?}");
    }
    for e in &rule_exprs {
        let v = get_json(&format!("{}/api/v1/query?query={}", prom.url, url_encode(e)));
        assert!(v.as_ref().is_some_and(|v| v["status"] == "success"), "{e}: {v:?}");
    }
    let phases = prom.query("max by (rollout, partition, phase) (edge_rollout_partition_phase) == 1");
    let phases: Vec<(String, String)> = phases
        .iter()
        .map(|s| {
            (
                s["metric"]["partition"].as_str().unwrap_or_default().into(),
                s["metric"]["phase"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert!(phases.contains(&("canary".into(), "reverted".into())), "{phases:?}");

    // Nothing left running: Prometheus, the agents (and any terraform they started), the hub.
    drop(prom);
    drop(procs);
    poll("no process of the test left", Duration::from_secs(30), || {
        let left = processes_mentioning(&work);
        left.is_empty().then_some(())
    });
}
