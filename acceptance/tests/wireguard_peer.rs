//! edge_wireguard_peer through real Terraform, real OpenSSH and real WireGuard (wireguard-go):
//! a hub and two stores in network namespaces (see support/netns.rs).

#[path = "support/netns.rs"]
mod netns;

use edge_acceptance::{assert_same_except, Tf};
use netns::Net;

fn hcl(net: &Net, psk: &str) -> String {
    let hub = net.node("hub");
    let stores: String = net.nodes[1..]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "    {name} = {{ host = \"{host}\", host_key = \"{key}\", interface = \"{iface}\", tunnel_ip = \"{ip}\", hub_endpoint = \"{ep}:{port}\", config_dir = \"{dir}\", psk = \"{psk}\" }}\n",
                name = s.name,
                host = s.ssh_addr,
                key = s.host_key,
                iface = s.iface,
                ip = s.tunnel_ip,
                ep = net.hub_link_addrs[i],
                port = netns::WG_PORT,
                dir = s.conf_dir.display(),
                // Store 2's tunnel also has a preshared key; store 1's has none.
                psk = if s.name == "store2" { psk } else { "" },
            )
        })
        .collect();
    format!(
        r#"
terraform {{
  required_providers {{ edge = {{ source = "edgeform/edge" }} }}
}}
provider "edge" {{
  ssh = {{ user = "root" }} # private key from EDGE_SSH_PRIVATE_KEY
}}

locals {{
  hub = {{ host = "{hub_host}", host_key = "{hub_key}", interface = "{hub_iface}", config_dir = "{hub_dir}" }}
  stores = {{
{stores}  }}
}}

# The operator's laptop: a key managed centrally on purpose. Its peer on the hub is the one hub
# peer that depends on no store, so it can hand the hub's own key to every store.
resource "edge_wireguard_key" "ops" {{}}

resource "edge_wireguard_peer" "hub_ops" {{
  ssh         = {{ host = local.hub.host, host_key = local.hub.host_key }}
  interface   = local.hub.interface
  config_dir  = local.hub.config_dir
  public_key  = edge_wireguard_key.ops.public_key
  allowed_ips = ["192.168.77.250/32"]
}}

resource "edge_wireguard_peer" "store_to_hub" {{
  for_each             = local.stores
  ssh                  = {{ host = each.value.host, host_key = each.value.host_key }}
  interface            = each.value.interface
  config_dir           = each.value.config_dir
  public_key           = edge_wireguard_peer.hub_ops.node_public_key
  endpoint             = each.value.hub_endpoint
  allowed_ips          = ["192.168.77.0/24"]
  persistent_keepalive = 5
  preshared_key        = each.value.psk == "" ? null : each.value.psk
}}

resource "edge_wireguard_peer" "hub_to_store" {{
  for_each    = local.stores
  ssh         = {{ host = local.hub.host, host_key = local.hub.host_key }}
  interface   = local.hub.interface
  config_dir  = local.hub.config_dir
  public_key  = edge_wireguard_peer.store_to_hub[each.key].node_public_key
  allowed_ips = ["${{each.value.tunnel_ip}}/32"]
  preshared_key = each.value.psk == "" ? null : each.value.psk
}}

output "tunnel_up" {{
  value = {{ for k, p in edge_wireguard_peer.hub_to_store : k => p.latest_handshake > 0 }}
}}
"#,
        hub_host = hub.ssh_addr,
        hub_key = hub.host_key,
        hub_iface = hub.iface,
        hub_dir = hub.conf_dir.display(),
    )
}

fn tf_for(net: &Net, hcl: &str) -> Tf {
    let mut tf = Tf::new(hcl);
    tf.env("EDGE_SSH_PRIVATE_KEY", &net.client_key);
    tf
}

/// `apply -refresh-only`: records refreshed values (and outputs built on them) in the state.
fn refresh(tf: &Tf) {
    let r = tf.run(&["apply", "-refresh-only", "-auto-approve", "-no-color"]);
    assert!(r.ok(), "{}", r.output());
}

/// Asserts, with the daemons' logs on failure.
macro_rules! check {
    ($net:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("{}\n{}", format!($($msg)+), $net.logs());
        }
    };
}

