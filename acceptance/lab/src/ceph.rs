//! A real, small Ceph cluster (Debian ceph 16.2: 1 mon + 1 mgr + N memstore OSDs on 127.0.0.1)
//! living entirely under one directory, and typed wrappers around the `ceph`/`rados` commands
//! the PVE pool API needs.
//!
//! Layout of `dir`: `ceph.conf`, `cluster.json` (fsid, ports, OSD uuids), `keyring` (client.admin),
//! `mon.a/`, `mgr.x/`, `osd.N/` (daemon data + keyrings), `run/` (pid files, admin sockets),
//! `log/`. Daemons fork into the background and are tracked only through `run/*.pid`, checked
//! against `/proc/PID/cmdline` containing this cluster's `ceph.conf` path.
//!
//! Persistence: the mon keeps its store on disk, so pools, auth and the OSD map survive a
//! stop/start. memstore OSDs keep objects in RAM and only write them to `osd.N/` on a clean
//! shutdown (SIGTERM while the mon is still up, which is what [`CephCluster::stop`] does); after
//! an unclean kill (SIGKILL, machine reboot) the objects are gone and PGs may stay unknown: wipe
//! the directory and re-create pools from the lab's own state.
//!
//! Keep `dir` short (unix socket paths are limited to 107 bytes: `DIR/run/osd.N.asok`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::peers_util::{self as util, UtilError};

/// Errors from starting or talking to the cluster. Command failures carry Ceph's stderr.
#[derive(Debug, thiserror::Error)]
pub enum CephError {
    #[error(transparent)]
    Util(#[from] UtilError),
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command { cmd: String, status: String, stderr: String },
    #[error("parsing the output of `{cmd}`: {message}")]
    Parse { cmd: String, message: String },
    #[error("{what} in {dir} did not become ready within {secs} s; last state: {last}")]
    NotReady { what: String, dir: PathBuf, secs: u64, last: String },
    #[error("no Ceph cluster in {0} (missing cluster.json)")]
    NotFound(PathBuf),
    #[error("the Ceph cluster in {0} is not running (mon.a pid file missing or stale)")]
    NotRunning(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

impl CephError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        CephError::Util(UtilError::Io { path: path.to_path_buf(), source })
    }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct CephOptions {
    /// msgr2 port of mon.a (Ceph default 3300). Give each concurrent lab its own.
    pub mon_v2_port: u16,
    /// legacy msgr1 port of mon.a (Ceph default 6789).
    pub mon_v1_port: u16,
    /// Number of memstore OSDs (3 by default, like a 3-node store).
    pub osds: u32,
    /// Bytes each memstore OSD may hold (RAM, allocated as data arrives).
    pub osd_bytes: u64,
    /// Directory holding the ceph binaries; `None` = `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// How long `start` waits for HEALTH_OK with every OSD up and every PG active+clean.
    pub ready_timeout: Duration,
    /// Upper bound for any single CLI call.
    pub cmd_timeout: Duration,
}

impl Default for CephOptions {
    fn default() -> Self {
        CephOptions {
            mon_v2_port: 3300,
            mon_v1_port: 6789,
            osds: 3,
            osd_bytes: 1 << 30,
            bin_dir: None,
            ready_timeout: Duration::from_secs(120),
            cmd_timeout: Duration::from_secs(60),
        }
    }
}

/// What `cluster.json` records, so `attach`/restart need nothing but the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterMeta {
    fsid: String,
    mon_v2_port: u16,
    mon_v1_port: u16,
    osds: Vec<OsdMeta>,
    bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OsdMeta {
    id: u32,
    uuid: String,
}

/// One pool as `ceph osd pool ls detail -f json` reports it (the fields PVE's pool API uses).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PoolDetail {
    #[serde(rename = "pool_id")]
    pub id: i64,
    #[serde(rename = "pool_name")]
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub pg_num: u32,
    #[serde(default)]
    pub pg_num_target: u32,
    #[serde(default)]
    pub pg_autoscale_mode: String,
    #[serde(default)]
    pub application_metadata: BTreeMap<String, serde_json::Value>,
    pub crush_rule: i64,
    /// 1 = replicated, 3 = erasure.
    #[serde(rename = "type")]
    pub pool_type: i64,
    #[serde(default)]
    pub erasure_code_profile: String,
    /// pg_num_min, target_size_bytes, target_size_ratio, … when set.
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

impl PoolDetail {
    /// `replicated` or `erasure`, as PVE names them.
    pub fn type_name(&self) -> &'static str {
        if self.pool_type == 3 {
            "erasure"
        } else {
            "replicated"
        }
    }
}

/// Usage of one pool from `ceph df detail -f json`. Note the mgr aggregates OSD stats every
/// few seconds (`mgr stats period = 1` here), so fresh writes show up after a short delay.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PoolStats {
    pub bytes_used: u64,
    pub percent_used: f64,
    pub max_avail: u64,
    pub objects: u64,
    #[serde(default)]
    pub stored: u64,
}

