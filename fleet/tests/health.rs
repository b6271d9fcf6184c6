//! The store agent's health checks against a real edge lab (`edge-lab up` from the target dir,
//! stopped when the test ends, panics included: `edge_acceptance::Lab` downs it on drop and
//! checks nothing of it is left). Each test has its own lab: `--net 141..144`. WireGuard is read
//! through `wg` itself where an interface's absence is the point, and through a stand-in
//! printing `wg show IFACE latest-handshakes`'s format where handshake times are.
//!
//! Build the lab first: `cargo build -p edge-lab`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_acceptance::{json, Lab, Value};
use edge_fleet::health::{self, combine, Apis, CheckResult, HealthConfig, Verdict};
use edge_fleet::rollout::Outcome;
use edge_images::hash::Sha256Hash;
use edge_images::keys::SecretKey;
use edge_images::manifest::Manifest;
use edge_provider::clients::poll::{poll_until, Backoff, Probe};
use edge_provider::clients::pve::{CephDaemon, JoinRequest, MaybeUpid, PveClient};
use edge_provider::clients::ClientError;
use edge_provider::provider::ApiConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const IMAGE_URL: &str = "http://images.edge.test/edge-node.img";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// lab.json as it is now: installs and joins rewrite the nodes' fingerprints.
fn lab_json(lab: &Lab) -> Value {
    let text = std::fs::read_to_string(lab.dir.path().join("lab.json")).expect("lab.json");
    serde_json::from_str(&text).expect("lab.json is JSON")
}

fn field(v: &Value, what: &str) -> String {
    v.as_str().unwrap_or_else(|| panic!("lab.json has no {what}")).to_string()
}

/// The check called `name`; a missing one fails the test.
fn result<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} result in {results:#?}"))
}

fn assert_check(results: &[CheckResult], name: &str, verdict: Verdict, observed: &str) {
    let r = result(results, name);
    assert_eq!((r.verdict, r.observed.as_str()), (verdict, observed), "{name}: {results:#?}");
}

fn config(v: Value) -> HealthConfig {
    HealthConfig::from_json(v.to_string().as_bytes()).expect("a valid health config")
}

/// The APIs as a freshly installed store's agent has them: PVE through pve1 as root@pam (the
/// image knows no token) with pve1's certificate pinned, PBS with the store's token.
fn store_apis(lab: &Lab) -> Apis {
    let j = lab_json(lab);
    let (store, pve1) = (&j["stores"][0], &j["stores"][0]["nodes"][0]);
    let pve = ApiConfig {
        endpoint: Some(field(&pve1["endpoint"], "pve1 endpoint")),
        root_password: Some(field(&store["pve"]["root_password"], "root password")),
        tls_fingerprint: Some(field(&pve1["tls_fingerprint"], "pve1 fingerprint")),
        ..Default::default()
    };
    let pbs = ApiConfig {
        endpoint: Some(field(&store["pbs"]["endpoint"], "PBS endpoint")),
        api_token: Some(field(&store["pbs"]["api_token"], "PBS token")),
        tls_fingerprint: Some(field(&store["pbs"]["tls_fingerprint"], "PBS fingerprint")),
        ..Default::default()
    };
    Apis { pve: Some(pve), pbs: Some(pbs) }
}

fn datastore(lab: &Lab) -> String {
    field(&lab.store(0)["pbs"]["datastore"], "PBS datastore")
}

/// A backup snapshot in the store's datastore, `age_s` old.
fn backup(lab: &Lab, group: (&str, &str), age_s: i64, extra: Value) {
    let mut body = json!({"backup_type": group.0, "backup_id": group.1, "backup_time": now() - age_s});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    lab.admin("POST", "/lab/backups", Some(&body));
}

/// An executable stand-in for `wg` that checks its arguments and prints `lines` (with `NOW`
/// replaced by the time it runs) the way `wg show wg0 latest-handshakes` does.
fn fake_wg(dir: &Path, lines: &str) -> PathBuf {
    let path = dir.join("wg");
    let script = format!(
        "#!/bin/sh\n[ \"$*\" = \"show wg0 latest-handshakes\" ] || {{ echo \"unexpected: $*\" >&2; exit 2; }}\nNOW=$(date +%s)\n{}\n",
        lines.lines().map(|l| format!("printf '%s\\n' \"{l}\"")).collect::<Vec<_>>().join("\n")
    );
    std::fs::write(&path, script).expect("write fake wg");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake wg");
    path
}

