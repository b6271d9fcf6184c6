//! A rollout end to end on eight stores: the hub (`edge-fleet hub step`) publishes per-store
//! manifests as waves open; each store's agent (`edge-fleet agent once`, the real `terraform`
//! on a `terraform_data` root) pulls, applies and signs a report; the hub reads the reports.
//! A good release goes canary → rest; a bad one fails on the canary, is halted and reverted
//! there, and the other six stores never see it (their Terraform state, read back by
//! `terraform output`, and their channel manifests are untouched). A report forged for a store
//! is ignored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fleet_bin, s, serve, terraform};
use edge_images::keys::SecretKey;
use serde_json::json;

struct Fleet {
    dir: tempfile::TempDir,
    url: String,
    stores: Vec<(String, SecretKey)>,
    hub_keys: Vec<PathBuf>,
    trusted: Vec<String>,
}

impl Fleet {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("channels")).expect("dirs");
        std::fs::create_dir_all(dir.path().join("reports")).expect("dirs");
        let (url, _hits) = serve(tree);
        let stores: Vec<(String, SecretKey)> = (1..=n)
            .map(|i| {
                let name = format!("store-{i:03}");
                let k = SecretKey::generate(&name).expect("key");
                std::fs::write(dir.path().join(format!("{name}.sec")), k.to_nix_string()).expect("write");
                (name, k)
            })
            .collect();
        let registry: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, (n, k))| json!({"name": n, "region": format!("r{}", i % 2), "key": k.public().to_string()}))
            .collect();
        std::fs::write(dir.path().join("stores.json"), serde_json::to_vec(&registry).expect("json")).expect("write");
        let (hub_keys, trusted) = common::hub_keys(dir.path());
        Self { dir, url, stores, hub_keys, trusted }
    }

    fn release(&self, value: &str, ok: bool) -> String {
        common::release(self.dir.path(), &self.dir.path().join("tree/bundles"), value, ok)
    }

    fn spec(&self, release: &str, previous: &str) -> PathBuf {
        let p = self.dir.path().join(format!("spec-{}.json", &release[..8]));
        let spec = json!({
            "release": release, "previous": previous, "on_failure": "halt_and_revert",
            "partitions": [
                {"name": "canary", "stores": ["store-001", "store-002"], "soak_s": 0},
                {"name": "rest", "soak_s": 0}
            ]
        });
        std::fs::write(&p, serde_json::to_vec(&spec).expect("json")).expect("write");
        p
    }

    fn hub_step(&self, spec: &Path) -> String {
        let d = self.dir.path();
        let mut args: Vec<String> = vec!["hub".into(), "step".into(), "--spec".into(), s(spec).into()];
        for (flag, path) in
            [("--stores", "stores.json"), ("--tree", "tree"), ("--state", "hub-state.json"), ("--reports", "reports")]
        {
            args.extend([flag.into(), s(&d.join(path)).into()]);
        }
        for k in &self.hub_keys {
            args.extend(["--key".into(), s(k).into()]);
        }
        let (code, out) = fleet_bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{out}");
        out
    }

    /// Every store's agent once; its newest report delivered to the hub (the upload).
    fn agents(&self) {
        for (name, _) in &self.stores {
            let d = self.dir.path();
            if !d.join(format!("tree/channels/{name}.json")).exists() {
                continue; // nothing published for this store yet: the agent would just 404
            }
            let state = d.join(format!("agents/{name}"));
            let mut args: Vec<String> =
                ["agent", "once", "--hub", &self.url, "--store", name, "--channel", name, "--threshold", "2"]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
            for t in &self.trusted {
                args.extend(["--trusted".into(), t.clone()]);
            }
            args.extend(["--state-dir".into(), s(&state).into(), "--terraform".into(), s(&terraform()).into()]);
            args.extend(["--key".into(), s(&d.join(format!("{name}.sec"))).into()]);
            // The hub here is a step on files: the test carries each report to it.
            args.push("--no-post".into());
            let (code, out) = fleet_bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(code == 0 || code == 1, "{name}: {out}");
            let newest = std::fs::read_dir(state.join("reports"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.path().file_stem()?.to_str()?.parse::<u64>().ok()?, e.path())))
                .max();
            if let Some((_, p)) = newest {
                std::fs::copy(p, d.join(format!("reports/{name}.json"))).expect("deliver report");
            }
        }
    }

    /// Hub step, agents, until the hub says every partition passed or one stopped.
    fn roll(&self, spec: &Path) -> String {
        for _ in 0..8 {
            let out = self.hub_step(spec);
            if out.lines().all(|l| l.contains("Passed") || l.starts_with("published") || l.starts_with("ignored"))
                || out.contains("Reverted")
                || out.contains("Halted")
            {
                self.agents(); // stores pick up a revert published in this step
                return out;
            }
            self.agents();
        }
        panic!("the rollout did not finish: {}", self.hub_step(spec));
    }

    /// What the store's Terraform state says.
    fn applied(&self, store: &str) -> String {
        let o = Command::new(terraform())
            .args(["output", "-raw", "release"])
            .current_dir(self.dir.path().join(format!("agents/{store}/work")))
            .output()
            .expect("terraform output");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn channel_version(&self, store: &str) -> u64 {
        let p = self.dir.path().join(format!("tree/channels/{store}.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("json");
        v["channel"]["version"].as_u64().expect("version")
    }
}

#[test]
fn a_good_release_rolls_out_and_a_bad_one_is_reverted_at_the_canary() {
    let f = Fleet::new(8);
    let names: Vec<String> = f.stores.iter().map(|(n, _)| n.clone()).collect();
    let r1 = f.release("v1", true);
    let r2 = f.release("v2", true);
    let r3 = f.release("v3", false);

    // v1 everywhere, then v2 through canary → rest.
    let out = f.roll(&f.spec(&r1, &r1));
    assert!(out.contains("rest") && !out.contains("Reverted"), "{out}");
    assert!(names.iter().all(|n| f.applied(n) == "v1"));
    let out = f.roll(&f.spec(&r2, &r1));
    assert!(out.contains("rest       Passed"), "{out}");
    assert!(names.iter().all(|n| f.applied(n) == "v2"), "{:?}", names.iter().map(|n| f.applied(n)).collect::<Vec<_>>());
    let before: Vec<u64> = names.iter().map(|n| f.channel_version(n)).collect();

    // A forged report for a canary store (signed by another key) is ignored, not counted.
    let forged = std::fs::read(f.dir.path().join("reports/store-003.json")).expect("report");
    std::fs::write(f.dir.path().join("reports/store-001.json"), &forged).expect("write");
    let out = f.hub_step(&f.spec(&r3, &r2));
    assert!(out.contains("ignored: store-001"), "{out}");

    // v3 fails on the canary: halted and reverted there; the rest never see it.
    let out = f.roll(&f.spec(&r3, &r2));
    assert!(out.contains("canary     Reverted") && (out.contains("1 failed") || out.contains("2 failed")), "{out}");
    assert_eq!(f.applied("store-001"), "v2");
    assert_eq!(f.applied("store-002"), "v2");
    for (i, n) in names.iter().enumerate().skip(2) {
        assert_eq!(f.applied(n), "v2", "{n}");
        assert_eq!(f.channel_version(n), before[i], "{n}'s channel never moved");
    }
    // The canary's channels went up twice (v3, then the revert to v2) and name v2 again; its
    // agents applied v2 again (their working directories held v3) and said so.
    for n in ["store-001", "store-002"] {
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.dir.path().join(format!("reports/{n}.json"))).expect("report"))
                .expect("json");
        assert_eq!(
            (rep["report"]["release"].as_str(), rep["report"]["outcome"].as_str()),
            (Some(r2.as_str()), Some("succeeded")),
            "{n}"
        );
        let main_tf = std::fs::read_to_string(f.dir.path().join(format!("agents/{n}/work/main.tf"))).expect("main.tf");
        assert!(main_tf.contains("\"v2\""), "{n}'s working directory holds v2 again");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.dir.path().join(format!("tree/channels/{n}.json"))).expect("read"))
                .expect("json");
        assert_eq!(v["channel"]["release"], r2.as_str());
        assert_eq!(v["channel"]["version"].as_u64(), Some(before[0] + 2), "{n}");
    }
}