#[test]
fn hub_and_spoke_over_real_wireguard_and_ssh() {
    let net = Net::up(2);
    let hub = net.node("hub");
    let psk = net.wg(&["genpsk"]).trim().to_string();
    let tf = tf_for(&net, &hcl(&net, &psk));
    tf.init();
    tf.apply();

    // Each store knows the hub, the hub knows both stores and the ops laptop.
    let hub_key = net.wg(&["show", &hub.iface, "public-key"]).trim().to_string();
    let store_key = |n: &str| net.wg(&["show", &net.node(n).iface, "public-key"]).trim().to_string();
    assert_eq!(tf.resource("edge_wireguard_peer.hub_ops")["node_public_key"], hub_key.as_str());
    for s in ["store1", "store2"] {
        assert_eq!(net.peers(s), vec![hub_key.clone()], "{s} peers");
        let r = tf.resource(&format!("edge_wireguard_peer.store_to_hub[\"{s}\"]"));
        assert_eq!(r["node_public_key"], store_key(s).as_str());
        assert!(net.peers("hub").contains(&store_key(s)), "hub has {s}");
    }
    assert_eq!(net.peers("hub").len(), 3);
    // The three hub peers shared one SSH connection (one login) in the apply.
    check!(net, net.logins("hub") == 1, "hub logins: {}", net.logins("hub"));

    // The preshared key reached both ends of store 2's tunnel (on stdin), and only those.
    let psks = |n: &str| net.wg(&["show", &net.node(n).iface, "preshared-keys"]);
    assert!(psks("store2").contains(&format!("{hub_key}\t{psk}")), "{}", psks("store2"));
    assert!(psks("hub").contains(&format!("{}\t{psk}", store_key("store2"))), "{}", psks("hub"));
    assert!(psks("hub").contains(&format!("{}\t(none)", store_key("store1"))), "{}", psks("hub"));

    // The nodes' private keys never reached Terraform, nor did the (write-only) preshared key.
    let state = std::fs::read_to_string(tf.dir().join("terraform.tfstate")).expect("state");
    assert!(!state.contains(&psk), "the preshared key is in the state");
    for n in ["hub", "store1", "store2"] {
        let private = net.wg(&["show", &net.node(n).iface, "private-key"]).trim().to_string();
        assert!(!state.contains(&private), "the private key of {n} is in the state");
    }

    // Traffic flows through the tunnels, with real handshakes.
    for s in ["store1", "store2"] {
        net.ping_until_ok(s, "192.168.77.1");
        check!(net, net.handshake("hub", &store_key(s)) > 0, "no handshake with {s}");
    }
    net.ping_until_ok("store1", "192.168.77.12"); // store → store via the hub
    refresh(&tf);
    assert_eq!(tf.outputs()["tunnel_up"]["value"], edge_acceptance::json!({"store1": true, "store2": true}));
    let h = tf.resource("edge_wireguard_peer.hub_to_store[\"store1\"]");
    assert!(h["latest_handshake"].as_i64().unwrap_or(0) > 0 && h["rx_bytes"].as_i64().unwrap_or(0) > 0, "{h}");
    // Counters move between refreshes without ever making a plan.
    net.ping_until_ok("store1", "192.168.77.1");
    tf.assert_no_changes();

    // The config file matches the live interface, so a restart keeps the peers.
    let conf = std::fs::read_to_string(hub.conf_dir.join(format!("{}.conf", hub.iface))).expect("hub conf");
    for s in ["store1", "store2"] {
        assert!(conf.contains(&store_key(s)), "hub conf lacks {s}:\n{conf}");
    }
    // Restart store 2's WireGuard from its file alone (key, hub peer, endpoint, psk): it calls in.
    net.restart_wireguard("store2");
    net.ping_until_ok("store2", "192.168.77.1");
    check!(net, net.handshake("hub", &store_key("store2")) > 0, "no handshake after restart");
    tf.assert_no_changes();

    // A peer removed by hand is drift: the plan puts it back, and the tunnel works again.
    let s1 = store_key("store1");
    net.wg(&["set", &hub.iface, "peer", &s1, "remove"]);
    let plan = tf.plan_output();
    assert!(plan.contains("edge_wireguard_peer.hub_to_store[\"store1\"] will be created"), "{plan}");
    assert!(plan.contains("1 to add, 0 to change, 0 to destroy"), "{plan}");
    tf.apply();
    assert!(net.peers("hub").contains(&s1));
    net.ping_until_ok("store1", "192.168.77.1");
    refresh(&tf); // the tunnel_up output changed (false → true): record it
    tf.assert_no_changes();

    // An altered peer is drift too: allowed IPs on the hub, the hub's endpoint on store 1.
    net.wg(&["set", &hub.iface, "peer", &s1, "allowed-ips", "192.168.77.99/32"]);
    net.wg(&["set", &net.node("store1").iface, "peer", &hub_key, "endpoint", "127.0.0.1:9"]);
    let plan = tf.plan_output();
    assert!(plan.contains("0 to add, 2 to change, 0 to destroy"), "{plan}");
    assert!(plan.contains("127.0.0.1:9") && plan.contains("192.168.77.99/32"), "{plan}");
    tf.apply();
    tf.assert_no_changes();

    // A preshared key removed by hand is drift as well (its presence; the value is write-only).
    let s2 = store_key("store2");
    net.wg(&["set", &hub.iface, "peer", &s2, "preshared-key", "/dev/null"]);
    let plan = tf.plan_output();
    assert!(plan.contains("0 to add, 1 to change, 0 to destroy"), "{plan}");
    assert!(plan.contains("preshared_key_present = false -> true"), "{plan}");
    tf.apply();
    assert!(psks("hub").contains(&format!("{s2}\t{psk}")), "{}", psks("hub"));
    tf.assert_no_changes();

    // Store 1 gets a new interface key: the hub's peer for it follows, and it handshakes again.
    let (ok, out) = net.exec(
        "store1",
        &["sh", "-c", &format!("wg genkey | wg set {} private-key /dev/stdin", net.node("store1").iface)],
    );
    assert!(ok, "{out}");
    let new_key = store_key("store1");
    assert_ne!(new_key, s1);
    let plan = tf.plan_output();
    assert!(plan.contains("edge_wireguard_peer.hub_to_store[\"store1\"] must be replaced"), "{plan}");
    assert!(plan.contains(&new_key), "{plan}");
    tf.apply();
    let peers = net.peers("hub");
    assert!(peers.contains(&new_key) && !peers.contains(&s1), "{peers:?}");
    net.ping_until_ok("store1", "192.168.77.1");
    check!(net, net.handshake("hub", &new_key) > 0, "no handshake after rotation");
    refresh(&tf);
    tf.assert_no_changes();

    // Import by node/interface/public_key, with the host key from a known_hosts file.
    let addr = "edge_wireguard_peer.hub_to_store[\"store2\"]";
    let before = tf.resource(addr);
    let known_hosts = net.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{} {}\n", hub.ssh_addr, hub.host_key)).expect("known_hosts");
    let mut tf = tf;
    tf.env("EDGE_SSH_KNOWN_HOSTS", &known_hosts.display().to_string());
    tf.state_rm(addr);
    tf.import(addr, &format!("{}/{}/{}", hub.ssh_addr, hub.iface, store_key("store2")));
    let after = tf.resource(addr);
    assert_same_except(
        &before,
        &after,
        &["config_dir", "latest_handshake", "rx_bytes", "tx_bytes", "preshared_key_version", "timeouts"],
        addr,
    );
    // Import cannot know a non-default config_dir: the next apply records it.
    let plan = tf.plan_output();
    assert!(plan.contains("0 to add, 1 to change, 0 to destroy") && plan.contains("config_dir"), "{plan}");
    tf.apply();
    tf.assert_no_changes();

    // And by identity (Terraform ≥ 1.12 `import` blocks).
    tf.state_rm(addr);
    tf.write(
        "import.tf",
        &format!(
            "import {{\n  to = {addr}\n  identity = {{\n    node = \"{}\"\n    interface = \"{}\"\n    public_key = \"{}\"\n  }}\n}}\n",
            hub.ssh_addr,
            hub.iface,
            store_key("store2")
        ),
    );
    let out = tf.apply().output();
    assert!(out.contains("1 imported"), "{out}");
    assert_same_except(&before, &tf.resource(addr), &["latest_handshake", "rx_bytes", "tx_bytes"], addr);
    tf.assert_no_changes();
    std::fs::remove_file(tf.dir().join("import.tf")).expect("remove import.tf");

    // A store that cannot be reached does not block the plan: its peers keep their last known
    // state, with a warning. (A wrong host key, by contrast, is an error: see below.)
    net.stop_sshd("store2");
    let r = tf.run(&["plan", "-detailed-exitcode", "-no-color"]);
    assert_eq!(r.code, 0, "{}", r.output());
    assert!(r.output().contains("Node unreachable"), "{}", r.output());
    net.start_sshd_again("store2");

    // Destroy removes the peers from every interface (and from the config files).
    tf.destroy();
    for n in ["hub", "store1", "store2"] {
        assert!(net.peers(n).is_empty(), "{n} still has peers: {:?}", net.peers(n));
    }
    let conf = std::fs::read_to_string(hub.conf_dir.join(format!("{}.conf", hub.iface))).expect("hub conf");
    assert!(!conf.contains("[Peer]"), "{conf}");
}

