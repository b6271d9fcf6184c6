//! The lab with its real peers: a Ceph round trip (PVE API → real `ceph` CLI and back) and bare
//! metal (Redfish power + virtual media → the node's API comes up).

mod common;

use std::time::{Duration, Instant};

use common::TestLab;
use serde_json::{json, Value};

fn ceph_json(conf: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new("ceph")
        .arg("--conf")
        .arg(conf)
        .args(args)
        .args(["-f", "json"])
        .output()
        .expect("run ceph CLI");
    assert!(out.status.success(), "ceph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ceph json")
}

fn real_pool(conf: &str, name: &str) -> Option<Value> {
    ceph_json(conf, &["osd", "pool", "ls", "detail"]).as_array()?.iter().find(|p| p["pool_name"] == name).cloned()
}

#[test]
fn ceph_round_trip_through_the_api() {
    let lab = TestLab::up(76, &["--ceph"]);
    eprintln!("edge-lab up with real Ceph: {:.1} s", lab.up_secs);
    let conf = lab.json["ceph"]["conf"].as_str().expect("ceph.conf in lab.json").to_string();
    lab.ceph_bootstrap(0);
    let (c, v) = lab.pve(
        0,
        "POST",
        "/nodes/pve1/ceph/pool",
        &[("name", "rt"), ("size", "3"), ("min_size", "2"), ("pg_num", "8")],
    );
    assert_eq!(c, 200, "{v}");
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    let p = real_pool(&conf, "rt").expect("pool created through the API exists in Ceph");
    assert_eq!((p["size"].as_i64(), p["min_size"].as_i64()), (Some(3), Some(2)), "{p}");
    assert!(p["application_metadata"].get("rbd").is_some(), "{p}");
    // API change → Ceph.
    let (_, v) = lab.pve(0, "PUT", "/nodes/pve1/ceph/pool/rt", &[("size", "2"), ("min_size", "1")]);
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    assert_eq!(real_pool(&conf, "rt").unwrap()["size"], 2);
    // Ceph CLI change (drift) → API.
    let st = std::process::Command::new("ceph")
        .args(["--conf", &conf, "osd", "pool", "set", "rt", "size", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    let (_, v) = lab.pve(0, "GET", "/nodes/pve1/ceph/pool", &[]);
    let rt = v["data"].as_array().unwrap().iter().find(|p| p["pool_name"] == "rt").cloned().unwrap();
    assert_eq!(rt["size"], 3, "{rt}");
    // Admin drift goes to real Ceph too.
    assert_eq!(lab.admin("POST", "/lab/drift", Some(json!({"kind": "pool_size", "pool": "rt", "value": 1}))).0, 200);
    assert_eq!(real_pool(&conf, "rt").unwrap()["size"], 1);
    // Delete through the API → gone in Ceph.
    let (_, v) = lab.pve(0, "DELETE", "/nodes/pve1/ceph/pool/rt", &[]);
    assert_eq!(lab.wait_task(0, v["data"].as_str().unwrap())["exitstatus"], "OK");
    assert!(real_pool(&conf, "rt").is_none());
}

struct Bmc {
    http: reqwest::blocking::Client,
    user: String,
    pass: String,
}

impl Bmc {
    fn send(&self, method: reqwest::Method, url: &str, body: Value) -> u16 {
        let r = self
            .http
            .request(method, url)
            .basic_auth(&self.user, Some(&self.pass))
            .json(&body)
            .send()
            .expect("redfish call");
        r.status().as_u16()
    }
}

#[test]
fn bare_metal_boot_from_virtual_media() {
    let lab = TestLab::up(75, &["--redfish", "--install-ms", "300"]);
    let rf = lab.json["redfish"].clone();
    assert!(rf.is_object(), "redfish in lab.json: {}", lab.json);
    let bmc = Bmc {
        http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap(),
        user: rf["username"].as_str().unwrap().into(),
        pass: rf["password"].as_str().unwrap().into(),
    };
    let node = lab.store(0)["nodes"][0].clone();
    let sys = node["bmc"]["endpoint"].as_str().unwrap().to_string();
    let version = format!("{}/api2/json/version", lab.node_ep(0, 0));
    // Powered off, not installed: the API does not answer.
    assert!(lab.client.get(&version).header("Authorization", lab.token(0)).send().is_err());
    // Publish an image on the artifact server.
    let image = b"edge node image\n".repeat(256);
    std::fs::write(std::path::Path::new(lab.json["artifacts"]["dir"].as_str().unwrap()).join("node.iso"), &image)
        .unwrap();
    let url = format!("{}/node.iso", lab.json["artifacts"]["endpoint"].as_str().unwrap());
    use reqwest::Method;
    let boot = json!({"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}});
    assert!(bmc.send(Method::PATCH, &sys, boot) < 300);
    assert!(
        bmc.send(
            Method::POST,
            &format!("{sys}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"),
            json!({"Image": url})
        ) < 300
    );
    assert!(bmc.send(Method::POST, &format!("{sys}/Actions/ComputerSystem.Reset"), json!({"ResetType": "On"})) < 300);
    let t = Instant::now();
    // sushy's fake driver lands power changes 1-11 s late, later still on a busy machine.
    let deadline = t + Duration::from_secs(120);
    loop {
        if let Ok(r) = lab.client.get(&version).header("Authorization", lab.token(0)).send() {
            assert_eq!(r.status().as_u16(), 401, "the edge image knows no token");
            break;
        }
        assert!(Instant::now() < deadline, "node API never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("node API up {:.1} s after power on", t.elapsed().as_secs_f64());
    let (_, info) = lab.admin("GET", "/lab/nodes/pve1", None);
    assert_eq!(info["image"]["url"], url.as_str());
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&image))
    };
    assert_eq!(info["image"]["sha256"], want.as_str());
    // The image states itself in the node notes, through PVE's own API.
    let (_, cfg) = lab.pve_root(0, "GET", "/nodes/pve1/config", &[("property", "description")]);
    assert_eq!(cfg["data"]["description"], format!("edge-image url={url} sha256={want}").as_str(), "{cfg}");
    assert_eq!((info["cluster"].clone(), info["dns"]["search"].clone()), (Value::Null, json!("localdomain")));
    // A power cycle with the same media still inserted boots the disk: no reinstall.
    assert_eq!(lab.pve_root(0, "PUT", "/nodes/pve1/dns", &[("search", "kept.lan"), ("dns1", "10.0.0.1")]).0, 200);
    let wait_power = |on: bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = bmc.http.get(&sys).basic_auth(&bmc.user, Some(&bmc.pass)).send().unwrap().json::<Value>().unwrap();
            if (r["PowerState"] == "On") == on {
                break;
            }
            assert!(Instant::now() < deadline, "BMC power never became {on}: {r}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    assert!(
        bmc.send(Method::POST, &format!("{sys}/Actions/ComputerSystem.Reset"), json!({"ResetType": "ForceOff"})) < 300
    );
    wait_power(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.client.get(&version).header("Authorization", lab.token(0)).send().is_ok() {
        assert!(Instant::now() < deadline, "API still up after power off");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(bmc.send(Method::POST, &format!("{sys}/Actions/ComputerSystem.Reset"), json!({"ResetType": "On"})) < 300);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lab.client.get(&version).header("Authorization", lab.token(0)).send().is_err() {
        assert!(Instant::now() < deadline, "node never came back after the power cycle");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, dns) = lab.pve_root(0, "GET", "/nodes/pve1/dns", &[]);
    assert_eq!(dns["data"]["search"], "kept.lan", "booted the disk, not the installer");
    // Other nodes are still off.
    assert!(lab.client.get(format!("{}/api2/json/version", lab.node_ep(0, 1))).send().is_err());
    // Wipe: powered off in the BMC too, API gone.
    assert_eq!(lab.admin("POST", "/lab/wipe", Some(json!({"node": "pve1"}))).0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = bmc.http.get(&sys).basic_auth(&bmc.user, Some(&bmc.pass)).send().unwrap().json::<Value>().unwrap();
        if r["PowerState"] == "Off" {
            break;
        }
        assert!(Instant::now() < deadline, "BMC never powered off: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(lab.client.get(&version).send().is_err());
}

#[test]
fn instant_bmc_power_lands_within_a_second() {
    let lab = TestLab::up(86, &["--redfish", "--bmc-power-delay", "instant", "--install-ms", "0"]);
    assert_eq!(lab.json["bmc_power_delay"], "instant", "recorded in lab.json: {}", lab.json);
    let conf = std::fs::read_to_string(lab.path().join("redfish/sushy.conf")).expect("sushy.conf");
    assert!(conf.contains("_edge_fakedriver.random"), "{conf}");
    let rf = lab.json["redfish"].clone();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (user, pass) = (rf["username"].as_str().unwrap(), rf["password"].as_str().unwrap());
    let power_of = |sys: &str| -> Value {
        let r = http.get(sys).basic_auth(user, Some(pass)).send().expect("GET system");
        r.json::<Value>().expect("system json")["PowerState"].clone()
    };
    for (i, on) in [(0usize, true), (1, true), (0, false)] {
        let node = lab.store(0)["nodes"][i].clone();
        let sys = node["bmc"]["endpoint"].as_str().unwrap().to_string();
        let want = if on { "On" } else { "Off" };
        let t = Instant::now();
        let reset = json!({"ResetType": if on { "On" } else { "ForceOff" }});
        let r = http.post(format!("{sys}/Actions/ComputerSystem.Reset")).basic_auth(user, Some(pass)).json(&reset);
        assert!(r.send().expect("reset").status().is_success());
        while power_of(&sys) != want {
            assert!(t.elapsed() < Duration::from_millis(1500), "{} not {want} after {:?}", node["name"], t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("instant BMC: {} {want} after {:.0} ms", node["name"], t.elapsed().as_secs_f64() * 1e3);
        // The lab follows on its 100 ms watch.
        let name = node["name"].as_str().unwrap();
        let t = Instant::now();
        while lab.admin("GET", &format!("/lab/nodes/{name}"), None).1["power_on"] != on {
            assert!(t.elapsed() < Duration::from_secs(2), "lab never saw {name} {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
