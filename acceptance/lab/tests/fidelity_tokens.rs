//! API tokens as pve-access-control makes and checks them: expiry on the token itself
//! (PVE-TOKEN-EXPIRE), privilege separation with the token's own ACL entries
//! (PVE-TOKEN-PRIVSEP, PVE-ACL-UPDATE) and token removal taking its ACL with it
//! (PVE-TOKEN-DELETE). Every request here goes through the lab's HTTPS API.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TestLab;
use serde_json::Value;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Creates `root@pam!NAME` with the store's (privilege-separation-off) token; returns the
/// Authorization header value of the new token.
fn create(lab: &TestLab, name: &str, form: &[(&str, &str)]) -> String {
    let (c, v) = lab.pve(0, "POST", &format!("/access/users/root@pam/token/{name}"), form);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["data"]["full-tokenid"], format!("root@pam!{name}"), "{v}");
    format!("PVEAPIToken=root@pam!{name}={}", v["data"]["value"].as_str().expect("token value"))
}

fn call(lab: &TestLab, auth: &str, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    lab.call(&format!("{}/api2/json{path}", lab.node_ep(0, 0)), auth, method, form)
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().trim().to_string()
}

fn acl(lab: &TestLab) -> Vec<Value> {
    let (c, v) = lab.pve(0, "GET", "/access/acl", &[]);
    assert_eq!(c, 200, "{v}");
    v["data"].as_array().cloned().expect("ACL list")
}

