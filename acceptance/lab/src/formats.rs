//! PVE's named string formats (PVE::JSONSchema `register_format`), with PVE's messages.
//! Formats we do not model are accepted: the lab never rejects what PVE might accept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

/// A regex compiled once; a pattern that does not compile matches only the empty string.
pub(crate) fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).unwrap_or_else(|_| Regex::new("^$").unwrap_or_else(|_| unreachable!())))
}

static NODE: OnceLock<Regex> = OnceLock::new();
static CONFIGID: OnceLock<Regex> = OnceLock::new();
static STORAGEID: OnceLock<Regex> = OnceLock::new();
static DNSNAME: OnceLock<Regex> = OnceLock::new();
static MAC: OnceLock<Regex> = OnceLock::new();
static EMAIL: OnceLock<Regex> = OnceLock::new();
static REALM: OnceLock<Regex> = OnceLock::new();
static USERID: OnceLock<Regex> = OnceLock::new();
static IFACE: OnceLock<Regex> = OnceLock::new();
static POOLID: OnceLock<Regex> = OnceLock::new();
static CAL_TIME: OnceLock<Regex> = OnceLock::new();
static CAL_DATE: OnceLock<Regex> = OnceLock::new();
static CAL_DOW: OnceLock<Regex> = OnceLock::new();
static ACMEDOMAIN: OnceLock<Regex> = OnceLock::new();

pub fn is_node_name(s: &str) -> bool {
    re(&NODE, r"^(?i:[a-z0-9]([a-z0-9\-]*[a-z0-9])?)$").is_match(s)
}

/// PVE::Tools `split_list`: items separated by commas, semicolons, NULs or whitespace.
pub(crate) fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c == ';' || c == '\0' || c.is_whitespace()).filter(|p| !p.is_empty())
}

