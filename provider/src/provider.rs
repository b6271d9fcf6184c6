//! The provider block: schema, validation, environment fallbacks, and `configure` → [`Clients`].
//!
//! The provider's own environment variables (`EDGE_*`) are interpreted here and nowhere else:
//! [`with_env`] fills in the provider block, [`Settings::from_env`] the few settings that have no
//! attribute. Resources and clients receive values. (Terraform's and go-plugin's variables —
//! `TF_LOG*`, `PLUGIN_*` — are read by the plugin layer at startup.)

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clients::seed_server::BootstrapSettings;
use crate::framework::diag::{AttrPath, Diagnostics};
use crate::framework::schema::{Attribute, Block, Nesting, Schema};
use crate::framework::value::Type;

/// One Proxmox API (PVE or PBS) as configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiConfig {
    pub endpoint: Option<String>,
    pub api_token: Option<String>,
    pub root_password: Option<String>,
    pub tls_fingerprint: Option<String>,
    pub ca_pem: Option<String>,
    pub insecure: Option<bool>,
}

/// Default BMC credentials for `edge_proxmox_node` blocks that leave them out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedfishDefaults {
    pub username: Option<String>,
    pub password: Option<String>,
    pub insecure: Option<bool>,
}

/// Default SSH access for resources that configure nodes over SSH.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SshDefaults {
    pub user: Option<String>,
    pub private_key: Option<String>,
    /// As configured (Terraform numbers have any size); [`validate`] keeps it in 1–65535.
    pub port: Option<i64>,
}

impl SshDefaults {
    /// The port to use: the configured one when it is a port (configure refused any other), else 22.
    pub fn port_or_default(&self) -> u16 {
        self.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).unwrap_or(22)
    }
}

/// Where the provider serves nodes' first-boot seeds to their BMCs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub listen: Option<String>,
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub pve: Option<ApiConfig>,
    pub pbs: Option<ApiConfig>,
    pub redfish: Option<RedfishDefaults>,
    pub ssh: Option<SshDefaults>,
    pub bootstrap: Option<BootstrapConfig>,
    pub trusted_image_keys: Option<Vec<String>>,
}

/// `acme.ca_pem`'s default for `edge_proxmox_node`.
pub const ACME_CA_PEM_ENV: &str = "EDGE_ACME_CA_PEM";
/// The known_hosts file `edge_wireguard_peer` import takes pinned host keys from.
pub const SSH_KNOWN_HOSTS_ENV: &str = "EDGE_SSH_KNOWN_HOSTS";
/// A fixed poll interval in milliseconds instead of the backoff (see [`Settings::fixed_poll`]).
pub const FIXED_POLL_ENV: &str = "EDGE_FIXED_POLL_MS";

/// Settings that only the environment gives: the provider block has no attribute for them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// From `EDGE_ACME_CA_PEM`: the ACME CA's root for `acme` blocks without `ca_pem`.
    pub acme_ca_pem: Option<String>,
    /// From `EDGE_SSH_KNOWN_HOSTS`: where import finds the pinned SSH host keys of nodes.
    pub ssh_known_hosts: Option<PathBuf>,
    /// From `EDGE_FIXED_POLL_MS`: the power, node API and cluster waits poll at this fixed
    /// interval instead of backing off. Only for bench/converge's fixed-poll baseline.
    pub fixed_poll: Option<Duration>,
}

impl Settings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Settings {
        Settings {
            acme_ca_pem: env(ACME_CA_PEM_ENV),
            ssh_known_hosts: env(SSH_KNOWN_HOSTS_ENV).map(PathBuf::from),
            fixed_poll: env(FIXED_POLL_ENV).and_then(|v| v.parse().ok()).map(Duration::from_millis),
        }
    }
}

/// What resources get from the configured provider. Clients for each API are built from these
/// settings by the `clients` module.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    pub pve: Option<ApiConfig>,
    pub pbs: Option<ApiConfig>,
    pub redfish: RedfishDefaults,
    pub ssh: SshDefaults,
    pub bootstrap: BootstrapSettings,
    pub trusted_image_keys: Vec<String>,
    pub settings: Settings,
}

