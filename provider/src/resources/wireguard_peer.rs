//! `edge_wireguard_peer`: "interface I on node N has peer P", managed over SSH.
//!
//! Every node command is one of three fixed `sh` scripts below; values reach them only as
//! quoted positional arguments (`$1`…), and the preshared key only on stdin. The node generates
//! its own interface key when it has none: only the public half (`node_public_key`) ever leaves
//! it. Each change is written to `<config_dir>/<interface>.conf` (`wg showconf` format, swapped in
//! with `mv` under a lock) so it survives a restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::clients::poll::Backoff;
use crate::clients::ssh::{self, Session, SshError, SshTarget};
use crate::framework::{
    Applied, AttrPath, Attribute, Block, Ctx, Diagnostics, Done, Failed, IdentityAttribute, IdentitySchema,
    ImportRequest, NestedBlock, Nesting, Op, PlanCtx, Resource, Schema, Timeouts, Type, Value,
};
use crate::provider::SSH_KNOWN_HOSTS_ENV;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshAccess {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub user: Option<String>,
    pub private_key: Option<String>,
    pub host_key: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: Option<String>,
    pub ssh: Option<SshAccess>,
    pub interface: Option<String>,
    pub public_key: Option<String>,
    pub allowed_ips: Option<Vec<String>>,
    pub endpoint: Option<String>,
    pub persistent_keepalive: Option<i64>,
    pub preshared_key: Option<String>,
    pub preshared_key_version: Option<String>,
    pub preshared_key_present: Option<bool>,
    pub config_dir: Option<String>,
    pub node_public_key: Option<String>,
    pub latest_handshake: Option<i64>,
    pub rx_bytes: Option<i64>,
    pub tx_bytes: Option<i64>,
    pub timeouts: Option<Timeouts>,
}

pub struct WireguardPeer;

const DEFAULT_CONFIG_DIR: &str = "/etc/wireguard";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Args: interface, peer key. Prints the interface's public key (or `(none)`), then the peer's
/// line of `wg show dump` (filtered on the node: a hub has hundreds) with the preshared key
/// replaced by `set`/`(none)`. The dump's first line, with the private key, is never printed.
const READ_SCRIPT: &str = r#"set -eu
if ! key=$(wg show "$1" public-key 2>/dev/null); then echo edge-no-interface; exit 0; fi
echo "$key"
wg show "$1" dump | tail -n +2 | awk -F '\t' -v OFS='\t' -v k="$2" '$1 == k { if ($2 != "(none)") $2 = "set"; print }'
"#;

/// Args: interface, config dir, peer key, allowed IPs (comma list), endpoint or "", keepalive
/// or "", preshared key mode (`stdin`/`none`), `fresh` to remove the peer first (the only way
/// to forget an endpoint). Generates the interface key if absent; prints the public key.
const APPLY_SCRIPT: &str = r#"set -eu
umask 077
i=$1 dir=$2 peer=$3 ips=$4 ep=$5 ka=$6 psk=$7 fresh=$8
if ! wg show "$i" public-key >/dev/null 2>&1; then
  echo "WireGuard interface $i does not exist on this node (or wg cannot reach it): create it first" >&2
  exit 3
fi
mkdir -p "$dir"
exec 9>"$dir/.$i.lock"
flock 9
if [ "$(wg show "$i" private-key)" = "(none)" ]; then
  wg genkey | wg set "$i" private-key /dev/stdin
fi
if [ "$fresh" = fresh ]; then wg set "$i" peer "$peer" remove; fi
set -- "$i" peer "$peer" allowed-ips "$ips" persistent-keepalive "${ka:-off}"
if [ -n "$ep" ]; then set -- "$@" endpoint "$ep"; fi
if [ "$psk" = stdin ]; then set -- "$@" preshared-key /dev/stdin; else set -- "$@" preshared-key /dev/null; fi
wg set "$@"
tmp=$(mktemp "$dir/.$i.conf.XXXXXX")
wg showconf "$i" > "$tmp"
mv -f "$tmp" "$dir/$i.conf"
wg show "$i" public-key
"#;

/// Args: interface, config dir, peer key. A missing interface has no peers: nothing to do.
const REMOVE_SCRIPT: &str = r#"set -eu
umask 077
i=$1 dir=$2 peer=$3
wg show "$i" public-key >/dev/null 2>&1 || exit 0
mkdir -p "$dir"
exec 9>"$dir/.$i.lock"
flock 9
wg set "$i" peer "$peer" remove
tmp=$(mktemp "$dir/.$i.conf.XXXXXX")
wg showconf "$i" > "$tmp"
mv -f "$tmp" "$dir/$i.conf"
"#;

