//! The store agent against a hub tree served over HTTP, applying with the real `terraform`
//! (a root of `terraform_data`, so no provider download): a release applied and reported, a
//! re-poll that downloads nothing, a tampered bundle and a replayed manifest refused with the
//! store's Terraform state untouched (read back with `terraform output`), a release whose apply
//! fails reported as failed with the last good state kept, an expired manifest as an alarm.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{serve, terraform, ServedLog};

use edge_fleet::agent::SignedReport;
use edge_fleet::channel::Channel;
use edge_fleet::release::Release;
use edge_images::keys::{PublicKey, SecretKey};
use time::OffsetDateTime;

struct Setup {
    dir: tempfile::TempDir,
    hub: PathBuf,
    url: String,
    hits: ServedLog,
    keys: Vec<SecretKey>,
    store_key: SecretKey,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let hub = dir.path().join("hub");
        std::fs::create_dir_all(hub.join("channels")).expect("dirs");
        let (url, hits) = serve(hub.clone());
        let keys = ["hub-1", "hub-2"].iter().map(|n| SecretKey::generate(n).expect("key")).collect();
        let store_key = SecretKey::generate("store-007").expect("key");
        std::fs::write(dir.path().join("store.sec"), store_key.to_nix_string()).expect("write");
        Self { dir, hub, url, hits, keys, store_key }
    }

    /// A release whose root records `value` in a terraform_data (and fails when `fail`).
    fn release(&self, value: &str, fail: bool) -> String {
        let cfg = self.dir.path().join(format!("cfg-{value}"));
        std::fs::create_dir_all(&cfg).expect("dir");
        let check = if fail { "false" } else { "true" };
        std::fs::write(
            cfg.join("main.tf"),
            format!(
                "variable \"ok\" {{ default = {check} }}\nresource \"terraform_data\" \"release\" {{\n  input = \"{value}\"\n  lifecycle {{\n    precondition {{\n      condition     = var.ok\n      error_message = \"release {value} refuses this store\"\n    }}\n  }}\n}}\noutput \"release\" {{ value = terraform_data.release.output }}\n"
            ),
        )
        .expect("write");
        std::fs::write(cfg.join(".terraform.lock.hcl"), "# built-in providers only\n").expect("write");
        let r = Release::from_dir(value, &cfg, &"a".repeat(64), &"b".repeat(64)).expect("release");
        r.write_bundle(&cfg, &self.hub.join("bundles")).expect("bundle")
    }

    fn publish(&self, version: u64, release: &str, expires: OffsetDateTime) {
        let m = Channel::new("stable", version, release, expires)
            .expect("channel")
            .sign(&self.keys.iter().collect::<Vec<_>>());
        std::fs::write(self.hub.join("channels/stable.json"), m.to_json()).expect("write");
    }

    /// `edge-fleet agent once`: (exit code, stdout + stderr).
    fn cycle(&self) -> (i32, String) {
        self.cycle_with(&[])
    }

    fn cycle_with(&self, extra: &[&str]) -> (i32, String) {
        let state = self.dir.path().join("agent");
        let mut c = Command::new(env!("CARGO_BIN_EXE_edge-fleet"));
        c.args([
            "agent",
            "once",
            "--hub",
            &self.url,
            "--store",
            "store-007",
            "--channel",
            "stable",
            "--threshold",
            "2",
        ]);
        for k in &self.keys {
            c.args(["--trusted", &k.public().to_string()]);
        }
        c.arg("--state-dir").arg(&state).arg("--terraform").arg(terraform());
        c.arg("--key").arg(self.dir.path().join("store.sec"));
        // The hub here is a static tree: reports stay in the agent's outbox.
        c.arg("--no-post").args(extra);
        let o = c.output().expect("edge-fleet");
        (
            o.status.code().unwrap_or(-1),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        )
    }

    /// What the store's Terraform state says (read by terraform itself).
    fn applied(&self) -> String {
        let o = Command::new(terraform())
            .args(["output", "-raw", "release"])
            .current_dir(self.dir.path().join("agent/work"))
            .output()
            .expect("terraform output");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn bundle_hits(&self) -> usize {
        self.hits.lock().expect("hits").iter().filter(|(p, _)| p.starts_with("/bundles/")).map(|(_, s)| s.hits).sum()
    }

    fn report(&self, version: u64) -> SignedReport {
        let p = self.dir.path().join(format!("agent/reports/{version}.json"));
        serde_json::from_slice(&std::fs::read(&p).expect("report")).expect("json")
    }
}

