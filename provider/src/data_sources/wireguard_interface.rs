//! `data "edge_wireguard_interface"`: a node's WireGuard interface as the node has it — its
//! public key, listen port, addresses and the public keys of its peers — read over the same
//! pinned SSH, with the same validation and connection sharing, as `edge_wireguard_peer`.
//!
//! It is what a hub-and-spoke layout reads the hub's key from: the stores' peers need the hub's
//! public key, and reading it needs no resource on the hub (before, an "anchor" peer that
//! depended on no store had to hand it out). The private key is never read: the one fixed
//! script below asks `wg` only for public values, and never for `wg show … dump`'s first line.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::framework::{
    AttrPath, Attribute, Block, Ctx, DataSource, Diagnostics, Done, NestedBlock, Op, Resource, Schema, Timeouts, Type,
};
use crate::resources::wireguard_peer::{self, check_key, Node, SshAccess, WireguardPeer};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub id: Option<String>,
    pub ssh: Option<SshAccess>,
    pub interface: Option<String>,
    pub public_key: Option<String>,
    pub listen_port: Option<i64>,
    pub addresses: Option<Vec<String>>,
    pub peer_public_keys: Option<Vec<String>>,
    pub timeouts: Option<Timeouts>,
}

pub struct WireguardInterface;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Args: interface. Each line is tagged; the public key is `(none)` while the interface has no
/// private key. `ip` runs apart from the pipeline so that its failure (no iproute2, no such
/// device) stops the script instead of reading as "no addresses". Only global addresses: the
/// kernel gives a tun-based interface (wireguard-go) an fe80:: link-local address of its own
/// and a kernel WireGuard interface none, and that says nothing about the configuration.
const READ_SCRIPT: &str = r#"set -eu
if ! key=$(wg show "$1" public-key 2>/dev/null); then echo edge-no-interface; exit 0; fi
echo "key $key"
echo "port $(wg show "$1" listen-port)"
wg show "$1" peers | sed 's/^/peer /'
addrs=$(ip -o addr show dev "$1" scope global)
printf '%s\n' "$addrs" | awk 'NF >= 4 && ($3 == "inet" || $3 == "inet6") { print "addr", $4 }'
"#;

/// What the read script found.
#[derive(Debug, Default, PartialEq)]
struct Live {
    public_key: Option<String>,
    listen_port: i64,
    addresses: Vec<String>,
    peers: Vec<String>,
}

/// Parses the read script's output; `None` when the interface does not exist.
fn parse(out: &str) -> Result<Option<Live>, String> {
    let mut live = Live::default();
    let mut seen_key = false;
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "edge-no-interface" {
            return Ok(None);
        }
        let (tag, value) = line.split_once(' ').ok_or_else(|| format!("unexpected line {line:?} from wg"))?;
        match tag {
            "key" => {
                seen_key = true;
                if value != "(none)" {
                    check_key(value).map_err(|e| format!("interface public key: {e}"))?;
                    live.public_key = Some(value.to_string());
                }
            }
            "port" => {
                live.listen_port = value.parse().map_err(|_| format!("listen port {value:?} is not a number"))?;
            }
            "peer" => {
                check_key(value).map_err(|e| format!("peer public key: {e}"))?;
                live.peers.push(value.to_string());
            }
            "addr" => live.addresses.push(value.to_string()),
            _ => return Err(format!("unexpected line {line:?} from wg")),
        }
    }
    if !seen_key {
        return Err("no output from wg".into());
    }
    // Sorted: `wg` lists peers in the order they were added, which says nothing.
    live.peers.sort();
    Ok(Some(live))
}

