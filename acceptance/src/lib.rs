//! Acceptance harness: the real `terraform` binary in a temp dir, with the freshly built
//! provider served from a filesystem mirror, and (optionally) an edge lab to talk to.
//!
//! Binaries are found through the environment, falling back to the workspace layout:
//! `EDGE_TERRAFORM` (default `<repo>/.tools/bin/terraform`), `EDGE_PROVIDER_BIN` and
//! `EDGE_LAB_BIN` (default `<target>/debug/…`). `make test` builds them before the tests run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// Polls `f` with backoff until it returns `Some` (a peer settling, not a fixed sleep), or
/// panics with `what` after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut wait = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

/// Percent-encodes `s` for a URL path segment or query value (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
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

/// Runs `cmd` to success and gives its trimmed stdout (panics with its stderr otherwise).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `edge-image` binary (`EDGE_IMAGE_BIN`, else the workspace's debug build).
pub fn edge_image_bin() -> PathBuf {
    let p = std::env::var_os("EDGE_IMAGE_BIN").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("debug/edge-image")
    });
    assert!(p.is_file(), "{} not found: build the workspace's bins first, or set EDGE_IMAGE_BIN", p.display());
    p
}

/// An image signing key made by `edge-image keygen`: (secret file, public `name:base64`).
pub fn image_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let secret = dir.join(format!("{name}.sec"));
    let public = dir.join(format!("{name}.pub"));
    run(Command::new(edge_image_bin())
        .arg("keygen")
        .arg(name)
        .arg("--out-secret")
        .arg(&secret)
        .arg("--out-public")
        .arg(&public));
    (secret, std::fs::read_to_string(&public).expect("public key").trim().to_string())
}

/// The provider's version as the mirror publishes it.
pub const PROVIDER_VERSION: &str = "0.1.0";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

fn built_binary(env: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| target_dir().join("debug").join(name));
    assert!(
        p.is_file(),
        "{} not found: build it first (`cargo build --workspace --bins`, or `make test`), or set {env}",
        p.display()
    );
    p
}

pub fn provider_bin() -> PathBuf {
    built_binary("EDGE_PROVIDER_BIN", "terraform-provider-edge")
}

pub fn lab_bin() -> PathBuf {
    built_binary("EDGE_LAB_BIN", "edge-lab")
}

/// Terraform 1.15.x from the project's tool dir (`scripts/install-deps.sh`).
pub fn terraform_bin() -> PathBuf {
    let p = std::env::var_os("EDGE_TERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/terraform"));
    assert!(p.is_file(), "{} not found: run scripts/install-deps.sh (make test does)", p.display());
    p
}

/// Terraform 1.0.3, for the compatibility run.
pub fn terraform_legacy_bin() -> PathBuf {
    let p = std::env::var_os("EDGE_TERRAFORM_LEGACY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/terraform-1.0.3"));
    assert!(p.is_file(), "{} not found: run scripts/install-deps.sh (make test does)", p.display());
    p
}

/// The filesystem mirror holding the built provider: one per provider build, under the target
/// dir (keyed by the binary's size and mtime), so test processes share it and nothing piles up
/// in /tmp. Written by copy + rename, so concurrent test binaries never see half a file.
fn mirror() -> &'static Path {
    static MIRROR: OnceLock<PathBuf> = OnceLock::new();
    MIRROR.get_or_init(|| {
        let bin = provider_bin();
        let meta = std::fs::metadata(&bin).expect("provider binary metadata");
        let stamp = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let root = target_dir().join("acceptance-mirror").join(format!("{}-{stamp}", meta.len()));
        let plat = root.join(format!("registry.terraform.io/edgeform/edge/{PROVIDER_VERSION}/linux_amd64"));
        let dest = plat.join(format!("terraform-provider-edge_v{PROVIDER_VERSION}"));
        if !dest.is_file() {
            std::fs::create_dir_all(&plat).expect("mirror dir");
            let tmp = plat.join(format!(".provider-{}", std::process::id()));
            std::fs::copy(&bin, &tmp).expect("copy provider into mirror");
            std::fs::rename(&tmp, &dest).expect("publish provider in mirror");
            // Mirrors of earlier builds are of no use any more.
            if let Some(parent) = root.parent().and_then(|p| std::fs::read_dir(p).ok()) {
                for old in parent.flatten().map(|e| e.path()).filter(|p| *p != root) {
                    let _ = std::fs::remove_dir_all(old);
                }
            }
        }
        root
    })
}

