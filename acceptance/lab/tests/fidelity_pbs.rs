//! The lab's PBS against what real PBS answers (the facts and their sources are in
//! FIDELITY.md, section "PBS behaviour"): error shapes, authentication, parameter messages,
//! lookups and digests, sync directions, datastores, tasks, tokens and garbage collection, on
//! every PBS profile. Loopback nets 96 and 97; each test runs its profiles one after another.

mod common;

use std::time::{Duration, Instant};

use common::{enc, TestLab};
use serde_json::{json, Value};

const PROFILES: [&str; 3] = ["3.2", "3.4", "4.0"];
const JSON_CT: &str = "application/json;charset=UTF-8";

/// One answer as it came over the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// A reason phrase other than the standard one (hyper keeps only those).
    odd_reason: Option<String>,
    content_type: Option<String>,
    set_cookie: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
    /// An error exactly as PBS's formatter sends it: the text as the body, the JSON content
    /// type, the standard reason phrase.
    fn is_error(&self, status: u16, text: &str) {
        assert_eq!((self.status, self.text.as_str()), (status, text), "{self:?}");
        assert_eq!(self.content_type.as_deref(), Some(JSON_CT), "{self:?}");
        assert_eq!(self.odd_reason, None, "standard reason phrase: {self:?}");
    }
}

enum Body<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    Json(Value),
    Raw(&'a str, Vec<u8>),
}

fn token(lab: &TestLab) -> String {
    lab.pbs_token(0)
}

fn send(lab: &TestLab, method: &str, path: &str, auth: Option<&str>, body: Body) -> Answer {
    let url = format!("{}/api2/json{path}", lab.store(0)["pbs"]["endpoint"].as_str().unwrap_or_default());
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut rb = lab.client.request(m, url);
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    rb = match body {
        Body::None => rb,
        Body::Form(f) => rb.form(f),
        Body::Json(v) => rb.json(&v),
        Body::Raw(ct, bytes) => rb.header("Content-Type", ct).body(bytes),
    };
    let r = rb.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let header = |h: &str| r.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    Answer {
        status: r.status().as_u16(),
        odd_reason: r
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into()),
        content_type: header("content-type"),
        set_cookie: header("set-cookie"),
        text: r.text().unwrap_or_default(),
    }
}

/// With the store's token.
fn call(lab: &TestLab, method: &str, path: &str, body: Body) -> Answer {
    send(lab, method, path, Some(&token(lab)), body)
}

fn ok(lab: &TestLab, method: &str, path: &str, body: Body) -> Value {
    let a = call(lab, method, path, body);
    assert_eq!(a.status, 200, "{method} {path}: {a:?}");
    a.json()
}

/// Polls a PBS task until it stops; its status.
fn wait_task(lab: &TestLab, upid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(20);
    loop {
        let st = ok(lab, "GET", &format!("/nodes/localhost/tasks/{}/status", enc(upid)), Body::None);
        if st["data"]["status"] == "stopped" {
            return st["data"].clone();
        }
        assert!(Instant::now() < deadline, "task {upid} did not finish");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(300));
    }
}

fn param_error(name: &str, reason: &str) -> String {
    format!("parameter verification failed - '{name}': {reason}")
}

/// Error bodies, authentication, missing paths and parameter messages, per profile.
#[test]
fn errors_auth_and_parameters_per_profile() {
    for pbs in PROFILES {
        let lab = TestLab::up(96, &["--pbs", pbs]);
        error_shape_and_auth(&lab, pbs);
        parameter_messages(&lab, pbs);
    }
}

