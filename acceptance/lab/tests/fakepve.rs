//! A differential test against a second oracle: the error catalogue of the PyPI package
//! `fakepve` 0.5.0 (AGPL, a third-party fake PVE). Its `fakepve/data/pve-errors.json.gz`
//! lists per API method the errors PVE's source raises (status, message with `{placeholder}`s,
//! parameter `errors`, whether the error ends a task). The catalogue is read where
//! `scripts/install-deps.sh` installs the package (`.tools/venv`); nothing of it is copied into
//! this repository.
//!
//! Every catalogue entry of the methods the provider calls is in exactly one class:
//! * reproduced — [`REPRODUCED`] has a scenario that makes the lab raise it, and the lab's
//!   answer matches the catalogue;
//! * differs — the lab answers as Proxmox's source does where the catalogue says otherwise
//!   ([`DIFFERS`] has the scenario and the source's answer; FIDELITY.md rows `FAKEPVE-DIFF-*`
//!   cite the source);
//! * not modelled — FIDELITY.md rows `FAKEPVE-NOMODEL-*` say why (a condition the lab's nodes
//!   never have, a check the lab does not make, or an answer in the lab's own words that is
//!   neither the catalogue's nor the source's).
//!
//! The ledger rows are read from FIDELITY.md's section "fakepve catalogue: known differences":
//! in a row's second cell, a backticked `METHOD /path` scopes the backticked entry names after
//! it (until the next method); names before any method apply to every method in [`SCOPE`]
//! whose entries have that name. A new catalogue entry without a class fails the test, and so
//! does a class claimed for an entry the catalogue no longer has.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{decode, poll, TestLab};
use serde_json::Value;

/// The methods the provider calls (its PVE clients in provider/src/clients/pve): the scope of
/// this comparison.
const SCOPE: &[&str] = &[
    "GET /version",
    "GET /nodes",
    "GET /nodes/{node}/status",
    "GET /nodes/{node}/dns",
    "PUT /nodes/{node}/dns",
    "GET /nodes/{node}/time",
    "PUT /nodes/{node}/time",
    "GET /nodes/{node}/network",
    "POST /nodes/{node}/network",
    "PUT /nodes/{node}/network",
    "PUT /nodes/{node}/network/{iface}",
    "DELETE /nodes/{node}/network/{iface}",
    "GET /nodes/{node}/disks/list",
    "PUT /nodes/{node}/disks/wipedisk",
    "GET /cluster/status",
    "POST /cluster/config",
    "GET /cluster/config/join",
    "POST /cluster/config/join",
    "GET /cluster/config/nodes",
    "DELETE /cluster/config/nodes/{node}",
    "POST /nodes/{node}/ceph/init",
    "GET /nodes/{node}/ceph/status",
    "GET /nodes/{node}/ceph/mon",
    "POST /nodes/{node}/ceph/mon/{monid}",
    "GET /nodes/{node}/ceph/mgr",
    "POST /nodes/{node}/ceph/mgr/{id}",
    "POST /nodes/{node}/ceph/osd",
    "GET /nodes/{node}/ceph/pool",
    "POST /nodes/{node}/ceph/pool",
    "PUT /nodes/{node}/ceph/pool/{name}",
    "DELETE /nodes/{node}/ceph/pool/{name}",
    "GET /nodes/{node}/ceph/pool/{name}/status",
    "GET /cluster/backup",
    "POST /cluster/backup",
    "GET /cluster/backup/{id}",
    "PUT /cluster/backup/{id}",
    "DELETE /cluster/backup/{id}",
    "GET /nodes/{node}/tasks/{upid}/status",
    "GET /nodes/{node}/tasks/{upid}/log",
    "POST /access/ticket",
    "GET /nodes/{node}/config",
    "PUT /nodes/{node}/config",
    "POST /nodes/{node}/certificates/acme/certificate",
    "GET /nodes/{node}/certificates/info",
    "DELETE /nodes/{node}/certificates/custom",
];

const SECTION: &str = "## fakepve catalogue: known differences";

// --- the catalogue -------------------------------------------------------------------------

/// One catalogue entry.
#[derive(Debug)]
struct Entry {
    name: String,
    status: u16,
    message: String,
    errors: BTreeMap<String, String>,
    in_task: bool,
    source: String,
}

struct Catalogue {
    meta: Value,
    /// The entries of the methods in [`SCOPE`] (a method the catalogue lacks has none).
    methods: BTreeMap<&'static str, Vec<Entry>>,
}

impl Catalogue {
    fn entry(&self, method: &str, name: &str) -> Option<&Entry> {
        self.methods.get(method)?.iter().find(|e| e.name == name)
    }
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `.tools/venv/lib/python3*/site-packages/fakepve/data/pve-errors.json.gz`.
fn catalogue_path() -> PathBuf {
    let lib = repo_root().join(".tools/venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/fakepve/data/pve-errors.json.gz"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "fakepve's error catalogue (.tools/venv/lib/python3*/site-packages/fakepve/data/pve-errors.json.gz) \
             is missing under {}: run scripts/install-deps.sh, which installs fakepve 0.5.0 into .tools/venv",
            repo_root().display()
        )
    })
}

