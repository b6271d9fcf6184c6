//! `edge_proxmox_node`: one Proxmox VE node, from powered-off bare metal to a configured cluster
//! member. Create runs the steps below; each one first looks at the machine, so a re-run after
//! an interruption (a crash, Ctrl-C, a failed join) picks up where the last one stopped:
//!
//! 1. verify the signed image (manifest signature against `trusted_image_keys`, then the image
//!    file's size/sha256/NAR hash) — before anything touches the machine (`boot.rs`);
//! 2. make the node's first-boot seed — bootstrap certificate, SSH host key, root password hash
//!    (`seed.rs`) — and serve it; BMC (Redfish): the seed as the second virtual medium, the image
//!    as the CD, one-time boot override, power on (or power-cycle a node that runs something
//!    else), poll power with backoff (`boot.rs`);
//! 3. wait for the node's PVE API, trusting only the seed's certificate; confirm the node applied
//!    the seed and booted the media; learn the node's CA over that channel and retire the
//!    bootstrap certificate (`trust.rs`);
//! 4. DNS, timezone, network (pending changes applied with the `srvreload` task;
//!    `configure.rs`);
//! 5. cluster: create on the first node, join the others one at a time through a member trusted
//!    by the cluster's CA (the join gives the node a new certificate from that CA; `cluster.rs`);
//! 6. Ceph in PVE's order: init, the first monitor (which brings a manager), managers only where
//!    none is, OSDs on disks that are empty or wiped on request (`ceph.rs`);
//! 7. ACME: the node's certificate from an ACME CA, verified before it is pinned (`acme.rs`);
//!
//! and finally ejects the media, so a later power cycle boots the installed disk.
//!
//! Everything is done as root@pam (a ticket from the write-only `root_password`): a node
//! installed from the image knows no API token, and PVE lets only root@pam itself cluster nodes
//! and create OSDs.
//!
//! This file holds the state, the schema and the [`Resource`] implementation, which only
//! sequences the steps; each step's converge, refresh, plan and validation live in its file.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clients::http::Credentials;
use crate::clients::poll::Backoff;
use crate::framework::{
    Applied, AttrPath, Attribute, Block, Ctx, Diagnostics, Done, IdentityAttribute, IdentitySchema, ImportRequest,
    NestedBlock, Op, PlanCtx, Resource, Schema, Timeouts, Type, Value,
};

mod acme;
mod boot;
mod ceph;
mod cluster;
mod configure;
mod seed;
mod trust;

use acme::Acme;

