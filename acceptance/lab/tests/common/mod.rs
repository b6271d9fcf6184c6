//! Shared test harness: start a lab with the real binary in a temp dir on its own loopback
//! block, talk to it over HTTPS trusting the lab CA, and `down` it on drop (checking that no
//! process is left).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// Retries `f` with backoff (20 ms growing to 250 ms) until it gives a value (a restart window,
/// a BMC's power change, a task ending), or panics with `what` after `secs`.
pub fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-lab");

pub struct TestLab {
    pub dir: tempfile::TempDir,
    pub json: Value,
    pub client: Client,
    pub up_secs: f64,
    args: Vec<String>,
}

pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run edge-lab");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

impl TestLab {
    pub fn up(net: u8, extra: &[&str]) -> TestLab {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> =
            vec!["up".into(), "--dir".into(), dir.path().display().to_string(), "--net".into(), net.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut lab = TestLab { dir, json: Value::Null, client: Client::new(), up_secs: 0.0, args };
        lab.start();
        lab
    }

    pub fn start(&mut self) {
        let t = Instant::now();
        let a: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (ok, out) = run(&a);
        assert!(
            ok,
            "edge-lab up failed: {out}\nlog:\n{}",
            std::fs::read_to_string(self.dir.path().join("edge-lab.log")).unwrap_or_default()
        );
        self.up_secs = t.elapsed().as_secs_f64();
        self.json = serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("lab.json")).expect("lab.json"))
            .expect("lab.json parses");
        let ca = reqwest::Certificate::from_pem(self.json["ca_pem"].as_str().expect("ca_pem").as_bytes()).expect("ca");
        let mut b = Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(30));
        // Certificates ordered through the lab's ACME endpoints are signed by its ACME CA.
        if let Some(pem) = self.json["acme"]["ca_pem"].as_str() {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("acme ca"));
        }
        self.client = b.build().expect("client");
    }

    pub fn down(&mut self) {
        let pid = self.pid();
        let (ok, out) = run(&["down", "--dir", &self.dir.path().display().to_string()]);
        assert!(ok, "down failed: {out}");
        if let Some(pid) = pid {
            assert!(!alive(pid), "edge-lab pid {pid} still alive after down");
        }
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("edge-lab.pid")).ok()?.trim().parse().ok()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn store(&self, i: usize) -> &Value {
        &self.json["stores"][i]
    }

    pub fn node_ep(&self, s: usize, n: usize) -> String {
        self.json["stores"][s]["nodes"][n]["endpoint"].as_str().unwrap().to_string()
    }

    pub fn token(&self, s: usize) -> String {
        format!("PVEAPIToken={}", self.json["stores"][s]["pve"]["api_token"].as_str().unwrap())
    }

    pub fn pbs_token(&self, s: usize) -> String {
        format!("PBSAPIToken={}", self.json["stores"][s]["pbs"]["api_token"].as_str().unwrap())
    }

    /// A PVE call on node `n` of store 0 with the store's API token.
    pub fn pve(&self, n: usize, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}/api2/json{}", self.node_ep(0, n), path);
        self.call(&url, &self.token(0), method, form)
    }

    /// A PVE call on node `n` of store 0 as root@pam (a ticket from the store's root password):
    /// methods without `permissions` in PVE's schema refuse every token.
    pub fn pve_root(&self, n: usize, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let password = self.store(0)["pve"]["root_password"].as_str().expect("root_password").to_string();
        self.pve_as(n, &password, method, path, form)
    }

    /// A PVE call on node `n` of store 0 as root@pam with `password`.
    pub fn pve_as(&self, n: usize, password: &str, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.try_pve_as(n, password, method, path, form)
            .unwrap_or_else(|e| panic!("{method} {path} as root@pam on node {n}: {e}"))
    }

    /// [`TestLab::pve_as`] that reports a failed login or connection instead of panicking (a
    /// node restarting its API). Any certificate the lab CA signed is accepted.
    pub fn try_pve_as(
        &self,
        n: usize,
        password: &str,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        self.try_pve_as_with(&self.client, n, password, method, path, form)
    }

    /// [`TestLab::try_pve_as`] through `client` (one that trusts what the node presents).
    pub fn try_pve_as_with(
        &self,
        client: &Client,
        n: usize,
        password: &str,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let base = format!("{}/api2/json", self.node_ep(0, n));
        let r = client.post(format!("{base}/access/ticket")).form(&[("username", "root@pam"), ("password", password)]);
        let (c, t) = decode(r.send().map_err(|e| format!("ticket: {e:?}"))?);
        if c != 200 {
            return Err(format!("ticket: {c} {t}"));
        }
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = client
            .request(m, format!("{base}{path}"))
            .header("Cookie", format!("PVEAuthCookie={}", t["data"]["ticket"].as_str().expect("ticket")))
            .header("CSRFPreventionToken", t["data"]["CSRFPreventionToken"].as_str().expect("csrf"));
        rb = if method == "GET" || method == "DELETE" { rb.query(form) } else { rb.form(form) };
        rb.send().map(decode).map_err(|e| format!("{e:?}"))
    }

    pub fn pbs(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}/api2/json{}", self.store(0)["pbs"]["endpoint"].as_str().unwrap(), path);
        self.call(&url, &self.pbs_token(0), method, form)
    }

    pub fn call(&self, url: &str, auth: &str, method: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.client.request(m, url).header("Authorization", auth);
        if method == "GET" || method == "DELETE" {
            rb = rb.query(form);
        } else {
            rb = rb.form(form);
        }
        let r = rb.send().unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
        decode(r)
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.json["admin"]["endpoint"].as_str().unwrap(), path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = Client::new().request(m, url).bearer_auth(self.json["admin"]["token"].as_str().unwrap());
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        decode(rb.send().expect("admin call"))
    }

    /// `pveceph init` and the first monitor on node `n` of store 0 (pools need a monitor: PVE
    /// cannot even connect to Ceph before one exists).
    pub fn ceph_bootstrap(&self, n: usize) {
        let name = format!("pve{}", n + 1);
        let (c, v) = self.pve(n, "POST", &format!("/nodes/{name}/ceph/init"), &[]);
        assert_eq!(c, 200, "ceph init: {v}");
        let (c, v) = self.pve(n, "POST", &format!("/nodes/{name}/ceph/mon/{name}"), &[]);
        assert_eq!(c, 200, "ceph mon: {v}");
        assert_eq!(self.wait_task(n, v["data"].as_str().expect("UPID"))["exitstatus"], "OK");
    }

    /// Polls a task until it stops; returns its status object. Rides out what a cluster create
    /// or join does to the node's API meanwhile (pmxcfs restarting: 401; pveproxy restarting:
    /// connection reset).
    pub fn wait_task(&self, n: usize, upid: &str) -> Value {
        self.wait_task_with(upid, |path| {
            let url = format!("{}/api2/json{path}", self.node_ep(0, n));
            self.client.get(&url).header("Authorization", self.token(0)).send().map(decode).map_err(|e| e.to_string())
        })
    }

    /// [`TestLab::wait_task`] as root@pam with the store's root password (a node that knows no
    /// token: freshly installed).
    pub fn wait_task_root(&self, n: usize, upid: &str) -> Value {
        let pw = self.store(0)["pve"]["root_password"].as_str().expect("root_password").to_string();
        self.wait_task_with(upid, |path| self.try_pve_as(n, &pw, "GET", path, &[]))
    }

    fn wait_task_with(&self, upid: &str, get: impl Fn(&str) -> Result<(u16, Value), String>) -> Value {
        let node = upid.split(':').nth(1).unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut delay = Duration::from_millis(20);
        let path = format!("/nodes/{node}/tasks/{}/status", enc(upid));
        loop {
            match get(&path) {
                Ok((200, v)) if v["data"]["status"] == "stopped" => return v["data"].clone(),
                Ok((200 | 401, _)) | Err(_) => {}
                Ok((code, v)) => panic!("task status: {code} {v}"),
            }
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(300));
        }
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("edge-lab.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- edge-lab.log (tail) ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        let pid = self.pid();
        let _ = run(&["down", "--dir", &self.dir.path().display().to_string()]);
        if std::thread::panicking() {
            return;
        }
        if let Some(pid) = pid {
            assert!(!alive(pid), "edge-lab pid {pid} survived down");
        }
        // Serve, Ceph daemons and the BMC emulator all carry the lab directory on their command line.
        let left = processes_mentioning(self.dir.path());
        assert!(left.is_empty(), "processes of the lab outlived down: {left:?}");
    }
}

/// Live processes (pid, command line) other than this one whose command line contains `path`.
pub fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && alive(*pid as i32))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(&needle).then(|| (pid, cmd.trim().to_string()))
        })
        .collect()
}

pub fn decode(r: Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(')').map(|x| x.1.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}
