//! Version profiles: which Proxmox VE and PBS release the lab answers as. Every behaviour that
//! differs between releases is a method here, with the source it comes from, so a profile has
//! one place to live (FIDELITY.md lists the same facts with the tests that pin them).

use serde::{Deserialize, Serialize};

/// `--pve`: the Proxmox VE release the nodes answer as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
pub enum PveProfile {
    /// PVE 8.4 (Debian bookworm, pve-manager branch `stable-8`): schema of pve-docs 8.4.2.
    #[value(name = "8.4")]
    #[serde(rename = "8.4")]
    V8_4,
    /// PVE 9.1 (Debian trixie, pve-manager `master` at 9.1.x): schema of pve-docs 9.1.3.
    #[default]
    #[value(name = "9.1")]
    #[serde(rename = "9.1")]
    V9_1,
}

/// `--pbs`: the Proxmox Backup Server release the PBS of each store answers as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
pub enum PbsProfile {
    /// PBS 3.2.4 (proxmox-backup at the 3.2.4-1 bump): the 3.x schema minus what 3.2.4 lacks.
    #[value(name = "3.2")]
    #[serde(rename = "3.2")]
    V3_2,
    /// PBS 3.4.2 (the 3.x schema as published).
    #[value(name = "3.4")]
    #[serde(rename = "3.4")]
    V3_4,
    /// PBS 4.0.11 (the 4.x schema minus what came after 4.0).
    #[default]
    #[value(name = "4.0")]
    #[serde(rename = "4.0")]
    V4_0,
}

impl PveProfile {
    pub fn name(self) -> &'static str {
        match self {
            PveProfile::V8_4 => "8.4",
            PveProfile::V9_1 => "9.1",
        }
    }

    /// `GET /version`: the pve-manager release (`version`), its major.minor (`release`) and the
    /// first 16 hex digits of its commit (`repoid`) — pve-manager `PVE/API2.pm` `version`.
    /// 8.4.18 and 9.1.17 are the releases whose API matches the profile's schema: pve-docs 8.4.2
    /// was built on 8.4.18's day; 9.1.17 is the last 9.1 before 9.1.18 changed pool-status
    /// flag types (pve-manager 93f55e8a).
    pub fn version(self) -> (&'static str, &'static str, &'static str) {
        match self {
            PveProfile::V8_4 => ("8.4.18", "8.4", "40eb4ac16f053344"),
            PveProfile::V9_1 => ("9.1.17", "9.1", "5a0c4302c1a1ea03"),
        }
    }

    /// Verbose pool status reports the requested pool's statistics. Before pve-manager 9.1.12
    /// (fix b0f4269e, "ceph: pool: fix pool statistics filter returning wrong pool's data") a
    /// short-circuited filter in `PVE/API2/Ceph/Pool.pm` `getpool` let every `ceph df` entry
    /// overwrite the result: the statistics of the pool with the highest id came back. stable-8
    /// (8.4.x) never got the fix.
    pub fn per_pool_statistics(self) -> bool {
        self >= PveProfile::V9_1
    }

    /// The Ceph release the store's monitors report (`ceph_version`, `ceph_version_short` in the
    /// monitor list), as `ceph version` prints it. PVE 8 installs Quincy, Reef or Squid; the
    /// stable-8 install wizard picks Reef (`www/manager6/ceph/CephInstallWizard.js`,
    /// `cephRelease`), and `PVE/Ceph/Releases.pm` lists Squid for PVE 9 from 87077653 on (Tentacle
    /// became the wizard's default only in 9.1.15, f3c0665f: clusters older than that, and every
    /// one upgraded from PVE 8, run Squid). Only reported: the lab's real Ceph peer is Debian's
    /// 16.2 whatever the profile (FIDELITY.md DIFF-CEPH-RELEASE).
    pub fn ceph_version(self) -> (&'static str, &'static str) {
        match self {
            PveProfile::V8_4 => {
                ("ceph version 18.2.7 (6b0e988052ec84cf2d4a54ff9bbbc5e720b621ad) reef (stable)", "18.2.7")
            }
            PveProfile::V9_1 => {
                ("ceph version 19.2.3 (c92aebb279828e9c3c1f5d24613efca272649e62) squid (stable)", "19.2.3")
            }
        }
    }

    /// Backup jobs know `notification-policy`/`notification-target` (pve-guest-common 5.0.6,
    /// deprecated; removed in 6.0.1 = PVE 9, commit 3ea111e).
    pub fn backup_notification_policy(self) -> bool {
        self == PveProfile::V8_4
    }
}

