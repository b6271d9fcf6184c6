//! Steps 1–3, the machine: verify the signed image, make the node's seed and boot both through
//! the BMC (the seed as the removable medium, the image as the CD, one-time boot override,
//! power), wait for the node's API; and the decisions around them — re-image on an image change,
//! power drift (on from the installed disk, never the installer), and disaster recovery (a node
//! that stays silent after a power-on from its disk is blank and is re-imaged with a new seed).
//! Everything looks at the BMC first, so a re-run never boots a node twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clients::http::probe_certificate;
use crate::clients::image::{self, VerifiedImage};
use crate::clients::poll::{poll_until, PollError, Probe};
use crate::clients::redfish::{BmcTrust, Device, RedfishClient, RedfishError};
use crate::clients::seed_server::{Published, SeedServer};
use crate::clients::ApiErrorKind;
use crate::framework::timeouts::parse_duration;
use crate::framework::{AttrPath, Ctx, Diagnostics, PlanCtx};

use super::trust::{self, Trusted};
use super::{diag, req, seed, Image, Node, State, PVE_PORT};

/// How long a node's API may keep answering after its BMC reports it off.
const API_GONE_WITHIN: Duration = Duration::from_secs(120);
/// How long a node powered on from its own disk may take to answer before it counts as blank.
const DEFAULT_DISK_BOOT: Duration = Duration::from_secs(10 * 60);

/// What a BMC's virtual media can fetch (http(s) with a host), or a local path (verification-only
/// setups); other schemes would fail only when the BMC is asked to insert the medium.
fn check_image_url(u: &str) -> Result<(), String> {
    if u.trim().is_empty() {
        return Err(
            "empty: give the http(s) URL the BMC fetches the image from, e.g. \"http://10.9.0.5/node.img\"".into()
        );
    }
    match u.split_once("://") {
        None => Ok(()),
        Some(("http" | "https", rest)) if !rest.split('/').next().unwrap_or("").is_empty() => Ok(()),
        Some(("http" | "https", _)) => Err(format!("{u:?} has no host: use e.g. \"http://10.9.0.5/node.img\"")),
        Some((scheme, _)) => Err(format!(
            "{u:?}: the {scheme}:// scheme is not supported: BMCs fetch virtual media over http:// or https://"
        )),
    }
}