/// A signed image manifest naming one boot file; (manifest path, its sha256, the file's sha256).
fn signed_image(dir: &Path) -> (PathBuf, String, String) {
    let img = dir.join("edge-node.img");
    std::fs::write(&img, b"an edge node image, for the health checks").expect("write image");
    let mut m = Manifest::new("2026.1.0", "/nix/store/00000000000000000000000000000000-nixos-system-edge");
    m.add_file("edge-node.img", &img).expect("manifest entry");
    let key = SecretKey::generate("edge-test-1").expect("key");
    let bytes = m.sign(&[&key]).to_json();
    let path = dir.join("manifest.json");
    std::fs::write(&path, &bytes).expect("write manifest");
    let file_sha = Sha256Hash::digest(&std::fs::read(&img).expect("read image")).to_hex();
    (path, Sha256Hash::digest(&bytes).to_hex(), file_sha)
}

/// Setup only: a root@pam client for node `i` that takes any certificate (nodes change theirs
/// while they install and join; the checks themselves pin).
fn root_client(lab: &Lab, i: usize) -> PveClient {
    let j = lab_json(lab);
    PveClient::from_config(&ApiConfig {
        endpoint: Some(field(&j["stores"][0]["nodes"][i]["endpoint"], "node endpoint")),
        root_password: Some(field(&j["stores"][0]["pve"]["root_password"], "root password")),
        insecure: Some(true),
        ..Default::default()
    })
    .expect("PVE client")
}

async fn done(pve: &PveClient, upid: MaybeUpid, stop: &CancellationToken) -> Result<(), ClientError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    match upid {
        Some(u) => pve.wait_task_through_restart(&u, deadline, stop).await,
        None => Ok(()),
    }
}

/// The store as an apply leaves it: every node installed from the image (`sha256`), one
/// cluster, a monitor and an OSD on every node.
fn converge(lab: &Lab, sha256: &str) {
    for node in NODES {
        lab.admin("POST", "/lab/install", Some(&json!({"node": node, "image_url": IMAGE_URL, "sha256": sha256})));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let stop = CancellationToken::new();
        let clients: Vec<PveClient> = (0..NODES.len()).map(|i| root_client(lab, i)).collect();
        for (pve, name) in clients.iter().zip(NODES) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(500));
            let up = poll_until(deadline, &stop, &format!("{name} installed"), backoff, || async {
                match pve.node_status(name).await {
                    Ok(_) => Probe::<(), ClientError>::Ready(()),
                    Err(e) => Probe::NotYet(e.to_string()),
                }
            })
            .await;
            assert!(up.is_ok(), "{name} did not come up: {up:?}");
        }
        let pve1 = &clients[0];
        let upid = pve1.create_cluster("edge").await.expect("cluster create");
        done(pve1, upid, &stop).await.expect("cluster create task");
        let j = lab_json(lab);
        let (address, fingerprint) = (
            field(&j["stores"][0]["nodes"][0]["address"], "pve1 address"),
            field(&j["stores"][0]["nodes"][0]["tls_fingerprint"], "pve1 fingerprint"),
        );
        let password = field(&j["stores"][0]["pve"]["root_password"], "root password");
        for pve in &clients[1..] {
            let req =
                JoinRequest { hostname: address.clone(), fingerprint: fingerprint.clone(), password: password.clone() };
            let upid = pve.join_cluster(&req).await.expect("join");
            done(pve, upid, &stop).await.expect("join task");
        }
        // Through pve1 from here on: the cluster proxies to its members.
        let pve1 = root_client(lab, 0);
        pve1.ceph_init("pve1", None).await.expect("ceph init");
        for name in NODES {
            let upid = pve1.ceph_create_daemon(name, CephDaemon::Mon, None).await.expect("monitor");
            done(&pve1, upid, &stop).await.expect("monitor task");
            let upid = pve1.ceph_create_osd(name, "/dev/sdb").await.expect("OSD");
            done(&pve1, upid, &stop).await.expect("OSD task");
        }
    });
}

