//! Test hosts for the WireGuard-over-SSH tests: one network namespace per node, each running
//! `wireguard-go` and its own `sshd`, linked to the root namespace (where the provider runs) and
//! hub ↔ store by veth pairs. Names and addresses are derived from the pid so parallel test
//! binaries never collide; everything is torn down on drop, also when a test panics.
//!
//! Addresses: 10.A.B.0/24 with A.B from the pid. Root ↔ node n: 10.A.B.(4n+1)/30 (root) and
//! (4n+2) (node, where sshd listens). Hub ↔ store n: 10.A.B.(64+4n+1)/30 (hub) and (64+4n+2).
//! Tunnel: 192.168.77.0/24 inside the namespaces only (hub .1, store n .(10+n)).

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WG_PORT: u16 = 51820;

pub struct Node {
    pub name: String,
    pub ns: String,
    /// The WireGuard interface (unique on the machine: UAPI sockets are shared).
    pub iface: String,
    /// Where sshd listens, reachable from the root namespace.
    pub ssh_addr: String,
    /// `ssh-ed25519 AAAA…` of this node's sshd.
    pub host_key: String,
    pub tunnel_ip: String,
    /// Where the node keeps `<iface>.conf`.
    pub conf_dir: PathBuf,
}

pub struct Net {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// The OpenSSH private key every sshd accepts (for root).
    pub client_key: String,
    /// hub-side address of the hub ↔ store n link, per store (index n-1).
    pub hub_link_addrs: Vec<String>,
    children: RefCell<Vec<(String, Child)>>,
    namespaces: Vec<String>,
    ifaces: Vec<String>,
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub use edge_acceptance::poll;

impl Net {
    /// Builds hub + `stores` store nodes. Needs root, `ip`, `wireguard-go`, `wg`, `sshd`.
    pub fn up(stores: usize) -> Net {
        // Tests of one binary run in parallel threads: a counter tells their networks apart.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let pid = std::process::id();
        let tag = format!("{}{seq}", pid % 100_000);
        let x = pid.wrapping_mul(10).wrapping_add(seq);
        let (a, b) = (64 + (x / 250) % 64, x % 250);
        let dir = tempfile::Builder::new().prefix("edge-wgnet-").tempdir().expect("temp dir");
        let client = dir.path().join("client_key");
        run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-test", "-f", &client.display().to_string()]);
        let client_key = std::fs::read_to_string(&client).expect("client key");
        let client_pub = std::fs::read_to_string(dir.path().join("client_key.pub")).expect("client pub");
        std::fs::write(dir.path().join("authorized_keys"), client_pub).expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let mut net = Net {
            dir,
            nodes: vec![],
            client_key,
            hub_link_addrs: vec![],
            children: RefCell::new(vec![]),
            namespaces: vec![],
            ifaces: vec![],
        };
        for n in 0..=stores {
            let name = if n == 0 { "hub".to_string() } else { format!("store{n}") };
            net.add_node(&name, n as u32, &tag, (a, b));
        }
        // The hub routes store ↔ store traffic (inside its own namespace only).
        let hub_ns = net.nodes[0].ns.clone();
        run(&["ip", "netns", "exec", &hub_ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        for n in 1..=stores {
            let (hub_ns, store_ns) = (net.nodes[0].ns.clone(), net.nodes[n].ns.clone());
            let (vh, vs) = (format!("eh{tag}x{n}"), format!("es{tag}x{n}"));
            run(&["ip", "link", "add", &vh, "netns", &hub_ns, "type", "veth", "peer", "name", &vs, "netns", &store_ns]);
            let hub_addr = format!("10.{a}.{b}.{}", 64 + 4 * n + 1);
            let store_addr = format!("10.{a}.{b}.{}", 64 + 4 * n + 2);
            run(&["ip", "-n", &hub_ns, "addr", "add", &format!("{hub_addr}/30"), "dev", &vh]);
            run(&["ip", "-n", &hub_ns, "link", "set", &vh, "up"]);
            run(&["ip", "-n", &store_ns, "addr", "add", &format!("{store_addr}/30"), "dev", &vs]);
            run(&["ip", "-n", &store_ns, "link", "set", &vs, "up"]);
            net.hub_link_addrs.push(hub_addr);
        }
        net
    }

    fn add_node(&mut self, name: &str, n: u32, tag: &str, (a, b): (u32, u32)) {
        let ns = format!("edgewg{tag}-{name}");
        // A namespace left by an earlier, killed run with the same pid: ours by name.
        let _ = Command::new("ip").args(["netns", "del", ns.as_str()]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);

        let (vr, vn) = (format!("er{tag}x{n}"), format!("en{tag}x{n}"));
        run(&["ip", "link", "add", &vr, "type", "veth", "peer", "name", &vn, "netns", &ns]);
        let root_addr = format!("10.{a}.{b}.{}", 4 * n + 1);
        let ssh_addr = format!("10.{a}.{b}.{}", 4 * n + 2);
        run(&["ip", "addr", "add", &format!("{root_addr}/30"), "dev", &vr]);
        run(&["ip", "link", "set", &vr, "up"]);
        run(&["ip", "-n", &ns, "addr", "add", &format!("{ssh_addr}/30"), "dev", &vn]);
        run(&["ip", "-n", &ns, "link", "set", &vn, "up"]);

        let iface = format!("wg{tag}{}", &name[..1]) + &name[name.len() - 1..];
        self.start_wireguard(&ns, &iface);
        self.ifaces.push(iface.clone());
        let tunnel_ip = if n == 0 { "192.168.77.1".to_string() } else { format!("192.168.77.{}", 10 + n) };
        run(&["wg", "set", &iface, "listen-port", &WG_PORT.to_string()]);
        run(&["ip", "-n", &ns, "addr", "add", &format!("{tunnel_ip}/24"), "dev", &iface]);
        run(&["ip", "-n", &ns, "link", "set", &iface, "up"]);

        let host_key = self.start_sshd(name, &ns, &ssh_addr);
        let conf_dir = self.dir.path().join(format!("{name}-etc-wireguard"));
        self.nodes.push(Node { name: name.into(), ns, iface, ssh_addr, host_key, tunnel_ip, conf_dir });
    }

    fn start_wireguard(&self, ns: &str, iface: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{iface}.log")))
            .expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "wireguard-go", "-f", iface])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start wireguard-go");
        self.children.borrow_mut().push((format!("wireguard-go {iface}"), child));
        let sock = PathBuf::from(format!("/var/run/wireguard/{iface}.sock"));
        poll(&format!("{} to appear", sock.display()), Duration::from_secs(10), || sock.exists().then_some(()));
    }

