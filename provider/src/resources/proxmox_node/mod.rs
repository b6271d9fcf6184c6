//! `edge_proxmox_node`: one Proxmox VE node, from powered-off bare metal to a configured cluster
//! member. Create runs the steps below; each one first looks at the machine, so a re-run after
//! an interruption (a crash, Ctrl-C, a failed join) picks up where the last one stopped:
//!
//! 1. verify the signed image (manifest signature against `trusted_image_keys`, then the image
//!    file's size/sha256/NAR hash) — before anything touches the machine;
//! 2. BMC (Redfish): insert the image as virtual media, one-time boot override to the CD,
//!    power on (or power-cycle a node that runs something else), poll power with backoff;
//! 3. wait for the node's PVE API, pin its TLS certificate, confirm it booted the media;
//! 4. DNS, timezone, network (pending changes applied with the `srvreload` task);
//! 5. cluster: create on the first node, join the others (the join replaces the node's
//!    `/etc/pve`, so access is re-established with the cluster's token afterwards);
//! 6. Ceph roles: init, mon, mgr, OSDs;
//!
//! and finally ejects the media, so a later power cycle boots the installed disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::clients::http::{parse_fingerprint, ApiClient, Credentials, Product, RetryPolicy, Trust};
use crate::clients::image::{self, VerifiedImage};
use crate::clients::pve::PveClient;
use crate::clients::redfish::{probe_fingerprint, Backoff, BmcTrust, RedfishClient, RedfishError};
use crate::clients::ApiErrorKind;
use crate::framework::{
    AttrPath, Attribute, Block, Ctx, Diagnostics, IdentityAttribute, IdentitySchema, ImportRequest, NestedBlock, Op,
    PlanCtx, Resource, Schema, Timeouts, Type, Value,
};
use crate::provider::check_fingerprint;

mod acme;
mod ceph;
mod cluster;
mod configure;

use acme::Acme;