fn catalogue() -> Catalogue {
    let path = catalogue_path();
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file))
        .unwrap_or_else(|e| panic!("{}: not gzip JSON: {e}", path.display()));
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut methods = BTreeMap::new();
    for m in SCOPE {
        let entries: Vec<Entry> = all["errors"][*m]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| Entry {
                        name: text(e, "name"),
                        status: e["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
                        message: text(e, "message"),
                        errors: e["errors"]
                            .as_object()
                            .map(|o| {
                                o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into())).collect()
                            })
                            .unwrap_or_default(),
                        in_task: e["in_task"].as_bool().unwrap_or(false),
                        source: text(e, "source"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), entries.len(), "{m}: entry names repeat in the catalogue; this test keys by name");
        methods.insert(*m, entries);
    }
    Catalogue { meta: all["meta"].clone(), methods }
}

/// A catalogue message as a regex: its `{placeholder}`s match any text.
fn pattern(message: &str) -> regex::Regex {
    let placeholder = regex::Regex::new(r"\{[A-Za-z_][A-Za-z0-9_]*\}").expect("placeholder regex");
    let mut re = String::from("(?s)^");
    let mut last = 0;
    for m in placeholder.find_iter(message) {
        re.push_str(&regex::escape(&message[last..m.start()]));
        re.push_str(".+");
        last = m.end();
    }
    re.push_str(&regex::escape(&message[last..]));
    re.push('$');
    regex::Regex::new(&re).unwrap_or_else(|e| panic!("pattern of {message:?}: {e}"))
}

// --- the ledger ----------------------------------------------------------------------------

/// The classes, in the order the counts are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Reproduced,
    Differs,
    NotModelled,
}

/// A class claimed for one entry, and by whom.
struct Claim {
    by: String,
    class: Class,
    method: String,
    name: String,
}

/// The claims of FIDELITY.md's fakepve section; problems (stale names, unknown methods,
/// rows of no class) go to `problems`.
fn ledger_claims(cat: &Catalogue, problems: &mut Vec<String>) -> Vec<Claim> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("FIDELITY.md");
    let text = std::fs::read_to_string(&path).expect("FIDELITY.md");
    let section: Vec<&str> =
        text.lines().skip_while(|l| l.trim() != SECTION).skip(1).take_while(|l| !l.starts_with("## ")).collect();
    assert!(!section.is_empty(), "FIDELITY.md has no section {SECTION:?}");
    let method_token = regex::Regex::new(r"^(GET|POST|PUT|DELETE) /").expect("regex");
    let name_token = regex::Regex::new(r"^[a-z][a-z0-9_]*$").expect("regex");
    let mut claims = Vec::new();
    for line in section {
        let Some(cells) = line.trim().strip_prefix('|').and_then(|l| l.strip_suffix('|')) else { continue };
        let cells: Vec<&str> = cells.split('|').map(str::trim).collect();
        let id = cells[0];
        let class = if id.starts_with("FAKEPVE-DIFF-") {
            Class::Differs
        } else if id.starts_with("FAKEPVE-NOMODEL-") {
            Class::NotModelled
        } else {
            if id != "ID" && !id.starts_with("---") {
                problems.push(format!("FIDELITY.md row {id}: neither FAKEPVE-DIFF-* nor FAKEPVE-NOMODEL-*"));
            }
            continue;
        };
        let Some(what) = cells.get(1) else { continue };
        let mut method: Option<String> = None;
        let mut named = 0;
        for token in what.split('`').skip(1).step_by(2) {
            if method_token.is_match(token) {
                if !SCOPE.contains(&token) {
                    problems.push(format!("{id}: {token} is not a method in SCOPE"));
                }
                method = Some(token.to_string());
            } else if name_token.is_match(token) {
                named += 1;
                let targets: Vec<&str> = match &method {
                    Some(m) => vec![m.as_str()],
                    None => SCOPE.to_vec(),
                };
                let present: Vec<&str> = targets.into_iter().filter(|m| cat.entry(m, token).is_some()).collect();
                if present.is_empty() {
                    let place = method.as_deref().unwrap_or("any method in SCOPE");
                    problems.push(format!("{id}: stale, the catalogue has no {token} for {place}"));
                }
                for m in present {
                    claims.push(Claim { by: id.to_string(), class, method: m.to_string(), name: token.to_string() });
                }
            }
        }
        if named == 0 {
            problems.push(format!("{id}: names no catalogue entry"));
        }
    }
    claims
}

/// Every claim: the ledger's and this file's tables.
fn all_claims(cat: &Catalogue, problems: &mut Vec<String>) -> Vec<Claim> {
    let mut claims = ledger_claims(cat, problems);
    for (method, name, _) in REPRODUCED {
        claims.push(Claim {
            by: "REPRODUCED".into(),
            class: Class::Reproduced,
            method: method.to_string(),
            name: name.to_string(),
        });
    }
    // The scenarios of the differing entries and the ledger's FAKEPVE-DIFF rows name the same entries.
    let ledger: BTreeSet<(String, String)> =
        claims.iter().filter(|c| c.class == Class::Differs).map(|c| (c.method.clone(), c.name.clone())).collect();
    let tested: BTreeSet<(String, String)> =
        differing().iter().map(|(m, n, _, _)| (m.to_string(), n.to_string())).collect();
    for (m, n) in ledger.difference(&tested) {
        problems.push(format!("{m} {n}: a FAKEPVE-DIFF row names it but neither DIFFERS nor SHARED has a scenario"));
    }
    for (m, n) in tested.difference(&ledger) {
        problems.push(format!("{m} {n}: a differing scenario but no FAKEPVE-DIFF row names it"));
    }
    for c in &claims {
        if c.by == "REPRODUCED" && cat.entry(&c.method, &c.name).is_none() {
            problems.push(format!("REPRODUCED: stale, the catalogue has no {} for {}", c.name, c.method));
        }
    }
    claims
}