fn api_attrs(kind: &str, port: u16, sep: char) -> Vec<Attribute> {
    let upper = kind.to_uppercase();
    vec![
        Attribute::optional("endpoint", Type::String).describe(&format!(
            "Base URL of the {upper} API, e.g. `https://10.1.0.11:{port}`. Env: `EDGE_{upper}_ENDPOINT`."
        )),
        Attribute::optional("api_token", Type::String)
            .sensitive()
            .describe(&format!("API token `USER@REALM!TOKENID{sep}SECRET`. Env: `EDGE_{upper}_API_TOKEN`.")),
        Attribute::optional("root_password", Type::String).sensitive().describe(&format!(
            "root@pam's password: the {upper} API is called with a root@pam ticket (everything without              `api_token`; with it, the methods only root@pam may call). Provider configuration is never              stored in state. Env: `EDGE_{upper}_ROOT_PASSWORD`."
        )),
        Attribute::optional("tls_fingerprint", Type::String).describe(&format!(
            "SHA-256 fingerprint of the server certificate (`AB:CD:…`), pinned. Env: `EDGE_{upper}_TLS_FINGERPRINT`."
        )),
        Attribute::optional("ca_pem", Type::String)
            .describe(&format!("PEM CA certificate to trust instead of a fingerprint. Env: `EDGE_{upper}_CA_PEM`.")),
        Attribute::optional("insecure", Type::Bool).describe(&format!(
            "Skip TLS verification. Only for labs; warns on every run. Env: `EDGE_{upper}_INSECURE`."
        )),
    ]
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new("Provider for edge sites: Proxmox VE nodes, Ceph pools, WireGuard peers and PBS jobs.")
            .attr(
                Attribute::nested("pve", Nesting::Single, api_attrs("pve", 8006, '='))
                    .describe("Proxmox VE API access."),
            )
            .attr(
                Attribute::nested("pbs", Nesting::Single, api_attrs("pbs", 8007, ':'))
                    .describe("Proxmox Backup Server API access."),
            )
            .attr(
                Attribute::nested(
                    "redfish",
                    Nesting::Single,
                    vec![
                        Attribute::optional("username", Type::String)
                            .describe("BMC user. Env: `EDGE_REDFISH_USERNAME`."),
                        Attribute::optional("password", Type::String)
                            .sensitive()
                            .describe("BMC password. Env: `EDGE_REDFISH_PASSWORD`."),
                        Attribute::optional("insecure", Type::Bool).describe("Skip BMC TLS verification."),
                    ],
                )
                .describe("Defaults for the BMC of every node."),
            )
            .attr(
                Attribute::nested(
                    "ssh",
                    Nesting::Single,
                    vec![
                        Attribute::optional("user", Type::String)
                            .describe("SSH user on the nodes. Env: `EDGE_SSH_USER`."),
                        Attribute::optional("private_key", Type::String)
                            .sensitive()
                            .describe("OpenSSH private key (PEM). Env: `EDGE_SSH_PRIVATE_KEY`."),
                        Attribute::optional("port", Type::Number)
                            .describe("SSH port, default 22. Env: `EDGE_SSH_PORT`."),
                    ],
                )
                .describe("Defaults for node access over SSH."),
            )
            .attr(
                Attribute::nested(
                    "bootstrap",
                    Nesting::Single,
                    vec![
                        Attribute::optional("listen", Type::String).describe(
                            "Address the seed server listens on (`ADDR:PORT`), default `127.0.0.1:0` (a free \
                             port on loopback: BMCs on this machine only). Env: `EDGE_BOOTSTRAP_LISTEN`.",
                        ),
                        Attribute::optional("url", Type::String).describe(
                            "The seed server's base URL as the BMCs reach it (`http://10.9.0.5:8090`), default \
                             `http://` + the bound address. Env: `EDGE_BOOTSTRAP_URL`.",
                        ),
                    ],
                )
                .describe(
                    "The seed server: while a node installs, the provider serves its first-boot seed \
                     (bootstrap certificate, SSH host key, root password hash) to the node's BMC as a \
                     second virtual medium. Serve it on a management network the store LAN cannot see \
                     (docs/design/node-bootstrap.md).",
                ),
            )
            .attr(Attribute::optional("trusted_image_keys", Type::list(Type::String)).describe(
                "Nix-format public keys (`name:BASE64`) whose signatures make a node image acceptable. \
                 Env: `EDGE_TRUSTED_IMAGE_KEYS` (comma-separated).",
            )),
    )
}