#[test]
fn the_agent_applies_verified_releases_and_refuses_everything_else() {
    let s = Setup::new();
    let week = OffsetDateTime::now_utc() + time::Duration::days(7);
    let r1 = s.release("v1", false);
    s.publish(1, &r1, week);
    let (code, out) = s.cycle();
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.applied(), "v1");
    let store_pub: PublicKey = s.store_key.public();
    let rep = s.report(1).verify(&store_pub).expect("report signed by the store");
    assert_eq!((rep.store.as_str(), rep.version, rep.release.as_str()), ("store-007", 1, r1.as_str()));
    let mut forged = s.report(1);
    forged.report["outcome"] = "failed".into();
    assert!(forged.verify(&store_pub).is_none(), "an edited report does not verify");

    // Polling again: up to date, nothing downloaded.
    let before = s.bundle_hits();
    let (code, out) = s.cycle();
    assert!(code == 0 && out.contains("up to date"), "{out}");
    assert_eq!(s.bundle_hits(), before);

    // v2 with a file changed on the hub: refused, state untouched, nothing recorded.
    let r2 = s.release("v2", false);
    let f = s.hub.join("bundles").join(&r2).join("files/main.tf");
    let good = std::fs::read(&f).expect("read");
    std::fs::write(&f, String::from_utf8_lossy(&good).replace("v2", "v9").as_bytes()).expect("write");
    s.publish(2, &r2, week);
    let (code, out) = s.cycle();
    assert!(code == 1 && out.contains("bundle refused") && out.contains("main.tf"), "{out}");
    assert_eq!(s.applied(), "v1");
    // Restored: applied.
    std::fs::write(&f, &good).expect("write");
    let (code, out) = s.cycle();
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.applied(), "v2");

    // The old manifest replayed: refused.
    s.publish(1, &r1, week);
    let (code, out) = s.cycle();
    assert!(code == 1 && out.contains("older than version 2"), "{out}");
    assert_eq!(s.applied(), "v2");

    // A release that fails to apply: reported failed (signed), last good state kept.
    let r3 = s.release("v3", true);
    s.publish(3, &r3, week);
    let (code, out) = s.cycle();
    assert!(code == 1 && out.contains("refuses this store"), "{out}");
    assert_eq!(s.applied(), "v2");
    let rep = s.report(3).verify(&store_pub).expect("signed");
    assert_eq!(rep.outcome, edge_fleet::rollout::Outcome::Failed);

    // Roll-back: a newer manifest naming v1, from the cache (no download).
    let before = s.bundle_hits();
    s.publish(4, &r1, week);
    let (code, out) = s.cycle();
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.applied(), "v1");
    assert_eq!(s.bundle_hits(), before, "v1 came from the store's cache");

    // Expired: an alarm (exit 3), nothing changes.
    s.publish(5, &r2, OffsetDateTime::now_utc() - time::Duration::hours(1));
    let (code, out) = s.cycle();
    assert!(code == 3 && out.contains("ALARM"), "{out}");
    assert_eq!(s.applied(), "v1");
}

/// A calendar event firing once a day at `t`'s minute (UTC), e.g. `*-*-* 14:07`.
fn daily_at(t: OffsetDateTime) -> String {
    format!("*-*-* {:02}:{:02}", t.hour(), t.minute())
}

#[test]
fn the_agent_applies_only_inside_its_maintenance_window() {
    let s = Setup::new();
    let week = OffsetDateTime::now_utc() + time::Duration::days(7);
    let r1 = s.release("v1", false);
    s.publish(1, &r1, week);
    let now = OffsetDateTime::now_utc();

    // A window that opened 2 hours ago for 30 minutes: closed now. The manifest and bundle are
    // verified (and cached), nothing is applied, the hub hears "pending" with when it opens.
    let closed = daily_at(now - time::Duration::hours(2));
    let (code, out) = s.cycle_with(&["--window", &closed, "--window-minutes", "30"]);
    assert!(code == 0 && out.contains("waiting for the maintenance window"), "{out}");
    assert!(!s.dir.path().join("agent/work/terraform.tfstate").exists(), "nothing applied outside the window");
    let rep = s.report(1).verify(&s.store_key.public()).expect("signed");
    assert_eq!(rep.outcome, edge_fleet::rollout::Outcome::Pending);
    assert!(rep.detail.iter().any(|l| l.contains("outside the maintenance window")), "{:?}", rep.detail);
    let bundle_hits = s.bundle_hits();
    assert!(bundle_hits > 0, "the bundle was fetched ahead of the window");

    // A window that opened a minute ago for 10 minutes: open. Applied, from the cache.
    let open = daily_at(now - time::Duration::minutes(1));
    let (code, out) = s.cycle_with(&["--window", &open, "--window-minutes", "10"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.applied(), "v1");
    assert_eq!(s.bundle_hits(), bundle_hits, "applied from the cache");
    let rep = s.report(1).verify(&s.store_key.public()).expect("signed");
    assert_eq!(rep.outcome, edge_fleet::rollout::Outcome::Succeeded);

    // An invalid window is refused at start, naming the setting.
    let (code, out) = s.cycle_with(&["--window", "sat 25:00", "--window-minutes", "30"]);
    assert!(code != 0 && out.contains("--window") && out.contains("25"), "{out}");
}
