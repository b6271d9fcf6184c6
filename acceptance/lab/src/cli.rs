//! The `edge-lab` command line. `up` daemonizes `serve` and waits until every listener answers;
//! `down` stops the serve process and every peer it started, waiting until they are gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::profile::{PbsProfile, Profiles, PveProfile};
use crate::schema::{Product, Schema};
use crate::serve::{LAB_JSON, LOG_FILE, PID_FILE};
use crate::state::{LabOptions, PowerDelay};

#[derive(Parser)]
#[command(name = "edge-lab", about = "Schema-faithful Proxmox VE + PBS store emulator with real peers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the lab in the background; returns when every listener answers.
    Up(UpArgs),
    /// Run the lab in the foreground.
    Serve(UpArgs),
    /// Stop the lab started in DIR (by pid file), wait until it is gone.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show whether the lab in DIR runs, and a summary.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Implemented vs schema endpoints (PVE and PBS).
    Coverage {
        /// List every implemented and missing endpoint.
        #[arg(long)]
        verbose: bool,
    },
    /// Writes the structural schemas the lab embeds (acceptance/lab/schemas) from Proxmox's
    /// published ones: the reference copies in `--from DIR`, or the pinned upstream files
    /// downloaded and checked by sha256 (`--download`).
    Schemas {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, conflicts_with = "download", required_unless_present = "download")]
        from: Option<PathBuf>,
        #[arg(long)]
        download: bool,
    },
}

#[derive(Args, Clone)]
struct UpArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    stores: u32,
    #[arg(long, default_value_t = 3)]
    nodes_per_store: u32,
    #[arg(long)]
    ceph: bool,
    #[arg(long)]
    redfish: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Second octet of the loopback block (127.K.S.N); parallel labs need different values.
    #[arg(long, default_value_t = 10)]
    net: u8,
    /// How long a node "installs" after booting virtual media.
    #[arg(long, default_value_t = 2000)]
    install_ms: u64,
    /// When the BMC applies power changes: `real` (sushy's fake driver: 1–11 s after the
    /// call, at random) or `instant` (on the next read; for benchmarks).
    #[arg(long, value_enum, default_value_t = PowerDelay::Real)]
    bmc_power_delay: PowerDelay,
    /// Directory served by the artifact HTTP server (default DIR/artifacts).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// The Proxmox VE release the nodes answer as (schema, /version, version-dependent behaviour).
    #[arg(long, value_enum, default_value_t = PveProfile::default())]
    pve: PveProfile,
    /// The Proxmox Backup Server release each store's PBS answers as.
    #[arg(long, value_enum, default_value_t = PbsProfile::default())]
    pbs: PbsProfile,
    /// PVE error bodies as before pve-http-server 5.2.0 (PVE 8.0 to early 8.3): no `message`,
    /// the text only in the HTTP reason phrase.
    #[arg(long)]
    pve_http_server_legacy: bool,
}

