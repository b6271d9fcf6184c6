//! go-plugin's handshake: the magic cookie, protocol negotiation, the listener, and the one line
//! on stdout that tells Terraform where to connect.

use std::path::PathBuf;

use base64::Engine;

/// Terraform's magic cookie (go-plugin `HandshakeConfig` of every Terraform provider).
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's core protocol version (the first field of the handshake line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
pub const APP_PROTOCOL_VERSION: u32 = 6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandshakeError {
    #[error(
        "This binary is a plugin for Terraform. It is not meant to be run by hand: Terraform \
         starts it when a configuration uses the `edgeform/edge` provider.\n\n\
         To use it, install it into a plugin mirror (`make install`) and run `terraform init`.\n\
         To debug it, run it with --debug and export the TF_REATTACH_PROVIDERS value it prints."
    )]
    NotLaunchedByTerraform,
    #[error(
        "Terraform offered plugin protocol versions {offered:?}, but this provider speaks only \
         protocol 6 (Terraform 1.0 and later). Upgrade Terraform."
    )]
    NoCommonProtocol { offered: String },
    #[error("PLUGIN_MIN_PORT/PLUGIN_MAX_PORT are not a valid port range: {0}")]
    BadPortRange(String),
}

/// Checks the environment Terraform sets when it launches a plugin.
pub fn check_env(env: &dyn Fn(&str) -> Option<String>) -> Result<(), HandshakeError> {
    if env(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(HandshakeError::NotLaunchedByTerraform);
    }
    // Absent means the host predates version negotiation: it then speaks the plugin's one version.
    if let Some(offered) = env("PLUGIN_PROTOCOL_VERSIONS") {
        let ok = offered.split(',').any(|v| v.trim() == APP_PROTOCOL_VERSION.to_string());
        if !ok {
            return Err(HandshakeError::NoCommonProtocol { offered });
        }
    }
    Ok(())
}

/// Where to listen: a unix socket (what go-plugin uses on Unix) or TCP in the allowed range.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenSpec {
    Unix(PathBuf),
    Tcp { min: u16, max: u16 },
}

impl ListenSpec {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<ListenSpec, HandshakeError> {
        if env("PLUGIN_TRANSPORT").as_deref() == Some("tcp") {
            let port = |k: &str, d: u16| -> Result<u16, HandshakeError> {
                match env(k) {
                    None => Ok(d),
                    Some(v) => v.parse().map_err(|_| HandshakeError::BadPortRange(format!("{k}={v}"))),
                }
            };
            let (min, max) = (port("PLUGIN_MIN_PORT", 10000)?, port("PLUGIN_MAX_PORT", 25000)?);
            if min > max {
                return Err(HandshakeError::BadPortRange(format!("{min} > {max}")));
            }
            return Ok(ListenSpec::Tcp { min, max });
        }
        let dir = env("PLUGIN_UNIX_SOCKET_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let name = format!("plugin{}-{:08x}", std::process::id(), rand::random::<u32>());
        Ok(ListenSpec::Unix(dir.join(name)))
    }
}

/// The handshake line: `CORE|APP|NETWORK|ADDR|grpc|CERT` (cert: base64 DER without padding,
/// as go-plugin's `base64.RawStdEncoding`; empty without AutoMTLS).
pub fn handshake_line(network: &str, addr: &str, server_cert_der: Option<&[u8]>) -> String {
    let cert = server_cert_der.map(|d| base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)).unwrap_or_default();
    format!("{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|{network}|{addr}|grpc|{cert}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn refuses_to_run_by_hand() {
        assert_eq!(check_env(&env_of(&[])), Err(HandshakeError::NotLaunchedByTerraform));
    }

    #[test]
    fn negotiates_protocol_six() {
        let ok = env_of(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE), ("PLUGIN_PROTOCOL_VERSIONS", "5,6")]);
        assert_eq!(check_env(&ok), Ok(()));
        let old = env_of(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE), ("PLUGIN_PROTOCOL_VERSIONS", "4,5")]);
        assert!(matches!(check_env(&old), Err(HandshakeError::NoCommonProtocol { .. })));
    }

    #[test]
    fn tcp_port_range_from_env() {
        let e = env_of(&[("PLUGIN_TRANSPORT", "tcp"), ("PLUGIN_MIN_PORT", "12000"), ("PLUGIN_MAX_PORT", "12010")]);
        assert_eq!(ListenSpec::from_env(&e), Ok(ListenSpec::Tcp { min: 12000, max: 12010 }));
        let bad = env_of(&[("PLUGIN_TRANSPORT", "tcp"), ("PLUGIN_MIN_PORT", "9"), ("PLUGIN_MAX_PORT", "8")]);
        assert!(ListenSpec::from_env(&bad).is_err());
    }

    #[test]
    fn line_shape() {
        assert_eq!(handshake_line("unix", "/tmp/p", Some(&[0xff, 0xfe])), "1|6|unix|/tmp/p|grpc|//4");
        assert_eq!(handshake_line("tcp", "127.0.0.1:1", None), "1|6|tcp|127.0.0.1:1|grpc|");
    }
}