#[async_trait]
impl Resource for WireguardPeer {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_wireguard_peer"
    }

    fn schema(&self) -> Schema {
        let ssh = Attribute::nested(
            "ssh",
            Nesting::Single,
            vec![
                Attribute::required("host", Type::String).describe("Address or name of the node."),
                Attribute::optional("port", Type::Number)
                    .describe("SSH port. Default: the provider's `ssh.port`, else 22."),
                Attribute::optional("user", Type::String).describe(
                    "SSH user (must be allowed to run `wg`). Default: the provider's `ssh.user`, else `root`.",
                ),
                Attribute::optional("private_key", Type::String).sensitive().describe(
                    "OpenSSH private key (ed25519 or ECDSA, unencrypted). Default: the provider's `ssh.private_key` / \
                     `EDGE_SSH_PRIVATE_KEY` — prefer that: a key set here is stored in state.",
                ),
                Attribute::required("host_key", Type::String).describe(
                    "The node's SSH host key, pinned: `ssh-ed25519 AAAA…` (`/etc/ssh/ssh_host_ed25519_key.pub`). \
                     Any other key is refused; there is no trust on first use.",
                ),
            ],
        )
        .make_required()
        .describe("How to reach the node.");
        Schema::new(
            0,
            Block::new(
                "A peer of a WireGuard interface on a node, set over SSH. The node generates the interface's \
                 private key itself; it never leaves the node and never enters Terraform state.",
            )
            .attr(Attribute::computed("id", Type::String).describe("`<host>/<interface>/<public_key>`."))
            .attr(ssh)
            .attr(
                Attribute::required("interface", Type::String)
                    .replace()
                    .describe("The WireGuard interface on the node, e.g. `wg0`. It must exist."),
            )
            .attr(
                Attribute::required("public_key", Type::String)
                    .replace()
                    .describe("The peer's public key (base64, as `wg pubkey` prints it)."),
            )
            .attr(
                Attribute::required("allowed_ips", Type::set(Type::String))
                    .describe("Networks routed to this peer, as CIDRs with zero host bits, e.g. `10.99.1.0/24`."),
            )
            .attr(Attribute::optional("endpoint", Type::String).describe(
                "`host:port` (`[v6]:port`) where the peer listens. Leave out on the side that waits for the \
                 peer to call (the hub): WireGuard learns it from handshakes.",
            ))
            .attr(
                Attribute::optional("persistent_keepalive", Type::Number)
                    .describe("Seconds between keepalives (1–65535); set it on the side behind NAT. 0 or unset: off."),
            )
            .attr(Attribute::optional("preshared_key", Type::String).write_only().describe(
                "Optional preshared key (base64, `wg genpsk`). Sent to the node on stdin, never on a command line. \
                 Write-only on Terraform ≥ 1.11: change `preshared_key_version` to push a new one.",
            ))
            .attr(
                Attribute::optional("preshared_key_version", Type::String)
                    .describe("Any value; changing it sends `preshared_key` to the node again."),
            )
            .attr(Attribute::computed("preshared_key_present", Type::Bool).describe(
                "Whether the node has a preshared key for this peer. A key added or removed on the node is \
                 drift (its value cannot be read back: use `preshared_key_version` to replace it).",
            ))
            .attr(Attribute::optional("config_dir", Type::String).default(Value::str(DEFAULT_CONFIG_DIR)).describe(
                "Directory on the node for `<interface>.conf` (`wg setconf` format), rewritten atomically after \
                 every change so peers survive a restart.",
            ))
            .attr(
                Attribute::computed("node_public_key", Type::String)
                    .describe("The public key of `interface` itself, generated on the node if it had none."),
            )
            .attr(
                Attribute::computed("latest_handshake", Type::Number)
                    .describe("Unix time of the last handshake with the peer (0: never), as of the last refresh."),
            )
            .attr(
                Attribute::computed("rx_bytes", Type::Number).describe("Bytes received from the peer (last refresh)."),
            )
            .attr(Attribute::computed("tx_bytes", Type::Number).describe("Bytes sent to the peer (last refresh)."))
            .block(NestedBlock::timeouts(&["create", "read", "update", "delete"])),
        )
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        let attr = |name: &str, description: &str| IdentityAttribute {
            name: name.into(),
            description: description.into(),
            required_for_import: true,
        };
        Some(IdentitySchema {
            version: 0,
            attributes: vec![
                attr("node", "The node's SSH host (`ssh.host`)."),
                attr("interface", "The WireGuard interface on the node."),
                attr("public_key", "The peer's public key."),
            ],
        })
    }

    fn identity(&self, s: &State) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([
            ("node".to_string(), s.ssh.as_ref()?.host.clone()?),
            ("interface".to_string(), s.interface.clone()?),
            ("public_key".to_string(), s.public_key.clone()?),
        ]))
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        let mut check = |path: AttrPath, summary: &str, r: Result<(), String>| {
            if let Err(e) = r {
                d.error_at(path, summary, e);
            }
        };
        if let Some(s) = &c.ssh {
            let p = AttrPath::root("ssh");
            if let Some(h) = &s.host {
                check(p.clone().attr("host"), "Invalid SSH host", check_host(h));
            }
            if let Some(port) = s.port {
                check(p.clone().attr("port"), "Invalid SSH port", check_range(port, 1, 65535));
            }
            if let Some(u) = &s.user {
                check(p.clone().attr("user"), "Invalid SSH user", check_user(u));
            }
            if let Some(k) = &s.private_key {
                // Never echo the value: it is a secret.
                check(
                    p.clone().attr("private_key"),
                    "Invalid SSH private key",
                    ssh::parse_private_key(k).map(|_| ()).map_err(|e| e.to_string()),
                );
            }
            if let Some(k) = &s.host_key {
                check(
                    p.clone().attr("host_key"),
                    "Invalid host key",
                    ssh::parse_host_key(k).map(|_| ()).map_err(|e| e.to_string()),
                );
            }
        }
        if let Some(i) = &c.interface {
            check(AttrPath::root("interface"), "Invalid interface name", check_interface(i));
        }
        if let Some(k) = &c.public_key {
            check(AttrPath::root("public_key"), "Invalid public key", check_key(k).map_err(|e| format!("{k:?}: {e}")));
        }
        for (n, ip) in c.allowed_ips.iter().flatten().enumerate() {
            check(AttrPath::root("allowed_ips").index(n), "Invalid allowed IP", check_cidr(ip));
        }
        if let Some(e) = &c.endpoint {
            check(AttrPath::root("endpoint"), "Invalid endpoint", check_endpoint(e));
        }
        if let Some(k) = c.persistent_keepalive {
            check(AttrPath::root("persistent_keepalive"), "Invalid keepalive", check_range(k, 0, 65535));
        }
        if let Some(k) = &c.preshared_key {
            // Never echo the value: it is a secret.
            check(AttrPath::root("preshared_key"), "Invalid preshared key", check_key(k));
        }
        if let Some(dir) = &c.config_dir {
            check(AttrPath::root("config_dir"), "Invalid config directory", check_dir(dir));
        }
        Timeouts::validate(&c.timeouts, d);
    }

    async fn modify_plan(&self, _ctx: &Ctx, plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
        let Some(prior) = plan.prior.clone() else { return plan_psk_presence(plan) };
        // Another host is another node: the peer there is a different object.
        let host = |s: &State| s.ssh.as_ref().and_then(|s| s.host.clone());
        let ssh_v = plan.config_value.attr("ssh");
        let host_unknown = ssh_v.is_unknown() || ssh_v.attr("host").is_unknown();
        if host_unknown || host(&plan.config) != host(&prior) {
            plan.require_replace(AttrPath::root("ssh").attr("host"));
        }
        // A key generated by this apply (the interface had none) is not known yet.
        if prior.node_public_key.is_none() {
            plan.set_unknown("node_public_key")?;
        }
        plan_psk_presence(plan)
    }

    async fn create(&self, ctx: &Ctx, planned: State, config: &State) -> Applied<State> {
        let limit = Timeouts::get(&planned.timeouts, Op::Create, DEFAULT_TIMEOUT);
        let node = Node::connect(ctx, &planned, limit).await?;
        let node_key = node.apply(&planned, config, false, limit).await?;
        let live = node.peer(&planned, limit).await;
        node.close().await;
        let mut s = planned;
        s.id = Some(id_of(&s));
        s.node_public_key = Some(node_key);
        s.preshared_key_present = Some(config.preshared_key.is_some() || s.preshared_key.is_some());
        let live = match live {
            Ok(l) => l.and_then(|l| l.peer),
            // The peer is set on the node: record it (tainted) rather than forget it there.
            Err(d) => return Err(Failed::with_partial(s, d)),
        };
        s.latest_handshake = Some(live.as_ref().map_or(0, |p| p.latest_handshake));
        s.rx_bytes = Some(live.as_ref().map_or(0, |p| p.rx_bytes));
        s.tx_bytes = Some(live.as_ref().map_or(0, |p| p.tx_bytes));
        Ok(s.into())
    }

    async fn read(&self, ctx: &Ctx, state: State) -> Result<Done<Option<State>>, Diagnostics> {
        let limit = Timeouts::get(&state.timeouts, Op::Read, DEFAULT_TIMEOUT);
        let node = match Node::open(ctx, &state, limit).await? {
            Ok(node) => node,
            // One dark store must not block plans for the other 499: keep what we knew, and say
            // so. A wrong host key stays an error.
            Err(e @ (SshError::Connect { .. } | SshError::Timeout { .. })) => {
                let mut d = Diagnostics::new();
                d.warn_at(
                    AttrPath::root("ssh"),
                    "Node unreachable: peer not refreshed",
                    format!("{e}. Kept the last known state; drift on this node shows once it is reachable again."),
                );
                return Ok(Done::with_warnings(Some(state), d));
            }
            Err(e) => return Err(connect_diag(&e)),
        };
        let live = node.peer(&state, limit).await;
        node.close().await;
        let Some(live) = live? else { return Ok(None.into()) };
        let Some(peer) = live.peer else { return Ok(None.into()) };
        let mut s = state;
        s.id = Some(id_of(&s));
        s.node_public_key = live.node_public_key;
        // Configured values are compared by meaning, so `wg`'s spelling never shows as drift.
        let same_ips = |a: &[String], b: &[String]| {
            let norm = |v: &[String]| {
                let mut v: Vec<String> = v.iter().map(|s| canonical_cidr(s).unwrap_or_else(|| s.clone())).collect();
                v.sort();
                v
            };
            norm(a) == norm(b)
        };
        if !same_ips(s.allowed_ips.as_deref().unwrap_or_default(), &peer.allowed_ips) {
            s.allowed_ips = Some(peer.allowed_ips.clone());
        }
        // Only an IP endpoint can be compared (a name resolves to an address on the node).
        // Without one configured, the peer roams and its address is not ours to keep.
        if let Some(want) = s.endpoint.as_deref().and_then(|e| e.parse::<SocketAddr>().ok()) {
            if peer.endpoint != Some(want) {
                s.endpoint = peer.endpoint.map(|e| e.to_string());
            }
        }
        let keepalive = peer.persistent_keepalive;
        if keepalive.unwrap_or(0) != s.persistent_keepalive.unwrap_or(0) {
            s.persistent_keepalive = keepalive;
        }
        s.preshared_key_present = Some(peer.has_psk);
        s.latest_handshake = Some(peer.latest_handshake);
        s.rx_bytes = Some(peer.rx_bytes);
        s.tx_bytes = Some(peer.tx_bytes);
        Ok(Some(s).into())
    }

    async fn update(&self, ctx: &Ctx, prior: State, planned: State, config: &State) -> Applied<State> {
        let limit = Timeouts::get(&planned.timeouts, Op::Update, DEFAULT_TIMEOUT);
        let node = Node::connect(ctx, &planned, limit).await?;
        // `wg set` cannot clear an endpoint: re-add the peer without one.
        let fresh = prior.endpoint.is_some() && planned.endpoint.is_none();
        let node_key = node.apply(&planned, config, fresh, limit).await;
        node.close().await;
        let node_key = node_key?;
        let mut s = planned;
        s.id = Some(id_of(&s));
        // Counters stay as planned (the prior refresh): they are observations, refreshed on read.
        if s.node_public_key.is_none() {
            s.node_public_key = Some(node_key);
        }
        Ok(s.into())
    }

    async fn delete(&self, ctx: &Ctx, prior: State) -> Result<Done<()>, Diagnostics> {
        let limit = Timeouts::get(&prior.timeouts, Op::Delete, DEFAULT_TIMEOUT);
        let node = Node::connect(ctx, &prior, limit).await?;
        let r = node.remove(&prior, limit).await;
        node.close().await;
        r.map(Done::from)
    }

    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> Result<Done<State>, Diagnostics> {
        let (node, interface, public_key) = match req {
            ImportRequest::Id(id) => {
                let mut parts = id.splitn(3, '/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(n), Some(i), Some(k)) if !n.is_empty() && !i.is_empty() && !k.is_empty() => {
                        (n.to_string(), i.to_string(), k.to_string())
                    }
                    _ => {
                        return Err(Diagnostics::error(
                            "Invalid import ID",
                            format!("{id:?}: expected <node>/<interface>/<public_key>, e.g. 10.0.0.1/wg0/HIgo9x…ykw="),
                        ))
                    }
                }
            }
            ImportRequest::Identity(mut m) => {
                let mut take = |k: &str| {
                    m.remove(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                        Diagnostics::error("Incomplete identity", format!("identity.{k} is required for import"))
                    })
                };
                (take("node")?, take("interface")?, take("public_key")?)
            }
        };
        let bad = |what: &str, e: String| Diagnostics::error("Invalid import ID", format!("{what}: {e}"));
        check_host(&node).map_err(|e| bad("node", e))?;
        check_interface(&interface).map_err(|e| bad("interface", e))?;
        check_key(&public_key).map_err(|e| bad("public_key", e))?;
        let host_key = known_host_key(ctx, &node, ctx.clients.ssh.port_or_default())?;
        let mut s = State {
            ssh: Some(SshAccess { host: Some(node), host_key: Some(host_key), ..Default::default() }),
            interface: Some(interface),
            public_key: Some(public_key),
            allowed_ips: Some(vec![]),
            config_dir: Some(DEFAULT_CONFIG_DIR.into()),
            ..Default::default()
        };
        s.id = Some(id_of(&s));
        Ok(s.into())
    }
}