impl UpArgs {
    fn options(&self, dir: &Path) -> LabOptions {
        let artifacts = self.artifacts.clone().unwrap_or_else(|| dir.join("artifacts"));
        let artifacts = std::path::absolute(&artifacts).unwrap_or(artifacts);
        LabOptions {
            stores: self.stores.clamp(1, 199),
            nodes_per_store: self.nodes_per_store.clamp(1, 199),
            ceph: self.ceph,
            redfish: self.redfish,
            seed: self.seed,
            net: self.net,
            install_ms: self.install_ms,
            bmc_power_delay: self.bmc_power_delay,
            artifacts_dir: artifacts.display().to_string(),
            profiles: Profiles { pve: self.pve, pbs: self.pbs, pve_http_server_legacy: self.pve_http_server_legacy },
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Up(a) => up(&a),
        Cmd::Serve(a) => serve(&a),
        Cmd::Down { dir } => down(&dir),
        Cmd::Status { dir } => status(&dir),
        Cmd::Coverage { verbose } => coverage(verbose),
        Cmd::Schemas { out, from, download: _ } => schemas(&out, from.as_deref()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(a: &UpArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LAB_LOG").unwrap_or_else(|_| "info".into());
    // `up` sends stderr to DIR/edge-lab.log: colours only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    let opts = a.options(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(crate::serve::run(dir, opts, crate::peers_glue::start_peers))
}

pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // A zombie (exited, not yet reaped) counts as gone.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        if let Some(rest) = stat.rsplit_once(')').map(|x| x.1) {
            if rest.trim_start().starts_with('Z') {
                return false;
            }
        }
    }
    // SAFETY: kill with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()
}

fn up(a: &UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&a.dir)?;
    let dir = a.dir.canonicalize()?;
    if let Some(pid) = read_pid(&dir) {
        if pid_alive(pid) {
            println!("edge-lab already running in {} (pid {pid})", dir.display());
            return Ok(());
        }
    }
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    let old_json = std::fs::read_to_string(dir.join(LAB_JSON)).ok();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(LOG_FILE))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve").arg("--dir").arg(&dir);
    cmd.args(["--stores", &a.stores.to_string(), "--nodes-per-store", &a.nodes_per_store.to_string()]);
    cmd.args(["--seed", &a.seed.to_string(), "--net", &a.net.to_string(), "--install-ms", &a.install_ms.to_string()]);
    cmd.args(["--bmc-power-delay", a.bmc_power_delay.as_str()]);
    cmd.args(["--pve", a.pve.name(), "--pbs", a.pbs.name()]);
    if a.pve_http_server_legacy {
        cmd.arg("--pve-http-server-legacy");
    }
    if a.ceph {
        cmd.arg("--ceph");
    }
    if a.redfish {
        cmd.arg("--redfish");
    }
    if let Some(art) = &a.artifacts {
        cmd.arg("--artifacts").arg(std::path::absolute(art)?);
    }
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // Own process group: the lab outlives the shell or test that ran `up`.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("spawning edge-lab serve")?;
    let pid = child.id() as i32;
    let deadline = started + Duration::from_secs(if a.ceph { 180 } else { 60 });
    let mut delay = Duration::from_millis(20);
    loop {
        // A serve that fails stops what it started itself (and what it refused to start over,
        // peers of an earlier lab, is not ours to stop).
        if let Ok(Some(st)) = child.try_wait() {
            bail!(
                "edge-lab serve exited with {st} before it was ready; see {}\n{}",
                dir.join(LOG_FILE).display(),
                log_tail(&dir)
            );
        }
        if Instant::now() > deadline {
            stop_all(&dir);
            bail!("edge-lab not ready after {:?}; see {}", deadline - started, dir.join(LOG_FILE).display());
        }
        if let Some(v) = read_lab_json(&dir) {
            let fresh = v["pid"].as_i64() == Some(pid as i64)
                && old_json.as_deref().is_none_or(|o| serde_json::from_str::<Value>(o).ok().as_ref() != Some(&v));
            if fresh && listeners_answer(&v) {
                break;
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(Duration::from_millis(250));
    }
    println!(
        "edge-lab up in {:.2}s: {} (pid {pid}, log {})",
        started.elapsed().as_secs_f64(),
        dir.join(LAB_JSON).display(),
        dir.join(LOG_FILE).display()
    );
    Ok(())
}

fn log_tail(dir: &Path) -> String {
    let t = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub fn read_lab_json(dir: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(LAB_JSON)).ok()?).ok()
}

/// Admin answers /lab/health, PBS and every node that should be up accept connections.
fn listeners_answer(v: &Value) -> bool {
    let (Some(ep), Some(token)) = (v["admin"]["endpoint"].as_str(), v["admin"]["token"].as_str()) else {
        return false;
    };
    let Ok((200, snap)) = admin_call(ep, token, "GET", "/lab/snapshot", None) else {
        return false;
    };
    let Ok(snap) = serde_json::from_str::<Value>(&snap) else {
        return false;
    };
    let Some(art) = v["artifacts"]["endpoint"].as_str() else {
        return false;
    };
    if connect(art.trim_start_matches("http://")).is_err() {
        return false;
    }
    for s in snap["stores"].as_array().into_iter().flatten() {
        if connect(&format!("{}:8007", s["pbs"]["address"].as_str().unwrap_or(""))).is_err() {
            return false;
        }
        for n in s["nodes"].as_array().into_iter().flatten() {
            if n["up"].as_bool() == Some(true)
                && connect(&format!("{}:8006", n["address"].as_str().unwrap_or(""))).is_err()
            {
                return false;
            }
        }
    }
    true
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let a: SocketAddr =
        addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    TcpStream::connect_timeout(&a, Duration::from_millis(500))
}

/// Minimal HTTP/1.0 client for the plain-HTTP admin API (no TLS, no keep-alive).
pub fn admin_call(
    endpoint: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, rest.to_string()))
}

/// Stops the lab in `dir` and every peer it started — also when its serve process is gone
/// already (killed, crashed): peers are found by their configuration files under `dir`.
fn down(dir: &Path) -> anyhow::Result<()> {
    let stopped = stop_all(dir);
    if stopped.is_empty() {
        println!("edge-lab: nothing running in {}", dir.display());
    } else {
        println!("edge-lab: stopped {}", stopped.join(", "));
    }
    Ok(())
}