/// Parameters of a new pool, in the order PVE applies them (create, then `osd pool set`s,
/// then `application enable`).
#[derive(Debug, Clone, Default)]
pub struct PoolCreate {
    pub name: String,
    pub pg_num: u32,
    pub size: Option<u32>,
    pub min_size: Option<u32>,
    pub application: Option<String>,
    /// `on`, `off` or `warn`.
    pub pg_autoscale_mode: Option<String>,
    /// CRUSH rule name (`replicated_rule` exists by default).
    pub crush_rule: Option<String>,
    pub pg_num_min: Option<u32>,
    pub target_size_bytes: Option<u64>,
    pub target_size_ratio: Option<f64>,
    /// Create an erasure-coded pool with this profile (see [`CephCluster::erasure_code_profile_set`]).
    /// `allow_ec_overwrites` is switched on (RBD needs it); size/min_size come from the profile.
    pub erasure_code_profile: Option<String>,
}

/// An erasure-code profile as PVE's `erasure-coding` property string describes it.
#[derive(Debug, Clone, Default)]
pub struct EcProfile {
    pub k: u32,
    pub m: u32,
    /// `osd` or `host` (everything is one host here, so only `osd` gives placeable PGs).
    pub failure_domain: Option<String>,
    pub device_class: Option<String>,
}

/// Cluster health summary from `ceph status -f json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CephStatus {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub health: String,
    /// Names of failing health checks (e.g. `POOL_APP_NOT_ENABLED`).
    pub checks: Vec<String>,
    pub num_osds: u64,
    pub num_up_osds: u64,
    pub num_in_osds: u64,
    pub num_pgs: u64,
    pub pgs_active_clean: u64,
    pub fsid: String,
}

const TOOLS: &[&str] = &["ceph", "rados", "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-authtool", "monmaptool"];

/// Handle on a cluster living in a directory. Cheap to clone; holds no processes (the daemons
/// run detached and are found through their pid files).
#[derive(Debug, Clone)]
pub struct CephCluster {
    dir: PathBuf,
    conf: PathBuf,
    meta: ClusterMeta,
    cmd_timeout: Duration,
}

impl CephCluster {
    /// Starts a cluster in `dir`: bootstraps a new one when `dir/cluster.json` is absent,
    /// otherwise restarts whichever daemons are not running (state kept; the ports recorded at
    /// bootstrap win over `opts`). Returns once health is HEALTH_OK, every OSD is up and in
    /// and every PG is active+clean, or fails after `opts.ready_timeout`; on failure every
    /// daemon it started is stopped again. A bootstrap that failed half-way leaves a directory
    /// that cannot be resumed: wipe it.
    pub async fn start(dir: &Path, opts: &CephOptions) -> Result<CephCluster, CephError> {
        for t in TOOLS {
            util::find_tool(t, opts.bin_dir.as_deref())?;
        }
        std::fs::create_dir_all(dir).map_err(|e| CephError::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| CephError::io(dir, e))?;
        let started = Instant::now();
        let res = async {
            let cluster = if dir.join("cluster.json").exists() {
                let c = Self::open(&dir, opts.cmd_timeout)?;
                c.resume().await?;
                c
            } else {
                Self::bootstrap(&dir, opts).await?
            };
            cluster.wait_ready(opts.ready_timeout).await?;
            Ok(cluster)
        }
        .await;
        match res {
            Ok(cluster) => {
                tracing::info!(dir = %dir.display(), secs = started.elapsed().as_secs_f64(), "ceph ready");
                Ok(cluster)
            }
            Err(e) => {
                // Leave nothing running behind a failed start (cleanly, so state survives).
                if let Ok(c) = Self::open(&dir, opts.cmd_timeout) {
                    let _ = c.stop().await;
                }
                Err(e)
            }
        }
    }

    /// Re-opens a running cluster (no waiting, no starting). Fails when mon.a is not running.
    pub fn attach(dir: &Path) -> Result<CephCluster, CephError> {
        let c = Self::open(dir, CephOptions::default().cmd_timeout)?;
        if !c.daemon_running("mon.a") {
            return Err(CephError::NotRunning(c.dir.clone()));
        }
        Ok(c)
    }

    /// Opens the cluster described in `dir` whether or not its daemons run (to stop leftovers).
    pub fn open_dir(dir: &Path) -> Result<CephCluster, CephError> {
        Self::open(dir, CephOptions::default().cmd_timeout)
    }