/// Everything up and recent: every check passes and the report says succeeded. Then the same
/// store judged against another image: the image check fails with what each node booted.
#[test]
fn a_healthy_store_passes_every_check() {
    let lab = Lab::up(&["--net", "141", "--install-ms", "200"]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (manifest, manifest_sha, image_sha) = signed_image(tmp.path());
    converge(&lab, &image_sha);
    backup(&lab, ("vm", "100"), 3 * 3600 + 60, json!({"verify": "ok"}));
    // A newer backup still running has no manifest yet: it does not count.
    backup(&lab, ("vm", "100"), 60, json!({"finished": false}));
    let hub = "hUbKey0000000000000000000000000000000000000=";
    let wg = fake_wg(tmp.path(), &format!("{hub}\t$((NOW - 42))"));
    let cfg = config(json!({
        "quorum": {"nodes": 3},
        "ceph": {},
        "wireguard": {"interface": "wg0", "max_handshake_age_s": 300, "peers": [hub], "command": wg},
        "backup": {"datastore": datastore(&lab), "max_age_s": 26 * 3600},
        "image": {"nodes": NODES, "manifest": manifest},
    }));
    let release = edge_fleet::release::Release {
        format: edge_fleet::release::FORMAT.into(),
        name: "2026.1.0".into(),
        files: vec![],
        provider_sha256: "0".repeat(64),
        image_manifest_sha256: manifest_sha,
    };
    let cfg = cfg.for_release(&release);
    let apis = store_apis(&lab);

    let results = health::run_with(&cfg, &apis);
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [health::QUORUM, health::CEPH, health::WIREGUARD, health::BACKUP, health::IMAGE]);
    assert_check(&results, health::QUORUM, Verdict::Pass, "quorate, 3/3 nodes online");
    assert_check(&results, health::CEPH, Verdict::Pass, "HEALTH_OK");
    let wg_seen = &result(&results, health::WIREGUARD).observed;
    let wg_ok =
        ["42", "43"].iter().any(|s| *wg_seen == format!("latest handshake {s} s ago (peer hUbKey0000…; 1 peer(s))"));
    assert!(wg_ok && result(&results, health::WIREGUARD).verdict == Verdict::Pass, "{results:#?}");
    assert_check(&results, health::BACKUP, Verdict::Pass, "last backup 3 h ago (vm/100)");
    assert_check(&results, health::IMAGE, Verdict::Pass, &format!("3/3 nodes booted {}", &image_sha[..12]));
    assert_eq!(combine(&results), Outcome::Succeeded);

    // Judged against another image (given by its sha256 this time), nothing else changed.
    let other = "ab".repeat(32);
    let mut wrong = cfg.clone();
    wrong.image = Some(health::ImageCheck {
        nodes: NODES.iter().map(|n| n.to_string()).collect(),
        sha256: Some(other.clone()),
        manifest: None,
        file: None,
        manifest_sha256: None,
    });
    let results = health::run_with(&wrong, &apis);
    let booted = &image_sha[..12];
    let seen = format!(
        "pve1 booted {booted} ({IMAGE_URL}); pve2 booted {booted} ({IMAGE_URL}); pve3 booted {booted} ({IMAGE_URL}); the release's is {}",
        &other[..12]
    );
    assert_check(&results, health::IMAGE, Verdict::Fail, &seen);
    assert_eq!(combine(&results), Outcome::Failed);
}

/// A node powered off behind the store's back: Ceph reports its daemons down (quorum holds);
/// a second one: the cluster loses quorum and Ceph cannot be read at all.
#[test]
fn ceph_and_quorum_faults_fail_with_what_was_seen() {
    let lab = Lab::up(&["--net", "142", "--install-ms", "200"]);
    converge(&lab, &"cd".repeat(32));
    let cfg = config(json!({"quorum": {}, "ceph": {}}));
    let apis = store_apis(&lab);
    let results = health::run_with(&cfg, &apis);
    assert_eq!(combine(&results), Outcome::Succeeded, "{results:#?}");

    lab.admin("POST", "/lab/power", Some(&json!({"node": "pve3", "on": false})));
    let results = health::run_with(&cfg, &apis);
    assert_check(&results, health::QUORUM, Verdict::Pass, "quorate, 2/3 nodes online (pve3 offline)");
    assert_check(
        &results,
        health::CEPH,
        Verdict::Fail,
        "HEALTH_WARN: 1/3 mons down, quorum pve1,pve2; 1 osds down; 1 host (1 osds) down",
    );
    assert_eq!(combine(&results), Outcome::Failed);

    lab.admin("POST", "/lab/power", Some(&json!({"node": "pve2", "on": false})));
    let results = health::run_with(&cfg, &apis);
    assert_check(&results, health::QUORUM, Verdict::Fail, "not quorate, 1/3 nodes online (pve2, pve3 offline)");
    assert_check(
        &results,
        health::CEPH,
        Verdict::Fail,
        "no Ceph status through pve1: GET /nodes/pve1/ceph/status: HTTP 500: got timeout",
    );
    assert_eq!(combine(&results), Outcome::Failed);
}