const DEFAULT_CREATE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_UPDATE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_DELETE: Duration = Duration::from_secs(10 * 60);
/// The port of a node's PVE API (pveproxy).
const PVE_PORT: u16 = 8006;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub url: Option<String>,
    pub manifest: Option<String>,
    pub file: Option<String>,
    pub trusted_cosign_keys: Option<Vec<String>>,
    pub manifest_cosign_signature: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bmc {
    pub endpoint: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_fingerprint: Option<String>,
    pub insecure: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    pub servers: Option<Vec<String>>,
    pub search: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: Option<String>,
    pub create: Option<bool>,
    pub join: Option<String>,
    pub ca_pem: Option<String>,
    pub fingerprint: Option<String>,
    pub root_password: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceph {
    pub mon: Option<bool>,
    pub mgr: Option<bool>,
    pub osd_devices: Option<Vec<String>>,
    pub network: Option<String>,
    pub mon_address: Option<String>,
    pub wipe: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: Option<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub root_password: Option<String>,
    pub tls_fingerprint: Option<String>,
    pub tls_fingerprint_trusted: Option<String>,
    pub cluster_ca_pem: Option<String>,
    pub seed_sha256: Option<String>,
    pub ssh_host_key: Option<String>,
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
    /// root@pam's (or, without a root password, the provider's token); `None` when there are
    /// none (a destroy that only powers off needs none).
    creds: Option<Credentials>,
    /// From the operation's `timeouts`: every wait of the step ends here.
    deadline: Instant,
    /// What the user should know although the step went on (returned with the state).
    warnings: std::sync::Mutex<Diagnostics>,
}

impl<'a> Node<'a> {
    fn new(ctx: &'a Ctx, name: &'a str, address: &'a str, creds: Option<Credentials>, deadline: Instant) -> Self {
        Node { ctx, name, address, creds, deadline, warnings: Default::default() }
    }

    /// A warning for the user, returned with the operation's result (and logged).
    fn warn(&self, path: AttrPath, summary: &str, detail: String) {
        tracing::warn!(node = %self.name, %path, "{summary}: {detail}");
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).warn_at(path, summary, detail);
    }

    fn take_warnings(&self) -> Diagnostics {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn creds(&self) -> Result<&Credentials, Diagnostics> {
        self.creds.as_ref().ok_or_else(trust::no_credentials)
    }

    /// How the node's waits on its API poll (power, certificates, cluster state): from 25 ms,
    /// since most of them end within a second, up to 500 ms; a fixed interval with
    /// `EDGE_FIXED_POLL_MS` (the converge benchmark's baseline).
    fn api_backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(25), Duration::from_millis(500)).fixed(self.ctx.clients.settings.fixed_poll)
    }
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
                .attr(Attribute::optional("root_password", Type::String).sensitive().write_only().describe("root@pam's password on the node (at least 16 characters). Its SHA-512 crypt hash goes to the node in the first-boot seed; the provider talks to the node as root@pam with it (a node installed from the image knows no API token; clustering and OSDs are root@pam's alone). Never stored: write-only on Terraform 1.11+. Refresh and destroy use the provider's `pve.root_password`; default: that one."))
                .attr(Attribute::optional_computed("tls_fingerprint", Type::String).describe("SHA-256 fingerprint of the certificate the node's API presents (`AB:CD:…`). Set it to pin a certificate by hand (then only that one is accepted). Left out, the provider trusts the seed's bootstrap certificate at first boot and the node's CA (`cluster_ca_pem`) after it, so a join's or renewal's new certificate is no drift; a certificate the CA did not sign is, never trusted silently."))
                .attr(Attribute::computed("tls_fingerprint_trusted", Type::String).describe("The fingerprint of the certificate the provider last accepted (the pinned one, or one the node's CA signed)."))
                .attr(Attribute::computed("cluster_ca_pem", Type::String).describe("The CA the provider verifies the node against (`pve-root-ca.pem`, PEM): the node's own, made at install and read over the seed-pinned channel; its cluster's once it is in one. Wire it into a member's `cluster.ca_pem` and into `edge_ceph_pool.pve.ca_pem`: they trust the cluster through it, across rebuilds."))
                .attr(Attribute::computed("seed_sha256", Type::String).describe("sha256 of the first-boot seed the node last booted with, as the node states it in its notes."))
                .attr(Attribute::computed("ssh_host_key", Type::String).describe("The node's SSH host public key (`ssh-ed25519 AAAA…`), made by the provider in the seed before the node booted: pin it in `edge_wireguard_peer.ssh.host_key`."))
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
                        Block::new("The signed node image. Verified (signature against the provider's `trusted_image_keys`, then the file's size, sha256 and NAR hash) before the BMC is touched; a local manifest is checked at plan time already. Changing it replaces the node, or re-images it in place with `reimage_on_change`. Required to create a node; left out (with `bmc`) on a node adopted from a store built by hand, which the provider then never boots, re-images or powers.")
                            .attr(Attribute::required("url", Type::String).describe("Where the BMC fetches the image (virtual media URL, http(s)); also a local path for verification only setups."))
                            .attr(Attribute::required("manifest", Type::String).describe("The signed manifest (`edge-image sign`), a local path or an http(s) URL."))
                            .attr(s("file", "Which file of the manifest the URL serves; default: the only file with a sha256."))
                            .attr(Attribute::optional("trusted_cosign_keys", Type::list(Type::String)).describe("Cosign public keys (PEM `-----BEGIN PUBLIC KEY-----`, ECDSA P-256, e.g. `cosign.pub`) also trusted for this image: the manifest passes with a valid Nix-format signature by one of the provider's `trusted_image_keys` OR a valid Cosign signature of manifest.json (`cosign sign-blob --key`) by one of these. Other key types are refused."))
                            .attr(s("manifest_cosign_signature", "The manifest's Cosign signature (base64 DER, as `cosign sign-blob --output-signature` writes it), a local path or an http(s) URL; default: the manifest's location + `.sig`. Read only with `trusted_cosign_keys`.")),
                    ),
                )
                .block(
                    NestedBlock::single(
                        "bmc",
                        Block::new("The node's BMC (Redfish). Required to create a node, together with `image`; an adopted node without them keeps its power and image as they are.")
                            .attr(Attribute::required("endpoint", Type::String).describe("The system's Redfish URL (`https://bmc/redfish/v1/Systems/ID`), or the BMC's base URL when it has one system."))
                            .attr(s("username", "BMC user; default: the provider's `redfish.username`."))
                            .attr(Attribute::optional("password", Type::String).sensitive().write_only().describe("BMC password; default: the provider's `redfish.password`. Write-only on Terraform 1.11+."))
                            .attr(s("tls_fingerprint", "SHA-256 fingerprint of the BMC certificate (https endpoints)."))
                            .attr(Attribute::optional("insecure", Type::Bool).describe("Skip BMC certificate checks (labs only).")),
                    ),
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
                        .attr(s("ca_pem", "The cluster's CA (the creating node's `cluster_ca_pem`): the member is trusted through it, and so is this node after the join."))
                        .attr(s("fingerprint", "Pin the member's certificate by hand instead of `ca_pem`."))
                        .attr(Attribute::optional("root_password", Type::String).sensitive().write_only().describe("root@pam password of the member (PVE's join logs in to it); default: this node's `root_password`. Write-only on Terraform 1.11+.")),
                ))
                .block(NestedBlock::single(
                    "ceph",
                    Block::new("Ceph roles of the node (`pveceph init`, mon, mgr, OSDs).")
                        .attr(Attribute::optional("mon", Type::Bool).describe("Run a monitor."))
                        .attr(Attribute::optional("mgr", Type::Bool).describe("Run a manager."))
                        .attr(Attribute::optional("osd_devices", Type::list(Type::String)).describe("Disks to turn into OSDs, e.g. `/dev/sdb`. PVE refuses a disk that holds anything (partitions, LVM, a filesystem): see `wipe`."))
                        .attr(s("network", "Public network for `ceph init` (CIDR), used when the cluster's Ceph is not initialized yet."))
                        .attr(s("mon_address", "The monitor's address, needed when the node has more than one address in the Ceph public network (PVE cannot choose)."))
                        .attr(Attribute::optional("wipe", Type::Bool).describe("Wipe an `osd_devices` disk that holds something before creating its OSD (its data is lost). Default false: such a disk is an error naming it.")),
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
        if !ctx.write_only_supported {
            warn_write_only_stored(plan, &cfg);
        }
        // 1. The image, at plan time where it can be.
        let verified = boot::plan_image(ctx, plan, &cfg).await?;
        let Some(prior) = plan.prior.clone() else {
            boot::require_boot_blocks(&cfg)?;
            trust::require_root_password(ctx, plan, &cfg)?;
            plan.set_unknown("booted_image")?;
            plan.set_unknown("ceph_fsid")?;
            trust::plan_unknown(plan, &cfg)?;
            return Ok(());
        };
        let image_changed = boot::plan_reimage(plan, &cfg, &prior, verified.as_ref())?;
        // A node that comes back may have been rebuilt: what it presents is known only then.
        let comes_back = boot::plan_power_on(plan, &cfg, &prior, verified.as_ref(), image_changed)?;
        // A re-image boots a new seed: a new certificate, CA and host key.
        if comes_back || (image_changed && cfg.reimage_on_change == Some(true)) {
            trust::plan_unknown(plan, &cfg)?;
        } else if prior.cluster.as_ref().and_then(|c| c.join.as_ref())
            != cfg.cluster.as_ref().and_then(|c| c.join.as_ref())
        {
            // A (new) join gives the node the cluster's CA and a certificate from it.
            plan.set_unknown("cluster_ca_pem")?;
            if cfg.tls_fingerprint.is_none() {
                plan.set_unknown("tls_fingerprint")?;
            }
            plan.set_unknown("tls_fingerprint_trusted")?;
        }
        // A new image, a rebuilt node or other Ceph roles may change the fsid.
        if comes_back || image_changed || prior.ceph != cfg.ceph {
            plan.set_unknown("ceph_fsid")?;
        }
        // After the power step: a known drift wins over its unknown.
        trust::plan_drift(plan, &cfg, &prior)?;
        // ACME: an order in this apply replaces the node's certificate (and the provider
        // re-pins the one it ordered), so the fingerprints are only known after apply.
        if acme::may_order(prior.acme.as_ref(), cfg.acme.as_ref()) {
            plan.set_unknown("tls_fingerprint")?;
            plan.set_unknown("tls_fingerprint_trusted")?;
        }
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, planned: State, config: &State) -> Applied<State> {
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Create, DEFAULT_CREATE);
        let mut st = planned;
        st.id = st.name.clone();
        // A failed create leaves no state on purpose: every step first looks at the machine, so
        // the re-run resumes where this one stopped (no second install). A partial state would
        // be tainted and replaced: destroyed and installed again.
        let warnings = converge(ctx, &mut st, config, None, deadline).await?;
        Ok(Done::with_warnings(st, warnings))
    }

    async fn read(&self, ctx: &Ctx, state: State) -> Result<Done<Option<State>>, Diagnostics> {
        let mut st = state;
        let mut warnings = Diagnostics::new();
        let name = req(&st.name, "name")?;
        let address = req(&st.address, "address")?;
        if !boot::read_power(ctx, &mut st, &name, &mut warnings).await? {
            // Nothing else can be read from a powered-off node; keep the last known values.
            return Ok(Done::with_warnings(Some(st), warnings));
        }
        // The API is only read through what the provider trusts.
        let Some(trusted) = trust::read(&mut st, &name, &address, &mut warnings).await else {
            return Ok(Done::with_warnings(Some(st), warnings));
        };
        // Write-only root_password is not in state: refresh uses the provider's credentials.
        let Some(creds) = trust::credentials(ctx, None) else {
            tracing::warn!(node = %name, "no credentials for refresh (set the provider's pve.root_password); keeping the last known configuration");
            warnings.warn_at(
                AttrPath::root("root_password"),
                "Node not refreshed: no credentials",
                format!("root_password is write-only, so refresh needs the provider's pve.root_password (or EDGE_PVE_ROOT_PASSWORD) to read {name}. Kept the last known configuration: drift on this node is not seen."),
            );
            return Ok(Done::with_warnings(Some(st), warnings));
        };
        // The node answered the probe: read with the usual retries (a 5xx is worth another try).
        let pve = trust::node_client(&address, &trusted, &creds, false)?;
        // The CA of the /etc/pve the node is in now, read over the trusted channel.
        if let Some(ca) = pve.root_ca(&name).await.map_err(|e| diag("Cannot read the node's CA", e))? {
            st.cluster_ca_pem = Some(ca);
        }
        configure::read(&pve, &name, &mut st).await?;
        cluster::read(&pve, &mut st).await?;
        ceph::read(&pve, &name, &mut st).await?;
        acme::read(&pve, &name, &mut st).await?;
        Ok(Done::with_warnings(Some(st), warnings))
    }

    async fn update(&self, ctx: &Ctx, prior: State, planned: State, config: &State) -> Applied<State> {
        let deadline = Instant::now() + Timeouts::get(&planned.timeouts, Op::Update, DEFAULT_UPDATE);
        let mut st = planned;
        st.id = st.name.clone();
        let warnings = converge(ctx, &mut st, config, Some(&prior), deadline).await?;
        Ok(Done::with_warnings(st, warnings))
    }

    async fn delete(&self, ctx: &Ctx, prior: State) -> Result<Done<()>, Diagnostics> {
        let deadline = Instant::now() + Timeouts::get(&prior.timeouts, Op::Delete, DEFAULT_DELETE);
        let name = req(&prior.name, "name")?;
        let address = req(&prior.address, "address")?;
        let node = Node::new(ctx, &name, &address, trust::credentials(ctx, None), deadline);
        // Leave the cluster first, while it has quorum (delnode needs it), one node at a time;
        // then power off, so the node cannot come back as a member.
        cluster::leave(&node, &prior).await?;
        if prior.bmc.is_some() {
            boot::power_off_for_destroy(&node, &prior).await?;
        }
        Ok(Done::with_warnings((), node.take_warnings()))
    }

    async fn import(&self, ctx: &Ctx, req: ImportRequest) -> Result<Done<State>, Diagnostics> {
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
            cluster_ca_pem: found.ca_pem,
            power: Some("on".into()),
            timezone: Some(String::new()),
            dns: Some(Dns::default()),
            cluster: found.cluster.map(|c| Cluster { name: Some(c), ..Default::default() }),
            ceph: Some(Ceph::default()),
            ..Default::default()
        }
        .into())
    }
}

