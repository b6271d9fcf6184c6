//! Node endpoints: `/nodes`, `/nodes/{node}/status|dns|time|config`, `/nodes/{node}/disks/list`.

use serde::{Deserialize, Serialize};

use super::{MaybeUpid, PveClient};
use crate::clients::http::{de, segment};
use crate::clients::ClientError;

/// An entry of `GET /nodes`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeEntry {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub status: Option<String>,
    /// SHA-256 of the certificate the node's API serves (`AB:CD:…`).
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
}

/// `GET /nodes/{node}/status`: only what the provider looks at.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeStatus {
    #[serde(default, deserialize_with = "de::opt_int")]
    pub uptime: Option<i64>,
    /// `pve-manager/<version>/<repoid>`.
    #[serde(default)]
    pub pveversion: Option<String>,
}

/// `GET|PUT /nodes/{node}/dns`. PUT replaces everything and needs `search`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeDns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns3: Option<String>,
}

impl NodeDns {
    /// The resolvers in order (dns1..dns3).
    pub fn servers(&self) -> Vec<String> {
        [&self.dns1, &self.dns2, &self.dns3].into_iter().flatten().cloned().collect()
    }
    /// The settings for `search` and up to three `servers`.
    pub fn with(search: String, servers: &[String]) -> NodeDns {
        let at = |i: usize| servers.get(i).cloned();
        NodeDns { search: Some(search), dns1: at(0), dns2: at(1), dns3: at(2) }
    }
}

/// `GET /nodes/{node}/time`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeTime {
    #[serde(default)]
    pub timezone: Option<String>,
}

/// `GET /nodes/{node}/config` (`/etc/pve/nodes/{node}/config`): the keys the provider manages.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct NodeConfig {
    #[serde(default)]
    pub acme: Option<String>,
    #[serde(default)]
    pub acmedomain0: Option<String>,
    #[serde(default)]
    pub acmedomain1: Option<String>,
    #[serde(default)]
    pub acmedomain2: Option<String>,
    #[serde(default)]
    pub acmedomain3: Option<String>,
    #[serde(default)]
    pub acmedomain4: Option<String>,
    #[serde(default)]
    pub acmedomain5: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// `PUT /nodes/{node}/config`: what changes, what to `delete`, and the `digest` the change is
/// based on (a concurrent edit then fails instead of being overwritten).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeConfigUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain0: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acmedomain5: Option<String>,
    /// Comma-separated keys to remove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// PVE's node config has `acmedomain0` … `acmedomain5`.
pub const ACME_DOMAIN_SLOTS: usize = 6;

impl NodeConfig {
    /// `acmedomain{i}`.
    pub fn acme_domain(&self, i: usize) -> Option<&str> {
        [
            &self.acmedomain0,
            &self.acmedomain1,
            &self.acmedomain2,
            &self.acmedomain3,
            &self.acmedomain4,
            &self.acmedomain5,
        ]
        .get(i)
        .and_then(|d| d.as_deref())
    }
}

impl NodeConfigUpdate {
    /// Sets `acmedomain{i}` (ignored past the last slot).
    pub fn set_acme_domain(&mut self, i: usize, v: String) {
        let slot = match i {
            0 => &mut self.acmedomain0,
            1 => &mut self.acmedomain1,
            2 => &mut self.acmedomain2,
            3 => &mut self.acmedomain3,
            4 => &mut self.acmedomain4,
            5 => &mut self.acmedomain5,
            _ => return,
        };
        *slot = Some(v);
    }
}

/// An entry of `GET /nodes/{node}/disks/list`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Disk {
    #[serde(default)]
    pub devpath: Option<String>,
    /// The OSD on the disk, −1 when none.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub osdid: Option<i64>,
    #[serde(default, rename = "osdid-list", deserialize_with = "de::opt_ints")]
    pub osdid_list: Option<Vec<i64>>,
    #[serde(default)]
    pub used: Option<String>,
}

impl Disk {
    /// Whether the disk carries a Ceph OSD.
    pub fn has_osd(&self) -> bool {
        self.osdid.is_some_and(|i| i >= 0) || self.osdid_list.as_ref().is_some_and(|l| !l.is_empty())
    }
    /// What PVE says the disk holds (`partitions`, `LVM`, a filesystem, `mounted`, …) when
    /// anything: PVE creates no OSD on such a disk.
    pub fn in_use(&self) -> Option<&str> {
        self.used.as_deref().filter(|u| !u.is_empty())
    }
}