fn error_shape_and_auth(lab: &TestLab, pbs: &str) {
    // A handler's error: text body, JSON content type, status 400, standard reason phrase.
    call(lab, "GET", "/config/sync/nope", Body::None).is_error(400, "no such sync 'nope'");

    // Authentication failures: 401, the reason in the body, no content type at all.
    let unauth = |a: Answer, reason: &str| {
        assert_eq!((a.status, a.text.as_str()), (401, format!("authentication failed - {reason}").as_str()), "{a:?}");
        assert_eq!(a.content_type, None, "{pbs}: a 401 from authentication has no content type: {a:?}");
        assert_eq!(a.odd_reason, None, "{a:?}");
        // 4.0.7+ expires the HttpOnly cookie on every 401.
        if pbs == "4.0" {
            let c = a.set_cookie.unwrap_or_default();
            assert!(c.starts_with("__Host-PBSAuthCookie=; Expires=Thu, 01 Jan 1970 00:00:00 GMT;"), "{pbs}: {c}");
        } else {
            assert_eq!(a.set_cookie, None, "{pbs}: no cookie clearing before 4.0.7");
        }
    };
    // Real PBS holds every 401 until 3 s after the request came in; the lab answers at once
    // (PBS known differences).
    let t = Instant::now();
    unauth(send(lab, "GET", "/config/sync", None, Body::None), "no authentication credentials provided.");
    assert!(t.elapsed() < Duration::from_secs(2), "the lab does not delay 401s: {:?}", t.elapsed());
    unauth(send(lab, "GET", "/config/sync", Some("PBSAPIToken=root@pam!edge:nope"), Body::None), "invalid credentials");
    unauth(
        send(lab, "GET", "/config/sync", Some("PBSAPIToken=root@pam!ghost:x"), Body::None),
        "user account or token disabled or expired.",
    );
    unauth(
        send(lab, "GET", "/config/sync", Some("PBSAPIToken=root@pam!edge"), Body::None),
        "failed to split API token header",
    );
    // A ticket works for GET; a write needs the CSRF token.
    let pw = lab.store(0)["pbs"]["root_password"].as_str().unwrap_or_default().to_string();
    let t = send(lab, "POST", "/access/ticket", None, Body::Form(&[("username", "root@pam"), ("password", &pw)]));
    assert_eq!(t.status, 200, "{t:?}");
    // 4.0.5+ builds this body by hand with `status` and `success`; the lab keeps the 3.x
    // envelope (PBS known differences).
    assert_eq!(t.json().as_object().map(|o| o.len()), Some(1), "{t:?}");
    let ticket = t.json()["data"]["ticket"].as_str().unwrap_or_default().to_string();
    let cookie = format!("PBSAuthCookie={}", enc(&ticket));
    let url = format!("{}/api2/json/config/verify", lab.store(0)["pbs"]["endpoint"].as_str().unwrap_or_default());
    let r = lab.client.get(&url).header("Cookie", &cookie).send().expect("GET with ticket");
    assert_eq!(r.status().as_u16(), 200);
    let r = lab.client.post(&url).header("Cookie", &cookie).form(&[("id", "v-x")]).send().expect("POST");
    let a = Answer {
        status: r.status().as_u16(),
        odd_reason: None,
        content_type: r.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string),
        set_cookie: r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(str::to_string),
        text: r.text().unwrap_or_default(),
    };
    unauth(a, "missing CSRF prevention token");
    // A wrong password is the ticket handler's 401, through the formatter.
    send(lab, "POST", "/access/ticket", None, Body::Form(&[("username", "root@pam"), ("password", "wrong")]))
        .is_error(401, "permission check failed.");

    // Unknown paths and methods: 404 with the normalised full path, after authentication.
    call(lab, "GET", "/config/nothing", Body::None).is_error(404, "Path '/api2/json/config/nothing' not found.");
    call(lab, "GET", "//config//nothing/", Body::None).is_error(404, "Path '/api2/json/config/nothing' not found.");
    call(lab, "POST", "/version", Body::None).is_error(404, "Path '/api2/json/version' not found.");
    call(lab, "PATCH", "/config/sync", Body::None).is_error(404, "Path '/api2/json/config/sync' not found.");
    unauth(send(lab, "GET", "/config/nothing", None, Body::None), "no authentication credentials provided.");

    // The output format: `json` is served; others are refused before authentication, with no
    // content type. The lab does not serve `extjs` (PBS known differences).
    let base = lab.store(0)["pbs"]["endpoint"].as_str().unwrap_or_default().to_string();
    let r = lab.client.get(format!("{base}/api2/xml/version")).send().expect("GET xml");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get("content-type").is_none());
    assert_eq!(r.text().unwrap_or_default(), "Unsupported output format 'xml'.");
    let r = lab
        .client
        .get(format!("{base}/api2/extjs/version"))
        .header("Authorization", token(lab))
        .send()
        .expect("GET extjs");
    assert_eq!(r.status().as_u16(), 501);
}

