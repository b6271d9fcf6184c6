//! Which certificate the provider accepts from a node, and with which credentials it talks to
//! it (docs/design/node-bootstrap.md):
//!
//! - a configured `tls_fingerprint` is a pin, always (a certificate accepted by hand);
//! - a node the provider just booted presents the bootstrap certificate of the seed the
//!   provider made for that boot: pinned by its fingerprint, known before the node booted;
//! - over that channel the provider learns the node's CA (`pve-root-ca.pem`, made on the node),
//!   retires the bootstrap certificate, and from then on verifies whatever the node presents
//!   against that CA and the node's address (`cluster_ca_pem`; after a join the cluster's CA):
//!   a join's new certificate or a renewal needs no re-pinning;
//! - a node known only by a fingerprint (imported, or recorded before the CA was) stays pinned.
//!
//! Anything else is refused before a credential is sent, shown in the plan, never trusted
//! silently. Every client for a node trusts exactly one of these ([`node_client`]).

use std::time::Duration;

use zeroize::Zeroizing;

use crate::clients::http::{
    parse_fingerprint, probe_certificate, ApiClient, Credentials, Presented, Product, RetryPolicy, Trust,
};
use crate::clients::poll::{poll_until, PollError, Probe};
use crate::clients::pve::PveClient;
use crate::framework::{AttrPath, Ctx, Diagnostics, PlanCtx};
use crate::provider::check_fingerprint;

use super::{diag, Node, State, PVE_PORT};

/// How a node's certificate is checked.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Trusted {
    /// Exactly this certificate (SHA-256 fingerprint).
    Pin(String),
    /// Any certificate for the node's address that this CA (PEM) signed.
    Ca(String),
}

impl Trusted {
    /// Refuses a node that presents `p`, before any credential is sent.
    pub(super) fn check(&self, name: &str, address: &str, p: &Presented) -> Result<(), Diagnostics> {
        let refused = |why: String| {
            Diagnostics::at(
                AttrPath::root("tls_fingerprint"),
                "Node certificate not trusted",
                format!("{name} ({address}) presents {}: {why}. Nothing was sent to it. If this certificate is right (someone replaced it by hand), pin it in tls_fingerprint.", p.fingerprint),
            )
        };
        match self {
            Trusted::Pin(fp) if !p.fingerprint.eq_ignore_ascii_case(fp) => {
                Err(refused(format!("the provider expects {fp} (the bootstrap certificate of the seed it made for this boot, or the pinned one)")))
            }
            Trusted::Pin(_) => Ok(()),
            Trusted::Ca(ca) => p.verify(ca, address).map_err(|e| refused(format!("not a certificate of the node's cluster CA for {address} ({e})"))),
        }
    }
}

/// The credentials for a node's API: root@pam with the node's `root_password` (configuration,
/// else the provider's `pve.root_password`) — a node installed from the image knows no token,
/// and clustering and OSDs are root@pam's alone — else the provider's API token.
pub(super) fn credentials(ctx: &Ctx, config: Option<&State>) -> Option<Credentials> {
    let pve = ctx.clients.pve.as_ref();
    let password = config.and_then(|c| c.root_password.clone()).or_else(|| pve.and_then(|p| p.root_password.clone()));
    match (password, pve.and_then(|p| p.api_token.clone())) {
        (Some(p), _) => Some(Credentials::root(&p)),
        (None, Some(t)) => Some(Credentials::Token(Zeroizing::new(t))),
        (None, None) => None,
    }
}

/// What to say when [`credentials`] found none.
pub(super) fn no_credentials() -> Diagnostics {
    Diagnostics::at(
        AttrPath::root("root_password"),
        "No credentials for the node",
        "Set root_password (write-only), or the provider's pve.root_password (EDGE_PVE_ROOT_PASSWORD): a node installed from the image knows no API token, and refresh and destroy only have the provider's.",
    )
}