/// Plans `preshared_key_present` from the configuration: a write-only key is never compared,
/// but whether there is one is. When the node disagrees (a key added or removed by hand), the
/// change shows in the plan and the update puts the configured key (or none) back.
fn plan_psk_presence(plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
    let psk = plan.config_value.attr("preshared_key");
    if psk.is_unknown() {
        plan.set_unknown("preshared_key_present")?;
        return Ok(());
    }
    let want = !psk.is_null();
    if plan.prior.as_ref().and_then(|p| p.preshared_key_present) != Some(want) {
        plan.set("preshared_key_present", &want)?;
    }
    Ok(())
}

fn id_of(s: &State) -> String {
    format!(
        "{}/{}/{}",
        s.ssh.as_ref().and_then(|s| s.host.as_deref()).unwrap_or_default(),
        s.interface.as_deref().unwrap_or_default(),
        s.public_key.as_deref().unwrap_or_default()
    )
}

/// The pinned host key for `host` from the known_hosts file named by `EDGE_SSH_KNOWN_HOSTS`
/// (plain or hashed entries, `[host]:port` for other ports; ed25519 preferred). Import has no
/// configuration to take `host_key` from.
fn known_host_key(ctx: &Ctx, host: &str, port: u16) -> Result<String, Diagnostics> {
    let need = || {
        Diagnostics::error(
            "Import needs the node's pinned host key",
            format!(
                "Import has no configuration to take ssh.host_key from. Set {SSH_KNOWN_HOSTS_ENV} to a known_hosts file \
                 listing {host} (e.g. a line `{host} ssh-ed25519 AAAA…`, or `ssh-keyscan -H` output checked out of band)."
            ),
        )
    };
    let path = ctx.clients.settings.ssh_known_hosts.as_deref().ok_or_else(need)?;
    known_host_key_in(path, host, port)?.ok_or_else(need)
}

