//! `edge-bench-hub-load`: simulated store agents against `edge-fleet hub serve`, for
//! `bench/hub/run.sh`.
//!
//! - `keys --stores N --out DIR`: N store keys in Nix's format, made here (`nix key
//!   generate-secret` takes ~0.3 s a key). Writes `DIR/stores.tsv` (name, region, public key: what
//!   `edge-fleet hub register` takes), `DIR/secrets` (name, secret key) and the hub's two
//!   manifest-signing keys `DIR/hub-1.sec`, `DIR/hub-2.sec`.
//! - `run --hub URL --keys DIR --period-s P --window-s W [--seed S]`: one simulated agent per store.
//!   What each store reported last is kept in `DIR/reported` between runs (an agent's memory).
//!   Each polls `GET /channels/<store>.json` every P seconds — the stores' first polls spread
//!   evenly over the first period, in a seeded random order — and, when the manifest names a
//!   release the store has not reported yet, posts a report on it signed with the store's key,
//!   as `edge-fleet agent` signs one (`StatusReport` under `edgeform-report-v1\n`, canonical
//!   JSON). Each agent has its own HTTP client, so its own connection, as a store has. No poll
//!   starts after W seconds. Prints `name value` lines: request counts by status, latency
//!   percentiles (ms, request sent → body read), how late the schedule ran, and this process's
//!   own CPU time.
//! - `run … --once`: every store polls once and reports (16 at a time), no schedule: to get the
//!   fleet onto a first release before anything is measured.
//!
//! The simulated agents apply nothing and do not check the manifest's signatures (that is the
//! store's CPU, not the hub's): they report `succeeded` as soon as they see a new release.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_images::canonical;
use edge_images::keys::SecretKey;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `fleet/src/agent.rs` `REPORT_DOMAIN` (private there; the hub refuses a report signed under
/// anything else, and the run fails on any refused report).
const REPORT_DOMAIN: &[u8] = b"edgeform-report-v1\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keys") => keys(&Flags::parse(&args[1..])),
        Some("run") => tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(run(Flags::parse(&args[1..])))),
        _ => Err("usage: edge-bench-hub-load keys --stores N --out DIR | run --hub URL --keys DIR --period-s P --window-s W [--seed S] [--once]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-bench-hub-load: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Flags(BTreeMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Self {
        let mut m = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(k) = a.strip_prefix("--") else { continue };
            match it.peek() {
                Some(v) if !v.starts_with("--") => {
                    m.insert(k.to_string(), it.next().cloned().unwrap_or_default());
                }
                _ => {
                    m.insert(k.to_string(), String::new());
                }
            }
        }
        Self(m)
    }
    fn get(&self, k: &str) -> Result<&str, String> {
        self.0.get(k).map(String::as_str).ok_or_else(|| format!("--{k} is required"))
    }
    fn num(&self, k: &str, default: f64) -> Result<f64, String> {
        self.0.get(k).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{k} {v}: not a number")))
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

fn keys(f: &Flags) -> Result<(), String> {
    let n = f.num("stores", 500.0)? as usize;
    let out = PathBuf::from(f.get("out")?);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (mut stores, mut secrets) = (String::new(), String::new());
    for i in 1..=n {
        let name = format!("store-{i:03}");
        let k = SecretKey::generate(&name).map_err(|e| e.to_string())?;
        stores += &format!("{name}\tregion-{}\t{}\n", (i - 1) % 3 + 1, k.public());
        secrets += &format!("{name}\t{}\n", k.to_nix_string());
    }
    let write = |file: &str, s: &str| std::fs::write(out.join(file), s).map_err(|e| format!("{file}: {e}"));
    write("stores.tsv", &stores)?;
    write("secrets", &secrets)?;
    for name in ["hub-1", "hub-2"] {
        let k = SecretKey::generate(name).map_err(|e| e.to_string())?;
        write(&format!("{name}.sec"), &k.to_nix_string())?;
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    /// Per request kind ("get", "post"): latencies, and counts per HTTP status (0: no answer).
    latency: BTreeMap<&'static str, Vec<Duration>>,
    status: BTreeMap<(&'static str, u16), u64>,
    /// How late a poll started against its schedule (the load generator keeping up).
    late: Vec<Duration>,
}

impl Stats {
    fn record(&mut self, kind: &'static str, status: u16, took: Duration) {
        self.latency.entry(kind).or_default().push(took);
        *self.status.entry((kind, status)).or_default() += 1;
    }
}

struct Store {
    name: String,
    key: SecretKey,
    http: reqwest::Client,
    /// The last release this store reported on.
    reported: Option<String>,
}

async fn run(f: Flags) -> Result<(), String> {
    let hub = f.get("hub")?.trim_end_matches('/').to_string();
    let dir = PathBuf::from(f.get("keys")?);
    let text = std::fs::read_to_string(dir.join("secrets")).map_err(|e| format!("{}/secrets: {e}", dir.display()))?;
    let memory = dir.join("reported");
    let reported: BTreeMap<String, String> = std::fs::read_to_string(&memory)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(s, r)| (s.to_string(), r.to_string())))
        .collect();
    let mut stores = Vec::new();
    for line in text.lines() {
        let (name, secret) = line.split_once('\t').ok_or("secrets: not `name<TAB>key` lines")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| e.to_string())?;
        let key = SecretKey::parse(secret).map_err(|e| e.to_string())?;
        let last = reported.get(name).cloned();
        stores.push(Store { name: name.to_string(), key, http, reported: last });
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let tasks = if f.has("once") {
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for mut s in stores {
            let (hub, stats, gate) = (hub.clone(), stats.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await;
                poll(&hub, &mut s, &stats).await;
                s
            }));
        }
        tasks
    } else {
        let period = Duration::from_secs_f64(f.num("period-s", 60.0)?);
        let window = Duration::from_secs_f64(f.num("window-s", 120.0)?);
        let n = stores.len();
        let order = shuffled(n, f.num("seed", 7.0)? as u64);
        let mut tasks = Vec::new();
        for (i, mut s) in stores.into_iter().enumerate() {
            let (hub, stats) = (hub.clone(), stats.clone());
            let first = started + period.mul_f64(order[i] as f64 / n as f64);
            tasks.push(tokio::spawn(async move {
                let mut at = first;
                while at < started + window {
                    tokio::time::sleep_until(at.into()).await;
                    let late = Instant::now().saturating_duration_since(at);
                    stats.lock().unwrap_or_else(|e| e.into_inner()).late.push(late);
                    poll(&hub, &mut s, &stats).await;
                    at += period;
                }
                s
            }));
        }
        tasks
    };
    let mut memory_text = String::new();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())?;
        if let Some(r) = &s.reported {
            memory_text += &format!("{}\t{r}\n", s.name);
        }
    }
    std::fs::write(&memory, memory_text).map_err(|e| format!("{}: {e}", memory.display()))?;
    let wall = started.elapsed();
    let st = stats.lock().unwrap_or_else(|e| e.into_inner());
    println!("load_wall_s {:.3}", wall.as_secs_f64());
    for ((kind, status), count) in &st.status {
        println!("{kind}_{status} {count}");
    }
    for (kind, lat) in &st.latency {
        println!("{kind}s {}", lat.len());
        print_percentiles(kind, lat);
    }
    print_percentiles("late", &st.late);
    println!("self_cpu_s {:.2}", self_cpu_s());
    let refused: u64 = st.status.iter().filter(|((k, s), _)| *k == "post" && *s != 202).map(|(_, c)| c).sum();
    let failed_get: u64 = st.status.iter().filter(|((k, s), _)| *k == "get" && *s != 200).map(|(_, c)| c).sum();
    if refused + failed_get > 0 {
        return Err(format!(
            "{failed_get} polls failed and {refused} reports were not accepted (see the counts above)"
        ));
    }
    Ok(())
}