/// The framework warns for top-level write-only attributes (`root_password`); these sit in blocks.
fn warn_write_only_stored(plan: &mut PlanCtx<State>, cfg: &State) {
    let nested = [
        (AttrPath::root("cluster").attr("root_password"), cfg.cluster.as_ref().and_then(|c| c.root_password.as_ref())),
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

/// Each step checks its own settings, in the order of the steps.
fn validate_config(c: &State, d: &mut Diagnostics) {
    validate_identity(c, d);
    Timeouts::validate(&c.timeouts, d);
    boot::validate(c, d);
    trust::validate(c, d);
    cluster::validate(c, d);
    ceph::validate(c, d);
    acme::validate_config(c, d);
    configure::validate(c, d);
}

/// The node's name (PVE's `pve-node` format) and the address of its API (an IP or host name:
/// the provider adds the port).
fn validate_identity(c: &State, d: &mut Diagnostics) {
    if let Some(n) = &c.name {
        if let Err(e) = crate::provider::check_node_name(n) {
            d.error_at(AttrPath::root("name"), "Invalid node name", e);
        }
    }
    if let Some(a) = &c.address {
        if crate::resources::wireguard_peer::check_host(a).is_err() {
            d.error_at(
                AttrPath::root("address"),
                "Invalid node address",
                format!("{a:?}: give the node's IP address or host name only, e.g. \"10.1.0.11\" (no scheme, no port: the API is on {PVE_PORT})"),
            );
        }
    }
}

/// The converge path of create, update and a re-run after an interruption: the steps in order.
/// Returns the warnings of the steps.
async fn converge(
    ctx: &Ctx,
    st: &mut State,
    config: &State,
    prior: Option<&State>,
    deadline: Instant,
) -> Result<Diagnostics, Diagnostics> {
    let name = req(&st.name, "name")?;
    let address = req(&st.address, "address")?;
    let img_cfg = config.image.clone().unwrap_or_default();
    // An adopted node (imported from a store built by hand, declared without image and BMC):
    // the provider neither boots nor powers it, and converges its configuration only.
    let adopted = config.image.is_none() && config.bmc.is_none();
    if adopted && prior.is_none() {
        boot::require_boot_blocks(config)?;
    }
    let url = if adopted { String::new() } else { req(&img_cfg.url, "image.url")? };
    let creds = trust::credentials(ctx, Some(config)).ok_or_else(trust::no_credentials)?;
    let node = Node::new(ctx, &name, &address, Some(creds), deadline);
    let reimage =
        prior.is_some_and(|p| p.image.is_some() && (p.image != config.image || p.image_sha256 != st.image_sha256));
    let first_install = prior.is_none();

    // 1. Verify the image before anything touches the machine (also at apply: the manifest or
    //    the file may have changed since the plan).
    let mut verified = if !adopted && (first_install || reimage) {
        Some(boot::verify_image(ctx, st, &img_cfg, &url).await?)
    } else {
        None
    };

    // 2. BMC: boot the image with a new seed unless the node already runs it; power as
    //    configured.
    let bmc = if adopted { None } else { Some(boot::bmc_client(ctx, st, Some(config))?) };
    let want_on = st.power.as_deref() != Some("off");
    let mut booted = None;
    // Powered on from its own disk in this run: if it does not answer, it is blank.
    let mut from_disk = false;
    if let Some(bmc) = &bmc {
        if verified.is_some() {
            booted = Some(boot::boot_image(&node, bmc, &url, config, prior, reimage).await?);
            st.booted_image = Some(url.clone());
        } else if want_on {
            from_disk = boot::power_on_from_disk(&node, bmc).await?;
        }
        if !want_on {
            boot::power_off(&node, bmc).await?;
            st.power = Some("off".into());
            return Ok(node.take_warnings());
        }
    } else if !want_on {
        return Err(boot::no_bmc_for_power());
    }
    st.power = Some("on".into());

    // 3. The node's API, trusting only what is known before it answers: the seed's certificate
    //    after a boot, else what was trusted before.
    let known = || {
        trust::expected(config, prior, None).ok_or_else(|| {
            Diagnostics::at(
                AttrPath::root("tls_fingerprint"),
                "No way to trust the node",
                format!("{name} was not booted by the provider in this run and nothing about it is known: pin its certificate in tls_fingerprint."),
            )
        })
    };
    let mut fp = if from_disk {
        match boot::wait_from_disk(&node, config, &known()?).await? {
            Some(fp) => fp,
            // Disaster recovery: the machine powered on but nothing answers from its disk.
            None => {
                let bmc = bmc.as_ref().ok_or_else(boot::no_bmc_for_power)?;
                let (v, b) = boot::reimage_blank(&node, bmc, st, config, &img_cfg, &url).await?;
                verified = Some(v);
                let fp = boot::wait_api(&node, &b.trust()).await?;
                booted = Some(b);
                fp
            }
        }
    } else {
        let t = match &booted {
            Some(b) => b.trust(),
            None => known()?,
        };
        boot::wait_api(&node, &t).await?
    };
    if st.booted_image.is_none() {
        st.booted_image = prior.and_then(|p| p.booted_image.clone());
    }
    let mut trusted = match &booted {
        Some(b) => b.trust(),
        None => known()?,
    };
    if let Some(b) = booted {
        let pve = trust::node_client(&address, &trusted, node.creds()?, false)?;
        let bmc = bmc.as_ref().ok_or_else(boot::no_bmc_for_power)?;
        boot::confirm_boot(&node, &pve, bmc, &url, &b).await?;
        if let boot::Boot::Seeded { seed, published } = b {
            // The seed served its purpose: the node applied it. Stop serving it, learn the
            // node's CA over the seed-pinned channel and retire the bootstrap certificate.
            drop(published);
            let (ca, own_fp) = trust::adopt_node_ca(&node, &pve).await?;
            st.cluster_ca_pem = Some(ca.clone());
            st.seed_sha256 = Some(seed.sha256);
            st.ssh_host_key = Some(seed.ssh_host_key);
            trusted = trust::by_ca(config, &ca);
            fp = own_fp;
        }
    } else {
        st.seed_sha256 = prior.and_then(|p| p.seed_sha256.clone());
        st.ssh_host_key = prior.and_then(|p| p.ssh_host_key.clone());
        // The CA the node is trusted through, else the one recorded, else the node's own read
        // over the trusted channel.
        st.cluster_ca_pem = match &trusted {
            trust::Trusted::Ca(ca) => Some(ca.clone()),
            trust::Trusted::Pin(_) => prior.and_then(|p| p.cluster_ca_pem.clone()),
        };
        if st.cluster_ca_pem.is_none() {
            let pve = trust::node_client(&address, &trusted, node.creds()?, false)?;
            st.cluster_ca_pem = pve.root_ca(&name).await.map_err(|e| diag("Cannot read the node's CA", e))?;
        }
    }
    trust::pin(st, &fp);
    let mut pve = trust::node_client(&address, &trusted, node.creds()?, false)?;

    // 4. DNS, timezone, network.
    configure::converge(&node, &pve, config).await?;
    // 5. Cluster: a join makes the node trusted through the cluster's CA.
    let membership = cluster::converge(&node, &pve, config, st).await?;
    if let cluster::Membership::Joined(t) = &membership {
        let fp = trust::wait_presenting(&node, t, "its certificate").await?;
        trust::pin(st, &fp);
        pve = trust::node_client(&address, t, node.creds()?, false)?;
    }
    // 6. Ceph.
    if let Some(c) = &config.ceph {
        ceph::converge(&node, &pve, c, matches!(membership, cluster::Membership::Created)).await?;
    }
    st.ceph_fsid = Some(ceph::fsid(&pve, &name).await?);
    // 7. ACME, last: an order replaces the node's API certificate. The provider caused that
    // change and verified the new certificate against acme.ca_pem for an ordered domain, so
    // re-pinning it is legitimate (any other certificate change stays drift).
    if let Some(a) = &config.acme {
        acme::converge(&node, &pve, a, st).await?;
    }
    // Done: eject the image and the seed so the next power cycle boots the disk.
    if let (Some(_), Some(bmc)) = (&verified, &bmc) {
        boot::eject(bmc).await?;
    }
    tracing::info!(node = %name, adopted, redfish_calls = bmc.as_ref().map_or(0, |b| b.calls()), "node converged");
    Ok(node.take_warnings())
}

/// A value the plan left unknown must be known by apply.
fn req(v: &Option<String>, attr: &str) -> Result<String, Diagnostics> {
    v.clone().ok_or_else(|| Diagnostics::error("Missing value", format!("{attr} must be known at apply")))
}

/// A failed call as an error diagnostic: what could not be done, and the client's reason.
fn diag(summary: &str, e: impl std::fmt::Display) -> Diagnostics {
    Diagnostics::error(summary, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_in_step_order() {
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

    #[test]
    fn image_and_bmc_go_together_and_an_adopted_node_cannot_be_powered_off() {
        let paths = |c: State| {
            let mut d = Diagnostics::new();
            validate_config(&c, &mut d);
            d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(paths(State { image: Some(Image::default()), ..Default::default() }), vec!["bmc"]);
        assert_eq!(paths(State { bmc: Some(Bmc::default()), ..Default::default() }), vec!["image"]);
        assert!(paths(State::default()).is_empty(), "an adopted node declares neither");
        assert_eq!(paths(State { power: Some("off".into()), ..Default::default() }), vec!["power"]);
        let create = boot::require_boot_blocks(&State::default()).err().unwrap_or_default();
        let missing: Vec<String> = create.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect();
        assert_eq!(missing, vec!["image", "bmc"]);
    }
}