fn known_host_key_in(path: &std::path::Path, host: &str, port: u16) -> Result<Option<String>, Diagnostics> {
    let shown = path.display();
    if let Err(e) = std::fs::metadata(path) {
        return Err(Diagnostics::error("Cannot read the known_hosts file", format!("{shown}: {e}")));
    }
    let keys = russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .map_err(|e| Diagnostics::error("Cannot read the known_hosts file", format!("{shown}: {e}")))?;
    let key = keys
        .iter()
        .map(|(_, k)| k)
        .find(|k| k.algorithm() == russh::keys::Algorithm::Ed25519)
        .or_else(|| keys.first().map(|(_, k)| k));
    key.map(|k| k.to_openssh().map_err(|e| Diagnostics::error("Invalid known_hosts entry", e.to_string()))).transpose()
}

/// One peer line of the read script's output.
#[derive(Debug, PartialEq)]
struct LivePeer {
    public_key: String,
    has_psk: bool,
    endpoint: Option<SocketAddr>,
    allowed_ips: Vec<String>,
    latest_handshake: i64,
    rx_bytes: i64,
    tx_bytes: i64,
    persistent_keepalive: Option<i64>,
}

#[derive(Debug)]
struct LiveInterface {
    node_public_key: Option<String>,
    peer: Option<LivePeer>,
}