fn parameter_messages(lab: &TestLab, pbs: &str) {
    let post = |body: Body| call(lab, "POST", "/config/verify", body);
    // Unknown and missing parameters: form bodies end the reason with a period, JSON not.
    post(Body::Form(&[("id", "v-1"), ("store", "store1"), ("bogus", "1")]))
        .is_error(400, &param_error("bogus", "schema does not allow additional properties."));
    post(Body::Json(json!({"id": "v-1", "store": "store1", "bogus": 1})))
        .is_error(400, &param_error("bogus", "schema does not allow additional properties"));
    post(Body::Form(&[("id", "v-1")]))
        .is_error(400, &param_error("store", "parameter is missing and it is not optional."));
    post(Body::Json(json!({"id": "v-1"})))
        .is_error(400, &param_error("store", "property is missing and it is not optional"));
    // Several errors: a heading and one line each (JSON: in key order, then missing ones).
    post(Body::Json(json!({"id": "v", "bogus": 1}))).is_error(
        400,
        "parameter verification failed:\n- 'bogus': schema does not allow additional properties\n\
         - 'id': value must be at least 3 characters long\n- 'store': property is missing and it is not optional",
    );
    // The form path checks required parameters only when nothing else was wrong.
    post(Body::Form(&[("id", "v")])).is_error(400, &param_error("id", "value must be at least 3 characters long"));
    // Types: JSON values must have the type; form values are parsed.
    post(Body::Json(json!({"id": "v-1", "store": "store1", "ignore-verified": "yes"})))
        .is_error(400, &param_error("ignore-verified", "Expected boolean value."));
    post(Body::Form(&[("id", "v-1"), ("store", "store1"), ("ignore-verified", "maybe")]))
        .is_error(400, &param_error("ignore-verified", "Unable to parse boolean option."));
    post(Body::Form(&[("id", "v-1"), ("store", "store1"), ("outdated-after", "x")]))
        .is_error(400, &param_error("outdated-after", "invalid digit found in string"));
    post(Body::Form(&[("id", "v-1"), ("store", "store1"), ("max-depth", "9")]))
        .is_error(400, &param_error("max-depth", "value must have a maximum value of 7 (got 9)"));
    post(Body::Form(&[("id", "v-1"), ("store", "bad store")]))
        .is_error(400, &param_error("store", "value does not match the regex pattern"));
    let sched = post(Body::Form(&[("id", "v-1"), ("store", "store1"), ("schedule", "whenever")]));
    assert!(sched.text.starts_with(&param_error("schedule", "unable to parse calendar event")), "{sched:?}");
    // Other content types are refused; with JSON the query string is not read at all.
    post(Body::Raw("text/plain", b"id=v-1".to_vec())).is_error(400, "unsupported content type Ok(\"text/plain\")");
    let a = call(lab, "POST", "/config/verify?bogus=1", Body::Json(json!({"id": "v-1", "store": "store1"})));
    assert_eq!(a.status, 200, "{a:?}");

    // `delete` is an array: repeated form keys or a JSON array; a comma list is one bad value.
    let put = |body: Body| call(lab, "PUT", "/config/verify/v-1", body);
    put(Body::Form(&[("delete", "comment,schedule")]))
        .is_error(400, &param_error("delete", "value 'comment,schedule' is not defined in the enumeration."));
    put(Body::Json(json!({"delete": "comment"})))
        .is_error(400, &param_error("delete", "Expected array - got scalar value."));
    put(Body::Json(json!({"delete": ["comment", "nope"]})))
        .is_error(400, &param_error("delete/[1]", "value 'nope' is not defined in the enumeration."));
    ok(lab, "PUT", "/config/verify/v-1", Body::Form(&[("comment", "c"), ("schedule", "daily")]));
    ok(lab, "PUT", "/config/verify/v-1", Body::Form(&[("delete", "comment"), ("delete", "schedule")]));
    let v = ok(lab, "GET", "/config/verify/v-1", Body::None);
    assert_eq!(v["data"], json!({"id": "v-1", "store": "store1"}), "both deleted");

    // What the release does not know is refused, not ignored (sync directions came in 3.3.0).
    let sync = json!({"id": "s-1", "store": "store1", "remote-store": "other", "sync-direction": "pull"});
    let a = call(lab, "POST", "/config/sync", Body::Json(sync));
    let list = call(lab, "GET", "/config/sync?sync-direction=all", Body::None);
    if pbs == "3.2" {
        a.is_error(400, &param_error("sync-direction", "schema does not allow additional properties"));
        list.is_error(400, &param_error("sync-direction", "schema does not allow additional properties."));
    } else {
        assert_eq!((a.status, list.status), (200, 200), "{a:?} {list:?}");
    }

    // The body limit: 64 KiB before 3.4, 512 KiB after.
    let big = "x".repeat(100 * 1024);
    let a = post(Body::Form(&[("id", "v-2"), ("store", "store1"), ("comment", &big)]));
    if pbs == "3.2" {
        a.is_error(400, "Request body too large");
    } else {
        a.is_error(400, &param_error("comment", "value may only be 128 characters long"));
    }
}

/// Lookups, digests, sync directions, datastores, tasks, tokens and garbage collection, per
/// profile.
#[test]
fn objects_tasks_and_gc_per_profile() {
    for pbs in PROFILES {
        let lab = TestLab::up(97, &["--pbs", pbs]);
        missing_and_existing_objects(&lab);
        digests(&lab);
        sync_directions(&lab, pbs);
        datastores_in_tasks(&lab, pbs);
        tasks(&lab);
        tokens(&lab);
        gc(&lab, pbs == "4.0");
    }
}