/// The outcome of one terraform command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    /// stdout and stderr together, for assertions on messages.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A Terraform working directory.
pub struct Tf {
    dir: tempfile::TempDir,
    terraform: PathBuf,
    env: Vec<(String, String)>,
}

impl Tf {
    /// A working dir with `main.tf` = `hcl`, driven by Terraform 1.15.x.
    pub fn new(hcl: &str) -> Tf {
        Self::with_terraform(hcl, terraform_bin())
    }

    pub fn with_terraform(hcl: &str, terraform: PathBuf) -> Tf {
        let dir = tempfile::Builder::new().prefix("edge-tf-").tempdir().expect("temp dir");
        let cli = dir.path().join("cli.tfrc");
        let mirror = mirror().display().to_string();
        std::fs::write(
            &cli,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{mirror}\"\n    include = [\"registry.terraform.io/edgeform/*\"]\n  }}\n  direct {{ exclude = [\"registry.terraform.io/edgeform/*\"] }}\n}}\n"
            ),
        )
        .expect("write cli config");
        let tf = Tf {
            dir,
            terraform,
            env: vec![
                ("TF_CLI_CONFIG_FILE".into(), cli.display().to_string()),
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
                ("TF_INPUT".into(), "0".into()),
            ],
        };
        tf.write("main.tf", hcl);
        tf
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets an environment variable for every later command (e.g. `TF_LOG`).
    pub fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).expect("write terraform file");
    }

    /// `terraform ARGS` as a command to start (for tests that interrupt Terraform).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.terraform);
        cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `terraform ARGS` and returns what happened (no assertion).
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run terraform"))
    }

    /// Runs and asserts success, printing everything Terraform said on failure.
    pub fn must(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(r.ok(), "terraform {} failed ({}):\n{}", args.join(" "), r.code, r.output());
        r
    }

    pub fn init(&self) -> Run {
        self.must(&["init", "-no-color"])
    }
    pub fn apply(&self) -> Run {
        self.must(&["apply", "-auto-approve", "-no-color"])
    }
    /// `apply` that must fail; returns the output for message assertions.
    pub fn apply_fails(&self) -> String {
        let r = self.run(&["apply", "-auto-approve", "-no-color"]);
        assert!(!r.ok(), "apply should have failed but succeeded:\n{}", r.output());
        r.output()
    }
    /// `plan -detailed-exitcode`: 0 no changes, 2 changes; panics on errors.
    pub fn plan_code(&self) -> i32 {
        let r = self.run(&["plan", "-detailed-exitcode", "-no-color"]);
        assert!(r.code == 0 || r.code == 2, "plan failed ({}):\n{}", r.code, r.output());
        r.code
    }
    /// Asserts the next plan is empty, showing the plan if it is not.
    pub fn assert_no_changes(&self) {
        let r = self.run(&["plan", "-detailed-exitcode", "-no-color"]);
        assert_eq!(r.code, 0, "expected an empty plan, got:\n{}", r.output());
    }
    pub fn plan_output(&self) -> String {
        self.run(&["plan", "-no-color"]).output()
    }
    pub fn destroy(&self) -> Run {
        self.must(&["destroy", "-auto-approve", "-no-color"])
    }
    pub fn import(&self, addr: &str, id: &str) -> Run {
        self.must(&["import", "-no-color", addr, id])
    }
    pub fn state_rm(&self, addr: &str) -> Run {
        self.must(&["state", "rm", "-no-color", addr])
    }

    /// `terraform show -json` of the state.
    pub fn show(&self) -> Value {
        let r = self.must(&["show", "-json", "-no-color"]);
        serde_json::from_str(&r.stdout).expect("show -json output is JSON")
    }

    /// The `values` of one resource in state (root module), by address.
    pub fn resource(&self, addr: &str) -> Value {
        let show = self.show();
        find_resource(&show["values"]["root_module"], addr).unwrap_or_else(|| panic!("{addr} not in state:\n{show:#}"))
    }

    /// The `values` of one resource, or `None` if it is not in state.
    pub fn try_resource(&self, addr: &str) -> Option<Value> {
        find_resource(&self.show()["values"]["root_module"], addr)
    }

    /// All output values.
    pub fn outputs(&self) -> Value {
        let r = self.must(&["output", "-json", "-no-color"]);
        serde_json::from_str(&r.stdout).expect("output -json is JSON")
    }
}