/// One agent cycle: poll the store's channel, report on a release it has not reported yet.
async fn poll(hub: &str, s: &mut Store, stats: &Mutex<Stats>) {
    let t = Instant::now();
    let (status, body) = match s.http.get(format!("{hub}/channels/{}.json", s.name)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.bytes().await.ok())
        }
        Err(_) => (0, None),
    };
    stats.lock().unwrap_or_else(|e| e.into_inner()).record("get", status, t.elapsed());
    if status != 200 {
        return;
    }
    let Some(channel) =
        body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v.get("channel").cloned())
    else {
        stats.lock().unwrap_or_else(|e| e.into_inner()).record("get", 1, Duration::ZERO);
        return;
    };
    let release = channel["release"].as_str().unwrap_or_default().to_string();
    if s.reported.as_deref() == Some(release.as_str()) {
        return;
    }
    // `fleet/src/agent.rs` StatusReport, as a succeeded apply writes it.
    let report = serde_json::json!({
        "store": s.name,
        "channel": channel["channel"],
        "version": channel["version"],
        "release": release,
        "outcome": "succeeded",
        "at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "detail": [],
    });
    let signature = s.key.sign(&canonical::signed_bytes(REPORT_DOMAIN, &report));
    let body = serde_json::json!({ "report": report, "signature": signature.to_string() }).to_string();
    let t = Instant::now();
    let status = match s
        .http
        .post(format!("{hub}/v1/reports"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }
        Err(_) => 0,
    };
    stats.lock().unwrap_or_else(|e| e.into_inner()).record("post", status, t.elapsed());
    if status == 202 {
        s.reported = Some(release);
    }
}

fn print_percentiles(kind: &str, lat: &[Duration]) {
    let mut v: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    println!("{kind}_p50_ms {:.2}", at(0.50));
    println!("{kind}_p90_ms {:.2}", at(0.90));
    println!("{kind}_p99_ms {:.2}", at(0.99));
    println!("{kind}_max_ms {:.2}", at(1.0));
}

/// 0..n in a seeded random order (xorshift64*; the order only spreads the first polls).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    v
}

/// This process's user + system CPU time so far (`/proc/self/stat`, clock ticks of 1/100 s).
fn self_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after_comm.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the command name.
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
}