/// The status line of a request, read off the socket: a 401 has no body, its reason is only
/// there (and only on pve-http-server before 5.2.0 / pve-manager 8.4.17 does it name the cause).
fn status_line(lab: &TestLab, auth: &str) -> String {
    use base64::Engine;
    use std::io::{Read, Write};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let pem = lab.json["ca_pem"].as_str().expect("ca");
    for b in pem.split("-----BEGIN CERTIFICATE-----").skip(1).filter_map(|b| b.split("-----END").next()) {
        let clean: String = b.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(clean).expect("PEM");
        roots.add(rustls::pki_types::CertificateDer::from(der)).expect("ca cert");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = lab.store(0)["nodes"][0]["address"].as_str().expect("address").to_string();
    let name = rustls::pki_types::ServerName::try_from(addr.clone()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("tls");
    let mut sock = std::net::TcpStream::connect(format!("{addr}:8006")).expect("connect");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(
        tls,
        "GET /api2/json/version HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
}

/// PVE-TOKEN-EXPIRE: `expire` is stored on the token and shown by the token list; the token
/// works until that second has passed (`expire < now` refuses, `verify_token`) and is refused
/// after it with a 401, checked before its secret; unknown tokens and wrong secrets are 401s
/// of their own. Releases before pve-manager 8.4.17 name the reason in the status line.
#[test]
fn tokens_expire_as_verify_token_checks() {
    let lab = TestLab::up(223, &["--pve", "8.4", "--pve-http-server-legacy"]);
    let expire = now() + 2;
    let short = create(&lab, "short", &[("expire", &expire.to_string()), ("privsep", "0")]);
    let (c, v) = lab.pve(0, "GET", "/access/users/root@pam/token/short", &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["data"]["expire"], expire, "{v}");
    let (c, v) = lab.pve(0, "GET", "/access/users/root@pam/token", &[]);
    assert_eq!(c, 200);
    let listed = v["data"].as_array().and_then(|a| a.iter().find(|t| t["tokenid"] == "short")).cloned();
    assert_eq!(listed.expect("listed")["expire"], expire);

    assert_eq!(call(&lab, &short, "GET", "/nodes/pve1/status", &[]).0, 200, "before its expiry the token works");
    // Poll (not a fixed sleep) until the clock passes `expire`: PVE refuses once `expire < now`.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_millis(50);
    loop {
        let (c, _) = call(&lab, &short, "GET", "/nodes/pve1/status", &[]);
        if c == 401 {
            assert!(now() > expire, "refused at {} although expire is {expire}", now());
            break;
        }
        assert_eq!(c, 200);
        assert!(Instant::now() < deadline, "the token still works 10 s after its expiry");
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(Duration::from_millis(500));
    }
    assert_eq!(status_line(&lab, &short), format!("HTTP/1.1 401 token 'short' access expired"));
    // The expiry is checked before the secret: a wrong secret of an expired token says expired.
    assert_eq!(status_line(&lab, "PVEAPIToken=root@pam!short=wrong"), "HTTP/1.1 401 token 'short' access expired");

    // A token created already expired is refused at once.
    let past = create(&lab, "past", &[("expire", &(now() - 60).to_string())]);
    assert_eq!(call(&lab, &past, "GET", "/version", &[]).0, 401);
    // Unknown tokens and wrong secrets.
    assert_eq!(
        status_line(&lab, "PVEAPIToken=root@pam!ghost=x"),
        "HTTP/1.1 401 no such token 'ghost' for user 'root@pam'"
    );
    let forever = create(&lab, "forever", &[("privsep", "0")]);
    let (c, v) = lab.pve(0, "GET", "/access/users/root@pam/token/forever", &[]);
    assert_eq!((c, &v["data"]["expire"]), (200, &serde_json::json!(0)), "no expiry: 0");
    assert_eq!(call(&lab, &forever, "GET", "/version", &[]).0, 200);
    assert_eq!(status_line(&lab, "PVEAPIToken=root@pam!forever=wrong"), "HTTP/1.1 401 invalid token value!");
}

/// PVE-TOKEN-PRIVSEP and PVE-ACL-UPDATE: a privilege-separated token (the default) has exactly
/// what its own ACL entries grant on a path — propagated from a parent only with `propagate`,
/// NoAccess winning — and a token without separation has its user's privileges; a token may
/// hand out only privileges it holds itself.
#[test]
fn privsep_tokens_get_only_their_acl() {
    let lab = TestLab::up(224, &[]);
    let ci = create(&lab, "ci", &[]);
    let (_, v) = lab.pve(0, "GET", "/access/users/root@pam/token/ci", &[]);
    assert_eq!(v["data"]["privsep"], 1, "privilege separation is the default: {v}");
    // No ACL entry: only methods open to every authenticated user.
    assert_eq!(call(&lab, &ci, "GET", "/version", &[]).0, 200);
    let (c, v) = call(&lab, &ci, "GET", "/nodes/pve1/status", &[]);
    assert_eq!((c, message(&v).as_str()), (403, "Permission check failed (/nodes/pve1, Sys.Audit)"), "{v}");

    // PVEAuditor on /nodes/pve1 only.
    let grant = |path: &str, roles: &str, token: &str, propagate: &str| {
        lab.pve(
            0,
            "PUT",
            "/access/acl",
            &[("path", path), ("roles", roles), ("tokens", token), ("propagate", propagate)],
        )
    };
    let (c, v) = grant("/nodes/pve1", "PVEAuditor", "root@pam!ci", "1");
    assert_eq!(c, 200, "{v}");
    assert_eq!(call(&lab, &ci, "GET", "/nodes/pve1/status", &[]).0, 200);
    let (c, v) = call(&lab, &ci, "GET", "/cluster/status", &[]);
    assert_eq!((c, message(&v).as_str()), (403, "Permission check failed (/, Sys.Audit)"), "{v}");
    let (c, v) = call(&lab, &ci, "PUT", "/nodes/pve1/dns", &[("search", "lab")]);
    assert_eq!((c, message(&v).as_str()), (403, "Permission check failed (/nodes/pve1, Sys.Modify)"), "{v}");
    let entry = acl(&lab).into_iter().find(|e| e["ugid"] == "root@pam!ci").expect("the entry is listed");
    assert_eq!(
        (entry["path"].as_str(), entry["type"].as_str(), entry["roleid"].as_str(), entry["propagate"].as_i64()),
        (Some("/nodes/pve1"), Some("token"), Some("PVEAuditor"), Some(1)),
        "{entry}"
    );

    // An entry on a parent without propagate covers only that path.
    let (c, _) = grant("/nodes", "Administrator", "root@pam!ci", "0");
    assert_eq!(c, 200);
    assert_eq!(call(&lab, &ci, "PUT", "/nodes/pve1/dns", &[("search", "lab")]).0, 403, "not propagated");
    let (c, _) = grant("/nodes", "Administrator", "root@pam!ci", "1");
    assert_eq!(c, 200, "setting it again changes propagate");
    // The deeper entry replaces what is inherited: PVEAuditor on /nodes/pve1 still rules there.
    assert_eq!(call(&lab, &ci, "PUT", "/nodes/pve1/dns", &[("search", "lab")]).0, 403, "the path's own entry wins");
    let (c, _) = lab.pve(
        0,
        "PUT",
        "/access/acl",
        &[("path", "/nodes/pve1"), ("roles", "PVEAuditor"), ("tokens", "root@pam!ci"), ("delete", "1")],
    );
    assert_eq!(c, 200);
    assert_eq!(call(&lab, &ci, "PUT", "/nodes/pve1/dns", &[("search", "lab")]).0, 200, "inherited Administrator");
    let (c, _) = grant("/nodes/pve1", "NoAccess", "root@pam!ci", "1");
    assert_eq!(c, 200);
    assert_eq!(call(&lab, &ci, "GET", "/nodes/pve1/status", &[]).0, 403, "NoAccess wins");

    // Without separation: the user's (root@pam's) privileges, whatever the ACL says.
    let full = create(&lab, "full", &[("privsep", "0")]);
    assert_eq!(call(&lab, &full, "GET", "/cluster/status", &[]).0, 200);

    // A privilege-separated token may only grant what it holds: PVEDatastoreAdmin on /storage
    // carries Datastore.Allocate (enough to edit that subtree's ACL) but not Sys.Modify.
    let store_admin = create(&lab, "storeadmin", &[]);
    let (c, _) = grant("/storage", "PVEDatastoreAdmin", "root@pam!storeadmin", "1");
    assert_eq!(c, 200);
    let other = create(&lab, "other", &[]);
    let (c, v) = call(
        &lab,
        &store_admin,
        "PUT",
        "/access/acl",
        &[("path", "/storage/local"), ("roles", "PVEDatastoreUser"), ("tokens", "root@pam!other")],
    );
    assert_eq!(c, 200, "a subset of its own privileges: {v}");
    let (c, v) = call(
        &lab,
        &store_admin,
        "PUT",
        "/access/acl",
        &[("path", "/storage/local"), ("roles", "Administrator"), ("tokens", "root@pam!other")],
    );
    assert_eq!(c, 400, "{v}");
    assert_eq!(
        v["errors"]["role"],
        "Cannot add role 'Administrator' - requires 'Permissions.Modify' or superset of privileges.",
        "{v}"
    );
    let (c, v) = call(
        &lab,
        &store_admin,
        "PUT",
        "/access/acl",
        &[("path", "/"), ("roles", "PVEAuditor"), ("tokens", "root@pam!other")],
    );
    assert_eq!((c, message(&v).as_str()), (403, "Permission check failed (/, Permissions.Modify)"), "{v}");
    // Nor may it mint tokens: token methods need the user itself or User.Modify.
    let (c, v) = call(&lab, &store_admin, "POST", "/access/users/root@pam/token/more", &[]);
    assert_eq!((c, message(&v).as_str()), (403, "Permission check failed"), "{v}");
    let _ = other;

    // Refusals of PUT /access/acl itself.
    let (c, v) = lab.pve(0, "PUT", "/access/acl", &[("path", "/"), ("roles", "PVEAuditor")]);
    assert_eq!(c, 400);
    assert_eq!(v["errors"]["tokens"], "either 'users', 'groups' or 'tokens' is required.", "{v}");
    let (c, v) = lab.pve(
        0,
        "PUT",
        "/access/acl",
        &[("path", "/nodes/pve1/x"), ("roles", "PVEAuditor"), ("tokens", "root@pam!ci")],
    );
    assert_eq!((c, &v["errors"]["path"]), (400, &serde_json::json!("invalid ACL path '/nodes/pve1/x'")), "{v}");
    let (c, v) = grant("/", "Wizard", "root@pam!ci", "1");
    assert_eq!((c, message(&v).as_str()), (500, "role 'Wizard' does not exist"), "{v}");
    let (c, v) = grant("/", "PVEAuditor", "root@pam!ghost", "1");
    assert_eq!((c, message(&v).as_str()), (500, "no such token 'ghost' for user 'root@pam'"), "{v}");
}

/// PVE-TOKEN-DELETE: a deleted token is refused at once, its ACL entries are gone (a new token
/// of the same name starts with none), deleting it again is `no such token`, creating an
/// existing one is a parameter error on `tokenid`.
#[test]
fn token_delete_takes_its_acl() {
    let lab = TestLab::up(225, &[]);
    let run = create(&lab, "run", &[]);
    let (c, v) = lab.pve(0, "POST", "/access/users/root@pam/token/run", &[]);
    assert_eq!((c, &v["errors"]["tokenid"]), (400, &serde_json::json!("Token already exists.")), "{v}");
    let (c, _) =
        lab.pve(0, "PUT", "/access/acl", &[("path", "/"), ("roles", "PVEAuditor"), ("tokens", "root@pam!run")]);
    assert_eq!(c, 200);
    assert_eq!(call(&lab, &run, "GET", "/cluster/status", &[]).0, 200);
    assert!(acl(&lab).iter().any(|e| e["ugid"] == "root@pam!run"));

    let (c, v) = lab.pve(0, "DELETE", "/access/users/root@pam/token/run", &[]);
    assert_eq!(c, 200, "{v}");
    assert_eq!(call(&lab, &run, "GET", "/version", &[]).0, 401, "refused at once");
    let entries = acl(&lab);
    assert!(!entries.is_empty(), "the audit token's entry is still listed: the list can show entries");
    assert!(!entries.iter().any(|e| e["ugid"] == "root@pam!run"), "{entries:?}");
    let (c, v) = lab.pve(0, "DELETE", "/access/users/root@pam/token/run", &[]);
    assert_eq!((c, message(&v).as_str()), (500, "no such token 'run' for user 'root@pam'"), "{v}");

    let again = create(&lab, "run", &[]);
    assert_eq!(call(&lab, &again, "GET", "/cluster/status", &[]).0, 403, "a new token of the old name has no ACL");
}
