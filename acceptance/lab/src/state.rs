//! The lab's persistent model of a fleet of stores. Written atomically to `DIR/state.json`
//! after every change, so a lab survives `down`/`up` like a real cluster.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pki::{Ca, CertEntry};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabOptions {
    pub stores: u32,
    pub nodes_per_store: u32,
    pub ceph: bool,
    pub redfish: bool,
    pub seed: u64,
    pub net: u8,
    pub install_ms: u64,
    pub artifacts_dir: String,
    /// How the BMC emulator applies power changes (labs from before this option: `real`).
    #[serde(default)]
    pub bmc_power_delay: PowerDelay,
    /// Which PVE and PBS releases the lab answers as (labs from before profiles: the newest).
    #[serde(default)]
    pub profiles: crate::profile::Profiles,
}

/// `--bmc-power-delay`: sushy's fake driver applies a power change 1–11 s after the Reset call,
/// like slow real hardware (`real`); `instant` makes it visible on the next read, so a
/// benchmark measures the provider rather than the BMC's dice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PowerDelay {
    #[default]
    Real,
    Instant,
}

impl PowerDelay {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerDelay::Real => "real",
            PowerDelay::Instant => "instant",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub options: LabOptions,
    pub admin_token: String,
    pub ca: Ca,
    pub stores: Vec<StoreState>,
    /// Config domains (PVE's /etc/pve): `node:<store>/<node>` for a standalone node,
    /// `cluster:<store>/<name>` for a cluster.
    pub domains: BTreeMap<String, Domain>,
    #[serde(default)]
    pub redfish_credentials: Option<(String, String)>,
    #[serde(default)]
    pub counter: u64,
    /// The lab's "ACME CA" that signs certificates ordered through `certificates/acme`.
    #[serde(default)]
    pub acme_ca: Option<Ca>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreState {
    pub id: String,
    pub index: u32,
    pub root_password: String,
    pub token_secret: String,
    pub pbs_token_secret: String,
    pub nodes: Vec<NodeState>,
    pub pools: BTreeMap<String, Pool>,
    /// Erasure-code profiles of the store's Ceph cluster (`osd erasure-code-profile`), by name.
    #[serde(default)]
    pub ec_profiles: BTreeMap<String, EcProfile>,
    #[serde(default)]
    pub next_pool_id: i64,
    pub pbs: PbsState,
    /// OSD map flags (`noout`, …) of the store's Ceph cluster when no real Ceph backs it.
    #[serde(default)]
    pub ceph_flags: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub address: String,
    pub mac: String,
    pub system_id: String,
    pub cert: CertEntry,
    pub power_on: bool,
    pub installed: bool,
    /// Epoch ms when the current install completes (while installing).
    #[serde(default)]
    pub install_until_ms: Option<u64>,
    #[serde(default)]
    pub image: Option<BootedImage>,
    pub dns: Dns,
    pub timezone: String,
    pub cluster: Option<String>,
    pub ceph: CephRoles,
    pub network: Network,
    pub pstart: u64,
    pub boot_time: u64,
    /// `/etc/pve/nodes/{node}/config` (acme, acmedomainN, description, …) as PVE stores it.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The node's own `pve-ssl.pem` while a custom certificate (`pveproxy-ssl.pem`: an ACME
    /// order, or the bootstrap certificate of its seed) is what it presents in `cert`.
    #[serde(default)]
    pub base_cert: Option<CertEntry>,
    /// What the node's first boot took from its seed medium (docs/design/node-bootstrap.md).
    #[serde(default)]
    pub seed: Option<AppliedSeed>,
    /// Until then (epoch ms) pveproxy restarts after a cluster join: connections are reset.
    #[serde(default)]
    pub api_restart_until_ms: Option<u64>,
    /// Until then (epoch ms) pmxcfs restarts after a cluster create: authentication fails.
    #[serde(default)]
    pub auth_restart_until_ms: Option<u64>,
    /// Disks that carry something (`/dev/sde` → `partitions`), as `disks/list` reports `used`.
    #[serde(default)]
    pub used_disks: BTreeMap<String, String>,
    /// Admin drift `seed_tamper`: the next seed read is swapped in transit (another certificate).
    #[serde(default)]
    pub seed_tamper: bool,
    /// The QEMU guests whose config lives on this node (`/etc/pve/nodes/{node}/qemu-server`).
    #[serde(default)]
    pub guests: BTreeMap<u32, Guest>,
    /// Storages (ids) whose space is exhausted on this node: allocating a disk there fails.
    #[serde(default)]
    pub full_storages: std::collections::BTreeSet<String>,
    /// Reboots asked through `POST /nodes/{node}/status` (`pve::maintenance`).
    #[serde(default)]
    pub reboot: NodeReboot,
}

/// A node's reboots: the one in progress (down from `down_at_ms` until `up_at_ms`) and how
/// many were asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeReboot {
    #[serde(default)]
    pub down_at_ms: Option<u64>,
    #[serde(default)]
    pub up_at_ms: Option<u64>,
    #[serde(default)]
    pub count: u64,
}