fn find_resource(module: &Value, addr: &str) -> Option<Value> {
    if let Some(rs) = module["resources"].as_array() {
        if let Some(r) = rs.iter().find(|r| r["address"] == addr) {
            return Some(r["values"].clone());
        }
    }
    module["child_modules"].as_array()?.iter().find_map(|m| find_resource(m, addr))
}

/// The standard lifecycle every acceptance test runs: init, apply, empty plan, re-import of
/// every listed resource gives the same state, destroy. `imports` are `(address, import id)`.
pub fn lifecycle(tf: &Tf, imports: &[(&str, &str)], ignore_on_import: &[&str]) {
    tf.init();
    tf.apply();
    tf.assert_no_changes();
    for (addr, id) in imports {
        let before = tf.resource(addr);
        tf.state_rm(addr);
        tf.import(addr, id);
        let after = tf.resource(addr);
        assert_same_except(&before, &after, ignore_on_import, addr);
        tf.assert_no_changes();
    }
    tf.destroy();
}

/// Compares two resource value objects, skipping the listed attribute names.
pub fn assert_same_except(a: &Value, b: &Value, skip: &[&str], what: &str) {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        assert_eq!(a, b, "{what}");
        return;
    };
    for (k, v) in ao {
        if skip.contains(&k.as_str()) {
            continue;
        }
        assert_eq!(Some(v), bo.get(k), "{what}: attribute {k} differs after import");
    }
}

/// A running edge lab (`edge-lab up`), stopped when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    /// The parsed `lab.json`.
    pub json: Value,
}