/// The Redfish endpoint as the client parses it: an http(s) URL with a host.
fn check_bmc_endpoint(e: &str) -> Result<(), String> {
    let example = "e.g. \"https://10.9.0.21/redfish/v1/Systems/1\" (or the BMC's base URL when it has one system)";
    let rest = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .ok_or_else(|| format!("{e:?} is not a Redfish URL: use https:// (http:// for emulators), {example}"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{e:?} has no host: {example}"));
    }
    Ok(())
}

/// A client for the node's BMC: the configuration's `bmc` block over the state's (the password
/// is write-only, so only the configuration has it), then the provider's `redfish` defaults.
pub(super) fn bmc_client(ctx: &Ctx, st: &State, config: Option<&State>) -> Result<Arc<RedfishClient>, Diagnostics> {
    let b = st.bmc.clone().unwrap_or_default();
    let from_cfg = config.and_then(|c| c.bmc.clone()).unwrap_or_default();
    let endpoint = from_cfg.endpoint.or(b.endpoint).ok_or_else(|| {
        Diagnostics::at(AttrPath::root("bmc").attr("endpoint"), "Missing BMC endpoint", "Set bmc.endpoint.")
    })?;
    let defaults = &ctx.clients.redfish;
    let username = from_cfg.username.or(b.username).or(defaults.username.clone()).unwrap_or_default();
    // The password is write-only: from the configuration, else the provider's default.
    let password = from_cfg.password.or(b.password).or(defaults.password.clone()).unwrap_or_default();
    let insecure = from_cfg.insecure.or(b.insecure).or(defaults.insecure).unwrap_or(false);
    let trust = match from_cfg.tls_fingerprint.or(b.tls_fingerprint) {
        Some(fp) => BmcTrust::Fingerprint(fp),
        None if insecure => BmcTrust::Insecure,
        None => BmcTrust::Unset,
    };
    RedfishClient::new(&endpoint, &username, &password, trust)
        .map(|c| Arc::new(c.with_fixed_poll(ctx.clients.settings.fixed_poll)))
        .map_err(|e| Diagnostics::at(AttrPath::root("bmc"), "Cannot set up the BMC client", e.to_string()))
}

/// How the image's manifest may be trusted: the provider's `trusted_image_keys`, and the image
/// block's Cosign keys and signature location.
pub(super) fn image_trust(ctx: &Ctx, img: &Image) -> image::Trust {
    image::Trust {
        keys: ctx.clients.trusted_image_keys.clone(),
        cosign_keys: img.trusted_cosign_keys.clone().unwrap_or_default(),
        cosign_signature: img.manifest_cosign_signature.clone(),
    }
}

/// The attribute a refused image's diagnostic points at.
pub(super) fn image_error_path(e: &image::ImageError) -> AttrPath {
    match e {
        image::ImageError::BadCosignKey { index, .. } => {
            AttrPath::root("image").attr("trusted_cosign_keys").index(*index)
        }
        image::ImageError::FetchSignature { .. } | image::ImageError::Untrusted { .. } => {
            AttrPath::root("image").attr("manifest_cosign_signature")
        }
        _ => AttrPath::root("image").attr("manifest"),
    }
}

/// Step 1: the manifest's signature against the trusted keys, then the file behind `url`;
/// records the verified sha256 and version in the state.
pub(super) async fn verify_image(
    ctx: &Ctx,
    st: &mut State,
    img: &Image,
    url: &str,
) -> Result<VerifiedImage, Diagnostics> {
    let m = req(&img.manifest, "image.manifest")?;
    let v = image::load_trusted(&m, &image_trust(ctx, img), img.file.as_deref())
        .await
        .map_err(|e| Diagnostics::at(image_error_path(&e), "Image refused", format!("{e}. Nothing was powered on.")))?;
    image::verify_image(&v, url).await.map_err(|e| {
        Diagnostics::at(AttrPath::root("image").attr("url"), "Image refused", format!("{e}. Nothing was powered on."))
    })?;
    tracing::info!(node = st.name.as_deref().unwrap_or_default(), version = %v.manifest.version, signed_by = ?v.signed_by, "image verified");
    st.image_sha256 = v.sha256_hex();
    st.image_version = Some(v.manifest.version.clone());
    Ok(v)
}

/// What step 2 left the node in.
pub(super) enum Boot {
    /// Booting the image now, with this seed (served while the handle lives).
    Seeded { seed: seed::Seed, published: Published },
    /// Already running the image (a re-run), presenting a certificate trusted like this.
    Running(Trusted),
}

impl Boot {
    /// What the node must present when its API answers.
    pub(super) fn trust(&self) -> Trusted {
        match self {
            Boot::Seeded { seed, .. } => Trusted::Pin(seed.cert_fingerprint.clone()),
            Boot::Running(t) => t.clone(),
        }
    }
}

/// Step 2: boots `url` through the BMC with a new seed — seed on the removable medium, image on
/// the CD, one-time boot override, power on (or power-cycle a running node). `force` re-images
/// a node that runs this image already. A running node is left alone if it presents a
/// certificate the provider trusts without a new seed; one that runs this image but cannot be
/// trusted (a re-run after an interrupted one: the seed and what it taught died with that
/// process) is re-seeded — rebooted from its disk with a new seed, which the image applies at
/// every boot — never trusted on first use.
pub(super) async fn boot_image(
    node: &Node<'_>,
    bmc: &RedfishClient,
    url: &str,
    config: &State,
    prior: Option<&State>,
    force: bool,
) -> Result<Boot, Diagnostics> {
    let name = node.name;
    let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
    let media = bmc.media().await.map_err(|e| diag("Cannot read the virtual media", e))?;
    let ours = media.image.as_deref() == Some(url);
    let mut reseed = false;
    if sys.is_on() && !force {
        if let Some(t) = running_trusted(node, config, prior, ours).await {
            return Ok(Boot::Running(t));
        }
        if ours {
            node.warn(
                AttrPath::root("tls_fingerprint"),
                "Node rebooted with a new seed",
                format!("{name} runs this image but presents no certificate the provider trusts (the seed of an interrupted run is lost): it was rebooted from its disk with a new seed."),
            );
            reseed = true;
        }
    }
    let seed = make_seed(node, config)?;
    let server = SeedServer::get(&node.ctx.clients.bootstrap)
        .await
        .map_err(|e| Diagnostics::error("Cannot serve the node's seed", format!("{e} (provider bootstrap.listen)")))?;
    let published = server.publish(seed.medium.to_vec());
    let old_seed =
        bmc.media_on(Device::Removable).await.map_err(|e| diag("Cannot read the BMC's removable medium", e))?;
    if old_seed.inserted {
        bmc.eject_on(Device::Removable).await.map_err(|e| diag("Cannot eject the old seed medium", e))?;
    }
    bmc.insert_on(Device::Removable, &published.url).await.map_err(|e| diag("Cannot insert the seed medium", e))?;
    if media.inserted && !ours {
        bmc.eject_media().await.map_err(|e| diag("Cannot eject the old virtual media", e))?;
    }
    if !ours {
        bmc.insert_media(url).await.map_err(|e| diag("Cannot insert the image as virtual media", e))?;
    }
    if !reseed {
        bmc.boot_once_cd().await.map_err(|e| diag("Cannot set the one-time boot override", e))?;
    }
    if sys.is_on() {
        // Power-cycle: off, confirmed, then on (a ForceRestart is not seen as a new boot by
        // every BMC; an explicit off/on is).
        force_off(node, bmc).await?;
    }
    let t = Instant::now();
    bmc.reset("On").await.map_err(|e| diag("Cannot power on the node", e))?;
    let polls =
        bmc.wait_power(true, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Node did not power on", e))?;
    // How long the BMC took (bench/converge subtracts it to get the provider's own overhead).
    tracing::info!(node = %name, polls, power_wait_ms = t.elapsed().as_millis() as u64, seed = %seed.sha256, "powered on from the image with a new seed");
    Ok(Boot::Seeded { seed, published })
}

/// A new seed for this boot: root@pam's password is needed for its hash.
fn make_seed(node: &Node<'_>, config: &State) -> Result<seed::Seed, Diagnostics> {
    let password = config
        .root_password
        .clone()
        .or_else(|| node.ctx.clients.pve.as_ref().and_then(|p| p.root_password.clone()))
        .ok_or_else(|| {
            Diagnostics::at(
                AttrPath::root("root_password"),
                "Missing root password",
                "A node installed from the image gets root@pam's password hash from its seed: set root_password (or the provider's pve.root_password). Nothing was powered on.",
            )
        })?;
    seed::make(node.name, node.address, &password).map_err(|e| Diagnostics::error("Cannot make the node's seed", e))
}

/// A running node is left running when it presents a certificate trusted without a new seed:
/// the configured pin, or — for a re-run that already booted this image — the CA of the cluster
/// it joins or its recorded CA.
async fn running_trusted(node: &Node<'_>, config: &State, prior: Option<&State>, ours: bool) -> Option<Trusted> {
    let mut candidates: Vec<Trusted> = config.tls_fingerprint.clone().map(Trusted::Pin).into_iter().collect();
    if ours {
        let cas =
            [config.cluster.as_ref().and_then(|c| c.ca_pem.clone()), prior.and_then(|p| p.cluster_ca_pem.clone())];
        candidates.extend(cas.into_iter().flatten().filter(|c| !c.is_empty()).map(Trusted::Ca));
    }
    if candidates.is_empty() {
        return None;
    }
    let presented = probe_certificate(node.address, PVE_PORT, Duration::from_secs(5)).await.ok()?;
    let t = candidates.into_iter().find(|t| t.check(node.name, node.address, &presented).is_ok())?;
    tracing::info!(node = %node.name, fingerprint = %presented.fingerprint, "node runs and presents a trusted certificate; not booting it again");
    Some(t)
}

/// Drift repair: a node powered off by hand boots its installed disk, never the installer.
/// Returns whether it was powered on here (then silence means it is blank: [`wait_from_disk`]).
pub(super) async fn power_on_from_disk(node: &Node<'_>, bmc: &RedfishClient) -> Result<bool, Diagnostics> {
    let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
    if sys.is_on() {
        return Ok(false);
    }
    bmc.eject_media().await.map_err(|e| diag("Cannot eject the virtual media", e))?;
    bmc.reset("On").await.map_err(|e| diag("Cannot power on the node", e))?;
    bmc.wait_power(true, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Node did not power on", e))?;
    Ok(true)
}

/// `power = "off"`: powers a running node off.
pub(super) async fn power_off(node: &Node<'_>, bmc: &RedfishClient) -> Result<(), Diagnostics> {
    let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
    if sys.is_on() {
        force_off(node, bmc).await?;
    }
    Ok(())
}

/// Destroy: ejects the media and powers the node off, so it cannot come back as it was (after
/// it left its cluster: `cluster::leave`).
pub(super) async fn power_off_for_destroy(node: &Node<'_>, prior: &State) -> Result<(), Diagnostics> {
    let bmc = bmc_client(node.ctx, prior, None)?;
    if let Err(e) = eject(&bmc).await {
        // Not fatal: powered off, the node boots nothing; the media stay inserted.
        let detail = e.0.iter().map(|d| format!("{}: {}", d.summary, d.detail)).collect::<Vec<_>>().join("; ");
        node.warn(
            AttrPath::root("bmc"),
            "Virtual media not ejected",
            format!("{detail}. The node is powered off with the media still inserted."),
        );
    }
    let sys = bmc.system().await.map_err(|e| match e {
        RedfishError::Status { status: 401 | 403, .. } => Diagnostics::at(
            AttrPath::root("bmc").attr("password"),
            "Cannot power the node off",
            format!("The BMC refused the credentials: {e}. bmc.password is write-only and not kept in state; set the provider's redfish.password (EDGE_REDFISH_PASSWORD) for destroy."),
        ),
        e => diag("Cannot read the BMC", e),
    })?;
    if sys.is_on() {
        force_off(node, &bmc).await?;
    }
    Ok(())
}

/// Off now, and confirmed by the BMC before anything else happens.
/// Off now, and confirmed twice before anything else happens: by the BMC, and by the node's API
/// no longer answering — a BMC that reports Off while the address still answers is not this
/// node's (a wrong `bmc.endpoint`), and powering "it" on again would not reboot the node.
async fn force_off(node: &Node<'_>, bmc: &RedfishClient) -> Result<(), Diagnostics> {
    bmc.reset("ForceOff").await.map_err(|e| diag("Cannot power off the node", e))?;
    bmc.wait_power(false, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Node did not power off", e))?;
    let (name, address) = (node.name, node.address);
    let backoff = node.api_backoff();
    let probe = || async move {
        match probe_certificate(address, PVE_PORT, Duration::from_secs(2)).await {
            Ok(_) => Probe::NotYet("its API still answers".to_string()),
            Err(_) => Probe::Ready(()),
        }
    };
    let limit = node.deadline.min(Instant::now() + API_GONE_WITHIN);
    let outcome: Result<(), PollError<std::convert::Infallible>> =
        poll_until(limit, &node.ctx.stop, &format!("{name}'s API to go away"), backoff, probe).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(PollError::Timeout { .. }) => Err(Diagnostics::at(
            AttrPath::root("bmc").attr("endpoint"),
            "The node did not power off",
            format!("The BMC reports the system off, but {name} ({address}) still answers after {API_GONE_WITHIN:?}: is bmc.endpoint this node's BMC?"),
        )),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while powering {name} off"))),
        Err(PollError::Failed(never)) => match never {},
    }
}

/// Step 3: polls the node's API until it answers as root@pam, presenting what `trust` accepts;
/// returns the certificate's fingerprint.
pub(super) async fn wait_api(node: &Node<'_>, trust: &Trusted) -> Result<String, Diagnostics> {
    let start = Instant::now();
    wait_api_until(node, trust, node.deadline).await?.map_err(|last| {
        Diagnostics::error(
            "Node API did not come up",
            format!("{} ({}:{PVE_PORT}) not answering after {:?}: {last}. Raise timeouts.create if the install takes longer.", node.name, node.address, start.elapsed()),
        )
    })
}

/// Step 3 after [`power_on_from_disk`]: the node's fingerprint, or `None` when it stays silent
/// for `disk_boot_timeout` — then it is blank (wiped, or replaced by blank hardware).
pub(super) async fn wait_from_disk(
    node: &Node<'_>,
    config: &State,
    trust: &Trusted,
) -> Result<Option<String>, Diagnostics> {
    let disk_wait =
        config.disk_boot_timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_DISK_BOOT);
    match wait_api_until(node, trust, node.deadline.min(Instant::now() + disk_wait)).await? {
        Ok(fp) => Ok(Some(fp)),
        Err(last) => {
            node.warn(
                AttrPath::root("power"),
                "Node re-imaged: it did not come back from its disk",
                format!("{} did not answer within disk_boot_timeout ({disk_wait:?}; last: {last}) after powering on from its disk, so it counts as blank and is re-imaged from the verified image.", node.name),
            );
            Ok(None)
        }
    }
}

/// Disaster recovery: re-images a blank node like a first install (verify, new seed, boot).
pub(super) async fn reimage_blank(
    node: &Node<'_>,
    bmc: &RedfishClient,
    st: &mut State,
    config: &State,
    img: &Image,
    url: &str,
) -> Result<(VerifiedImage, Boot), Diagnostics> {
    let v = verify_image(node.ctx, st, img, url).await?;
    let boot = boot_image(node, bmc, url, config, None, true).await?;
    st.booted_image = Some(url.to_string());
    Ok((v, boot))
}

/// [`wait_api`], but a deadline without an answer is `Ok(Err(last error))`: the caller decides
/// what silence means (for a node booted from its own disk: it is blank).
async fn wait_api_until(
    node: &Node<'_>,
    trust: &Trusted,
    deadline: Instant,
) -> Result<Result<String, String>, Diagnostics> {
    let (ctx, name) = (node.ctx, node.name);
    let start = Instant::now();
    let backoff = node.api_backoff();
    let probe = move || probe_api(node, trust);
    match poll_until(deadline, &ctx.stop, &format!("{name}'s API"), backoff, probe).await {
        Ok(fp) => {
            tracing::info!(node = %name, after = ?start.elapsed(), fingerprint = %fp, "node API is up");
            Ok(Ok(fp))
        }
        Err(PollError::Timeout { last, .. }) => Ok(Err(last)),
        Err(PollError::Cancelled) => Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {name}"))),
        Err(PollError::Failed(d)) => Err(d),
    }
}

/// One look at the node's API: the certificate it presents — anything `trust` does not accept
/// ends the wait at once, before a credential is sent (a tampered seed, someone else on the
/// address) — then whether it answers with the node's credentials. A node that answers but
/// refuses them will not change its mind by waiting.
async fn probe_api(node: &Node<'_>, trust: &Trusted) -> Probe<String, Diagnostics> {
    let (name, address) = (node.name, node.address);
    let presented = match probe_certificate(address, PVE_PORT, Duration::from_secs(5)).await {
        Ok(p) => p,
        Err(e) => return Probe::NotYet(e.to_string()),
    };
    if let Err(d) = trust.check(name, address, &presented) {
        return Probe::Fail(d);
    }
    let pve = match node.creds().and_then(|c| trust::node_client(address, trust, c, true)) {
        Ok(pve) => pve,
        Err(d) => return Probe::Fail(d),
    };
    match pve.node_status(name).await {
        Ok(_) => Probe::Ready(presented.fingerprint),
        Err(e) if e.is(ApiErrorKind::Unauthorized) || e.is(ApiErrorKind::Forbidden) => Probe::Fail(Diagnostics::at(
            AttrPath::root("root_password"),
            "The node refuses the provider's credentials",
            format!("{name}: {e}. A node installed from the image takes root@pam's password from its seed (root_password); it knows no API token."),
        )),
        Err(e) => Probe::NotYet(e.to_string()),
    }
}

/// The node answers with the seed's certificate: it must also state that seed in its notes
/// (what its first boot applied), and the BMC must still hold our image and our seed — else
/// what answers is not what the provider verified and made.
pub(super) async fn confirm_boot(
    node: &Node<'_>,
    pve: &crate::clients::pve::PveClient,
    bmc: &RedfishClient,
    url: &str,
    boot: &Boot,
) -> Result<(), Diagnostics> {
    let name = node.name;
    let media = bmc.media().await.map_err(|e| diag("Cannot read the virtual media", e))?;
    if media.image.as_deref() != Some(url) {
        return Err(Diagnostics::error(
            "Cannot confirm the booted image",
            format!("{name} answers, but the BMC's virtual CD holds {:?} instead of {url}", media.image),
        ));
    }
    let Boot::Seeded { seed, published } = boot else { return Ok(()) };
    let removable = bmc.media_on(Device::Removable).await.map_err(|e| diag("Cannot read the seed medium", e))?;
    if removable.image.as_deref() != Some(published.url.as_str()) {
        return Err(Diagnostics::error(
            "Cannot confirm the node's seed",
            format!("{name} answers, but the BMC's removable medium no longer holds the seed the provider served"),
        ));
    }
    let notes = pve.node_config(name).await.map_err(|e| diag("Cannot read the node notes", e))?;
    let line = seed::notes_line(&seed.sha256);
    if !notes.description.as_deref().unwrap_or_default().lines().any(|l| l.trim() == line) {
        return Err(Diagnostics::error(
            "Cannot confirm the node's seed",
            format!("{name} presents the seed's certificate but its notes do not say `{line}`: it did not apply the seed the provider made for this boot"),
        ));
    }
    Ok(())
}

/// Done with the media: the image and the seed ejected, so the next power cycle boots the disk
/// and nothing reads the seed again. (Kept inserted until the end of a converge, so a re-run
/// after an interruption recognises the node as booted from this image.)
pub(super) async fn eject(bmc: &RedfishClient) -> Result<(), Diagnostics> {
    bmc.eject_media().await.map_err(|e| diag("Cannot eject the virtual media", e))?;
    bmc.eject_on(Device::Removable).await.map_err(|e| diag("Cannot eject the seed medium", e))
}

/// Refresh: the power state, through the BMC (an imported node has no BMC in state yet).
/// `false` when the node is off: nothing else can be read, the last known values stay.
pub(super) async fn read_power(
    ctx: &Ctx,
    st: &mut State,
    name: &str,
    warnings: &mut Diagnostics,
) -> Result<bool, Diagnostics> {
    if st.bmc.is_none() {
        return Ok(true);
    }
    let bmc = bmc_client(ctx, st, None)?;
    match bmc.system().await {
        Ok(sys) => {
            st.power = Some(if sys.is_on() { "on" } else { "off" }.into());
            Ok(sys.is_on())
        }
        // A per-node BMC password is write-only, so it is not in state: without the
        // provider's redfish.password the power state cannot be read. Keep the last one.
        Err(RedfishError::Status { status: 401 | 403, .. }) => {
            tracing::warn!(node = %name, "BMC refused the credentials available at refresh (bmc.password is write-only: set the provider's redfish.password to read power); keeping the last known power state");
            warnings.warn_at(
                AttrPath::root("bmc").attr("password"),
                "Power state not refreshed",
                format!("{name}'s BMC refused the credentials available at refresh: bmc.password is write-only, so set the provider's redfish.password (EDGE_REDFISH_PASSWORD) to read power. Kept the last known power state."),
            );
            Ok(true)
        }
        Err(e) => Err(diag("Cannot read the BMC", e)),
    }
}

/// Plan, step 1 where it can be: the manifest's signature (path or URL) and the image's sha256
/// and version from it. A manifest that no longer verifies only warns while the node keeps
/// running that image (nothing will be booted).
pub(super) async fn plan_image(
    ctx: &Ctx,
    plan: &mut PlanCtx<State>,
    cfg: &State,
) -> Result<Option<VerifiedImage>, Diagnostics> {
    let mut verified = None;
    if let (false, Some(img)) = (plan.is_unknown_in_config("image"), &cfg.image) {
        if let Some(m) = &img.manifest {
            match image::load_trusted(m, &image_trust(ctx, img), img.file.as_deref()).await {
                Ok(v) => verified = Some(v),
                // The node already runs this image: nothing will be booted, so a manifest
                // that no longer verifies (key rotated out, file moved) is only a warning.
                Err(e) if plan.prior.as_ref().is_some_and(|p| p.image.is_some() && p.image == cfg.image) => {
                    plan.diags.warn_at(
                        image_error_path(&e),
                        "Image no longer verifies",
                        format!("{e}. The node keeps running it; a re-image with this manifest would be refused."),
                    );
                }
                Err(e) => {
                    return Err(Diagnostics::at(
                        image_error_path(&e),
                        "Image refused",
                        format!("{e}. Nothing was powered on."),
                    ))
                }
            }
        }
    }
    match &verified {
        Some(v) => {
            plan.set("image_sha256", &v.sha256_hex())?;
            plan.set("image_version", &v.manifest.version)?;
        }
        None if plan.is_create() => {
            plan.set_unknown("image_sha256")?;
            plan.set_unknown("image_version")?;
        }
        None => {}
    }
    Ok(verified)
}

/// Plan: the image changed (other URL, other manifest, or the manifest now names another
/// file) — a replacement, or with `reimage_on_change` a re-image in place. An imported node
/// (no image in state) only records it. Returns whether the image changed.
pub(super) fn plan_reimage(
    plan: &mut PlanCtx<State>,
    cfg: &State,
    prior: &State,
    verified: Option<&VerifiedImage>,
) -> Result<bool, Diagnostics> {
    let img_known = !plan.is_unknown_in_config("image");
    let changed = prior.image.is_some()
        && (!img_known || prior.image != cfg.image || verified.is_some_and(|v| v.sha256_hex() != prior.image_sha256));
    if !changed {
        return Ok(false);
    }
    if cfg.reimage_on_change == Some(true) {
        plan.diags.warn_at(
            AttrPath::root("image"),
            "The node will be re-imaged",
            "The image changed and reimage_on_change = true: apply power-cycles the node into the new image (its local state is lost) and configures it again in place.",
        );
        plan.set_unknown("booted_image")?;
    } else {
        plan.require_replace(AttrPath::root("image"));
    }
    Ok(true)
}

/// Plan: a powered-off node comes back at apply — from its disk, or, if that disk turns out to
/// be blank, re-imaged. Either way what it presents afterwards is only known then. Returns
/// whether it comes back.
pub(super) fn plan_power_on(
    plan: &mut PlanCtx<State>,
    cfg: &State,
    prior: &State,
    verified: Option<&VerifiedImage>,
    image_changed: bool,
) -> Result<bool, Diagnostics> {
    let want_on = cfg.power.as_deref() != Some("off");
    if !(want_on && prior.power.as_deref() == Some("off") && !image_changed) {
        return Ok(false);
    }
    let wait = cfg.disk_boot_timeout.clone().unwrap_or_else(|| "10m".into());
    let version = verified.map(|v| v.manifest.version.clone()).or(prior.image_version.clone());
    plan.diags.warn_at(
        AttrPath::root("power"),
        "The node is powered off",
        format!(
            "Apply powers it on from its own disk. If its API does not answer within disk_boot_timeout ({wait}), the node counts as blank (wiped or replaced hardware) and is re-imaged from the verified image{}, then configured and clustered again.",
            version.map(|v| format!(" {v}")).unwrap_or_default()
        ),
    );
    plan.set_unknown("booted_image")?;
    Ok(true)
}

/// Creating a node installs it from its image through its BMC: both blocks are needed. (An
/// existing node is adopted with an import instead, and may leave both out.)
pub(super) fn require_boot_blocks(cfg: &State) -> Result<(), Diagnostics> {
    let mut d = Diagnostics::new();
    for (block, missing) in [("image", cfg.image.is_none()), ("bmc", cfg.bmc.is_none())] {
        if missing {
            d.error_at(
                AttrPath::root(block),
                format!("Missing {block} block"),
                format!(
                    "A new node is installed from its signed image through its BMC, so creating it needs the {block}                      block. A node that already runs (a store built by hand) is adopted instead: import it                      (`terraform query` with list \"edge_proxmox_node\" writes the import blocks)."
                ),
            );
        }
    }
    d.into_result()
}

/// An adopted node (no `bmc`) cannot be powered by the provider.
pub(super) fn no_bmc_for_power() -> Diagnostics {
    Diagnostics::at(
        AttrPath::root("power"),
        "No BMC to power the node with",
        "This node is declared without a bmc block (an adopted node), so the provider cannot power it off or on. Add its bmc (and image) block, or leave power = \"on\".",
    )
}

/// Plan-time checks of `disk_boot_timeout` and `power`.
pub(super) fn validate(c: &State, d: &mut Diagnostics) {
    if let Some(img) = &c.image {
        let p = AttrPath::root("image");
        if let Some(u) = &img.url {
            if let Err(e) = check_image_url(u) {
                d.error_at(p.clone().attr("url"), "Invalid image URL", e);
            }
        }
        if let Some(m) = &img.manifest {
            if let Err(e) = crate::clients::image::check_location(m) {
                d.error_at(p.attr("manifest"), "Invalid manifest location", e);
            }
        }
    }
    if let Some(e) = c.bmc.as_ref().and_then(|b| b.endpoint.as_ref()) {
        if let Err(e) = check_bmc_endpoint(e) {
            d.error_at(AttrPath::root("bmc").attr("endpoint"), "Invalid BMC endpoint", e);
        }
    }
    // `image` and `bmc` go together: a node the provider boots, or an adopted one it never does.
    match (c.image.is_some(), c.bmc.is_some()) {
        (true, false) => d.error_at(
            AttrPath::root("bmc"),
            "Missing bmc block",
            "The image is booted through the node's BMC: set bmc with image, or leave both out on an adopted node.",
        ),
        (false, true) => d.error_at(
            AttrPath::root("image"),
            "Missing image block",
            "With a bmc block the provider may boot the node, which needs its signed image: set image with bmc, or leave both out on an adopted node.",
        ),
        _ => {}
    }
    if c.bmc.is_none() && c.power.as_deref() == Some("off") {
        d.extend(no_bmc_for_power());
    }
    if let Some(t) = &c.disk_boot_timeout {
        if let Err(e) = parse_duration(t) {
            d.error_at(AttrPath::root("disk_boot_timeout"), "Invalid duration", e);
        }
    }
    if let Some(p) = &c.power {
        if p != "on" && p != "off" {
            d.error_at(AttrPath::root("power"), "Invalid power state", format!("{p:?}: use \"on\" or \"off\""));
        }
    }
}