#[test]
fn wrong_host_key_is_refused() {
    let net = Net::up(1);
    let (hub, store) = (net.node("hub"), net.node("store1"));
    // The store's address, pinned to the hub's host key: a man in the middle, as far as we know.
    let tf = tf_for(
        &net,
        &format!(
            r#"
terraform {{
  required_providers {{ edge = {{ source = "edgeform/edge" }} }}
}}
provider "edge" {{
  ssh = {{ user = "root" }}
}}
resource "edge_wireguard_peer" "p" {{
  ssh         = {{ host = "{host}", host_key = "{key}" }}
  interface   = "{iface}"
  config_dir  = "{dir}"
  public_key  = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
  allowed_ips = ["192.168.77.50/32"]
}}
"#,
            host = store.ssh_addr,
            key = hub.host_key,
            iface = store.iface,
            dir = store.conf_dir.display()
        ),
    );
    tf.init();
    let out = tf.apply_fails();
    assert!(out.contains("SSH host key mismatch") && out.contains("does not match the pinned key"), "{out}");
    assert!(net.peers("store1").is_empty(), "nothing was done on the node");
    assert_eq!(net.wg(&["show", &store.iface, "public-key"]).trim(), "(none)", "no key was generated");

    // With the right key, a missing interface is named as such.
    let main = std::fs::read_to_string(tf.dir().join("main.tf")).expect("main.tf");
    tf.write(
        "main.tf",
        &main.replace(&hub.host_key, &store.host_key).replace(&format!("\"{}\"", store.iface), "\"wgnope0\""),
    );
    let out = tf.apply_fails();
    assert!(out.contains("WireGuard interface wgnope0 does not exist on this node"), "{out}");
}

