//! Images cross the WAN once per store: the agent's image cache against a hub tree served by a
//! counting static server, then the store's LAN — three "BMCs" fetching the image from the
//! cache's server and the provider's own check (`edge_proxmox_node`'s code: manifest signature,
//! then size, sha256 and NAR hash of what the LAN serves). Measures the bytes over the WAN per
//! store per rollout (goal: one image size) and per fleet rollout; a second release naming the
//! same image costs nothing; a tampered image at the hub is refused and nothing enters the cache.
//!
//! `cargo test -p edge-fleet --test image_cache -- --nocapture` prints the figures
//! (bench/README.md, "image cache").

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use common::{served_bytes, ServedLog};
use edge_fleet::images::{serve, ImageCache, ImageCacheError};
use edge_fleet::release::Release;
use edge_images::hash::Sha256Hash;
use edge_images::keys::SecretKey;
use edge_images::manifest::{Manifest, ManifestError};

/// A few MB, not a multiple of 8 (the NAR padding is exercised).
const IMAGE_BYTES: usize = (4 << 20) + 12_345;
/// Nodes per store: each one's BMC fetches the image.
const NODES: u64 = 3;
/// The fleet of the issue: 3,000 transfers = 500 stores × 6.
const STORES: u64 = 500;

/// Incompressible, reproducible bytes (xorshift64).
fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

struct Hub {
    dir: tempfile::TempDir,
    root: PathBuf,
    url: String,
    log: ServedLog,
    ci: SecretKey,
}

impl Hub {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("hub");
        std::fs::create_dir_all(root.join("images")).expect("dirs");
        let (url, log) = common::serve(root.clone());
        Self { dir, root, url, log, ci: SecretKey::generate("edge-ci-1").expect("key") }
    }

    /// Signs a manifest for `content` as `nixos.img` (as `edge-image sign` does) and puts both in
    /// the hub's tree: `images/<manifest-sha256>/{manifest.json,nixos.img}`. Returns the
    /// manifest's SHA-256 (what a release records) and its size.
    fn publish(&self, version: &str, content: &[u8]) -> (String, u64) {
        let build = self.dir.path().join(format!("build-{version}"));
        std::fs::create_dir_all(&build).expect("dir");
        let img = build.join("nixos.img");
        std::fs::write(&img, content).expect("write");
        let mut m = Manifest::new(version, "/nix/store/7h7qgvs4kgzsn8a6rb273saxyqh4jxlz-nixos-system-edge");
        m.add_file("nixos.img", &img).expect("hash");
        let json = m.sign(&[&self.ci]).to_json();
        let msha = Sha256Hash::digest(&json).to_hex();
        let at = self.root.join("images").join(&msha);
        std::fs::create_dir_all(&at).expect("dir");
        std::fs::write(at.join("manifest.json"), &json).expect("write");
        std::fs::copy(&img, at.join("nixos.img")).expect("copy");
        (msha, json.len() as u64)
    }

    /// A release of a one-file configuration naming the image manifest `msha`.
    fn release(&self, name: &str, msha: &str) -> Release {
        let cfg = self.dir.path().join(format!("cfg-{name}"));
        std::fs::create_dir_all(&cfg).expect("dir");
        std::fs::write(cfg.join("main.tf"), format!("# release {name}\n")).expect("write");
        std::fs::write(cfg.join(".terraform.lock.hcl"), "# built-in providers only\n").expect("write");
        Release::from_dir(name, &cfg, &"a".repeat(64), msha).expect("release")
    }

    fn cache(&self, state: &Path) -> ImageCache {
        ImageCache::new(state, &self.url, vec![self.ci.public()], http())
    }

    /// Bytes the hub sent so far (everything under `images/`).
    fn wan(&self) -> u64 {
        served_bytes(&self.log, "/images/")
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build().expect("client")
}

/// A BMC's fetch of its virtual medium: one GET of the whole file (what sushy-tools' InsertMedia
/// does: `requests.get(url, stream=True)`, no Range).
fn bmc_fetch(url: &str) -> Vec<u8> {
    let resp = http().get(url).send().expect("get");
    assert_eq!(resp.status(), 200, "{url}");
    resp.bytes().expect("body").to_vec()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
}

