//! How a node's credentials, certificates, cluster membership and Ceph roles behave, as
//! pve-manager, pve-cluster, pve-access-control and pve-storage decide them (FIDELITY.md, rows
//! PVE-NODE-*, PVE-CLUSTER-*, PVE-CEPH-*), on both PVE profiles.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{decode, enc, poll, TestLab};
use serde_json::{json, Value};
use sha2::Digest;

/// A client that takes any certificate and reports which one it saw, so a test can name the
/// certificate a node presents by its fingerprint (what the provider pins).
fn seeing_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The fingerprint of the certificate `endpoint` presents on a new connection, if it answers.
fn presented(endpoint: &str) -> Option<String> {
    let r = seeing_client().get(format!("{endpoint}/api2/json/version")).send().ok()?;
    let der = r.extensions().get::<reqwest::tls::TlsInfo>()?.peer_certificate()?.to_vec();
    Some(sha2::Sha256::digest(&der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

fn pem_fingerprint(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("PEM body");
    sha2::Sha256::digest(&der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Waits for a task on node `n` (by the UPID's node), riding out connection resets and the
/// 401s of a restarting pmxcfs; returns (exit status, log).
fn task_of(lab: &TestLab, n: usize, root: bool, upid: &Value) -> (String, String) {
    let upid = upid.as_str().unwrap_or_else(|| panic!("a UPID, got {upid}"));
    let node = upid.split(':').nth(1).expect("UPID node");
    let path = format!("/nodes/{node}/tasks/{}", enc(upid));
    let call = |p: &str, form: &[(&str, &str)]| -> Option<(u16, Value)> {
        let url = format!("{}/api2/json{p}", lab.node_ep(0, n));
        if root {
            let password = lab.store(0)["pve"]["root_password"].as_str().expect("root_password");
            lab.try_pve_as(n, password, "GET", p, form).ok()
        } else {
            lab.client.get(url).header("Authorization", lab.token(0)).query(form).send().ok().map(decode)
        }
    };
    let status = poll(&format!("task {upid}"), 60, || match call(&format!("{path}/status"), &[]) {
        Some((200, v)) if v["data"]["status"] == "stopped" => Some(v["data"].clone()),
        _ => None,
    });
    let log = poll("task log", 30, || match call(&format!("{path}/log"), &[("limit", "500")]) {
        Some((200, v)) => Some(
            v["data"].as_array().into_iter().flatten().filter_map(|l| l["t"].as_str()).collect::<Vec<_>>().join("\n"),
        ),
        _ => None,
    });
    (status["exitstatus"].as_str().unwrap_or_default().to_string(), log)
}

fn started(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "a task was expected: {}", r.1);
    r.1["data"].clone()
}

fn message(v: &Value) -> String {
    v["message"].as_str().map(|m| m.trim_end().to_string()).unwrap_or_else(|| v.to_string())
}

/// PVE-NODE-ROOTONLY: every method the schema gives no `permissions` answers a token — even
/// root@pam's own, with privilege separation off — 403 before it looks at the parameters.
#[test]
fn root_only_methods_refuse_every_token() {
    for (net, pve) in [(116u8, "8.4"), (117, "9.1")] {
        let lab = TestLab::up(net, &["--pve", pve]);
        let file = format!("{}/schemas/pve-{pve}.json.gz", env!("CARGO_MANIFEST_DIR"));
        let tree = edge_lab::schemagen::decompress(&std::fs::read(file).expect("schema")).expect("schema tree");
        let mut root_only = Vec::new();
        let mut stack: Vec<&Value> = tree.as_array().expect("tree").iter().collect();
        while let Some(node) = stack.pop() {
            stack.extend(node["children"].as_array().into_iter().flatten());
            for (m, info) in node["info"].as_object().into_iter().flatten() {
                if info.get("permissions").is_none() {
                    root_only.push((m.clone(), node["path"].as_str().expect("path").to_string()));
                }
            }
        }
        // What the provider calls is in the class, on both profiles.
        for want in [
            ("POST", "/cluster/config"),
            ("POST", "/cluster/config/join"),
            ("DELETE", "/cluster/config/nodes/{node}"),
            ("POST", "/nodes/{node}/ceph/osd"),
            ("PUT", "/nodes/{node}/disks/wipedisk"),
        ] {
            assert!(root_only.iter().any(|(m, p)| m == want.0 && p == want.1), "{pve}: {want:?} is root-only");
        }
        assert_eq!(root_only.len(), 15, "{pve}: {root_only:?}");
        for (m, p) in &root_only {
            let path = p.replace("{node}", "pve1").replace(['{', '}'], "");
            let (c, v) = lab.pve(0, m, &path, &[]);
            assert_eq!(
                (c, message(&v).as_str()),
                (403, "Permission check failed (user != root@pam)"),
                "{pve}: {m} {path} with a token: {v}"
            );
        }
        // The same call as root@pam gets past the check (here: to parameter validation).
        let (c, v) = lab.pve_root(0, "POST", "/nodes/pve1/ceph/osd", &[]);
        assert_eq!(c, 400, "{v}");
        assert!(v["errors"]["dev"].is_string(), "{v}");
        // A token's GET elsewhere is unaffected.
        assert_eq!(lab.pve(0, "GET", "/cluster/status", &[]).0, 200);
    }
}

/// Serves `bytes` to any GET, as the provider's seed server does; returns its URL.
fn serve_once_per_request(bytes: Vec<u8>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                bytes.len()
            );
            let _ = s.write_all(&bytes);
        }
    });
    format!("http://{addr}/seed/0123456789abcdef.img")
}

struct Seed {
    url: String,
    sha256: String,
    cert_fingerprint: String,
    password: String,
}

/// A seed as the provider makes it: a self-signed bootstrap certificate for the node, root's
/// password as SHA-512 crypt, NUL-padded to a whole medium.
fn make_seed(node: &str, address: &str, password: &str) -> Seed {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec![node.to_string()]).expect("params");
    p.subject_alt_names.push(rcgen::SanType::IpAddress(address.parse().expect("ip")));
    let cert = p.self_signed(&key).expect("cert");
    let password = password.to_string();
    use sha_crypt::PasswordHasher;
    let hash = sha_crypt::ShaCrypt::SHA512.hash_password_with_salt(password.as_bytes(), b"saltsaltsalt").expect("hash");
    let json = serde_json::to_vec(&json!({
        "edge-seed": 1, "node": node, "address": address, "root_password_hash": hash.to_string(),
        "tls": {"cert_pem": cert.pem(), "key_pem": key.serialize_pem()},
        "ssh": {"host_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----", "host_public_key": "ssh-ed25519 AAAA test"},
    }))
    .expect("json");
    let sha256 = hex::encode(sha2::Sha256::digest(&json));
    let mut medium = json.clone();
    medium.resize(64 * 1024, 0);
    Seed { url: serve_once_per_request(medium), sha256, cert_fingerprint: pem_fingerprint(&cert.pem()), password }
}

