//! A real BMC emulator (PyPI sushy-tools, `sushy-emulator` with its fake driver) living under
//! one directory, and a small Redfish client for what the lab needs: power, one-time boot
//! override, virtual media.
//!
//! Layout of `dir`: `sushy.conf` (Python config), `htpasswd` (bcrypt), `state/` (the emulator's
//! SQLite state: power, boot device, media survive a restart), `tmp/` (TMPDIR: downloaded
//! virtual-media images land here), `redfish.json` (endpoint + credentials for `attach`),
//! `sushy.pid`, `sushy.log`.
//!
//! Paths in sushy-tools 2.x: `/redfish/v1/Systems/{uuid}`,
//! `/redfish/v1/Systems/{uuid}/Actions/ComputerSystem.Reset`,
//! `/redfish/v1/Systems/{uuid}/VirtualMedia/{Cd,Floppy}[/Actions/VirtualMedia.InsertMedia|EjectMedia]`
//! (sushy-tools' default devices: `Cd` for CD/DVD, `Floppy` for Floppy/USBStick media).
//! Quirks of the fake driver: power changes land 1–11 s after the Reset call (poll with
//! [`RedfishPeer::wait_power`]; `RedfishOptions::instant_power` makes them land at once); `BootSourceOverrideEnabled` always reads back `Continuous`;
//! any boot target is accepted; InsertMedia really downloads the URL (a 404 gives HTTP 400).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::Command;

use crate::peers_util::{self as util, UtilError};

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error(transparent)]
    Util(#[from] UtilError),
    #[error("HTTP {method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status { method: &'static str, url: String, status: u16, body: String },
    #[error("no Redfish emulator in {0} (missing redfish.json)")]
    NotFound(PathBuf),
    #[error("the Redfish emulator in {0} is not running")]
    NotRunning(PathBuf),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Invalid(String),
}

/// One fake server behind the BMC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemSpec {
    /// Redfish system id (sushy uses the UUID as the id).
    pub uuid: String,
    pub name: String,
    /// MAC of its first NIC.
    pub mac: String,
}

/// Where the emulator comes from and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedfishOptions {
    /// `sushy-emulator` to run. `None`: `$EDGE_LAB_SUSHY_EMULATOR`, then the repo's
    /// `.tools/bin/sushy-emulator` (made by scripts/install-deps.sh), then `PATH`.
    pub emulator: Option<PathBuf>,
    pub ready_timeout: Duration,
    /// Per-request timeout (InsertMedia downloads the whole image inside the request).
    pub request_timeout: Duration,
    /// bcrypt cost of the htpasswd entry. The emulator checks it on every request, so the lab
    /// keeps it low (5 ≈ 3 ms); raise it if the endpoint is ever exposed.
    pub bcrypt_cost: u32,
    /// Apply power changes at once instead of sushy's 1–11 s random delay (see
    /// [`INSTANT_POWER_PATCH`]).
    pub instant_power: bool,
}

impl Default for RedfishOptions {
    fn default() -> Self {
        RedfishOptions {
            emulator: None,
            ready_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            bcrypt_cost: 5,
            instant_power: false,
        }
    }
}

/// What `lab.json` publishes about the BMC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedfishEndpoint {
    /// `http://127.0.0.1:PORT/redfish/v1`
    pub base_url: String,
    pub username: String,
    pub password: String,
}

/// What `redfish.json` records for `attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeerMeta {
    endpoint: RedfishEndpoint,
    bind: SocketAddr,
    systems: Vec<SystemSpec>,
}

/// A virtual-media device of sushy-tools' default set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// `Cd`: the installer image.
    Cd,
    /// `Floppy` ("Virtual Removable Media", MediaTypes Floppy/USBStick): the node's seed.
    Removable,
}

impl Device {
    pub fn path(self) -> &'static str {
        match self {
            Device::Cd => "Cd",
            Device::Removable => "Floppy",
        }
    }
}

/// A system's state as the lab's install logic needs it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemState {
    pub power_on: bool,
    /// Raw `PowerState` (`On`, `Off`, …).
    pub power_state: String,
    /// `BootSourceOverrideTarget` (`Cd`, `Hdd`, `Pxe`, …).
    pub boot_override_target: String,
    /// `BootSourceOverrideEnabled` (sushy's fake driver always says `Continuous`).
    pub boot_override_enabled: String,
    pub media_inserted: bool,
    /// URL of the inserted image (`None` when nothing is inserted).
    pub media_image: Option<String>,
    /// URL of what the second device (`Floppy`: removable media) holds, if anything.
    pub removable_image: Option<String>,
}