/// Plan, when the node will be booted (created, re-imaged): its seed needs root's password.
pub(super) fn require_root_password(ctx: &Ctx, plan: &PlanCtx<State>, cfg: &State) -> Result<(), Diagnostics> {
    let provider_has = ctx.clients.pve.as_ref().is_some_and(|p| p.root_password.is_some());
    if cfg.root_password.is_none() && !plan.is_unknown_in_config("root_password") && !provider_has {
        return Err(Diagnostics::at(
            AttrPath::root("root_password"),
            "Missing root password",
            "A node installed from the image gets root@pam's password hash from its seed, and the provider talks to it as root@pam: set root_password (write-only) or the provider's pve.root_password.",
        ));
    }
    Ok(())
}

/// A client for the node's own API at `address`, trusting `trust` only. `quick`: one attempt
/// per call, for callers that poll themselves.
pub(super) fn node_client(
    address: &str,
    trust: &Trusted,
    creds: &Credentials,
    quick: bool,
) -> Result<PveClient, Diagnostics> {
    let trust = match trust {
        Trusted::Pin(fp) => Trust::Fingerprint(parse_fingerprint(fp).map_err(|e| diag("Invalid node fingerprint", e))?),
        Trusted::Ca(pem) => Trust::CaPem(pem.clone()),
    };
    let host =
        if address.contains(':') && !address.starts_with('[') { format!("[{address}]") } else { address.to_string() };
    let api = ApiClient::new(Product::Pve, &format!("https://{host}:{PVE_PORT}"), creds.clone(), trust)
        .map_err(|e| diag("Cannot set up the node's API client", e))?;
    let api = if quick {
        api.with_retry(RetryPolicy {
            attempts: 1,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(50),
        })
    } else {
        api
    };
    Ok(PveClient::new(api))
}

/// What the node must present when its API answers next, known beforehand: the configured pin;
/// the bootstrap certificate of the seed just booted; else what the provider trusted before
/// (an ACME certificate it ordered, the node's CA, or for older state its fingerprint). `None`:
/// nothing is known — not trusted.
pub(super) fn expected(config: &State, prior: Option<&State>, seed_fingerprint: Option<&str>) -> Option<Trusted> {
    if let Some(fp) = &config.tls_fingerprint {
        return Some(Trusted::Pin(fp.clone()));
    }
    if let Some(fp) = seed_fingerprint {
        return Some(Trusted::Pin(fp.to_string()));
    }
    let prior = prior?;
    // An ACME certificate the provider ordered and verified is pinned (its CA is not the
    // node's).
    if prior.acme.is_some() {
        if let Some(fp) = &prior.tls_fingerprint_trusted {
            return Some(Trusted::Pin(fp.clone()));
        }
    }
    prior
        .cluster_ca_pem
        .clone()
        .filter(|c| !c.is_empty())
        .map(Trusted::Ca)
        .or_else(|| prior.tls_fingerprint_trusted.clone().map(Trusted::Pin))
}

/// How a node is trusted once the provider knows its CA (and no pin is configured).
pub(super) fn by_ca(config: &State, ca: &str) -> Trusted {
    match &config.tls_fingerprint {
        Some(fp) => Trusted::Pin(fp.clone()),
        None => Trusted::Ca(ca.to_string()),
    }
}

/// After the first contact through the seed's pin: the node's CA (made on the node at install,
/// its key never left it), read over that channel; then the bootstrap certificate is retired —
/// from the next connection the node presents its own certificate, which the CA must verify.
/// Returns the CA and the fingerprint of the certificate the node presents now.
pub(super) async fn adopt_node_ca(node: &Node<'_>, pve: &PveClient) -> Result<(String, String), Diagnostics> {
    let ca = pve.root_ca(node.name).await.map_err(|e| diag("Cannot read the node's CA", e))?.ok_or_else(|| {
        Diagnostics::error("Cannot read the node's CA", format!("{} lists no pve-root-ca.pem", node.name))
    })?;
    pve.delete_custom_certificate(node.name).await.map_err(|e| diag("Cannot retire the bootstrap certificate", e))?;
    let fp = wait_presenting(node, &Trusted::Ca(ca.clone()), "its own certificate").await?;
    Ok((ca, fp))
}