/// The work of `down`; returns what it stopped.
fn stop_all(dir: &Path) -> Vec<String> {
    let mut stopped = Vec::new();
    if let Some(pid) = read_pid(dir).filter(|p| pid_alive(*p)) {
        // SAFETY: plain kill(2) on the pid we recorded.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut delay = Duration::from_millis(20);
        while pid_alive(pid) {
            if Instant::now() > deadline {
                eprintln!("edge-lab: pid {pid} ignored SIGTERM; sending SIGKILL");
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 3 / 2).min(Duration::from_millis(200));
        }
        stopped.push(format!("edge-lab serve (pid {pid})"));
    }
    // Normally none: serve stops its peers on SIGTERM. After a SIGKILL or a crash they run on.
    stopped.extend(crate::peers_glue::stop_leftovers(dir));
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    stopped
}

fn status(dir: &Path) -> anyhow::Result<()> {
    let pid = read_pid(dir);
    let alive = pid.is_some_and(pid_alive);
    println!("dir: {}", dir.display());
    println!("running: {} {}", alive, pid.map(|p| format!("(pid {p})")).unwrap_or_default());
    let Some(v) = read_lab_json(dir) else {
        println!("lab.json: missing");
        return Ok(());
    };
    if !alive {
        return Ok(());
    }
    let ep = v["admin"]["endpoint"].as_str().unwrap_or("");
    let tok = v["admin"]["token"].as_str().unwrap_or("");
    let (code, body) = admin_call(ep, tok, "GET", "/lab/snapshot", None)?;
    if code != 200 {
        bail!("admin API answered {code}: {body}");
    }
    let snap: Value = serde_json::from_str(&body)?;
    for s in snap["stores"].as_array().into_iter().flatten() {
        println!(
            "{}: pools={} backup_jobs={}",
            s["id"].as_str().unwrap_or(""),
            s["pools"].as_object().map(|o| o.len()).unwrap_or(0),
            s["backup_jobs"].as_object().map(|o| o.len()).unwrap_or(0)
        );
        for n in s["nodes"].as_array().into_iter().flatten() {
            println!(
                "  {} {} power={} up={} cluster={}",
                n["name"].as_str().unwrap_or(""),
                n["address"].as_str().unwrap_or(""),
                n["power_on"],
                n["up"],
                n["cluster"]
            );
        }
    }
    println!("tasks: {}", snap["tasks"]);
    println!("api calls: {}", snap["calls"]["total"]);
    Ok(())
}

/// Implemented vs schema endpoints; fails if we claim an endpoint the schema does not have.
pub fn coverage_report(verbose: bool) -> anyhow::Result<String> {
    let mut out = String::new();
    type Endpoints = &'static [(&'static str, &'static str)];
    let profiles: [(Product, Endpoints, &[&str]); 2] = [
        (Product::Pve, crate::pve::IMPLEMENTED, &["8.4", "9.1"]),
        (Product::Pbs, crate::pbs::IMPLEMENTED, &["3.2", "3.4", "4.0"]),
    ];
    for (product, implemented, versions) in profiles {
        for version in versions {
            let schema = Schema::embedded(product, version)?;
            let all = schema.methods();
            let missing_in_schema: Vec<String> = implemented
                .iter()
                .filter(|(m, t)| !all.iter().any(|(am, at)| am == m && at == t))
                .map(|(m, t)| format!("{m} {t}"))
                .collect();
            let pct = 100.0 * implemented.len() as f64 / all.len().max(1) as f64;
            out.push_str(&format!(
                "{product:?} {version}: {} of {} schema endpoints implemented ({pct:.1}%)\n",
                implemented.len(),
                all.len()
            ));
            if !missing_in_schema.is_empty() {
                bail!("{product:?} {version}: implemented but not in the schema: {}", missing_in_schema.join(", "));
            }
        }
        if verbose {
            for (m, t) in implemented {
                out.push_str(&format!("  + {m:6} {t}\n"));
            }
        }
    }
    Ok(out)
}

fn schemas(out: &Path, from: Option<&Path>) -> anyhow::Result<()> {
    let upstream = crate::schemagen::upstream(from)?;
    std::fs::create_dir_all(out)?;
    for (name, bytes) in crate::schemagen::generate(&upstream)? {
        crate::state::write_atomic(&out.join(&name), &bytes)?;
        println!("{} ({} bytes)", out.join(&name).display(), bytes.len());
    }
    Ok(())
}

fn coverage(verbose: bool) -> anyhow::Result<()> {
    print!("{}", coverage_report(verbose)?);
    Ok(())
}
