//! A typed Redfish client for one computer system behind a BMC: power state and
//! `ComputerSystem.Reset`, a one-time boot override, and the virtual CD (`InsertMedia` /
//! `EjectMedia`). Basic auth; TLS either pinned to the BMC certificate's SHA-256, or — only
//! when asked — unverified; plain `http://` endpoints (emulators on loopback) are allowed.
//!
//! Power changes are asynchronous on real BMCs and on sushy-tools' fake driver alike (the
//! latter applies them 1–11 s after the call), so [`RedfishClient::wait_power`] polls with
//! exponential backoff until a deadline ([`poll_until`]) instead of sleeping a fixed time.
//!
//! The virtual CD is found the way the spec allows it to be exposed: under the system
//! (`/Systems/{id}/VirtualMedia`, what sushy-tools 2.x serves) or under its manager
//! (`/Managers/{id}/VirtualMedia`), picking the member whose `MediaTypes` include `CD`/`DVD`.
//!
//! The password is never logged and never appears in errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use rustls::client::danger::ServerCertVerifier;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::clients::http::{parse_fingerprint, tls_failure, CertCheck};
use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::TlsFailure;

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("BMC configuration: {0}")]
    Config(String),
    /// No answer: `connect` when the request never reached the BMC, `tls` when its certificate
    /// was refused (which no retry changes).
    #[error("BMC {method} {url}: {message}")]
    Transport { method: String, url: String, connect: bool, tls: Option<TlsFailure>, message: String },
    #[error("BMC {method} {url}: HTTP {status}: {message}")]
    Status { method: String, url: String, status: u16, message: String },
    #[error("BMC {url}: unexpected response: {message}")]
    Decode { url: String, message: String },
    #[error("BMC system {system}: power still {actual:?} after {after:?} (wanted {wanted})")]
    PowerTimeout { system: String, wanted: String, actual: String, after: Duration },
    #[error("cancelled while waiting for the BMC")]
    Cancelled,
}

impl RedfishError {
    /// Worth another try: connection trouble and 5xx.
    fn is_transient(&self) -> bool {
        match self {
            RedfishError::Transport { tls, .. } => tls.is_none(),
            RedfishError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// How the BMC's TLS certificate is trusted (`http://` endpoints ignore this).
#[derive(Clone, Debug)]
pub enum BmcTrust {
    /// SHA-256 of the certificate (DER), as `AB:CD:…`.
    Fingerprint(String),
    /// No verification (lab BMCs only).
    Insecure,
    /// Nothing configured: only `http://` endpoints work.
    Unset,
}

/// What the resource needs to know about the system.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemState {
    /// `On`, `Off`, `PoweringOn`, `PoweringOff`, or empty when the BMC does not say.
    pub power_state: String,
    pub boot_target: Option<String>,
    pub boot_enabled: Option<String>,
}

impl SystemState {
    pub fn is_on(&self) -> bool {
        self.power_state.eq_ignore_ascii_case("on")
    }
}

/// The virtual CD's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaState {
    pub inserted: bool,
    /// The image URL, only when inserted.
    pub image: Option<String>,
}

/// A virtual-media device: the CD the installer boots from, and the removable medium (floppy
/// or USB stick) that carries a node's seed (docs/design/node-bootstrap.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cd,
    Removable,
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Cd => "virtual CD/DVD",
            Device::Removable => "virtual removable medium (USB stick or floppy)",
        }
    }

    /// Whether the `VirtualMedia` member `media` (at `id`) is this device: by its `MediaTypes`,
    /// else by the member's name (sushy-tools: `Cd`, `Floppy`). A member that takes CDs is the
    /// CD even if it takes other media too.
    fn matches(self, media: &Value, id: &str) -> bool {
        let types: Vec<String> = media["MediaTypes"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        let has = |w: &[&str]| types.iter().any(|t| w.contains(&t.as_str()));
        let last = id.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
        let cd = has(&["cd", "dvd"]);
        match self {
            Device::Cd => cd || last == "cd",
            Device::Removable => {
                !cd && (has(&["usbstick", "floppy"]) || ["floppy", "usb", "usbstick"].contains(&last.as_str()))
            }
        }
    }
}