/// A PVE endpoint that refuses connections gives no data: its checks are Unknown and the
/// report pending, even though the backup check passes.
#[test]
fn an_unreachable_pve_is_pending_not_failed() {
    let lab = Lab::up(&["--net", "143"]);
    backup(&lab, ("ct", "101"), 600, json!({}));
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let mut apis = store_apis(&lab);
    if let Some(pve) = &mut apis.pve {
        pve.endpoint = Some(format!("https://127.0.0.1:{port}"));
    }
    let cfg = config(json!({
        "quorum": {}, "ceph": {},
        "backup": {"datastore": datastore(&lab), "max_age_s": 3600},
        "image": {"nodes": ["pve1"], "sha256": "ef".repeat(32)},
    }));
    let results = health::run_with(&cfg, &apis);
    // Whatever call comes first (the root@pam login here) is refused.
    for (name, what) in [
        (health::QUORUM, "cannot read the cluster status: "),
        (health::CEPH, "cannot tell which node answers: "),
        (health::IMAGE, "cannot read pve1's notes: "),
    ] {
        let r = result(&results, name);
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        assert!(r.observed.starts_with(what) && r.observed.contains("Connection refused"), "{name}: {:?}", r.observed);
    }
    assert_check(&results, health::BACKUP, Verdict::Pass, "last backup 10 min ago (ct/101)");
    assert_eq!(combine(&results), Outcome::Pending);
}

/// Backups: the newest finished, undamaged one decides; older than the limit fails, none is
/// no data, a missing datastore fails.
#[test]
fn a_backup_older_than_the_limit_fails() {
    let lab = Lab::up(&["--net", "144"]);
    let ds = datastore(&lab);
    let apis = store_apis(&lab);
    let check = |backup: Value| {
        let results = health::run_with(&config(json!({ "backup": backup })), &apis);
        assert_eq!(results.len(), 1, "{results:#?}");
        results
    };
    let results = check(json!({"datastore": ds, "max_age_s": 26 * 3600}));
    assert_check(
        &results,
        health::BACKUP,
        Verdict::Unknown,
        &format!("no finished backup of datastore '{ds}' (0 snapshot(s) listed, 0 unfinished)"),
    );
    assert_eq!(combine(&results), Outcome::Pending);

    backup(&lab, ("vm", "100"), 27 * 3600 + 120, json!({}));
    // Newer, but not usable: one still running, one a verify found damaged.
    backup(&lab, ("vm", "100"), 3600, json!({"finished": false}));
    backup(&lab, ("ct", "101"), 1800, json!({"verify": "failed"}));
    let results = check(json!({"datastore": ds, "max_age_s": 26 * 3600}));
    assert_check(&results, health::BACKUP, Verdict::Fail, "last backup 27 h ago (vm/100), older than 26 h");
    assert_eq!(combine(&results), Outcome::Failed);

    let results = check(json!({"datastore": ds, "max_age_s": 28 * 3600}));
    assert_check(&results, health::BACKUP, Verdict::Pass, "last backup 27 h ago (vm/100)");
    let results = check(json!({"datastore": ds, "max_age_s": 28 * 3600, "groups": ["vm/100", "ct/102"]}));
    assert_check(
        &results,
        health::BACKUP,
        Verdict::Unknown,
        "no finished backup of ct/102 (3 snapshot(s) listed, 1 unfinished)",
    );
    let results = check(json!({"datastore": "nope", "max_age_s": 3600}));
    assert_check(&results, health::BACKUP, Verdict::Fail, "PBS has no datastore 'nope'");
}

/// WireGuard: a stale or never-made handshake fails; an interface `wg` cannot access, or no
/// `wg` at all, gives no data.
#[test]
fn wireguard_handshakes_are_judged_by_age() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = |wg: PathBuf, interface: &str| {
        let cfg = config(json!({"wireguard": {"interface": interface, "max_handshake_age_s": 300, "command": wg}}));
        let results = health::run_with(&cfg, &Apis::default());
        assert_eq!(results.len(), 1, "{results:#?}");
        results
    };
    let stale = tmp.path().join("stale");
    std::fs::create_dir(&stale).expect("dir");
    let results = run(fake_wg(&stale, "hub=\t$((NOW - 7200))\nspare=\t0"), "wg0");
    assert_check(
        &results,
        health::WIREGUARD,
        Verdict::Fail,
        "peer hub=… last handshake 2 h ago; peer spare=… never completed a handshake (limit 5 min)",
    );
    assert_eq!(combine(&results), Outcome::Failed);

    // The real wg-tools on an interface that does not exist.
    let results = run(PathBuf::from("wg"), "edgehc0");
    let r = result(&results, health::WIREGUARD);
    assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
    assert!(r.observed.contains("Unable to access interface"), "{r:?}");
    assert_eq!(combine(&results), Outcome::Pending);

    let results = run(tmp.path().join("no-such-wg"), "wg0");
    let r = result(&results, health::WIREGUARD);
    assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
    assert!(r.observed.starts_with("cannot run "), "{r:?}");
}