// --- answers and scenarios -----------------------------------------------------------------

/// What the lab answered.
#[derive(Debug)]
enum Answer {
    /// The call's own answer: status, message (one trailing newline removed), `errors`.
    Call { status: u16, message: String, errors: BTreeMap<String, String> },
    /// The call started a task (200 + UPID); the task's exit status.
    Task(String),
}

fn chomp(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

/// Does the lab's answer match the catalogue entry? Err says how not.
fn agrees(e: &Entry, a: &Answer) -> Result<(), String> {
    match (e.in_task, a) {
        (true, Answer::Task(exit)) if pattern(&e.message).is_match(exit) => Ok(()),
        (true, Answer::Task(exit)) => Err(format!("task ended {exit:?}, the catalogue says {:?}", e.message)),
        (false, Answer::Call { status, message, errors }) => {
            let mut why = Vec::new();
            if *status != e.status {
                why.push(format!("status {status}, the catalogue says {}", e.status));
            }
            if !pattern(&e.message).is_match(message) {
                why.push(format!("message {message:?}, the catalogue says {:?}", e.message));
            }
            if !e.errors.is_empty() {
                let keys = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
                if keys(errors) != keys(&e.errors) {
                    why.push(format!("errors {errors:?}, the catalogue says {:?}", e.errors));
                }
                for (k, want) in &e.errors {
                    if errors.get(k).is_some_and(|got| !pattern(want).is_match(got)) {
                        why.push(format!("errors.{k} {:?}, the catalogue says {want:?}", errors[k]));
                    }
                }
            }
            if why.is_empty() {
                Ok(())
            } else {
                Err(why.join("; "))
            }
        }
        (true, a) => Err(format!("the catalogue says a task ends with it, the lab answered {a:?}")),
        (false, a) => Err(format!("the catalogue says the call answers it, the lab answered {a:?}")),
    }
}

/// What Proxmox's source answers the call: status, message without its last newline, `errors`
/// (a value of None checks only that the key is there).
struct Source(u16, &'static str, &'static [(&'static str, Option<&'static str>)]);

fn source_agrees(want: &Source, a: &Answer) -> Result<(), String> {
    let Source(status, message, errors) = want;
    let Answer::Call { status: got_status, message: got_message, errors: got_errors } = a else {
        return Err(format!("the source answers the call, the lab answered {a:?}"));
    };
    let keys: Vec<&str> = errors.iter().map(|(k, _)| *k).collect();
    let got_keys: Vec<&str> = got_errors.keys().map(String::as_str).collect();
    let values_agree = errors.iter().all(|(k, v)| v.is_none_or(|v| got_errors.get(*k).map(|g| chomp(g)) == Some(v)));
    if (got_status, got_message.as_str(), got_keys) == (status, message, keys) && values_agree {
        Ok(())
    } else {
        Err(format!("the source answers {status} {message:?} {errors:?}, the lab answered {a:?}"))
    }
}

/// A request's form parameters.
type Form = &'static [(&'static str, &'static str)];

/// A scenario on a fresh lab: `setup`, then one call on pve1 — the catalogue method's HTTP
/// method on `path` with `base` and `form` — whose answer is compared.
#[derive(Clone, Copy)]
struct Scenario {
    setup: fn(&Fx),
    path: &'static str,
    base: Form,
    form: Form,
}

/// A call on a fresh lab.
const fn call(path: &'static str, form: Form) -> Scenario {
    Scenario { setup: |_| {}, path, base: &[], form }
}

/// A call after `setup`.
const fn after(setup: fn(&Fx), path: &'static str, form: Form) -> Scenario {
    Scenario { setup, path, base: &[], form }
}

/// A new interface vmbr1 (POST), a bridge.
const fn new_iface(form: Form) -> Scenario {
    Scenario { setup: |_| {}, path: "/nodes/pve1/network", base: &[("iface", "vmbr1"), ("type", "bridge")], form }
}

/// A change of the bridge vmbr0 (PUT).
const fn vmbr0(form: Form) -> Scenario {
    Scenario { setup: |_| {}, path: "/nodes/pve1/network/vmbr0", base: &[("type", "bridge")], form }
}

/// A change of backup job `j1` (PUT).
const fn job_update(form: Form) -> Scenario {
    after(Fx::job, "/cluster/backup/j1", form)
}

/// A new backup job `j1` (POST) with a daily schedule.
const fn job_create(form: Form) -> Scenario {
    Scenario { setup: |_| {}, path: "/cluster/backup", base: &[("id", "j1"), ("schedule", "daily")], form }
}

/// A new Ceph pool (8 PGs: the model counts PGs against three OSDs' limit) after `pveceph
/// init` and the first monitor.
const fn new_pool(form: Form) -> Scenario {
    Scenario { setup: Fx::ceph, path: "/nodes/pve1/ceph/pool", base: &[("pg_num", "8")], form }
}

/// A well-formed UPID of a task no node ever ran (a macro, for `concat!`).
macro_rules! unknown_upid {
    () => {
        "UPID:pve1:0000ABCD:00001234:6500AAAA:cephcreatepool:x:root@pam:"
    };
}

/// A lab and calls as `root@pam` with a ticket: the one user every method lets through (the
/// root-only ones too), so each scenario is one real PVE would answer the same way.
struct Fx {
    lab: TestLab,
}

impl Fx {
    fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let ep = self.lab.node_ep(0, 0);
        let password = self.lab.store(0)["pve"]["root_password"].as_str().expect("root_password");
        let (c, t) = self.lab.call(
            &format!("{ep}/api2/json/access/ticket"),
            "",
            "POST",
            &[("username", "root@pam"), ("password", password)],
        );
        assert_eq!(c, 200, "ticket: {t}");
        let ticket = t["data"]["ticket"].as_str().expect("ticket");
        let csrf = t["data"]["CSRFPreventionToken"].as_str().expect("CSRF token");
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.lab.client.request(m, format!("{ep}/api2/json{path}"));
        rb = rb.header("Cookie", format!("PVEAuthCookie={ticket}")).header("CSRFPreventionToken", csrf);
        rb = if method == "GET" || method == "DELETE" { rb.query(form) } else { rb.form(form) };
        decode(rb.send().unwrap_or_else(|e| panic!("{method} {path}: {e}")))
    }

    /// The answer of a call on pve1; a task it starts is waited for.
    fn answer(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let (status, v) = self.call(method, path, form);
        if let (200, Some(upid)) = (status, v["data"].as_str().filter(|u| u.starts_with("UPID:"))) {
            let st = self.lab.wait_task(0, upid);
            return Answer::Task(st["exitstatus"].as_str().unwrap_or_default().to_string());
        }
        let errors = v["errors"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        Answer::Call { status, message: chomp(v["message"].as_str().unwrap_or_default()).to_string(), errors }
    }

    /// Runs scenario `s` of catalogue method `method` (`GET /path…`).
    fn run(&self, method: &str, s: &Scenario) -> Answer {
        (s.setup)(self);
        let http = method.split(' ').next().unwrap_or_default();
        self.answer(http, s.path, &[s.base, s.form].concat())
    }

    /// A setup step on pve1 that must succeed (and its task end OK).
    fn ok(&self, method: &str, path: &str, form: &[(&str, &str)]) {
        match self.answer(method, path, form) {
            Answer::Call { status: 200, .. } => {}
            Answer::Task(exit) if exit == "OK" => {}
            a => panic!("setup {method} {path}: {a:?}"),
        }
    }

    fn cluster(&self) {
        self.ok("POST", "/cluster/config", &[("clustername", "edge")]);
    }

    /// `pveceph init` and the first monitor on pve1.
    fn ceph(&self) {
        self.lab.ceph_bootstrap(0);
    }

    /// `pveceph init` with the public network 127.0.0.0/8, the lab's loopback block: each
    /// node has one address in it.
    fn ceph_public(&self) {
        self.ok("POST", "/nodes/pve1/ceph/init", &[("network", "127.0.0.0/8")]);
    }

    /// `pveceph init` with a public network none of pve1's addresses is in.
    fn ceph_public_elsewhere(&self) {
        self.ok("POST", "/nodes/pve1/ceph/init", &[("network", "10.99.0.0/16")]);
    }

    /// A second address of pve1 in the public network (vmbr1, applied).
    fn second_address(&self) {
        self.ok(
            "POST",
            "/nodes/pve1/network",
            &[("iface", "vmbr1"), ("type", "bridge"), ("cidr", SECOND_ADDRESS_CIDR), ("autostart", "1")],
        );
        self.ok("PUT", "/nodes/pve1/network", &[]);
    }

    /// The public network, and two addresses of pve1 in it.
    fn ceph_two_addresses(&self) {
        self.ceph_public();
        self.second_address();
    }

    /// The public network, the first monitor (on pve1's one address there), then a second
    /// address of pve1 in that network.
    fn mon_then_second_address(&self) {
        self.ceph_public();
        self.ok("POST", "/nodes/pve1/ceph/mon/pve1", &[]);
        self.second_address();
    }

    /// The first monitor and the manager its task starts (a task of its own: waited for in
    /// the manager list).
    fn mgr(&self) {
        self.ceph();
        poll("the manager of the first monitor", 30, || {
            let (status, v) = self.call("GET", "/nodes/pve1/ceph/mgr", &[]);
            (status == 200 && v["data"].as_array().is_some_and(|a| a.iter().any(|m| m["name"] == "pve1"))).then_some(())
        });
    }

    /// An OSD on /dev/sdb.
    fn osd(&self) {
        self.ceph();
        self.ok("POST", "/nodes/pve1/ceph/osd", &[("dev", "/dev/sdb")]);
    }

    /// A directory storage `sp`, the id a pool `sp` would give its storage.
    fn storage_sp(&self) {
        self.ceph();
        self.ok("POST", "/storage", &[("storage", "sp"), ("type", "dir"), ("path", "/srv/sp")]);
    }

    fn pool_p(&self) {
        self.ceph();
        self.ok("POST", "/nodes/pve1/ceph/pool", &[("name", "p"), ("pg_num", "8")]);
    }

    /// A pool `sp` with its storage, which is then disabled.
    fn pool_sp_disabled(&self) {
        self.ceph();
        self.ok("POST", "/nodes/pve1/ceph/pool", &[("name", "sp"), ("pg_num", "8"), ("add_storages", "1")]);
        self.ok("PUT", "/storage/sp", &[("disable", "1")]);
    }

    /// A backup job `j1` of guest 100.
    fn job(&self) {
        self.ok(
            "POST",
            "/cluster/backup",
            &[("id", "j1"), ("schedule", "daily"), ("vmid", "100"), ("storage", "local")],
        );
    }

    fn vmbr1(&self) {
        self.ok("POST", "/nodes/pve1/network", &[("iface", "vmbr1"), ("type", "bridge")]);
    }

    /// An ACME account, as PVE registers it with the lab's CA.
    fn acme_account(&self) {
        let acme = &self.lab.json["acme"];
        let (dir, tos) = (acme["directory"].as_str().expect("directory"), acme["tos"].as_str().expect("tos"));
        self.ok(
            "POST",
            "/cluster/acme/account",
            &[("contact", "ops@example.com"), ("directory", dir), ("tos_url", tos)],
        );
    }

    /// A certificate ordered for pve1: pveproxy-ssl.pem now exists.
    fn acme_ordered(&self) {
        self.acme_account();
        self.ok("PUT", "/nodes/pve1/config", &[("acme", "domains=pve1.example.com")]);
        self.ok("POST", "/nodes/pve1/certificates/acme/certificate", &[]);
    }

    /// pve1's ACME domain names a DNS plugin that was deleted afterwards.
    fn acme_plugin_gone(&self) {
        self.acme_account();
        self.ok("POST", "/cluster/acme/plugins", &[("id", "dns1"), ("type", "dns"), ("api", "pdns")]);
        self.ok("PUT", "/nodes/pve1/config", &[("acmedomain0", "domain=pve1.example.com,plugin=dns1")]);
        self.ok("DELETE", "/cluster/acme/plugins/dns1", &[]);
    }
}

/// pve1's second address in the Ceph public network 127.0.0.0/8.
const SECOND_ADDRESS: &str = "127.200.0.9";
const SECOND_ADDRESS_CIDR: &str = "127.200.0.9/8";
const MON: &str = "/nodes/pve1/ceph/mon/pve1";
const OSD: &str = "/nodes/pve1/ceph/osd";
const WIPEDISK: &str = "/nodes/pve1/disks/wipedisk";

const CIDR_AND_ADDRESS: Form = &[("cidr", "10.9.0.1/24"), ("address", "10.9.0.1"), ("netmask", "255.255.255.0")];
const CIDR6_AND_ADDRESS6: Form = &[("cidr6", "fd00::1/64"), ("address6", "fd00::1"), ("netmask6", "64")];
const ACME_ORDER: &str = "/nodes/pve1/certificates/acme/certificate";

/// Catalogue entries the lab reproduces: (method, entry, a scenario that makes the lab raise it).
const REPRODUCED: &[(&str, &str, Scenario)] = &[
    ("PUT /nodes/{node}/time", "param_timezone_no_such_timezone", call("/nodes/pve1/time", &[("timezone", "Nowhere")])),
    (
        "POST /nodes/{node}/network",
        "param_iface_interface_already_exists",
        call("/nodes/pve1/network", &[("iface", "vmbr0"), ("type", "bridge")]),
    ),
    (
        "POST /nodes/{node}/network",
        "open_vswitch_not_installed_need",
        call("/nodes/pve1/network", &[("iface", "vmbr1"), ("type", "OVSBridge")]),
    ),
    ("POST /nodes/{node}/network", "param_bridge_vids_vlan_list", new_iface(&[("bridge_vids", ",")])),
    ("POST /nodes/{node}/network", "parameter_verification_failed", new_iface(&[("bridge_ports", "eno1")])),
    ("POST /nodes/{node}/network", "param_address_address_conflicts_cidr", new_iface(CIDR_AND_ADDRESS)),
    ("POST /nodes/{node}/network", "param_address_address_conflicts_cidr_2", new_iface(CIDR6_AND_ADDRESS6)),
    (
        "PUT /nodes/{node}/network/{iface}",
        "param_iface_interface_does_not",
        call("/nodes/pve1/network/vmbr9", &[("type", "bridge")]),
    ),
    ("PUT /nodes/{node}/network/{iface}", "param_bridge_vids_vlan_list", vmbr0(&[("bridge_vids", ",")])),
    (
        "PUT /nodes/{node}/network/{iface}",
        "parameter_verification_failed",
        after(Fx::vmbr1, "/nodes/pve1/network/vmbr1", &[("type", "bridge"), ("bridge_ports", "eno1")]),
    ),
    ("PUT /nodes/{node}/network/{iface}", "param_address_address_conflicts_cidr", vmbr0(CIDR_AND_ADDRESS)),
    ("PUT /nodes/{node}/network/{iface}", "param_address_address_conflicts_cidr_2", vmbr0(CIDR6_AND_ADDRESS6)),
    ("DELETE /nodes/{node}/network/{iface}", "param_iface_interface_does_not", call("/nodes/pve1/network/vmbr9", &[])),
    // The boot disk: is_mounted looks at the disk and each partition and names the one that is
    // mounted (on a real node the ESP, /dev/sda2; the lab names the disk; the placeholder takes
    // either).
    ("PUT /nodes/{node}/disks/wipedisk", "disk_partition_mounted", call(WIPEDISK, &[("disk", "/dev/sda")])),
    // An OSD's disk: its LVM volume holds it.
    (
        "PUT /nodes/{node}/disks/wipedisk",
        "disk_partition_has_holder",
        after(Fx::osd, WIPEDISK, &[("disk", "/dev/sdb")]),
    ),
    // A path that is no block device: assert_blockdev's text, without the path.
    ("PUT /nodes/{node}/disks/wipedisk", "not_valid_block_device", call(WIPEDISK, &[("disk", "/dev/nope")])),
    (
        "POST /cluster/config",
        "cluster_config_already_exists",
        after(Fx::cluster, "/cluster/config", &[("clustername", "other")]),
    ),
    ("GET /cluster/config/join", "unknown", after(Fx::cluster, "/cluster/config/join", &[("node", "pve2")])),
    (
        "DELETE /cluster/config/nodes/{node}",
        "cannot_delete_myself_cluster",
        after(Fx::cluster, "/cluster/config/nodes/pve1", &[]),
    ),
    (
        "DELETE /cluster/config/nodes/{node}",
        "ip_not_known_host_cluster",
        after(Fx::cluster, "/cluster/config/nodes/pve3", &[]),
    ),
    ("POST /nodes/{node}/ceph/mon/{monid}", "no_active_ip_found_requested", after(Fx::ceph_public_elsewhere, MON, &[])),
    (
        "POST /nodes/{node}/ceph/mon/{monid}",
        "multiple_ips_ceph_public_network",
        after(Fx::ceph_two_addresses, MON, &[]),
    ),
    (
        "POST /nodes/{node}/ceph/mon/{monid}",
        "specified_monitor_ip_not_configured",
        after(Fx::ceph_public, MON, &[("mon-address", "10.9.9.9")]),
    ),
    // Without a public network the monitor takes the node's address, which the first has.
    ("POST /nodes/{node}/ceph/mon/{monid}", "monitor_address_already_use", after(Fx::ceph, MON, &[])),
    // A free address, but the id is taken.
    (
        "POST /nodes/{node}/ceph/mon/{monid}",
        "monitor_already_exists",
        after(Fx::mon_then_second_address, MON, &[("mon-address", SECOND_ADDRESS)]),
    ),
    (
        "POST /nodes/{node}/ceph/mgr/{id}",
        "ceph_manager_directory_already_exists",
        after(Fx::mgr, "/nodes/pve1/ceph/mgr/pve1", &[]),
    ),
    // A block device get_disks does not list: a device-mapper volume of the installer's LVM.
    ("POST /nodes/{node}/ceph/osd", "unable_get_device_info", after(Fx::ceph, OSD, &[("dev", "/dev/dm-0")])),
    (
        "POST /nodes/{node}/ceph/osd",
        "device_already_use",
        after(Fx::osd, "/nodes/pve1/ceph/osd", &[("dev", "/dev/sdb")]),
    ),
    (
        "POST /nodes/{node}/ceph/pool",
        "adding_pve_storage_ceph_pool",
        Scenario { setup: Fx::storage_sp, ..new_pool(&[("name", "sp"), ("add_storages", "1")]) },
    ),
    (
        "POST /nodes/{node}/ceph/pool",
        "erasure_code_profile_does_not",
        new_pool(&[("name", "ec"), ("erasure-coding", "k=2,m=1,profile=nope")]),
    ),
    ("POST /nodes/{node}/ceph/pool", "could_not_set", new_pool(&[("name", "p"), ("crush_rule", "nope")])),
    (
        "PUT /nodes/{node}/ceph/pool/{name}",
        "could_not_set",
        after(Fx::pool_p, "/nodes/pve1/ceph/pool/p", &[("application", "cephfs")]),
    ),
    (
        "DELETE /nodes/{node}/ceph/pool/{name}",
        "storage_disabled",
        after(Fx::pool_sp_disabled, "/nodes/pve1/ceph/pool/sp", &[]),
    ),
    ("POST /cluster/backup", "job_already_exists", Scenario { setup: Fx::job, ..job_create(&[("all", "1")]) }),
    (
        "POST /cluster/backup",
        "param_starttime_starttime_schedule_cannot",
        job_create(&[("starttime", "02:00"), ("all", "1")]),
    ),
    (
        "POST /cluster/backup",
        "param_schedule_neither_starttime_nor",
        call("/cluster/backup", &[("id", "j1"), ("all", "1")]),
    ),
    ("GET /cluster/backup/{id}", "param_id_no_such_job", call("/cluster/backup/nope", &[])),
    ("PUT /cluster/backup/{id}", "no_options_specified", job_update(&[])),
    ("PUT /cluster/backup/{id}", "no_such_vzdump_job", call("/cluster/backup/nope", &[("comment", "x")])),
    (
        "PUT /cluster/backup/{id}",
        "param_starttime_starttime_schedule_cannot",
        job_update(&[("schedule", "daily"), ("starttime", "02:00")]),
    ),
    (
        "GET /nodes/{node}/tasks/{upid}/status",
        "param_upid_unable_parse_worker",
        call("/nodes/pve1/tasks/UPID:pve1:junk/status", &[]),
    ),
    (
        "GET /nodes/{node}/tasks/{upid}/status",
        "param_upid_no_such_task",
        call(concat!("/nodes/pve1/tasks/", unknown_upid!(), "/status"), &[]),
    ),
    (
        "GET /nodes/{node}/tasks/{upid}/log",
        "param_upid_unable_parse_worker",
        call("/nodes/pve1/tasks/UPID:pve1:junk/log", &[]),
    ),
    (
        "GET /nodes/{node}/tasks/{upid}/log",
        "download_cannot_used_together_start",
        call(concat!("/nodes/pve1/tasks/", unknown_upid!(), "/log"), &[("download", "1"), ("start", "0")]),
    ),
    (
        "GET /nodes/{node}/tasks/{upid}/log",
        "could_not_open_file",
        call(concat!("/nodes/pve1/tasks/", unknown_upid!(), "/log"), &[("download", "1")]),
    ),
    (
        "POST /access/ticket",
        "authentication_failure",
        call("/access/ticket", &[("username", "root@pam"), ("password", "wrong")]),
    ),
    (
        "POST /nodes/{node}/certificates/acme/certificate",
        "param_force_custom_certificate_exists",
        after(Fx::acme_ordered, ACME_ORDER, &[]),
    ),
    (
        "POST /nodes/{node}/certificates/acme/certificate",
        "plugin_domain_not_found",
        after(Fx::acme_plugin_gone, ACME_ORDER, &[]),
    ),
];

/// The stringified parameter exception of `key: error` (raised inside cfs_lock_file).
macro_rules! in_lock {
    ($line:literal) => {
        Source(500, concat!("400 Parameter verification failed.\n", $line), &[])
    };
}

/// A parameter exception raised outside any lock: 400 with `key: error` in `errors`.
macro_rules! param_error {
    ($key:literal, $error:literal) => {
        Source(400, "Parameter verification failed.", &[($key, Some($error))])
    };
}

/// Catalogue entries where the lab answers as Proxmox's source does (FIDELITY.md
/// `FAKEPVE-DIFF-*` rows cite it): (method, entry, scenario, the source's answer); see also
/// [`SHARED`].
const DIFFERS: &[(&str, &str, Scenario, Source)] = &[
    (
        "GET /cluster/config/join",
        "not_cluster_no_join_info",
        call("/cluster/config/join", &[]),
        Source(424, "node is not in a cluster, no join info available!", &[]),
    ),
    (
        "DELETE /cluster/backup/{id}",
        "param_id_no_such_job",
        call("/cluster/backup/nope", &[]),
        in_lock!("id: No such job 'nope'"),
    ),
    ("POST /cluster/backup", "param_vmid_property_missing", job_create(&[]), in_lock!("vmid: property is missing")),
    (
        "PUT /cluster/backup/{id}",
        "param_vmid_property_missing",
        job_update(&[("delete", "vmid")]),
        in_lock!("vmid: property is missing"),
    ),
    (
        "PUT /cluster/backup/{id}",
        "param_delete_unknown_option",
        job_update(&[("delete", "schedule")]),
        in_lock!("delete: unknown option 'schedule'"),
    ),
    (
        "PUT /cluster/backup/{id}",
        "param_schedule_neither_starttime_nor",
        job_update(&[("comment", "no schedule given")]),
        Source(200, "", &[]),
    ),
    (
        "POST /nodes/{node}/ceph/pool",
        "pool_name_contains_characters_which",
        new_pool(&[("name", "b"), ("add_storages", "1")]),
        Source(500, "storage ID 'b' contains illegal characters", &[]),
    ),
    // `mon-address` has the format ip-list: an item that is no IP is refused by the schema
    // (pve-common says `invalid format - value does not look like a valid IP address`; the
    // lab's texts for named formats are its own: only the key).
    (
        "POST /nodes/{node}/ceph/mon/{monid}",
        "invalid_ip_string",
        call(MON, &[("mon-address", "nope")]),
        Source(400, "Parameter verification failed.", &[("mon-address", None)]),
    ),
    (
        "GET /nodes/{node}/disks/list",
        "internal_error",
        call("/nodes/pve1/disks/list", &[("type", "all")]),
        param_error!("type", "value 'all' does not have a value in the enumeration 'unused, journal_disks'"),
    ),
];

/// Two methods with entries of the same names, and how each makes a call of a form.
type Pair = [(&'static str, fn(Form) -> Scenario); 2];

/// A differing entry of both methods of a [`Pair`]: (entry, form, the source's answer).
type Shared = (&'static str, Form, Source);

/// Differing entries two methods share, each made with one form.
const SHARED: &[(Pair, &[Shared])] = &[
    (
        [("POST /nodes/{node}/network", new_iface), ("PUT /nodes/{node}/network/{iface}", vmbr0)],
        // The schema refuses these before the handler's check: a netmask without its address
        // (`requires`), an IPv6 prefix beyond 128, an IPv6 address that is none.
        &[
            (
                "param_netmask_netmask_conflicts_cidr",
                &[("cidr", "10.9.0.1/24"), ("netmask", "255.255.255.0")],
                param_error!("address", "missing property required by 'netmask'"),
            ),
            (
                "param_netmask_netmask_conflicts_cidr_2",
                &[("cidr6", "fd00::1/64"), ("netmask6", "64")],
                param_error!("address6", "missing property required by 'netmask6'"),
            ),
            (
                "param_netmask_not_valid_subnet",
                &[("address6", "fd00::1"), ("netmask6", "129")],
                param_error!("netmask6", "value must have a maximum value of 128"),
            ),
            // pve-common says `invalid format - value does not look like a valid IPv6 address`;
            // the lab's texts for named formats are its own (they name the value): only the key.
            (
                "param_address_not_valid_host",
                &[("address6", "fd00::zz"), ("netmask6", "64")],
                Source(400, "Parameter verification failed.", &[("address6", None)]),
            ),
        ],
    ),
    (
        // A new job j1, and an update of j1 (a job of guest 100).
        [("POST /cluster/backup", job_create), ("PUT /cluster/backup/{id}", job_update)],
        &[
            (
                "param_all_option_conflicts_option",
                &[("vmid", "101"), ("all", "1")],
                in_lock!("all: option conflicts with option 'vmid'"),
            ),
            (
                "param_exclude_option_conflicts_option",
                &[("vmid", "101"), ("exclude", "102")],
                in_lock!("exclude: option conflicts with option 'vmid'"),
            ),
            // No resource pool exists (none does on a fresh install): checked before the lock.
            (
                "param_pool_option_conflicts_option",
                &[("vmid", "101"), ("pool", "pp")],
                Source(403, "Permission check failed (pool 'pp' does not exist)", &[]),
            ),
            (
                "param_notes_template",
                &[("all", "1"), ("storage", "local"), ("notes-template", "a\\tb {{node}} {{bar}}")],
                in_lock!("notes-template: found unknown: escape sequence '\\t' at char 1, variable 'bar' at char 18\n"),
            ),
        ],
    ),
];

/// Every differing entry: [`DIFFERS`], and [`SHARED`] for each of its methods.
fn differing() -> Vec<(&'static str, &'static str, Scenario, &'static Source)> {
    let plain = DIFFERS.iter().map(|(m, n, s, source)| (*m, *n, *s, source));
    let shared = SHARED.iter().flat_map(|(methods, entries)| {
        entries.iter().flat_map(move |(n, form, source)| methods.map(|(m, make)| (m, *n, make(form), source)))
    });
    plain.chain(shared).collect()
}

/// Runs each case on a fresh lab (net `net`) and collects what does not hold.
fn run_scenarios<T>(net: u8, cases: &[T], run: impl Fn(&Fx, &T) -> Result<(), String>) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let fx = Fx { lab: TestLab::up(net, &[]) };
        if let Err(e) = run(&fx, case) {
            failures.push(e);
        }
    }
    failures
}

// --- the tests -----------------------------------------------------------------------------

/// Every catalogue entry of the provider's methods is in exactly one class; no class is
/// claimed for an entry the catalogue lacks. Prints the counts per method.
#[test]
fn catalogue_entries_are_classified() {
    let cat = catalogue();
    let mut problems = Vec::new();
    let claims = all_claims(&cat, &mut problems);
    let mut by_entry: BTreeMap<(&str, &str), Vec<&Claim>> = BTreeMap::new();
    for c in &claims {
        by_entry.entry((c.method.as_str(), c.name.as_str())).or_default().push(c);
    }
    let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for (method, entries) in &cat.methods {
        let row = counts.entry(method).or_default();
        for e in entries {
            match by_entry.get(&(*method, e.name.as_str())).map(Vec::as_slice) {
                None | Some([]) => problems.push(format!(
                    "{method} {} ({} {:?}, {}): unclassified — reproduce it, or add it to a FAKEPVE-* row",
                    e.name, e.status, e.message, e.source
                )),
                Some([one]) => row[one.class as usize] += 1,
                Some(many) => problems.push(format!(
                    "{method} {}: in more than one class ({})",
                    e.name,
                    many.iter().map(|c| c.by.as_str()).collect::<Vec<_>>().join(", ")
                )),
            }
        }
    }
    let total = counts.values().fold([0; 3], |a, r| [a[0] + r[0], a[1] + r[1], a[2] + r[2]]);
    eprintln!(
        "fakepve catalogue {} (meta date {}): reproduced / differs / not modelled per method",
        catalogue_path().display(),
        cat.meta["date"].as_str().unwrap_or("?")
    );
    for m in SCOPE {
        let [r, d, n] = counts.get(m).copied().unwrap_or_default();
        eprintln!("  {r:3} {d:3} {n:3}  {m}");
    }
    eprintln!("  {:3} {:3} {:3}  total ({} entries)", total[0], total[1], total[2], total.iter().sum::<usize>());
    assert!(problems.is_empty(), "fakepve catalogue vs the lab:\n{}", problems.join("\n"));
}

/// The reproduced entries: each scenario's answer matches the catalogue entry (status or task
/// exit status, message with placeholders as wildcards, parameter errors).
#[test]
fn reproduced_entries_answer_like_the_catalogue() {
    let cat = catalogue();
    let failures = run_scenarios(110, REPRODUCED, |fx, (method, name, scenario)| {
        let e = cat.entry(method, name).ok_or_else(|| format!("{method} {name}: not in the catalogue"))?;
        let a = fx.run(method, scenario);
        agrees(e, &a).map_err(|why| format!("{method} {name}: {why}"))
    });
    assert!(
        failures.is_empty(),
        "reproduced entries the lab does not answer like the catalogue:\n{}",
        failures.join("\n")
    );
}

/// The entries where the catalogue and Proxmox's source disagree: the lab gives the source's
/// answer, and that answer really is not the catalogue's.
#[test]
fn differing_entries_answer_like_the_source() {
    let cat = catalogue();
    let failures = run_scenarios(111, &differing(), |fx, (method, name, scenario, source)| {
        let e = cat.entry(method, name).ok_or_else(|| format!("{method} {name}: not in the catalogue"))?;
        let a = fx.run(method, scenario);
        source_agrees(source, &a).map_err(|why| format!("{method} {name}: {why}"))?;
        match agrees(e, &a) {
            Ok(()) => {
                Err(format!("{method} {name}: the lab's answer {a:?} is the catalogue's: reproduced, not a difference"))
            }
            Err(_) => Ok(()),
        }
    });
    assert!(failures.is_empty(), "differing entries the lab does not answer like the source:\n{}", failures.join("\n"));
}