impl Lab {
    /// `edge-lab up --dir <temp> ARGS`. Give each test its own `--net` so labs never collide.
    pub fn up(args: &[&str]) -> Lab {
        let dir = tempfile::Builder::new().prefix("edge-lab-").tempdir().expect("temp dir");
        let out = Command::new(lab_bin())
            .arg("up")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run edge-lab up");
        assert!(
            out.status.success(),
            "edge-lab up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("lab.json")).expect("lab.json");
        let json = serde_json::from_str(&text).expect("lab.json is JSON");
        Lab { dir, json }
    }

    pub fn store(&self, i: usize) -> &Value {
        &self.json["stores"][i]
    }

    /// Environment that points the provider at store `i` (EDGE_PVE_*, EDGE_PBS_*).
    pub fn provider_env(&self, i: usize) -> Vec<(String, String)> {
        let s = self.store(i);
        let mut env = vec![];
        for (kind, key) in [("PVE", "pve"), ("PBS", "pbs")] {
            for (var, field) in
                [("ENDPOINT", "endpoint"), ("API_TOKEN", "api_token"), ("TLS_FINGERPRINT", "tls_fingerprint")]
            {
                if let Some(v) = s[key][field].as_str() {
                    env.push((format!("EDGE_{kind}_{var}"), v.to_string()));
                }
            }
        }
        env
    }

    /// Environment for a store whose nodes the provider installs from bare metal: the image knows
    /// no API token, so the provider talks to PVE as root@pam (`EDGE_PVE_ROOT_PASSWORD`); the
    /// nodes' certificates are only known once installed, so no PVE fingerprint is pinned.
    pub fn bare_metal_env(&self, i: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            self.provider_env(i).into_iter().filter(|(k, _)| !k.starts_with("EDGE_PVE_")).collect();
        let s = self.store(i);
        env.push(("EDGE_PVE_ROOT_PASSWORD".into(), s["pve"]["root_password"].as_str().unwrap_or_default().into()));
        // Empty values count as unset: they override anything the caller's environment holds.
        env.push(("EDGE_PVE_API_TOKEN".into(), String::new()));
        env.push(("EDGE_PVE_TLS_FINGERPRINT".into(), String::new()));
        env.push(("EDGE_PVE_ENDPOINT".into(), s["pve"]["endpoint"].as_str().unwrap_or_default().into()));
        env
    }

    /// Calls a node's PVE API as root@pam (a ticket from the lab's seed root password), through
    /// curl trusting the lab CA; returns the answer's JSON. Nodes installed from the image know
    /// no token, and what they know of root is their seed's password.
    pub fn pve_root(&self, node: usize, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        self.try_pve_root(node, method, path, form)
            .unwrap_or_else(|| panic!("{method} {path} on node {node} as root: no answer (see curl's error above)"))
    }

    /// [`Lab::pve_root`] that gives `None` when the node does not answer (it is rebooting or
    /// still starting): for polling.
    pub fn try_pve_root(&self, node: usize, method: &str, path: &str, form: &[(&str, &str)]) -> Option<Value> {
        let endpoint = self.store(0)["nodes"][node]["endpoint"].as_str()?.to_string();
        let password = self.store(0)["pve"]["root_password"].as_str()?.to_string();
        let ca = self.dir.path().join("ca.pem");
        let curl = |args: &[String]| -> Option<Value> {
            let out = Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&ca)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .ok()?;
            if !out.status.success() {
                eprintln!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
                return None;
            }
            Some(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
        };
        let login = curl(&[
            "--data-urlencode".into(),
            "username=root@pam".into(),
            "--data-urlencode".into(),
            format!("password={password}"),
            format!("{endpoint}/api2/json/access/ticket"),
        ])?;
        let ticket = login["data"]["ticket"].as_str()?.to_string();
        let csrf = login["data"]["CSRFPreventionToken"].as_str()?.to_string();
        let mut args = vec![
            "-X".to_string(),
            method.to_string(),
            "-H".into(),
            format!("Cookie: PVEAuthCookie={ticket}"),
            "-H".into(),
            format!("CSRFPreventionToken: {csrf}"),
        ];
        if method == "GET" || method == "DELETE" {
            args.push("-G".into());
        }
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("{endpoint}/api2/json{path}"));
        curl(&args)
    }

    /// Starts a PVE task on node `node` as root (retried while the node does not answer) and
    /// waits for it to end OK.
    pub fn pve_root_task(&self, node: usize, path: &str, form: &[(&str, &str)]) {
        let started =
            poll(&format!("POST {path}"), Duration::from_secs(30), || self.try_pve_root(node, "POST", path, form));
        let upid = started["data"].as_str().unwrap_or_else(|| panic!("POST {path}: no UPID: {started}")).to_string();
        let on = upid.split(':').nth(1).expect("UPID node").to_string();
        let status = poll(&format!("task {upid}"), Duration::from_secs(60), || {
            let v = self.try_pve_root(node, "GET", &format!("/nodes/{on}/tasks/{}/status", url_encode(&upid)), &[])?;
            (v["data"]["status"] == "stopped").then(|| v["data"].clone())
        });
        assert_eq!(status["exitstatus"], "OK", "{path}: {status}");
    }

    /// Forms store 0's three-node PVE cluster with a monitor and an OSD on every node, through
    /// PVE's API as root (as an operator would by hand, not through Terraform).
    pub fn form_ceph_cluster_by_hand(&self) {
        self.pve_root_task(0, "/cluster/config", &[("clustername", "edge")]);
        let first = &self.store(0)["nodes"][0];
        let addr = first["address"].as_str().expect("address").to_string();
        let fp = first["tls_fingerprint"].as_str().expect("fingerprint").to_string();
        let pw = self.store(0)["pve"]["root_password"].as_str().expect("password").to_string();
        for n in [1, 2] {
            self.pve_root_task(
                n,
                "/cluster/config/join",
                &[("hostname", &addr), ("fingerprint", &fp), ("password", &pw)],
            );
        }
        poll("ceph init", Duration::from_secs(30), || self.try_pve_root(0, "POST", "/nodes/pve1/ceph/init", &[]));
        for name in ["pve1", "pve2", "pve3"] {
            self.pve_root_task(0, &format!("/nodes/{name}/ceph/mon/{name}"), &[]);
            self.pve_root_task(0, &format!("/nodes/{name}/ceph/osd"), &[("dev", "/dev/sdb")]);
        }
    }

