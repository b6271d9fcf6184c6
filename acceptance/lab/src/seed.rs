//! A node's seed medium (docs/design/node-bootstrap.md; the image's side is
//! images/nixos/seed.nix): the provider inserts the seed as the BMC's second virtual medium, a
//! booting node takes root's password hash, its SSH host key and a bootstrap certificate from
//! it, and states the seed's sha256 in its node notes.

use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sha_crypt::{PasswordVerifier, ShaCrypt};

use crate::state::{AppliedSeed, LabState};

/// The medium's content: JSON with the magic `"edge-seed": 1`, NUL-padded.
#[derive(Debug, Clone, Deserialize)]
pub struct Seed {
    #[serde(rename = "edge-seed")]
    pub version: u32,
    pub node: String,
    pub root_password_hash: String,
    pub tls: SeedTls,
    #[serde(default)]
    pub ssh: Option<SeedSsh>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeedTls {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeedSsh {
    #[serde(default)]
    pub host_public_key: Option<String>,
}

/// The seed and the sha256 of its JSON (the NUL padding stripped, as seed.nix computes it).
pub fn parse(bytes: &[u8]) -> Result<(Seed, String), String> {
    let end = bytes.iter().rposition(|b| *b != 0).map(|i| i + 1).unwrap_or(0);
    let json = &bytes[..end];
    let seed: Seed = serde_json::from_slice(json).map_err(|e| format!("not an edge seed: {e}"))?;
    if seed.version != 1 {
        return Err(format!("edge seed version {} is unknown", seed.version));
    }
    Ok((seed, hex::encode(Sha256::digest(json))))
}

/// Reads the medium the BMC was given (the lab plays the node reading its second drive): the
/// bytes behind the URL the BMC's removable medium holds.
pub async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| format!("{url}: {e}"))?;
    let r = http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status()));
    }
    Ok(r.bytes().await.map_err(|e| format!("{url}: {e}"))?.to_vec())
}

/// What a seed gives the node at the boot that reads it (images/nixos/seed.nix applies every
/// seed once, at install or at a later boot): root's password hash, the SSH host key, and the
/// bootstrap certificate pveproxy presents (as a custom certificate) until it is removed. With
/// `tampered` the certificate is replaced in transit by another one, as a man in the middle of
/// the BMC's download would.
pub fn apply(st: &mut LabState, store: &str, node: &str, seed: &Seed, sha256: &str) -> Result<(), String> {
    let tampered = st.store(store).and_then(|s| s.node(node)).is_some_and(|n| n.seed_tamper);
    let cert = if tampered {
        let ip = st.store(store).and_then(|s| s.node(node)).and_then(|n| n.address.parse().ok());
        crate::pki::issue_for(
            &crate::pki::new_named_ca("tampered seed").map_err(|e| e.to_string())?,
            node,
            &[node.to_string()],
            ip,
            Some(30),
        )
        .map_err(|e| e.to_string())?
    } else {
        crate::pki::from_pem(&seed.tls.cert_pem, &seed.tls.key_pem).map_err(|e| format!("seed certificate: {e}"))?
    };
    let n = st.store_mut(store).and_then(|s| s.node_mut(node)).ok_or("node vanished")?;
    if seed.node != n.name {
        return Err(format!("the seed is for node {:?}, this is {:?}", seed.node, n.name));
    }
    // The seed's certificate becomes pveproxy-ssl.pem; pve-ssl.pem stays underneath (a custom
    // certificate already there is replaced).
    let own = std::mem::replace(&mut n.cert, cert);
    if n.base_cert.is_none() {
        n.base_cert = Some(own);
    }
    n.seed_tamper = false;
    n.seed = Some(AppliedSeed {
        sha256: sha256.to_string(),
        root_password_hash: seed.root_password_hash.clone(),
        ssh_host_public_key: seed.ssh.as_ref().and_then(|s| s.host_public_key.clone()),
    });
    let mut lines: Vec<String> = n
        .config
        .get("description")
        .map(|d| d.lines().filter(|l| !l.starts_with("edge-seed ")).map(str::to_string).collect())
        .unwrap_or_default();
    lines.push(format!("edge-seed sha256={sha256}"));
    n.config.insert("description".into(), lines.join("\n"));
    Ok(())
}

/// Whether `password` is root's on this node: the seed's hash if it booted with one, else the
/// store's password (a node set up by hand).
pub fn root_password_ok(st: &LabState, store: &str, node: &str, password: &str) -> bool {
    let Some(s) = st.store(store) else { return false };
    match s.node(node).and_then(|n| n.seed.as_ref()) {
        Some(seed) => ShaCrypt::SHA512.verify_password(password.as_bytes(), seed.root_password_hash.as_str()).is_ok(),
        None => password == s.root_password,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_with_padding_and_hash_their_json() {
        let json =
            br#"{"edge-seed":1,"node":"pve1","root_password_hash":"$6$x$y","tls":{"cert_pem":"c","key_pem":"k"}}"#;
        let mut medium = json.to_vec();
        medium.extend(std::iter::repeat_n(0u8, 4096 - json.len()));
        let (seed, sha) = parse(&medium).unwrap();
        assert_eq!(seed.node, "pve1");
        assert_eq!(sha, hex::encode(Sha256::digest(json)));
        assert!(parse(b"{\"edge-seed\":2,\"node\":\"x\"}").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
