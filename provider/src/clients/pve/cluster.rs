//! Cluster endpoints: `/cluster/status`, `/cluster/config` (create), `/cluster/config/join`
//! (information and join), `/cluster/config/nodes` (members, delnode).

use serde::{Deserialize, Serialize};

use super::{MaybeUpid, PveClient};
use crate::clients::http::{de, segment, Retry};
use crate::clients::{ApiErrorKind, ClientError};

/// An entry of `GET /cluster/status`: the cluster itself (`type = cluster`) or a node.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ClusterStatusEntry {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub nodeid: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub online: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub local: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub quorate: Option<bool>,
    /// The cluster entry's member count, offline members included.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub nodes: Option<i64>,
}

/// What `GET /cluster/status` says about quorum, as pmxcfs has it from corosync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// A node in no cluster: PVE answers with one made-up entry for the node itself.
    Standalone,
    Cluster {
        name: Option<String>,
        /// `None` when the cluster entry carries no `quorate`.
        quorate: Option<bool>,
        /// The member entries listed.
        members: usize,
        /// The members listed as online.
        online: usize,
        /// The members listed as offline, by name.
        offline: Vec<String>,
    },
}

/// `GET /cluster/status`, typed.
#[derive(Clone, Debug, Default)]
pub struct ClusterStatus(pub Vec<ClusterStatusEntry>);

impl ClusterStatus {
    /// The cluster's name; `None` for a standalone node.
    pub fn cluster_name(&self) -> Option<&str> {
        self.0.iter().find(|e| e.kind == "cluster").and_then(|e| e.name.as_deref())
    }
    /// The entry of the node that answered (`local`).
    pub fn local(&self) -> Option<&ClusterStatusEntry> {
        self.0.iter().find(|e| e.kind == "node" && e.local == Some(true))
    }
    /// Quorum and membership as the answering node sees them.
    pub fn quorum(&self) -> Quorum {
        let Some(cluster) = self.0.iter().find(|e| e.kind == "cluster") else { return Quorum::Standalone };
        let members: Vec<&ClusterStatusEntry> = self.0.iter().filter(|e| e.kind == "node").collect();
        Quorum::Cluster {
            name: cluster.name.clone(),
            quorate: cluster.quorate,
            members: members.len(),
            online: members.iter().filter(|e| e.online == Some(true)).count(),
            offline: members.iter().filter(|e| e.online == Some(false)).filter_map(|e| e.name.clone()).collect(),
        }
    }
    /// The node entry called `name`.
    pub fn node(&self, name: &str) -> Option<&ClusterStatusEntry> {
        self.0.iter().find(|e| e.kind == "node" && e.name.as_deref() == Some(name))
    }
    /// Quorate with every member online: the state in which another node may join (a member
    /// that is still finishing its join counts against quorum) or one may be removed.
    pub fn settled(&self) -> bool {
        let quorate = self.0.iter().any(|e| e.kind == "cluster" && e.quorate == Some(true));
        quorate && self.0.iter().filter(|e| e.kind == "node").all(|e| e.online == Some(true))
    }
    /// The cluster's members other than `name` that are online, with their addresses.
    pub fn online_others(&self, name: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|e| e.kind == "node" && e.online == Some(true) && e.name.as_deref() != Some(name))
            .filter_map(|e| Some((e.name.clone()?, e.ip.clone()?)))
            .collect()
    }
}

/// `GET /cluster/config/join`: how to join through this cluster.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct JoinInfo {
    #[serde(default)]
    pub nodelist: Vec<JoinNode>,
    #[serde(default)]
    pub preferred_node: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct JoinNode {
    #[serde(default)]
    pub name: String,
    /// The member's API address.
    #[serde(default)]
    pub pve_addr: Option<String>,
    /// The member's API certificate fingerprint.
    #[serde(default)]
    pub pve_fp: Option<String>,
}

/// `POST /cluster/config/join` (runs on the joining node).
#[derive(Clone, Serialize)]
pub struct JoinRequest {
    /// A member to join through.
    pub hostname: String,
    /// That member's certificate fingerprint.
    pub fingerprint: String,
    /// That member's root@pam password.
    pub password: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest").field("hostname", &self.hostname).field("password", &"<redacted>").finish()
    }
}