/// A QEMU guest: its config as `qm config` shows it, and what runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Guest {
    pub vmid: u32,
    /// The guest's config (`name`, `memory`, `cores`, `agent`, `scsi0`, `net0`, …) with the
    /// types PVE's API returns.
    pub config: Map<String, Value>,
    /// The size of its one disk (`scsi0`) in bytes.
    pub disk_bytes: u64,
    /// What is on the disk: the guest OS runs qemu-guest-agent (a backup carries it along).
    pub os_agent: bool,
    /// Epoch ms of the last start while it runs; `None`: stopped.
    #[serde(default)]
    pub running_since_ms: Option<u64>,
    /// `lock: create` while a restore writes it.
    #[serde(default)]
    pub lock: Option<String>,
}

/// What a backup of a guest holds besides its data: the config (`qemu-server.conf.blob`) and
/// whether the OS on its disk runs a guest agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestImage {
    pub config: Map<String, Value>,
    pub disk_bytes: u64,
    pub os_agent: bool,
}

/// The identity a node booted with from its seed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedSeed {
    pub sha256: String,
    /// `root@pam`'s password hash (SHA-512 crypt).
    pub root_password_hash: String,
    /// `ssh-ed25519 AAAA…` of the host key it installed.
    pub ssh_host_public_key: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootedImage {
    pub url: String,
    pub sha256: Option<String>,
    pub booted_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dns {
    pub search: String,
    pub dns1: Option<String>,
    pub dns2: Option<String>,
    pub dns3: Option<String>,
}

impl Default for Dns {
    fn default() -> Self {
        Dns { search: "localdomain".into(), dns1: Some("127.0.0.53".into()), dns2: None, dns3: None }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CephRoles {
    pub mon: bool,
    pub mgr: bool,
    pub osds: Vec<Osd>,
    /// The monitor's public address (`mon_host` entry), when it has one.
    #[serde(default)]
    pub mon_address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Osd {
    pub id: i64,
    pub dev: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Network {
    /// Active interface configs by name.
    pub active: BTreeMap<String, Map<String, Value>>,
    /// Pending configs (None = pending deletion).
    pub pending: BTreeMap<String, Option<Map<String, Value>>>,
}

/// A Ceph pool as PVE sees it (`osd pool get <pool> all` plus applications and usage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pool {
    pub id: i64,
    pub name: String,
    pub size: i64,
    pub min_size: i64,
    pub pg_num: i64,
    #[serde(default)]
    pub pg_num_min: Option<i64>,
    pub crush_rule: String,
    /// Applications enabled on the pool (Ceph allows several; PVE's API only ever adds one).
    #[serde(default)]
    pub applications: std::collections::BTreeSet<String>,
    /// The erasure-code profile of an erasure-coded pool (`None`: replicated).
    #[serde(default)]
    pub ec_profile: Option<String>,
    pub pg_autoscale_mode: String,
    #[serde(default)]
    pub target_size: Option<i64>,
    #[serde(default)]
    pub target_size_ratio: Option<f64>,
    #[serde(default)]
    pub bytes_used: i64,
    #[serde(default)]
    pub percent_used: f64,
}

/// An erasure-code profile as PVE makes it (`pve_ec_<pool>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EcProfile {
    pub k: i64,
    pub m: i64,
    pub failure_domain: String,
    #[serde(default)]
    pub device_class: Option<String>,
}

/// One PVE config domain: what lives in /etc/pve (shared by a cluster).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Domain {
    /// Signs tickets and CSRF tokens.
    pub authkey: String,
    /// `pve-root-ca.pem`: made with the first node's install, the cluster's once it creates one.
    #[serde(default)]
    pub ca: Option<crate::pki::Ca>,
    /// `USER@REALM!ID` -> token record.
    pub tokens: BTreeMap<String, Token>,
    /// The ACL of `user.cfg` (`acl:` lines), in the order entries were first set.
    #[serde(default)]
    pub acl: Vec<AclEntry>,
    pub ceph_initialized: bool,
    #[serde(default)]
    pub ceph_network: Option<String>,
    /// The Ceph cluster's fsid, new at every `ceph/init` (as `pveceph init` makes a new cluster).
    #[serde(default)]
    pub ceph_fsid: Option<String>,
    /// Generic config collections: "backup" (jobs.cfg), "storage" (storage.cfg).
    pub collections: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub config_version: u64,
    /// Until then (epoch ms) an `addnode` holds the cluster lock `file-corosync_conf`.
    #[serde(default)]
    pub corosync_lock_until_ms: Option<u64>,
}

/// One role granted on one ACL path to a user or an API token (`acl:PROPAGATE:PATH:UGID:ROLE:`
/// in PVE's `user.cfg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// Normalised ACL path (`/`, `/nodes/pve1`, `/storage/local`, …).
    pub path: String,
    /// `user` or `token` (the lab has no groups).
    pub kind: String,
    /// `root@pam` or `root@pam!NAME`.
    pub ugid: String,
    pub role: String,
    pub propagate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub secret: String,
    #[serde(default)]
    pub privsep: bool,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expire: i64,
    /// Read-only tokens get 403 on writes (the lab's stand-in for PVE's ACLs).
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PbsState {
    pub address: String,
    pub cert: Option<CertEntry>,
    pub authkey: String,
    pub tokens: BTreeMap<String, Token>,
    /// "datastore", "remote", "sync", "verify", "prune" -> id -> config.
    pub collections: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Last GC status per datastore.
    pub gc: BTreeMap<String, Map<String, Value>>,
    pub pstart: u64,
    /// Backup snapshots per datastore name. Backups come from clients the lab does not run
    /// (vzdump, proxmox-backup-client): the admin API's `POST /lab/backups` makes them.
    #[serde(default)]
    pub snapshots: BTreeMap<String, Vec<BackupSnapshot>>,
}

/// One backup snapshot in a datastore (`<ns>/<type>/<id>/<time>/` on a real PBS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSnapshot {
    /// The namespace, `""` for the root one.
    #[serde(default)]
    pub ns: String,
    /// `vm`, `ct` or `host`.
    pub backup_type: String,
    pub backup_id: String,
    /// Epoch seconds.
    pub backup_time: i64,
    /// The group's owner (the auth id that made the first backup of the group).
    pub owner: String,
    /// The manifest (`index.json.blob`) was written: the backup completed.
    pub finished: bool,
    /// Archives and their sizes in bytes.
    pub files: Vec<(String, u64)>,
    /// The last verify task's verdict (`ok`/`failed`) and its UPID.
    #[serde(default)]
    pub verification: Option<(String, String)>,
    /// A guest backup made by a backup job: what restores recreate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestImage>,
    /// The digest (64 hex) of a chunk the snapshot's index names but the chunk store lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_chunk: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state io {0}: {1}")]
    Io(String, std::io::Error),
    #[error("state json: {0}")]
    Json(#[from] serde_json::Error),
}

impl LabState {
    pub fn load(path: &Path) -> Result<Option<LabState>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(|e| StateError::Io(path.display().to_string(), e))?;
        Ok(Some(serde_json::from_str(&text)?))
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomic(path, text.as_bytes())
    }

    pub fn store(&self, id: &str) -> Option<&StoreState> {
        self.stores.iter().find(|s| s.id == id)
    }

    pub fn store_mut(&mut self, id: &str) -> Option<&mut StoreState> {
        self.stores.iter_mut().find(|s| s.id == id)
    }

    /// The config domain key a node currently uses.
    pub fn domain_key(store: &StoreState, node: &NodeState) -> String {
        match &node.cluster {
            Some(c) => format!("cluster:{}/{}", store.id, c),
            None => format!("node:{}/{}", store.id, node.name),
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

impl StoreState {
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeState> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }
}

impl NodeState {
    /// Whether the node's API answers right now.
    pub fn is_up(&self, now_ms: u64) -> bool {
        self.power_on && self.installed && self.install_until_ms.is_none_or(|t| now_ms >= t) && !self.rebooting(now_ms)
    }

    /// Inside the window in which a reboot has the node down.
    pub fn rebooting(&self, now_ms: u64) -> bool {
        matches!((self.reboot.down_at_ms, self.reboot.up_at_ms), (Some(d), Some(u)) if d <= now_ms && now_ms < u)
    }

    /// When the running system booted (epoch s): a finished reboot counts.
    pub fn booted_at(&self, now_ms: u64) -> u64 {
        match self.reboot.up_at_ms {
            Some(up) if now_ms >= up => self.boot_time.max(up / 1000),
            _ => self.boot_time,
        }
    }
}

/// Write to a temp file in the same directory, fsync, rename: readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), std::process::id()));
    let io = |e| StateError::Io(path.display().to_string(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn now_s() -> u64 {
    now_ms() / 1000
}