/// Checks what is known of the provider configuration. Unknown values are skipped: they may come
/// from other resources and are checked again at configure time.
pub fn validate(cfg: &ProviderConfig, diags: &mut Diagnostics) {
    for (name, api, sep) in [("pve", &cfg.pve, '='), ("pbs", &cfg.pbs, ':')] {
        let Some(api) = api else { continue };
        let p = AttrPath::root(name);
        if let Some(e) = &api.endpoint {
            if let Err(msg) = check_endpoint(e) {
                diags.error_at(p.clone().attr("endpoint"), "Invalid endpoint", msg);
            }
        }
        if let Some(t) = &api.api_token {
            if let Err(msg) = check_api_token(t, sep) {
                diags.error_at(p.clone().attr("api_token"), "Invalid API token", msg);
            }
        }
        if let Some(f) = &api.tls_fingerprint {
            if let Err(msg) = check_fingerprint(f) {
                diags.error_at(p.clone().attr("tls_fingerprint"), "Invalid TLS fingerprint", msg);
            }
        }
        if let Some(pem) = &api.ca_pem {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                diags.error_at(
                    p.clone().attr("ca_pem"),
                    "Invalid CA certificate",
                    "ca_pem must be a PEM certificate (-----BEGIN CERTIFICATE-----), e.g. the contents of the \
                     node's /etc/pve/pve-root-ca.pem.",
                );
            }
        }
        if api.tls_fingerprint.is_some() && api.insecure == Some(true) {
            diags.error_at(
                p.clone().attr("insecure"),
                "Conflicting TLS settings",
                "insecure = true turns off the fingerprint pin; set one or the other.",
            );
        }
    }
    if let Some(ssh) = &cfg.ssh {
        if let Some(k) = &ssh.private_key {
            if let Err(e) = crate::clients::ssh::parse_private_key(k) {
                diags.error_at(AttrPath::root("ssh").attr("private_key"), "Invalid SSH private key", e.to_string());
            }
        }
        if let Some(port) = ssh.port {
            if !(1..=65535).contains(&port) {
                diags.error_at(
                    AttrPath::root("ssh").attr("port"),
                    "Invalid SSH port",
                    format!("{port} is not a port: use 1–65535 (default 22)"),
                );
            }
        }
    }
    if let Some(b) = &cfg.bootstrap {
        if let Some(l) = &b.listen {
            if let Err(msg) = check_listen(l) {
                diags.error_at(AttrPath::root("bootstrap").attr("listen"), "Invalid listen address", msg);
            }
        }
        if let Some(u) = &b.url {
            if let Err(msg) = check_http_url(u) {
                diags.error_at(AttrPath::root("bootstrap").attr("url"), "Invalid seed server URL", msg);
            }
        }
    }
    if let Some(keys) = &cfg.trusted_image_keys {
        for (i, k) in keys.iter().enumerate() {
            if let Err(msg) = check_public_key(k) {
                diags.error_at(AttrPath::root("trusted_image_keys").index(i), "Invalid image key", msg);
            }
        }
    }
}