/// Parses the read script's output; `None` when the interface does not exist.
fn parse_read(out: &str, peer_key: &str) -> Result<Option<LiveInterface>, String> {
    let mut lines = out.lines();
    let first = lines.next().ok_or("no output from wg")?.trim();
    if first == "edge-no-interface" {
        return Ok(None);
    }
    let node_public_key = (first != "(none)").then(|| first.to_string());
    let num = |s: &str| s.parse::<i64>().map_err(|_| format!("unexpected number {s:?} in wg show dump"));
    let mut peer = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let [key, psk, endpoint, ips, handshake, rx, tx, keepalive] = f[..] else {
            return Err(format!("unexpected line in wg show dump: {} fields", f.len()));
        };
        if key != peer_key {
            continue;
        }
        peer = Some(LivePeer {
            public_key: key.to_string(),
            has_psk: psk != "(none)",
            endpoint: endpoint.parse().ok(),
            allowed_ips: if ips == "(none)" { vec![] } else { ips.split(',').map(String::from).collect() },
            latest_handshake: num(handshake)?,
            rx_bytes: num(rx)?,
            tx_bytes: num(tx)?,
            persistent_keepalive: if keepalive == "off" { None } else { Some(num(keepalive)?) },
        });
    }
    Ok(Some(LiveInterface { node_public_key, peer }))
}

/// A logged-in node and the three things we do there.
pub(crate) struct Node {
    session: Arc<Session>,
    target: SshTarget,
    host: String,
    stop: CancellationToken,
}

fn connect_diag(e: &SshError) -> Diagnostics {
    let summary = match e {
        SshError::HostKeyMismatch { .. } => "SSH host key mismatch",
        SshError::AuthFailed { .. } => "SSH authentication failed",
        _ => "Cannot reach the node over SSH",
    };
    Diagnostics::at(AttrPath::root("ssh"), summary, e.to_string())
}

impl Node {
    pub(crate) async fn connect(ctx: &Ctx, s: &State, limit: Duration) -> Result<Node, Diagnostics> {
        Self::open(ctx, s, limit).await?.map_err(|e| connect_diag(&e))
    }

