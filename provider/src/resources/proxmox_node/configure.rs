//! Step 4: the node's own settings — DNS, timezone and the managed network interfaces (pending
//! interface changes are applied with PVE's `srvreload` task). Each setting is read first and
//! written only when it differs, so a re-run changes nothing that is already right.

use std::net::{IpAddr, Ipv4Addr};

use crate::clients::pve::{Interface, NodeDns, PveClient};
use crate::framework::{AttrPath, Diagnostics};

use super::{diag, Dns, Iface, Node, State};

/// Sets DNS, timezone and interfaces where the configuration asks for them.
pub(super) async fn converge(node: &Node<'_>, pve: &PveClient, c: &State) -> Result<(), Diagnostics> {
    if let Some(dns) = &c.dns {
        set_dns(pve, node.name, dns).await?;
    }
    if let Some(tz) = &c.timezone {
        set_timezone(pve, node.name, tz).await?;
    }
    if let Some(net) = &c.network {
        set_network(node, pve, net).await?;
    }
    Ok(())
}

/// A field left out of the `dns` block keeps the node's value (PVE's PUT sets both at once).
async fn set_dns(pve: &PveClient, name: &str, dns: &Dns) -> Result<(), Diagnostics> {
    let cur = pve.dns(name).await.map_err(|e| diag("Cannot read DNS", e))?;
    let (servers, search) = (cur.servers(), cur.search.clone().unwrap_or_default());
    let want_search = dns.search.clone().unwrap_or(search.clone());
    let want_servers = dns.servers.clone().unwrap_or(servers.clone());
    if want_search != search || want_servers != servers {
        pve.set_dns(name, &NodeDns::with(want_search, &want_servers)).await.map_err(|e| diag("Cannot set DNS", e))?;
    }
    Ok(())
}

async fn set_timezone(pve: &PveClient, name: &str, tz: &str) -> Result<(), Diagnostics> {
    let cur = pve.time(name).await.map_err(|e| diag("Cannot read the time settings", e))?;
    if cur.timezone.as_deref() != Some(tz) {
        pve.set_timezone(name, tz).await.map_err(|e| diag("Cannot set the timezone", e))?;
    }
    Ok(())
}

/// Creates missing and updates differing interfaces, then applies them with one reload task:
/// PVE only stages interface changes (`/etc/network/interfaces.new`) until then.
async fn set_network(node: &Node<'_>, pve: &PveClient, net: &[Iface]) -> Result<(), Diagnostics> {
    let name = node.name;
    let cur = pve.interfaces(name).await.map_err(|e| diag("Cannot read the network", e))?;
    let mut changed = false;
    for want in net {
        let iface = want.iface.clone().unwrap_or_default();
        let have = cur.iter().find(|i| i.iface.as_deref() == Some(iface.as_str())).cloned().map(iface_of);
        let body = iface_body(want);
        match have {
            None => {
                pve.create_interface(name, &body)
                    .await
                    .map_err(|e| diag(&format!("Cannot create interface {iface}"), e))?;
                changed = true;
            }
            Some(h) if !iface_matches(want, &h) => {
                pve.update_interface(name, &iface, &body)
                    .await
                    .map_err(|e| diag(&format!("Cannot update interface {iface}"), e))?;
                changed = true;
            }
            Some(_) => {}
        }
    }
    if changed {
        let upid = pve.apply_network(name).await.map_err(|e| diag("Cannot apply the network changes", e))?;
        pve.wait_maybe(upid, node.deadline, &node.ctx.stop).await.map_err(|e| diag("Network reload failed", e))?;
    }
    Ok(())
}

