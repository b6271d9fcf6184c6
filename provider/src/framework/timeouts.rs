//! The `timeouts` block: Go-style durations ("90s", "10m", "1h30m") per operation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::diag::{AttrPath, Diagnostics};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
}

impl Timeouts {
    /// The limit for `op`, or `default` when not set or not parseable (validation reports those).
    pub fn get(t: &Option<Timeouts>, op: Op, default: Duration) -> Duration {
        let Some(t) = t else { return default };
        let s = match op {
            Op::Create => &t.create,
            Op::Update => &t.update,
            Op::Delete => &t.delete,
            Op::Read => &t.read,
        };
        s.as_deref().and_then(|s| parse_duration(s).ok()).unwrap_or(default)
    }

    pub fn validate(t: &Option<Timeouts>, diags: &mut Diagnostics) {
        let Some(t) = t else { return };
        for (name, v) in [("create", &t.create), ("update", &t.update), ("delete", &t.delete), ("read", &t.read)] {
            if let Some(s) = v {
                if let Err(e) = parse_duration(s) {
                    diags.error_at(AttrPath::root("timeouts").attr(name), "Invalid duration", e);
                }
            }
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax for the units that make sense here (ms, s, m, h).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: use a number with a unit, e.g. \"30s\", \"10m\", \"1h30m\"");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
