//! Node certificates: `GET /nodes/{node}/certificates/info` and the ACME order
//! (`POST /nodes/{node}/certificates/acme/certificate`). The node's ACME settings live in its
//! config ([`PveClient::node_config`]).

use serde::{Deserialize, Serialize};

use super::PveClient;
use crate::clients::http::{de, segment, Retry};
use crate::clients::ClientError;

/// The certificate file an ACME order (or a custom upload) installs; pveproxy serves it.
pub const PROXY_CERT_FILE: &str = "pveproxy-ssl.pem";

/// An entry of `GET /nodes/{node}/certificates/info`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CertificateInfo {
    /// `pve-root-ca.pem`, `pve-ssl.pem` or `pveproxy-ssl.pem`.
    #[serde(default)]
    pub filename: String,
    /// SHA-256, `AB:CD:…`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// `DNS:name`, `IP Address:…` (or bare names, depending on the version).
    #[serde(default, deserialize_with = "de::opt_strings")]
    pub san: Option<Vec<String>>,
    /// Expiry, seconds since the epoch.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub notafter: Option<i64>,
    /// The certificate itself (PEM).
    #[serde(default)]
    pub pem: Option<String>,
}

impl CertificateInfo {
    /// The DNS names the certificate is for.
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.san.iter().flatten().map(|s| s.strip_prefix("DNS:").unwrap_or(s))
    }
}

impl PveClient {
    pub async fn certificates(&self, node: &str) -> Result<Vec<CertificateInfo>, ClientError> {
        self.api.get(&format!("/nodes/{}/certificates/info", segment(node))).await
    }
    /// The CA of the `/etc/pve` the node is in (`pve-root-ca.pem`: its own after an install,
    /// its cluster's once it is in one); `None` when the node does not list it.
    pub async fn root_ca(&self, node: &str) -> Result<Option<String>, ClientError> {
        Ok(self.certificates(node).await?.into_iter().find(|c| c.filename == "pve-root-ca.pem").and_then(|c| c.pem))
    }
    /// Removes the node's custom certificate (`pveproxy-ssl.pem`), restarting pveproxy: from
    /// the next connection on it presents its own `pve-ssl.pem`. Nothing there is fine too.
    pub async fn delete_custom_certificate(&self, node: &str) -> Result<(), ClientError> {
        let path = format!("/nodes/{}/certificates/custom", segment(node));
        self.api.delete::<_, serde::de::IgnoredAny>(&path, &[("restart", "1")]).await.map(drop)
    }
    /// Orders a certificate for the node's configured ACME domains (an `acmenewcert` task; its
    /// UPID). `force` replaces an existing custom certificate.
    pub async fn order_certificate(&self, node: &str, force: bool) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct Body {
            force: u8,
        }
        let path = format!("/nodes/{}/certificates/acme/certificate", segment(node));
        self.api.post(&path, &Body { force: u8::from(force) }, Retry::Once).await
    }
}