/// Returns Err(PVE message) when `s` does not satisfy the named format.
#[allow(clippy::collapsible_match)] // one arm per format, like PVE's register_format list
pub fn check_named(format: &str, s: &str) -> Result<(), String> {
    if let Some(base) = format.strip_suffix("-list") {
        // Lists of a known element format are checked element-wise.
        if known(base) {
            for item in split_list(s) {
                check_named(base, item)?;
            }
        }
        return Ok(());
    }
    match format {
        "pve-node" => {
            if !is_node_name(s) {
                return Err("value does not look like a valid node name".into());
            }
        }
        "pve-configid" => {
            if !re(&CONFIGID, r"^(?i:[a-z][a-z0-9_-]+)$").is_match(s) {
                return Err(format!("invalid configuration ID '{s}'"));
            }
        }
        "pve-storage-id" => {
            if !re(&STORAGEID, r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$").is_match(s) {
                return Err(format!("storage ID '{s}' contains illegal characters"));
            }
        }
        "pve-vmid" => {
            let ok = s.parse::<u64>().is_ok_and(|n| (100..=999_999_999).contains(&n));
            if !ok {
                return Err("value does not look like a valid VM ID".into());
            }
        }
        "pve-poolid" => {
            if !re(&POOLID, r"^[A-Za-z0-9_\-]+$").is_match(s) {
                return Err(format!("pool name '{s}' contains illegal characters"));
            }
        }
        "pve-realm" => {
            if !re(&REALM, r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$").is_match(s) {
                return Err("value does not look like a valid realm".into());
            }
        }
        "pve-userid" => {
            if !re(&USERID, r"^[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+$").is_match(s) {
                return Err(format!("value '{s}' does not look like a valid user name"));
            }
        }
        "pve-iface" => {
            if !re(&IFACE, r"^[a-zA-Z][a-zA-Z0-9_]{1,20}([:\.]\d+)?$").is_match(s) {
                return Err(format!("invalid network interface name '{s}'"));
            }
        }
        "ip" => {
            if s.parse::<IpAddr>().is_err() {
                return Err(format!("value '{s}' does not look like a valid IP address"));
            }
        }
        "ipv4" => {
            if s.parse::<Ipv4Addr>().is_err() {
                return Err(format!("value '{s}' does not look like a valid IPv4 address"));
            }
        }
        "ipv6" => {
            if s.parse::<Ipv6Addr>().is_err() {
                return Err(format!("value '{s}' does not look like a valid IPv6 address"));
            }
        }
        "CIDR" | "CIDRv4" | "CIDRv6" | "IPorCIDR" => {
            let (ip, mask) = match s.split_once('/') {
                Some((i, m)) => (i, Some(m)),
                None => (s, None),
            };
            let ok = ip.parse::<IpAddr>().ok().is_some_and(|a| match mask {
                None => format == "IPorCIDR",
                Some(m) => m.parse::<u8>().is_ok_and(|m| if a.is_ipv4() { m <= 32 } else { m <= 128 }),
            });
            if !ok {
                return Err(format!("value '{s}' does not look like a valid CIDR network"));
            }
        }
        "dns-name" => {
            if !is_dns_name(s) {
                return Err(format!("value '{s}' does not look like a valid DNS name"));
            }
        }
        "address" => {
            if s.parse::<IpAddr>().is_err() && !is_dns_name(s) {
                return Err(format!("value '{s}' does not look like a valid address"));
            }
        }
        "mac-addr" => {
            if !re(&MAC, r"^(?i:[a-f0-9][02468ace](?::[a-f0-9]{2}){5})$").is_match(s) {
                return Err(format!("value '{s}' does not look like a valid unicast MAC address"));
            }
        }
        "email" | "email-opt" => {
            if (format != "email-opt" || !s.is_empty())
                && !re(&EMAIL, r"^[\w\+\-\~]+(\.[\w\+\-\~]+)*@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*$").is_match(s)
            {
                return Err(format!("value '{s}' does not look like a valid email address"));
            }
        }
        "pve-calendar-event" => check_calendar_event(s)?,
        // PVE::JSONSchema pve_verify_acme_domain / _alias: at least two labels.
        "pve-acme-domain" | "pve-acme-alias" => {
            if !re(&ACMEDOMAIN, r"^(?i:[a-z0-9][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)+)$").is_match(s) {
                let what = if format == "pve-acme-alias" { "alias" } else { "domain" };
                return Err(format!("value '{s}' does not look like a valid {what} name!"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn known(f: &str) -> bool {
    matches!(
        f,
        "pve-node"
            | "pve-configid"
            | "pve-storage-id"
            | "pve-vmid"
            | "pve-iface"
            | "ip"
            | "ipv4"
            | "ipv6"
            | "dns-name"
            | "address"
            | "email"
            | "pve-realm"
            | "pve-userid"
            | "pve-acme-domain"
    )
}

fn is_dns_name(s: &str) -> bool {
    re(&DNSNAME, r"^(?i:([a-z0-9]([a-z0-9\-]*[a-z0-9])?\.)*([a-z0-9]([a-z0-9\-]*[a-z0-9])?))$").is_match(s)
}

/// A reasonable subset of systemd-like calendar events as PVE parses them:
/// `daily`, `mon..fri 02:30`, `sat *-*-* 03:00`, `*/15`, `0/2:00`, `2025-01-01 00:00`.
pub fn check_calendar_event(s: &str) -> Result<(), String> {
    let err = || Err(format!("invalid calendar event '{s}' - unable to parse calendar event"));
    let t = s.trim();
    if t.is_empty() {
        return err();
    }
    let special = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
        "semi-annually",
    ];
    if special.contains(&t.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let day = "(?:mon|tue|wed|thu|fri|sat|sun)";
    let dow = re(&CAL_DOW, &format!(r"^(?i:{day}(?:\.\.{day})?(?:,{day}(?:\.\.{day})?)*)$"));
    let field = r"(?:\*|\d{1,4}(?:\.\.\d{1,4})?)(?:/\d{1,4})?";
    let list = format!("{field}(?:,{field})*");
    let time = re(&CAL_TIME, &format!(r"^{list}(?::{list}){{0,2}}$"));
    let date = re(&CAL_DATE, &format!(r"^{list}-{list}(?:-{list})?$"));
    let mut toks: Vec<&str> = t.split_whitespace().collect();
    if toks.last().is_some_and(|l| l.eq_ignore_ascii_case("utc")) {
        toks.pop();
    }
    let mut i = 0;
    if i < toks.len() && dow.is_match(toks[i]) {
        i += 1;
    }
    if i < toks.len() && toks[i].contains('-') && date.is_match(toks[i]) {
        i += 1;
    }
    if i < toks.len() && time.is_match(toks[i]) {
        i += 1;
    }
    if i == 0 || i != toks.len() {
        return err();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_events() {
        for ok in
            ["daily", "mon..fri 02:30", "sat *-*-* 03:00", "*/15", "0/2:00", "2025-01-01 00:00", "sun 01:00", "21:00"]
        {
            assert!(check_calendar_event(ok).is_ok(), "{ok}");
        }
        for bad in ["", "tomorrow", "mon..fri 25:xx", "every day"] {
            assert!(check_calendar_event(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_and_configid() {
        assert!(check_named("pve-node", "pve1").is_ok());
        assert!(check_named("pve-node", "pve_1").is_err());
        assert!(check_named("pve-configid", "backup-1").is_ok());
        assert!(check_named("pve-configid", "1x").is_err());
        assert!(check_named("pve-storage-id", "pbs-store1").is_ok());
    }
}