/// The actions of one virtual-media device, as discovered once per client.
#[derive(Clone, Debug)]
struct MediaPaths {
    member: String,
    insert: String,
    eject: String,
}

/// One Redfish computer system (`/redfish/v1/Systems/{id}`).
pub struct RedfishClient {
    http: reqwest::Client,
    /// `scheme://host[:port]`
    origin: String,
    /// Path of the system resource, found from the endpoint or discovered.
    system: OnceCell<String>,
    endpoint_path: String,
    username: String,
    password: Zeroizing<String>,
    cd: OnceCell<MediaPaths>,
    removable: OnceCell<MediaPaths>,
    calls: Arc<AtomicU64>,
    /// Power polls at this fixed interval instead of backing off (bench baseline only).
    fixed_poll: Option<Duration>,
}

impl std::fmt::Debug for RedfishClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishClient").field("origin", &self.origin).field("path", &self.endpoint_path).finish()
    }
}

#[derive(Deserialize)]
struct Link {
    #[serde(rename = "@odata.id")]
    id: String,
}

#[derive(Deserialize)]
struct Collection {
    #[serde(rename = "Members", default)]
    members: Vec<Link>,
}

impl RedfishClient {
    /// `endpoint` is either a system URL (`https://bmc/redfish/v1/Systems/ID`) or the BMC's
    /// base URL (`https://bmc`), in which case the BMC must expose exactly one system.
    pub fn new(endpoint: &str, username: &str, password: &str, trust: BmcTrust) -> Result<Self, RedfishError> {
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| RedfishError::Config(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        let host = url.host_str().ok_or_else(|| RedfishError::Config(format!("endpoint {endpoint:?} has no host")))?;
        let origin = match url.port() {
            Some(p) => format!("{}://{host}:{p}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // InsertMedia makes the BMC download the image before it answers.
            .timeout(Duration::from_secs(300));
        match url.scheme() {
            "http" => {}
            "https" => {
                let verifier = match trust {
                    BmcTrust::Fingerprint(fp) => {
                        let fp = parse_fingerprint(&fp).map_err(|e| RedfishError::Config(e.to_string()))?;
                        CertCheck::pinned(fp)
                    }
                    BmcTrust::Insecure => CertCheck::any(),
                    BmcTrust::Unset => {
                        return Err(RedfishError::Config(
                            "an https BMC needs tls_fingerprint (recommended) or insecure = true".into(),
                        ))
                    }
                };
                builder = builder.use_preconfigured_tls(client_config(&verifier)?);
            }
            s => {
                return Err(RedfishError::Config(format!(
                    "endpoint scheme {s:?}: use https:// (or http:// for emulators)"
                )))
            }
        }
        let http = builder.build().map_err(|e| RedfishError::Config(format!("HTTP client: {e}")))?;
        let path = url.path().trim_end_matches('/').to_string();
        let system = OnceCell::new();
        if path.contains("/Systems/") {
            let _ = system.set(path.clone());
        }
        Ok(RedfishClient {
            http,
            origin,
            system,
            endpoint_path: path,
            username: username.to_string(),
            password: Zeroizing::new(password.to_string()),
            cd: OnceCell::new(),
            removable: OnceCell::new(),
            calls: Arc::new(AtomicU64::new(0)),
            fixed_poll: None,
        })
    }

    /// Polls power at a fixed `interval` instead of backing off (the provider's
    /// `EDGE_FIXED_POLL_MS`, for bench/converge's baseline); `None` keeps the backoff.
    pub fn with_fixed_poll(mut self, interval: Option<Duration>) -> Self {
        self.fixed_poll = interval;
        self
    }

    /// How many HTTP requests this client made (for benchmarks and logs).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, RedfishError> {
        let url = format!("{}{path}", self.origin);
        // GETs are repeated on transient trouble; actions are not (a Reset sent twice is not
        // the same as once), except when the connection never came up.
        let idempotent = method == Method::GET || method == Method::PATCH;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = self.send_once(method.clone(), &url, body).await;
            match res {
                Err(e)
                    if attempt < 4
                        && e.is_transient()
                        && (idempotent || matches!(&e, RedfishError::Transport { connect: true, .. })) =>
                {
                    tracing::debug!(%url, error = %e, "BMC call failed, retrying");
                    backoff.wait().await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Value, RedfishError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut req = self.http.request(method.clone(), url).basic_auth(&self.username, Some(self.password.as_str()));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let tls = tls_failure(&e);
            RedfishError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                connect: e.is_connect(),
                message: match &tls {
                    Some((_, why)) => why.clone(),
                    None if e.is_connect() => format!("connect: {e}"),
                    None => e.to_string(),
                },
                tls: tls.map(|(f, _)| f),
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(RedfishError::Status {
                method: method.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                message: redfish_message(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| RedfishError::Decode { url: url.to_string(), message: e.to_string() })
    }

    async fn get(&self, path: &str) -> Result<Value, RedfishError> {
        self.send(Method::GET, path, None).await
    }

    /// The system's path, discovered from the service root when the endpoint did not name it.
    pub async fn system_path(&self) -> Result<&str, RedfishError> {
        self.system
            .get_or_try_init(|| async {
                let base = if self.endpoint_path.ends_with("/redfish/v1") {
                    self.endpoint_path.clone()
                } else {
                    format!("{}/redfish/v1", self.endpoint_path)
                };
                let url = format!("{base}/Systems");
                let c: Collection = serde_json::from_value(self.get(&url).await?)
                    .map_err(|e| RedfishError::Decode { url: url.clone(), message: e.to_string() })?;
                match c.members.as_slice() {
                    [one] => Ok(one.id.trim_end_matches('/').to_string()),
                    many => Err(RedfishError::Config(format!(
                        "the BMC has {} systems: name one in the endpoint (…/redfish/v1/Systems/ID)",
                        many.len()
                    ))),
                }
            })
            .await
            .map(String::as_str)
    }

    /// Power state and boot override.
    pub async fn system(&self) -> Result<SystemState, RedfishError> {
        let path = self.system_path().await?.to_string();
        let v = self.get(&path).await?;
        let s = |v: &Value| v.as_str().map(str::to_string);
        Ok(SystemState {
            power_state: s(&v["PowerState"]).unwrap_or_default(),
            boot_target: s(&v["Boot"]["BootSourceOverrideTarget"]),
            boot_enabled: s(&v["Boot"]["BootSourceOverrideEnabled"]),
        })
    }

    async fn media_paths(&self, device: Device) -> Result<&MediaPaths, RedfishError> {
        let cell = match device {
            Device::Cd => &self.cd,
            Device::Removable => &self.removable,
        };
        cell.get_or_try_init(|| async {
            let sys_path = self.system_path().await?.to_string();
            let sys = self.get(&sys_path).await?;
            let mut collections = Vec::new();
            if let Some(id) = sys["VirtualMedia"]["@odata.id"].as_str() {
                collections.push(id.to_string());
            }
            if let Some(managers) = sys["Links"]["ManagedBy"].as_array() {
                for m in managers.iter().filter_map(|m| m["@odata.id"].as_str()) {
                    if let Ok(mv) = self.get(m).await {
                        if let Some(id) = mv["VirtualMedia"]["@odata.id"].as_str() {
                            collections.push(id.to_string());
                        }
                    }
                }
            }
            if collections.is_empty() {
                // sushy-tools 2.x serves it under the system without always linking it.
                collections.push(format!("{sys_path}/VirtualMedia"));
            }
            for c in collections {
                let Ok(list) = self.get(&c).await else { continue };
                let Ok(list) = serde_json::from_value::<Collection>(list) else { continue };
                for m in list.members {
                    let Ok(mv) = self.get(&m.id).await else { continue };
                    if device.matches(&mv, &m.id) {
                        let target = |action: &str| {
                            mv["Actions"][format!("#VirtualMedia.{action}")]["target"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("{}/Actions/VirtualMedia.{action}", m.id))
                        };
                        return Ok(MediaPaths {
                            insert: target("InsertMedia"),
                            eject: target("EjectMedia"),
                            member: m.id,
                        });
                    }
                }
            }
            Err(RedfishError::Config(format!("the BMC exposes no {}", device.name())))
        })
        .await
    }

    /// The virtual CD's state.
    pub async fn media(&self) -> Result<MediaState, RedfishError> {
        self.media_on(Device::Cd).await
    }

    pub async fn media_on(&self, device: Device) -> Result<MediaState, RedfishError> {
        let p = self.media_paths(device).await?.member.clone();
        let v = self.get(&p).await?;
        let inserted = v["Inserted"].as_bool().unwrap_or(false);
        let image = v["Image"].as_str().filter(|s| !s.is_empty() && inserted).map(str::to_string);
        Ok(MediaState { inserted: inserted && image.is_some(), image })
    }

    /// Inserts `url` as the virtual CD (the BMC fetches it; some, like sushy, before answering).
    pub async fn insert_media(&self, url: &str) -> Result<(), RedfishError> {
        self.insert_on(Device::Cd, url).await
    }

    /// Inserts `url` into `device`. The URL is logged only for the CD: a seed's URL is a secret
    /// path (whoever knows it can fetch the seed while it is served).
    pub async fn insert_on(&self, device: Device, url: &str) -> Result<(), RedfishError> {
        let p = self.media_paths(device).await?.insert.clone();
        match device {
            Device::Cd => tracing::info!(image = %url, "BMC: inserting virtual media"),
            Device::Removable => tracing::info!("BMC: inserting the seed medium"),
        }
        self.send(Method::POST, &p, Some(&json!({"Image": url, "Inserted": true, "WriteProtected": true}))).await?;
        Ok(())
    }

    /// Ejects the virtual CD.
    pub async fn eject_media(&self) -> Result<(), RedfishError> {
        self.eject_on(Device::Cd).await
    }

    pub async fn eject_on(&self, device: Device) -> Result<(), RedfishError> {
        let p = self.media_paths(device).await?.eject.clone();
        tracing::info!(device = device.name(), "BMC: ejecting virtual media");
        match self.send(Method::POST, &p, Some(&json!({}))).await {
            Ok(_) => Ok(()),
            // Nothing inserted: already the wanted state.
            Err(RedfishError::Status { status: 400 | 409, .. }) if !self.media_on(device).await?.inserted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One-time boot override to the virtual CD.
    pub async fn boot_once_cd(&self) -> Result<(), RedfishError> {
        let p = self.system_path().await?.to_string();
        tracing::info!("BMC: one-time boot override to Cd");
        self.send(
            Method::PATCH,
            &p,
            Some(&json!({"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}})),
        )
        .await?;
        Ok(())
    }

    /// `ComputerSystem.Reset` (`On`, `ForceOff`, `ForceRestart`, `GracefulShutdown`, …).
    pub async fn reset(&self, reset_type: &str) -> Result<(), RedfishError> {
        let p = format!("{}/Actions/ComputerSystem.Reset", self.system_path().await?);
        tracing::info!(reset_type, "BMC: reset");
        self.send(Method::POST, &p, Some(&json!({"ResetType": reset_type}))).await?;
        Ok(())
    }

    /// Polls the power state with backoff (100 ms doubling to 1 s) until it is `on`, the
    /// deadline passes, or `stop` fires. Returns how many polls it took.
    pub async fn wait_power(&self, on: bool, deadline: Instant, stop: &CancellationToken) -> Result<u32, RedfishError> {
        let wanted = if on { "On" } else { "Off" };
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).fixed(self.fixed_poll);
        let mut polls = 0;
        let probe = || {
            polls += 1;
            async move {
                match self.system().await {
                    Ok(s) if s.is_on() == on => Probe::Ready(()),
                    Ok(s) => Probe::NotYet(s.power_state),
                    Err(e) if e.is_transient() => Probe::NotYet(format!("unknown ({e})")),
                    Err(e) => Probe::Fail(e),
                }
            }
        };
        match poll_until(deadline, stop, &format!("BMC power {wanted}"), backoff, probe).await {
            Ok(()) => Ok(polls),
            Err(PollError::Failed(e)) => Err(e),
            Err(PollError::Cancelled) => Err(RedfishError::Cancelled),
            Err(PollError::Timeout { after, last }) => Err(RedfishError::PowerTimeout {
                system: self.system_path().await.unwrap_or("?").to_string(),
                wanted: wanted.into(),
                actual: last,
                after,
            }),
        }
    }
}

/// Redfish errors are `{"error": {"message": …, "@Message.ExtendedInfo": [{"Message": …}]}}`.
fn redfish_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let info = v["error"]["@Message.ExtendedInfo"][0]["Message"].as_str();
    match (v["error"]["message"].as_str(), info) {
        (Some(m), Some(i)) if m != i => format!("{m}: {i}"),
        (Some(m), _) => m.to_string(),
        (None, Some(i)) => i.to_string(),
        (None, None) => body.chars().take(300).collect(),
    }
}

/// A TLS client configuration that trusts what `check` accepts.
fn client_config(check: &Arc<CertCheck>) -> Result<rustls::ClientConfig, RedfishError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| RedfishError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(check) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_the_system_or_not() {
        let c = RedfishClient::new("http://127.0.0.2:8000/redfish/v1/Systems/abc", "u", "p", BmcTrust::Unset).unwrap();
        assert_eq!(c.system.get().map(String::as_str), Some("/redfish/v1/Systems/abc"));
        assert_eq!(c.origin, "http://127.0.0.2:8000");
        let c = RedfishClient::new("http://127.0.0.2:8000", "u", "s3cret", BmcTrust::Unset).unwrap();
        assert!(c.system.get().is_none());
        assert!(!format!("{c:?}").contains("s3cret"), "the password never prints");
        assert!(RedfishClient::new("https://bmc", "u", "p", BmcTrust::Unset).is_err());
        assert!(RedfishClient::new("ftp://bmc", "u", "p", BmcTrust::Insecure).is_err());
    }

    #[test]
    fn media_found_by_type_or_name() {
        let (cd, usb) = (Device::Cd, Device::Removable);
        assert!(cd.matches(&json!({"MediaTypes": ["CD", "DVD"]}), "/x/VirtualMedia/1"));
        assert!(cd.matches(&json!({}), "/redfish/v1/Systems/a/VirtualMedia/Cd"));
        assert!(!cd.matches(&json!({"MediaTypes": ["Floppy"]}), "/x/VirtualMedia/Floppy"));
        // sushy-tools' second device: "Virtual Removable Media", Floppy and USBStick.
        assert!(usb.matches(&json!({"MediaTypes": ["Floppy", "USBStick"]}), "/x/VirtualMedia/Floppy"));
        assert!(usb.matches(&json!({"MediaTypes": ["USBStick"]}), "/x/VirtualMedia/2"));
        assert!(usb.matches(&json!({}), "/x/VirtualMedia/Floppy"));
        assert!(!usb.matches(&json!({"MediaTypes": ["CD", "USBStick"]}), "/x/VirtualMedia/1"), "a CD drive is the CD");
    }

    #[test]
    fn error_messages_are_extracted() {
        let body = r#"{"error":{"code":"Base.1.0.GeneralError","message":"Failed fetching image","@Message.ExtendedInfo":[{"Message":"404 Not Found"}]}}"#;
        assert_eq!(redfish_message(body), "Failed fetching image: 404 Not Found");
        assert_eq!(redfish_message("plain"), "plain");
    }
}