fn missing_and_existing_objects(lab: &TestLab) {
    for (coll, ty) in [("sync", "sync"), ("verify", "verification"), ("prune", "prune")] {
        let path = format!("/config/{coll}/ghost");
        let missing = format!("no such {ty} 'ghost'");
        call(lab, "GET", &path, Body::None).is_error(400, &missing);
        call(lab, "PUT", &path, Body::Form(&[("comment", "x")])).is_error(400, &missing);
        // Sync jobs answer DELETE with 404; verify and prune look the job up first.
        let del = call(lab, "DELETE", &path, Body::None);
        if coll == "sync" {
            del.is_error(404, "job 'ghost' does not exist.");
        } else {
            del.is_error(400, &missing);
        }
    }
    for (coll, key) in [("datastore", "datastore"), ("remote", "remote")] {
        let path = format!("/config/{coll}/ghost");
        call(lab, "GET", &path, Body::None).is_error(400, &format!("no such {key} 'ghost'"));
        call(lab, "PUT", &path, Body::Form(&[("comment", "x")])).is_error(400, &format!("no such {key} 'ghost'"));
        call(lab, "DELETE", &path, Body::None).is_error(404, &format!("{key} 'ghost' does not exist."));
    }

    // An id that exists is a parameter error on the id.
    let remote = [("name", "central"), ("host", "10.9.0.1"), ("auth-id", "sync@pbs"), ("password", "pw")];
    ok(lab, "POST", "/config/remote", Body::Form(&remote));
    call(lab, "POST", "/config/remote", Body::Form(&remote))
        .is_error(400, &param_error("name", "remote 'central' already exists."));
    let r = ok(lab, "GET", "/config/remote/central", Body::None);
    assert!(r["data"].get("password").is_none() && r["data"]["auth-id"] == "sync@pbs", "{r}");
    let sync =
        [("id", "s-1"), ("store", "store1"), ("remote", "central"), ("remote-store", "edge"), ("remove-vanished", "1")];
    ok(lab, "POST", "/config/sync", Body::Form(&sync));
    call(lab, "POST", "/config/sync", Body::Form(&sync)).is_error(400, &param_error("id", "job 's-1' already exists."));
    // Unset options are left out; booleans are JSON booleans.
    let s = ok(lab, "GET", "/config/sync/s-1", Body::None);
    assert_eq!(
        s["data"],
        json!({"id": "s-1", "store": "store1", "remote": "central", "remote-store": "edge", "remove-vanished": true})
    );
    for coll in ["verify", "prune"] {
        let job = [("id", "j-1"), ("store", "store1"), ("schedule", "daily")];
        ok(lab, "POST", &format!("/config/{coll}"), Body::Form(&job));
        call(lab, "POST", &format!("/config/{coll}"), Body::Form(&job))
            .is_error(400, &param_error("id", "job 'j-1' already exists."));
    }
    call(lab, "POST", "/config/datastore", Body::Form(&[("name", "store1"), ("path", "/mnt/x")]))
        .is_error(400, &param_error("name", "datastore 'store1' already exists."));
    // Jobs are not checked against the datastores and remotes they name.
    ok(
        lab,
        "POST",
        "/config/sync",
        Body::Form(&[("id", "s-2"), ("store", "nowhere"), ("remote", "nobody"), ("remote-store", "src")]),
    );
    ok(lab, "POST", "/config/verify", Body::Form(&[("id", "j-2"), ("store", "nowhere")]));
    // A local sync job cannot copy a datastore onto itself.
    call(lab, "POST", "/config/sync", Body::Form(&[("id", "s-3"), ("store", "store1"), ("remote-store", "store1")]))
        .is_error(400, "source and target datastore can't be the same");
    // A remote used by a sync job cannot go.
    call(lab, "DELETE", "/config/remote/central", Body::None)
        .is_error(400, &param_error("name", "remote 'central' is used by sync job 's-1' (datastore 'store1')"));
    ok(lab, "DELETE", "/config/sync/s-1", Body::None);
    ok(lab, "DELETE", "/config/remote/central", Body::None);
}