    fn start_sshd(&self, name: &str, ns: &str, addr: &str) -> String {
        let d = self.dir.path();
        let key = d.join(format!("{name}_host_ed25519"));
        if !key.exists() {
            run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", &key.display().to_string()]);
        }
        let config = d.join(format!("{name}_sshd_config"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PidFile none\nLogLevel VERBOSE\n",
                key.display(),
                d.join("authorized_keys").display()
            ),
        )
        .expect("sshd config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(format!("{name}_sshd.log")))
            .expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.children.borrow_mut().push((format!("sshd {name}"), child));
        let sock: std::net::SocketAddr = format!("{addr}:22").parse().expect("addr");
        poll(&format!("sshd of {name} on {sock}"), Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(300)).ok().map(|_| ())
        });
        let public = std::fs::read_to_string(d.join(format!("{name}_host_ed25519.pub"))).expect("host key");
        // `ssh-ed25519 AAAA…` without a comment.
        public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Runs a command inside a node's namespace; returns (success, stdout+stderr).
    pub fn exec(&self, node: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.node(node).ns.as_str()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// `wg ARGS` (the UAPI socket is reachable from any namespace), asserting success.
    pub fn wg(&self, args: &[&str]) -> String {
        let mut v = vec!["wg"];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Public keys of the peers on a node's interface.
    pub fn peers(&self, node: &str) -> Vec<String> {
        self.wg(&["show", &self.node(node).iface, "peers"]).lines().map(String::from).collect()
    }

    /// Pings `ip` from `node` until one reply comes back.
    pub fn ping_until_ok(&self, node: &str, ip: &str) {
        poll(&format!("ping {node} → {ip} through the tunnel"), Duration::from_secs(40), || {
            self.exec(node, &["ping", "-c", "1", "-W", "1", ip]).0.then_some(())
        });
    }

    /// Latest handshake (unix time, 0 = never) of `peer` on a node's interface.
    pub fn handshake(&self, node: &str, peer: &str) -> u64 {
        self.wg(&["show", &self.node(node).iface, "latest-handshakes"])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(k, _)| *k == peer)
            .and_then(|(_, t)| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// How many logins a node's sshd has accepted so far.
    pub fn logins(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join(format!("{name}_sshd.log"))).unwrap_or_default();
        log.matches("Accepted publickey").count()
    }

    /// Logs of all daemons, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
                s +=
                    &format!("--- {}\n{}\n", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// SIGTERM (so wireguard-go removes its socket), then SIGKILL after 3 s.
fn stop(what: &str, child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM".to_string(), child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            eprintln!("{what} ignored SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Net {
    fn stop_child(&self, label: &str) {
        let mut children = self.children.borrow_mut();
        let i = children.iter().position(|(l, _)| l == label).unwrap_or_else(|| panic!("no process {label}"));
        let (what, mut child) = children.remove(i);
        stop(&what, &mut child);
    }

    /// Stops a node's sshd (the node becomes unreachable over SSH).
    pub fn stop_sshd(&self, name: &str) {
        self.stop_child(&format!("sshd {name}"));
    }

    /// Starts a node's sshd again, with the same host key.
    pub fn start_sshd_again(&self, name: &str) {
        let n = self.node(name);
        self.start_sshd(name, &n.ns, &n.ssh_addr);
    }

    /// A node restart as far as WireGuard goes: the interface is gone with everything set at
    /// run time, comes back empty, and is loaded from `<conf_dir>/<iface>.conf` (like
    /// `wg setconf` at boot), then given its address again.
    pub fn restart_wireguard(&self, name: &str) {
        let n = self.node(name);
        self.stop_child(&format!("wireguard-go {}", n.iface));
        self.start_wireguard(&n.ns, &n.iface);
        let conf = n.conf_dir.join(format!("{}.conf", n.iface));
        run(&["wg", "setconf", &n.iface, &conf.display().to_string()]);
        run(&["ip", "-n", &n.ns, "addr", "add", &format!("{}/24", n.tunnel_ip), "dev", &n.iface]);
        run(&["ip", "-n", &n.ns, "link", "set", &n.iface, "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (what, child) in self.children.get_mut().iter_mut() {
            stop(what, child);
        }
        // Deleting a namespace deletes its veth ends, and with them the root-side peers.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns.as_str()]).status();
        }
        for iface in &self.ifaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{iface}.sock"));
        }
        if !std::thread::panicking() {
            // Nothing of this network may outlive the test: namespaces, or processes that run
            // with its directory (sshd configs) or its interfaces (wireguard-go -f IFACE).
            let listed = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
            let listed = String::from_utf8_lossy(&listed);
            let left_ns: Vec<&String> = self
                .namespaces
                .iter()
                .filter(|ns| listed.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())))
                .collect();
            assert!(left_ns.is_empty(), "network namespaces left behind: {left_ns:?}");
            let mut left = edge_acceptance::processes_mentioning(self.dir.path());
            for iface in &self.ifaces {
                left.extend(edge_acceptance::processes_with_args(&["wireguard-go", "-f", iface]));
            }
            assert!(left.is_empty(), "processes of the test network left behind: {left:?}");
        }
    }
}
