//! Patch drift: per store, the release it runs, how many releases behind the newest it is, and
//! how long any critical release newer than its own has gone unapplied — judged against an SLO
//! (PCI DSS 4.0 6.3.3: critical patches within one month).
//!
//! The catalogue of releases (`releases.json`, oldest first, as published) is the operator's:
//! a name, optionally the bundle id, when it was published and whether it is critical.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("releases: {0}")]
    Catalogue(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    pub name: String,
    /// The bundle id (`edge-fleet release build`), when releases go through the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// RFC 3339.
    pub published: String,
    #[serde(default)]
    pub critical: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Releases a store may be behind the newest: 1 allows N-1, so N-2 breaches.
    pub max_behind: usize,
    /// Days a critical release may stay unapplied.
    pub critical_days: i64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo { max_behind: 1, critical_days: 30 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub store: String,
    /// The catalogue name of the release it runs, or what it reported if the catalogue does not
    /// know it.
    pub release: Option<String>,
    pub behind: Option<usize>,
    /// Critical releases newer than the store's, not applied.
    pub critical_unapplied: Vec<String>,
    /// Days since the oldest of them was published.
    pub critical_age_days: Option<i64>,
    /// Why the store is outside the SLO; empty when within it.
    pub breaches: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub newest: Option<String>,
    pub slo: Slo,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn breached(&self) -> bool {
        self.rows.iter().any(|r| !r.breaches.is_empty())
    }
}

pub fn parse_catalogue(bytes: &[u8]) -> Result<Vec<(ReleaseInfo, OffsetDateTime)>, DriftError> {
    let list: Vec<ReleaseInfo> = serde_json::from_slice(bytes).map_err(|e| DriftError::Catalogue(e.to_string()))?;
    let mut out = Vec::new();
    for r in list {
        let t = OffsetDateTime::parse(&r.published, &Rfc3339)
            .map_err(|e| DriftError::Catalogue(format!("{}: published {:?}: {e}", r.name, r.published)))?;
        if let Some((prev, pt)) = out.last().map(|(p, t): &(ReleaseInfo, OffsetDateTime)| (p.name.clone(), *t)) {
            if t < pt {
                return Err(DriftError::Catalogue(format!(
                    "{} is listed after {prev} but was published before it",
                    r.name
                )));
            }
        }
        out.push((r, t));
    }
    Ok(out)
}

/// The table for `running` (store, the release it reports: a catalogue name or bundle id).
pub fn table(
    catalogue: &[(ReleaseInfo, OffsetDateTime)],
    running: &[(String, Option<String>)],
    now: OffsetDateTime,
    slo: Slo,
) -> Table {
    let newest = catalogue.last().map(|(r, _)| r.name.clone());
    let rows = running
        .iter()
        .map(|(store, rel)| {
            let idx = rel
                .as_ref()
                .and_then(|rel| catalogue.iter().position(|(r, _)| &r.name == rel || r.id.as_ref() == Some(rel)));
            let mut breaches = Vec::new();
            let (release, behind, newer) = match (rel, idx) {
                (None, _) => {
                    breaches.push("the release it runs is not known".to_string());
                    (None, None, &catalogue[..0])
                }
                (Some(rel), None) => {
                    breaches.push(format!("runs {rel}, which is not in the release catalogue"));
                    (Some(rel.clone()), None, &catalogue[..0])
                }
                (Some(_), Some(i)) => {
                    (Some(catalogue[i].0.name.clone()), Some(catalogue.len() - 1 - i), &catalogue[i + 1..])
                }
            };
            if let Some(b) = behind.filter(|b| *b > slo.max_behind) {
                breaches.push(format!("{b} releases behind the newest (at most {} allowed)", slo.max_behind));
            }
            let critical: Vec<&(ReleaseInfo, OffsetDateTime)> = newer.iter().filter(|(r, _)| r.critical).collect();
            let critical_age_days = critical.first().map(|(_, t)| (now - *t).whole_days());
            if let Some(age) = critical_age_days.filter(|a| *a > slo.critical_days) {
                breaches.push(format!(
                    "critical release {} unapplied for {age} days (at most {})",
                    critical[0].0.name, slo.critical_days
                ));
            }
            Row {
                store: store.clone(),
                release,
                behind,
                critical_unapplied: critical.iter().map(|(r, _)| r.name.clone()).collect(),
                critical_age_days,
                breaches,
            }
        })
        .collect();
    Table { newest, slo, rows }
}

/// The table as text, one line per store, breaches last on the line.
pub fn render(t: &Table) -> String {
    let mut out = format!(
        "newest release: {}   SLO: at most {} behind, critical within {} days\n{:<16} {:<14} {:>6}  {:<20} {}\n",
        t.newest.as_deref().unwrap_or("(none)"),
        t.slo.max_behind,
        t.slo.critical_days,
        "STORE",
        "RELEASE",
        "BEHIND",
        "CRITICAL UNAPPLIED",
        "SLO"
    );
    for r in &t.rows {
        let crit = match (r.critical_unapplied.len(), r.critical_age_days) {
            (0, _) => "-".to_string(),
            (n, Some(d)) => format!("{n} (oldest {d} d)"),
            (n, None) => n.to_string(),
        };
        out.push_str(&format!(
            "{:<16} {:<14} {:>6}  {:<20} {}\n",
            r.store,
            r.release.as_deref().unwrap_or("?"),
            r.behind.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
            crit,
            if r.breaches.is_empty() { "ok".to_string() } else { format!("BREACH: {}", r.breaches.join("; ")) }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Vec<(ReleaseInfo, OffsetDateTime)> {
        let j = br#"[
          {"name": "2026.10.1", "published": "2026-10-01T00:00:00Z"},
          {"name": "2026.10.2", "published": "2026-10-20T00:00:00Z", "critical": true},
          {"name": "2026.11.1", "id": "abc", "published": "2026-11-10T00:00:00Z"}
        ]"#;
        parse_catalogue(j).unwrap()
    }

    #[test]
    fn n_minus_two_and_an_old_critical_release_breach() {
        let now = OffsetDateTime::parse("2026-11-30T00:00:00Z", &Rfc3339).unwrap();
        let running = vec![
            ("s1".to_string(), Some("abc".to_string())),
            ("s2".to_string(), Some("2026.10.2".to_string())),
            ("s3".to_string(), Some("2026.10.1".to_string())),
            ("s4".to_string(), None),
            ("s5".to_string(), Some("9999".to_string())),
        ];
        let t = table(&cat(), &running, now, Slo::default());
        let by = |s: &str| t.rows.iter().find(|r| r.store == s).unwrap().clone();
        assert_eq!(
            (by("s1").release.as_deref(), by("s1").behind, by("s1").breaches.len()),
            (Some("2026.11.1"), Some(0), 0)
        );
        assert_eq!((by("s2").behind, by("s2").breaches.len()), (Some(1), 0));
        let s3 = by("s3");
        assert_eq!(s3.behind, Some(2));
        assert_eq!(s3.critical_unapplied, vec!["2026.10.2".to_string()]);
        assert_eq!(s3.critical_age_days, Some(41));
        assert_eq!(s3.breaches.len(), 2, "{:?}", s3.breaches);
        assert_eq!(by("s4").breaches.len(), 1);
        assert!(by("s5").breaches[0].contains("not in the release catalogue"));
        assert!(t.breached());
        assert!(render(&t).contains("BREACH"));
    }

    #[test]
    fn a_catalogue_out_of_order_is_refused() {
        let j = br#"[{"name": "b", "published": "2026-11-02T00:00:00Z"}, {"name": "a", "published": "2026-11-01T00:00:00Z"}]"#;
        assert!(parse_catalogue(j).is_err());
    }
}
