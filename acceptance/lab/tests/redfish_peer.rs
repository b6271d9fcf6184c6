//! The real sushy-emulator behind `edge_lab::redfish`: power, one-time boot override and
//! virtual media that the emulator really downloads from a tiny HTTP server in this test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_lab::peers_util::{self, UtilError};
use edge_lab::redfish::{RedfishError, RedfishPeer, SystemSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IMAGE: &[u8] = b"not really an ISO, but the emulator does not care";

/// Serves `GET /image.iso` (200 + IMAGE) and 404 for anything else; counts image downloads.
async fn image_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let hits = hits2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let (status, body): (&str, &[u8]) =
                    if head.starts_with("GET /image.iso ") || head.starts_with("HEAD /image.iso ") {
                        hits.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", IMAGE)
                    } else {
                        ("404 Not Found", b"nope")
                    };
                let body = if head.starts_with("HEAD ") { &[][..] } else { body };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    if status.starts_with("200") { IMAGE.len() } else { 4 }
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, hits)
}

struct Guard(Option<RedfishPeer>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.kill_now();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_power_boot_and_virtual_media() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("bmc");
    let port = peers_util::free_port().expect("free port");
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let systems = vec![
        SystemSpec { uuid: peers_util::random_uuid(), name: "pve1".into(), mac: "52:54:00:aa:00:01".into() },
        SystemSpec { uuid: peers_util::random_uuid(), name: "pve2".into(), mac: "52:54:00:aa:00:02".into() },
    ];
    let (u1, u2) = (systems[0].uuid.clone(), systems[1].uuid.clone());

    let t0 = Instant::now();
    let bmc = match RedfishPeer::start(&dir, bind, systems, "admin", "s3cret-pw").await {
        Ok(p) => p,
        Err(e @ RedfishError::Util(UtilError::ToolMissing { .. })) => {
            panic!("sushy-emulator is not installed: {e}")
        }
        Err(e) => panic!("sushy-emulator start failed: {e}"),
    };
    let _guard = Guard(Some(bmc.clone()));
    eprintln!(
        "redfish: ready after {:.2} s, RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        bmc.rss().unwrap_or(0) / (1 << 20)
    );
    let ep = bmc.endpoint().clone();
    assert_eq!(ep.base_url, format!("http://{bind}/redfish/v1"));
    assert_eq!((ep.username.as_str(), ep.password.as_str()), ("admin", "s3cret-pw"));

    let mut ids = bmc.systems().await.expect("systems");
    ids.sort();
    let mut want = vec![u1.clone(), u2.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Basic auth is really enforced.
    let status = reqwest::Client::new()
        .get(format!("{}/Systems", ep.base_url))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status.as_u16(), 401);

    let s = bmc.system(&u1).await.expect("system");
    assert!(!s.power_on && !s.media_inserted && s.media_image.is_none(), "{s:?}");

    // Boot override to the virtual CD, once.
    bmc.set_boot_override(&u1, "Cd", true).await.expect("boot override");
    assert_eq!(bmc.system(&u1).await.expect("system").boot_override_target, "Cd");

    // Virtual media: the emulator downloads the URL before answering.
    let (srv, hits) = image_server().await;
    let url = format!("http://{srv}/image.iso");
    bmc.insert_media(&u1, &url).await.expect("insert media");
    assert!(hits.load(Ordering::SeqCst) >= 1, "emulator never fetched the image");
    let s = bmc.system(&u1).await.expect("system");
    assert!(s.media_inserted, "{s:?}");
    assert_eq!(s.media_image.as_deref(), Some(url.as_str()));
    match bmc.insert_media(&u2, &format!("http://{srv}/missing.iso")).await {
        Err(RedfishError::Status { status: 400, body, .. }) => {
            assert!(body.contains("404"), "{body}")
        }
        other => panic!("a 404 image must fail InsertMedia, got {other:?}"),
    }
    assert!(!bmc.system(&u2).await.expect("system").media_inserted);

    // Power on lands asynchronously in the fake driver.
    let t1 = Instant::now();
    bmc.set_power(&u1, true).await.expect("power on");
    let s = bmc.wait_power(&u1, true, Duration::from_secs(30)).await.expect("powered on");
    eprintln!("redfish: power on visible after {:.1} s", t1.elapsed().as_secs_f64());
    assert!(s.power_on && s.media_inserted);
    assert!(!bmc.system(&u2).await.expect("system").power_on);

    // attach() finds it from the directory alone.
    let again = RedfishPeer::attach(&dir).expect("attach");
    assert_eq!(again.endpoint(), &ep);
    assert!(again.system(&u1).await.expect("system").power_on);

    bmc.eject(&u1).await.expect("eject");
    let s = bmc.system(&u1).await.expect("system");
    assert!(!s.media_inserted && s.media_image.is_none(), "{s:?}");

    let t2 = Instant::now();
    bmc.set_power(&u1, false).await.expect("power off");
    bmc.wait_power(&u1, false, Duration::from_secs(30)).await.expect("powered off");
    eprintln!("redfish: power off visible after {:.1} s", t2.elapsed().as_secs_f64());

    match bmc.system("no-such-system").await {
        Err(RedfishError::Status { status: 404, .. }) => {}
        other => panic!("unknown system must be 404, got {other:?}"),
    }

    bmc.stop().await.expect("stop");
    let left = peers_util::pids_with_cmdline_containing(&dir.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(RedfishPeer::attach(&dir).is_err());
}