/// Handle on a running emulator. Holds no process: it is found through `sushy.pid`.
#[derive(Debug, Clone)]
pub struct RedfishPeer {
    dir: PathBuf,
    meta: PeerMeta,
    http: reqwest::Client,
}

fn default_emulator() -> Result<PathBuf, UtilError> {
    if let Some(p) = std::env::var_os("EDGE_LAB_SUSHY_EMULATOR") {
        return Ok(PathBuf::from(p));
    }
    let repo_tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin");
    util::find_tool("sushy-emulator", Some(&repo_tools)).or_else(|_| util::find_tool("sushy-emulator", None)).map_err(
        |_| UtilError::ToolMissing {
            tool: "sushy-emulator".into(),
            looked: format!("$EDGE_LAB_SUSHY_EMULATOR, {}, PATH", repo_tools.display()),
        },
    )
}

impl RedfishPeer {
    /// Starts `sushy-emulator` in `dir` listening on `bind` with the given systems (all powered
    /// off on first start) and basic auth. When an emulator of this directory is already
    /// running, attaches to it instead. Returns once it answers authenticated requests.
    pub async fn start(
        dir: &Path,
        bind: SocketAddr,
        systems: Vec<SystemSpec>,
        username: &str,
        password: &str,
    ) -> Result<RedfishPeer, RedfishError> {
        Self::start_with(dir, bind, systems, username, password, &RedfishOptions::default()).await
    }

