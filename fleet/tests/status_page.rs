//! The hub's rollout status page (`GET /status`) in a real browser. PostgreSQL, the hub
//! (`edge-fleet hub serve`), four stores' agents (`edge-fleet agent once`, the real `terraform`
//! on a `terraform_data` root, reports posted to the hub): v1 everywhere, then a bad release
//! that fails on the canary and is halted and reverted there. Debian's `chromium`, headless,
//! loads the page; the DOM it rendered is checked against sources other than the page's code:
//! the halted rollout and its reason are the verdict the hub recorded at the halting step (as
//! `GET /v1/status` lists it), the partitions' phases and verdicts and the decisions are those
//! of `GET /v1/status`, the failed stores are exactly those whose own signed reports say so,
//! with Terraform's error in their words, and every store is back on v1. The stores' regions and
//! Terraform's error carry markup: the browser must show it as text and build no element of it.
//! A screenshot of the page (1280×1600) is kept as a test artifact:
//! `target/test-artifacts/status-page.png` (under `$CARGO_TARGET_DIR` when set).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{failing_release, fleet_bin, release, s, terraform, HubFleet, Postgres};
use edge_acceptance::{poll, processes_mentioning};
use edge_fleet::status_page::PAGE_HISTORY;
use scraper::{ElementRef, Html, Selector};
use serde_json::{json, Value};

const STORES: [&str; 4] = ["store-001", "store-002", "store-003", "store-004"];

/// The bad release's precondition error, as Terraform prints it and the failing stores sign it:
/// markup a page that did not escape would turn into elements (and a script).
const BAD_WORDS: &str = "v2-bad cannot apply: <b id=inj>bold</b> & <script>x()</script>";

/// The region store `i` is registered in: free text with markup and an entity in it.
fn region(i: usize) -> String {
    format!("region-{} <i id=inj-region>&amp;</i>", i % 2 + 1)
}