/// Polls until the node presents a certificate `trust` accepts (pveproxy restarting after a
/// certificate change or a join); returns its fingerprint.
pub(super) async fn wait_presenting(node: &Node<'_>, trust: &Trusted, what: &str) -> Result<String, Diagnostics> {
    let (name, address) = (node.name, node.address);
    let backoff = node.api_backoff();
    let probe = || async move {
        match probe_certificate(address, PVE_PORT, Duration::from_secs(5)).await {
            Ok(p) => match trust.check(name, address, &p) {
                Ok(()) => Probe::Ready(p.fingerprint),
                Err(d) => Probe::NotYet(d.0.first().map(|x| x.detail.clone()).unwrap_or_default()),
            },
            Err(e) => Probe::NotYet(e.to_string()),
        }
    };
    match poll_until::<_, std::convert::Infallible, _, _>(
        node.deadline,
        &node.ctx.stop,
        &format!("{name} to present {what}"),
        backoff,
        probe,
    )
    .await
    {
        Ok(fp) => Ok(fp),
        Err(PollError::Timeout { last, .. }) => Err(Diagnostics::at(
            AttrPath::root("tls_fingerprint"),
            "Node certificate not trusted",
            format!("{name} ({address}) did not present {what} before the deadline: {last}"),
        )),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {name}"))),
        Err(PollError::Failed(never)) => match never {},
    }
}

/// Records `fingerprint` as what the node presents and what the provider trusts now.
pub(super) fn pin(st: &mut State, fingerprint: &str) {
    st.tls_fingerprint = Some(fingerprint.to_string());
    st.tls_fingerprint_trusted = Some(fingerprint.to_string());
}

/// Refresh: records the certificate the node presents now and returns how to read its API.
/// `None` — keep the last known configuration — when the node does not answer or presents a
/// certificate the provider does not trust (the plan then shows the drift). A certificate the
/// node's CA signed is not drift: it is what the provider trusts from now on.
pub(super) async fn read(st: &mut State, name: &str, address: &str, warnings: &mut Diagnostics) -> Option<Trusted> {
    let seen = match probe_certificate(address, PVE_PORT, Duration::from_secs(5)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(node = %name, error = %e, "node API not reachable; keeping the last known configuration");
            warnings.warn_at(
                AttrPath::root("address"),
                "Node unreachable: not refreshed",
                format!("{name}'s API ({address}) does not answer: {e}. Kept the last known configuration; drift on this node shows once it answers again."),
            );
            return None;
        }
    };
    st.tls_fingerprint = Some(seen.fingerprint.clone());
    // The certificate accepted last time (a configured pin included), else whatever the
    // recorded trust accepts (the node's CA signed a new one).
    let same = st.tls_fingerprint_trusted.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(&seen.fingerprint));
    let trust = if same {
        Trusted::Pin(seen.fingerprint.clone())
    } else {
        let t = expected(&State::default(), Some(st), None)?;
        if let Err(d) = t.check(name, address, &seen) {
            tracing::warn!(node = %name, reason = %d.0[0].detail, "node presents a certificate the provider does not trust");
            warnings.warn_at(
                AttrPath::root("tls_fingerprint"),
                "Node not refreshed: certificate not trusted",
                format!("{} Nothing was read through it; the plan shows the certificate change.", d.0[0].detail),
            );
            return None;
        }
        t
    };
    st.tls_fingerprint_trusted = Some(seen.fingerprint);
    Some(trust)
}

/// Plan, when what the node presents after apply cannot be known now (a create, a node that
/// comes back, maybe rebuilt): the fingerprints, the CA and what the seed gives are unknown,
/// unless a pin is configured.
pub(super) fn plan_unknown(plan: &mut PlanCtx<State>, cfg: &State) -> Result<(), Diagnostics> {
    if cfg.tls_fingerprint.is_none() {
        plan.set_unknown("tls_fingerprint")?;
    }
    for a in ["tls_fingerprint_trusted", "cluster_ca_pem", "seed_sha256", "ssh_host_key"] {
        plan.set_unknown(a)?;
    }
    Ok(())
}

