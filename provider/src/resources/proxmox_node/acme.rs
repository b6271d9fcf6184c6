//! The optional `acme` block of `edge_proxmox_node`: the node's ACME
//! settings as PVE keeps them in `/etc/pve/nodes/{node}/config` (`acme: account=…` plus one
//! `acmedomainN: domain=…,plugin=…[,alias=…]` per domain, N = 0..5), and the certificate order
//! (`POST /nodes/{node}/certificates/acme/certificate`, an `acmenewcert` task).
//!
//! The resource (`mod.rs`) adds [`schema_block`] to its schema and an `acme: Option<Acme>`
//! field to its state, and calls [`validate_config`], [`converge`] after the Ceph step and
//! [`read`] in refresh.
//!
//! Trust across the order: an issued certificate replaces the node's API certificate, so the
//! fingerprint the provider pinned stops matching. The provider caused that change, but a
//! fingerprint seen on the wire after it proves nothing by itself (anyone in the path could
//! present one). So the new certificate is accepted only if it verifies, before any credential
//! is sent, as a WebPKI certificate for an ordered domain name chaining to the ACME CA's root
//! (`ca_pem`), connecting to the node's own address; only then is its fingerprint pinned and the
//! order's task confirmed through a client pinned to it. Without a CA root nothing is ordered.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clients::http::fingerprint_of;
use crate::clients::poll::{poll_until, Backoff, PollError, Probe};
use crate::clients::pve::{
    CertificateInfo, NodeConfig, NodeConfigUpdate, PveClient, ACME_DOMAIN_SLOTS, PROXY_CERT_FILE,
};
use crate::clients::ClientError;
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, NestedBlock, Nesting, Type, Value};
use crate::provider::ACME_CA_PEM_ENV;

use super::{diag, trust, Node, State, PVE_PORT};

/// PVE's node config has `acmedomain0` … `acmedomain5`.
pub const MAX_DOMAINS: usize = ACME_DOMAIN_SLOTS;
/// Renew when the installed certificate expires within this many days (PVE's own rule).
const RENEW_DAYS: i64 = 30;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// ACME account (`/cluster/acme/account/{name}`); PVE's default is `default`.
    pub account: Option<String>,
    pub domains: Option<Vec<AcmeDomain>>,
    /// PEM of the root the ACME CA's certificates chain to (not read back from the node).
    pub ca_pem: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeDomain {
    pub domain: Option<String>,
    /// ACME plugin id (`/cluster/acme/plugins`); PVE's default is `standalone` (HTTP-01).
    pub plugin: Option<String>,
    /// DNS alias for the challenge (`_acme-challenge` CNAME target).
    pub alias: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Verify(String),
}

/// What [`configure_acme`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Config and certificate were already as wanted.
    Unchanged,
    /// Only the node config changed; the installed certificate already covers the domains.
    Configured,
    /// A certificate was ordered and installed; the node now presents `fingerprint`, which was
    /// verified against `ca_pem` — the caller pins it (`tls_fingerprint[_trusted]`).
    Ordered { fingerprint: String },
}

/// The block for the resource's schema: `acme { account, ca_pem, domains = [{ … }] }`.
pub fn schema_block() -> NestedBlock {
    NestedBlock::single(
        "acme",
        Block::new("A certificate for the node's API from an ACME CA (PVE's node ACME settings). The account and DNS plugins are cluster-wide PVE objects (`/cluster/acme/…`) and must exist. Ordering replaces the node's API certificate: the provider verifies the new one against `ca_pem` for an ordered domain before it pins its fingerprint, and never trusts an unverified one.")
            .attr(Attribute::optional("account", Type::String).default(Value::String("default".into())).describe("ACME account name; default `default`."))
            .attr(
                Attribute::nested(
                    "domains",
                    Nesting::List,
                    vec![
                        Attribute::required("domain", Type::String).describe("Domain name for the certificate."),
                        Attribute::optional("plugin", Type::String).describe("ACME plugin id; default `standalone` (HTTP-01 on port 80)."),
                        Attribute::optional("alias", Type::String).describe("Domain to validate the DNS challenge through (CNAME alias)."),
                    ],
                )
                .make_required()
                .describe("Up to six domains (PVE's acmedomain0..5); the first is the certificate's subject."),
            )
            .attr(Attribute::optional("ca_pem", Type::String).describe("Root certificate (PEM) of the ACME CA, to verify the ordered certificate before it is pinned (e.g. ISRG Root X1 for Let's Encrypt); default: $EDGE_ACME_CA_PEM.")),
    )
}