#[test]
fn one_image_size_per_store_and_nothing_for_a_release_with_the_same_image() {
    let hub = Hub::new();
    let content = image(1, IMAGE_BYTES);
    let size = content.len() as u64;
    let (msha, manifest_len) = hub.publish("2026.12.1", &content);
    let trusted = vec![hub.ci.public().to_string()];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    // Baseline, same run: today's path, every node against the hub — the provider downloads the
    // image to verify it, then the node's BMC fetches it again.
    let hub_manifest = format!("{}/images/{msha}/manifest.json", hub.url);
    let hub_image = format!("{}/images/{msha}/nixos.img", hub.url);
    for _ in 0..NODES {
        provider_check(&rt, &hub_manifest, &hub_image, &trusted);
        assert!(bmc_fetch(&hub_image) == content);
    }
    let wan_before = hub.wan();
    assert_eq!(wan_before, 2 * NODES * size + NODES * manifest_len);

    // The rollout of release 1 with the cache: the agent fetches and verifies the image once.
    let state = hub.dir.path().join("store-001");
    let cache = hub.cache(&state);
    let r1 = hub.release("2026.12.1", &msha);
    let got = cache.ensure_release(&r1).expect("cached");
    assert_eq!(got.files.len(), 1);
    let f = &got.files[0];
    assert!(f.downloaded);
    assert_eq!(f.sha256, Sha256Hash::digest(&content).to_hex());
    assert_eq!(std::fs::read(&f.path).expect("cached file"), content);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f.path).expect("meta").permissions());
    assert_eq!(mode & 0o222, 0, "cached files are read-only");
    let wan_store = hub.wan() - wan_before;
    assert_eq!(wan_store, size + manifest_len, "the hub served one image and its manifest");
    assert_eq!(got.fetched_bytes, wan_store);
    let image_path = format!("/images/{msha}/nixos.img");
    assert_eq!(hub.log.lock().expect("log")[&image_path].hits, 2 * NODES as usize + 1, "the baseline's six, then one");

    // The store's LAN: three BMCs and the provider's check, all from the cache's server.
    let lan = serve("127.0.0.1:0".parse().expect("addr"), &cache.dir).expect("serve");
    let image_url = format!("{}{}", lan.url(), got.file_url_path("nixos.img").expect("listed"));
    let manifest_url = format!("{}{}", lan.url(), got.manifest_url_path());
    for _ in 0..NODES {
        assert!(bmc_fetch(&image_url) == content, "a BMC got the image byte for byte");
    }
    // edge_proxmox_node's own check, pointed at the local copy: the manifest's signature against
    // trusted_image_keys, then the file behind image.url (downloaded, size + sha256 + NAR hash).
    assert_eq!(provider_check(&rt, &manifest_url, &image_url, &trusted), f.sha256);
    let lan_store = lan.bytes_served();
    assert_eq!(lan_store, (NODES + 1) * size + manifest_len, "3 BMCs + 1 provider check, over the LAN");
    assert_eq!(hub.wan(), wan_before + wan_store, "nothing of that crossed the WAN");

    // Release 2 names the same image: nothing at all crosses the WAN for it.
    let r2 = hub.release("2026.12.2", &msha);
    assert_ne!(r2.id(), r1.id());
    let again = cache.ensure_release(&r2).expect("cached");
    assert_eq!(again.fetched_bytes, 0);
    assert!(!again.files[0].downloaded);
    assert_eq!(hub.wan(), wan_before + wan_store, "0 bytes over the WAN for a release with the same image");

    // A new manifest for the same image file (re-signed, another version string): its manifest
    // crosses the WAN, the image does not (the cache is by content).
    let (msha3, manifest3_len) = hub.publish("2026.12.2-resigned", &content);
    assert_ne!(msha3, msha);
    let third = cache.ensure(&msha3).expect("cached");
    assert!(!third.files[0].downloaded);
    assert_eq!(third.fetched_bytes, manifest3_len);
    assert_eq!(hub.wan(), wan_before + wan_store + manifest3_len, "the manifest only: 0 image bytes");

    println!("image cache, one store of {NODES} nodes: image {size} B ({}), manifest {manifest_len} B", mib(size));
    println!(
        "  WAN per store per rollout: cache {wan_store} B = {:.3} images; without (measured): {wan_before} B = {:.3} images; ratio {:.3}",
        wan_store as f64 / size as f64,
        wan_before as f64 / size as f64,
        wan_store as f64 / wan_before as f64
    );
    println!("  WAN for a second release with the same image manifest: 0 B; a new manifest for the same file: {manifest3_len} B");
    println!(
        "  LAN per store per rollout ({NODES} BMCs + 1 provider check): {lan_store} B = {:.3} images",
        lan_store as f64 / size as f64
    );
    println!(
        "  WAN per fleet rollout ({STORES} stores): cache {} B ({}), without {} B ({})",
        STORES * wan_store,
        mib(STORES * wan_store),
        STORES * wan_before,
        mib(STORES * wan_before)
    );
    let gib = (1u64 << 30) as f64;
    let (big, m) = (1.5 * gib, manifest_len as f64);
    let old = 2.0 * NODES as f64 * big + NODES as f64 * m;
    println!(
        "  scaled to a 1.5 GiB image: per store {:.2} GiB (without {:.2} GiB), per fleet rollout {:.0} GiB (without {:.0} GiB)",
        (big + m) / gib,
        old / gib,
        STORES as f64 * (big + m) / gib,
        STORES as f64 * old / gib
    );
}