const DEFAULT_CREATE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_UPDATE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_DELETE: Duration = Duration::from_secs(10 * 60);
const PVE_PORT: u16 = 8006;
/// How long a node powered on from its own disk may take to answer before it counts as blank.
const DEFAULT_DISK_BOOT: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub url: Option<String>,
    pub manifest: Option<String>,
    pub file: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bmc {
    pub endpoint: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_fingerprint: Option<String>,
    pub insecure: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Option<Vec<String>>,
    pub search: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Iface {
    pub iface: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub cidr: Option<String>,
    pub gateway: Option<String>,
    pub bridge_ports: Option<String>,
    pub bridge_vlan_aware: Option<bool>,
    pub slaves: Option<String>,
    pub bond_mode: Option<String>,
    pub vlan_id: Option<i64>,
    pub vlan_raw_device: Option<String>,
    pub autostart: Option<bool>,
    pub mtu: Option<i64>,
    pub comments: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: Option<String>,
    pub create: Option<bool>,
    pub join: Option<String>,
    pub fingerprint: Option<String>,
    pub root_password: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceph {
    pub mon: Option<bool>,
    pub mgr: Option<bool>,
    pub osd_devices: Option<Vec<String>>,
    pub network: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub id: Option<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub tls_fingerprint: Option<String>,
    pub tls_fingerprint_trusted: Option<String>,
    pub power: Option<String>,
    pub reimage_on_change: Option<bool>,
    pub image_sha256: Option<String>,
    pub image_version: Option<String>,
    pub booted_image: Option<String>,
    pub ceph_fsid: Option<String>,
    pub disk_boot_timeout: Option<String>,
    pub timezone: Option<String>,
    pub image: Option<Image>,
    pub bmc: Option<Bmc>,
    pub dns: Option<Dns>,
    pub network: Option<Vec<Iface>>,
    pub cluster: Option<Cluster>,
    pub ceph: Option<Ceph>,
    pub acme: Option<Acme>,
    pub timeouts: Option<Timeouts>,
}

pub struct ProxmoxNode;

/// The node a converge step works on, with what every step needs alongside it.
struct Node<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    address: &'a str,
    /// From the operation's `timeouts`: every wait of the step ends here.
    deadline: Instant,
}

#[async_trait]
impl Resource for ProxmoxNode {
    type State = State;

    fn type_name(&self) -> &'static str {
        "edge_proxmox_node"
    }

    fn schema(&self) -> Schema {
        let s = |n: &str, d: &str| Attribute::optional(n, Type::String).describe(d);
        Schema::new(
            0,
            Block::new("A Proxmox VE node converged from powered-off bare metal: signed image booted through the BMC (Redfish), DNS/time/network configured, cluster created or joined, Ceph roles set up. Drift (power, DNS, timezone, network, cluster membership, Ceph roles, TLS certificate) shows as a diff.")
                .attr(Attribute::computed("id", Type::String).describe("The node name."))
                .attr(Attribute::required("name", Type::String).replace().describe("The node's name in PVE (its hostname, e.g. `pve1`)."))
                .attr(Attribute::required("address", Type::String).replace().describe("Address of the node's PVE API (port 8006), an IP or host name."))
                .attr(Attribute::optional_computed("tls_fingerprint", Type::String).describe("SHA-256 fingerprint of the node's API certificate (`AB:CD:…`). Set it to pin a known certificate; left out, the certificate the node presents after the provider booted it is pinned and stored. A different certificate later is drift, never trusted silently."))
                .attr(Attribute::computed("tls_fingerprint_trusted", Type::String).describe("The fingerprint the provider trusts (what it pinned at install, or the one set in `tls_fingerprint`)."))
                .attr(Attribute::optional_computed("power", Type::String).default(Value::String("on".into())).describe("`on` (default) or `off`, as the BMC reports it. A node powered off by hand shows as a diff and apply powers it on again."))
                .attr(Attribute::optional("reimage_on_change", Type::Bool).describe("When the image changes, re-image the node in place (power-cycle into the new image, then re-run the configuration) instead of replacing the resource."))
                .attr(Attribute::computed("image_sha256", Type::String).describe("sha256 (hex) of the boot file, from the verified manifest."))
                .attr(Attribute::computed("image_version", Type::String).describe("Version from the verified manifest."))
                .attr(Attribute::computed("booted_image", Type::String).describe("The image URL the node was last booted from by this provider."))
                .attr(Attribute::computed("ceph_fsid", Type::String).describe("The fsid of the Ceph cluster the node is in (empty before Ceph is initialised). Unknown in a plan that brings a powered-off node back, since it may be rebuilt: wire it into `edge_ceph_pool.ceph_fsid` so pools are checked again (and created again on a rebuilt cluster) in the same apply."))
                .attr(s("disk_boot_timeout", "How long apply waits for a powered-off node to answer after powering it on from its own disk before treating it as blank (wiped or replaced hardware) and re-imaging it from the verified image. Default `10m`."))
                .attr(s("timezone", "Timezone, e.g. `Europe/Berlin` or `UTC`."))
                .block(
                    NestedBlock::single(
                        "image",
                        Block::new("The signed node image. Verified (signature against the provider's `trusted_image_keys`, then the file's size, sha256 and NAR hash) before the BMC is touched; a local manifest is checked at plan time already. Changing it replaces the node, or re-images it in place with `reimage_on_change`.")
                            .attr(Attribute::required("url", Type::String).describe("Where the BMC fetches the image (virtual media URL, http(s)); also a local path for verification only setups."))
                            .attr(Attribute::required("manifest", Type::String).describe("The signed manifest (`edge-image sign`), a local path or an http(s) URL."))
                            .attr(s("file", "Which file of the manifest the URL serves; default: the only file with a sha256.")),
                    )
                    .items(1, 1),
                )
                .block(
                    NestedBlock::single(
                        "bmc",
                        Block::new("The node's BMC (Redfish).")
                            .attr(Attribute::required("endpoint", Type::String).describe("The system's Redfish URL (`https://bmc/redfish/v1/Systems/ID`), or the BMC's base URL when it has one system."))
                            .attr(s("username", "BMC user; default: the provider's `redfish.username`."))
                            .attr(Attribute::optional("password", Type::String).sensitive().write_only().describe("BMC password; default: the provider's `redfish.password`. Write-only on Terraform 1.11+."))
                            .attr(s("tls_fingerprint", "SHA-256 fingerprint of the BMC certificate (https endpoints)."))
                            .attr(Attribute::optional("insecure", Type::Bool).describe("Skip BMC certificate checks (labs only).")),
                    )
                    .items(1, 1),
                )
                .block(NestedBlock::single(
                    "dns",
                    Block::new("Resolver settings (`/nodes/{node}/dns`).")
                        .attr(Attribute::optional("servers", Type::list(Type::String)).describe("Up to three DNS servers."))
                        .attr(s("search", "Search domain.")),
                ))
                .block(NestedBlock::list(
                    "network",
                    Block::new("Interfaces to manage (bridges, bonds, VLANs); others are left alone. Pending changes are applied with PVE's network reload task.")
                        .attr(Attribute::required("iface", Type::String).describe("Interface name, e.g. `vmbr1`, `bond0`, `vmbr0.20`."))
                        .attr(Attribute::required("type", Type::String).describe("`bridge`, `bond`, `vlan`, `eth`, …"))
                        .attr(s("cidr", "IPv4 address with prefix length."))
                        .attr(s("gateway", "Default gateway."))
                        .attr(s("bridge_ports", "Bridge ports, space separated."))
                        .attr(Attribute::optional("bridge_vlan_aware", Type::Bool).describe("VLAN-aware bridge."))
                        .attr(s("slaves", "Bond members, space separated."))
                        .attr(s("bond_mode", "Bond mode, e.g. `802.3ad`, `active-backup`."))
                        .attr(Attribute::optional("vlan_id", Type::Number).describe("VLAN tag."))
                        .attr(s("vlan_raw_device", "VLAN parent device."))
                        .attr(Attribute::optional("autostart", Type::Bool).describe("Bring up at boot."))
                        .attr(Attribute::optional("mtu", Type::Number).describe("MTU."))
                        .attr(s("comments", "Comment.")),
                ))
                .block(NestedBlock::single(
                    "cluster",
                    Block::new("Cluster membership: `create = true` on the first node, `join = <member address>` on the others.")
                        .attr(s("name", "Cluster name (required with `create`; checked against the cluster when joining)."))
                        .attr(Attribute::optional("create", Type::Bool).describe("Create the cluster on this node."))
                        .attr(s("join", "Address of a member to join through."))
                        .attr(s("fingerprint", "The member's API certificate fingerprint; default: the one it presents (pin it!)."))
                        .attr(Attribute::optional("root_password", Type::String).sensitive().write_only().describe("root@pam password of the member (PVE's join needs it). Write-only on Terraform 1.11+.")),
                ))
                .block(NestedBlock::single(
                    "ceph",
                    Block::new("Ceph roles of the node (`pveceph init`, mon, mgr, OSDs).")
                        .attr(Attribute::optional("mon", Type::Bool).describe("Run a monitor."))
                        .attr(Attribute::optional("mgr", Type::Bool).describe("Run a manager."))
                        .attr(Attribute::optional("osd_devices", Type::list(Type::String)).describe("Disks to turn into OSDs, e.g. `/dev/sdb`."))
                        .attr(s("network", "Public network for `ceph init` (CIDR), used when the cluster's Ceph is not initialized yet.")),
                ))
                .block(acme::schema_block())
                .block(NestedBlock::timeouts(&["create", "update", "delete"])),
        )
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![IdentityAttribute {
                name: "name".into(),
                description: "The node name.".into(),
                required_for_import: true,
            }],
        })
    }

    fn identity(&self, s: &State) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("name".to_string(), s.name.clone()?)]))
    }

    fn validate(&self, c: &State, d: &mut Diagnostics) {
        validate_config(c, d);
    }

    async fn modify_plan(&self, ctx: &Ctx, plan: &mut PlanCtx<State>) -> Result<(), Diagnostics> {
        let cfg = plan.config.clone();
        // The framework warns for top-level write-only attributes; these sit in blocks.
        if !ctx.write_only_supported {
            let nested = [
                (
                    AttrPath::root("cluster").attr("root_password"),
                    cfg.cluster.as_ref().and_then(|c| c.root_password.as_ref()),
                ),
                (AttrPath::root("bmc").attr("password"), cfg.bmc.as_ref().and_then(|b| b.password.as_ref())),
            ];
            for (path, v) in nested {
                if v.is_some() {
                    plan.diags.warn_at(
                        path,
                        "Stored in state on this Terraform version",
                        "This password is write-only on Terraform 1.11 and later. This Terraform version does not support write-only attributes, so the value is kept in state, marked sensitive.",
                    );
                }
            }
        }
        // 1. The image, at plan time where it can be: manifest signature (path or URL).
        let img_known = !plan.is_unknown_in_config("image");
        let mut verified = None;
        if let (true, Some(img)) = (img_known, &cfg.image) {
            if let Some(m) = &img.manifest {
                match image::load(m, &ctx.clients.trusted_image_keys, img.file.as_deref()).await {
                    Ok(v) => verified = Some(v),
                    // The node already runs this image: nothing will be booted, so a manifest
                    // that no longer verifies (key rotated out, file moved) is only a warning.
                    Err(e) if plan.prior.as_ref().is_some_and(|p| p.image.is_some() && p.image == cfg.image) => {
                        plan.diags.warn_at(
                            AttrPath::root("image").attr("manifest"),
                            "Image no longer verifies",
                            format!("{e}. The node keeps running it; a re-image with this manifest would be refused."),
                        );
                    }
                    Err(e) => {
                        return Err(Diagnostics::at(
                            AttrPath::root("image").attr("manifest"),
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
                plan.set_unknown("image_sha256");
                plan.set_unknown("image_version");
            }
            None => {}
        }
        let Some(prior) = plan.prior.clone() else {
            plan.set_unknown("booted_image");
            plan.set_unknown("ceph_fsid");
            if cfg.tls_fingerprint.is_none() {
                plan.set_unknown("tls_fingerprint");
            }
            plan.set_unknown("tls_fingerprint_trusted");
            return Ok(());
        };
        // Re-image: the image changed (other URL, other manifest, or the manifest now names
        // another file). An imported node (no image in state) only records it.
        let image_changed = prior.image.is_some()
            && (!img_known
                || prior.image != cfg.image
                || verified.as_ref().is_some_and(|v| v.sha256_hex() != prior.image_sha256));
        if image_changed {
            if cfg.reimage_on_change == Some(true) {
                plan.diags.warn_at(
                    AttrPath::root("image"),
                    "The node will be re-imaged",
                    "The image changed and reimage_on_change = true: apply power-cycles the node into the new image (its local state is lost) and configures it again in place.",
                );
                plan.set_unknown("booted_image");
            } else {
                plan.require_replace(AttrPath::root("image"));
            }
        }
        // A powered-off node comes back at apply: from its disk, or — if that disk turns out to be
        // blank — re-imaged. Either way what it presents afterwards is only known then.
        let want_on = cfg.power.as_deref() != Some("off");
        if want_on && prior.power.as_deref() == Some("off") && !image_changed {
            let wait = cfg.disk_boot_timeout.clone().unwrap_or_else(|| "10m".into());
            let version = verified.as_ref().map(|v| v.manifest.version.clone()).or(prior.image_version.clone());
            plan.diags.warn_at(
                AttrPath::root("power"),
                "The node is powered off",
                format!(
                    "Apply powers it on from its own disk. If its API does not answer within disk_boot_timeout ({wait}), the node counts as blank (wiped or replaced hardware) and is re-imaged from the verified image{}, then configured and clustered again.",
                    version.map(|v| format!(" {v}")).unwrap_or_default()
                ),
            );
            plan.set_unknown("booted_image");
            plan.set_unknown("ceph_fsid");
            plan.set_unknown("tls_fingerprint_trusted");
            if cfg.tls_fingerprint.is_none() {
                plan.set_unknown("tls_fingerprint");
            }
        } else if image_changed || prior.ceph != cfg.ceph {
            plan.set_unknown("ceph_fsid");
        }
        // TLS: a node presenting another certificate than the trusted one is drift.
        if cfg.tls_fingerprint.is_none() {
            if let (Some(seen), Some(trusted)) = (&prior.tls_fingerprint, &prior.tls_fingerprint_trusted) {
                if !seen.eq_ignore_ascii_case(trusted) {
                    plan.set("tls_fingerprint", trusted)?;
                }
            }
        } else if cfg.tls_fingerprint != prior.tls_fingerprint_trusted {
            plan.set("tls_fingerprint_trusted", &cfg.tls_fingerprint)?;
        }
        // ACME: an order in this apply replaces the node's certificate (and the provider
        // re-pins the one it ordered), so the fingerprints are only known after apply.
        if acme::may_order(prior.acme.as_ref(), cfg.acme.as_ref()) {
            plan.set_unknown("tls_fingerprint");
            plan.set_unknown("tls_fingerprint_trusted");
        }
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, planned: State, config: &State) -> Result<State, Diagnostics> {
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Create, DEFAULT_CREATE);
        let mut st = planned;
        st.id = st.name.clone();
        converge(ctx, &mut st, config, None, deadline).await?;
        Ok(st)
    }

    async fn read(&self, ctx: &Ctx, state: State) -> Result<Option<State>, Diagnostics> {
        let mut st = state;
        let name = req(&st.name, "name")?;
        let address = req(&st.address, "address")?;
        // Power, through the BMC (an imported node has no BMC in state yet).
        if st.bmc.is_some() {
            let bmc = bmc_client(ctx, &st, None)?;
            match bmc.system().await {
                Ok(sys) => {
                    st.power = Some(if sys.is_on() { "on" } else { "off" }.into());
                    if !sys.is_on() {
                        // Nothing else can be read from a powered-off node; keep the last known values.
                        return Ok(Some(st));
                    }
                }
                // A per-node BMC password is write-only, so it is not in state: without the
                // provider's redfish.password the power state cannot be read. Keep the last one.
                Err(RedfishError::Status { status: 401 | 403, .. }) => {
                    tracing::warn!(node = %name, "BMC refused the credentials available at refresh (bmc.password is write-only: set the provider's redfish.password to read power); keeping the last known power state");
                }
                Err(e) => return Err(diag("Cannot read the BMC", e)),
            }
        }
        // The certificate the node presents now; the API is only read through the trusted pin.
        let seen = match probe_fingerprint(&address, PVE_PORT, Duration::from_secs(5)).await {
            Ok(fp) => fp,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "node API not reachable; keeping the last known configuration");
                return Ok(Some(st));
            }
        };
        st.tls_fingerprint = Some(seen.clone());
        let trusted = st.tls_fingerprint_trusted.clone().unwrap_or_else(|| seen.clone());
        if !seen.eq_ignore_ascii_case(&trusted) {
            tracing::warn!(node = %name, %seen, %trusted, "node presents another certificate than the trusted one");
            return Ok(Some(st));
        }
        // The node answered the probe: read with the usual retries (a 5xx is worth another try).
        let pve = node_client(ctx, &address, &trusted, false)?;
        read_config(&pve, &name, &mut st).await?;
        if let Some(prior) = st.acme.clone() {
            let read = acme::read_acme(&pve, &name).await.map_err(|e| diag("Cannot read the ACME settings", e))?;
            st.acme = read.map(|a| Acme { ca_pem: prior.ca_pem, ..a });
        }
        Ok(Some(st))
    }

    async fn update(&self, ctx: &Ctx, prior: State, planned: State, config: &State) -> Result<State, Diagnostics> {
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Update, DEFAULT_UPDATE);
        let mut st = planned;
        st.id = st.name.clone();
        converge(ctx, &mut st, config, Some(&prior), deadline).await?;
        Ok(st)
    }

    async fn delete(&self, ctx: &Ctx, prior: State) -> Result<(), Diagnostics> {
        let deadline = Instant::now() + Timeouts::get(&prior.timeouts, Op::Delete, DEFAULT_DELETE);
        let name = req(&prior.name, "name")?;
        let address = req(&prior.address, "address")?;
        // Who else is in the cluster, asked while this node still answers.
        let member = cluster::other_member(ctx, &name, &address, &prior).await;
        // Power off first (PVE's rule for `pvecm delnode`: the node must not come back as is).
        if prior.bmc.is_some() {
            let bmc = bmc_client(ctx, &prior, None)?;
            let _ = bmc.eject_media().await.map_err(|e| tracing::warn!(error = %e, "eject failed"));
            let sys = bmc.system().await.map_err(|e| match e {
                RedfishError::Status { status: 401 | 403, .. } => Diagnostics::at(
                    AttrPath::root("bmc").attr("password"),
                    "Cannot power the node off",
                    format!("The BMC refused the credentials: {e}. bmc.password is write-only and not kept in state; set the provider's redfish.password (EDGE_REDFISH_PASSWORD) for destroy."),
                ),
                e => diag("Cannot read the BMC", e),
            })?;
            if sys.is_on() {
                bmc.reset("ForceOff").await.map_err(|e| diag("Cannot power off the node", e))?;
                bmc.wait_power(false, deadline, &ctx.stop).await.map_err(|e| diag("Node did not power off", e))?;
            }
        }
        if let Some(member) = member {
            cluster::remove(ctx, &name, member).await?;
        }
        Ok(())
    }

    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> Result<State, Diagnostics> {
        let name = match req {
            ImportRequest::Id(id) => id,
            ImportRequest::Identity(mut m) => m.remove("name").unwrap_or_default(),
        };
        if name.is_empty() || name.contains('/') {
            return Err(Diagnostics::error("Invalid import ID", "Import by node name, e.g. `pve1`."));
        }
        let found = cluster::find(ctx, &name).await?;
        Ok(State {
            id: Some(name.clone()),
            name: Some(name),
            address: Some(found.address),
            tls_fingerprint: found.fingerprint.clone(),
            tls_fingerprint_trusted: found.fingerprint,
            power: Some("on".into()),
            timezone: Some(String::new()),
            dns: Some(Dns::default()),
            cluster: found.cluster.map(|c| Cluster { name: Some(c), ..Default::default() }),
            ceph: Some(Ceph::default()),
            ..Default::default()
        })
    }
}