/// Plan-time checks of the `acme` block, and its one conflict with the resource's settings.
pub(super) fn validate_config(c: &State, d: &mut Diagnostics) {
    let Some(a) = &c.acme else { return };
    validate(a, d);
    if c.tls_fingerprint.is_some() {
        d.error_at(
            AttrPath::root("tls_fingerprint"),
            "Conflicting TLS settings",
            "With an acme block the provider pins the certificate it orders (verified against acme.ca_pem); leave tls_fingerprint out.",
        );
    }
}

/// Plan-time checks of the block itself.
pub fn validate(acme: &Acme, d: &mut Diagnostics) {
    let root = AttrPath::root("acme");
    let domains = acme.domains.as_deref().unwrap_or_default();
    if domains.is_empty() || domains.len() > MAX_DOMAINS {
        d.error_at(
            root.clone().attr("domains"),
            "Invalid ACME domains",
            format!("Give 1 to {MAX_DOMAINS} domains (PVE's acmedomain0..5)."),
        );
    }
    for (i, dom) in domains.iter().enumerate() {
        if let Some(name) = &dom.domain {
            if !is_domain(name) {
                d.error_at(
                    root.clone().attr("domains").index(i).attr("domain"),
                    "Invalid ACME domain",
                    format!(
                        "{name:?} is not a domain name a certificate can be ordered for: use a fully qualified \
                         name such as \"pve1.example.com\" (or \"*.example.com\"): dot-separated labels of letters, \
                         digits, '-' and '_'."
                    ),
                );
            }
        }
    }
}

fn is_domain(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.starts_with(|c: char| c.is_ascii_alphanumeric())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

// --- node config ---------------------------------------------------------------------------

fn domain_entry(d: &AcmeDomain) -> String {
    let mut s = format!("domain={}", d.domain.as_deref().unwrap_or_default());
    if let Some(p) = &d.plugin {
        s.push_str(&format!(",plugin={p}"));
    }
    if let Some(a) = &d.alias {
        s.push_str(&format!(",alias={a}"));
    }
    s
}

/// The node config keys the block stands for.
pub fn config_entries(acme: &Acme) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("acme".to_string(), format!("account={}", acme.account.as_deref().unwrap_or("default")));
    for (i, d) in acme.domains.iter().flatten().enumerate().take(MAX_DOMAINS) {
        m.insert(format!("acmedomain{i}"), domain_entry(d));
    }
    m
}

/// Parses PVE's `acme` and `acmedomainN` properties (both spellings: `domain=x` or plain `x`;
/// the legacy `acme: domains=a;b` list counts as standalone domains). `None` when the node has
/// no ACME settings at all.
pub fn parse_config(cfg: &NodeConfig) -> Option<Acme> {
    let mut account = None;
    let mut domains = Vec::new();
    let mut any = false;
    if let Some(a) = cfg.acme.as_deref() {
        any = true;
        for part in a.split(',') {
            match part.split_once('=') {
                Some(("account", v)) => account = Some(v.to_string()),
                Some(("domains", v)) => domains.extend(
                    v.split(';')
                        .filter(|x| !x.is_empty())
                        .map(|x| AcmeDomain { domain: Some(x.into()), ..Default::default() }),
                ),
                _ => {}
            }
        }
    }
    for i in 0..MAX_DOMAINS {
        let Some(e) = cfg.acme_domain(i) else { continue };
        any = true;
        let mut d = AcmeDomain::default();
        for part in e.split(',') {
            match part.split_once('=') {
                Some(("domain", v)) => d.domain = Some(v.into()),
                Some(("plugin", v)) => d.plugin = Some(v.into()),
                Some(("alias", v)) => d.alias = Some(v.into()),
                Some(_) => {}
                None => d.domain = Some(part.into()),
            }
        }
        domains.push(d);
    }
    any.then(|| Acme {
        account: Some(account.unwrap_or_else(|| "default".into())),
        domains: Some(domains),
        ..Default::default()
    })
}