/// `edge_proxmox_node`'s image check (its own code): the manifest's signature against
/// trusted_image_keys, then the file behind `image.url`, downloaded and checked (size, sha256,
/// NAR hash). Returns the verified sha256.
fn provider_check(rt: &tokio::runtime::Runtime, manifest: &str, image: &str, trusted: &[String]) -> String {
    rt.block_on(async {
        use edge_provider::clients::image as provider;
        let v = provider::load(manifest, trusted, None).await.expect("manifest verifies");
        provider::verify_image(&v, image).await.expect("the image verifies");
        v.sha256_hex().expect("a file with a sha256")
    })
}

#[test]
fn a_tampered_image_or_manifest_is_refused_and_nothing_enters_the_cache() {
    let hub = Hub::new();
    let content = image(2, IMAGE_BYTES);
    let (msha, _) = hub.publish("2026.12.1", &content);
    let state = hub.dir.path().join("store-002");
    let cache = hub.cache(&state);
    let at_hub = hub.root.join("images").join(&msha).join("nixos.img");
    let lan = serve("127.0.0.1:0".parse().expect("addr"), &cache.dir).expect("serve");
    let nothing_cached = |why: &str| {
        let left: Vec<String> = entries(&cache.dir).into_iter().filter(|n| n != "manifests").collect();
        assert!(left.is_empty(), "{why}: {left:?} left in the cache");
        assert!(entries(&cache.dir.join("manifests")).is_empty(), "{why}: a manifest was cached");
        let resp = http().get(format!("{}/images/{msha}/nixos.img", lan.url())).send().expect("get");
        assert_eq!(resp.status(), 404, "{why}: the LAN serves nothing");
    };

    // Same size, one byte changed: the sha256 check refuses it once it has streamed.
    let mut flipped = content.clone();
    flipped[IMAGE_BYTES / 3] ^= 0x40;
    std::fs::write(&at_hub, &flipped).expect("write");
    let e = cache.ensure(&msha).expect_err("tampered");
    assert!(matches!(e, ImageCacheError::Hash { kind: "sha256", .. }), "{e}");
    nothing_cached("flipped byte");

    // Longer than the manifest says: refused on the announced length, before the body.
    let mut longer = content.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(&at_hub, &longer).expect("write");
    let e = cache.ensure(&msha).expect_err("longer");
    assert!(
        matches!(e, ImageCacheError::Size { want, got, .. } if want == IMAGE_BYTES as u64 && got == want + 4),
        "{e}"
    );
    nothing_cached("longer file");

    // The release names a manifest the hub does not have under that digest.
    std::fs::write(&at_hub, &content).expect("write");
    let (other, _) = hub.publish("2026.12.9", &image(9, 1000));
    let mdir = hub.root.join("images");
    let good_manifest = std::fs::read(mdir.join(&msha).join("manifest.json")).expect("read");
    std::fs::copy(mdir.join(&other).join("manifest.json"), mdir.join(&msha).join("manifest.json")).expect("copy");
    let e = cache.ensure(&msha).expect_err("another manifest");
    assert!(matches!(e, ImageCacheError::ManifestDigest { .. }), "{e}");
    nothing_cached("manifest swapped");
    std::fs::write(mdir.join(&msha).join("manifest.json"), &good_manifest).expect("write");

    // Signed by a key the store does not trust.
    let stranger =
        ImageCache::new(&state, &hub.url, vec![SecretKey::generate("edge-ci-1").expect("key").public()], http());
    let e = stranger.ensure(&msha).expect_err("untrusted");
    assert!(matches!(e, ImageCacheError::Manifest(ManifestError::BadSignature(_))), "{e}");
    let nobody = ImageCache::new(&state, &hub.url, vec![], http());
    assert!(matches!(nobody.ensure(&msha), Err(ImageCacheError::NoTrustedKeys)));
    assert!(matches!(cache.ensure("abc"), Err(ImageCacheError::Digest(_))));
    nothing_cached("untrusted signer");

    // The refusals left nothing that would stop the good image later.
    let got = cache.ensure(&msha).expect("the real image");
    assert!(got.files[0].downloaded);
    assert_eq!(bmc_fetch(&format!("{}{}", lan.url(), got.file_url_path("nixos.img").expect("listed"))), content);
}