    /// Outer error: the settings are incomplete; inner: the connection failed.
    async fn open(ctx: &Ctx, s: &State, limit: Duration) -> Result<Result<Node, SshError>, Diagnostics> {
        let target = target(ctx, s)?;
        let connect = async {
            // A busy hub's sshd drops connections beyond MaxStartups before the key exchange:
            // try again briefly. Never for a key or login refusal, nor after a timeout.
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
            let mut attempts = 1;
            loop {
                match ssh::shared(&target, limit).await {
                    Err(e @ (SshError::Connect { .. } | SshError::Protocol { .. })) if attempts < 3 => {
                        tracing::debug!(host = %target.host, error = %e, "ssh: connect failed, retrying");
                        backoff.wait().await;
                        attempts += 1;
                    }
                    r => return r,
                }
            }
        };
        let session = tokio::select! {
            r = connect => r,
            _ = ctx.stop.cancelled() => return Err(Diagnostics::error("Cancelled", "Terraform asked the provider to stop.")),
        };
        let host = target.host.clone();
        Ok(session.map(|session| Node { session, target, host, stop: ctx.stop.clone() }))
    }

    /// The session stays open for the other resources on this node (see `ssh::shared`).
    async fn close(self) {}

    pub(crate) async fn script(
        &self,
        what: &str,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<String, Diagnostics> {
        let mut argv = vec!["sh", "-c", script, "edge-wireguard"];
        argv.extend_from_slice(args);
        let run = async {
            match self.session.run(&argv, stdin, limit).await {
                // The shared connection broke (closed while idle, node restarted): the scripts
                // are idempotent, so run once more on a fresh one.
                Err(SshError::Protocol { .. }) => {
                    ssh::evict(&self.target, &self.session).await;
                    ssh::shared(&self.target, limit).await?.run(&argv, stdin, limit).await
                }
                r => r,
            }
        };
        let out = tokio::select! {
            r = run => {
                r.map_err(|e| Diagnostics::error(format!("Cannot {what} on {}", self.host), e.to_string()))?
            }
            _ = self.stop.cancelled() => {
                return Err(Diagnostics::error(
                    format!("Cancelled: {what} on {}", self.host),
                    "Terraform asked the provider to stop; the command may or may not have completed on the node.",
                ))
            }
        };
        if !out.success() {
            let status = out.status.map_or("no exit status".to_string(), |s| format!("exit status {s}"));
            return Err(Diagnostics::error(
                format!("Cannot {what} on {}", self.host),
                format!("{status}: {}", out.stderr.trim()),
            ));
        }
        Ok(out.stdout)
    }

    async fn peer(&self, s: &State, limit: Duration) -> Result<Option<LiveInterface>, Diagnostics> {
        let iface = s.interface.as_deref().unwrap_or_default();
        let peer = s.public_key.as_deref().unwrap_or_default();
        let out = self.script("read WireGuard interface", READ_SCRIPT, &[iface, peer], None, limit).await?;
        parse_read(&out, peer)
            .map_err(|e| Diagnostics::error(format!("Cannot read WireGuard interface {iface} on {}", self.host), e))
    }

    /// Sets the peer as `s` describes (the preshared key from `config`); returns the node key.
    async fn apply(&self, s: &State, config: &State, fresh: bool, limit: Duration) -> Result<String, Diagnostics> {
        let ips = s.allowed_ips.as_deref().unwrap_or_default().join(",");
        let keepalive = s.persistent_keepalive.filter(|k| *k > 0).map(|k| k.to_string()).unwrap_or_default();
        // Write-only: the value is only in the configuration (or, on old Terraform, in state).
        let psk = config.preshared_key.as_ref().or(s.preshared_key.as_ref()).map(|k| Zeroizing::new(format!("{k}\n")));
        let args: [&str; 8] = [
            s.interface.as_deref().unwrap_or_default(),
            s.config_dir.as_deref().unwrap_or(DEFAULT_CONFIG_DIR),
            s.public_key.as_deref().unwrap_or_default(),
            &ips,
            s.endpoint.as_deref().unwrap_or_default(),
            &keepalive,
            if psk.is_some() { "stdin" } else { "none" },
            if fresh { "fresh" } else { "" },
        ];
        let out = self
            .script("set the WireGuard peer", APPLY_SCRIPT, &args, psk.as_ref().map(|p| p.as_bytes()), limit)
            .await?;
        let key = out.lines().last().unwrap_or_default().trim().to_string();
        check_key(&key).map_err(|e| {
            Diagnostics::error(
                format!("Unexpected output from wg on {}", self.host),
                format!("interface public key: {e}"),
            )
        })?;
        Ok(key)
    }

    async fn remove(&self, s: &State, limit: Duration) -> Result<(), Diagnostics> {
        let args = [
            s.interface.as_deref().unwrap_or_default(),
            s.config_dir.as_deref().unwrap_or(DEFAULT_CONFIG_DIR),
            s.public_key.as_deref().unwrap_or_default(),
        ];
        self.script("remove the WireGuard peer", REMOVE_SCRIPT, &args, None, limit).await.map(|_| ())
    }
}

/// The resource's `ssh` settings over the provider's defaults.
fn target(ctx: &Ctx, s: &State) -> Result<SshTarget, Diagnostics> {
    let access = s.ssh.clone().unwrap_or_default();
    let defaults = &ctx.clients.ssh;
    let host = access.host.ok_or_else(|| {
        Diagnostics::at(AttrPath::root("ssh").attr("host"), "Missing SSH host", "ssh.host is required")
    })?;
    let host_key = access.host_key.ok_or_else(|| {
        Diagnostics::at(AttrPath::root("ssh").attr("host_key"), "Missing host key", "ssh.host_key is required (pinned)")
    })?;
    let private_key = access.private_key.or_else(|| defaults.private_key.clone()).ok_or_else(|| {
        Diagnostics::at(
            AttrPath::root("ssh").attr("private_key"),
            "No SSH private key",
            "Set ssh.private_key here, or `ssh = { private_key = … }` in the provider block, or EDGE_SSH_PRIVATE_KEY.",
        )
    })?;
    let port = match access.port {
        Some(p) => u16::try_from(p).map_err(|_| {
            Diagnostics::at(AttrPath::root("ssh").attr("port"), "Invalid SSH port", format!("{p} is not a port"))
        })?,
        None => defaults.port_or_default(),
    };
    Ok(SshTarget {
        host,
        port,
        user: access.user.or_else(|| defaults.user.clone()).unwrap_or_else(|| "root".into()),
        private_key: Zeroizing::new(private_key),
        host_key,
    })
}

// ---- validation: every value that reaches a node is checked here first ----

fn check_range(v: i64, lo: i64, hi: i64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is outside {lo}–{hi}"))
    }
}