// --- configuration checks ------------------------------------------------------------------

fn validate_config(c: &State, d: &mut Diagnostics) {
    Timeouts::validate(&c.timeouts, d);
    if let Some(t) = &c.disk_boot_timeout {
        if let Err(e) = crate::framework::timeouts::parse_duration(t) {
            d.error_at(AttrPath::root("disk_boot_timeout"), "Invalid duration", e);
        }
    }
    if let Some(p) = &c.power {
        if p != "on" && p != "off" {
            d.error_at(AttrPath::root("power"), "Invalid power state", format!("{p:?}: use \"on\" or \"off\""));
        }
    }
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
    cluster::validate(c, d);
    if let Some(a) = &c.acme {
        acme::validate(a, d);
        if c.tls_fingerprint.is_some() {
            d.error_at(
                AttrPath::root("tls_fingerprint"),
                "Conflicting TLS settings",
                "With an acme block the provider pins the certificate it orders (verified against acme.ca_pem); leave tls_fingerprint out.",
            );
        }
    }
    configure::validate(c, d);
}

// --- the converge path (create, update, re-run after an interruption) ----------------------

async fn converge(
    ctx: &Ctx,
    st: &mut State,
    config: &State,
    prior: Option<&State>,
    deadline: Instant,
) -> Result<(), Diagnostics> {
    let name = req(&st.name, "name")?;
    let address = req(&st.address, "address")?;
    let img_cfg = config.image.clone().unwrap_or_default();
    let url = req(&img_cfg.url, "image.url")?;
    let reimage =
        prior.is_some_and(|p| p.image.is_some() && (p.image != config.image || p.image_sha256 != st.image_sha256));
    let first_install = prior.is_none();

    // 1. Verify the image before anything touches the machine (also at apply: the manifest or
    //    the file may have changed since the plan).
    let mut verified: Option<VerifiedImage> =
        if first_install || reimage { Some(verify_image(ctx, st, &img_cfg, &url).await?) } else { None };

    // 2. BMC: boot the image unless the node already runs it.
    let bmc = bmc_client(ctx, st, Some(config))?;
    let want_on = st.power.as_deref() != Some("off");
    // Powered on from its own disk in this run: if it does not answer, it is blank.
    let mut from_disk = false;
    if verified.is_some() {
        boot_image(ctx, &bmc, &name, &address, &url, config, reimage, deadline).await?;
        st.booted_image = Some(url.clone());
    } else if want_on {
        // Drift repair: powered off by hand. Boot the installed disk, never the installer.
        let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
        if !sys.is_on() {
            bmc.eject_media().await.map_err(|e| diag("Cannot eject the virtual media", e))?;
            bmc.reset("On").await.map_err(|e| diag("Cannot power on the node", e))?;
            bmc.wait_power(true, deadline, &ctx.stop).await.map_err(|e| diag("Node did not power on", e))?;
            from_disk = true;
        }
    }
    if !want_on {
        let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
        if sys.is_on() {
            bmc.reset("ForceOff").await.map_err(|e| diag("Cannot power off the node", e))?;
            bmc.wait_power(false, deadline, &ctx.stop).await.map_err(|e| diag("Node did not power off", e))?;
        }
        st.power = Some("off".into());
        return Ok(());
    }
    st.power = Some("on".into());

    // 3. The node's API: wait, pin, and (for a fresh boot) confirm it booted the media.
    let pin = config.tls_fingerprint.clone().or_else(|| {
        if verified.is_some() {
            None
        } else {
            prior.and_then(|p| p.tls_fingerprint_trusted.clone())
        }
    });
    let fp = if from_disk {
        let disk_wait = config
            .disk_boot_timeout
            .as_deref()
            .and_then(|t| crate::framework::timeouts::parse_duration(t).ok())
            .unwrap_or(DEFAULT_DISK_BOOT);
        match wait_api_until(ctx, &name, &address, pin.as_deref(), deadline.min(Instant::now() + disk_wait)).await? {
            Ok(fp) => fp,
            Err(last) => {
                // Disaster recovery: the machine powered on but nothing answers from its disk
                // (wiped, or replaced by blank hardware). Re-image it like a first install.
                tracing::warn!(node = %name, waited = ?disk_wait, last = %last, "node did not come back from its disk: re-imaging it from the verified image");
                let v = verify_image(ctx, st, &img_cfg, &url).await?;
                boot_image(ctx, &bmc, &name, &address, &url, config, true, deadline).await?;
                st.booted_image = Some(url.clone());
                verified = Some(v);
                wait_api(ctx, &name, &address, config.tls_fingerprint.as_deref(), deadline).await?
            }
        }
    } else {
        wait_api(ctx, &name, &address, pin.as_deref(), deadline).await?
    };
    if st.booted_image.is_none() {
        st.booted_image = prior.and_then(|p| p.booted_image.clone());
    }
    st.tls_fingerprint = Some(fp.clone());
    st.tls_fingerprint_trusted = Some(fp.clone());
    if verified.is_some() {
        let media = bmc.media().await.map_err(|e| diag("Cannot read the virtual media", e))?;
        if media.image.as_deref() != Some(url.as_str()) {
            return Err(Diagnostics::error(
                "Cannot confirm the booted image",
                format!("{name} answers, but the BMC's virtual CD holds {:?} instead of {url}", media.image),
            ));
        }
    }
    let pve = node_client(ctx, &address, &fp, false)?;
    let node = Node { ctx, name: &name, address: &address, deadline };

    // 4. DNS, timezone, network.
    configure::converge(&node, &pve, config).await?;
    // 5. Cluster.
    if let Some(cl) = &config.cluster {
        cluster::converge(&node, &pve, &fp, cl).await?;
    }
    // 6. Ceph.
    if let Some(c) = &config.ceph {
        ceph::converge(&node, &pve, c).await?;
    }
    st.ceph_fsid = Some(ceph::fsid(&pve, &name).await?);
    // 4b. ACME, last: an order replaces the node's API certificate. The provider caused that
    // change and verified the new certificate against acme.ca_pem for an ordered domain, so
    // re-pinning it is legitimate (any other certificate change stays drift).
    if let Some(a) = &config.acme {
        let pin = |f: &str| node_client(ctx, &address, f, false).map_err(|d| format!("{:?}", d.0));
        let outcome = acme::configure_acme(&pve, &name, &address, a, &pin, deadline, &ctx.stop)
            .await
            .map_err(|e| Diagnostics::at(AttrPath::root("acme"), "ACME certificate", e.to_string()))?;
        if let acme::Outcome::Ordered { fingerprint } = outcome {
            st.tls_fingerprint = Some(fingerprint.clone());
            st.tls_fingerprint_trusted = Some(fingerprint);
        }
    }
    // Done: eject so the next power cycle boots the disk. (Kept inserted until now, so a re-run
    // after an interruption recognises the node as booted from this image.)
    if verified.is_some() {
        bmc.eject_media().await.map_err(|e| diag("Cannot eject the virtual media", e))?;
    }
    tracing::info!(node = %name, redfish_calls = bmc.calls(), "node converged");
    Ok(())
}