/// The `PUT /nodes/{node}/config` body that turns `current` into `want` (with the config's
/// digest, so a concurrent edit fails instead of being overwritten), or `None` if equal.
pub fn config_update(current: &NodeConfig, want: &Acme) -> Option<NodeConfigUpdate> {
    let wanted = config_entries(want);
    let mut body = NodeConfigUpdate::default();
    let mut changed = false;
    if let Some(account) = wanted.get("acme").filter(|a| current.acme.as_deref() != Some(a.as_str())) {
        body.acme = Some(account.clone());
        changed = true;
    }
    let mut stale = Vec::new();
    for i in 0..MAX_DOMAINS {
        match wanted.get(&format!("acmedomain{i}")) {
            Some(d) if current.acme_domain(i) != Some(d.as_str()) => {
                body.set_acme_domain(i, d.clone());
                changed = true;
            }
            None if current.acme_domain(i).is_some() => stale.push(format!("acmedomain{i}")),
            _ => {}
        }
    }
    if !changed && stale.is_empty() {
        return None;
    }
    if !stale.is_empty() {
        body.delete = Some(stale.join(","));
    }
    body.digest = current.digest.clone();
    Some(body)
}

/// Refresh: the `acme` block as the node has it (see [`read_acme`]); `ca_pem` stays as it was.
pub(super) async fn read(pve: &PveClient, node: &str, st: &mut State) -> Result<(), Diagnostics> {
    if let Some(prior) = st.acme.clone() {
        let read = read_acme(pve, node).await.map_err(|e| diag("Cannot read the ACME settings", e))?;
        st.acme = read.map(|a| Acme { ca_pem: prior.ca_pem, ..a });
    }
    Ok(())
}

/// The node's ACME settings as they are in effect; `None` when it has none. `domains` reads
/// back only while the installed certificate covers them and is not due for renewal (30
/// days), so a missing, foreign or expiring certificate shows as a diff and the next apply
/// orders. `ca_pem` is not stored on the node: the caller keeps it from state.
pub async fn read_acme(pve: &PveClient, node: &str) -> Result<Option<Acme>, ClientError> {
    let cfg = pve.node_config(node).await?;
    let Some(mut acme) = parse_config(&cfg) else { return Ok(None) };
    let info = pve.certificates(node).await?;
    let names: Vec<String> = acme.domains.iter().flatten().filter_map(|d| d.domain.clone()).collect();
    if needs_order(&info, &names, unix_now()) {
        acme.domains = None;
    }
    Ok(Some(acme))
}

/// Whether an apply with `want` may order a certificate (and so change the node's
/// fingerprint) given what `prior` read back: then the plan marks `tls_fingerprint` and
/// `tls_fingerprint_trusted` unknown.
pub fn may_order(prior: Option<&Acme>, want: Option<&Acme>) -> bool {
    let Some(want) = want else { return false };
    let key = |a: &Acme| (a.account.clone().unwrap_or_else(|| "default".into()), a.domains.clone());
    prior.is_none_or(|p| key(p) != key(want))
}

// --- the certificate -----------------------------------------------------------------------

/// Whether the installed `pveproxy-ssl.pem` (from `certificates/info`) covers every wanted
/// domain and is valid for more than [`RENEW_DAYS`] from `now`.
pub fn needs_order(info: &[CertificateInfo], want: &[String], now: i64) -> bool {
    let Some(cert) = info.iter().find(|c| c.filename == PROXY_CERT_FILE) else { return true };
    let covered = want.iter().all(|d| cert.dns_names().any(|s| s.eq_ignore_ascii_case(d)));
    let fresh = cert.notafter.is_some_and(|t| t > now + RENEW_DAYS * 86_400);
    !(covered && fresh)
}