pub(crate) fn check_host(h: &str) -> Result<(), String> {
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !h.is_empty() && h.len() <= 253 && h.trim_end_matches('.').split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{h:?} is neither an IP address nor a host name (letters, digits, '-' and '.')"))
    }
}

fn check_user(u: &str) -> Result<(), String> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("{u:?} is not a user name (letters, digits, '_', '-', '.')"))
    }
}

fn check_interface(i: &str) -> Result<(), String> {
    // Linux names are at most 15 bytes; `all` and `interfaces` are words `wg show` reserves.
    let ok = (1..=15).contains(&i.len())
        && i.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && i.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
        && !matches!(i, "all" | "interfaces");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{i:?} is not an interface name: 1–15 letters, digits, '_', '-', '.', '=', starting with a letter or digit"
        ))
    }
}

/// A WireGuard key: base64 of 32 bytes. The message never contains the value.
pub(crate) fn check_key(k: &str) -> Result<(), String> {
    match B64.decode(k) {
        Ok(b) if b.len() == 32 && k.len() == 44 => Ok(()),
        Ok(b) => Err(format!("a WireGuard key is 32 bytes in base64 (44 characters), this one is {} bytes", b.len())),
        Err(_) => {
            Err("not base64: a WireGuard key is 44 characters of base64 ending in '=', as `wg genkey`, `wg pubkey` or \
             `wg genpsk` print it"
                .into())
        }
    }
}

/// `addr/prefix` with the host bits zero, as `wg` stores it.
fn canonical_cidr(s: &str) -> Option<String> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let masked = match addr {
        IpAddr::V4(a) if len <= 32 => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) if len <= 128 => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
        _ => return None,
    };
    Some(format!("{masked}/{len}"))
}

fn check_cidr(s: &str) -> Result<(), String> {
    match canonical_cidr(s) {
        Some(c) if c == s => Ok(()),
        Some(c) => Err(format!("{s:?} has host bits set or is not in canonical form; WireGuard stores it as {c:?}")),
        None => Err(format!("{s:?} is not a CIDR such as 10.99.1.0/24 or fd00::/64")),
    }
}

fn check_endpoint(e: &str) -> Result<(), String> {
    let bad =
        || format!("{e:?} is not host:port (e.g. 198.51.100.7:51820, [2001:db8::1]:51820, hub.example.net:51820)");
    // Port 0 parses as a socket address, but nothing listens there: `wg` would send nowhere.
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return if sa.port() == 0 { Err(bad()) } else { Ok(()) };
    }
    let (host, port) = e.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.parse::<IpAddr>().is_ok() || check_host(host).is_err() {
        return Err(bad());
    }
    Ok(())
}