#[async_trait]
impl DataSource for WireguardInterface {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_wireguard_interface"
    }

    fn schema(&self) -> Schema {
        // The very `ssh` attribute of edge_wireguard_peer: one way to reach a node.
        let ssh = WireguardPeer
            .schema()
            .block
            .attribute("ssh")
            .cloned()
            .unwrap_or_else(|| Attribute::required("ssh", Type::Dynamic));
        Schema::new(
            0,
            Block::new(
                "A WireGuard interface on a node, read over SSH with a pinned host key: its public key, listen \
                 port, addresses and its peers' public keys. The private key never leaves the node.",
            )
            .attr(Attribute::computed("id", Type::String).describe("`<host>/<interface>`."))
            .attr(ssh)
            .attr(Attribute::required("interface", Type::String).describe("The WireGuard interface, e.g. `wg0`."))
            .attr(Attribute::computed("public_key", Type::String).describe(
                "The interface's public key (base64, as `wg show <interface> public-key` prints it). An interface \
                 without a private key is an error: this data source never generates one.",
            ))
            .attr(
                Attribute::computed("listen_port", Type::Number)
                    .describe("The UDP port the interface listens on (`wg show <interface> listen-port`)."),
            )
            .attr(Attribute::computed("addresses", Type::list(Type::String)).describe(
                "The interface's own addresses with their prefix length, e.g. `10.99.0.1/16` (`ip -o addr show dev \
                 <interface> scope global`), in the node's order. Link-local addresses the kernel adds by itself \
                 (fe80::/10) are left out.",
            ))
            .attr(
                Attribute::computed("peer_public_keys", Type::list(Type::String))
                    .describe("Public keys of the interface's peers, sorted."),
            )
            .block(NestedBlock::timeouts(&["read"])),
        )
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        // The peer's checks of `ssh.*` and `interface`, at the same attribute paths: a value that
        // edge_wireguard_peer refuses to send to a node is refused here too.
        let as_peer =
            wireguard_peer::State { ssh: c.ssh.clone(), interface: c.interface.clone(), ..Default::default() };
        WireguardPeer.validate(&as_peer, d);
        if let Some(t) = &c.timeouts {
            if t.create.is_some() || t.update.is_some() || t.delete.is_some() {
                d.error_at(
                    AttrPath::root("timeouts"),
                    "Unsupported timeout",
                    "A data source only reads: set timeouts.read.",
                );
            }
        }
        Timeouts::validate(&c.timeouts, d);
    }

    async fn read(&self, ctx: &Ctx, config: State) -> Result<Done<State>, Diagnostics> {
        let limit = Timeouts::get(&config.timeouts, Op::Read, DEFAULT_TIMEOUT);
        let iface = config.interface.clone().unwrap_or_default();
        let host = config.ssh.as_ref().and_then(|s| s.host.clone()).unwrap_or_default();
        let as_peer = wireguard_peer::State {
            ssh: config.ssh.clone(),
            interface: config.interface.clone(),
            ..Default::default()
        };
        let node = Node::connect(ctx, &as_peer, limit).await?;
        let out = node
            .script("read the WireGuard interface", READ_SCRIPT, &[&iface], None, limit)
            .await
            .map_err(|d| at_if_unset(d, AttrPath::root("interface")))?;
        let at_iface = |summary: String, detail: String| Diagnostics::at(AttrPath::root("interface"), summary, detail);
        let live =
            parse(&out).map_err(|e| at_iface(format!("Unexpected output from wg on {host}"), e))?.ok_or_else(|| {
                at_iface(
                    format!("No WireGuard interface {iface} on {host}"),
                    format!(
                        "`wg show {iface}` found no such interface on the node (or `wg` cannot reach it). Create it \
                         on the node first (e.g. NixOS `networking.wireguard.interfaces.{iface}`), or check the name."
                    ),
                )
            })?;
        let public_key = live.public_key.ok_or_else(|| {
            at_iface(
                format!("WireGuard interface {iface} on {host} has no key"),
                format!(
                    "The interface has no private key, so it has no public key to read. Give it one on the node \
                     (NixOS `generatePrivateKeyFile = true`, or `wg genkey | wg set {iface} private-key /dev/stdin`), \
                     or let an edge_wireguard_peer on it generate one and read that resource's node_public_key."
                ),
            )
        })?;
        let mut s = config;
        s.id = Some(format!("{host}/{iface}"));
        s.public_key = Some(public_key);
        s.listen_port = Some(live.listen_port);
        s.addresses = Some(live.addresses);
        s.peer_public_keys = Some(live.peers);
        Ok(s.into())
    }
}

/// Points the diagnostics that have no attribute path at `path`.
fn at_if_unset(mut d: Diagnostics, path: AttrPath) -> Diagnostics {
    for x in d.0.iter_mut().filter(|x| x.path.is_none()) {
        x.path = Some(path.clone());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const K2: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn read_output_parses() {
        let out = format!("key {K1}\nport 51820\npeer {K1}\npeer {K2}\naddr 10.99.0.1/16\naddr fd00::1/64\n");
        let live = parse(&out).unwrap().unwrap();
        assert_eq!(live.public_key.as_deref(), Some(K1));
        assert_eq!(live.listen_port, 51820);
        assert_eq!(live.peers, vec![K2.to_string(), K1.to_string()], "sorted");
        assert_eq!(live.addresses, vec!["10.99.0.1/16", "fd00::1/64"]);
        let bare = parse("key (none)\nport 0\n").unwrap().unwrap();
        assert_eq!((bare.public_key, bare.listen_port, bare.peers.len()), (None, 0, 0));
        assert!(parse("edge-no-interface\n").unwrap().is_none());
    }

    #[test]
    fn odd_output_is_an_error() {
        assert!(parse("").is_err());
        assert!(parse("key not-a-key\nport 1\n").is_err());
        assert!(parse(&format!("key {K1}\nport x\n")).is_err());
        assert!(parse(&format!("key {K1}\nport 1\nsomething else\n")).is_err());
        assert!(parse(&format!("key {K1}\nport 1\npeer $(id)\n")).is_err());
    }
}
