//! `ephemeral "edge_pve_token"` through real Terraform 1.15 against the edge lab: a bootstrap
//! provider configuration (the store's long-lived token, as a CI secret would hold it) opens a
//! short-lived, privilege-separated token, and the default provider configuration applies a
//! real resource with it. The evidence comes from the lab's API, read independently while
//! Terraform runs and after it (the token exists with its expiry and ACL, then is gone), from
//! the lab's own state file (the token's secret, to look for in Terraform's files), and from
//! Terraform's saved plan (`terraform show -json`) and `terraform.tfstate`. A token whose ACL
//! lacks the privilege gets PVE's 403 as a diagnostic. Terraform 1.0.3's refusal of the
//! `ephemeral` block is pinned too.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_acceptance::{json, terraform_legacy_bin, Lab, Tf, Value};

/// Shown to the runs as TF_VAR_bootstrap_token, never written into a file.
fn hcl(acl: &str, job: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{ edge = {{ source = "edgeform/edge" }} }}
}}

variable "pve_endpoint" {{ type = string }}
variable "pve_fingerprint" {{ type = string }}
variable "bootstrap_token" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

# Only for minting the run's token.
provider "edge" {{
  alias = "bootstrap"
  pve = {{
    endpoint        = var.pve_endpoint
    api_token       = var.bootstrap_token
    tls_fingerprint = var.pve_fingerprint
  }}
}}

ephemeral "edge_pve_token" "run" {{
  provider = edge.bootstrap
  lifetime = "30m"
  acl      = [{acl}]
}}

provider "edge" {{
  pve = {{
    endpoint        = var.pve_endpoint
    api_token       = ephemeral.edge_pve_token.run.api_token
    tls_fingerprint = var.pve_fingerprint
  }}
}}

resource "edge_pbs_job" "nightly" {{
  id       = "{job}"
  schedule = "sat 02:00"
  backup {{
    storage           = "pbs-store1"
    vmids             = [100]
    notification_mode = "auto"
  }}
}}
"#
    )
}

fn tf_for(lab: &Lab, hcl: &str) -> Tf {
    let mut tf = Tf::new(hcl);
    let pve = &lab.store(0)["pve"];
    tf.env("TF_VAR_pve_endpoint", pve["endpoint"].as_str().expect("endpoint"));
    tf.env("TF_VAR_pve_fingerprint", pve["tls_fingerprint"].as_str().expect("fingerprint"));
    tf.env("TF_VAR_bootstrap_token", pve["api_token"].as_str().expect("token"));
    // Nothing from the environment may stand in for the configured credentials.
    for v in ["EDGE_PVE_API_TOKEN", "EDGE_PVE_ROOT_PASSWORD", "EDGE_PVE_ENDPOINT", "EDGE_PVE_TLS_FINGERPRINT"] {
        tf.env(v, "");
    }
    if let Some(log) = std::env::var_os("EDGE_TEST_TF_LOG") {
        tf.env("TF_LOG_PROVIDER", "INFO");
        tf.env("TF_LOG_PATH", &log.to_string_lossy());
    }
    tf.init();
    tf
}

/// A PVE call with curl and the store's own (bootstrap) token, trusting the lab CA: the lab's
/// view, independent of Terraform and the provider.
fn pve(lab: &Lab, method: &str, path: &str) -> (bool, Value) {
    let s = &lab.store(0)["pve"];
    let auth = format!("Authorization: PVEAPIToken={}", s["api_token"].as_str().unwrap_or_default());
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(lab.dir.path().join("ca.pem"))
        .args(["-X", method, "-H", &auth])
        .arg(format!("{}/api2/json{path}", s["endpoint"].as_str().unwrap_or_default()))
        .output()
        .expect("curl");
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// The run tokens (`tf-…`) PVE lists for root@pam, by name.
fn run_tokens(lab: &Lab) -> BTreeMap<String, Value> {
    let (ok, v) = pve(lab, "GET", "/access/users/root@pam/token");
    assert!(ok, "token list: {v}");
    let list = v["data"].as_array().expect("token list is an array");
    assert!(list.iter().any(|t| t["tokenid"] == "edge"), "the bootstrap token is listed, so the list is real: {v}");
    list.iter()
        .filter_map(|t| Some((t["tokenid"].as_str()?.to_string(), t.clone())))
        .filter(|(name, _)| name.starts_with("tf-"))
        .collect()
}

/// The secrets of the run tokens as the lab stores them (its state file; the API never shows
/// a secret again).
fn lab_secrets(lab: &Lab) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(lab.dir.path().join("state.json")) else { return BTreeMap::new() };
    let Ok(st) = serde_json::from_str::<Value>(&text) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for dom in st["domains"].as_object().into_iter().flat_map(|d| d.values()) {
        for (id, t) in dom["tokens"].as_object().into_iter().flatten() {
            if let (Some(name), Some(secret)) = (id.strip_prefix("root@pam!tf-"), t["secret"].as_str()) {
                out.insert(format!("tf-{name}"), secret.to_string());
            }
        }
    }
    out
}

