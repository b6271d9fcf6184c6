//! Product versions as `GET /version` reports them, for feature gates.
//!
//! The two products spell it differently: PVE's `version` is the full pve-manager version
//! (`8.4.2`) and `release` its first two parts (`8.4`); PBS's `version` is only major.minor
//! (`3.2`) and `release` the patch number (`4`). Both are read tolerantly (a missing or odd part
//! counts as 0), since a gate must never fail a call on its own.

use std::fmt;

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::clients::http::{de, ApiClient};
use crate::clients::ClientError;

/// `GET /version` as both products answer it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VersionInfo {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub release: Option<String>,
    #[serde(default)]
    pub repoid: Option<String>,
}

/// A client's product version: `GET /version` read at most once (a failed read is tried again
/// on the next call).
#[derive(Debug, Default)]
pub struct VersionCell(OnceCell<Version>);

impl VersionCell {
    pub(crate) async fn get(
        &self,
        api: &ApiClient,
        parse: fn(&VersionInfo) -> Version,
    ) -> Result<Version, ClientError> {
        self.0
            .get_or_try_init(|| async {
                let info: VersionInfo = api.get("/version").await?;
                Ok(parse(&info))
            })
            .await
            .copied()
    }
}

/// A feature gate of one product: there from `since()` on.
pub trait Feature: Copy {
    /// The first release with the feature.
    fn since(self) -> Version;
    fn available_in(self, v: Version) -> bool {
        v >= self.since()
    }
}

/// A release as major.minor.patch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch }
    }

    /// PVE: `version` = `8.4.2` (the pve-manager version); `release` = `8.4` fills in when
    /// `version` is missing.
    pub fn from_pve(info: &VersionInfo) -> Version {
        let v = numbers(info.version.as_deref().unwrap_or_default());
        let v = if v.is_empty() { numbers(info.release.as_deref().unwrap_or_default()) } else { v };
        Version::from_parts(&v)
    }

    /// PBS: `version` = `3.2` (major.minor), `release` = `4` (patch). A `version` that already
    /// has three parts is taken as it is.
    pub fn from_pbs(info: &VersionInfo) -> Version {
        let mut v = numbers(info.version.as_deref().unwrap_or_default());
        if v.len() < 3 {
            v.resize(2, 0);
            v.push(numbers(info.release.as_deref().unwrap_or_default()).first().copied().unwrap_or(0));
        }
        Version::from_parts(&v)
    }

    fn from_parts(v: &[u32]) -> Version {
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Version::new(at(0), at(1), at(2))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The leading numeric parts of `8.4.2`, `3.2`, `8.4.2-1` or `9.1.0~rc1`: digits separated by
/// dots, up to the first character that is neither.
fn numbers(s: &str) -> Vec<u32> {
    let end = s.trim().find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.trim().len());
    s.trim()[..end].split('.').map_while(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: serde_json::Value, release: serde_json::Value) -> VersionInfo {
        serde_json::from_value(serde_json::json!({"version": version, "release": release, "repoid": "abc"})).unwrap()
    }

    #[test]
    fn pve_versions() {
        assert_eq!(Version::from_pve(&info("8.4.2".into(), "8.4".into())), Version::new(8, 4, 2));
        assert_eq!(Version::from_pve(&info("9.1.12".into(), "9.1".into())), Version::new(9, 1, 12));
        assert_eq!(Version::from_pve(&info("8.4".into(), "8.4".into())), Version::new(8, 4, 0));
        assert_eq!(Version::from_pve(&info("8.4.2-1".into(), "8.4".into())), Version::new(8, 4, 2));
        assert_eq!(Version::from_pve(&info(serde_json::Value::Null, "8.4".into())), Version::new(8, 4, 0));
        assert_eq!(Version::from_pve(&info("garbage".into(), serde_json::Value::Null)), Version::default());
    }

    #[test]
    fn pbs_versions_carry_the_patch_in_release() {
        assert_eq!(Version::from_pbs(&info("3.2".into(), "4".into())), Version::new(3, 2, 4));
        assert_eq!(Version::from_pbs(&info("4.0".into(), 11.into())), Version::new(4, 0, 11));
        assert_eq!(Version::from_pbs(&info("3.4.8".into(), "8".into())), Version::new(3, 4, 8));
        assert_eq!(Version::from_pbs(&info("3".into(), serde_json::Value::Null)), Version::new(3, 0, 0));
        assert!(Version::new(3, 10, 0) > Version::new(3, 9, 9), "compared as numbers");
        assert_eq!(Version::new(8, 1, 0).to_string(), "8.1.0");
    }
}