impl PveClient {
    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, ClientError> {
        self.api.get("/nodes").await
    }
    /// `GET /nodes/{node}/status` (also: the node's API answers and accepts the credentials).
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, ClientError> {
        self.api.get(&format!("/nodes/{}/status", segment(node))).await
    }
    pub async fn dns(&self, node: &str) -> Result<NodeDns, ClientError> {
        self.api.get(&format!("/nodes/{}/dns", segment(node))).await
    }
    /// Replaces the node's resolver settings (`search` is required by PVE).
    pub async fn set_dns(&self, node: &str, dns: &NodeDns) -> Result<(), ClientError> {
        self.api.put::<_, serde::de::IgnoredAny>(&format!("/nodes/{}/dns", segment(node)), dns).await.map(drop)
    }
    pub async fn time(&self, node: &str) -> Result<NodeTime, ClientError> {
        self.api.get(&format!("/nodes/{}/time", segment(node))).await
    }
    pub async fn set_timezone(&self, node: &str, timezone: &str) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            timezone: &'a str,
        }
        self.api
            .put::<_, serde::de::IgnoredAny>(&format!("/nodes/{}/time", segment(node)), &Body { timezone })
            .await
            .map(drop)
    }
    pub async fn node_config(&self, node: &str) -> Result<NodeConfig, ClientError> {
        self.api.get(&format!("/nodes/{}/config", segment(node))).await
    }
    pub async fn set_node_config(&self, node: &str, update: &NodeConfigUpdate) -> Result<(), ClientError> {
        self.api.put::<_, serde::de::IgnoredAny>(&format!("/nodes/{}/config", segment(node)), update).await.map(drop)
    }
    /// `GET /nodes/{node}/disks/list`.
    pub async fn disks(&self, node: &str) -> Result<Vec<Disk>, ClientError> {
        self.api.get(&format!("/nodes/{}/disks/list", segment(node))).await
    }
    /// Wipes `disk` (partition table, signatures, the first 200 MiB) in a `wipedisk` task.
    /// root@pam only ([`ApiErrorKind::RootOnly`](crate::clients::ApiErrorKind::RootOnly)).
    pub async fn wipe_disk(&self, node: &str, disk: &str) -> Result<MaybeUpid, ClientError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            disk: &'a str,
        }
        self.api.put(&format!("/nodes/{}/disks/wipedisk", segment(node)), &Body { disk }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_reads_are_tolerant() {
        let d: Vec<Disk> = serde_json::from_value(serde_json::json!([
            {"devpath": "/dev/sda", "osdid": -1, "osdid-list": null, "used": "LVM"},
            {"devpath": "/dev/sdb", "osdid": "3"},
            {"devpath": "/dev/sdc", "osdid": -1, "osdid-list": ["4", 5]},
        ]))
        .unwrap();
        assert_eq!(d.iter().map(Disk::has_osd).collect::<Vec<_>>(), [false, true, true]);
        let dns: NodeDns =
            serde_json::from_value(serde_json::json!({"search": "lab", "dns1": "1.1.1.1", "dns3": "9.9.9.9"})).unwrap();
        assert_eq!(dns.servers(), ["1.1.1.1", "9.9.9.9"]);
        let body = serde_json::to_value(NodeDns::with("lab".into(), &["a".into(), "b".into()])).unwrap();
        assert_eq!(body, serde_json::json!({"search": "lab", "dns1": "a", "dns2": "b"}));
        let cfg: NodeConfig = serde_json::from_value(
            serde_json::json!({"acme": "account=x", "acmedomain2": "d", "digest": "ab", "other": 1}),
        )
        .unwrap();
        assert_eq!((cfg.acme_domain(2), cfg.acme_domain(0), cfg.acme_domain(9)), (Some("d"), None, None));
        let mut u = NodeConfigUpdate::default();
        u.set_acme_domain(5, "e".into());
        u.set_acme_domain(6, "ignored".into());
        assert_eq!(serde_json::to_value(&u).unwrap(), serde_json::json!({"acmedomain5": "e"}));
    }
}