fn digests(lab: &TestLab) {
    let list = ok(lab, "GET", "/config/verify", Body::None);
    let one = ok(lab, "GET", "/config/verify/j-1", Body::None);
    let d = one["digest"].as_str().unwrap_or_default().to_string();
    assert!(d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{d}");
    assert_eq!(list["digest"], one["digest"], "one digest per file");
    // A change to another job of the file makes the digest stale.
    ok(lab, "PUT", "/config/verify/j-2", Body::Form(&[("comment", "moved")]));
    let stale = "detected modified configuration - file changed by other user? Try again.";
    call(lab, "PUT", "/config/verify/j-1", Body::Form(&[("comment", "x"), ("digest", &d)])).is_error(400, stale);
    call(lab, "PUT", "/config/verify/j-1", Body::Form(&[("digest", "abc")]))
        .is_error(400, &param_error("digest", "value does not match the regex pattern"));
    // Compared only when sent.
    ok(lab, "PUT", "/config/verify/j-1", Body::Form(&[("comment", "  padded  ")]));
    assert_eq!(
        ok(lab, "GET", "/config/verify/j-1", Body::None)["data"]["comment"],
        "padded",
        "sync/verify trim comments"
    );
    ok(lab, "PUT", "/config/prune/j-1", Body::Form(&[("comment", "  as is  ")]));
    assert_eq!(
        ok(lab, "GET", "/config/prune/j-1", Body::None)["data"]["comment"],
        "  as is  ",
        "prune keeps it as given"
    );
    // The order: verify DELETE looks the job up before the digest, sync DELETE the other way round.
    call(lab, "DELETE", "/config/verify/ghost", Body::Form(&[("digest", &d)]))
        .is_error(400, "no such verification 'ghost'");
    let sd = ok(lab, "GET", "/config/sync", Body::None)["digest"].as_str().unwrap_or_default().to_string();
    ok(lab, "PUT", "/config/sync/s-2", Body::Form(&[("comment", "c")]));
    call(lab, "DELETE", "/config/sync/ghost", Body::Form(&[("digest", &sd)])).is_error(400, stale);
    call(lab, "DELETE", "/config/verify/j-1", Body::Form(&[("digest", &d)])).is_error(400, stale);
}

fn sync_directions(lab: &TestLab, pbs: &str) {
    ok(
        lab,
        "POST",
        "/config/remote",
        Body::Form(&[("name", "hub"), ("host", "10.9.0.2"), ("auth-id", "a@pbs"), ("password", "p")]),
    );
    let ids = |q: &str| -> Vec<String> {
        let v = ok(lab, "GET", &format!("/config/sync{q}"), Body::None);
        let list = v["data"].as_array().unwrap_or_else(|| panic!("a list: {v}"));
        list.iter().map(|j| j["id"].as_str().unwrap_or_default().to_string()).collect()
    };
    let push = [
        ("id", "push-1"),
        ("store", "store1"),
        ("remote", "hub"),
        ("remote-store", "edge-001"),
        ("sync-direction", "push"),
    ];
    if pbs == "3.2" {
        call(lab, "POST", "/config/sync", Body::Form(&push))
            .is_error(400, &param_error("sync-direction", "schema does not allow additional properties."));
        assert_eq!(ids(""), vec!["s-2"], "3.2 lists every (pull) job");
        return;
    }
    ok(lab, "POST", "/config/sync", Body::Form(&push));
    // Without `sync-direction` the list shows pull jobs only.
    assert_eq!(ids(""), vec!["s-2"]);
    assert_eq!(ids("?sync-direction=pull"), vec!["s-2"]);
    assert_eq!(ids("?sync-direction=push"), vec!["push-1"]);
    assert_eq!(ids("?sync-direction=all"), vec!["push-1", "s-2"]);
    assert_eq!(ok(lab, "GET", "/config/sync/push-1", Body::None)["data"]["sync-direction"], "push");
    // Push needs a remote (the access check has no remote path to check) and takes no
    // resync-corrupt.
    call(
        lab,
        "POST",
        "/config/sync",
        Body::Form(&[("id", "push-2"), ("store", "store1"), ("remote-store", "src"), ("sync-direction", "push")]),
    )
    .is_error(400, "permission check failed");
    let mut with_resync = push.to_vec();
    with_resync[0] = ("id", "push-3");
    with_resync.push(("resync-corrupt", "1"));
    call(lab, "POST", "/config/sync", Body::Form(&with_resync))
        .is_error(400, "push jobs do not support resync-corrupt option");
    call(lab, "PUT", "/config/sync/push-1", Body::Form(&[("delete", "remote")]))
        .is_error(400, "permission check failed");
}

fn datastores_in_tasks(lab: &TestLab, pbs: &str) {
    // Created by a worker task: the answer is its UPID (the worker id escaped), the config is
    // written by the task.
    let v = ok(lab, "POST", "/config/datastore", Body::Form(&[("name", "edge-ds"), ("path", "/mnt/edge-ds")]));
    let upid = v["data"].as_str().unwrap_or_else(|| panic!("a UPID: {v}")).to_string();
    assert!(upid.contains(":create-datastore:edge\\x2dds:root@pam!edge:"), "{upid}");
    assert_eq!(wait_task(lab, &upid)["exitstatus"], "OK");
    ok(lab, "GET", "/config/datastore/edge-ds", Body::None);
    // A relative path: refused up front from 3.3.0, a failed task before.
    let rel = call(lab, "POST", "/config/datastore", Body::Form(&[("name", "rel-ds"), ("path", "rel")]));
    if pbs == "3.2" {
        assert_eq!(rel.status, 200, "{rel:?}");
        let st = wait_task(lab, rel.json()["data"].as_str().unwrap_or_default());
        assert_eq!(st["exitstatus"], "expected absolute path - got \"rel\"");
    } else {
        rel.is_error(400, &param_error("path", "expected an abolute path, 'rel' is not"));
    }
    call(lab, "GET", "/config/datastore/rel-ds", Body::None).is_error(400, "no such datastore 'rel-ds'");
    // Property strings are checked key by key; the lab words the reason its own way after the
    // parameter's name (PBS known differences).
    let a = call(lab, "PUT", "/config/datastore/edge-ds", Body::Form(&[("tuning", "bogus=1")]));
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.text.starts_with("parameter verification failed - 'tuning': "), "{a:?}");
    // PBS turns prune settings given at creation into a prune job `default-NAME-UUID`; the lab
    // does not (PBS known differences).
    let v = ok(
        lab,
        "POST",
        "/config/datastore",
        Body::Form(&[("name", "pr-ds"), ("path", "/mnt/pr"), ("prune-schedule", "daily"), ("keep-last", "3")]),
    );
    wait_task(lab, v["data"].as_str().unwrap_or_default());
    let prune = ok(lab, "GET", "/config/prune", Body::None);
    let jobs = prune["data"].as_array().cloned().unwrap_or_default();
    assert!(!jobs.is_empty() && jobs.iter().all(|j| j["store"] != "pr-ds"), "{prune}");

    // Deleting takes the jobs on the datastore with it at once (a local job reading from it
    // stays; so do push jobs before 4.1.1) and removes the datastore in a task.
    ok(lab, "POST", "/config/verify", Body::Form(&[("id", "on-ds"), ("store", "edge-ds")]));
    ok(
        lab,
        "POST",
        "/config/sync",
        Body::Form(&[("id", "pull-ds"), ("store", "edge-ds"), ("remote", "hub"), ("remote-store", "src")]),
    );
    ok(lab, "POST", "/config/sync", Body::Form(&[("id", "from-ds"), ("store", "store1"), ("remote-store", "edge-ds")]));
    if pbs != "3.2" {
        let push = [
            ("id", "push-ds"),
            ("store", "edge-ds"),
            ("remote", "hub"),
            ("remote-store", "src"),
            ("sync-direction", "push"),
        ];
        ok(lab, "POST", "/config/sync", Body::Form(&push));
    }
    let v = ok(lab, "DELETE", "/config/datastore/edge-ds", Body::None);
    let upid = v["data"].as_str().unwrap_or_else(|| panic!("a UPID: {v}")).to_string();
    assert!(upid.contains(":delete-datastore:edge\\x2dds:"), "{upid}");
    call(lab, "GET", "/config/verify/on-ds", Body::None).is_error(400, "no such verification 'on-ds'");
    call(lab, "GET", "/config/sync/pull-ds", Body::None).is_error(400, "no such sync 'pull-ds'");
    ok(lab, "GET", "/config/sync/from-ds", Body::None);
    if pbs != "3.2" {
        ok(lab, "GET", "/config/sync/push-ds", Body::None);
    }
    assert_eq!(wait_task(lab, &upid)["exitstatus"], "OK");
    call(lab, "GET", "/config/datastore/edge-ds", Body::None).is_error(400, "no such datastore 'edge-ds'");
}