/// One raw response: status line, headers (names lowercased), body.
type Raw = (String, Vec<(String, String)>, Vec<u8>);

/// Raw HTTP/1.1 on one connection: each response, in order.
fn raw(addr: std::net::SocketAddr, requests: &[&str]) -> Vec<Raw> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(requests.concat().as_bytes()).expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    let mut out = Vec::new();
    let mut rest = &all[..];
    for req in requests {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        let head = String::from_utf8(rest[..end].to_vec()).expect("utf8");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().expect("len"));
        let body_len = if req.starts_with("HEAD") { 0 } else { len };
        out.push((status, headers, rest[end..end + body_len].to_vec()));
        rest = &rest[end + body_len..];
    }
    out
}

#[test]
fn the_lan_server_answers_ranges_head_and_nothing_else() {
    let hub = Hub::new();
    let content = image(3, IMAGE_BYTES);
    let (msha, _) = hub.publish("2026.12.1", &content);
    let state = hub.dir.path().join("store-003");
    let cache = hub.cache(&state);
    let got = cache.ensure(&msha).expect("cached");
    let sha = &got.files[0].sha256;
    let lan = serve("127.0.0.1:0".parse().expect("addr"), &cache.dir).expect("serve");
    let p = format!("/images/{msha}/nixos.img");
    let n = content.len();
    let get = |range: &str| format!("GET {p} HTTP/1.1\r\nHost: bmc\r\nRange: {range}\r\n\r\n");
    let (r1, r2, r3, r4, r5) = (
        get("bytes=100-199"),
        get("bytes=-10"),
        get("bytes=4194304-"),
        get("bytes=0-1,5-6"),
        get(&format!("bytes={n}-")),
    );
    let head = format!("HEAD /sha256/{sha}/nixos.iso HTTP/1.1\r\nHost: bmc\r\n\r\n");
    let stale = format!("GET {p} HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: \"other\"\r\n\r\n");
    let post = format!("POST {p} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let missing = format!("GET /sha256/{} HTTP/1.1\r\n\r\n", "0".repeat(64));
    let traversal = "GET /images/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n".to_string();
    let last = format!("GET /images/{msha}/manifest.json HTTP/1.1\r\nConnection: close\r\n\r\n");
    // All on one keep-alive connection, as a BMC reading its medium in ranges would.
    let reqs = [&r1, &r2, &r3, &r4, &r5, &head, &stale, &post, &missing, &traversal, &last];
    let rs = raw(lan.addr(), &reqs.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let hdr = |i: usize, k: &str| rs[i].1.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    assert_eq!(rs[0].0, "HTTP/1.1 206 Partial Content");
    assert_eq!(rs[0].2, content[100..200]);
    assert_eq!(hdr(0, "content-range").as_deref(), Some(format!("bytes 100-199/{n}").as_str()));
    assert_eq!(hdr(0, "etag"), Some(format!("\"{sha}\"")));
    assert_eq!(hdr(0, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(rs[1].2, content[n - 10..]);
    assert_eq!(rs[2].2, content[4_194_304..]);
    assert_eq!((rs[3].0.as_str(), rs[3].2.len()), ("HTTP/1.1 200 OK", n), "several ranges: the whole file");
    assert_eq!(rs[4].0, "HTTP/1.1 416 Range Not Satisfiable");
    assert_eq!(hdr(4, "content-range"), Some(format!("bytes */{n}")));
    assert_eq!((rs[5].0.as_str(), hdr(5, "content-length")), ("HTTP/1.1 200 OK", Some(n.to_string())));
    assert!(rs[5].2.is_empty());
    assert_eq!((rs[6].0.as_str(), rs[6].2.len()), ("HTTP/1.1 200 OK", n), "If-Range of another version: everything");
    assert_eq!(rs[7].0, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(rs[8].0, "HTTP/1.1 404 Not Found");
    assert_eq!(rs[9].0, "HTTP/1.1 404 Not Found");
    assert_eq!(rs[10].0, "HTTP/1.1 200 OK");
    assert_eq!(Sha256Hash::digest(&rs[10].2).to_hex(), msha);
    assert_eq!(lan.requests(), reqs.len() as u64);
    let bodies: u64 = rs.iter().map(|r| r.2.len() as u64).sum();
    assert_eq!(lan.bytes_served(), bodies, "the counter is the body bytes sent");
}

#[test]
fn scrub_drops_a_damaged_file_and_prune_keeps_what_is_named() {
    let hub = Hub::new();
    let a = image(4, 300_001);
    let b = image(5, 200_003);
    let (ma, _) = hub.publish("a", &a);
    let (ma2, _) = hub.publish("a-resigned", &a);
    let (mb, _) = hub.publish("b", &b);
    let state = hub.dir.path().join("store-004");
    let cache = hub.cache(&state);
    let fa = cache.ensure(&ma).expect("a").files[0].clone();
    assert!(!cache.ensure(&ma2).expect("a again").files[0].downloaded);
    cache.ensure(&mb).expect("b");
    assert!(cache.scrub().expect("scrub").is_empty(), "an intact cache");

    // Bit rot in a's file: scrub removes it and both manifests that list it.
    std::fs::set_permissions(&fa.path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let mut bytes = std::fs::read(&fa.path).expect("read");
    bytes[7] ^= 1;
    std::fs::write(&fa.path, &bytes).expect("write");
    assert_eq!(cache.scrub().expect("scrub"), vec![fa.sha256.clone()]);
    assert_eq!(entries(&cache.dir.join("manifests")), vec![format!("{mb}.json")]);
    let wan = hub.wan();
    let again = cache.ensure(&ma).expect("a fetched again");
    assert!(again.files[0].downloaded);
    assert!(again.fetched_bytes > a.len() as u64, "the file and its manifest");
    assert_eq!(hub.wan() - wan, again.fetched_bytes);

    // Keep b only: a's manifest and file go, b's stay and cost nothing to ensure.
    let pruned = cache.prune(&[&mb]).expect("prune");
    assert_eq!((pruned.manifests, pruned.files, pruned.bytes), (1, 1, a.len() as u64));
    assert!(!fa.path.exists());
    assert_eq!(cache.ensure(&mb).expect("b").fetched_bytes, 0);
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new("openssl").args(args).output().expect("openssl (the independent signer)");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// `--trusted-cosign-key`: a manifest whose Nix signature no configured key trusts passes with
/// `manifest.json.sig` beside it on the hub (`openssl dgst -sha256 -sign`, i.e. `cosign
/// sign-blob`) by a trusted Cosign key; the LAN serves the signature too, so the provider's own
/// check (`image.trusted_cosign_keys`) passes against the LAN copy.
#[test]
fn a_manifest_trusted_through_a_cosign_signature() {
    let hub = Hub::new();
    let (msha, _) = hub.publish("2026.12.3", &image(3, 1 << 16));
    let at = hub.root.join("images").join(&msha);
    let key = |name: &str| {
        let sk = hub.dir.path().join(format!("{name}.pem"));
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", sk.to_str().unwrap()]);
        let pem = String::from_utf8(openssl(&["ec", "-in", sk.to_str().unwrap(), "-pubout"])).unwrap();
        (sk, pem)
    };
    let (sk, pem) = key("cosign");
    let (other_sk, _) = key("other");
    // `openssl dgst -sha256 -sign K manifest.json | base64 -w0`.
    let sign = |k: &Path| {
        let (m, der) = (at.join("manifest.json"), hub.dir.path().join("sig.der"));
        openssl(&["dgst", "-sha256", "-sign", k.to_str().unwrap(), "-out", der.to_str().unwrap(), m.to_str().unwrap()]);
        String::from_utf8(openssl(&["base64", "-A", "-in", der.to_str().unwrap()])).unwrap()
    };
    let cosign_key = edge_images::cosign::CosignPublicKey::from_pem(&pem).unwrap();
    let cache_at = |name: &str| {
        ImageCache::new(&hub.dir.path().join(name), &hub.url, vec![], http()).with_cosign_keys(vec![cosign_key.clone()])
    };

    // No signature at the hub.
    let e = cache_at("s1").ensure(&msha).expect_err("unsigned for Cosign");
    assert!(matches!(e, ImageCacheError::Cosign { check: "signature present", .. }), "{e}");
    // Signed by another key.
    std::fs::write(at.join("manifest.json.sig"), sign(&other_sk)).unwrap();
    let e = cache_at("s2").ensure(&msha).expect_err("untrusted Cosign key");
    assert!(matches!(e, ImageCacheError::Cosign { check: "signature valid", .. }), "{e}");
    assert!(entries(&hub.dir.path().join("s2/images/manifests")).is_empty(), "nothing cached");

    // Signed by the trusted key: cached, signature beside the manifest, and served on the LAN.
    std::fs::write(at.join("manifest.json.sig"), sign(&sk) + "\n").unwrap();
    let cache = cache_at("s3");
    let got = cache.ensure(&msha).expect("trusted through Cosign");
    assert_eq!(entries(&cache.dir.join("manifests")), vec![format!("{msha}.json"), format!("{msha}.json.sig")]);
    // Cached: checked again without fetching anything.
    assert_eq!(cache.ensure(&msha).expect("cached").fetched_bytes, 0);
    let lan = serve("127.0.0.1:0".parse().expect("addr"), &cache.dir).expect("serve");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        use edge_provider::clients::image as provider;
        let trust = provider::Trust { keys: vec![], cosign_keys: vec![pem.clone()], cosign_signature: None };
        let v = provider::load_trusted(&format!("{}{}", lan.url(), got.manifest_url_path()), &trust, None)
            .await
            .expect("the provider trusts the LAN copy through its Cosign signature");
        assert!(v.signed_by[0].starts_with("cosign:"), "{:?}", v.signed_by);
    });
    // Without Cosign keys, the Nix check stands alone (the CI key is not trusted here).
    let other = SecretKey::generate("edge-ci-2").expect("key").public();
    let e =
        ImageCache::new(&hub.dir.path().join("s3"), &hub.url, vec![other], http()).ensure(&msha).expect_err("nix only");
    assert!(matches!(e, ImageCacheError::Manifest(ManifestError::UnknownKey(_))), "{e}");
    cache.prune(&[]).expect("prune");
    assert!(entries(&cache.dir.join("manifests")).is_empty(), "the signature goes with its manifest");
}