/// Refresh: DNS, timezone and the managed interfaces as the node has them, for the settings the
/// state holds (what the configuration leaves out is not tracked).
pub(super) async fn read(pve: &PveClient, name: &str, st: &mut State) -> Result<(), Diagnostics> {
    if st.dns.is_some() {
        let cur = pve.dns(name).await.map_err(|e| diag("Cannot read DNS", e))?;
        st.dns = Some(Dns { servers: Some(cur.servers()), search: Some(cur.search.unwrap_or_default()) });
    }
    if st.timezone.is_some() {
        st.timezone = pve.time(name).await.map_err(|e| diag("Cannot read the time settings", e))?.timezone;
    }
    if let Some(net) = &st.network {
        let cur = pve.interfaces(name).await.map_err(|e| diag("Cannot read the network", e))?;
        let read: Vec<Iface> = net
            .iter()
            .filter_map(|want| {
                let have = cur.iter().find(|i| i.iface.is_some() && i.iface == want.iface).cloned().map(iface_of)?;
                Some(managed_fields(want, have))
            })
            .collect();
        st.network = Some(read);
    }
    Ok(())
}

/// What the node has for `want`'s interface, limited to the fields `want` sets: only what the
/// configuration manages is compared.
fn managed_fields(want: &Iface, have: Iface) -> Iface {
    Iface {
        iface: want.iface.clone(),
        kind: have.kind,
        cidr: want.cidr.as_ref().and(have.cidr),
        gateway: want.gateway.as_ref().and(have.gateway),
        bridge_ports: want.bridge_ports.as_ref().and(have.bridge_ports),
        bridge_vlan_aware: want.bridge_vlan_aware.and(have.bridge_vlan_aware),
        slaves: want.slaves.as_ref().and(have.slaves),
        bond_mode: want.bond_mode.as_ref().and(have.bond_mode),
        vlan_id: want.vlan_id.and(have.vlan_id),
        vlan_raw_device: want.vlan_raw_device.as_ref().and(have.vlan_raw_device),
        autostart: want.autostart.and(have.autostart),
        mtu: want.mtu.and(have.mtu),
        comments: want.comments.as_ref().and(have.comments),
    }
}

/// Plan-time checks of the `dns` and `network` blocks.
pub(super) fn validate(c: &State, d: &mut Diagnostics) {
    if let Some(dns) = &c.dns {
        if dns.servers.as_ref().is_some_and(|s| s.len() > 3) {
            d.error_at(
                AttrPath::root("dns").attr("servers"),
                "Too many DNS servers",
                "PVE keeps at most three (dns1..dns3).",
            );
        }
        // PVE's dns1..dns3 have format `ip`.
        for (i, s) in dns.servers.iter().flatten().enumerate() {
            if s.parse::<IpAddr>().is_err() {
                d.error_at(
                    AttrPath::root("dns").attr("servers").index(i),
                    "Invalid DNS server",
                    format!("{s:?} is not an IP address: PVE takes name servers as addresses, e.g. \"10.1.0.1\" or \"2001:db8::53\""),
                );
            }
        }
    }
    if let Some(tz) = &c.timezone {
        if !is_timezone(tz) {
            d.error_at(
                AttrPath::root("timezone"),
                "Invalid timezone",
                format!("{tz:?} is not a zone name: use one from zone.tab such as \"Europe/Berlin\" or \"UTC\""),
            );
        }
    }
    if let Some(net) = &c.network {
        for (i, n) in net.iter().enumerate() {
            validate_iface(n, AttrPath::root("network").index(i), d);
            if n.kind.as_deref() == Some("vlan")
                && n.vlan_id.is_none()
                && !n.iface.as_deref().unwrap_or("").contains('.')
            {
                d.error_at(
                    AttrPath::root("network").index(i).attr("vlan_id"),
                    "Missing VLAN tag",
                    "A vlan interface needs vlan_id, or a name like vmbr0.20.",
                );
            }
        }
    }
}

/// The resource's `Iface` and the client's `Interface` have the same fields (only their serde
/// names differ: Terraform's vs PVE's), so one field list converts either way.
macro_rules! convert_iface {
    ($i:expr => $to:ident) => {{
        let i = $i;
        $to {
            iface: i.iface,
            kind: i.kind,
            cidr: i.cidr,
            gateway: i.gateway,
            bridge_ports: i.bridge_ports,
            bridge_vlan_aware: i.bridge_vlan_aware,
            slaves: i.slaves,
            bond_mode: i.bond_mode,
            vlan_id: i.vlan_id,
            vlan_raw_device: i.vlan_raw_device,
            autostart: i.autostart,
            mtu: i.mtu,
            comments: i.comments,
        }
    }};
}