fn tasks(lab: &TestLab) {
    let v = ok(lab, "GET", "/nodes/localhost/tasks?typefilter=create-datastore", Body::None);
    let list = v["data"].as_array().cloned().unwrap_or_default();
    let first = list
        .iter()
        .find(|t| t["worker_id"] == "edge-ds")
        .unwrap_or_else(|| panic!("the create-datastore task of edge-ds: {v}"))
        .clone();
    assert_eq!(v["total"], list.len(), "total beside data: {v}");
    assert_eq!(
        (&first["node"], &first["worker_type"], &first["worker_id"], &first["user"]),
        (&json!("localhost"), &json!("create-datastore"), &json!("edge-ds"), &json!("root@pam!edge")),
        "{first}"
    );
    let upid = first["upid"].as_str().unwrap_or_default().to_string();
    // UPID:node:pid:pstart:task_id:starttime:type:id:authid: with upper-case hex.
    let f: Vec<&str> = upid.split(':').collect();
    assert_eq!(f.len(), 10, "{upid}");
    for h in &f[2..6] {
        assert!(h.len() >= 8 && h.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{upid}");
    }
    // The log: numbered from 1, each line with its time, the last one the result; `start` is
    // a line number, `limit=0` all; content type without charset.
    let path = format!("/nodes/localhost/tasks/{}/log", enc(&upid));
    let a = call(lab, "GET", &path, Body::None);
    assert_eq!(a.content_type.as_deref(), Some("application/json"), "{a:?}");
    let log = a.json();
    let lines = log["data"].as_array().cloned().unwrap_or_default();
    assert!(lines.len() >= 2 && log["total"] == lines.len() && log["success"] == 1, "{log}");
    assert_eq!(lines[0]["n"], 1);
    let last = lines[lines.len() - 1]["t"].as_str().unwrap_or_default();
    assert!(last.ends_with(": TASK OK") && last.as_bytes()[4] == b'-' && last.as_bytes()[10] == b'T', "{last}");
    let page = ok(lab, "GET", &format!("{path}?start=2&limit=1"), Body::None);
    assert_eq!(page["data"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(page["data"][0]["n"], 2);
    assert_eq!(
        ok(lab, "GET", &format!("{path}?start=0&limit=0"), Body::None)["data"].as_array().map(|a| a.len()),
        Some(lines.len())
    );
    assert_eq!(
        ok(lab, "GET", &format!("/nodes/localhost/tasks/{}", enc(&upid)), Body::None)["data"],
        json!([{"subdir": "log"}, {"subdir": "status"}])
    );

    // A well-formed UPID PBS never ran: stopped, unknown; no log file; stopping it is fine.
    // `{node}` is any node name.
    let ghost = "UPID:elsewhere:00001234:00ABCDEF:00000001:65000000:garbage_collection:store\\x2d9:root@pam!edge:";
    let st = ok(lab, "GET", &format!("/nodes/anything/tasks/{}/status", enc(ghost)), Body::None);
    assert_eq!(
        st["data"],
        json!({"upid": ghost, "node": "elsewhere", "pid": 0x1234, "pstart": 0xABCDEF, "starttime": 0x6500_0000,
               "type": "garbage_collection", "id": "store-9", "user": "root@pam", "tokenid": "edge",
               "status": "stopped", "exitstatus": "unknown"})
    );
    // The lab's token has every privilege: real PBS shows another user's task only with
    // Sys.Audit on /system/tasks, or answers `task access not allowed` (PBS known differences).
    let theirs = ghost.replace("root@pam!edge", "other@pbs");
    let st = ok(lab, "GET", &format!("/nodes/localhost/tasks/{}/status", enc(&theirs)), Body::None);
    assert_eq!((&st["data"]["user"], st["data"].get("tokenid")), (&json!("other@pbs"), None), "{st}");
    call(lab, "GET", &format!("/nodes/localhost/tasks/{}/log", enc(ghost)), Body::None)
        .is_error(400, "No such file or directory (os error 2)");
    assert_eq!(ok(lab, "DELETE", &format!("/nodes/localhost/tasks/{}", enc(ghost)), Body::None), json!({"data": null}));
    call(lab, "GET", "/nodes/localhost/tasks/UPID:bad/status", Body::None)
        .is_error(400, &param_error("upid", "value must be at least 36 characters long"));
}

fn tokens(lab: &TestLab) {
    let base = "/access/users/root@pam/token";
    call(lab, "GET", &format!("{base}/ghost"), Body::None).is_error(400, "no such token 'root@pam!ghost'");
    let v = ok(lab, "POST", &format!("{base}/t-1"), Body::Form(&[("comment", "c")]));
    assert_eq!(v["data"]["tokenid"], "root@pam!t-1");
    assert!(v["data"]["value"].as_str().is_some_and(|s| s.len() == 36), "{v}");
    call(lab, "POST", &format!("{base}/t-1"), Body::None)
        .is_error(400, "token 't-1' for user 'root@pam' already exists.");
    let one = ok(lab, "GET", &format!("{base}/t-1"), Body::None);
    assert_eq!(one["data"], json!({"tokenid": "root@pam!t-1", "comment": "c"}));
    assert_eq!(one["digest"].as_str().map(str::len), Some(64));
    call(lab, "DELETE", &format!("{base}/ghost"), Body::None)
        .is_error(400, "token 'ghost' of user 'root@pam' does not exist.");
    ok(lab, "DELETE", &format!("{base}/t-1"), Body::None);
    // Another user's tokens: none (PBS does not check the user here).
    assert_eq!(ok(lab, "GET", "/access/users/nobody@pbs/token", Body::None)["data"], json!([]));
}

fn gc(lab: &TestLab, catch_it_running: bool) {
    call(lab, "GET", "/admin/datastore/ghost/gc", Body::None).is_error(400, "no such datastore 'ghost'");
    call(lab, "POST", "/admin/datastore/ghost/gc", Body::None).is_error(400, "no such datastore 'ghost'");
    // Before the first run: zeros, and `upid` present as null.
    let before = ok(lab, "GET", "/admin/datastore/store1/gc", Body::None)["data"].clone();
    assert_eq!(before.get("upid"), Some(&Value::Null), "{before}");
    assert_eq!((&before["disk-bytes"], &before["removed-chunks"]), (&json!(0), &json!(0)), "{before}");
    assert!(before.get("last-run-state").is_none(), "{before}");
    // PBS computes `next-run` from `gc-schedule`; the lab leaves it out (PBS known differences).
    assert_eq!((&before["schedule"], before.get("next-run")), (&json!("daily"), None), "{before}");
    let upid =
        ok(lab, "POST", "/admin/datastore/store1/gc", Body::None)["data"].as_str().unwrap_or_default().to_string();
    assert!(upid.contains(":garbage_collection:store1:root@pam!edge:"), "{upid}");
    assert_eq!(wait_task(lab, &upid)["exitstatus"], "OK");
    let after = ok(lab, "GET", "/admin/datastore/store1/gc", Body::None)["data"].clone();
    assert_eq!((&after["upid"], &after["last-run-state"]), (&json!(upid), &json!("ok")), "{after}");
    if !catch_it_running {
        return;
    }
    // A GC that runs long: a second start waits for the job lock (10 s), then gives up.
    let (c, v) = lab.admin("POST", "/lab/faults", Some(json!({"pattern": "^POST .*/gc$", "task_ms": 15000})));
    assert_eq!(c, 200, "{v}");
    let first = ok(lab, "POST", "/admin/datastore/store1/gc", Body::None);
    let t = Instant::now();
    call(lab, "POST", "/admin/datastore/store1/gc", Body::None).is_error(400, "garbage collection already running");
    assert!(t.elapsed() >= Duration::from_millis(9500), "waited for the lock: {:?}", t.elapsed());
    lab.admin("DELETE", "/lab/faults", None);
    let st = ok(
        lab,
        "GET",
        &format!("/nodes/localhost/tasks/{}/status", enc(first["data"].as_str().unwrap_or_default())),
        Body::None,
    );
    assert_eq!(st["data"]["status"], "running", "{st}");
}

/// PBS-SNAPSHOTS: the snapshot list of a datastore, per profile: finished backups with their
/// files' sizes and the manifest, a backup without manifest with names only, filters, and a
/// datastore that does not exist.
#[test]
fn snapshot_list_per_profile() {
    for pbs in PROFILES {
        let lab = TestLab::up(145, &["--pbs", pbs]);
        let ds = lab.store(0)["pbs"]["datastore"].as_str().expect("datastore").to_string();
        let list = |query: &str| ok(&lab, "GET", &format!("/admin/datastore/{ds}/snapshots{query}"), Body::None);
        assert_eq!(list("")["data"], json!([]), "{pbs}: a new datastore holds nothing");
        call(&lab, "GET", "/admin/datastore/nope/snapshots", Body::None).is_error(400, "no such datastore 'nope'");
        call(&lab, "GET", &format!("/admin/datastore/{ds}/snapshots?backup-type=disk"), Body::None)
            .is_error(400, &param_error("backup-type", "value 'disk' is not defined in the enumeration."));

        let t = 1_700_000_000i64;
        for (ty, id, time, extra) in [
            ("vm", "100", t, json!({"verify": "ok"})),
            ("vm", "100", t + 3600, json!({"finished": false})),
            ("ct", "101", t - 60, json!({"verify": "failed"})),
            ("host", "pve1", t, json!({"ns": "site-a"})),
        ] {
            let mut body = json!({"backup_type": ty, "backup_id": id, "backup_time": time});
            body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            let (c, v) = lab.admin("POST", "/lab/backups", Some(body));
            assert_eq!(c, 200, "{v}");
        }
        let (c, _) =
            lab.admin("POST", "/lab/backups", Some(json!({"backup_type": "vm", "backup_id": "100", "backup_time": t})));
        assert_eq!(c, 409, "a snapshot exists once");

        let all = list("")["data"].clone();
        let keys: Vec<(String, String, i64)> = all
            .as_array()
            .expect("list")
            .iter()
            .map(|s| {
                (
                    s["backup-type"].as_str().expect("type").into(),
                    s["backup-id"].as_str().expect("id").into(),
                    s["backup-time"].as_i64().expect("time"),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("ct".into(), "101".into(), t - 60),
                ("vm".into(), "100".into(), t),
                ("vm".into(), "100".into(), t + 3600)
            ],
            "{pbs}: root namespace only: {all}"
        );
        let done = &all[1];
        let files = done["files"].as_array().expect("files");
        assert_eq!(
            files.last().map(|f| f["filename"].clone()),
            Some(json!("index.json.blob")),
            "the manifest comes last: {done}"
        );
        assert!(files.iter().all(|f| f["crypt-mode"] == "none" && f["size"].is_u64()), "{done}");
        let sum: u64 = files.iter().filter_map(|f| f["size"].as_u64()).sum();
        assert_eq!(done["size"].as_u64(), Some(sum), "size is the sum of the archives and the manifest");
        assert_eq!(done["verification"]["state"], "ok");
        assert!(done["verification"]["upid"].as_str().is_some_and(|u| u.starts_with("UPID:pbs:")), "{done}");
        assert_eq!((done["owner"].clone(), done["protected"].clone()), (json!("root@pam"), json!(false)));
        let running = &all[2];
        assert!(running.get("size").is_none() && running.get("verification").is_none(), "no manifest: {running}");
        let running_files = running["files"].as_array().expect("files");
        assert!(
            !running_files.is_empty()
                && running_files.iter().all(|f| f.get("size").is_none() && f["filename"] != "index.json.blob"),
            "{running}"
        );
        assert_eq!(all[0]["verification"]["state"], "failed");

        assert_eq!(list("?backup-type=ct")["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(list("?backup-id=100")["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(list("?backup-type=ct&backup-id=100")["data"], json!([]), "no such group: empty");
        let site = list("?ns=site-a")["data"].clone();
        assert_eq!((site[0]["backup-type"].clone(), site.as_array().map(Vec::len)), (json!("host"), Some(1)), "{site}");
    }
}
