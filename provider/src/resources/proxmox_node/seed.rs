//! A node's first-boot seed (docs/design/node-bootstrap.md): made here at apply, before the
//! node boots, so the provider knows the certificate the node will present and its SSH host key
//! without ever trusting a first contact. The image (`images/nixos/seed.nix`) reads it from the
//! second virtual medium and applies it once.
//!
//! Only public parts leave this module in [`Seed`]; the medium's bytes (with the private keys
//! and the password hash) go to the seed server and nowhere else.

use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, PrivateKey};
use sha2::{Digest, Sha256};
use sha_crypt::{PasswordHasher, ShaCrypt};
use zeroize::Zeroizing;

use crate::clients::http::fingerprint_of;

/// Validity of the bootstrap certificate: it is retired minutes after the first boot; this only
/// bounds what a leaked seed is worth if that never happens.
const BOOTSTRAP_DAYS: u64 = 30;
/// The medium the JSON is written onto, NUL-padded (seed.nix reads the first 64 KiB).
const MEDIUM_BYTES: usize = 64 * 1024;

pub(super) struct Seed {
    /// The medium: JSON with the magic `"edge-seed": 1`, NUL-padded. Holds the private keys.
    pub medium: Zeroizing<Vec<u8>>,
    /// sha256 (hex) of the JSON, as the node states it in its notes (`edge-seed sha256=…`).
    pub sha256: String,
    /// Fingerprint of the bootstrap certificate the node presents until it is retired.
    pub cert_fingerprint: String,
    /// `ssh-ed25519 AAAA…`: the node's SSH host key from this boot on.
    pub ssh_host_key: String,
}

/// A new seed for node `name` at `address`, with root@pam's password as SHA-512 crypt.
pub(super) fn make(name: &str, address: &str, root_password: &str) -> Result<Seed, String> {
    let mut rng = rand::thread_rng();
    // The bootstrap certificate: ECDSA P-256, for the node's name and address.
    let key = rcgen::KeyPair::generate().map_err(|e| format!("bootstrap key: {e}"))?;
    let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| format!("bootstrap cert: {e}"))?;
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        p.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    } else if address != name {
        let dns = address.to_string().try_into().map_err(|e| format!("bootstrap cert: {address}: {e}"))?;
        p.subject_alt_names.push(rcgen::SanType::DnsName(dns));
    }
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "edgeform bootstrap");
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(BOOTSTRAP_DAYS as i64);
    let cert = p.self_signed(&key).map_err(|e| format!("bootstrap cert: {e}"))?;
    // The SSH host key.
    let mut ssh_seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(ssh_seed.as_mut());
    let ssh = PrivateKey::from(Ed25519Keypair::from_seed(&ssh_seed));
    let ssh_private = ssh.to_openssh(LineEnding::LF).map_err(|e| format!("SSH host key: {e}"))?;
    let ssh_host_key = ssh.public_key().to_openssh().map_err(|e| format!("SSH host key: {e}"))?;
    // root@pam's password hash, with a random salt.
    let mut salt = [0u8; 12];
    rng.fill_bytes(&mut salt);
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(root_password.as_bytes(), &salt)
        .map_err(|e| format!("root password hash: {e}"))?
        .to_string();
    let key_pem = Zeroizing::new(key.serialize_pem());
    let json = Zeroizing::new(
        serde_json::to_vec(&serde_json::json!({
            "edge-seed": 1,
            "node": name,
            "address": address,
            "root_password_hash": hash,
            "tls": {"cert_pem": cert.pem(), "key_pem": key_pem.as_str()},
            "ssh": {"host_key": ssh_private.as_str(), "host_public_key": ssh_host_key},
        }))
        .map_err(|e| format!("seed: {e}"))?,
    );
    if json.len() > MEDIUM_BYTES {
        return Err(format!("seed of {} bytes does not fit the medium", json.len()));
    }
    let mut medium = Zeroizing::new(json.to_vec());
    medium.resize(MEDIUM_BYTES, 0);
    Ok(Seed {
        medium,
        sha256: hex::encode(Sha256::digest(json.as_slice())),
        cert_fingerprint: fingerprint_of(cert.der()),
        ssh_host_key,
    })
}

/// The line the image's first boot writes into the node notes for the seed it applied.
pub(super) fn notes_line(sha256: &str) -> String {
    format!("edge-seed sha256={sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::PasswordVerifier;

    #[test]
    fn a_seed_holds_what_the_image_applies() {
        let s = make("pve1", "10.1.0.11", "correct horse battery staple").expect("seed");
        assert_eq!(s.medium.len(), MEDIUM_BYTES);
        let end = s.medium.iter().rposition(|b| *b != 0).expect("json") + 1;
        let json: serde_json::Value = serde_json::from_slice(&s.medium[..end]).expect("json");
        assert_eq!(hex::encode(Sha256::digest(&s.medium[..end])), s.sha256);
        assert_eq!((json["edge-seed"].as_i64(), json["node"].as_str()), (Some(1), Some("pve1")));
        let hash = json["root_password_hash"].as_str().expect("hash");
        assert!(hash.starts_with("$6$"), "{hash}");
        assert!(ShaCrypt::SHA512.verify_password(b"correct horse battery staple", hash).is_ok());
        assert!(ShaCrypt::SHA512.verify_password(b"wrong", hash).is_err());
        assert!(!String::from_utf8_lossy(&s.medium).contains("correct horse"), "the password itself is not in it");
        assert!(json["tls"]["key_pem"].as_str().is_some_and(|k| k.contains("PRIVATE KEY")));
        assert!(json["ssh"]["host_key"].as_str().is_some_and(|k| k.starts_with("-----BEGIN OPENSSH PRIVATE KEY")));
        assert_eq!(json["ssh"]["host_public_key"].as_str(), Some(s.ssh_host_key.as_str()));
        assert!(s.ssh_host_key.starts_with("ssh-ed25519 "));
        // The fingerprint is the certificate's in the seed.
        let pem = json["tls"]["cert_pem"].as_str().expect("cert");
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().expect("one").expect("der");
        assert_eq!(fingerprint_of(der.as_ref()), s.cert_fingerprint);
        // Two seeds share nothing.
        let t = make("pve1", "10.1.0.11", "correct horse battery staple").expect("seed");
        assert_ne!((t.cert_fingerprint, t.ssh_host_key, t.sha256), (s.cert_fingerprint, s.ssh_host_key, s.sha256));
    }
}