#[test]
fn hostile_strings_are_rejected_before_anything_runs() {
    let marker = std::env::temp_dir().join(format!("edge-wg-pwned-{}", std::process::id()));
    let m = marker.display().to_string();
    let tf = Tf::new(&format!(
        r#"
terraform {{
  required_providers {{ edge = {{ source = "edgeform/edge" }} }}
}}
resource "edge_wireguard_peer" "p" {{
  ssh                  = {{ host = "127.0.0.1; touch {m}", host_key = "ssh-ed25519 $(touch {m})", user = "root'; touch {m}; '" }}
  interface            = "wg0; touch {m}"
  config_dir           = "/etc/wireguard/$(touch {m})"
  public_key           = "x' ; touch {m} #"
  endpoint             = "10.0.0.1:51820\ntouch {m}"
  allowed_ips          = ["10.0.0.0/24 `touch {m}`"]
  persistent_keepalive = -1
}}
"#
    ));
    tf.init();
    let r = tf.run(&["plan", "-no-color"]);
    assert!(!r.ok());
    let out = r.output();
    for summary in [
        "Invalid SSH host",
        "Invalid host key",
        "Invalid SSH user",
        "Invalid interface name",
        "Invalid config directory",
        "Invalid public key",
        "Invalid endpoint",
        "Invalid allowed IP",
        "Invalid keepalive",
    ] {
        assert!(out.contains(summary), "missing {summary:?} in:\n{out}");
    }
    assert!(!marker.exists(), "a hostile string was executed");
}

#[test]
fn lifecycle_with_terraform_1_0_3() {
    let net = Net::up(1);
    let store = net.node("store1");
    let psk = net.wg(&["genpsk"]).trim().to_string();
    let mut tf = Tf::with_terraform(
        &format!(
            r#"
terraform {{
  required_providers {{ edge = {{ source = "edgeform/edge" }} }}
}}
provider "edge" {{
  ssh = {{ user = "root" }}
}}
resource "edge_wireguard_peer" "p" {{
  ssh           = {{ host = "{host}", host_key = "{key}" }}
  interface     = "{iface}"
  config_dir    = "{dir}"
  public_key    = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
  allowed_ips   = ["192.168.77.50/32"]
  preshared_key = "{psk}"
}}
"#,
            host = store.ssh_addr,
            key = store.host_key,
            iface = store.iface,
            dir = store.conf_dir.display()
        ),
        edge_acceptance::terraform_legacy_bin(),
    );
    tf.env("EDGE_SSH_PRIVATE_KEY", &net.client_key);
    tf.init();
    let out = tf.apply().output();
    // Terraform 1.0 has no write-only attributes: the key is kept in state, and we say so.
    assert!(out.contains("Stored in state on this Terraform version"), "{out}");
    assert_eq!(net.peers("store1"), vec!["HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="]);
    let psks = net.wg(&["show", &store.iface, "preshared-keys"]);
    assert!(psks.contains(&psk), "{psks}");
    tf.assert_no_changes();
    tf.destroy();
    assert!(net.peers("store1").is_empty());
}