/// Step 1: the manifest's signature against the trusted keys, then the file behind `url`.
async fn verify_image(ctx: &Ctx, st: &mut State, img: &Image, url: &str) -> Result<VerifiedImage, Diagnostics> {
    let m = req(&img.manifest, "image.manifest")?;
    let v = image::load(&m, &ctx.clients.trusted_image_keys, img.file.as_deref()).await.map_err(|e| {
        Diagnostics::at(
            AttrPath::root("image").attr("manifest"),
            "Image refused",
            format!("{e}. Nothing was powered on."),
        )
    })?;
    image::verify_image(&v, url).await.map_err(|e| {
        Diagnostics::at(AttrPath::root("image").attr("url"), "Image refused", format!("{e}. Nothing was powered on."))
    })?;
    tracing::info!(node = st.name.as_deref().unwrap_or_default(), version = %v.manifest.version, signed_by = ?v.signed_by, "image verified");
    st.image_sha256 = v.sha256_hex();
    st.image_version = Some(v.manifest.version.clone());
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
async fn boot_image(
    ctx: &Ctx,
    bmc: &RedfishClient,
    name: &str,
    address: &str,
    url: &str,
    config: &State,
    force: bool,
    deadline: Instant,
) -> Result<(), Diagnostics> {
    let sys = bmc.system().await.map_err(|e| diag("Cannot read the BMC", e))?;
    let media = bmc.media().await.map_err(|e| diag("Cannot read the virtual media", e))?;
    let ours = media.image.as_deref() == Some(url);
    if sys.is_on() && ours && !force {
        // A previous run inserted this image and powered the node on: it is installing or
        // installed. Do not boot it a second time.
        tracing::info!(node = %name, "node already booted from this image (re-run); not booting again");
        return Ok(());
    }
    if sys.is_on() && !ours && !force && config.cluster.is_some() {
        // A running node that is not ours to boot: only a member that already runs the
        // wanted configuration is adopted, everything else is power-cycled below.
        if let Some(fp) = config.tls_fingerprint.as_deref() {
            if let Ok(pve) = node_client(ctx, address, fp, true) {
                if pve.version().await.is_ok() {
                    tracing::info!(node = %name, "node answers with the pinned certificate; adopting it without a reboot");
                    return Ok(());
                }
            }
        }
    }
    if media.inserted && !ours {
        bmc.eject_media().await.map_err(|e| diag("Cannot eject the old virtual media", e))?;
    }
    if !ours {
        bmc.insert_media(url).await.map_err(|e| diag("Cannot insert the image as virtual media", e))?;
    }
    bmc.boot_once_cd().await.map_err(|e| diag("Cannot set the one-time boot override", e))?;
    if sys.is_on() {
        // Power-cycle: off, confirmed, then on (a ForceRestart is not seen as a new boot by
        // every BMC; an explicit off/on is).
        bmc.reset("ForceOff").await.map_err(|e| diag("Cannot power off the node", e))?;
        bmc.wait_power(false, deadline, &ctx.stop).await.map_err(|e| diag("Node did not power off", e))?;
    }
    let t = Instant::now();
    bmc.reset("On").await.map_err(|e| diag("Cannot power on the node", e))?;
    let polls = bmc.wait_power(true, deadline, &ctx.stop).await.map_err(|e| diag("Node did not power on", e))?;
    // How long the BMC took (bench/converge subtracts it to get the provider's own overhead).
    tracing::info!(node = %name, polls, power_wait_ms = t.elapsed().as_millis() as u64, "powered on from the image");
    Ok(())
}

/// Polls the node's API until it answers with the provider's token; returns the certificate
/// fingerprint (checked against `pin` when given).
async fn wait_api(
    ctx: &Ctx,
    name: &str,
    address: &str,
    pin: Option<&str>,
    deadline: Instant,
) -> Result<String, Diagnostics> {
    let start = Instant::now();
    wait_api_until(ctx, name, address, pin, deadline).await?.map_err(|last| {
        Diagnostics::error(
            "Node API did not come up",
            format!("{name} ({address}:{PVE_PORT}) not answering after {:?}: {last}. Raise timeouts.create if the install takes longer.", start.elapsed()),
        )
    })
}

/// [`wait_api`], but a deadline without an answer is `Ok(Err(last error))`: the caller decides
/// what silence means (for a node booted from its own disk: it is blank).
async fn wait_api_until(
    ctx: &Ctx,
    name: &str,
    address: &str,
    pin: Option<&str>,
    deadline: Instant,
) -> Result<Result<String, String>, Diagnostics> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(500));
    let mut last_log = Instant::now();
    let mut last_err: String;
    loop {
        match probe_fingerprint(address, PVE_PORT, Duration::from_secs(5)).await {
            Ok(fp) => {
                if let Some(p) = pin {
                    if !fp.eq_ignore_ascii_case(p) {
                        return Err(Diagnostics::at(
                            AttrPath::root("tls_fingerprint"),
                            "Node certificate does not match",
                            format!("{name} ({address}) presents {fp}, but {p} is pinned. Not trusting it."),
                        ));
                    }
                }
                let pve = node_client(ctx, address, &fp, true)?;
                match pve.node_status(name).await {
                    Ok(_) => {
                        tracing::info!(node = %name, after = ?start.elapsed(), fingerprint = %fp, "node API is up");
                        return Ok(Ok(fp));
                    }
                    Err(e) if e.is(ApiErrorKind::Unauthorized) || e.is(ApiErrorKind::Forbidden) => {
                        return Err(diag(
                            &format!("{name} answers but refuses the provider's PVE token (a freshly installed node must accept the store's token)"),
                            e,
                        ))
                    }
                    Err(e) => last_err = e.to_string(),
                }
            }
            Err(e) => last_err = e.to_string(),
        }
        if Instant::now() + backoff.peek() > deadline {
            return Ok(Err(last_err));
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            tracing::info!(node = %name, waited = ?start.elapsed(), last = %last_err, "waiting for the node's API");
            last_log = Instant::now();
        }
        tokio::select! {
            _ = ctx.stop.cancelled() => return Err(Diagnostics::error("Cancelled", format!("stopped while waiting for {name}"))),
            _ = tokio::time::sleep(backoff.step()) => {}
        }
    }
}