/// The installed ACME certificate's fingerprint, if there is one.
pub fn installed_fingerprint(info: &[CertificateInfo]) -> Option<String> {
    info.iter().find(|c| c.filename == PROXY_CERT_FILE).and_then(|c| c.fingerprint.clone())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The ACME step of converge: [`configure_acme`], and the certificate it ordered (verified)
/// pinned in the state.
pub(super) async fn converge(node: &Node<'_>, pve: &PveClient, acme: &Acme, st: &mut State) -> Result<(), Diagnostics> {
    let outcome = configure_acme(node, pve, acme)
        .await
        .map_err(|e| Diagnostics::at(AttrPath::root("acme"), "ACME certificate", e.to_string()))?;
    if let Outcome::Ordered { fingerprint } = outcome {
        trust::pin(st, &fingerprint);
    }
    Ok(())
}

/// Sets the node's ACME config and orders a certificate when the installed one does not cover
/// the domains (or expires within 30 days). `pve` is pinned to the node's current certificate.
pub(super) async fn configure_acme(target: &Node<'_>, pve: &PveClient, acme: &Acme) -> Result<Outcome, AcmeError> {
    let (node, address, deadline, stop) = (target.name, target.address, target.deadline, &target.ctx.stop);
    let current = pve.node_config(node).await?;
    let mut outcome = Outcome::Unchanged;
    if let Some(body) = config_update(&current, acme) {
        tracing::info!(%node, "setting the node's ACME config");
        pve.set_node_config(node, &body).await?;
        outcome = Outcome::Configured;
    }
    let want: Vec<String> = acme.domains.iter().flatten().filter_map(|d| d.domain.clone()).collect();
    let info = pve.certificates(node).await?;
    if !needs_order(&info, &want, unix_now()) {
        return Ok(outcome);
    }
    // Without a root to verify against, the certificate about to be ordered could never be
    // trusted: refuse before changing anything on the node.
    let ca_pem = acme.ca_pem.clone().or_else(|| target.ctx.clients.settings.acme_ca_pem.clone()).ok_or_else(|| {
        AcmeError::Config(format!(
            "set acme.ca_pem (or {ACME_CA_PEM_ENV}) to the ACME CA's root certificate: the provider verifies the certificate it orders against it before trusting the node's new fingerprint"
        ))
    })?;
    let force = info.iter().any(|c| c.filename == PROXY_CERT_FILE);
    tracing::info!(%node, domains = ?want, "ordering an ACME certificate");
    let upid = pve.order_certificate(node, force).await?;
    // The node swaps its certificate at the end of the task: a status poll over a new
    // connection then no longer trusts it (not the pinned one, not the node CA's). That is
    // expected; anything else is an error.
    match pve.wait_task(&upid, deadline, stop).await {
        Ok(()) => {}
        Err(e) if e.is_untrusted_certificate() => {}
        Err(e) => return Err(e.into()),
    }
    let verify_name =
        want.iter().find(|d| !d.starts_with("*.")).cloned().unwrap_or_else(|| want[0].replacen('*', "edge-verify", 1));
    let fingerprint = verified_fingerprint(address, &verify_name, &ca_pem, deadline, stop).await?;
    // Now that the certificate is verified, credentials may go to it: confirm the order.
    let fresh = trust::node_client(
        address,
        &trust::Trusted::Pin(fingerprint.clone()),
        target.creds().map_err(|d| AcmeError::Verify(format!("{:?}", d.0)))?,
        false,
    )
    .map_err(|d| AcmeError::Verify(format!("{:?}", d.0)))?;
    fresh.wait_task(&upid, deadline, stop).await?;
    let info = fresh.certificates(node).await?;
    if installed_fingerprint(&info).as_deref().map(str::to_ascii_uppercase) != Some(fingerprint.to_ascii_uppercase()) {
        return Err(AcmeError::Verify(format!(
            "{node} presents {fingerprint}, but its certificate list says {:?} is installed",
            installed_fingerprint(&info)
        )));
    }
    tracing::info!(%node, %fingerprint, "ACME certificate installed and verified; pinning it");
    Ok(Outcome::Ordered { fingerprint })
}

/// Connects to `address`:8006 verifying the presented chain against `ca_pem` for the name
/// `domain` (WebPKI, like a browser would for `https://domain:8006`), without sending any
/// credentials, and returns the leaf's SHA-256 fingerprint. Polls briefly: pveproxy restarts
/// after the order.
async fn verified_fingerprint(
    address: &str,
    domain: &str,
    ca_pem: &str,
    deadline: Instant,
    stop: &CancellationToken,
) -> Result<String, AcmeError> {
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes())
        .map_err(|e| AcmeError::Config(format!("acme.ca_pem is not a PEM certificate: {e}")))?;
    let ip: std::net::IpAddr = match address.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((address, PVE_PORT))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| AcmeError::Verify(format!("cannot resolve {address}")))?,
    };
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(domain, SocketAddr::new(ip, PVE_PORT))
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| AcmeError::Config(format!("verification client: {e}")))?;
    let url = format!("https://{domain}:{PVE_PORT}/api2/json/version");
    let (client, url) = (&client, &url);
    let probe = move || async move {
        match client.get(url).send().await {
            // Any HTTP status will do (no credentials were sent): the handshake verified.
            Ok(resp) => match resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|t| t.peer_certificate()) {
                Some(der) => Probe::Ready(fingerprint_of(der)),
                None => Probe::NotYet("no peer certificate".to_string()),
            },
            Err(e) => Probe::NotYet(format!("{e:?}")),
        }
    };
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let outcome: Result<String, PollError<Infallible>> =
        poll_until(deadline, stop, &format!("{domain}'s new certificate"), backoff, probe).await;
    match outcome {
        Ok(fp) => Ok(fp),
        Err(PollError::Timeout { last, .. }) => Err(AcmeError::Verify(format!(
            "{address} does not present a certificate for {domain} that chains to acme.ca_pem: {last}. Not trusting it."
        ))),
        Err(PollError::Cancelled) => Err(AcmeError::Verify("cancelled".into())),
        Err(PollError::Failed(never)) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> NodeConfig {
        serde_json::from_value(v).expect("node config")
    }

    fn cert(v: serde_json::Value) -> CertificateInfo {
        serde_json::from_value(v).expect("certificate info")
    }

    fn dom(d: &str, p: Option<&str>) -> AcmeDomain {
        AcmeDomain { domain: Some(d.into()), plugin: p.map(Into::into), alias: None }
    }

    #[test]
    fn config_round_trips_through_pve_spelling() {
        let a = Acme {
            account: Some("prod".into()),
            domains: Some(vec![dom("pve1.store1.example", Some("dns1")), dom("pve1.example", None)]),
            ..Default::default()
        };
        let e = config_entries(&a);
        assert_eq!(e["acme"], "account=prod");
        assert_eq!(e["acmedomain0"], "domain=pve1.store1.example,plugin=dns1");
        assert_eq!(e["acmedomain1"], "domain=pve1.example");
        let c = cfg(serde_json::to_value(&e).expect("json"));
        assert_eq!(parse_config(&c), Some(Acme { ca_pem: None, ..a.clone() }));
        assert!(
            !may_order(Some(&a), Some(&Acme { ca_pem: Some("pem".into()), ..a.clone() })),
            "ca_pem alone orders nothing"
        );
        assert!(may_order(Some(&Acme { domains: None, ..a.clone() }), Some(&a)), "certificate missing or due");
        assert!(may_order(None, Some(&a)) && !may_order(Some(&a), None));
        // PVE's other spellings: default key, legacy domain list, default account.
        let c = cfg(json!({"acme": "domains=a.example;b.example", "acmedomain2": "c.example,alias=x.example"}));
        let p = parse_config(&c).expect("acme");
        assert_eq!(p.account.as_deref(), Some("default"));
        let names: Vec<_> = p.domains.iter().flatten().map(|d| d.domain.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["a.example", "b.example", "c.example"]);
        assert_eq!(p.domains.as_ref().map(|d| d[2].alias.clone()), Some(Some("x.example".into())));
        assert_eq!(parse_config(&cfg(json!({"description": "x", "digest": "d"}))), None);
    }

    #[test]
    fn update_sets_what_differs_and_deletes_stale_domains() {
        let want = Acme { domains: Some(vec![dom("a.example", Some("dns1"))]), ..Default::default() };
        let current = cfg(json!({"acme": "account=default", "acmedomain0": "domain=a.example,plugin=dns1",
                             "acmedomain1": "domain=old.example", "digest": "abc"}));
        let body = config_update(&current, &want).expect("a change");
        assert_eq!(body.delete.as_deref(), Some("acmedomain1"));
        assert_eq!(body.digest.as_deref(), Some("abc"));
        assert!(body.acmedomain0.is_none() && body.acme.is_none(), "{body:?}");
        let same =
            cfg(json!({"acme": "account=default", "acmedomain0": "domain=a.example,plugin=dns1", "digest": "x"}));
        assert_eq!(config_update(&same, &want), None);
        let other = Acme { account: Some("prod".into()), ..want.clone() };
        let body = config_update(&same, &other).expect("account changes");
        assert_eq!(serde_json::to_value(&body).unwrap(), json!({"acme": "account=prod", "digest": "x"}));
    }

    #[test]
    fn orders_only_when_the_installed_certificate_does_not_do() {
        let now = 1_800_000_000;
        let want = vec!["pve1.example".to_string()];
        let base = cert(json!({"filename": "pve-ssl.pem", "san": ["DNS:pve1"], "notafter": now + 10 * 365 * 86_400}));
        assert!(needs_order(std::slice::from_ref(&base), &want, now), "no ACME certificate yet");
        let ok = cert(json!({"filename": "pveproxy-ssl.pem", "san": ["DNS:pve1.example", "IP Address:10.0.0.1"],
                        "notafter": now + 80 * 86_400, "fingerprint": "AA:BB"}));
        assert!(!needs_order(&[base.clone(), ok.clone()], &want, now));
        assert_eq!(installed_fingerprint(&[base.clone(), ok]).as_deref(), Some("AA:BB"));
        let expiring =
            cert(json!({"filename": "pveproxy-ssl.pem", "san": ["DNS:pve1.example"], "notafter": now + 10 * 86_400}));
        assert!(needs_order(&[expiring], &want, now), "renewed within 30 days of expiry");
        let other =
            cert(json!({"filename": "pveproxy-ssl.pem", "san": ["DNS:other.example"], "notafter": now + 80 * 86_400}));
        assert!(needs_order(&[other], &want, now), "a new domain needs a new certificate");
    }

    #[test]
    fn validation_names_the_bad_domain() {
        let a = Acme { domains: Some(vec![dom("ok.example", None), dom("not_a domain", None)]), ..Default::default() };
        let mut d = Diagnostics::new();
        validate(&a, &mut d);
        let paths: Vec<String> = d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect();
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert!(paths[0].contains("domains") && paths[0].contains('1'), "{paths:?}");
        let mut d = Diagnostics::new();
        validate(&Acme::default(), &mut d);
        assert!(!d.0.is_empty(), "at least one domain");
        assert!(is_domain("*.store1.example") && !is_domain("localhost"));
    }

    #[test]
    fn fingerprints_are_pve_spelled() {
        let fp = fingerprint_of(b"x");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.chars().all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    #[test]
    fn the_schema_block_is_a_single_acme_block() {
        let b = schema_block();
        assert_eq!(b.name, "acme");
    }
}
