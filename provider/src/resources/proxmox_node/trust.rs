//! Which TLS certificate the provider accepts from a node, and when. The rule today:
//!
//! - a configured `tls_fingerprint` is the pin, always;
//! - otherwise the certificate a node presents after the provider booted it (a fresh image
//!   makes a new one) is learned and pinned, and one the provider trusted before is held to;
//! - any other certificate later is drift: refused before a credential is sent, shown in the
//!   plan, never trusted silently. (The one exception, an ACME order the provider made and
//!   verified, re-pins through [`pin`] from `acme.rs`.)
//!
//! Every API client for a node is pinned to exactly one fingerprint ([`node_client`]).

use std::time::Duration;

use zeroize::Zeroizing;

use crate::clients::http::{parse_fingerprint, ApiClient, Credentials, Product, RetryPolicy, Trust};
use crate::clients::pve::PveClient;
use crate::clients::redfish::probe_fingerprint;
use crate::framework::{AttrPath, Ctx, Diagnostics, PlanCtx};
use crate::provider::check_fingerprint;

use super::{diag, State, PVE_PORT};

/// A client for the node's own API, trusting exactly `fingerprint`, with the provider's PVE
/// token (a fresh node accepts the store's token; after a join the cluster's, which is the same).
/// `quick`: one attempt per call, for callers that poll themselves.
pub(super) fn node_client(ctx: &Ctx, address: &str, fingerprint: &str, quick: bool) -> Result<PveClient, Diagnostics> {
    let token = ctx.clients.pve.as_ref().and_then(|p| p.api_token.clone()).ok_or_else(|| {
        Diagnostics::error(
            "PVE token not configured",
            "edge_proxmox_node talks to each node with the provider's pve.api_token (or EDGE_PVE_API_TOKEN).",
        )
    })?;
    let fp = parse_fingerprint(fingerprint).map_err(|e| diag("Invalid node fingerprint", e))?;
    let host =
        if address.contains(':') && !address.starts_with('[') { format!("[{address}]") } else { address.to_string() };
    let api = ApiClient::new(
        Product::Pve,
        &format!("https://{host}:{PVE_PORT}"),
        Credentials::Token(Zeroizing::new(token)),
        Trust::Fingerprint(fp),
    )
    .map_err(|e| diag("Cannot set up the node's API client", e))?;
    // While waiting for a node the caller polls itself; one attempt per poll is enough.
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

/// The fingerprint a node must present when its API comes up, if one is known beforehand: the
/// configured one; else, unless the provider just booted an image (which makes a new
/// certificate), the one it trusted before.
pub(super) fn expected(config: &State, prior: Option<&State>, booted_image: bool) -> Option<String> {
    config.tls_fingerprint.clone().or_else(|| {
        if booted_image {
            None
        } else {
            prior.and_then(|p| p.tls_fingerprint_trusted.clone())
        }
    })
}

/// Refuses a node that presents `seen` while `pin` is expected, before any credential is sent.
pub(super) fn check(name: &str, address: &str, seen: &str, pin: Option<&str>) -> Result<(), Diagnostics> {
    match pin {
        Some(p) if !seen.eq_ignore_ascii_case(p) => Err(Diagnostics::at(
            AttrPath::root("tls_fingerprint"),
            "Node certificate does not match",
            format!("{name} ({address}) presents {seen}, but {p} is pinned. Not trusting it."),
        )),
        _ => Ok(()),
    }
}

/// Records `fingerprint` as both what the node presents and what the provider trusts.
pub(super) fn pin(st: &mut State, fingerprint: &str) {
    st.tls_fingerprint = Some(fingerprint.to_string());
    st.tls_fingerprint_trusted = Some(fingerprint.to_string());
}

/// Refresh: records the certificate the node presents now and returns the fingerprint to read
/// its API through. `None` — keep the last known configuration — when the node does not answer
/// or presents another certificate than the trusted one (the plan then shows the drift).
pub(super) async fn read(st: &mut State, name: &str, address: &str) -> Option<String> {
    let seen = match probe_fingerprint(address, PVE_PORT, Duration::from_secs(5)).await {
        Ok(fp) => fp,
        Err(e) => {
            tracing::warn!(node = %name, error = %e, "node API not reachable; keeping the last known configuration");
            return None;
        }
    };
    st.tls_fingerprint = Some(seen.clone());
    let trusted = st.tls_fingerprint_trusted.clone().unwrap_or_else(|| seen.clone());
    if !seen.eq_ignore_ascii_case(&trusted) {
        tracing::warn!(node = %name, %seen, %trusted, "node presents another certificate than the trusted one");
        return None;
    }
    Some(trusted)
}

/// Plan, when what the node presents after apply cannot be known now (a create, a node that
/// comes back): both fingerprints are unknown, unless one is configured.
pub(super) fn plan_unknown(plan: &mut PlanCtx<State>, cfg: &State) {
    if cfg.tls_fingerprint.is_none() {
        plan.set_unknown("tls_fingerprint");
    }
    plan.set_unknown("tls_fingerprint_trusted");
}

/// Plan: a node presenting another certificate than the trusted one is drift (planned back to
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";
    const B: &str = "11:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    #[test]
    fn the_pin_is_configured_or_learned() {
        let prior = State { tls_fingerprint_trusted: Some(A.into()), ..Default::default() };
        let pinned = State { tls_fingerprint: Some(B.into()), ..Default::default() };
        assert_eq!(expected(&pinned, Some(&prior), true).as_deref(), Some(B), "configured: always");
        assert_eq!(expected(&State::default(), Some(&prior), false).as_deref(), Some(A), "held to what was trusted");
        assert_eq!(expected(&State::default(), Some(&prior), true), None, "a fresh image: learned");
        assert_eq!(expected(&State::default(), None, false), None);
    }

    #[test]
    fn another_certificate_is_refused() {
        assert!(check("pve1", "10.0.0.1", A, None).is_ok());
        assert!(check("pve1", "10.0.0.1", &A.to_lowercase(), Some(A)).is_ok(), "case does not matter");
        let refused = check("pve1", "10.0.0.1", B, Some(A)).unwrap_err();
        assert_eq!(refused.0[0].summary, "Node certificate does not match");
        let mut st = State::default();
        pin(&mut st, A);
        assert_eq!((st.tls_fingerprint.as_deref(), st.tls_fingerprint_trusted.as_deref()), (Some(A), Some(A)));
    }
}