    /// [`start`](Self::start) with explicit options.
    pub async fn start_with(
        dir: &Path,
        bind: SocketAddr,
        systems: Vec<SystemSpec>,
        username: &str,
        password: &str,
        opts: &RedfishOptions,
    ) -> Result<RedfishPeer, RedfishError> {
        let emulator = match &opts.emulator {
            Some(p) => p.clone(),
            None => default_emulator()?,
        };
        if !emulator.exists() {
            return Err(UtilError::ToolMissing {
                tool: "sushy-emulator".into(),
                looked: emulator.display().to_string(),
            }
            .into());
        }
        if username.contains(':') || username.is_empty() {
            return Err(RedfishError::Invalid("username must be non-empty and without ':'".into()));
        }
        if let Ok(p) = Self::attach(dir) {
            return Ok(p);
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RedfishError::Util(UtilError::Io { path, source })
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let dir = dir.canonicalize().map_err(io(dir))?;
        for sub in ["state", "tmp"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }

        let hash =
            bcrypt::hash(password, opts.bcrypt_cost).map_err(|e| RedfishError::Invalid(format!("bcrypt: {e}")))?;
        let htpasswd = dir.join("htpasswd");
        write_private(&htpasswd, format!("{username}:{hash}\n").as_bytes())?;
        let conf = dir.join("sushy.conf");
        util::write_atomic(&conf, render_conf(&dir, bind, &systems, opts.instant_power).as_bytes())?;
        let meta = PeerMeta {
            endpoint: RedfishEndpoint {
                base_url: format!("http://{bind}/redfish/v1"),
                username: username.to_string(),
                password: password.to_string(),
            },
            bind,
            systems,
        };
        let meta_json =
            serde_json::to_vec_pretty(&meta).map_err(|e| RedfishError::Invalid(format!("redfish.json: {e}")))?;
        write_private(&dir.join("redfish.json"), &meta_json)?;

        let log_path = dir.join("sushy.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;
        let log2 = log.try_clone().map_err(io(&log_path))?;
        let args = ["--config".to_string(), conf.display().to_string()];
        let label = util::describe(&emulator, &args);
        let mut cmd = Command::new(&emulator);
        cmd.args(&args)
            .env("TMPDIR", dir.join("tmp"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // Own process group: a Ctrl-C aimed at `edge-lab up` must not take the BMC down.
            .process_group(0);
        let child = cmd.spawn().map_err(|source| UtilError::Spawn { cmd: label.clone(), source })?;
        let pid = child.id().ok_or_else(|| RedfishError::NotReady(format!("{label} exited immediately")))?;
        util::write_pid_file(&dir.join("sushy.pid"), pid)?;

        let peer = RedfishPeer::new(dir.clone(), meta, opts.request_timeout)?;
        let child = std::cell::RefCell::new(child);
        let ready = util::poll_until(opts.ready_timeout, || async {
            let exited = child.borrow_mut().try_wait();
            if let Ok(Some(status)) = exited {
                return Some(Err(RedfishError::NotReady(format!(
                    "{label} exited ({status}): {}",
                    util::tail(&log_path, 2000)
                ))));
            }
            peer.get_json("/Systems").await.ok().map(|_| Ok(()))
        })
        .await;
        match ready {
            Some(Ok(())) => {
                tracing::info!(base = %peer.meta.endpoint.base_url, pid, "redfish emulator ready");
                // The child runs on detached; tokio reaps it if it exits while we still run.
                drop(child);
                Ok(peer)
            }
            other => {
                let _ = peer.stop().await;
                Err(match other {
                    Some(Err(e)) => e,
                    _ => RedfishError::NotReady(format!(
                        "{label} did not answer within {} s: {}",
                        opts.ready_timeout.as_secs(),
                        util::tail(&log_path, 2000)
                    )),
                })
            }
        }
    }

    /// Re-opens the emulator running in `dir` (from `redfish.json` and `sushy.pid`).
    pub fn attach(dir: &Path) -> Result<RedfishPeer, RedfishError> {
        let dir = dir.canonicalize().map_err(|_| RedfishError::NotFound(dir.to_path_buf()))?;
        let raw = std::fs::read(dir.join("redfish.json")).map_err(|_| RedfishError::NotFound(dir.clone()))?;
        let meta: PeerMeta =
            serde_json::from_slice(&raw).map_err(|e| RedfishError::Invalid(format!("redfish.json: {e}")))?;
        let peer = RedfishPeer::new(dir, meta, RedfishOptions::default().request_timeout)?;
        if peer.pid().is_none() {
            return Err(RedfishError::NotRunning(peer.dir.clone()));
        }
        Ok(peer)
    }

    fn new(dir: PathBuf, meta: PeerMeta, timeout: Duration) -> Result<Self, RedfishError> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|source| RedfishError::Http {
            method: "BUILD",
            url: meta.endpoint.base_url.clone(),
            source,
        })?;
        Ok(RedfishPeer { dir, meta, http })
    }

    /// PID of the running emulator, `None` when it is not running.
    pub fn pid(&self) -> Option<u32> {
        let pid = util::read_pid_file(&self.dir.join("sushy.pid"))?;
        util::pid_alive_matching(pid, &self.needle()).then_some(pid)
    }

    fn needle(&self) -> String {
        self.dir.join("sushy.conf").display().to_string()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Base URL and credentials, for lab.json.
    pub fn endpoint(&self) -> &RedfishEndpoint {
        &self.meta.endpoint
    }

    pub fn systems_spec(&self) -> &[SystemSpec] {
        &self.meta.systems
    }

    /// Stops the emulator by its pid file (SIGTERM, SIGKILL after 10 s) and waits for exit.
    pub async fn stop(&self) -> Result<(), RedfishError> {
        let pidfile = self.dir.join("sushy.pid");
        if let Some(pid) = util::read_pid_file(&pidfile) {
            let left = util::terminate_all(&[(pid, self.needle())], Duration::from_secs(10)).await;
            if !left.is_empty() {
                return Err(RedfishError::Invalid(format!("sushy-emulator {left:?} still alive after SIGKILL")));
            }
        }
        let _ = std::fs::remove_file(pidfile);
        Ok(())
    }

    /// SIGKILL without waiting (Drop guards, panics).
    pub fn kill_now(&self) {
        if let Some(pid) = self.pid() {
            util::signal(pid, libc::SIGKILL);
        }
    }

    /// Resident memory of the emulator in bytes.
    pub fn rss(&self) -> Option<u64> {
        util::rss_bytes(self.pid()?)
    }

    // ------------------------------------------------------------------ client

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.meta.endpoint.base_url)
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, RedfishError> {
        let url = self.url(path);
        let m = match method {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PATCH" => reqwest::Method::PATCH,
            _ => return Err(RedfishError::Invalid(format!("method {method}"))),
        };
        let ep = &self.meta.endpoint;
        let mut req = self.http.request(m, &url).basic_auth(&ep.username, Some(&ep.password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| RedfishError::Http { method, url: url.clone(), source })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RedfishError::Status { method, url, status: status.as_u16(), body: redfish_message(&body) });
        }
        Ok(resp)
    }

    /// GET a path under `/redfish/v1` and return its JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, RedfishError> {
        let url = self.url(path);
        self.send("GET", path, None).await?.json().await.map_err(|source| RedfishError::Http {
            method: "GET",
            url,
            source,
        })
    }