/// What was seen of the run tokens while Terraform ran.
#[derive(Default)]
struct Seen {
    /// Name → the token as PVE lists it.
    tokens: BTreeMap<String, Value>,
    /// Name → its secret.
    secrets: BTreeMap<String, String>,
    /// ACL entries of run tokens.
    acl: Vec<Value>,
}

/// Runs `terraform ARGS` and watches the lab while it runs.
fn watch(lab: &Lab, tf: &Tf, args: &[&str]) -> (edge_acceptance::Run, Seen) {
    let mut child = tf.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start terraform");
    let mut seen = Seen::default();
    let mut delay = Duration::from_millis(20);
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("terraform status").is_none() {
        assert!(Instant::now() < deadline, "terraform {args:?} did not end within 5 minutes");
        let now = run_tokens(lab);
        if !now.is_empty() {
            seen.secrets.extend(lab_secrets(lab));
            let (ok, acl) = pve(lab, "GET", "/access/acl");
            if ok {
                for e in acl["data"].as_array().into_iter().flatten() {
                    if e["ugid"].as_str().is_some_and(|u| u.starts_with("root@pam!tf-")) && !seen.acl.contains(e) {
                        seen.acl.push(e.clone());
                    }
                }
            }
        }
        seen.tokens.extend(now);
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("terraform output");
    let run = edge_acceptance::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, seen)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The calls the default provider makes with the run's token take a moment (a slow node), so
/// the lab can be read while the token exists.
fn slow_calls(lab: &Lab) {
    lab.admin(
        "POST",
        "/lab/faults",
        Some(&json!({"faults": [{"pattern": "^(GET /api2/json/version|POST /api2/json/cluster/backup)$", "latency_ms": 1500}]})),
    );
}

/// The saved plan and the applied state: the run's token exists while Terraform runs (30
/// minutes of expiry, privilege separation, only the ACL asked for), its secret appears in
/// neither the plan JSON nor the state file, the job is created with it, and the token is gone
/// when Terraform ends.
#[test]
fn short_lived_token_runs_plan_and_apply() {
    let lab = Lab::up(&["--net", "221"]);
    slow_calls(&lab);
    let tf = tf_for(&lab, &hcl(r#"{ path = "/", roles = ["Administrator"] }"#, "nightly"));
    assert!(run_tokens(&lab).is_empty(), "no run token before the run");

    // plan -out: the token of the plan run.
    let started = now();
    let (r, plan_seen) = watch(&lab, &tf, &["plan", "-out=tfplan", "-no-color"]);
    assert!(r.ok(), "plan failed:\n{}", r.output());
    assert!(r.output().contains("1 to add"), "{}", r.output());
    assert_eq!(plan_seen.tokens.len(), 1, "one token for the plan run: {:?}", plan_seen.tokens);
    let (name, token) = plan_seen.tokens.iter().next().expect("seen");
    assert_eq!(token["privsep"], 1, "privilege separation on: {token}");
    let expire = token["expire"].as_i64().expect("expire is set on the token");
    assert!(
        (started + 1800 - 5..=now() + 1800 + 5).contains(&expire),
        "expire {expire} is 30 minutes after the run began ({started})"
    );
    assert_eq!(
        plan_seen.acl,
        vec![
            json!({"path": "/", "type": "token", "ugid": format!("root@pam!{name}"), "roleid": "Administrator", "propagate": 1})
        ],
        "only the ACL entry asked for"
    );
    assert!(run_tokens(&lab).is_empty(), "the plan's token is gone after the plan: {:?}", run_tokens(&lab));
    let (_, acl) = pve(&lab, "GET", "/access/acl");
    assert!(!acl.to_string().contains(name.as_str()), "its ACL entry went with it: {acl}");

    // The saved plan holds no trace of the token.
    let show = tf.must(&["show", "-json", "-no-color", "tfplan"]).stdout;
    assert!(show.contains("\"edge_pbs_job\""), "the plan JSON is the plan: {show}");
    let secret = plan_seen.secrets.get(name).unwrap_or_else(|| panic!("the lab stored {name}'s secret"));
    assert!(secret.len() >= 32, "a real secret to look for: {secret:?}");
    assert!(!show.contains(secret.as_str()), "the token secret is in the plan JSON");
    assert!(!show.contains(name.as_str()), "the token id is in the plan JSON");

    // apply the saved plan: a new token for the apply run.
    let started = now();
    let (r, apply_seen) = watch(&lab, &tf, &["apply", "-no-color", "tfplan"]);
    assert!(r.ok(), "apply failed:\n{}", r.output());
    assert_eq!(apply_seen.tokens.len(), 1, "one token for the apply run: {:?}", apply_seen.tokens);
    let (apply_name, token) = apply_seen.tokens.iter().next().expect("seen");
    assert_ne!(apply_name, name, "each run mints its own token");
    let expire = token["expire"].as_i64().expect("expire");
    assert!((started + 1800 - 5..=now() + 1800 + 5).contains(&expire), "expire {expire}");
    assert!(run_tokens(&lab).is_empty(), "the apply's token is gone after the apply");
    let (ok, job) = pve(&lab, "GET", "/cluster/backup/nightly");
    assert!(ok && job["data"]["schedule"] == "sat 02:00", "the job was made with the run's token: {job}");

    let state = std::fs::read_to_string(tf.dir().join("terraform.tfstate")).expect("terraform.tfstate");
    assert!(state.contains("\"nightly\""), "the state is the applied one: {state}");
    let apply_secret = apply_seen.secrets.get(apply_name).expect("the lab stored the apply token's secret");
    for s in [secret, apply_secret] {
        assert!(!state.contains(s.as_str()), "a token secret is in terraform.tfstate");
    }
    for n in [name, apply_name] {
        assert!(!state.contains(n.as_str()), "a token id is in terraform.tfstate");
    }
    let st: Value = serde_json::from_str(&state).expect("state JSON");
    let kinds: Vec<&str> =
        st["resources"].as_array().expect("resources").iter().filter_map(|r| r["mode"].as_str()).collect();
    assert_eq!(kinds, vec!["managed"], "only the job is in state");

    // A plan afterwards (its own token again) is empty and leaves nothing behind.
    tf.assert_no_changes();
    assert!(run_tokens(&lab).is_empty());
}

/// A token whose ACL lacks the privilege: PVE's 403 reaches the user as a diagnostic naming the
/// path and privilege, nothing is created, and the token is removed all the same.
#[test]
fn a_token_without_the_privilege_gets_a_readable_403() {
    let lab = Lab::up(&["--net", "222"]);
    let tf = tf_for(&lab, &hcl(r#"{ path = "/", roles = ["PVEAuditor"] }"#, "denied"));
    let out = tf.apply_fails();
    assert!(out.contains("Cannot create the PVE backup job"), "{out}");
    assert!(out.contains("HTTP 403: Permission check failed (/, Sys.Modify)"), "{out}");
    let (ok, v) = pve(&lab, "GET", "/cluster/backup");
    assert!(ok, "{v}");
    let jobs = v["data"].as_array().expect("job list");
    assert!(!jobs.iter().any(|j| j["id"] == "denied"), "nothing was created: {v}");
    assert!(run_tokens(&lab).is_empty(), "the token is gone after the failed run: {:?}", run_tokens(&lab));

    // Refusals before anything is made: a bad configuration names its attribute.
    tf.write("main.tf", &hcl(r#"{ path = "storage", roles = [] }"#, "denied"));
    let r = tf.run(&["plan", "-no-color"]);
    assert!(!r.ok(), "{}", r.output());
    let out = r.output();
    assert!(out.contains("Invalid ACL path") && out.contains("\"storage\" is not a PVE ACL path"), "{out}");
    assert!(out.contains("No roles"), "{out}");
    assert!(run_tokens(&lab).is_empty(), "no token for a refused configuration");

    // A bootstrap credential that may not mint tokens (the read-only audit token).
    let mut tf = tf;
    tf.write("main.tf", &hcl(r#"{ path = "/", roles = ["PVEAuditor"] }"#, "denied"));
    tf.env("TF_VAR_bootstrap_token", lab.store(0)["pve"]["audit_token"].as_str().expect("audit token"));
    let r = tf.run(&["plan", "-no-color"]);
    assert!(!r.ok(), "{}", r.output());
    let out = r.output();
    assert!(out.contains("Cannot create a PVE API token for root@pam"), "{out}");
    assert!(out.contains("HTTP 403"), "{out}");
    assert!(out.contains("User.Modify"), "says what the credential lacks:\n{out}");
}

/// Terraform 1.0.3 has no `ephemeral` block: `validate` refuses it by name.
#[test]
fn ephemeral_blocks_on_terraform_1_0_3() {
    let tf = Tf::with_terraform(
        "terraform {\n  required_providers { edge = { source = \"edgeform/edge\" } }\n}\nprovider \"edge\" {}\n\
         ephemeral \"edge_pve_token\" \"run\" {\n  acl = [{ path = \"/\", roles = [\"PVEAuditor\"] }]\n}\n",
        terraform_legacy_bin(),
    );
    let r = tf.run(&["init", "-no-color"]);
    let out = if r.ok() { tf.run(&["validate", "-no-color"]).output() } else { r.output() };
    assert!(out.contains("Unsupported block type"), "{out}");
    assert!(out.contains("Blocks of type \"ephemeral\" are not expected here"), "{out}");
}