/// Plan: a node presenting a certificate the provider does not trust is drift (planned back to
/// the trusted one); a newly configured pin becomes the trusted one.
pub(super) fn plan_drift(plan: &mut PlanCtx<State>, cfg: &State, prior: &State) -> Result<(), Diagnostics> {
    if cfg.tls_fingerprint.is_none() {
        if let (Some(seen), Some(trusted)) = (&prior.tls_fingerprint, &prior.tls_fingerprint_trusted) {
            if !seen.eq_ignore_ascii_case(trusted) {
                plan.set("tls_fingerprint", trusted)?;
            }
        }
    } else if cfg.tls_fingerprint != prior.tls_fingerprint_trusted {
        plan.set("tls_fingerprint_trusted", &cfg.tls_fingerprint)?;
    }
    Ok(())
}

/// Plan-time checks: fingerprints are SHA-256 in PVE's spelling; a BMC is pinned or insecure,
/// not both.
pub(super) fn validate(c: &State, d: &mut Diagnostics) {
    for (path, fp) in [
        (AttrPath::root("tls_fingerprint"), c.tls_fingerprint.as_ref()),
        (AttrPath::root("bmc").attr("tls_fingerprint"), c.bmc.as_ref().and_then(|b| b.tls_fingerprint.as_ref())),
        (AttrPath::root("cluster").attr("fingerprint"), c.cluster.as_ref().and_then(|b| b.fingerprint.as_ref())),
    ] {
        if let Some(fp) = fp {
            if let Err(m) = check_fingerprint(fp) {
                d.error_at(path, "Invalid TLS fingerprint", m);
            }
        }
    }
    if let Some(b) = &c.bmc {
        if b.tls_fingerprint.is_some() && b.insecure == Some(true) {
            d.error_at(
                AttrPath::root("bmc").attr("insecure"),
                "Conflicting TLS settings",
                "Set tls_fingerprint or insecure = true, not both.",
            );
        }
    }
    if let Some(pw) = &c.root_password {
        if pw.chars().count() < 16 {
            d.error_at(
                AttrPath::root("root_password"),
                "Root password too short",
                "Use at least 16 characters: the seed carries its hash to the node over the BMC's media path.",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";
    const B: &str = "11:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    #[test]
    fn what_a_node_must_present() {
        let prior =
            State { cluster_ca_pem: Some("CA".into()), tls_fingerprint_trusted: Some(A.into()), ..Default::default() };
        let pinned = State { tls_fingerprint: Some(B.into()), ..Default::default() };
        assert_eq!(expected(&pinned, Some(&prior), Some(A)), Some(Trusted::Pin(B.into())), "configured: always");
        assert_eq!(expected(&State::default(), Some(&prior), Some(B)), Some(Trusted::Pin(B.into())), "a new seed");
        assert_eq!(
            expected(&State::default(), Some(&prior), None),
            Some(Trusted::Ca("CA".into())),
            "its CA after that"
        );
        let old = State { tls_fingerprint_trusted: Some(A.into()), ..Default::default() };
        assert_eq!(expected(&State::default(), Some(&old), None), Some(Trusted::Pin(A.into())), "no CA recorded");
        assert_eq!(expected(&State::default(), None, None), None, "nothing known: no trust on first use");
    }

    #[test]
    fn a_pinned_certificate_or_nothing() {
        let p = |fp: &str| Presented::for_tests(fp);
        assert!(
            Trusted::Pin(A.into()).check("pve1", "10.0.0.1", &p(&A.to_lowercase())).is_ok(),
            "case does not matter"
        );
        let refused = Trusted::Pin(A.into()).check("pve1", "10.0.0.1", &p(B)).unwrap_err();
        assert_eq!(refused.0[0].summary, "Node certificate not trusted");
        assert!(refused.0[0].detail.contains(B) && refused.0[0].detail.contains(A), "{}", refused.0[0].detail);
        let mut st = State::default();
        pin(&mut st, A);
        assert_eq!((st.tls_fingerprint.as_deref(), st.tls_fingerprint_trusted.as_deref()), (Some(A), Some(A)));
    }

    #[test]
    fn short_root_passwords_are_refused_at_plan() {
        let mut d = Diagnostics::new();
        validate(&State { root_password: Some("short".into()), ..Default::default() }, &mut d);
        assert_eq!(
            d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect::<Vec<_>>(),
            ["root_password"]
        );
    }
}