    /// Ids of all systems the BMC reports.
    pub async fn systems(&self) -> Result<Vec<String>, RedfishError> {
        let v = self.get_json("/Systems").await?;
        Ok(v["Members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|s| s["@odata.id"].as_str())
                    .filter_map(|id| id.rsplit('/').next())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Power, boot override and virtual CD of one system.
    pub async fn system(&self, uuid: &str) -> Result<SystemState, RedfishError> {
        let sys = self.get_json(&format!("/Systems/{uuid}")).await?;
        let cd = self.get_json(&format!("/Systems/{uuid}/VirtualMedia/{}", Device::Cd.path())).await?;
        let removable = self.get_json(&format!("/Systems/{uuid}/VirtualMedia/{}", Device::Removable.path())).await?;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let power_state = s(&sys["PowerState"]);
        let image = s(&cd["Image"]);
        let inserted = cd["Inserted"].as_bool().unwrap_or(false);
        let removable_image =
            Some(s(&removable["Image"])).filter(|i| !i.is_empty() && removable["Inserted"].as_bool().unwrap_or(false));
        Ok(SystemState {
            power_on: power_state == "On",
            power_state,
            boot_override_target: s(&sys["Boot"]["BootSourceOverrideTarget"]),
            boot_override_enabled: s(&sys["Boot"]["BootSourceOverrideEnabled"]),
            media_inserted: inserted,
            media_image: (inserted && !image.is_empty()).then_some(image),
            removable_image,
        })
    }

    /// `ComputerSystem.Reset` with `On` or `ForceOff`. Lands 1–11 s later: see `wait_power`.
    pub async fn set_power(&self, uuid: &str, on: bool) -> Result<(), RedfishError> {
        self.reset(uuid, if on { "On" } else { "ForceOff" }).await
    }

    /// `ComputerSystem.Reset` with any ResetType (`ForceRestart`, `GracefulShutdown`, …).
    pub async fn reset(&self, uuid: &str, reset_type: &str) -> Result<(), RedfishError> {
        self.send(
            "POST",
            &format!("/Systems/{uuid}/Actions/ComputerSystem.Reset"),
            Some(json!({ "ResetType": reset_type })),
        )
        .await
        .map(|_| ())
    }

    /// PATCH `Boot.BootSourceOverrideTarget` (`Cd`, `Hdd`, `Pxe`) and `…Enabled`
    /// (`Once` or `Continuous`).
    pub async fn set_boot_override(&self, uuid: &str, target: &str, once: bool) -> Result<(), RedfishError> {
        let enabled = if once { "Once" } else { "Continuous" };
        self.send(
            "PATCH",
            &format!("/Systems/{uuid}"),
            Some(json!({ "Boot": {
                "BootSourceOverrideTarget": target,
                "BootSourceOverrideEnabled": enabled,
            }})),
        )
        .await
        .map(|_| ())
    }

    /// `VirtualMedia.InsertMedia` on the CD: the emulator downloads `url` before answering
    /// (an unreachable URL or a 404 fails with HTTP 400 and the emulator's message).
    pub async fn insert_media(&self, uuid: &str, url: &str) -> Result<(), RedfishError> {
        self.insert_media_on(uuid, Device::Cd, url).await
    }

    /// `VirtualMedia.InsertMedia` on `device`.
    pub async fn insert_media_on(&self, uuid: &str, device: Device, url: &str) -> Result<(), RedfishError> {
        self.send(
            "POST",
            &format!("/Systems/{uuid}/VirtualMedia/{}/Actions/VirtualMedia.InsertMedia", device.path()),
            Some(json!({ "Image": url, "Inserted": true, "WriteProtected": true })),
        )
        .await
        .map(|_| ())
    }

    /// `VirtualMedia.EjectMedia` on the CD.
    pub async fn eject(&self, uuid: &str) -> Result<(), RedfishError> {
        self.eject_on(uuid, Device::Cd).await
    }

    /// `VirtualMedia.EjectMedia` on `device`.
    pub async fn eject_on(&self, uuid: &str, device: Device) -> Result<(), RedfishError> {
        self.send(
            "POST",
            &format!("/Systems/{uuid}/VirtualMedia/{}/Actions/VirtualMedia.EjectMedia", device.path()),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Polls (with backoff) until the system's power is `on`, or fails after `deadline`.
    pub async fn wait_power(&self, uuid: &str, on: bool, deadline: Duration) -> Result<SystemState, RedfishError> {
        let res = util::poll_until(deadline, || async {
            match self.system(uuid).await {
                Ok(s) if s.power_on == on => Some(Ok(s)),
                Ok(_) => None,
                // Unknown system or bad credentials will not fix themselves.
                Err(e @ RedfishError::Status { status: 401 | 404, .. }) => Some(Err(e)),
                Err(_) => None,
            }
        })
        .await;
        res.unwrap_or_else(|| {
            Err(RedfishError::NotReady(format!(
                "system {uuid} not powered {} within {} s",
                if on { "on" } else { "off" },
                deadline.as_secs()
            )))
        })
    }
}

/// Redfish errors are `{"error": {"message": …}}`; keep just the message when it is there.
fn redfish_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RedfishError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).map(|_| f))
        .map_err(|source| UtilError::Io { path: path.to_path_buf(), source })?;
    f.flush().map_err(|source| RedfishError::Util(UtilError::Io { path: path.to_path_buf(), source }))
}

/// Appended to `sushy.conf` for `instant_power`. The emulator loads its config with Flask's
/// `config.from_pyfile`, i.e. it executes the file inside the emulator process before the
/// driver is used; only UPPERCASE names become settings, so the `_edge_*` helpers stay out of
/// the config. The fake driver computes `apply_time = int(time.time()) + random.randint(1, 11)`
/// through its module-level `random`; giving that module a `random` whose `randint` returns 0
/// makes the change due at once, and the driver applies it on the next read (it applies pending
/// power changes when a system is read). Nothing in the installed package is modified, and the
/// `assert` makes a sushy-tools version that no longer draws the delay this way fail at start
/// instead of silently keeping the delay.
pub const INSTANT_POWER_PATCH: &str = "
# --bmc-power-delay instant (edge-lab): power changes land on the next read, not 1-11 s later.
import types as _edge_types
from sushy_tools.emulator.resources.systems import fakedriver as _edge_fakedriver
assert hasattr(_edge_fakedriver, 'random'), 'sushy-tools fake driver no longer uses random: update edge-lab'
_edge_fakedriver.random = _edge_types.SimpleNamespace(randint=lambda a, b: 0)
";

/// The emulator's config is a Python file; JSON strings, lists and objects are valid Python
/// literals, so everything user-supplied goes through serde_json (no string pasting).
fn render_conf(dir: &Path, bind: SocketAddr, systems: &[SystemSpec], instant_power: bool) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let fake: Vec<serde_json::Value> = systems
        .iter()
        .map(|s| {
            json!({
                "uuid": s.uuid,
                "name": s.name,
                "power_state": "Off",
                "nics": [{ "mac": s.mac }],
            })
        })
        .collect();
    format!(
        "# Written by edge-lab (acceptance/lab/src/redfish.rs).
SUSHY_EMULATOR_LISTEN_IP = {ip}
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_STATE_DIR = {state}
SUSHY_EMULATOR_AUTH_FILE = {auth}
SUSHY_EMULATOR_FAKE_SYSTEMS = {fake}
{patch}",
        patch = if instant_power { INSTANT_POWER_PATCH } else { "" },
        ip = q(&bind.ip().to_string()),
        port = bind.port(),
        state = q(&dir.join("state").display().to_string()),
        auth = q(&dir.join("htpasswd").display().to_string()),
        fake = serde_json::Value::Array(fake),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_python_literals() {
        let c = render_conf(
            Path::new("/d"),
            "127.0.0.1:8000".parse().expect("addr"),
            &[SystemSpec { uuid: "u1".into(), name: "pve'1".into(), mac: "52:54:00:00:00:01".into() }],
            false,
        );
        assert!(c.contains("SUSHY_EMULATOR_LISTEN_PORT = 8000\n"));
        assert!(c.contains("SUSHY_EMULATOR_STATE_DIR = \"/d/state\""));
        assert!(c.contains(r#""name":"pve'1""#), "{c}");
        assert!(!c.contains("_edge_fakedriver"), "real delay by default: {c}");
        let c = render_conf(Path::new("/d"), "127.0.0.1:8000".parse().expect("addr"), &[], true);
        assert!(c.contains("randint=lambda a, b: 0"), "{c}");
    }

    #[test]
    fn redfish_error_message_is_extracted() {
        let b = r#"{"error": {"code": "Base.1.0.GeneralError", "message": "Cannot download"}}"#;
        assert_eq!(redfish_message(b), "Cannot download");
        assert_eq!(redfish_message("plain"), "plain");
    }
}