fn check_dir(d: &str) -> Result<(), String> {
    let ok = d.starts_with('/')
        && d.len() <= 255
        && d.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
        && !d.split('/').any(|c| c == "..");
    if ok {
        Ok(())
    } else {
        Err(format!("{d:?} is not an absolute path of letters, digits, '/', '_', '-', '.' (without '..')"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    #[test]
    fn hostile_values_are_rejected() {
        for bad in ["; rm -rf /", "$(reboot)", "wg0\nwg1", "wg'0", "all", "", "-wg0", "a-very-long-interface"] {
            assert!(check_interface(bad).is_err(), "{bad:?}");
        }
        for bad in ["x; rm -rf /", "$(id)", "a\nb", "`id`", "", "-oProxyCommand=x"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        for bad in ["10.0.0.1:51820; rm -rf /", "$(id):1", "h:0", "h", "h:99999", "10.0.0.1:0", "[::1]:0"] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
        for bad in ["/etc/wireguard; rm -rf /", "relative", "/a/../b", "/a b", "/$(id)"] {
            assert!(check_dir(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("'; rm -rf / #").is_err());
        assert!(check_key(KEY).is_ok());
        assert!(check_user("root; id").is_err());
    }

    #[test]
    fn good_values_pass() {
        assert!(check_interface("wg0").is_ok());
        assert!(
            check_host("10.0.0.1").is_ok() && check_host("hub.example.net").is_ok() && check_host("fd00::1").is_ok()
        );
        for ok in ["10.0.0.1:51820", "[fd00::1]:51820", "hub.example.net:51820"] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        assert!(check_dir("/etc/wireguard").is_ok());
    }

    #[test]
    fn cidrs_must_be_canonical() {
        assert!(check_cidr("10.99.0.0/24").is_ok());
        assert!(check_cidr("fd00::/64").is_ok());
        assert!(check_cidr("10.99.0.5/24").unwrap_err().contains("10.99.0.0/24"));
        assert!(check_cidr("10.99.0.0/33").is_err());
        assert!(check_cidr("10.99.0.0").is_err());
    }

    #[test]
    fn read_output_parses() {
        let out = format!(
            "NODEKEY=\n{KEY}\tset\t10.1.0.1:51820\t10.99.0.0/24,fd00::/64\t1700000000\t1234\t5678\t25\n\
             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        );
        let live = parse_read(&out, KEY).unwrap().unwrap();
        assert_eq!(live.node_public_key.as_deref(), Some("NODEKEY="));
        let p = live.peer.unwrap();
        assert_eq!(p.endpoint, Some("10.1.0.1:51820".parse().unwrap()));
        assert!(p.has_psk);
        assert_eq!(p.allowed_ips, vec!["10.99.0.0/24", "fd00::/64"]);
        assert_eq!(
            (p.latest_handshake, p.rx_bytes, p.tx_bytes, p.persistent_keepalive),
            (1700000000, 1234, 5678, Some(25))
        );
        let other = parse_read(&out, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap().unwrap().peer.unwrap();
        assert_eq!((other.endpoint, other.allowed_ips.len(), other.persistent_keepalive), (None, 0, None));
        assert!(!other.has_psk);
        assert!(parse_read("edge-no-interface\n", KEY).unwrap().is_none());
        assert!(parse_read("(none)\n", KEY).unwrap().unwrap().node_public_key.is_none());
        assert!(parse_read("K\nbroken line\n", KEY).is_err());
    }

    #[test]
    fn import_ids() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(WireguardPeer.import_for_test(&format!("10.0.0.1/wg0/{KEY}"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(SSH_KNOWN_HOSTS_ENV), "{text}");
        let err = rt.block_on(WireguardPeer.import_for_test("10.0.0.1/wg0")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Invalid import ID"), "{text}");
    }

    #[test]
    fn known_hosts_entries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUPcMQjH32vdI+SLIVWmwW3fzWYcradp8PjJFhWrMBH";
        std::fs::write(
            &f,
            format!("# comment\nother.example {key}\n10.0.0.1,hub.example {key} c\n[10.0.0.2]:2222 {key}\n"),
        )
        .unwrap();
        assert_eq!(known_host_key_in(&f, "hub.example", 22).unwrap().as_deref(), Some(key));
        assert_eq!(known_host_key_in(&f, "10.0.0.2", 2222).unwrap().as_deref(), Some(key));
        assert_eq!(known_host_key_in(&f, "10.0.0.2", 22).unwrap(), None);
        assert!(known_host_key_in(&dir.path().join("missing"), "h", 22).is_err());
        // Hashed entries, as `ssh-keygen -H` writes them.
        let hashed = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&f).output().unwrap();
        assert!(hashed.status.success());
        assert!(!std::fs::read_to_string(&f).unwrap().contains("hub.example"));
        assert_eq!(known_host_key_in(&f, "hub.example", 22).unwrap().as_deref(), Some(key));
    }

    impl WireguardPeer {
        async fn import_for_test(&self, id: &str) -> Result<State, Diagnostics> {
            let ctx = Ctx {
                clients: std::sync::Arc::new(crate::provider::Clients::default()),
                stop: tokio_util::sync::CancellationToken::new(),
                write_only_supported: true,
            };
            self.import(&ctx, ImportRequest::Id(id.to_string())).await.map(|d| d.value)
        }
    }
}