impl PbsProfile {
    pub fn name(self) -> &'static str {
        match self {
            PbsProfile::V3_2 => "3.2",
            PbsProfile::V3_4 => "3.4",
            PbsProfile::V4_0 => "4.0",
        }
    }

    /// `GET /version`: `version` is major.minor, `release` the patch level and `repoid` the full
    /// commit of the build (proxmox-backup `src/api2/version.rs` `get_version`, pbs-buildcfg).
    pub fn version(self) -> (&'static str, &'static str, &'static str) {
        match self {
            PbsProfile::V3_2 => ("3.2", "4", "4940514b0f05d6cd6a5f711edfdd47c1fa41b537"),
            PbsProfile::V3_4 => ("3.4", "2", "37f1949335cad801f7cdaa0173cc114590a37e4e"),
            PbsProfile::V4_0 => ("4.0", "11", "b2a7dd369b539b7f4a2a68ecf267ff146f91aba3"),
        }
    }

    /// Sync jobs have a direction (push sync), PBS 3.3.0 (3.2.13 on the test repository):
    /// `sync-direction` on the job, `GET /config/sync?sync-direction=`, and a list that shows
    /// pull jobs only unless asked for push or all (`src/api2/admin/sync.rs` `ListSyncDirection`).
    pub fn sync_direction(self) -> bool {
        self >= PbsProfile::V3_4
    }

    /// Removable datastores (PBS 3.3.0): `GET /admin/datastore` reports each store's
    /// `mount-status` (`nonremovable` for ordinary ones; pbs-api-types `DataStoreListItem`).
    pub fn removable_datastores(self) -> bool {
        self >= PbsProfile::V3_4
    }

    /// A 401 from authentication says why: `authentication failed - REASON`. proxmox-rs
    /// commit 470ee44b ("rest server: unify returned error message for auth failure",
    /// rest-server 1.0.4 = PBS 4.1.2; 0.8.10 = PBS 3.4.8-3 on stable-bookworm, commit c7f49009)
    /// cut it to `authentication failed`; every profile of the lab is older.
    pub fn auth_failure_reason(self) -> bool {
        true
    }

    /// The HttpOnly ticket cookie `__Host-PBSAuthCookie`: read (and preferred over
    /// `PBSAuthCookie`), and expired by a `Set-Cookie` on every 401. proxmox-rs commit 4ef6a1c0
    /// (rest-server 1.0.1, `ApiService::call`), enabled by proxmox-backup commit 8f4e45555
    /// ("api/proxy: set auth cookie name in rest server api config", first in 4.0.7).
    pub fn host_auth_cookie(self) -> bool {
        self >= PbsProfile::V4_0
    }

    /// The largest request body: 64 KiB in rest-server 0.5.x (`get_request_parameters`),
    /// 512 KiB from 0.8.9 (`MAX_REQUEST_BODY_SIZE`), which PBS requires from 3.4.0 on
    /// (proxmox-backup commit f7f61002e).
    pub fn max_request_body(self) -> usize {
        if self >= PbsProfile::V3_4 {
            512 * 1024
        } else {
            64 * 1024
        }
    }

    /// `POST /config/datastore` refuses a relative `path` before it starts the task (3.3.0,
    /// `src/api2/config/datastore.rs` `create_datastore`, removable datastores); 3.2.4 starts
    /// the task and the chunk store creation fails in it.
    pub fn datastore_path_checked_up_front(self) -> bool {
        self >= PbsProfile::V3_4
    }

    /// Deleting a datastore also deletes push sync jobs from it. Before 4.1.1 ("api: config:
    /// fix push sync jobs cleanup on datastore destroy") `delete_datastore` listed sync jobs
    /// with the default direction, pull, so push jobs stayed; every profile of the lab is older.
    pub fn datastore_delete_removes_push_jobs(self) -> bool {
        false
    }
}

/// The profiles a lab runs with (recorded in state.json and lab.json).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    #[serde(default)]
    pub pve: PveProfile,
    #[serde(default)]
    pub pbs: PbsProfile,
    /// PVE error bodies as before pve-http-server 5.2.0 (commit 9a2112e, released 2025-01-28;
    /// PVE 8.0 to early 8.3): `{"data":null}` with the text only in the HTTP reason phrase.
    #[serde(default)]
    pub pve_http_server_legacy: bool,
}
