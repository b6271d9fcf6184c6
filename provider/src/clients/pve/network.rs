//! `/nodes/{node}/network`: interfaces, pending changes, and applying them.

use serde::{Deserialize, Serialize};

use super::{MaybeUpid, PveClient};
use crate::clients::http::{de, segment, Retry};
use crate::clients::ClientError;

/// One interface as PVE reports it, and the parameters to create or change one (PVE spells
/// some names with `-`; flags go out as 0/1 and are read back from numbers, strings or booleans).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub bridge_ports: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_bool",
        serialize_with = "de::ser_opt_flag"
    )]
    pub bridge_vlan_aware: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub slaves: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub bond_mode: Option<String>,
    #[serde(default, rename = "vlan-id", skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub vlan_id: Option<i64>,
    #[serde(default, rename = "vlan-raw-device", skip_serializing_if = "Option::is_none")]
    pub vlan_raw_device: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_bool",
        serialize_with = "de::ser_opt_flag"
    )]
    pub autostart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_int")]
    pub mtu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_string")]
    pub comments: Option<String>,
}

impl PveClient {
    /// `GET /nodes/{node}/network` (running config plus pending changes).
    pub async fn interfaces(&self, node: &str) -> Result<Vec<Interface>, ClientError> {
        self.api.get(&format!("/nodes/{}/network", segment(node))).await
    }
    /// Creates an interface in the pending config (`interfaces.new`); not repeated blindly.
    pub async fn create_interface(&self, node: &str, iface: &Interface) -> Result<(), ClientError> {
        self.api
            .post::<_, serde::de::IgnoredAny>(&format!("/nodes/{}/network", segment(node)), iface, Retry::Once)
            .await
            .map(drop)
    }
    /// Changes interface `name` in the pending config (`iface` in `settings` is not sent).
    pub async fn update_interface(&self, node: &str, name: &str, settings: &Interface) -> Result<(), ClientError> {
        let body = Interface { iface: None, ..settings.clone() };
        self.api
            .put::<_, serde::de::IgnoredAny>(&format!("/nodes/{}/network/{}", segment(node), segment(name)), &body)
            .await
            .map(drop)
    }
    /// Applies the pending changes (`ifreload`, a `srvreload` task).
    pub async fn apply_network(&self, node: &str) -> Result<MaybeUpid, ClientError> {
        #[derive(Serialize)]
        struct Empty {}
        self.api.put(&format!("/nodes/{}/network", segment(node)), &Empty {}).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_read_any_spelling_and_write_pve_names() {
        let have: Interface = serde_json::from_value(serde_json::json!(
            {"iface": "vmbr1", "type": "bridge", "bridge_ports": "eno2", "autostart": 1, "vlan-id": "20",
             "bridge_vlan_aware": "0", "mtu": "1500", "families": ["inet"], "active": 1}
        ))
        .unwrap();
        assert_eq!(have.vlan_id, Some(20));
        assert_eq!(have.autostart, Some(true));
        assert_eq!(have.bridge_vlan_aware, Some(false));
        assert_eq!(have.mtu, Some(1500));
        let b = serde_json::to_value(Interface {
            vlan_id: Some(5),
            vlan_raw_device: Some("bond0".into()),
            autostart: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(b, serde_json::json!({"vlan-id": 5, "vlan-raw-device": "bond0", "autostart": 1}));
    }
}
