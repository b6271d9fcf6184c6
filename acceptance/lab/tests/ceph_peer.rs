//! Real Ceph (Debian ceph 16.2) behind `edge_lab::ceph`: one cluster per test binary, one test
//! doing the whole sequence, because a cluster takes ~15 s to reach HEALTH_OK.
//! No mocks: every check also goes through the `ceph` CLI directly where it matters.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_lab::ceph::{CephCluster, CephError, CephOptions, EcProfile, PoolCreate};
use edge_lab::peers_util;

/// SIGKILLs the cluster if the test panics half-way, so no daemon outlives the test.
struct Guard(Option<CephCluster>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.kill_now();
        }
    }
}

fn two_free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (a.local_addr().expect("addr").port(), b.local_addr().expect("addr").port())
}

/// `ceph osd pool ls detail -f json` straight from the CLI, not through our wrapper.
fn cli_pools(conf: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("ceph")
        .arg("-c")
        .arg(conf)
        .args(["osd", "pool", "ls", "detail", "-f", "json"])
        .output()
        .expect("run ceph CLI");
    assert!(out.status.success(), "ceph CLI failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("CLI JSON")
}

fn cli_pool(conf: &Path, name: &str) -> Option<serde_json::Value> {
    cli_pools(conf).into_iter().find(|p| p["pool_name"].as_str() == Some(name))
}

async fn wait_bytes_used(c: &CephCluster, pool: &str) -> u64 {
    peers_util::poll_until(Duration::from_secs(30), || async {
        let st = c.pool_stats(pool).await.expect("pool_stats")?;
        (st.bytes_used > 0).then_some(st.bytes_used)
    })
    .await
    .unwrap_or_else(|| panic!("ceph df never showed bytes used in pool {pool}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceph_cluster_pool_round_trip() {
    let _ = tracing_subscriber::fmt().with_env_filter("edge_lab=debug").with_test_writer().try_init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ceph");
    let (v2, v1) = two_free_ports();
    let opts = CephOptions { mon_v2_port: v2, mon_v1_port: v1, ..CephOptions::default() };

    let t0 = Instant::now();
    let c = match CephCluster::start(&dir, &opts).await {
        Ok(c) => c,
        Err(e @ CephError::Util(peers_util::UtilError::ToolMissing { .. })) => {
            panic!("Ceph is not installed: {e}")
        }
        Err(e) => {
            // Clean up whatever did start before failing the test.
            if let Ok(c) = CephCluster::attach(&dir) {
                c.kill_now();
            }
            panic!("ceph start failed: {e}")
        }
    };
    let mut guard = Guard(Some(c.clone()));
    eprintln!("ceph: HEALTH_OK after {:.1} s", t0.elapsed().as_secs_f64());
    for (daemon, rss) in c.daemon_rss() {
        eprintln!("ceph: {daemon} RSS {} MiB", rss / (1 << 20));
    }
    let st = c.status().await.expect("status");
    assert_eq!(st.health, "HEALTH_OK");
    assert_eq!(st.num_up_osds, 3);
    assert!(c.mon_addr().contains(&format!(":{v2},")));
    let conf = c.conf_path().to_path_buf();

    // Pool as the PVE API creates it.
    c.pool_create(&PoolCreate {
        name: "vmdata".into(),
        pg_num: 16,
        size: Some(2),
        application: Some("rbd".into()),
        pg_autoscale_mode: Some("warn".into()),
        pg_num_min: Some(8),
        target_size_ratio: Some(0.2),
        ..PoolCreate::default()
    })
    .await
    .expect("pool_create");
    let p = cli_pool(&conf, "vmdata").expect("CLI sees the new pool");
    assert_eq!(p["size"], 2);
    assert_eq!(p["pg_num"], 16);
    assert_eq!(p["pg_autoscale_mode"], "warn");
    assert!(p["application_metadata"].get("rbd").is_some(), "{p}");
    let typed = c.pool("vmdata").await.expect("pools").expect("typed pool");
    assert_eq!((typed.size, typed.pg_num), (2, 16));
    assert_eq!(typed.type_name(), "replicated");
    assert!(typed.application_metadata.contains_key("rbd"));
    assert_eq!(typed.options["pg_num_min"], 8);
    let rules = c.crush_rules().await.expect("crush rules");
    assert_eq!(rules.get(&typed.crush_rule).map(String::as_str), Some("replicated_rule"));

    // Changing size, including to 1 (which needs the extra flag).
    c.pool_set("vmdata", "size", "3").await.expect("size 3");
    assert_eq!(cli_pool(&conf, "vmdata").expect("pool")["size"], 3);
    c.pool_set("vmdata", "size", "1").await.expect("size 1");
    assert_eq!(cli_pool(&conf, "vmdata").expect("pool")["size"], 1);
    c.pool_set("vmdata", "size", "2").await.expect("size 2");

    // Data lands in the pool and shows in ceph df.
    let blob = vec![0x5au8; 256 * 1024];
    c.put_object("vmdata", "obj1", &blob).await.expect("put");
    assert_eq!(c.get_object("vmdata", "obj1").await.expect("get"), blob);
    let used = wait_bytes_used(&c, "vmdata").await;
    assert!(used >= blob.len() as u64, "bytes_used {used}");
    let stats = c.pool_stats("vmdata").await.expect("stats").expect("pool");
    assert!(stats.percent_used > 0.0 && stats.objects == 1, "{stats:?}");

    // Errors carry Ceph's own stderr.
    match c.pool_set("no-such-pool", "size", "2").await {
        Err(CephError::Command { stderr, .. }) => {
            assert!(stderr.contains("ENOENT"), "stderr: {stderr}")
        }
        other => panic!("expected a command error, got {other:?}"),
    }

    // Erasure coding: k=2 m=1 over three OSDs (failure domain osd: all OSDs share one host).
    c.erasure_code_profile_set(
        "ec21",
        &EcProfile { k: 2, m: 1, failure_domain: Some("osd".into()), device_class: None },
    )
    .await
    .expect("ec profile");
    let prof = c.erasure_code_profile_get("ec21").await.expect("get profile");
    assert_eq!(prof.get("k").map(String::as_str), Some("2"));
    assert_eq!(prof.get("crush-failure-domain").map(String::as_str), Some("osd"));
    c.pool_create(&PoolCreate {
        name: "ecdata".into(),
        pg_num: 8,
        application: Some("rbd".into()),
        erasure_code_profile: Some("ec21".into()),
        ..PoolCreate::default()
    })
    .await
    .expect("EC pool");
    let ec = c.pool("ecdata").await.expect("pools").expect("ec pool");
    assert_eq!(ec.type_name(), "erasure");
    assert_eq!((ec.size, ec.erasure_code_profile.as_str()), (3, "ec21"));
    c.put_object("ecdata", "e1", b"erasure coded").await.expect("put to EC pool");
    c.pool_rm("ecdata").await.expect("rm ec pool");
    c.erasure_code_profile_rm("ec21").await.expect("rm profile");
    assert!(!c.erasure_code_profile_ls().await.expect("ls").contains(&"ec21".to_string()));

    // attach() finds the running cluster from the directory alone.
    let again = CephCluster::attach(&dir).expect("attach");
    assert!(again.is_running());
    assert_eq!(again.fsid(), c.fsid());

    // Stop and start keep pools and (after a clean stop) objects.
    let t1 = Instant::now();
    c.stop().await.expect("stop");
    eprintln!("ceph: stop took {:.1} s", t1.elapsed().as_secs_f64());
    assert!(peers_util::pids_with_cmdline_containing(&conf.display().to_string()).is_empty());
    assert!(CephCluster::attach(&dir).is_err());
    let t2 = Instant::now();
    let c = CephCluster::start(&dir, &opts).await.expect("restart");
    guard.0 = Some(c.clone());
    eprintln!("ceph: restart to HEALTH_OK {:.1} s", t2.elapsed().as_secs_f64());
    assert_eq!(cli_pool(&conf, "vmdata").expect("pool survives")["size"], 2);
    assert_eq!(c.get_object("vmdata", "obj1").await.expect("get"), blob);

    c.pool_rm("vmdata").await.expect("pool_rm");
    assert!(cli_pool(&conf, "vmdata").is_none());

    c.stop().await.expect("stop");
    guard.0 = None;
    let left = peers_util::pids_with_cmdline_containing(&dir.display().to_string());
    assert!(left.is_empty(), "ceph processes left: {left:?}");
}