/// `edge-fleet hub serve` on a free port; killed when dropped.
struct Hub {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Hub {
    fn start(db: &str, bundles: &Path, keys: &[PathBuf], log: PathBuf) -> Hub {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-fleet"));
        cmd.args(["hub", "serve", "--database", db, "--listen", "127.0.0.1:0", "--bundles", s(bundles)]);
        for k in keys {
            cmd.args(["--key", s(k)]);
        }
        // Stepped every second (and on each report): the test waits on the hub, not a clock.
        cmd.args(["--step-every-s", "1"]);
        let err = std::fs::File::create(&log).expect("hub log");
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err).spawn().expect("edge-fleet hub serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut hub = Hub { child, url: String::new(), log };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the hub's stdout");
        hub.url = line
            .trim()
            .strip_prefix("hub listening on ")
            .unwrap_or_else(|| panic!("the hub did not come up: {line:?}\n{}", hub.log()))
            .to_string();
        hub
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /v1/status`: each partition's phase as the hub's JSON API names it.
    fn phases(&self) -> Vec<String> {
        v1_status(self)["status"].as_array().into_iter().flatten().map(phase_of).collect()
    }

    fn has_channel(&self, store: &str) -> bool {
        reqwest::blocking::get(format!("{}/channels/{store}.json", self.url)).is_ok_and(|r| r.status().is_success())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubFleet {
    /// One cycle of every store's agent that has a channel: pull, apply, report to the hub.
    fn agents(&self, hub: &Hub) {
        for store in STORES.iter().filter(|st| hub.has_channel(st)) {
            let d = self.work.path();
            let mut args: Vec<String> = ["agent", "once", "--hub", &hub.url, "--store", store, "--threshold", "2"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            for t in &self.trusted {
                args.extend(["--trusted".into(), t.clone()]);
            }
            args.extend(["--state-dir".into(), s(&d.join(format!("agents/{store}"))).into()]);
            args.extend(["--terraform".into(), s(&terraform()).into()]);
            args.extend(["--key".into(), s(&d.join(format!("{store}.sec"))).into()]);
            let (code, out) = fleet_bin(&args.iter().map(String::as_str).collect::<Vec<_>>());
            // 1: the apply failed (the bad release) and the report says so.
            assert!(code == 0 || code == 1, "{store}: {out}\n{}", hub.log());
        }
    }

    /// Agents and hub steps until `done` holds for the hub's phases.
    fn roll(&self, hub: &Hub, what: &str, done: impl Fn(&[String]) -> bool) {
        poll(what, Duration::from_secs(300), || {
            self.agents(hub);
            done(&hub.phases()).then_some(())
        });
    }

    /// A store's own signed reports (as its agent kept them), oldest manifest version first.
    fn reports(&self, store: &str) -> Vec<Value> {
        let mut rs: Vec<(u64, Value)> = std::fs::read_dir(self.work.path().join(format!("agents/{store}/reports")))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v: u64 = e.path().file_stem()?.to_str()?.parse().ok()?;
                Some((v, serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok()?["report"].clone()))
            })
            .collect();
        rs.sort_by_key(|(v, _)| *v);
        rs.into_iter().map(|(_, r)| r).collect()
    }
}

/// Debian's chromium, headless, with its own profile and `HOME` in a tempdir (it writes to
/// both). Whatever of it is still alive when this is dropped — its processes all name the
/// profile — is killed by pid, so a failed assertion leaves no browser behind either.
struct Chromium {
    profile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chromium {
    fn new() -> Chromium {
        // Missing chromium is a failure, never a skip: the page's evidence is what it rendered.
        let found =
            std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()));
        assert!(found, "chromium is not on PATH: scripts/install-deps.sh installs Debian's chromium");
        let dir = tempfile::tempdir().expect("tmp");
        // Canonical, so that the processes' arguments name it as `processes_mentioning` looks.
        let profile = dir.path().canonicalize().expect("profile dir");
        Chromium { profile, _dir: dir }
    }

    /// Loads `url` with `extra` flags; chromium's stdout. `timeout` bounds a hung browser.
    fn run(&self, url: &str, extra: &[&str]) -> String {
        let out = Command::new("timeout")
            .args([
                "--kill-after=5",
                "120",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
            ])
            .args(["--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", self.profile.join("profile").display()))
            .args(extra)
            .arg(url)
            .env("HOME", &self.profile)
            .env("XDG_CONFIG_HOME", self.profile.join(".config"))
            .env("XDG_CACHE_HOME", self.profile.join(".cache"))
            .stdin(Stdio::null())
            .output()
            .expect("run timeout chromium");
        assert!(
            out.status.success(),
            "chromium {extra:?} {url}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        for (pid, _) in processes_mentioning(&self.profile) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// The DOM chromium rendered from `url`, with a fresh profile each time.
fn rendered(url: &str) -> Html {
    Html::parse_document(&Chromium::new().run(url, &["--dump-dom"]))
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).expect("selector")).collect()
}

/// Whitespace folded, as a browser shows text.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text(e: &ElementRef) -> String {
    fold(&e.text().collect::<String>())
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| edge_acceptance::repo_root().join("target"));
    target.join("test-artifacts")
}

/// `GET /v1/status`, the hub's JSON: the source the page is checked against.
fn v1_status(hub: &Hub) -> Value {
    reqwest::blocking::get(format!("{}/v1/status", hub.url))
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("GET /v1/status")
}

/// A phase as `/v1/status` spells it: a string, or an object keyed by the phase's name.
fn phase_of(p: &Value) -> String {
    match &p["phase"] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.keys().next().cloned().unwrap_or_default(),
        other => other.to_string(),
    }
}

#[test]
fn a_halted_rollout_its_reason_and_its_failed_stores_show_in_a_real_browser() {
    let pg = Postgres::start();
    let f = HubFleet::register(&pg.url, &STORES, region);
    let bundles = f.work.path().join("bundles");
    let v1 = release(f.work.path(), &bundles, "v1", true);
    let bad = failing_release(f.work.path(), &bundles, "v2-bad", BAD_WORDS);
    let hub = Hub::start(&pg.url, &bundles, &f.hub_keys, f.work.path().join("hub.log"));

    // No rollout yet: the page says so.
    let dom = rendered(&format!("{}/status", hub.url));
    assert_eq!(select(&dom, "#no-rollout").len(), 1, "{}", dom.html());

    f.start("v1", &json!({"release": v1, "previous": v1, "on_failure": "halt", "partitions": [{"name": "all"}]}));
    f.roll(&hub, "v1 on every store", |p| p == ["passed"]);
    f.start(
        "v2-bad",
        &json!({"release": bad, "previous": v1, "on_failure": "halt_and_revert", "partitions": [
            {"name": "canary", "stores": ["store-001", "store-002"], "max_failed": 0},
            {"name": "rest", "soak_s": 0}]}),
    );
    // Halted and reverted; done when each canary store's newest report is v1 applied again.
    f.roll(&hub, "v2-bad halted and reverted, the canary back on v1", |p| {
        p == ["reverted", "waiting"]
            && ["store-001", "store-002"].iter().all(|st| {
                f.reports(st).last().is_some_and(|r| r["release"] == v1.as_str() && r["outcome"] == "succeeded")
            })
    });
    // What the stores themselves signed: which of them failed on v2-bad, in Terraform's words.
    let failed: Vec<(&str, Vec<String>)> = STORES
        .iter()
        .filter_map(|st| {
            let r = f.reports(st).into_iter().rev().find(|r| r["release"] == bad.as_str())?;
            let detail = r["detail"].as_array()?.iter().filter_map(|l| l.as_str().map(str::to_string)).collect();
            (r["outcome"] == "failed").then_some((*st, detail))
        })
        .collect();
    assert!(!failed.is_empty(), "no store reported a failure on v2-bad");
    assert!(failed.iter().all(|(st, _)| ["store-001", "store-002"].contains(st)), "{failed:?}");
    for (st, detail) in &failed {
        // Terraform wraps long diagnostics: compare the words, not the lines.
        assert!(fold(&detail.join(" ")).contains(BAD_WORDS), "{st}: {detail:?}");
    }

    // The page as the browser rendered it, between two reads of /v1/status that agree (a step
    // the hub records meanwhile would make the page and the JSON differ for a moment).
    let url = format!("{}/status", hub.url);
    let (json, dom) = poll("a page rendered between two equal reads of /v1/status", Duration::from_secs(120), || {
        let before = v1_status(&hub);
        let dom = rendered(&url);
        (v1_status(&hub) == before).then_some((before, dom))
    });
    let page = dom.html();
    assert_eq!(json["release"], bad.as_str(), "{json}");

    // Nothing the stores or the operators wrote became markup: no element was made of it.
    assert!(select(&dom, "script").is_empty(), "the page runs nothing: {page}");
    assert!(select(&dom, "#inj, #inj-region, b, i").is_empty(), "injected markup became elements: {page}");

    let title = select(&dom, "title").first().map(text).unwrap_or_default();
    assert!(title.starts_with("HALTED"), "{title}");
    let header = select(&dom, "#rollout");
    assert_eq!(header.len(), 1, "{page}");
    assert_eq!(header[0].attr("data-release"), Some(bad.as_str()));
    assert_eq!(header[0].attr("data-halted"), Some("true"));

    // The banner: halted and reverted; the reason is the verdict the hub recorded for the canary
    // at the step that halted it (the oldest decision with the canary halted or reverted).
    let banner = select(&dom, "#halt");
    assert_eq!(banner.len(), 1, "no halt banner: {page}");
    assert_eq!(banner[0].attr("data-reverted"), Some("true"));
    assert!(text(&banner[0]).contains("Rollout halted and reverted"), "{}", text(&banner[0]));
    let history = json["history"].as_array().expect("history");
    let halting = history
        .iter()
        .rev()
        .flat_map(|d| d["status"].as_array().into_iter().flatten())
        .find(|p| p["name"] == "canary" && ["halted", "reverted"].contains(&phase_of(p).as_str()))
        .unwrap_or_else(|| panic!("/v1/status records no halting step: {json}"));
    let recorded = fold(halting["verdict"].as_str().expect("verdict"));
    assert!(recorded.contains("failed (budget 0)"), "{recorded}");
    let reasons = select(&dom, "#halt .reason");
    assert_eq!(reasons.iter().map(|r| r.attr("data-partition")).collect::<Vec<_>>(), [Some("canary")]);
    let reason = text(&reasons[0]);
    assert_eq!(reason, format!("Partition canary failed its gate: {recorded}"));

    // The failed stores: exactly those whose own reports say so, each with its signed words
    // shown as text — the markup in Terraform's error included.
    let shown: Vec<(String, String)> = select(&dom, "#halt [data-failed-store]")
        .iter()
        .map(|e| {
            let words = e.select(&Selector::parse("pre").expect("selector")).next().map(|p| text(&p));
            (e.attr("data-failed-store").unwrap_or_default().to_string(), words.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        shown.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        failed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "the failed stores the page names are those whose reports say so"
    );
    for ((st, words), (_, detail)) in shown.iter().zip(&failed) {
        assert_eq!(*words, fold(&detail.join("\n")), "{st}");
        assert!(words.contains(BAD_WORDS), "{st}: {words}");
    }

    // Partitions: the phases and the verdicts of the last step, as /v1/status has them.
    let status = json["status"].as_array().expect("status");
    let rows = select(&dom, "#partitions tr[data-partition]");
    assert_eq!(
        rows.iter().map(|r| r.attr("data-partition").unwrap_or_default()).collect::<Vec<_>>(),
        status.iter().map(|p| p["name"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
    );
    assert!(!rows.is_empty(), "{page}");
    for (row, p) in rows.iter().zip(status) {
        assert_eq!(row.attr("data-phase"), Some(phase_of(p).as_str()), "{p}");
        let verdict = row.select(&Selector::parse("td.verdict").expect("selector")).next().map(|v| text(&v));
        assert_eq!(verdict, Some(fold(p["verdict"].as_str().unwrap_or_default())), "{p}");
    }
    assert_eq!(status.iter().map(phase_of).collect::<Vec<_>>(), ["reverted", "waiting"]);

    // Stores: every registered store, its region as registered (markup and all, as text), its
    // channel back on v1, and failed only where its report says so.
    let rows = select(&dom, "#stores tr[data-store]");
    let mut names: Vec<&str> = rows.iter().filter_map(|r| r.attr("data-store")).collect();
    names.sort();
    assert_eq!(names, STORES, "{page}");
    let td = |row: &ElementRef, css: &str| {
        row.select(&Selector::parse(css).expect("selector"))
            .next()
            .map(|c| (c.attr("data-release").map(str::to_string), text(&c)))
    };
    for row in &rows {
        let st = row.attr("data-store").unwrap_or_default();
        let i = STORES.iter().position(|s| *s == st).expect("a known store");
        assert_eq!(td(row, "td:nth-child(2)").map(|c| c.1), Some(fold(&region(i))), "{st}");
        let channel = td(row, "td[data-release]").and_then(|c| c.0);
        assert_eq!(channel.as_deref(), Some(v1.as_str()), "{st} is on v1: {}", text(row));
        let on_bad = failed.iter().any(|(s, _)| *s == st);
        assert_eq!(row.attr("data-outcome"), Some(if on_bad { "failed" } else { "none" }), "{st}");
    }

    // Decisions: the ones /v1/status lists, newest first, and the revert published v1 to the canary.
    let ats: Vec<String> =
        select(&dom, "#decisions > li").iter().filter_map(|d| d.attr("data-at").map(str::to_string)).collect();
    let want: Vec<String> = history.iter().take(PAGE_HISTORY as usize).map(|d| d["at"].to_string()).collect();
    assert!(!want.is_empty(), "{json}");
    assert_eq!(ats, want, "{page}");
    let revert = format!("publish canary -> {} to store-001 store-002", &v1[..12]);
    assert!(select(&dom, "#decisions li.action").iter().any(|a| text(a) == revert), "{revert}: {page}");

    // The CLI prints the same reason and failed stores.
    let (code, cli) = fleet_bin(&["hub", "status", "--database", &pg.url]);
    assert_eq!(code, 0, "{cli}");
    assert!(cli.contains("HALTED AND REVERTED"), "{cli}");
    assert!(fold(&cli).contains(&format!("partition canary: {recorded}")), "{recorded}\n{cli}");
    for (st, _) in &failed {
        assert!(cli.contains(&format!("failed store {st}: ")), "{cli}");
    }

    // The screenshot, kept for people to look at: a PNG of the window's size, and not a blank
    // one (a blank 1280×1600 page compresses to a few KiB; this page's text does not).
    let dir = artifacts();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let png = dir.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    Chromium::new().run(&url, &[&format!("--screenshot={}", png.display()), "--window-size=1280,1600"]);
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", png.display());
    assert_eq!(&bytes[12..16], b"IHDR", "{}", png.display());
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("IHDR"));
    assert_eq!((dim(16), dim(20)), (1280, 1600), "{}", png.display());
    assert!(bytes.len() > 50_000, "{}: {} bytes, a blank page?", png.display(), bytes.len());
    eprintln!("status page screenshot: {} ({} bytes)", png.display(), bytes.len());
}