struct Bmc {
    node: usize,
    http: reqwest::blocking::Client,
    user: String,
    pass: String,
    sys: String,
}

impl Bmc {
    fn of(lab: &TestLab, n: usize) -> Bmc {
        let rf = &lab.json["redfish"];
        Bmc {
            node: n,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().expect("client"),
            user: rf["username"].as_str().expect("user").into(),
            pass: rf["password"].as_str().expect("password").into(),
            sys: lab.store(0)["nodes"][n]["bmc"]["endpoint"].as_str().expect("bmc endpoint").into(),
        }
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.sys))
            .basic_auth(&self.user, Some(&self.pass))
            .json(&body)
            .send()
            .expect("redfish call");
        assert!(r.status().is_success(), "redfish {path}: {}", r.text().unwrap_or_default());
    }

    /// Boots the node's installer with `seed` (if any) on the removable medium. Waits until the
    /// lab saw the machine off, so the power cycle cannot fall between two of its BMC polls.
    fn install(&self, lab: &TestLab, image_url: &str, seed: Option<&str>) {
        use reqwest::Method;
        self.send(Method::POST, "/Actions/ComputerSystem.Reset", json!({"ResetType": "ForceOff"}));
        let node = lab.store(0)["nodes"][self.node]["name"].as_str().expect("name").to_string();
        poll("the lab sees the node off", 60, || {
            (lab.admin("GET", &format!("/lab/nodes/{node}"), None).1["power_on"] == false).then_some(())
        });
        if let Some(url) = seed {
            self.send(Method::POST, "/VirtualMedia/Floppy/Actions/VirtualMedia.InsertMedia", json!({"Image": url}));
        }
        self.send(Method::POST, "/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", json!({"Image": image_url}));
        self.send(
            Method::PATCH,
            "",
            json!({"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}}),
        );
        self.send(Method::POST, "/Actions/ComputerSystem.Reset", json!({"ResetType": "On"}));
    }
}

fn publish_image(lab: &TestLab, name: &str) -> String {
    let dir = std::path::Path::new(lab.json["artifacts"]["dir"].as_str().expect("artifacts dir"));
    std::fs::write(dir.join(name), format!("edge node image {name}\n").repeat(64)).expect("image");
    format!("{}/{name}", lab.json["artifacts"]["endpoint"].as_str().expect("artifacts endpoint"))
}

/// A root@pam call on node 0 that trusts whatever certificate it presents (the test checks
/// which one separately).
fn seeded(lab: &TestLab, password: &str, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    lab.try_pve_as_with(&seeing_client(), 0, password, method, path, form)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn ticket(lab: &TestLab, n: usize, password: &str) -> u16 {
    let url = format!("{}/api2/json/access/ticket", lab.node_ep(0, n));
    seeing_client()
        .post(url)
        .form(&[("username", "root@pam"), ("password", password)])
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// PVE-NODE-FRESH, PVE-NODE-SEED, PVE-NODE-REINSTALL-CERT, PVE-NODE-CUSTOM-CERT: an installed
/// edge image knows no token; its first boot takes root's password and the bootstrap
/// certificate from the seed medium; a reinstall makes a new node CA and certificate; removing
/// the custom certificate brings back the node's own, signed by its CA.
#[test]
fn fresh_node_knows_only_its_seed() {
    let lab = TestLab::up(118, &["--redfish", "--install-ms", "300", "--bmc-power-delay", "instant"]);
    let ep = lab.node_ep(0, 0);
    let address = lab.store(0)["nodes"][0]["address"].as_str().expect("address").to_string();
    let bmc = Bmc::of(&lab, 0);
    let image = publish_image(&lab, "a.iso");
    let seed = make_seed("pve1", &address, "correct horse battery staple 1");
    bmc.install(&lab, &image, Some(&seed.url));
    // The node presents the seed's certificate as soon as its API answers.
    let fp = poll("node API up", 120, || presented(&ep));
    assert_eq!(fp, seed.cert_fingerprint, "the bootstrap certificate of the seed");
    // No token exists on the node, not even the store's.
    let (c, _) = decode(
        seeing_client()
            .get(format!("{ep}/api2/json/version"))
            .header("Authorization", lab.token(0))
            .send()
            .expect("call"),
    );
    assert_eq!(c, 401, "a fresh node knows no token");
    // root@pam logs in with the seed's password, and only with it.
    assert_eq!(ticket(&lab, 0, &seed.password), 200);
    assert_eq!(ticket(&lab, 0, lab.store(0)["pve"]["root_password"].as_str().expect("pw")), 401);
    // The node states the seed it applied, through PVE's own API.
    let (c, cfg) = seeded(&lab, &seed.password, "GET", "/nodes/pve1/config", &[]);
    assert_eq!(c, 200, "{cfg}");
    let notes = cfg["data"]["description"].as_str().unwrap_or_default();
    assert!(notes.lines().any(|l| l == format!("edge-seed sha256={}", seed.sha256)), "{notes}");
    // certificates/info: the node's own CA and pve-ssl.pem beside the custom certificate.
    let (_, info) = seeded(&lab, &seed.password, "GET", "/nodes/pve1/certificates/info", &[]);
    let files: Vec<&str> =
        info["data"].as_array().expect("info").iter().filter_map(|c| c["filename"].as_str()).collect();
    assert_eq!(files, ["pve-root-ca.pem", "pve-ssl.pem", "pveproxy-ssl.pem"], "{info}");
    let ca_pem = info["data"][0]["pem"].as_str().expect("CA pem").to_string();
    let own = info["data"][1]["fingerprint"].as_str().expect("pve-ssl fp").to_string();
    // Removing the custom certificate: pve-ssl.pem from the next connection, verified by the
    // node's CA alone.
    let (c, v) = seeded(&lab, &seed.password, "DELETE", "/nodes/pve1/certificates/custom", &[("restart", "1")]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(poll("new certificate", 30, || presented(&ep).filter(|f| *f != seed.cert_fingerprint)), own);
    let by_ca = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client");
    let r = by_ca
        .post(format!("{ep}/api2/json/access/ticket"))
        .form(&[("username", "root@pam"), ("password", &seed.password)])
        .send();
    assert_eq!(r.expect("verified by the node CA").status().as_u16(), 200);

    // A reinstall with a new seed: new bootstrap certificate, new node CA.
    let seed2 = make_seed("pve1", &address, "correct horse battery staple 2");
    let image2 = publish_image(&lab, "b.iso");
    bmc.install(&lab, &image2, Some(&seed2.url));
    assert_eq!(
        poll("reinstalled", 120, || presented(&ep).filter(|f| *f == seed2.cert_fingerprint)),
        seed2.cert_fingerprint
    );
    assert_eq!(ticket(&lab, 0, &seed.password), 401, "the old seed's password is gone with the old disk");
    let (_, info) = seeded(&lab, &seed2.password, "GET", "/nodes/pve1/certificates/info", &[]);
    assert_ne!(info["data"][0]["pem"].as_str(), Some(ca_pem.as_str()), "a new node CA");
    assert_ne!(info["data"][1]["fingerprint"].as_str(), Some(own.as_str()), "a new pve-ssl.pem");

    // PVE-NODE-SEED-TAMPER (lab drift): the seed swapped in transit — the node presents a
    // certificate that is not the seed's.
    assert_eq!(lab.admin("POST", "/lab/drift", Some(json!({"kind": "seed_tamper", "node": "pve1"}))).0, 200);
    let seed3 = make_seed("pve1", &address, "correct horse battery staple 3");
    bmc.install(&lab, &publish_image(&lab, "c.iso"), Some(&seed3.url));
    let fp = poll("reinstalled (tampered)", 120, || presented(&ep).filter(|f| *f != seed2.cert_fingerprint));
    assert_ne!(fp, seed3.cert_fingerprint);

    // Without a seed medium (and on the other profile): no token either; root has the lab's
    // password, as after an install by hand.
    let plain = TestLab::up(119, &["--pve", "8.4", "--redfish", "--install-ms", "300", "--bmc-power-delay", "instant"]);
    Bmc::of(&plain, 0).install(&plain, &publish_image(&plain, "a.iso"), None);
    poll("node API up", 120, || presented(&plain.node_ep(0, 0)));
    assert_eq!(ticket(&plain, 0, plain.store(0)["pve"]["root_password"].as_str().expect("pw")), 200);
    let r = seeing_client()
        .get(format!("{}/api2/json/version", plain.node_ep(0, 0)))
        .header("Authorization", plain.token(0))
        .send();
    assert_eq!(r.expect("call").status().as_u16(), 401);
}

fn fingerprint_of(lab: &TestLab, n: usize) -> String {
    presented(&lab.node_ep(0, n)).expect("node answers")
}

/// PVE-CLUSTER-CREATE, PVE-CLUSTER-JOIN-TASK, PVE-CLUSTER-JOIN-CERT, PVE-CLUSTER-JOIN-QUORUM,
/// PVE-CLUSTER-JOININFO, PVE-CLUSTER-DELNODE-QUORUM.
#[test]
fn cluster_create_and_join_as_pve_cluster_runs_them() {
    for (net, pve) in [(120u8, "8.4"), (121, "9.1")] {
        let lab = TestLab::up(net, &["--pve", pve]);
        let addr = |n: usize| lab.store(0)["nodes"][n]["address"].as_str().expect("address").to_string();
        // join info of a standalone node: 424.
        let (c, v) = lab.pve(0, "GET", "/cluster/config/join", &[]);
        assert_eq!((c, message(&v).as_str()), (424, "node is not in a cluster, no join info available!"), "{pve}");
        // create: a task; pmxcfs restarts at its end (the task status itself may answer 401).
        let upid = started(lab.pve_root(0, "POST", "/cluster/config", &[("clustername", "edge")]));
        assert_eq!(task_of(&lab, 0, false, &upid).0, "OK", "{pve}");
        let (c, v) = lab.pve_root(0, "POST", "/cluster/config", &[("clustername", "edge")]);
        assert_eq!((c, message(&v).as_str()), (500, "cluster config '/etc/pve/corosync.conf' already exists"));

        let fp1 = fingerprint_of(&lab, 0);
        let pw = lab.store(0)["pve"]["root_password"].as_str().expect("pw").to_string();
        let join = |n: usize, fp: &str, password: &str| {
            started(lab.pve_root(
                n,
                "POST",
                "/cluster/config/join",
                &[("hostname", &addr(0)), ("fingerprint", fp), ("password", password)],
            ))
        };
        // Failures are the task's, not the call's.
        let wrong_fp = "AA:".repeat(31) + "AA";
        let (st, _) = task_of(&lab, 1, true, &join(1, &wrong_fp, &pw));
        assert_eq!(st, format!("fingerprint '{fp1}' not verified, abort!"), "{pve}");
        let (st, _) = task_of(&lab, 1, true, &join(1, &fp1, "wrong"));
        assert_eq!(st, "401 authentication failure", "{pve}");

        // Two joins at once: whichever reaches pve1 second finds the cluster without quorum (the
        // first joiner is in corosync.conf but not online yet) and is aborted. Which one is
        // first is the tasks' race, as on real nodes: the test takes either order.
        let before = [fingerprint_of(&lab, 1), fingerprint_of(&lab, 2)];
        let (u2, u3) = (join(1, &fp1, &pw), join(2, &fp1, &pw));
        let ((s2, log2), (s3, log3)) = (task_of(&lab, 1, true, &u2), task_of(&lab, 2, true, &u3));
        let (won, lost_log) = match (s2.as_str(), s3.as_str()) {
            ("OK", "Cluster join aborted!") => (1, log3),
            ("Cluster join aborted!", "OK") => (2, log2),
            _ => panic!("{pve}: one join must win, the other be aborted: pve2 {s2:?}, pve3 {s3:?}\n{log2}\n{log3}"),
        };
        let lost = 3 - won;
        assert!(
            lost_log.contains("An error occurred on the cluster node: cluster not ready - no quorum?"),
            "{lost_log}"
        );
        // After the join the node presents a new certificate, signed by the cluster's CA (pve1's).
        let after = poll("the joined node's new certificate", 30, || {
            presented(&lab.node_ep(0, won)).filter(|f| *f != before[won - 1])
        });
        let (_, info1) = lab.pve(0, "GET", "/nodes/pve1/certificates/info", &[]);
        let (_, info_won) = lab.pve(0, "GET", &format!("/nodes/pve{}/certificates/info", won + 1), &[]);
        assert_eq!(info_won["data"][0]["pem"], info1["data"][0]["pem"], "one CA for the cluster");
        assert_eq!(info_won["data"][1]["fingerprint"].as_str(), Some(after.as_str()));
        // Once the cluster has quorum again the other node joins.
        let (s, log) = task_of(&lab, lost, true, &join(lost, &fp1, &pw));
        assert_eq!(s, "OK", "{pve}: {log}");
        assert!(log.contains("generated new node certificate, restart pveproxy and pvedaemon services"), "{log}");
        let (st, _) = task_of(&lab, lost, true, &join(lost, &fp1, &pw));
        assert_eq!(st, "Check if node may join a cluster failed!", "{pve}: joining twice");

        // delnode needs quorum: with two of three members off, pve1 cannot remove one.
        for node in ["pve2", "pve3"] {
            assert_eq!(lab.admin("POST", "/lab/power", Some(json!({"node": node, "on": false}))).0, 200);
        }
        let (c, v) = lab.pve_root(0, "DELETE", "/cluster/config/nodes/pve3", &[]);
        assert_eq!((c, message(&v).as_str()), (500, "cluster not ready - no quorum?"), "{pve}");
        assert_eq!(lab.admin("POST", "/lab/power", Some(json!({"node": "pve2", "on": true}))).0, 200);
        poll("pve2 back", 30, || presented(&lab.node_ep(0, 1)));
        let (c, v) = lab.pve_root(0, "DELETE", "/cluster/config/nodes/pve3", &[]);
        assert_eq!(c, 200, "{pve}: {v}");
    }
}

/// PVE-CEPH-DAEMONS-RADOS, PVE-CEPH-FIRSTMON-MGR, PVE-CEPH-MON-ADDR, PVE-CEPH-DISKS.
#[test]
fn ceph_comes_up_in_pves_order() {
    for (net, pve) in [(122u8, "8.4"), (123, "9.1")] {
        let lab = TestLab::up(net, &["--pve", pve]);
        assert_eq!(lab.pve(0, "POST", "/nodes/pve1/ceph/init", &[("network", "127.0.0.0/8")]).0, 200);
        // Before the first monitor only the monitor list answers (empty).
        for path in ["/nodes/pve1/ceph/status", "/nodes/pve1/ceph/mgr", "/nodes/pve1/ceph/osd"] {
            let (c, v) = lab.pve(0, "GET", path, &[]);
            assert_eq!(
                (c, message(&v).as_str()),
                (500, "rados_connect failed - No such file or directory"),
                "{pve} {path}"
            );
        }
        assert_eq!(lab.pve(0, "GET", "/nodes/pve1/ceph/mon", &[]).1["data"], json!([]));
        // A second address in the public network: PVE cannot choose the monitor's.
        let (c, v) = lab.pve(
            0,
            "POST",
            "/nodes/pve1/network",
            &[("iface", "vmbr1"), ("type", "bridge"), ("cidr", "127.200.0.9/8"), ("autostart", "1")],
        );
        assert_eq!(c, 200, "{v}");
        assert_eq!(task_of(&lab, 0, false, &started(lab.pve(0, "PUT", "/nodes/pve1/network", &[]))).0, "OK");
        let (c, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/mon/pve1", &[]);
        assert_eq!(c, 500, "{v}");
        assert!(message(&v).starts_with("Multiple IPs for ceph public network '127.0.0.0/8' detected on pve1:"), "{v}");
        let me = lab.store(0)["nodes"][0]["address"].as_str().expect("address").to_string();
        let (c, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/mon/pve1", &[("mon-address", "10.9.9.9")]);
        assert_eq!((c, message(&v).as_str()), (500, "Specified monitor IP '10.9.9.9' not configured or up on pve1!"));
        // The first monitor: its task, and a separate task creating the manager.
        let upid = started(lab.pve(0, "POST", "/nodes/pve1/ceph/mon/pve1", &[("mon-address", &me)]));
        assert_eq!(task_of(&lab, 0, false, &upid).0, "OK");
        let mgr = poll("the manager of the first monitor", 30, || {
            let (_, v) = lab.pve(0, "GET", "/nodes/pve1/tasks", &[("typefilter", "cephcreatemgr")]);
            v["data"].as_array().and_then(|a| a.first()).map(|t| t["upid"].clone())
        });
        assert_eq!(task_of(&lab, 0, false, &mgr).0, "OK");
        assert_eq!(lab.pve(0, "GET", "/nodes/pve1/ceph/mgr", &[]).1["data"][0]["name"], "pve1");
        // The monitor reports the Ceph release a cluster of that PVE release runs.
        let mons = lab.pve(0, "GET", "/nodes/pve1/ceph/mon", &[]).1;
        let (short, codename) = if pve == "8.4" { ("18.2.7", "reef") } else { ("19.2.3", "squid") };
        assert_eq!(mons["data"][0]["ceph_version_short"], short, "{pve}: {mons}");
        assert!(mons["data"][0]["ceph_version"].as_str().is_some_and(|v| v.ends_with(&format!("{codename} (stable)"))));
        // Creating it again fails in the task, on the node's own directory.
        let (st, _) = task_of(&lab, 0, false, &started(lab.pve(0, "POST", "/nodes/pve1/ceph/mgr/pve1", &[])));
        assert_eq!(st, "ceph manager directory '/var/lib/ceph/mgr/ceph-pve1' already exists");
        let (c, v) = lab.pve(0, "POST", "/nodes/pve1/ceph/mon/pve1", &[("mon-address", &me)]);
        assert_eq!((c, message(&v).as_str()), (500, format!("monitor address '{me}' already in use").as_str()));
        assert_eq!(lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]).0, 200);

        // Disks: /dev/sde carries partitions; an OSD refuses it until it is wiped (root only).
        let (_, disks) = lab.pve(0, "GET", "/nodes/pve1/disks/list", &[]);
        let sde = disks["data"]
            .as_array()
            .expect("disks")
            .iter()
            .find(|d| d["devpath"] == "/dev/sde")
            .cloned()
            .expect("sde listed");
        assert_eq!(sde["used"], "partitions");
        let (c, v) = lab.pve_root(0, "POST", "/nodes/pve1/ceph/osd", &[("dev", "/dev/sde")]);
        assert_eq!((c, message(&v).as_str()), (500, "device '/dev/sde' is already in use"), "{pve}");
        assert_eq!(lab.pve(0, "PUT", "/nodes/pve1/disks/wipedisk", &[("disk", "/dev/sde")]).0, 403);
        let (st, log) = task_of(
            &lab,
            0,
            false,
            &started(lab.pve_root(0, "PUT", "/nodes/pve1/disks/wipedisk", &[("disk", "/dev/sde")])),
        );
        assert_eq!(st, "OK", "{log}");
        assert!(log.contains("wiping block device /dev/sde"), "{log}");
        let (_, disks) = lab.pve(0, "GET", "/nodes/pve1/disks/list", &[]);
        let sde =
            disks["data"].as_array().expect("disks").iter().find(|d| d["devpath"] == "/dev/sde").cloned().expect("sde");
        assert!(sde.get("used").is_none(), "{sde}");
        let (st, _) =
            task_of(&lab, 0, false, &started(lab.pve_root(0, "POST", "/nodes/pve1/ceph/osd", &[("dev", "/dev/sde")])));
        assert_eq!(st, "OK");
        // A disk an OSD holds cannot be wiped.
        let (c, v) = lab.pve_root(0, "PUT", "/nodes/pve1/disks/wipedisk", &[("disk", "/dev/sde")]);
        assert_eq!((c, message(&v).as_str()), (500, "disk/partition '/dev/sde' has a holder"));
    }
}

/// A three-node cluster with a monitor and an OSD on every node, formed through the API.
fn ceph_on_three_nodes(lab: &TestLab) {
    let addr = |n: usize| lab.store(0)["nodes"][n]["address"].as_str().expect("address").to_string();
    let upid = started(lab.pve_root(0, "POST", "/cluster/config", &[("clustername", "edge")]));
    assert_eq!(task_of(lab, 0, false, &upid).0, "OK");
    let (fp1, pw) = (fingerprint_of(lab, 0), lab.store(0)["pve"]["root_password"].as_str().expect("pw").to_string());
    for n in [1, 2] {
        let join = [("hostname", addr(0)), ("fingerprint", fp1.clone()), ("password", pw.clone())];
        let form: Vec<(&str, &str)> = join.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, log) = task_of(lab, n, true, &started(lab.pve_root(n, "POST", "/cluster/config/join", &form)));
        assert_eq!(st, "OK", "join of pve{}: {log}", n + 1);
    }
    assert_eq!(lab.pve(0, "POST", "/nodes/pve1/ceph/init", &[]).0, 200);
    for name in ["pve1", "pve2", "pve3"] {
        let upid = started(lab.pve(0, "POST", &format!("/nodes/{name}/ceph/mon/{name}"), &[]));
        assert_eq!(task_of(lab, 0, false, &upid).0, "OK", "monitor on {name}");
        let upid = started(lab.pve_root(0, "POST", &format!("/nodes/{name}/ceph/osd"), &[("dev", "/dev/sdb")]));
        assert_eq!(task_of(lab, 0, false, &upid).0, "OK", "OSD on {name}");
    }
}

/// The summary line of Ceph health check `code` in a status answer.
fn ceph_check(status: &Value, code: &str) -> String {
    let c = &status["data"]["health"]["checks"][code];
    assert_eq!(c["severity"], "HEALTH_WARN", "{code}: {status}");
    c["summary"]["message"].as_str().unwrap_or_else(|| panic!("{code} has no summary: {status}")).to_string()
}

/// PVE-CLUSTER-QUORUM, PVE-CEPH-HEALTH, PVE-CEPH-NO-QUORUM: what `/cluster/status` and the
/// Ceph status say while nodes are down, asked through a node that is up.
#[test]
fn cluster_and_ceph_status_follow_node_power() {
    for (net, pve) in [(146u8, "8.4"), (147, "9.1")] {
        let lab = TestLab::up(net, &["--pve", pve]);
        ceph_on_three_nodes(&lab);
        let (c, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
        assert_eq!(c, 200, "{st}");
        assert_eq!(st["data"]["health"]["status"], "HEALTH_OK", "{pve}: {st}");
        assert_eq!(st["data"]["health"]["checks"], json!({}));
        assert_eq!(st["data"]["quorum_names"], json!(["pve1", "pve2", "pve3"]));
        let members = |v: &Value| -> Vec<(String, Value)> {
            v["data"]
                .as_array()
                .expect("status list")
                .iter()
                .filter(|e| e["type"] == "node")
                .map(|e| (e["name"].as_str().expect("name").to_string(), e["online"].clone()))
                .collect()
        };
        let cluster = |v: &Value| {
            v["data"]
                .as_array()
                .expect("status list")
                .iter()
                .find(|e| e["type"] == "cluster")
                .cloned()
                .expect("cluster entry")
        };
        let (_, cs) = lab.pve(0, "GET", "/cluster/status", &[]);
        assert_eq!((cluster(&cs)["quorate"].clone(), cluster(&cs)["nodes"].clone()), (json!(1), json!(3)));

        // One node down: quorum holds (PVE and Ceph), its monitor and OSD are reported down.
        assert_eq!(lab.admin("POST", "/lab/power", Some(json!({"node": "pve3", "on": false}))).0, 200);
        let (_, cs) = lab.pve(0, "GET", "/cluster/status", &[]);
        assert_eq!(cluster(&cs)["quorate"], 1, "{pve}: {cs}");
        assert!(members(&cs).contains(&("pve3".into(), json!(0))), "{cs}");
        let (c, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
        assert_eq!(c, 200, "{st}");
        assert_eq!(st["data"]["health"]["status"], "HEALTH_WARN");
        assert_eq!(ceph_check(&st, "MON_DOWN"), "1/3 mons down, quorum pve1,pve2");
        assert_eq!(ceph_check(&st, "OSD_DOWN"), "1 osds down");
        assert_eq!(ceph_check(&st, "OSD_HOST_DOWN"), "1 host (1 osds) down");
        assert!(st["data"]["health"]["checks"].get("OSD_ROOT_DOWN").is_none(), "two hosts are up: {st}");
        assert_eq!(
            st["data"]["health"]["checks"]["OSD_DOWN"]["detail"][0]["message"],
            "osd.2 (root=default,host=pve3) is down"
        );
        assert_eq!(
            (st["data"]["osdmap"]["num_osds"].clone(), st["data"]["osdmap"]["num_up_osds"].clone()),
            (json!(3), json!(2))
        );
        assert_eq!(st["data"]["quorum_names"], json!(["pve1", "pve2"]));

        // Two down: corosync has no majority; the monitors neither, and PVE's RADOS
        // connection times out.
        assert_eq!(lab.admin("POST", "/lab/power", Some(json!({"node": "pve2", "on": false}))).0, 200);
        let (_, cs) = lab.pve(0, "GET", "/cluster/status", &[]);
        assert_eq!(cluster(&cs)["quorate"], 0, "{pve}: {cs}");
        assert_eq!(members(&cs), vec![("pve1".into(), json!(1)), ("pve2".into(), json!(0)), ("pve3".into(), json!(0))]);
        let (c, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
        assert_eq!((c, message(&st).as_str()), (500, "got timeout"), "{pve}");

        for node in ["pve2", "pve3"] {
            assert_eq!(lab.admin("POST", "/lab/power", Some(json!({"node": node, "on": true}))).0, 200);
        }
        let (_, st) = lab.pve(0, "GET", "/nodes/pve1/ceph/status", &[]);
        assert_eq!(st["data"]["health"]["status"], "HEALTH_OK", "{pve}: back up: {st}");
    }
}