// --- reading -------------------------------------------------------------------------------

async fn read_config(pve: &PveClient, name: &str, st: &mut State) -> Result<(), Diagnostics> {
    configure::read(pve, name, st).await?;
    cluster::read(pve, st).await?;
    ceph::read(pve, name, st).await?;
    Ok(())
}

// --- clients -------------------------------------------------------------------------------

/// A client for the node's own API, trusting exactly `fingerprint`, with the provider's PVE
/// token (a fresh node accepts the store's token; after a join the cluster's, which is the same).
fn node_client(ctx: &Ctx, address: &str, fingerprint: &str, quick: bool) -> Result<PveClient, Diagnostics> {
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

fn bmc_client(ctx: &Ctx, st: &State, config: Option<&State>) -> Result<Arc<RedfishClient>, Diagnostics> {
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
        .map(Arc::new)
        .map_err(|e| Diagnostics::at(AttrPath::root("bmc"), "Cannot set up the BMC client", e.to_string()))
}

fn req(v: &Option<String>, attr: &str) -> Result<String, Diagnostics> {
    v.clone().ok_or_else(|| Diagnostics::error("Missing value", format!("{attr} must be known at apply")))
}

fn diag(summary: &str, e: impl std::fmt::Display) -> Diagnostics {
    Diagnostics::error(summary, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_are_checked() {
        let mut d = Diagnostics::new();
        let c = State {
            cluster: Some(Cluster { create: Some(true), join: Some("10.0.0.1".into()), ..Default::default() }),
            power: Some("sideways".into()),
            ..Default::default()
        };
        validate_config(&c, &mut d);
        let paths: Vec<String> = d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect();
        assert_eq!(paths, vec!["power", "cluster.join"]);
    }
}