/// Fills in environment fallbacks for everything the configuration leaves out.
pub fn with_env(mut cfg: ProviderConfig, env: &dyn Fn(&str) -> Option<String>) -> ProviderConfig {
    for (name, api) in [("PVE", &mut cfg.pve), ("PBS", &mut cfg.pbs)] {
        let a = api.get_or_insert_with(ApiConfig::default);
        let var = |f: &str| env(&format!("EDGE_{name}_{f}")).filter(|v| !v.is_empty());
        a.endpoint = a.endpoint.take().or_else(|| var("ENDPOINT"));
        a.api_token = a.api_token.take().or_else(|| var("API_TOKEN"));
        a.root_password = a.root_password.take().or_else(|| var("ROOT_PASSWORD"));
        a.tls_fingerprint = a.tls_fingerprint.take().or_else(|| var("TLS_FINGERPRINT"));
        a.ca_pem = a.ca_pem.take().or_else(|| var("CA_PEM"));
        a.insecure = a.insecure.or_else(|| var("INSECURE").map(|v| v == "true" || v == "1"));
        if *a == ApiConfig::default() {
            *api = None;
        }
    }
    let r = cfg.redfish.get_or_insert_with(RedfishDefaults::default);
    r.username = r.username.take().or_else(|| env("EDGE_REDFISH_USERNAME"));
    r.password = r.password.take().or_else(|| env("EDGE_REDFISH_PASSWORD"));
    let s = cfg.ssh.get_or_insert_with(SshDefaults::default);
    s.user = s.user.take().or_else(|| env("EDGE_SSH_USER"));
    s.private_key = s.private_key.take().or_else(|| env("EDGE_SSH_PRIVATE_KEY"));
    s.port = s.port.or_else(|| env("EDGE_SSH_PORT").and_then(|p| p.trim().parse().ok()));
    let b = cfg.bootstrap.get_or_insert_with(BootstrapConfig::default);
    b.listen = b.listen.take().or_else(|| env("EDGE_BOOTSTRAP_LISTEN").filter(|v| !v.is_empty()));
    b.url = b.url.take().or_else(|| env("EDGE_BOOTSTRAP_URL").filter(|v| !v.is_empty()));
    if cfg.trusted_image_keys.is_none() {
        cfg.trusted_image_keys = env("EDGE_TRUSTED_IMAGE_KEYS")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect());
    }
    cfg
}

pub fn configure(cfg: ProviderConfig, settings: Settings, diags: &mut Diagnostics) -> Clients {
    // Each configure starts a run: nothing read for an earlier one (a debug-attached provider
    // serves several commands) is shared with this one. Connections are still made only when a
    // resource first calls an API: a process that only validates never opens one.
    crate::clients::shared_read::new_run();
    validate(&cfg, diags);
    for (name, api) in [("pve", &cfg.pve), ("pbs", &cfg.pbs)] {
        if let Some(a) = api {
            if a.insecure == Some(true) {
                diags.warn_at(
                    AttrPath::root(name).attr("insecure"),
                    "TLS verification is off",
                    format!("The {name} API certificate is not checked: anyone on the path can read the API token. Pin `tls_fingerprint` instead."),
                );
            }
        }
    }
    Clients {
        pve: cfg.pve,
        pbs: cfg.pbs,
        redfish: cfg.redfish.unwrap_or_default(),
        ssh: cfg.ssh.unwrap_or_default(),
        bootstrap: cfg.bootstrap.map(|b| BootstrapSettings { listen: b.listen, url: b.url }).unwrap_or_default(),
        trusted_image_keys: cfg.trusted_image_keys.unwrap_or_default(),
        settings,
    }
}

/// PVE's `pve-node` format: a host name's first label (letters, digits and inner '-').
pub fn check_node_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not a PVE node name: use letters, digits and inner '-', at most 63 characters (e.g. \"pve1\")."
        ))
    }
}

pub fn check_endpoint(e: &str) -> Result<(), String> {
    let rest = e
        .strip_prefix("https://")
        .ok_or_else(|| format!("{e:?} must start with https:// (Proxmox APIs are only served over TLS)"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(' ') {
        return Err(format!("{e:?} has no host: use e.g. \"https://10.1.0.11:8006\""));
    }
    Ok(())
}

/// `ADDR:PORT` as the seed server binds it (an IP or host name, `[v6]:PORT`).
fn check_listen(l: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{l:?} is not ADDR:PORT: use e.g. \"10.9.0.5:8090\", \"[fd00::5]:8090\" or \"127.0.0.1:0\" (any free port)"
        )
    };
    if l.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = l.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// An `http://` or `https://` URL with a host (what a BMC's virtual media can fetch).
fn check_http_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("{u:?} must start with http:// or https:// (the BMC fetches the seed from it)"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{u:?} has no host: use e.g. \"http://10.9.0.5:8090\""));
    }
    Ok(())
}

