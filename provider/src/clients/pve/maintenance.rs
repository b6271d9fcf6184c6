//! Node maintenance: Ceph's OSD flags (`/cluster/ceph/flags/{flag}`) and a node reboot
//! (`POST /nodes/{node}/status`, `command=reboot`).

use serde::Serialize;

use super::PveClient;
use crate::clients::http::{de, segment, Retry};
use crate::clients::ClientError;

impl PveClient {
    /// Whether OSD map flag `flag` (`noout`, …) is set (`GET /cluster/ceph/flags/{flag}`; PVE
    /// reads `osd dump`).
    pub async fn ceph_flag(&self, flag: &str) -> Result<bool, ClientError> {
        let v: serde_json::Value = self.api.get(&format!("/cluster/ceph/flags/{}", segment(flag))).await?;
        Ok(de::boolean(&v).unwrap_or(false))
    }

    /// Sets or clears OSD map flag `flag` (`PUT /cluster/ceph/flags/{flag}`: one synchronous
    /// `osd set|unset` mon command; a repeat is harmless).
    pub async fn set_ceph_flag(&self, flag: &str, value: bool) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body {
            value: bool,
        }
        let path = format!("/cluster/ceph/flags/{}", segment(flag));
        self.api.put::<_, serde::de::IgnoredAny>(&path, &Body { value }).await.map(drop)
    }

    /// Asks `node` to reboot. PVE answers at once and reboots two seconds later
    /// (`(sleep 2;/sbin/reboot)&`), so the answer says nothing about the reboot itself. Sent
    /// once only: a retry after the node got it would reboot it again.
    pub async fn reboot_node(&self, node: &str) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body {
            command: &'static str,
        }
        let path = format!("/nodes/{}/status", segment(node));
        self.api.post::<_, serde::de::IgnoredAny>(&path, &Body { command: "reboot" }, Retry::Once).await.map(drop)
    }
}