    fn open(dir: &Path, cmd_timeout: Duration) -> Result<CephCluster, CephError> {
        let dir = dir.canonicalize().map_err(|_| CephError::NotFound(dir.to_path_buf()))?;
        let path = dir.join("cluster.json");
        let raw = std::fs::read(&path).map_err(|_| CephError::NotFound(dir.clone()))?;
        let meta: ClusterMeta = serde_json::from_slice(&raw)
            .map_err(|e| CephError::Parse { cmd: path.display().to_string(), message: e.to_string() })?;
        Ok(CephCluster { conf: dir.join("ceph.conf"), dir, meta, cmd_timeout })
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `ceph.conf` every CLI call uses (`ceph -c PATH …`).
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The client.admin keyring.
    pub fn admin_keyring(&self) -> PathBuf {
        self.dir.join("keyring")
    }

    pub fn fsid(&self) -> &str {
        &self.meta.fsid
    }

    /// `[v2:127.0.0.1:P2,v1:127.0.0.1:P1]`, the mon address as PVE shows it.
    pub fn mon_addr(&self) -> String {
        mon_addrv(self.meta.mon_v2_port, self.meta.mon_v1_port)
    }

    /// Names of the daemons (`mon.a`, `mgr.x`, `osd.0`, …).
    pub fn daemon_names(&self) -> Vec<String> {
        let mut v = vec!["mon.a".to_string(), "mgr.x".to_string()];
        v.extend(self.meta.osds.iter().map(|o| format!("osd.{}", o.id)));
        v
    }

    /// PIDs of the running daemons, by name.
    pub fn daemon_pids(&self) -> BTreeMap<String, u32> {
        self.daemon_names()
            .into_iter()
            .filter_map(|n| {
                let pid = util::read_pid_file(&self.pid_file(&n))?;
                util::pid_alive_matching(pid, &self.needle()).then_some((n, pid))
            })
            .collect()
    }

    /// True when every daemon's pid file points at a live process of this cluster.
    pub fn is_running(&self) -> bool {
        self.daemon_names().iter().all(|n| self.daemon_running(n))
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.join("run").join(format!("{name}.pid"))
    }

    fn needle(&self) -> String {
        self.conf.display().to_string()
    }

    fn daemon_running(&self, name: &str) -> bool {
        util::read_pid_file(&self.pid_file(name)).is_some_and(|pid| util::pid_alive_matching(pid, &self.needle()))
    }

    fn bin(&self, tool: &str) -> Result<PathBuf, CephError> {
        Ok(util::find_tool(tool, self.meta.bin_dir.as_deref())?)
    }

    // ---------------------------------------------------------------- bootstrap / restart

    async fn bootstrap(dir: &Path, opts: &CephOptions) -> Result<CephCluster, CephError> {
        if opts.osds == 0 {
            return Err(CephError::Invalid("a cluster needs at least one OSD".into()));
        }
        let fsid = util::random_uuid();
        let meta = ClusterMeta {
            fsid: fsid.clone(),
            mon_v2_port: opts.mon_v2_port,
            mon_v1_port: opts.mon_v1_port,
            osds: (0..opts.osds).map(|id| OsdMeta { id, uuid: util::random_uuid() }).collect(),
            bin_dir: opts.bin_dir.clone(),
        };
        for sub in ["run", "log", "mon.a", "mgr.x"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| CephError::io(&p, e))?;
        }
        let conf = dir.join("ceph.conf");
        util::write_atomic(&conf, render_conf(dir, &meta, opts.osd_bytes).as_bytes())?;
        let c = CephCluster { dir: dir.to_path_buf(), conf, meta, cmd_timeout: opts.cmd_timeout };

        // Keys: mon. and client.admin, the admin key imported into the mon's bootstrap keyring.
        let mon_keyring = dir.join("mon.keyring");
        let admin_keyring = c.admin_keyring();
        let s = |p: &Path| p.display().to_string();
        c.tool(
            "ceph-authtool",
            &["--create-keyring", &s(&mon_keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"],
        )
        .await?;
        c.tool(
            "ceph-authtool",
            &[
                "--create-keyring",
                &s(&admin_keyring),
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mds",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ],
        )
        .await?;
        c.tool("ceph-authtool", &[&s(&mon_keyring), "--import-keyring", &s(&admin_keyring)]).await?;
        let monmap = dir.join("monmap");
        c.tool("monmaptool", &["--create", "--fsid", &fsid, "--addv", "a", &c.mon_addr(), &s(&monmap)]).await?;
        c.tool(
            "ceph-mon",
            &["-c", &s(&c.conf), "--mkfs", "-i", "a", "--monmap", &s(&monmap), "--keyring", &s(&mon_keyring)],
        )
        .await?;
        // Written before any daemon runs, so a failed bootstrap can still be stopped/attached.
        let meta_json = serde_json::to_vec_pretty(&c.meta)
            .map_err(|e| CephError::Parse { cmd: "cluster.json".into(), message: e.to_string() })?;
        util::write_atomic(&dir.join("cluster.json"), &meta_json)?;

        c.spawn_daemon("ceph-mon", "a").await?;
        c.wait_mon().await?;

        let mgr_keyring = dir.join("mgr.x").join("keyring");
        c.ceph(&[
            "auth",
            "get-or-create",
            "mgr.x",
            "mon",
            "allow profile mgr",
            "osd",
            "allow *",
            "mds",
            "allow *",
            "-o",
            &s(&mgr_keyring),
        ])
        .await?;
        c.spawn_daemon("ceph-mgr", "x").await?;

        // OSDs are independent of each other: create them concurrently (~2 s each otherwise).
        let mut set = tokio::task::JoinSet::new();
        for osd in c.meta.osds.clone() {
            let c2 = c.clone();
            set.spawn(async move { c2.create_osd(&osd).await });
        }
        while let Some(res) = set.join_next().await {
            res.map_err(|e| CephError::Invalid(format!("OSD task failed: {e}")))??;
        }
        Ok(c)
    }

    async fn create_osd(&self, osd: &OsdMeta) -> Result<(), CephError> {
        // Register the key with the mon first (`--mkkey` on a cephx cluster cannot), then mkfs.
        let key = self.tool("ceph-authtool", &["--gen-print-key"]).await?;
        let key = key.trim();
        let secret = serde_json::json!({ "cephx_secret": key }).to_string();
        self.ceph_stdin(&["osd", "new", &osd.uuid, &osd.id.to_string(), "-i", "-"], secret.as_bytes()).await?;
        let odir = self.dir.join(format!("osd.{}", osd.id));
        std::fs::create_dir_all(&odir).map_err(|e| CephError::io(&odir, e))?;
        let kr = odir.join("keyring");
        std::fs::write(&kr, format!("[osd.{}]\n\tkey = {key}\n", osd.id)).map_err(|e| CephError::io(&kr, e))?;
        self.tool(
            "ceph-osd",
            &["-c", &self.conf.display().to_string(), "-i", &osd.id.to_string(), "--mkfs", "--osd-uuid", &osd.uuid],
        )
        .await?;
        self.spawn_daemon("ceph-osd", &osd.id.to_string()).await
    }

    async fn resume(&self) -> Result<(), CephError> {
        if !self.daemon_running("mon.a") {
            self.spawn_daemon("ceph-mon", "a").await?;
        }
        self.wait_mon().await?;
        if !self.daemon_running("mgr.x") {
            self.spawn_daemon("ceph-mgr", "x").await?;
        }
        let mut set = tokio::task::JoinSet::new();
        for osd in self.meta.osds.clone() {
            if self.daemon_running(&format!("osd.{}", osd.id)) {
                continue;
            }
            let c2 = self.clone();
            set.spawn(async move { c2.spawn_daemon("ceph-osd", &osd.id.to_string()).await });
        }
        while let Some(res) = set.join_next().await {
            res.map_err(|e| CephError::Invalid(format!("OSD task failed: {e}")))??;
        }
        Ok(())
    }

    /// Starts one daemon. Ceph daemons fork: the foreground process exits once the daemon is
    /// initialised, and the daemon writes `run/NAME.pid`. Output goes to `log/NAME.out`.
    async fn spawn_daemon(&self, tool: &str, id: &str) -> Result<(), CephError> {
        let kind = tool.trim_start_matches("ceph-");
        let name = format!("{kind}.{id}");
        let out_path = self.dir.join("log").join(format!("{name}.out"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(|e| CephError::io(&out_path, e))?;
        let err = out.try_clone().map_err(|e| CephError::io(&out_path, e))?;
        // A stale pid file would satisfy the wait below before the new daemon wrote its own.
        let _ = std::fs::remove_file(self.pid_file(&name));
        let bin = self.bin(tool)?;
        let args = ["-c".to_string(), self.conf.display().to_string(), "-i".into(), id.into()];
        let label = util::describe(&bin, &args);
        let mut cmd = Command::new(&bin);
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| UtilError::Spawn { cmd: label.clone(), source })?;
        let status = match tokio::time::timeout(self.cmd_timeout, child.wait()).await {
            Ok(s) => s.map_err(|source| UtilError::Spawn { cmd: label.clone(), source })?,
            Err(_) => return Err(UtilError::Timeout { cmd: label, secs: self.cmd_timeout.as_secs() }.into()),
        };
        if !status.success() {
            return Err(CephError::Command {
                cmd: label,
                status: status.to_string(),
                stderr: format!(
                    "{}\n--- log/{name}.log ---\n{}",
                    util::tail(&out_path, 2000),
                    util::tail(&self.dir.join("log").join(format!("{name}.log")), 2000)
                ),
            });
        }
        let ok = util::poll_until(Duration::from_secs(10), || async { self.daemon_running(&name).then_some(()) }).await;
        if ok.is_none() {
            return Err(CephError::NotReady {
                what: name.clone(),
                dir: self.dir.clone(),
                secs: 10,
                last: format!(
                    "no live pid in run/{name}.pid; log tail: {}",
                    util::tail(&self.dir.join("log").join(format!("{name}.log")), 2000)
                ),
            });
        }
        tracing::debug!(daemon = %name, "started");
        Ok(())
    }

    async fn wait_mon(&self) -> Result<(), CephError> {
        let last = RefCell::new(String::new());
        let ok = util::poll_until(Duration::from_secs(30), || async {
            match self.ceph(&["mon", "stat"]).await {
                Ok(_) => Some(()),
                Err(e) => {
                    *last.borrow_mut() = e.to_string();
                    None
                }
            }
        })
        .await;
        let last = last.into_inner();
        ok.ok_or_else(|| CephError::NotReady { what: "mon.a".into(), dir: self.dir.clone(), secs: 30, last })
    }

    /// Polls `ceph status` until HEALTH_OK, all OSDs up+in and all PGs active+clean.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<CephStatus, CephError> {
        let want = self.meta.osds.len() as u64;
        let last = RefCell::new(String::from("no answer yet"));
        let res = util::poll_until(timeout, || async {
            match self.status().await {
                Ok(s) => {
                    // Right after a (re)start the mgr's PG map is empty or stale; it is only
                    // trustworthy once it covers every PG of every pool in the OSD map.
                    let expected_pgs = match self.pools().await {
                        Ok(pools) => pools.iter().map(|p| u64::from(p.pg_num)).sum(),
                        Err(_) => u64::MAX,
                    };
                    let ready = s.health == "HEALTH_OK"
                        && s.num_up_osds == want
                        && s.num_in_osds == want
                        && s.num_pgs == expected_pgs
                        && s.pgs_active_clean == s.num_pgs;
                    *last.borrow_mut() = format!("{s:?}");
                    ready.then_some(s)
                }
                Err(e) => {
                    *last.borrow_mut() = e.to_string();
                    None
                }
            }
        })
        .await;
        let last = last.into_inner();
        res.ok_or_else(|| CephError::NotReady {
            what: "cluster".into(),
            dir: self.dir.clone(),
            secs: timeout.as_secs(),
            last,
        })
    }

    /// Stops every daemon by its pid file and waits for it to exit: OSDs first (while the mon
    /// is up, so they shut down cleanly and memstore saves its objects), then mgr, then mon.
    /// Anything still alive after 20 s gets SIGKILL.
    pub async fn stop(&self) -> Result<(), CephError> {
        let needle = self.needle();
        let pids = |names: &[String]| -> Vec<(u32, String)> {
            names.iter().filter_map(|n| util::read_pid_file(&self.pid_file(n))).map(|p| (p, needle.clone())).collect()
        };
        let osds: Vec<String> = self.meta.osds.iter().map(|o| format!("osd.{}", o.id)).collect();
        let mut left = Vec::new();
        for group in [osds, vec!["mgr.x".to_string()], vec!["mon.a".to_string()]] {
            left.extend(util::terminate_all(&pids(&group), Duration::from_secs(20)).await);
            for n in &group {
                let _ = std::fs::remove_file(self.pid_file(n));
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(CephError::Invalid(format!("ceph daemons still alive after SIGKILL: {left:?}")))
        }
    }

    /// SIGKILL every daemon of this cluster right now, without waiting (for Drop guards and
    /// panics; memstore objects are lost, see the module docs). Prefer [`stop`](Self::stop).
    pub fn kill_now(&self) {
        for (_, pid) in self.daemon_pids() {
            util::signal(pid, libc::SIGKILL);
        }
    }

    /// Resident memory (bytes) of each running daemon, from /proc/PID/status.
    pub fn daemon_rss(&self) -> BTreeMap<String, u64> {
        self.daemon_pids().into_iter().filter_map(|(n, pid)| Some((n, util::rss_bytes(pid)?))).collect()
    }

    // ---------------------------------------------------------------- commands

    async fn tool(&self, tool: &str, args: &[&str]) -> Result<String, CephError> {
        let bin = self.bin(tool)?;
        self.exec(&bin, args, None).await
    }

    async fn exec(&self, bin: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<String, CephError> {
        let label = util::describe(bin, args);
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let t0 = Instant::now();
        let out = util::run_with_timeout(cmd, &label, stdin, self.cmd_timeout).await?;
        tracing::debug!(cmd = %label, ms = t0.elapsed().as_millis() as u64, ok = out.status.success(), "ceph command");
        if !out.status.success() {
            return Err(CephError::Command {
                cmd: label,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn ceph_args<'a>(&'a self, conf: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["-c", conf, "--connect-timeout", "15"];
        v.extend_from_slice(args);
        v
    }

    /// Runs `ceph -c DIR/ceph.conf ARGS…` and returns stdout; errors carry stderr. For anything
    /// the typed methods do not cover (add `-f json` yourself).
    pub async fn admin_cmd(&self, args: &[&str]) -> Result<String, CephError> {
        self.ceph(args).await
    }

    /// Like [`admin_cmd`](Self::admin_cmd) with `-f json`, parsed.
    pub async fn admin_json(&self, args: &[&str]) -> Result<serde_json::Value, CephError> {
        let mut v = args.to_vec();
        v.extend_from_slice(&["-f", "json"]);
        self.ceph_json(&v).await
    }

    async fn ceph(&self, args: &[&str]) -> Result<String, CephError> {
        let conf = self.conf.display().to_string();
        let bin = self.bin("ceph")?;
        self.exec(&bin, &self.ceph_args(&conf, args), None).await
    }

    async fn ceph_stdin(&self, args: &[&str], stdin: &[u8]) -> Result<String, CephError> {
        let conf = self.conf.display().to_string();
        let bin = self.bin("ceph")?;
        self.exec(&bin, &self.ceph_args(&conf, args), Some(stdin)).await
    }

    async fn ceph_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T, CephError> {
        let out = self.ceph(args).await?;
        serde_json::from_str(&out).map_err(|e| CephError::Parse {
            cmd: format!("ceph {}", args.join(" ")),
            message: format!("{e}; output: {}", truncate(&out, 500)),
        })
    }

    /// Health and counts (`ceph status -f json`).
    pub async fn status(&self) -> Result<CephStatus, CephError> {
        let v: serde_json::Value = self.ceph_json(&["status", "-f", "json"]).await?;
        Ok(parse_status(&v))
    }

    /// Creates a pool the way PVE does: `osd pool create`, then `osd pool set` for each given
    /// option, then `osd pool application enable`.
    pub async fn pool_create(&self, p: &PoolCreate) -> Result<(), CephError> {
        if p.pg_num == 0 {
            return Err(CephError::Invalid("pg_num must be at least 1".into()));
        }
        let pg = p.pg_num.to_string();
        match &p.erasure_code_profile {
            Some(profile) => {
                self.ceph(&["osd", "pool", "create", &p.name, &pg, &pg, "erasure", profile]).await?;
                // RBD on EC needs overwrites; ceph.conf lifts the bluestore-only check.
                self.pool_set(&p.name, "allow_ec_overwrites", "true").await?;
            }
            None => {
                self.ceph(&["osd", "pool", "create", &p.name, &pg, &pg, "replicated"]).await?;
            }
        }
        if let Some(rule) = &p.crush_rule {
            self.pool_set(&p.name, "crush_rule", rule).await?;
        }
        if let Some(v) = p.size {
            self.pool_set(&p.name, "size", &v.to_string()).await?;
        }
        if let Some(v) = p.min_size {
            self.pool_set(&p.name, "min_size", &v.to_string()).await?;
        }
        if let Some(v) = &p.pg_autoscale_mode {
            self.pool_set(&p.name, "pg_autoscale_mode", v).await?;
        }
        if let Some(v) = p.pg_num_min {
            self.pool_set(&p.name, "pg_num_min", &v.to_string()).await?;
        }
        if let Some(v) = p.target_size_bytes {
            self.pool_set(&p.name, "target_size_bytes", &v.to_string()).await?;
        }
        if let Some(v) = p.target_size_ratio {
            self.pool_set(&p.name, "target_size_ratio", &v.to_string()).await?;
        }
        if let Some(app) = &p.application {
            self.pool_application_enable(&p.name, app).await?;
        }
        Ok(())
    }

    /// `ceph osd pool set NAME KEY VALUE` (adds `--yes-i-really-mean-it` for size 1, which
    /// Ceph otherwise refuses).
    pub async fn pool_set(&self, name: &str, key: &str, value: &str) -> Result<(), CephError> {
        let mut args = vec!["osd", "pool", "set", name, key, value];
        if key == "size" && value.trim() == "1" {
            args.push("--yes-i-really-mean-it");
        }
        self.ceph(&args).await.map(|_| ())
    }

    /// `ceph osd pool application enable NAME APP` (`--yes-i-really-mean-it` so a second
    /// application can be added, as PVE allows).
    pub async fn pool_application_enable(&self, name: &str, app: &str) -> Result<(), CephError> {
        self.ceph(&["osd", "pool", "application", "enable", name, app, "--yes-i-really-mean-it"]).await.map(|_| ())
    }

    /// `ceph osd pool rm NAME NAME --yes-i-really-really-mean-it` (ceph.conf allows pool delete).
    pub async fn pool_rm(&self, name: &str) -> Result<(), CephError> {
        self.ceph(&["osd", "pool", "rm", name, name, "--yes-i-really-really-mean-it"]).await.map(|_| ())
    }

    /// Every pool (`ceph osd pool ls detail -f json`), including Ceph's own
    /// `device_health_metrics`, which the mgr creates on a fresh cluster (PVE lists it too).
    pub async fn pools(&self) -> Result<Vec<PoolDetail>, CephError> {
        self.ceph_json(&["osd", "pool", "ls", "detail", "-f", "json"]).await
    }

    /// One pool, or `None` when it does not exist.
    pub async fn pool(&self, name: &str) -> Result<Option<PoolDetail>, CephError> {
        Ok(self.pools().await?.into_iter().find(|p| p.name == name))
    }

    /// CRUSH rule id → name (`ceph osd crush rule dump -f json`), for PVE's `crush_rule_name`.
    pub async fn crush_rules(&self) -> Result<BTreeMap<i64, String>, CephError> {
        #[derive(Deserialize)]
        struct Rule {
            rule_id: i64,
            rule_name: String,
        }
        let rules: Vec<Rule> = self.ceph_json(&["osd", "crush", "rule", "dump", "-f", "json"]).await?;
        Ok(rules.into_iter().map(|r| (r.rule_id, r.rule_name)).collect())
    }

    /// Usage of one pool from `ceph df detail -f json`; `None` when the pool does not exist.
    pub async fn pool_stats(&self, name: &str) -> Result<Option<PoolStats>, CephError> {
        Ok(self.pool_stats_all().await?.remove(name))
    }

    /// Usage of every pool, by name, from one `ceph df detail -f json` (for listing pools
    /// with `bytes_used`/`percent_used` without one CLI call per pool).
    pub async fn pool_stats_all(&self) -> Result<BTreeMap<String, PoolStats>, CephError> {
        #[derive(Deserialize)]
        struct Df {
            pools: Vec<DfPool>,
        }
        #[derive(Deserialize)]
        struct DfPool {
            name: String,
            stats: PoolStats,
        }
        let df: Df = self.ceph_json(&["df", "detail", "-f", "json"]).await?;
        Ok(df.pools.into_iter().map(|p| (p.name, p.stats)).collect())
    }

    /// Writes an object with `rados put` (for tests that need data in a pool).
    pub async fn put_object(&self, pool: &str, name: &str, bytes: &[u8]) -> Result<(), CephError> {
        let conf = self.conf.display().to_string();
        let bin = self.bin("rados")?;
        self.exec(&bin, &["-c", &conf, "-p", pool, "put", name, "-"], Some(bytes)).await.map(|_| ())
    }

    /// Reads an object back with `rados get`.
    pub async fn get_object(&self, pool: &str, name: &str) -> Result<Vec<u8>, CephError> {
        let conf = self.conf.display().to_string();
        let bin = self.bin("rados")?;
        let args = ["-c", conf.as_str(), "-p", pool, "get", name, "-"];
        let label = util::describe(&bin, &args);
        let mut cmd = Command::new(&bin);
        cmd.args(args);
        let out = util::run_with_timeout(cmd, &label, None, self.cmd_timeout).await?;
        if !out.status.success() {
            return Err(CephError::Command {
                cmd: label,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// `ceph osd erasure-code-profile set NAME k=K m=M [crush-failure-domain=…]
    /// [crush-device-class=…]`.
    pub async fn erasure_code_profile_set(&self, name: &str, p: &EcProfile) -> Result<(), CephError> {
        let k = format!("k={}", p.k);
        let m = format!("m={}", p.m);
        let fd = p.failure_domain.as_ref().map(|v| format!("crush-failure-domain={v}"));
        let dc = p.device_class.as_ref().map(|v| format!("crush-device-class={v}"));
        let mut args = vec!["osd", "erasure-code-profile", "set", name, &k, &m];
        args.extend(fd.as_deref());
        args.extend(dc.as_deref());
        self.ceph(&args).await.map(|_| ())
    }

    /// The profile's key/values (`k`, `m`, `crush-failure-domain`, `plugin`, …).
    pub async fn erasure_code_profile_get(&self, name: &str) -> Result<BTreeMap<String, String>, CephError> {
        self.ceph_json(&["osd", "erasure-code-profile", "get", name, "-f", "json"]).await
    }

    /// All profile names.
    pub async fn erasure_code_profile_ls(&self) -> Result<Vec<String>, CephError> {
        self.ceph_json(&["osd", "erasure-code-profile", "ls", "-f", "json"]).await
    }

    pub async fn erasure_code_profile_rm(&self, name: &str) -> Result<(), CephError> {
        self.ceph(&["osd", "erasure-code-profile", "rm", name]).await.map(|_| ())
    }
}

fn mon_addrv(v2: u16, v1: u16) -> String {
    format!("[v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]")
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_status(v: &serde_json::Value) -> CephStatus {
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    // Pacific puts the counts straight under "osdmap"; older releases nest "osdmap.osdmap".
    let osdmap = match v.pointer("/osdmap/osdmap") {
        Some(inner) => inner,
        None => &v["osdmap"],
    };
    let pgs_active_clean = v["pgmap"]["pgs_by_state"]
        .as_array()
        .map(|states| {
            states.iter().filter(|s| s["state_name"].as_str() == Some("active+clean")).map(|s| u(&s["count"])).sum()
        })
        .unwrap_or(0);
    CephStatus {
        health: v["health"]["status"].as_str().unwrap_or("").to_string(),
        checks: v["health"]["checks"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
        num_osds: u(&osdmap["num_osds"]),
        num_up_osds: u(&osdmap["num_up_osds"]),
        num_in_osds: u(&osdmap["num_in_osds"]),
        num_pgs: u(&v["pgmap"]["num_pgs"]),
        pgs_active_clean,
        fsid: v["fsid"].as_str().unwrap_or("").to_string(),
    }
}

/// The whole ceph.conf. Everything (data, pid files, sockets, logs) is under `dir`; only the
/// mon ports are fixed, the mgr and OSDs take free ports from Ceph's 6800–7300 range.
fn render_conf(dir: &Path, meta: &ClusterMeta, osd_bytes: u64) -> String {
    let d = dir.display();
    let mon = mon_addrv(meta.mon_v2_port, meta.mon_v1_port);
    format!(
        "# Written by edge-lab (acceptance/lab/src/ceph.rs). One host, memstore OSDs, no systemd.
[global]
fsid = {fsid}
mon host = {mon}
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd objectstore = memstore
memstore device bytes = {osd_bytes}
# what `pveceph init` writes (PVE/API2/Ceph.pm `init`): a pool made without a size gets 3/2,
# and Ceph resets min_size to min(2, size) when a pool's size changes
osd pool default size = 3
osd pool default min size = 2
# every OSD is on this one host: let replicas go to distinct OSDs instead of hosts
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
# memstore keeps data in RAM: the mon's own disk-space guard (refuses to start below 5 % free)
# would only make the lab fail on a busy shared disk
mon data avail crit = 0
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
# memstore is not bluestore; EC pools for RBD need overwrites anyway
mon debug no require bluestore for ec overwrites = true
# every osdmap change (pool create/set/rm) otherwise waits up to 1 s for the next paxos round
paxos propose interval = 0.1
mgr initial modules = iostat
# a full shutdown unmounts the object store, which is when memstore saves its objects to disk
osd fast shutdown = false
# pool usage (ceph df) follows writes within ~1 s instead of 5
mgr stats period = 1
keyring = {d}/$name/keyring,{d}/keyring
run dir = {d}/run
pid file = {d}/run/$name.pid
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
crash dir = {d}/crash
mon data = {d}/$name
mgr data = {d}/$name
osd data = {d}/$name

[client]
# CLI calls run concurrently: one shared socket path would collide
admin socket =
log file = {d}/log/client.log
client mount timeout = 15
rados mon op timeout = 30
rados osd op timeout = 30
",
        fsid = meta.fsid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_pacific_shape() {
        let v = serde_json::json!({
            "fsid": "f",
            "health": {"status": "HEALTH_WARN", "checks": {"POOL_APP_NOT_ENABLED": {}}},
            "osdmap": {"epoch": 3, "num_osds": 3, "num_up_osds": 2, "num_in_osds": 3},
            "pgmap": {"pgs_by_state": [{"state_name": "active+clean", "count": 5},
                                        {"state_name": "peering", "count": 1}], "num_pgs": 6}
        });
        let s = parse_status(&v);
        assert_eq!(s.health, "HEALTH_WARN");
        assert_eq!(s.checks, vec!["POOL_APP_NOT_ENABLED".to_string()]);
        assert_eq!((s.num_osds, s.num_up_osds, s.num_in_osds), (3, 2, 3));
        assert_eq!((s.num_pgs, s.pgs_active_clean), (6, 5));
    }

    #[test]
    fn conf_keeps_everything_under_dir() {
        let meta =
            ClusterMeta { fsid: "x".into(), mon_v2_port: 13300, mon_v1_port: 16789, osds: vec![], bin_dir: None };
        let c = render_conf(Path::new("/l/c"), &meta, 1 << 30);
        assert!(c.contains("mon host = [v2:127.0.0.1:13300,v1:127.0.0.1:16789]"));
        for line in c.lines().filter(|l| l.contains('/') && !l.starts_with('#')) {
            assert!(line.contains("/l/c/"), "path outside dir: {line}");
        }
    }
}