/// An interface as PVE reports it, in the resource's terms.
fn iface_of(i: Interface) -> Iface {
    convert_iface!(i => Iface)
}

/// Every configured field equals what the node has.
fn iface_matches(want: &Iface, have: &Iface) -> bool {
    fn eq<T: PartialEq>(w: &Option<T>, h: &Option<T>) -> bool {
        w.is_none() || w == h
    }
    eq(&want.kind, &have.kind)
        && eq(&want.cidr, &have.cidr)
        && eq(&want.gateway, &have.gateway)
        && eq(&want.bridge_ports, &have.bridge_ports)
        && eq(&want.bridge_vlan_aware, &have.bridge_vlan_aware)
        && eq(&want.slaves, &have.slaves)
        && eq(&want.bond_mode, &have.bond_mode)
        && eq(&want.vlan_id, &have.vlan_id)
        && eq(&want.vlan_raw_device, &have.vlan_raw_device)
        && eq(&want.autostart, &have.autostart)
        && eq(&want.mtu, &have.mtu)
        && eq(&want.comments, &have.comments)
}

/// The PVE parameters of an interface.
fn iface_body(i: &Iface) -> Interface {
    convert_iface!(i.clone() => Interface)
}

/// PVE's interface types (`POST /nodes/{node}/network`, `type` enum).
const IFACE_TYPES: &[&str] = &[
    "bridge",
    "bond",
    "eth",
    "alias",
    "vlan",
    "fabric",
    "OVSBridge",
    "OVSBond",
    "OVSPort",
    "OVSIntPort",
    "vnet",
    "unknown",
];
/// PVE's bond modes (`bond_mode` enum).
const BOND_MODES: &[&str] = &[
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
    "balance-slb",
    "lacp-balance-slb",
    "lacp-balance-tcp",
];

/// One `network` entry against PVE's schema for `POST /nodes/{node}/network`: `iface` format
/// `pve-iface` (pve-common `pve_verify_iface`), `type` and `bond_mode` enums, `vlan-id` 1–4094,
/// `mtu` 1280–65520, `cidr` format `CIDRv4` (prefix 8–32), `gateway` format `ipv4`.
fn validate_iface(n: &Iface, p: AttrPath, d: &mut Diagnostics) {
    if let Some(i) = &n.iface {
        if !is_pve_iface(i) {
            d.error_at(
                p.clone().attr("iface"),
                "Invalid interface name",
                format!("{i:?}: PVE takes a letter, then 1–20 letters, digits or '_', optionally .N or :N (e.g. \"vmbr1\", \"bond0\", \"vmbr0.20\")"),
            );
        }
    }
    if let Some(t) = &n.kind {
        if !IFACE_TYPES.contains(&t.as_str()) {
            d.error_at(
                p.clone().attr("type"),
                "Invalid interface type",
                format!("{t:?}: use one of {}", IFACE_TYPES.join(", ")),
            );
        }
    }
    if let Some(m) = &n.bond_mode {
        if !BOND_MODES.contains(&m.as_str()) {
            d.error_at(
                p.clone().attr("bond_mode"),
                "Invalid bond mode",
                format!("{m:?}: use one of {}", BOND_MODES.join(", ")),
            );
        }
    }
    if let Some(v) = n.vlan_id {
        if !(1..=4094).contains(&v) {
            d.error_at(p.clone().attr("vlan_id"), "Invalid VLAN tag", format!("{v} is outside 1–4094"));
        }
    }
    if let Some(m) = n.mtu {
        if !(1280..=65520).contains(&m) {
            d.error_at(p.clone().attr("mtu"), "Invalid MTU", format!("{m}: PVE takes 1280–65520 (e.g. 1500, 9000)"));
        }
    }
    if let Some(c) = &n.cidr {
        if !is_cidr_v4(c) {
            d.error_at(
                p.clone().attr("cidr"),
                "Invalid CIDR",
                format!("{c:?}: use an IPv4 address with a prefix length of 8–32, e.g. \"10.1.0.11/24\""),
            );
        }
    }
    if let Some(g) = &n.gateway {
        if g.parse::<Ipv4Addr>().is_err() {
            d.error_at(
                p.attr("gateway"),
                "Invalid gateway",
                format!("{g:?} is not an IPv4 address, e.g. \"10.1.0.1\""),
            );
        }
    }
}