/// An entry of `GET /cluster/config/nodes` (corosync's node list).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ClusterNode {
    #[serde(default)]
    pub name: Option<String>,
    /// The same name, under PVE's other key.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, deserialize_with = "de::opt_int")]
    pub nodeid: Option<i64>,
}

impl ClusterNode {
    pub fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name) || self.node.as_deref() == Some(name)
    }
}

impl PveClient {
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.api.get("/cluster/status").await.map(ClusterStatus)
    }
    /// Creates a cluster on this node (`clustercreate` task).
    pub async fn create_cluster(&self, name: &str) -> Result<MaybeUpid, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            clustername: &'a str,
        }
        self.api.post("/cluster/config", &Body { clustername: name }, Retry::Once).await
    }
    /// Join information; `None` for a node that is in no cluster (PVE answers 424).
    pub async fn join_info(&self) -> Result<Option<JoinInfo>, ClientError> {
        match self.api.get("/cluster/config/join").await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is(ApiErrorKind::NotInitialized) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Joins this node to a cluster (`clusterjoin` task; every failure shows in the task).
    pub async fn join_cluster(&self, req: &JoinRequest) -> Result<MaybeUpid, ClientError> {
        self.api.post("/cluster/config/join", req, Retry::Once).await
    }
    /// The cluster's members as corosync lists them.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, ClientError> {
        self.api.get("/cluster/config/nodes").await
    }
    /// Removes `node` from the cluster (`pvecm delnode`). A node the cluster no longer lists
    /// is done: PVE answers that with a 500 like any other failure, so the member list decides.
    pub async fn delete_node(&self, node: &str) -> Result<(), ClientError> {
        let path = format!("/cluster/config/nodes/{}", segment(node));
        match self.api.delete::<_, serde::de::IgnoredAny>(&path, &()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind().is_some() => match self.cluster_nodes().await {
                Ok(members) if !members.iter().any(|n| n.is(node)) => {
                    tracing::debug!(%node, error = %e, "node already gone from the cluster");
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_status_reads_both_shapes() {
        let st: Vec<ClusterStatusEntry> = serde_json::from_value(serde_json::json!([
            {"type": "node", "id": "node/pve1", "name": "pve1", "ip": "10.0.0.1", "local": 1, "nodeid": 0, "online": 1},
        ]))
        .unwrap();
        let st = ClusterStatus(st);
        assert_eq!(st.cluster_name(), None);
        assert_eq!(st.node("pve1").and_then(|n| n.ip.as_deref()), Some("10.0.0.1"));
        assert_eq!(st.quorum(), Quorum::Standalone);
        assert_eq!(st.local().and_then(|n| n.name.as_deref()), Some("pve1"));
        let st: Vec<ClusterStatusEntry> = serde_json::from_value(serde_json::json!([
            {"type": "cluster", "id": "cluster", "name": "store1", "nodes": 2, "quorate": 1, "version": 3},
            {"type": "node", "name": "pve2", "online": true, "nodeid": "2"},
        ]))
        .unwrap();
        let st = ClusterStatus(st);
        assert_eq!(st.cluster_name(), Some("store1"));
        assert_eq!(st.0[0].quorate, Some(true));
        assert_eq!(st.node("pve2").and_then(|n| n.nodeid), Some(2));
        assert_eq!(st.0[0].nodes, Some(2));
        assert_eq!(st.local().map(|n| n.name.clone()), None, "no entry is local");
        let st: Vec<ClusterStatusEntry> = serde_json::from_value(serde_json::json!([
            {"type": "cluster", "name": "store1", "nodes": 3, "quorate": 0},
            {"type": "node", "name": "pve1", "online": 1, "local": 1},
            {"type": "node", "name": "pve2", "online": 0},
            {"type": "node", "name": "pve3", "online": 0},
        ]))
        .unwrap();
        assert_eq!(
            ClusterStatus(st).quorum(),
            Quorum::Cluster {
                name: Some("store1".into()),
                quorate: Some(false),
                members: 3,
                online: 1,
                offline: vec!["pve2".into(), "pve3".into()]
            }
        );
        let r = JoinRequest { hostname: "h".into(), fingerprint: "f".into(), password: "SECRET".into() };
        assert!(!format!("{r:?}").contains("SECRET"));
    }
}