    /// Calls store 0's PVE or PBS API (`product` is `pve` or `pbs`) with its API token, through
    /// curl trusting the lab CA; panics on an error answer. `body` is a JSON object: the query
    /// parameters of a GET, the JSON body of anything else.
    pub fn api(&self, product: &str, method: &str, path: &str, body: &Value) -> Value {
        let s = &self.store(0)[product];
        let url = format!("{}/api2/json{path}", s["endpoint"].as_str().unwrap_or_default());
        let scheme = if product == "pve" { "PVEAPIToken" } else { "PBSAPIToken" };
        let auth = format!("Authorization: {scheme}={}", s["api_token"].as_str().unwrap_or_default());
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail-with-body", "--cacert"]).arg(self.dir.path().join("ca.pem"));
        cmd.args(["-X", method, "-H", &auth]);
        if method == "GET" {
            cmd.arg("-G");
            for (k, v) in body.as_object().into_iter().flatten() {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                cmd.args(["--data-urlencode", &format!("{k}={v}")]);
            }
        } else {
            cmd.args(["-H", "Content-Type: application/json", "--data", &body.to_string()]);
        }
        let out = cmd.arg(&url).stdin(Stdio::null()).output().expect("curl");
        assert!(out.status.success(), "{method} {path}: {}", String::from_utf8_lossy(&out.stdout));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Calls the lab admin API with curl-free std networking: `method path [json body]`.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let endpoint = self.json["admin"]["endpoint"].as_str().expect("admin endpoint");
        let token = self.json["admin"]["token"].as_str().expect("admin token");
        http_json(method, &format!("{endpoint}{path}"), token, body)
    }
}

impl Drop for Lab {
    /// Stops the lab and checks that nothing of it is left: no process has the lab's directory
    /// on its command line (serve, Ceph daemons, the BMC emulator all do). A leftover would eat
    /// memory for the rest of the run and make the next lab on this net fail.
    fn drop(&mut self) {
        let down = Command::new(lab_bin()).arg("down").arg("--dir").arg(self.dir.path()).stdin(Stdio::null()).output();
        let left = processes_mentioning(self.dir.path());
        if !std::thread::panicking() {
            assert!(down.is_ok_and(|o| o.status.success()), "edge-lab down failed for {}", self.dir.path().display());
            assert!(
                left.is_empty(),
                "processes of the lab in {} outlived `edge-lab down`: {left:?}",
                self.dir.path().display()
            );
        }
    }
}

/// Live processes (pid, command line) whose command line contains `path`.
pub fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    processes_where(|args| args.join(" ").contains(&needle))
}

/// Live processes whose arguments are exactly `want` (the program compared by file name).
pub fn processes_with_args(want: &[&str]) -> Vec<(u32, String)> {
    processes_where(|args| {
        args.len() == want.len()
            && args.iter().zip(want).enumerate().all(|(i, (a, w))| {
                if i == 0 {
                    Path::new(a).file_name().is_some_and(|f| f == *w)
                } else {
                    a == w
                }
            })
    })
}

/// Live (not zombie) processes other than this one whose argument list satisfies `pred`.
fn processes_where(pred: impl Fn(&[String]) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // A zombie has exited; its parent has not reaped it yet.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            if state == 'Z' || state == 'X' {
                return None;
            }
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            pred(&args).then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// Minimal HTTP/1.1 JSON request over plain TCP (the admin API is loopback-only HTTP).
pub fn http_json(method: &str, url: &str, bearer: &str, body: Option<&Value>) -> Value {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("admin URL is http://");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(host).expect("connect to lab admin API");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).expect("send admin request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read admin response");
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    assert!((200..300).contains(&status), "admin {method} {path} -> {status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