fn is_pve_iface(i: &str) -> bool {
    let (base, suffix) = match i.find(['.', ':']) {
        Some(at) => (&i[..at], Some(&i[at + 1..])),
        None => (i, None),
    };
    let mut chars = base.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && (2..=21).contains(&base.len())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && suffix.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        && i.len() <= 20
}

fn is_cidr_v4(c: &str) -> bool {
    c.split_once('/')
        .is_some_and(|(a, len)| a.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| (8..=32).contains(&l)))
}

/// A zone name as in zone.tab (`Area/Location[/Sub]`) or `UTC`: letters, digits, '_', '-', '+'
/// per part. Whether the node knows the zone PVE checks at apply.
fn is_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.split('/').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_compare_only_configured_fields() {
        let api: Interface = serde_json::from_value(serde_json::json!(
            {"iface": "vmbr1", "type": "bridge", "bridge_ports": "eno2", "autostart": 1, "vlan-id": "20"}
        ))
        .unwrap();
        let have = iface_of(api);
        assert_eq!(have.vlan_id, Some(20));
        assert_eq!(have.autostart, Some(true));
        let want = Iface {
            iface: Some("vmbr1".into()),
            kind: Some("bridge".into()),
            bridge_ports: Some("eno2".into()),
            ..Default::default()
        };
        assert!(iface_matches(&want, &have));
        let want = Iface { bridge_ports: Some("eno3".into()), ..want };
        assert!(!iface_matches(&want, &have));
        let b = serde_json::to_value(iface_body(&Iface {
            vlan_id: Some(5),
            vlan_raw_device: Some("bond0".into()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(b["vlan-id"], 5);
        assert_eq!(b["vlan-raw-device"], "bond0");
    }

    #[test]
    fn dns_and_vlan_settings_are_checked() {
        let mut d = Diagnostics::new();
        let c = State {
            dns: Some(Dns {
                servers: Some(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(String::from).to_vec()),
                search: None,
            }),
            network: Some(vec![
                Iface { iface: Some("vmbr0.20".into()), kind: Some("vlan".into()), ..Default::default() },
                Iface { iface: Some("vlan7".into()), kind: Some("vlan".into()), ..Default::default() },
            ]),
            ..Default::default()
        };
        validate(&c, &mut d);
        let paths: Vec<String> = d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect();
        assert_eq!(paths, vec!["dns.servers", "network[1].vlan_id"]);
    }

    #[test]
    fn values_pve_refuses_are_refused_with_their_path() {
        let mut d = Diagnostics::new();
        let c = State {
            dns: Some(Dns { servers: Some(vec!["10.0.0.1".into(), "ns1".into()]), search: None }),
            timezone: Some("Europe/Berlin; id".into()),
            network: Some(vec![Iface {
                iface: Some("1vmbr".into()),
                kind: Some("wifi".into()),
                bond_mode: Some("fast".into()),
                vlan_id: Some(4095),
                mtu: Some(1279),
                cidr: Some("10.0.0.1/4".into()),
                gateway: Some("fe80::1".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        validate(&c, &mut d);
        let paths: Vec<String> = d.0.iter().filter_map(|x| x.path.clone()).map(|p| p.to_string()).collect();
        assert_eq!(
            paths,
            [
                "dns.servers[1]",
                "timezone",
                "network[0].iface",
                "network[0].type",
                "network[0].bond_mode",
                "network[0].vlan_id",
                "network[0].mtu",
                "network[0].cidr",
                "network[0].gateway"
            ]
        );
        for ok in ["vmbr0", "vmbr0.20", "bond0:1", "eno1", "en_x"] {
            assert!(is_pve_iface(ok), "{ok}");
        }
        for bad in ["v", "vmbr0.", "vmbr0.x", "0eth", "a-b", "averyveryveryverylongname"] {
            assert!(!is_pve_iface(bad), "{bad}");
        }
        for ok in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"] {
            assert!(is_timezone(ok), "{ok}");
        }
    }
}