pub fn check_api_token(t: &str, sep: char) -> Result<(), String> {
    let shape = format!("expected USER@REALM!TOKENID{sep}SECRET");
    let (user, rest) = t.split_once('@').ok_or_else(|| shape.clone())?;
    let (realm, rest) = rest.split_once('!').ok_or_else(|| shape.clone())?;
    let (id, secret) = rest.split_once(sep).ok_or_else(|| shape.clone())?;
    if user.is_empty() || realm.is_empty() || id.is_empty() || secret.is_empty() {
        return Err(shape);
    }
    Ok(())
}

pub fn check_fingerprint(f: &str) -> Result<(), String> {
    let parts: Vec<&str> = f.split(':').collect();
    if parts.len() == 32 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
        Ok(())
    } else {
        Err(format!("{f:?} is not a SHA-256 fingerprint: expected 32 hex pairs separated by colons"))
    }
}

pub fn check_public_key(k: &str) -> Result<(), String> {
    use base64::Engine;
    // What to write instead, in every message: the line `edge-image keygen` prints.
    let form =
        "expected NAME:BASE64 (Nix key format, e.g. \"edge-ci-1:<44 base64 characters>\" as `edge-image keygen` \
                or `nix key convert-secret-to-public` prints it)";
    let (name, b64) = k.split_once(':').ok_or_else(|| format!("{k:?}: {form}"))?;
    if name.is_empty() {
        return Err(format!("{k:?}: the key name is empty; {form}"));
    }
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        Ok(bytes) => Err(format!("{k:?}: an ed25519 public key has 32 bytes, this one {}; {form}", bytes.len())),
        Err(e) => Err(format!("{k:?}: not base64 ({e}); {form}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_fills_gaps_but_config_wins() {
        let cfg = ProviderConfig {
            pve: Some(ApiConfig { endpoint: Some("https://a:8006".into()), ..Default::default() }),
            ..Default::default()
        };
        let env = |k: &str| match k {
            "EDGE_PVE_ENDPOINT" => Some("https://b:8006".to_string()),
            "EDGE_PVE_API_TOKEN" => Some("root@pam!t=s".to_string()),
            "EDGE_TRUSTED_IMAGE_KEYS" => Some("a:x, b:y".to_string()),
            _ => None,
        };
        let out = with_env(cfg, &env);
        let pve = out.pve.unwrap();
        assert_eq!(pve.endpoint.as_deref(), Some("https://a:8006"));
        assert_eq!(pve.api_token.as_deref(), Some("root@pam!t=s"));
        assert!(out.pbs.is_none());
        assert_eq!(out.trusted_image_keys.unwrap(), vec!["a:x", "b:y"]);
    }

    #[test]
    fn settings_only_the_environment_gives() {
        let env = |k: &str| match k {
            "EDGE_ACME_CA_PEM" => Some("-----BEGIN CERTIFICATE-----".to_string()),
            "EDGE_SSH_KNOWN_HOSTS" => Some("/etc/ssh/known".to_string()),
            "EDGE_FIXED_POLL_MS" => Some("1000".to_string()),
            _ => None,
        };
        let s = Settings::from_env(&env);
        assert_eq!(s.acme_ca_pem.as_deref(), Some("-----BEGIN CERTIFICATE-----"));
        assert_eq!(s.ssh_known_hosts, Some(PathBuf::from("/etc/ssh/known")));
        assert_eq!(s.fixed_poll, Some(Duration::from_secs(1)));
        // bench/converge sets EDGE_FIXED_POLL_MS= (empty) for the backoff runs.
        let s = Settings::from_env(&|k| (k == FIXED_POLL_ENV).then(String::new));
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn bad_values_name_their_path() {
        let cfg = ProviderConfig {
            pve: Some(ApiConfig {
                endpoint: Some("http://x".into()),
                api_token: Some("root@pam!t:s".into()),
                tls_fingerprint: Some("AB:CD".into()),
                ..Default::default()
            }),
            trusted_image_keys: Some(vec!["k:AAAA".into()]),
            ..Default::default()
        };
        let mut d = Diagnostics::new();
        validate(&cfg, &mut d);
        let paths: Vec<String> = d.0.iter().map(|d| d.path.clone().unwrap().to_string()).collect();
        assert_eq!(paths, vec!["pve.endpoint", "pve.api_token", "pve.tls_fingerprint", "trusted_image_keys[0]"]);
    }
}
