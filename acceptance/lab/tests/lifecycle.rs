//! The lab's own lifecycle: a start that fails leaves nothing running, and `down` stops every
//! peer of a lab even when its serve process was killed. Evidence comes from /proc (what runs
//! with the lab's directory on its command line), not from the lab reporting on itself.

mod common;

use std::time::{Duration, Instant};

use common::{alive, processes_mentioning, run};

fn dir_arg(d: &tempfile::TempDir) -> String {
    d.path().display().to_string()
}

/// A node address taken by someone else: `up` fails on it before starting Ceph or the BMC.
#[test]
fn busy_address_fails_before_any_peer_starts() {
    let d = tempfile::tempdir().expect("tempdir");
    // Store 1, node 1 of net 94 listens on 127.94.1.1:8006.
    let _squatter = std::net::TcpListener::bind("127.94.1.1:8006").expect("bind the squatter");
    let (ok, out) = run(&["up", "--dir", &dir_arg(&d), "--net", "94", "--ceph", "--redfish"]);
    assert!(!ok, "up must fail on a busy address:\n{out}");
    assert!(out.contains("binding 127.94.1.1:8006"), "the error names the address:\n{out}");
    // Nothing was started: Ceph never bootstrapped, the BMC emulator never got a config.
    assert!(!d.path().join("ceph/cluster.json").exists(), "Ceph was bootstrapped before the failure");
    assert!(!d.path().join("redfish/sushy.conf").exists(), "the BMC emulator was set up before the failure");
    assert!(processes_mentioning(d.path()).is_empty(), "{:?}", processes_mentioning(d.path()));
    assert!(!d.path().join("edge-lab.pid").exists(), "a failed serve leaves no pid file");
}

/// `edge-lab serve` killed with SIGKILL (OOM, a crash): its peers run on. The next `up` refuses
/// to start over them and says why; `down` finds and stops them.
#[test]
fn killed_serve_leaves_peers_that_down_stops() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = dir_arg(&d);
    let (ok, out) = run(&["up", "--dir", &dir, "--net", "95", "--ceph", "--redfish"]);
    assert!(ok, "up failed:\n{out}");
    let pid: i32 =
        std::fs::read_to_string(d.path().join("edge-lab.pid")).expect("pid file").trim().parse().expect("pid");
    let peers: Vec<(u32, String)> =
        processes_mentioning(d.path()).into_iter().filter(|(p, _)| *p as i32 != pid).collect();
    let named = |what: &str| peers.iter().any(|(_, c)| c.contains(what));
    assert!(named("ceph-mon") && named("ceph-osd") && named("ceph-mgr") && named("sushy-emulator"), "{peers:?}");

    // SAFETY: kill(2) on the serve process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "serve survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    let orphans: Vec<u32> = peers.iter().map(|(p, _)| *p).filter(|p| alive(*p as i32)).collect();
    assert_eq!(orphans.len(), peers.len(), "the peers outlive a killed serve (the case under test)");

    let (ok, out) = run(&["up", "--dir", &dir, "--net", "95", "--ceph", "--redfish"]);
    assert!(!ok, "up over live peers must refuse:\n{out}");
    assert!(out.contains("peers of an earlier lab still run") && out.contains("ceph-mon.a"), "{out}");

    let (ok, out) = run(&["down", "--dir", &dir]);
    assert!(ok, "down failed:\n{out}");
    assert!(
        out.contains("ceph-mon.a (pid") && out.contains("sushy-emulator (pid"),
        "down says what it stopped:\n{out}"
    );
    let left = processes_mentioning(d.path());
    assert!(left.is_empty(), "down left processes: {left:?}");
    let (ok, out) = run(&["down", "--dir", &dir]);
    assert!(ok && out.contains("nothing running"), "{out}");
}
